/*
 * http_toxics.c: toxics that understand HTTP/1.1 on the stream (the most
 * requested Toxiproxy feature). llhttp finds message boundaries; each message
 * gets one decision:
 *
 *  - http_latency (latency, jitter ms): each request (upstream stream) or
 *    response (downstream) is held `latency` ± `jitter` ms from its first
 *    byte, then passes whole; keep-alive and pipelining keep their order.
 *  - http_status (status, percent, body, content_type): `percent` % of the
 *    messages (per message, from the seeded RNG) are answered with `status`
 *    and `body`. On the upstream stream the harness answers *instead of
 *    forwarding*: the request never reaches the upstream (with a client that
 *    pipelines, the answer may overtake responses still on their way). On
 *    the downstream stream the upstream's response is replaced, which keeps
 *    the order under pipelining but lets the request through.
 *  - http_drop_first_n (n, status): the first `n` requests (upstream) or
 *    responses (downstream) of each connection are answered with `status`
 *    (default 503), to test retries.
 *  - http_content_type (content_type): every response's Content-Type is
 *    rewritten (or added), e.g. the book's HTML login page where JSON was
 *    expected.
 *
 * Framing is exact: the connection's gate (gate.h) follows both streams from
 * their first byte and remembers where recent messages began, by stream
 * position; every chunk carries the position of its first byte (chain.h). A
 * toxic added to a live connection passes what it sees unchanged up to the
 * first message that begins at or after the first byte it sees (bytes read
 * before it joined may still reach it, held by another toxic), and parses
 * from there with a fresh parser: a body chunk that happens to look like a
 * message never fools it. Where the gate cannot tell (it stopped following
 * the stream, or the connection has no gate: its first bytes were not HTTP)
 * the stage steps aside for good, as it does on bytes that are not HTTP (a
 * parse error, a protocol switch): chunks pass unchanged. It never guesses.
 *
 * Messages are numbered by the gate in the client's request order, so that
 * several answering stages on one connection agree (harness_gate_claim) and a
 * downstream stage knows which responses answer HEAD requests.
 */
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "cynic/common.h"
#include "gate.h"
#include "http.h"
#include "link.h"
#include "toxic.h"

#define HEAD_MAX 65536 /* response head bytes buffered for a rewrite */
#define HEAD_KEEP 4096 /* a head buffer grown past this is released after use */
#define MS(x) ((uint64_t)(x)*UINT64_C(1000000))

enum { EV_NONE, EV_BEGIN, EV_COMPLETE };
enum { MODE_PASS, MODE_HOLD, MODE_DROP, MODE_HEAD };

struct http_state;
static void head_done(struct http_state *hs);

typedef struct http_state {
  llhttp_t parser;
  llhttp_settings_t settings;
  int event;         /* found by the parser at offset `scanned` of the head chunk */
  size_t scanned;    /* bytes of the head chunk already parsed */
  bool lost;         /* out of step with message boundaries: chunks pass whole */
  bool seeking;      /* joined live: passing bytes until a message begins (harness_gate_find) */
  int stream;        /* STREAM_* of the stage */
  gate_t *gate;      /* the connection's gate during a step (NULL: none) */
  int mode;          /* what to do with the current message's bytes */
  uint64_t messages; /* messages begun on this connection */
  uint64_t last;     /* number (gate.h) of the last message claimed; GATE_NONE */
  uint64_t index;    /* number of the current message */
  uint64_t deadline; /* MODE_HOLD: release time */
  cynic__buf_t head; /* MODE_HEAD: the response head being collected */
  uint64_t head_pos; /* stream position of head.data[0] (CHUNK_NOPOS: not one run
                        of the source's bytes) */
} http_state_t;

/* Forget the collected head; give back a buffer that an unusually large
 * head grew, so thousands of idle connections do not each keep 64 KiB. */
static void head_done(http_state_t *hs) {
  if (hs->head.cap > HEAD_KEEP)
    cynic__buf_free(&hs->head);
  else
    cynic__buf_reset(&hs->head);
}

static int on_begin(llhttp_t *p) {
  ((http_state_t *)p->data)->event = EV_BEGIN;
  return HPE_PAUSED;
}

static int on_complete(llhttp_t *p) {
  ((http_state_t *)p->data)->event = EV_COMPLETE;
  return HPE_PAUSED;
}

/* A response's head is complete: which request does it answer, and was that
 * a HEAD (whose response has a length but no body)? */
static int on_headers(llhttp_t *p) {
  http_state_t *hs = p->data;
  if (hs->stream != STREAM_DOWNSTREAM)
    return 0;
  if (gate_interim(p))
    return 1; /* a 1xx ends at its head (RFC 9112 6.3): answers no request */
  hs->index = hs->last = hs->gate ? harness_gate_claim(hs->gate, hs->last) : hs->last + 1;
  return gate_skip_body(p, hs->gate != NULL && harness_gate_head(hs->gate, hs->index));
}

static http_state_t *state(stage_t *st, step_ctx_t *ctx) {
  if (st->http != NULL) {
    st->http->gate = harness_step_gate(ctx);
    return st->http;
  }
  http_state_t *hs = calloc(1, sizeof(*hs));
  if (hs == NULL)
    return NULL;
  llhttp_settings_init(&hs->settings);
  hs->settings.on_message_begin = on_begin;
  hs->settings.on_message_complete = on_complete;
  hs->settings.on_headers_complete = on_headers;
  llhttp_init(&hs->parser, ctx->dir->stream == STREAM_UPSTREAM ? HTTP_REQUEST : HTTP_RESPONSE,
              &hs->settings);
  hs->parser.data = hs;
  hs->stream = ctx->dir->stream;
  hs->gate = harness_step_gate(ctx);
  hs->last = GATE_NONE;
  /* Joined live: find the first message by the gate's marks (seek); without
   * a gate the connection did not start as HTTP: step aside for good. */
  hs->seeking = st->joined_live;
  cynic__buf_init(&hs->head, HEAD_MAX + TOXIC_STR_MAX + 64);
  st->http = hs;
  return hs;
}

/*
 * A stage that joined a live connection, at the head chunk c: pass what comes
 * before the first message that begins at or after c's first byte, then
 * parse from that message's first byte (the parser is still fresh: nothing
 * was parsed while seeking). Chunks without a stream position (the harness's
 * own bytes) and markers pass. false: wait (for queue room, or for the gate
 * to follow bytes it has not reached yet).
 */
static bool seek(stage_t *st, step_ctx_t *ctx, const chunk_t *c) {
  http_state_t *hs = st->http;
  if (c->kind == CHUNK_DATA && c->pos != CHUNK_NOPOS) {
    uint64_t at = 0, last = GATE_NONE;
    int found =
        hs->gate != NULL ? harness_gate_find(hs->gate, hs->stream, c->pos, &at, &last) : GATE_NEVER;
    /* Nothing will tell where messages begin: step aside. (at < c->pos
     * cannot be: the gate sees every byte before the chain does.) */
    if (found == GATE_NEVER || at < c->pos) {
      hs->seeking = false;
      hs->lost = true;
      return true;
    }
    if (at - c->pos < c->len) {
      if (at > c->pos) {
        if (!harness_step_room(ctx))
          return false;
        harness_step_pass_part(ctx, (size_t)(at - c->pos));
        return true;
      }
      if (found == GATE_NOT_YET)
        return false; /* the gate has not followed this byte yet */
      hs->seeking = false;
      hs->last = last;
      return true;
    }
  }
  if (!harness_step_room(ctx))
    return false;
  harness_step_pass(ctx);
  return true;
}

bool harness_http_toxic_mid_message(const stage_t *st) {
  const http_state_t *hs = st->http;
  return hs != NULL && !hs->lost &&
         (hs->mode == MODE_DROP || hs->mode == MODE_HEAD || hs->mode == MODE_HOLD);
}

void harness_http_toxic_free(stage_t *st) {
  if (st->http == NULL)
    return;
  cynic__buf_free(&st->http->head);
  free(st->http);
  st->http = NULL;
}

/* The canned response: downstream it replaces the upstream's response;
 * upstream it answers the client and the request goes nowhere. */
static void emit_answer(stage_t *st, step_ctx_t *ctx, int status, const char *ctype,
                        const char *body) {
  char buf[TOXIC_STR_MAX * 2 + 512];
  /* An answer to a HEAD request carries the length but not the body. */
  bool head = ctx->dir->stream == STREAM_UPSTREAM && st->http->parser.method == HTTP_HEAD;
  int n = snprintf(buf, sizeof(buf),
                   "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                   "X-Cynic-Toxic: %s\r\n\r\n%s",
                   status, cynic__http_reason(status), ctype, strlen(body), st->toxic->name,
                   head ? "" : body);
  if (n <= 0 || (size_t)n >= sizeof(buf))
    return;
  if (ctx->dir->stream == STREAM_UPSTREAM) /* after the responses to earlier requests */
    harness_step_answer_back(ctx, buf, (size_t)n, st->http->index);
  else
    harness_step_emit_bytes(ctx, buf, (size_t)n);
}

/* Replace (or add) the Content-Type of the head in hs->head[0, end). */
static void emit_rewritten_head(stage_t *st, step_ctx_t *ctx, size_t end) {
  http_state_t *hs = st->http;
  const char *h = hs->head.data;
  cynic__buf_t out;
  cynic__buf_init(&out, HEAD_MAX + TOXIC_STR_MAX + 64);
  bool replaced = false;
  size_t i = 0;
  bool first = true;
  while (i < end) {
    const char *nl = memchr(h + i, '\n', end - i);
    size_t line_end = nl ? (size_t)(nl - h) + 1 : end;
    size_t len = line_end - i;
    bool blank = len <= 2 && (h[i] == '\r' || h[i] == '\n');
    if (blank) {
      if (!replaced)
        cynic__buf_printf(&out, "Content-Type: %s\r\n", harness_toxic_str(st->toxic, 0));
      cynic__buf_append(&out, h + i, end - i);
      break;
    }
    if (!first && len > 13 && strncasecmp(h + i, "content-type:", 13) == 0) {
      if (!replaced)
        cynic__buf_printf(&out, "Content-Type: %s\r\n", harness_toxic_str(st->toxic, 0));
      replaced = true;
    } else {
      cynic__buf_append(&out, h + i, len);
    }
    first = false;
    i = line_end;
  }
  harness_step_emit_bytes(ctx, out.data, out.len);
  cynic__buf_free(&out);
}

/* The head is complete (hs->head[0, end) plus maybe body bytes after it):
 * decide what this message gets. */
static void decide(stage_t *st, step_ctx_t *ctx, size_t end) {
  http_state_t *hs = st->http;
  const toxic_t *t = st->toxic;
  const char *h = hs->head.data;
  switch (t->type->id) {
  case TOXIC_HTTP_LATENCY:
    hs->mode = MODE_HOLD; /* the buffer goes out at the deadline */
    return;
  case TOXIC_HTTP_CONTENT_TYPE:
    emit_rewritten_head(st, ctx, end);
    if (hs->head.len > end)
      harness_step_emit_copy(ctx, h + end, hs->head.len - end,
                             hs->head_pos == CHUNK_NOPOS ? CHUNK_NOPOS : hs->head_pos + end);
    hs->mode = MODE_PASS;
    break;
  case TOXIC_HTTP_STATUS:
  case TOXIC_HTTP_DROP_FIRST_N: {
    bool hit = t->type->id == TOXIC_HTTP_STATUS ? rng_range(&st->rng, 1, 100) <= t->attr[1]
                                                : hs->messages <= (uint64_t)t->attr[0];
    if (hit) {
      if (ctx->dir->stream == STREAM_UPSTREAM && hs->gate != NULL)
        harness_gate_answered(hs->gate, hs->index); /* stages further on skip its number */
      if (t->type->id == TOXIC_HTTP_STATUS)
        emit_answer(st, ctx, (int)t->attr[0], harness_toxic_str(t, 3), harness_toxic_str(t, 2));
      else
        emit_answer(st, ctx, (int)t->attr[1], "text/plain", "");
      hs->mode = MODE_DROP;
    } else {
      harness_step_emit_copy(ctx, h, hs->head.len, hs->head_pos);
      hs->mode = MODE_PASS;
    }
    break;
  }
  default:
    harness_step_emit_copy(ctx, h, hs->head.len, hs->head_pos);
    hs->mode = MODE_PASS;
  }
  head_done(hs);
}

/* Send what is buffered unchanged and pass from now on. */
static void give_up(stage_t *st, step_ctx_t *ctx) {
  http_state_t *hs = st->http;
  if (hs->head.len > 0)
    harness_step_emit_copy(ctx, hs->head.data, hs->head.len, hs->head_pos);
  head_done(hs);
  hs->mode = MODE_PASS;
}

/* MODE_HEAD: look for the end of the head in the buffer. */
static void try_finish_head(stage_t *st, step_ctx_t *ctx) {
  http_state_t *hs = st->http;
  const char *h = hs->head.data;
  for (size_t i = 0; h != NULL && i < hs->head.len; i++) {
    if (h[i] != '\n')
      continue;
    if (i + 1 < hs->head.len && h[i + 1] == '\n') {
      decide(st, ctx, i + 2);
      return;
    }
    if (i + 2 < hs->head.len && h[i + 1] == '\r' && h[i + 2] == '\n') {
      decide(st, ctx, i + 3);
      return;
    }
  }
  if (hs->head.len > HEAD_MAX)
    give_up(st, ctx);
}

/* MODE_HOLD: false while the message must wait; once due, the held bytes go. */
static bool release_hold(stage_t *st, step_ctx_t *ctx) {
  http_state_t *hs = st->http;
  if (hs->mode != MODE_HOLD)
    return true;
  if (ctx->now < hs->deadline) {
    harness_step_wake_at(ctx, hs->deadline);
    return false;
  }
  if (hs->head.len > 0) {
    harness_step_emit_copy(ctx, hs->head.data, hs->head.len, hs->head_pos);
    head_done(hs);
  }
  return true;
}

/* Handle the first n bytes of the head chunk in the current mode. false if
 * they must wait (and the step stops). */
static bool consume(stage_t *st, step_ctx_t *ctx, size_t n) {
  http_state_t *hs = st->http;
  chunk_t *c = ctx->in->head;
  switch (hs->mode) {
  case MODE_HOLD:
    if (!release_hold(st, ctx))
      return false;
    /* fall through */
  case MODE_PASS:
    if (!harness_step_room(ctx))
      return false;
    harness_step_pass_part(ctx, n);
    break;
  case MODE_DROP:
    harness_step_drop_part(ctx, n);
    break;
  case MODE_HEAD: {
    /* Keep the position while the collected bytes are one run of the source's. */
    if (hs->head.len == 0)
      hs->head_pos = c->pos;
    else if (hs->head_pos != CHUNK_NOPOS && c->pos != hs->head_pos + hs->head.len)
      hs->head_pos = CHUNK_NOPOS;
    int err = cynic__buf_append(&hs->head, c->blk->data + c->off, n);
    if (err == CYNIC_ENOMEM) {
      /* Out of memory: the head cannot be held, and letting it pass would
       * defeat the toxic: the rest is dropped and the connection reset. */
      head_done(hs);
      hs->mode = MODE_DROP;
      harness_step_drop_part(ctx, n);
      harness_step_emit_reset(ctx);
      break;
    }
    if (err != 0) {
      give_up(st, ctx);
      return true; /* the bytes stay; now in MODE_PASS */
    }
    harness_step_drop_part(ctx, n);
    try_finish_head(st, ctx);
    break;
  }
  }
  hs->scanned -= n;
  return true;
}

/* false if the event must wait (a held message is not due yet). */
static bool on_event(stage_t *st, step_ctx_t *ctx) {
  http_state_t *hs = st->http;
  const toxic_t *t = st->toxic;
  if (!release_hold(st, ctx))
    return false;
  if (hs->event == EV_BEGIN && hs->stream == STREAM_UPSTREAM) {
    /* Number the request; past the gate's window, wait for responses. */
    uint64_t i = hs->gate ? harness_gate_claim(hs->gate, hs->last) : hs->last + 1;
    if (hs->gate != NULL && !harness_gate_room(hs->gate, i))
      return false;
    hs->index = hs->last = i;
  }
  int ev = hs->event;
  hs->event = EV_NONE;
  if (ev == EV_COMPLETE) {
    if (hs->mode == MODE_HEAD)
      give_up(st, ctx);
    hs->mode = MODE_PASS;
    return true;
  }
  /* A message begins: collect its head before deciding, so that bytes that
   * turn out not to be HTTP are passed on unchanged, never answered for. */
  hs->messages++;
  if (t->type->id == TOXIC_HTTP_LATENCY) {
    int64_t delay = t->attr[0];
    if (t->attr[1] > 0)
      delay += rng_range(&st->rng, -t->attr[1], t->attr[1]);
    hs->deadline = ctx->now + MS(delay < 0 ? 0 : delay);
  }
  hs->mode = MODE_HEAD;
  head_done(hs);
  return true;
}

int harness_http_toxic_step(stage_t *st, step_ctx_t *ctx) {
  http_state_t *hs = state(st, ctx);
  if (hs == NULL) {
    /* Out of memory: without its parser the toxic would let the bytes pass
     * unaltered; they are dropped and the connection reset instead. */
    if (ctx->in->head == NULL)
      return STEP_IDLE;
    while (ctx->in->head != NULL)
      harness_step_drop(ctx);
    harness_step_emit_reset(ctx);
    return STEP_PROGRESS;
  }
  int r = STEP_IDLE;
  for (;;) {
    /* An event found at the start of the head chunk (or after the last
     * byte of the queue) applies before anything else. */
    if (hs->event != EV_NONE && hs->scanned == 0) {
      if (!on_event(st, ctx))
        break;
      r = STEP_PROGRESS;
      continue;
    }
    chunk_t *c = ctx->in->head;
    if (c == NULL) {
      /* A held message may fall due with nothing new behind it. */
      if (hs->mode == MODE_HOLD && hs->head.len > 0 && release_hold(st, ctx))
        r = STEP_PROGRESS;
      break;
    }
    if (hs->seeking) {
      if (!seek(st, ctx, c))
        break;
      r = STEP_PROGRESS;
      continue;
    }
    if (hs->lost || c->kind != CHUNK_DATA) {
      if (!release_hold(st, ctx))
        break;
      if (hs->mode != MODE_PASS && hs->mode != MODE_HOLD)
        give_up(st, ctx);
      if (!harness_step_room(ctx))
        break;
      harness_step_pass(ctx);
      hs->scanned = 0;
      r = STEP_PROGRESS;
      continue;
    }
    if (hs->event == EV_NONE && hs->scanned < c->len) {
      const char *p = c->blk->data + c->off + hs->scanned;
      llhttp_errno_t e = llhttp_execute(&hs->parser, p, c->len - hs->scanned);
      if (e == HPE_OK) {
        hs->scanned = c->len;
      } else if (e == HPE_PAUSED) {
        const char *pos = llhttp_get_error_pos(&hs->parser);
        hs->scanned = (size_t)(pos - (c->blk->data + c->off));
        llhttp_resume(&hs->parser);
      } else {
        /* Not HTTP (or a protocol switch): step aside for good. */
        if (hs->mode == MODE_HEAD || hs->mode == MODE_HOLD)
          give_up(st, ctx);
        hs->lost = true;
        hs->mode = MODE_PASS;
        continue;
      }
    }
    if (hs->scanned > 0) {
      if (!consume(st, ctx, hs->scanned))
        break;
      r = STEP_PROGRESS;
    }
  }
  return r;
}
