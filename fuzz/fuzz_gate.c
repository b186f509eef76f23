/*
 * fuzz/fuzz_gate.c: libFuzzer target for the harness's HTTP-aware data plane
 * without sockets: the gate that follows a connection's HTTP framing
 * (src/harness/gate.c), the HTTP toxics (http_toxics.c) and the plain ones
 * (toxics.c), driven through chain.c exactly as link.c drives them, on a
 * hand-moved clock. Only the sockets are missing: bytes "read" from a source
 * enter through harness_chain_read, stages run through harness_chain_step,
 * and the writer takes what goes to a sink from harness_chain_next_out (the
 * function link.c's flush uses), so harness answers go out in order with the
 * upstream's responses as they do on a real connection.
 *
 * Input:
 *   byte 0        number of toxics (0..3) in its low two bits;
 *   then per toxic one byte: which toxic (TEMPLATES below, real API bodies
 *                 read by harness_toxic_from_json) and, in its top bits, the
 *                 stage's random seed;
 *   then records  one control byte (bit 0: the stream: 0 the client's
 *                 requests going up, 1 the upstream's responses coming down;
 *                 bits 1-6: the record's length - 1; bit 7: the clock moves
 *                 10 ms before it, else 1 ms) and that many bytes, read by
 *                 the source in one read (the chunking comes from the input).
 *   At the end both sources send EOF and the clock runs until nothing waits.
 *
 * Oracles, besides ASan/UBSan and the leak check:
 *  - the stream positions of the source bytes reaching a sink never go back
 *    and never overlap;
 *  - every byte counted in a direction (hdir_t.buffered) is accounted for
 *    once the connection is torn down;
 *  - when no toxic that answers, drops, cuts or rewrites is active, each
 *    sink gets exactly the bytes its source sent, in order, and an EOF;
 *  - when the toxics only delay or answer requests (http_status,
 *    http_drop_first_n upstream) and both sources sent well-formed HTTP/1.1
 *    (no HEAD, no upgrade), the client's responses parse too: a harness
 *    answer goes between two responses, never inside one (gate.h).
 */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llhttp.h>

#include "chain.h"
#include "gate.h"
#include "link.h"
#include "toxic.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MS UINT64_C(1000000)
#define MAX_TOXICS 3
#define SINK_MAX (1u << 20) /* bytes a sink keeps for the comparison */

typedef struct template {
  const char *json; /* a create request body, as a client sends it */
  bool transparent; /* passes every byte unchanged (only time changes) */
  bool answers;     /* answers requests in the client's place (upstream HTTP toxics) */
}
template_t;

static const template_t templates[] = {
    {"{\"type\":\"noop\",\"stream\":\"upstream\"}", true, false},
    {"{\"type\":\"noop\",\"stream\":\"downstream\"}", true, false},
    {"{\"type\":\"latency\",\"stream\":\"downstream\",\"attributes\":{\"latency\":20,\"jitter\":5}"
     "}",
     true, false},
    {"{\"type\":\"latency\",\"stream\":\"upstream\",\"attributes\":{\"latency\":3}}", true, false},
    {"{\"type\":\"slicer\",\"stream\":\"downstream\",\"attributes\":{\"average_size\":7,"
     "\"size_variation\":5,\"delay\":1}}",
     true, false},
    {"{\"type\":\"slicer\",\"stream\":\"upstream\",\"attributes\":{\"average_size\":2,"
     "\"size_variation\":1,\"delay\":0}}",
     true, false},
    {"{\"type\":\"bandwidth\",\"stream\":\"downstream\",\"attributes\":{\"rate\":64}}", true,
     false},
    {"{\"type\":\"http_latency\",\"stream\":\"downstream\",\"attributes\":{\"latency\":15,"
     "\"jitter\":10}}",
     true, false},
    {"{\"type\":\"http_latency\",\"stream\":\"upstream\",\"attributes\":{\"latency\":5}}", true,
     false},
    {"{\"type\":\"http_status\",\"stream\":\"upstream\",\"attributes\":{\"status\":503,"
     "\"percent\":50,\"body\":\"busy\"}}",
     false, true},
    {"{\"type\":\"http_status\",\"stream\":\"upstream\",\"attributes\":{\"status\":429,"
     "\"body\":\"slow down\",\"content_type\":\"text/plain\"}}",
     false, true},
    {"{\"type\":\"http_drop_first_n\",\"stream\":\"upstream\",\"attributes\":{\"n\":1}}", false,
     true},
    {"{\"type\":\"http_drop_first_n\",\"stream\":\"downstream\",\"attributes\":{\"n\":2,"
     "\"status\":502}}",
     false, false},
    {"{\"type\":\"http_content_type\",\"stream\":\"downstream\",\"attributes\":{"
     "\"content_type\":\"application/json\"}}",
     false, false},
    {"{\"type\":\"limit_data\",\"stream\":\"downstream\",\"attributes\":{\"bytes\":300}}", false,
     false},
    {"{\"type\":\"reset_after_bytes\",\"stream\":\"upstream\",\"attributes\":{\"bytes\":200}}",
     false, false},
    {"{\"type\":\"timeout\",\"stream\":\"downstream\",\"attributes\":{\"timeout\":50}}", false,
     false},
    {"{\"type\":\"garbage\",\"stream\":\"downstream\",\"attributes\":{\"bytes\":16}}", false,
     false},
};
#define NTEMPLATES (sizeof templates / sizeof templates[0])

typedef struct conn {
  hdir_t dir[2]; /* indexed by stream */
  toxic_t toxics[MAX_TOXICS];
  size_t ntoxics;
  bool transparent;     /* every toxic passes bytes unchanged */
  bool framing;         /* every toxic passes bytes unchanged or answers requests */
  bool ended;           /* a CLOSE or RESET reached a writer, or a stage asked for one */
  bool stalled;         /* a source's bytes were dropped: it could not be read */
  uint64_t now;         /* ns, moved by hand */
  uint64_t wake[2];     /* when each direction asked to be stepped again */
  bool kick[2];         /* pump it again now (the other one answered back) */
  bool eof_out[2];      /* the sink got EOF */
  uint64_t next_pos[2]; /* where the next source bytes at a sink may start */
  cynic__buf_t sent[2]; /* what each source sent */
  cynic__buf_t got[2];  /* what each sink got */
} conn_t;

static void die(const char *what) {
  fprintf(stderr, "fuzz_gate: %s\n", what);
  abort();
}

/* The writer: what link.c's flush does with each chunk, the socket being a
 * buffer. true if anything moved. */
static bool flush(conn_t *c, hdir_t *d, step_ctx_t *ctx) {
  bool progress = false;
  chunk_t *ch;
  while (!d->close_when_flushed && (ch = harness_chain_next_out(d, c->now)) != NULL) {
    progress = true;
    if (ch->kind == CHUNK_DATA) {
      if (!d->dst_shut) {
        if (ch->pos != CHUNK_NOPOS) { /* the source's own bytes: in order, once */
          if (ch->pos < c->next_pos[d->stream]) {
            fprintf(stderr, "fuzz_gate: stream %d: bytes at %llu after bytes up to %llu\n",
                    d->stream, (unsigned long long)ch->pos,
                    (unsigned long long)c->next_pos[d->stream]);
            abort();
          }
          c->next_pos[d->stream] = ch->pos + ch->len;
        }
        cynic__buf_append(&c->got[d->stream], ch->blk->data + ch->off, ch->len);
        d->bytes_written += ch->len;
      }
      d->buffered -= ch->len;
    } else if (ch->kind == CHUNK_EOF && !d->dst_shut) {
      d->dst_shut = true;
      c->eof_out[d->stream] = true;
    } else if (ch->kind == CHUNK_CLOSE || ch->kind == CHUNK_RESET) {
      harness_chain_end_when_flushed(d, ch->kind == CHUNK_RESET, c->now);
      c->ended = true; /* link.c closes the connection once the writes are out */
    }
    harness_chunk_free(ch);
  }
  if (d->gate != NULL) {
    harness_step_wake_at(ctx, harness_gate_deadline(d->gate));
    if (harness_gate_take_moved(d->gate))
      d->peer->woken = true;
  }
  return progress;
}

/* link.c's pump: step and write until nothing moves. */
static void pump(conn_t *c, hdir_t *d) {
  if (c->ended)
    return;
  step_ctx_t ctx = {.dir = d};
  for (int rounds = 0; rounds < 100000; rounds++) {
    ctx.now = c->now;
    ctx.wake = UINT64_MAX;
    int r = harness_chain_step(d, &ctx);
    if (r == STEP_CLOSE || r == STEP_RESET) {
      c->ended = true;
      return;
    }
    bool progress = r == STEP_PROGRESS;
    if (flush(c, d, &ctx))
      progress = true;
    if (c->ended)
      return;
    if (!progress)
      break;
  }
  if (d->peer->woken) {
    d->peer->woken = false;
    c->kick[d->peer->stream] = true;
  }
  c->wake[d->stream] = ctx.wake;
}

/* Pumps both directions, and again while one answered back on the other. */
static void pump_all(conn_t *c) {
  c->kick[0] = c->kick[1] = true;
  for (int i = 0; i < 64 && (c->kick[0] || c->kick[1]) && !c->ended; i++)
    for (int s = 0; s < 2; s++)
      if (c->kick[s]) {
        c->kick[s] = false;
        pump(c, &c->dir[s]);
      }
}

/* link.c's update_reading: may d's source be read now? */
static bool readable(const conn_t *c, const hdir_t *d) {
  return !d->src_eof && d->buffered < LINK_BUFFER_MAX &&
         harness_chain_in((hdir_t *)d)->count < LINK_QUEUE_MAX &&
         !(d->stream == STREAM_UPSTREAM && harness_gate_full(c->dir[STREAM_DOWNSTREAM].gate));
}

/* Moves the clock to the earliest wake-up asked for; false if none. */
static bool advance(conn_t *c) {
  uint64_t t = c->wake[0] < c->wake[1] ? c->wake[0] : c->wake[1];
  if (t == UINT64_MAX)
    return false;
  if (t > c->now)
    c->now = t;
  return true;
}

/* The source of `stream` sends p[0..n) (n 0: EOF) in one read. */
static void source(conn_t *c, int stream, const uint8_t *p, size_t n) {
  hdir_t *d = &c->dir[stream];
  /* a source that cannot be read waits, as its socket would, while time moves */
  for (int i = 0; i < 1000 && !c->ended && !readable(c, d) && advance(c); i++)
    pump_all(c);
  if (c->ended || d->src_eof)
    return;
  if (!readable(c, d)) {
    c->stalled = true; /* held for good (a toxic holds it, or a full request window) */
    return;
  }
  chunk_t *ch = harness_chunk_new(n > 0 ? CHUNK_DATA : CHUNK_EOF, d, c->now);
  if (ch == NULL)
    die("out of memory");
  bool first = d->bytes_read == 0;
  if (n > 0) {
    if ((ch->blk = harness_block_new((const char *)p, n)) == NULL)
      die("out of memory");
    ch->len = n;
    ch->pos = d->bytes_read;
    d->bytes_read += n;
    cynic__buf_append(&c->sent[stream], p, n);
  } else {
    d->src_eof = true;
  }
  if (harness_chain_read(d, ch, first) != 0) {
    harness_chunk_free(ch);
    die("the gate cannot be allocated");
  }
  pump_all(c);
}

static void add_toxic(conn_t *c, uint8_t pick) {
  const template_t *tp = &templates[(pick & 0x1f) % NTEMPLATES];
  toxic_t *t = &c->toxics[c->ntoxics];
  json_error_t e;
  json_t *body = json_loads(tp->json, 0, &e);
  int status;
  char err[256];
  if (body == NULL || harness_toxic_from_json(body, t, &status, err, sizeof err) != 0) {
    fprintf(stderr, "fuzz_gate: template %s: %s\n", tp->json, body == NULL ? e.text : err);
    abort();
  }
  json_decref(body);
  snprintf(t->name, sizeof t->name, "t%zu", c->ntoxics); /* unique, as the API ensures */
  c->ntoxics++;
  c->transparent = c->transparent && tp->transparent;
  c->framing = c->framing && (tp->transparent || tp->answers);
  hdir_t *d = &c->dir[t->stream];
  stage_t *st = calloc(1, sizeof *st);
  if (st == NULL)
    die("out of memory");
  st->toxic = t;
  st->active = true;
  st->rng = UINT64_C(0x9E3779B97F4A7C15) * (uint64_t)(pick >> 5 | 1);
  st->joined_live = false;
  harness_toxic_stage_init(st, c->now);
  d->stages[d->nstages++] = st;
}

static void conn_free(conn_t *c) {
  for (int i = 0; i < 2; i++) {
    hdir_t *d = &c->dir[i];
    for (size_t k = 0; k < d->nstages; k++) {
      harness_queue_clear(d, &d->stages[k]->in);
      harness_toxic_stage_free(d->stages[k]);
      free(d->stages[k]);
    }
    harness_queue_clear(d, &d->out);
  }
  harness_gate_free(c->dir[STREAM_DOWNSTREAM].gate, &c->dir[STREAM_DOWNSTREAM]);
  harness_gate_free(c->dir[STREAM_UPSTREAM].gate, &c->dir[STREAM_UPSTREAM]);
  for (size_t i = 0; i < c->ntoxics; i++)
    harness_toxic_release(&c->toxics[i]);
  for (int i = 0; i < 2; i++) {
    if (c->dir[i].buffered != 0) {
      fprintf(stderr, "fuzz_gate: stream %d: %zu bytes counted and never accounted for\n", i,
              c->dir[i].buffered);
      abort();
    }
    cynic__buf_free(&c->sent[i]);
    cynic__buf_free(&c->got[i]);
  }
}

/* ---- answers between responses ------------------------------------------ */

typedef struct framing {
  bool head; /* a HEAD request seen */
  bool upgrade;
} framing_t;

static int on_head(llhttp_t *p) {
  framing_t *f = p->data;
  if (llhttp_get_type(p) == HTTP_REQUEST) {
    if (llhttp_get_method(p) == HTTP_HEAD)
      f->head = true;
    return 0;
  }
  /* RFC 9112 6.3: a 1xx, 204 or 304 ends at its head whatever its
   * Content-Length says, as the gate frames it (plain llhttp would read a
   * declared body) */
  int st = llhttp_get_status_code(p);
  return (st >= 100 && st <= 199) || st == 204 || st == 304 ? 1 : 0;
}

/* Whether `b` parses whole as HTTP/1.1 messages of `type` (requests or
 * responses), up to its end (llhttp_finish); *f says what it saw. */
static bool parses(const cynic__buf_t *b, llhttp_type_t type, framing_t *f) {
  llhttp_settings_t s;
  llhttp_settings_init(&s);
  s.on_headers_complete = on_head;
  llhttp_t p;
  llhttp_init(&p, type, &s);
  p.data = f;
  llhttp_errno_t err = llhttp_execute(&p, b->data ? b->data : "", b->len);
  if (err == HPE_PAUSED_UPGRADE)
    f->upgrade = true;
  if (err == HPE_OK)
    err = llhttp_finish(&p);
  return err == HPE_OK;
}

/* The gate's promise (gate.h): a harness answer goes out between two
 * responses, never inside one. When the client's requests and the upstream's
 * responses are both well-formed HTTP (no HEAD, whose answers llhttp cannot
 * frame without knowing the request, no upgrade) and every toxic passes bytes
 * unchanged or answers requests, what the client gets must parse as well. */
static void check_framing(const conn_t *c, bool verbose) {
  framing_t up = {0}, down = {0}, got = {0};
  if (!parses(&c->sent[STREAM_UPSTREAM], HTTP_REQUEST, &up) || up.head || up.upgrade ||
      !parses(&c->sent[STREAM_DOWNSTREAM], HTTP_RESPONSE, &down) || down.upgrade)
    return;
  if (verbose)
    fprintf(stderr, "fuzz_gate: checking that answers fall between responses\n");
  if (!parses(&c->got[STREAM_DOWNSTREAM], HTTP_RESPONSE, &got)) {
    fprintf(stderr,
            "fuzz_gate: the client's responses do not parse although the upstream's did: an "
            "answer inside a response?\n--- requests:\n%.*s\n--- upstream sent:\n%.*s\n--- "
            "client got:\n%.*s\n",
            (int)c->sent[0].len, c->sent[0].data ? c->sent[0].data : "", (int)c->sent[1].len,
            c->sent[1].data ? c->sent[1].data : "", (int)c->got[1].len,
            c->got[1].data ? c->got[1].data : "");
    abort();
  }
}

static void check_transparent(const conn_t *c) {
  for (int s = 0; s < 2; s++) {
    const cynic__buf_t *in = &c->sent[s], *out = &c->got[s];
    if (!c->eof_out[s] || in->len != out->len ||
        (in->len > 0 && memcmp(in->data, out->data, in->len) != 0)) {
      fprintf(stderr,
              "fuzz_gate: stream %d: %zu bytes sent, %zu arrived%s, through toxics that change "
              "nothing\n--- sent:\n%.*s\n--- arrived:\n%.*s\n",
              s, in->len, out->len, c->eof_out[s] ? "" : " (no EOF)", (int)in->len,
              in->data ? in->data : "", (int)out->len, out->data ? out->data : "");
      abort();
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  static conn_t conn;
  conn_t *c = &conn;
  memset(c, 0, sizeof *c);
  for (int i = 0; i < 2; i++) {
    c->dir[i].stream = i;
    c->dir[i].peer = &c->dir[!i];
    c->wake[i] = UINT64_MAX;
    cynic__buf_init(&c->sent[i], SINK_MAX);
    cynic__buf_init(&c->got[i], SINK_MAX);
  }
  c->now = 1000 * MS;
  c->transparent = true;
  c->framing = true;
  size_t at = 0, want = data[at++] & 3;
  while (c->ntoxics < want && at < size)
    add_toxic(c, data[at++]);

  while (at < size && !c->ended) {
    uint8_t ctl = data[at++];
    int stream = ctl & 1;
    size_t n = (size_t)((ctl >> 1) & 0x3f) + 1;
    if (n > size - at)
      n = size - at;
    c->now += (ctl & 0x80) ? 10 * MS : MS;
    if (n > 0)
      source(c, stream, data + at, n);
    at += n;
  }
  /* Both sources end; the clock runs until nothing waits (bounded: every
   * turn releases what some stage held until then). */
  source(c, STREAM_UPSTREAM, NULL, 0);
  source(c, STREAM_DOWNSTREAM, NULL, 0);
  for (int i = 0; i < 100000 && !c->ended && advance(c); i++)
    pump_all(c);
  if (getenv("FUZZ_VERBOSE") != NULL) /* replaying one input by hand */
    fprintf(stderr, "fuzz_gate: %zu toxics%s%s%s; up %zu -> %zu%s, down %zu -> %zu%s\n", c->ntoxics,
            c->transparent ? ", transparent" : "", c->ended ? ", ended" : "",
            c->stalled ? ", stalled" : "", c->sent[0].len, c->got[0].len,
            c->eof_out[0] ? " EOF" : "", c->sent[1].len, c->got[1].len,
            c->eof_out[1] ? " EOF" : "");
  if (c->transparent && !c->ended && !c->stalled)
    check_transparent(c);
  if (c->framing && !c->ended && !c->stalled && c->eof_out[STREAM_DOWNSTREAM])
    check_framing(c, getenv("FUZZ_VERBOSE") != NULL);
  conn_free(c);
  return 0;
}
