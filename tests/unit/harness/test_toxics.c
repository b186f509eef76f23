/*
 * Unit tests of src/harness/toxics.c: each toxic's step function driven by a
 * hand-moved clock, asserting exact release times, sizes and actions. The
 * chunks, queues and step helpers are the real ones (chain.c, linked in, as
 * are gate.c and http_toxics.c): nothing here stands in for the data plane
 * (H2O style: include the .c under test to reach its statics).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "toxics.c" /* src/harness: the unit under test, statics included */
#include "gate.h"

#define MSEC(x) ((uint64_t)(x)*UINT64_C(1000000))

/* ---- fixture ------------------------------------------------------------- */

typedef struct rig {
  toxic_t toxic;
  stage_t st;
  hdir_t dir, peer; /* the direction under test and the connection's other one */
  queue_t out;
  step_ctx_t ctx;
} rig_t;

static rig_t *rig_new(const char *type, int64_t a0, int64_t a1, int64_t a2) {
  rig_t *r = calloc(1, sizeof(*r));
  r->toxic.type = harness_toxic_type_find(type);
  assert_non_null(r->toxic.type);
  r->toxic.attr[0] = a0;
  r->toxic.attr[1] = a1;
  r->toxic.attr[2] = a2;
  r->toxic.toxicity = 1;
  r->st.toxic = &r->toxic;
  r->st.active = true;
  r->st.rng = 42;
  harness_toxic_stage_init(&r->st, 0);
  r->dir.stream = STREAM_DOWNSTREAM;
  r->peer.stream = STREAM_UPSTREAM;
  r->dir.peer = &r->peer;
  r->peer.peer = &r->dir;
  r->ctx.dir = &r->dir;
  r->ctx.in = &r->st.in;
  r->ctx.out = &r->out;
  return r;
}

/* Frees everything still held; asserts every counted byte was accounted for. */
static void rig_free(rig_t *r) {
  harness_queue_clear(&r->dir, &r->st.in);
  harness_queue_clear(&r->dir, &r->out);
  harness_queue_clear(&r->peer, &r->peer.out);
  harness_gate_free(r->dir.gate, &r->dir);
  harness_gate_free(r->peer.gate, &r->peer);
  harness_toxic_stage_free(&r->st);
  assert_int_equal(r->dir.buffered, 0);
  assert_int_equal(r->peer.buffered, 0);
  free(r);
}

/* Data arriving at `t`. */
static void feed(rig_t *r, uint64_t t, size_t n) {
  char *bytes = malloc(n);
  assert_non_null(bytes);
  memset(bytes, 'd', n);
  chunk_t *c = harness_chunk_new(CHUNK_DATA, &r->dir, t);
  assert_non_null(c);
  c->blk = harness_block_new(bytes, n);
  assert_non_null(c->blk);
  free(bytes);
  c->len = n;
  r->dir.buffered += n;
  harness_queue_push(&r->st.in, c);
}

static void feed_eof(rig_t *r, uint64_t t) {
  chunk_t *c = harness_chunk_new(CHUNK_EOF, &r->dir, t);
  assert_non_null(c);
  harness_queue_push(&r->st.in, c);
}

static int step_at(rig_t *r, uint64_t now) {
  r->ctx.now = now;
  r->ctx.wake = UINT64_MAX;
  return harness_toxic_step(&r->st, &r->ctx);
}

/* ---- tests --------------------------------------------------------------- */

static void latency_holds_each_chunk(void **state) {
  (void)state;
  rig_t *r = rig_new("latency", 100, 0, 0);
  feed(r, MSEC(0), 10);
  feed(r, MSEC(30), 10);
  assert_int_equal(step_at(r, MSEC(30)), STEP_IDLE);
  assert_int_equal(r->ctx.wake, MSEC(100));
  assert_int_equal(step_at(r, MSEC(99)), STEP_IDLE);
  assert_int_equal(step_at(r, MSEC(100)), STEP_PROGRESS);
  assert_int_equal(r->out.count, 1);
  assert_int_equal(r->ctx.wake, MSEC(130)); /* the second, 100 ms after it came */
  assert_int_equal(step_at(r, MSEC(130)), STEP_PROGRESS);
  assert_int_equal(r->out.count, 2);
  feed_eof(r, MSEC(131)); /* a FIN is not delayed on its own */
  assert_int_equal(step_at(r, MSEC(131)), STEP_PROGRESS);
  assert_int_equal(r->out.tail->kind, CHUNK_EOF);
  rig_free(r);
}

static void latency_jitter_in_bounds_and_ordered(void **state) {
  (void)state;
  rig_t *r = rig_new("latency", 100, 50, 0);
  uint64_t last = 0;
  for (int i = 0; i < 200; i++) {
    feed(r, MSEC(i), 1);
    step_at(r, MSEC(i));
    uint64_t due = r->st.deadline;
    assert_true(due >= MSEC(i + 50) || due == last);
    assert_true(due <= MSEC(i + 150));
    assert_true(due >= last); /* order kept */
    last = due;
    assert_int_equal(step_at(r, due), STEP_PROGRESS);
    chunk_t *c = harness_queue_pop(&r->out);
    r->dir.buffered -= c->len;
    harness_chunk_free(c);
  }
  rig_free(r);
}

static void bandwidth_exact_schedule(void **state) {
  (void)state;
  rig_t *r = rig_new("bandwidth", 100, 0, 0); /* 100 KB/s = 100,000 B/s */
  feed(r, 0, 25000);                          /* pieces of 100 ms worth: 10,000 B */
  assert_int_equal(step_at(r, 0), STEP_IDLE);
  assert_int_equal(r->ctx.wake, MSEC(100));
  step_at(r, MSEC(100));
  assert_int_equal(r->out.count, 1);
  assert_int_equal(r->out.head->len, 10000);
  assert_int_equal(r->ctx.wake, MSEC(200));
  step_at(r, MSEC(200));
  assert_int_equal(r->ctx.wake, MSEC(250)); /* last 5,000 B take 50 ms */
  step_at(r, MSEC(260));                    /* late wake: no drift */
  assert_int_equal(r->out.count, 3);
  assert_int_equal(r->out.tail->len, 5000);
  feed(r, MSEC(255), 1000);
  step_at(r, MSEC(260));
  assert_int_equal(r->ctx.wake, MSEC(265)); /* arrived 255 (line free since 250) + 10 ms */
  rig_free(r);
}

static void slicer_sizes_and_spacing(void **state) {
  (void)state;
  rig_t *r = rig_new("slicer", 10, 0, 1000); /* 10 bytes every 1 ms */
  feed(r, 0, 25);
  assert_int_equal(step_at(r, 0), STEP_PROGRESS);
  assert_int_equal(r->out.count, 1);
  assert_int_equal(r->out.head->len, 10);
  assert_int_equal(r->ctx.wake, MSEC(1));
  step_at(r, MSEC(1));
  step_at(r, MSEC(2));
  assert_int_equal(r->out.count, 3);
  assert_int_equal(r->out.tail->len, 5);
  rig_free(r);
  r = rig_new("slicer", 100, 20, 0);
  feed(r, 0, 5000);
  step_at(r, 0);
  size_t total = 0;
  for (chunk_t *c = r->out.head; c; c = c->next) {
    assert_true(c->len <= 120);
    if (c->next && c->next->next) /* all but the remainder */
      assert_true(c->len >= 80);
    total += c->len;
  }
  assert_true(r->out.count >= 41 && r->out.count <= 63); /* 5000 B in 80..120 B pieces */
  assert_int_equal(total, 5000);
  rig_free(r);
}

static void limit_data_exact(void **state) {
  (void)state;
  rig_t *r = rig_new("limit_data", 15, 0, 0);
  feed(r, 0, 10);
  feed(r, 0, 10);
  feed(r, 0, 10);
  step_at(r, 0);
  assert_int_equal(r->out.count, 3);
  assert_int_equal(r->out.head->len, 10);
  assert_int_equal(r->out.head->next->len, 5);
  assert_int_equal(r->out.tail->kind, CHUNK_CLOSE);
  assert_null(r->st.in.head);            /* the rest dropped */
  assert_int_equal(r->dir.buffered, 15); /* only the passed bytes stay counted */
  rig_free(r);
}

static void timeout_closes_after_silence(void **state) {
  (void)state;
  rig_t *r = rig_new("timeout", 50, 0, 0);
  assert_int_equal(step_at(r, 0), STEP_IDLE);
  assert_int_equal(r->ctx.wake, MSEC(50));
  feed(r, MSEC(40), 10);
  assert_int_equal(step_at(r, MSEC(40)), STEP_PROGRESS); /* dropped */
  assert_int_equal(r->out.count, 0);
  assert_int_equal(r->ctx.wake, MSEC(90)); /* counted again from the last chunk */
  assert_int_equal(step_at(r, MSEC(89)), STEP_IDLE);
  assert_int_equal(step_at(r, MSEC(90)), STEP_CLOSE);
  rig_free(r);
  r = rig_new("timeout", 0, 0, 0); /* never closes */
  feed(r, 0, 10);
  step_at(r, MSEC(100000));
  assert_int_equal(r->ctx.wake, UINT64_MAX);
  rig_free(r);
}

static void reset_peer_after_first_data(void **state) {
  (void)state;
  rig_t *r = rig_new("reset_peer", 20, 0, 0);
  assert_int_equal(step_at(r, MSEC(100)), STEP_IDLE); /* nothing until data */
  assert_int_equal(r->ctx.wake, UINT64_MAX);
  feed(r, MSEC(105), 3);
  step_at(r, MSEC(105));
  assert_int_equal(r->ctx.wake, MSEC(125));
  assert_int_equal(step_at(r, MSEC(125)), STEP_RESET);
  rig_free(r);
}

static void slow_close_holds_fin(void **state) {
  (void)state;
  rig_t *r = rig_new("slow_close", 30, 0, 0);
  feed(r, 0, 5);
  feed_eof(r, MSEC(1));
  step_at(r, MSEC(1));
  assert_int_equal(r->out.count, 1); /* data went, FIN waits */
  assert_int_equal(r->ctx.wake, MSEC(31));
  step_at(r, MSEC(31));
  assert_int_equal(r->out.tail->kind, CHUNK_EOF);
  rig_free(r);
}

static void garbage_and_flood(void **state) {
  (void)state;
  rig_t *r = rig_new("garbage", 100, 0, 0);
  feed(r, 0, 7); /* the source's bytes are dropped */
  step_at(r, 0);
  assert_int_equal(r->out.count, 2);
  assert_int_equal(r->out.head->len, 100);
  assert_int_equal(r->out.tail->kind, CHUNK_CLOSE);
  rig_free(r);
  r = rig_new("flood", 0, 0, 0); /* endless, but bounded by back pressure */
  step_at(r, 0);
  assert_true(r->dir.buffered >= LINK_BUFFER_MAX);
  assert_true(r->dir.buffered < LINK_BUFFER_MAX + 16384);
  assert_true(r->out.tail->kind == CHUNK_DATA);
  rig_free(r);
}

/* Steps at `now` until the input is empty, taking the output as it comes
 * (the out queue holds LINK_QUEUE_MAX chunks); every piece must be 1..max
 * bytes. Returns the bytes passed. */
static size_t drain_pieces(rig_t *r, uint64_t now, size_t max) {
  size_t total = 0;
  for (int guard = 0; guard < 100000 && (r->st.in.head != NULL || r->out.head != NULL); guard++) {
    step_at(r, now);
    while (r->out.head != NULL) {
      chunk_t *c = harness_queue_pop(&r->out);
      if (c->kind == CHUNK_DATA) {
        assert_true(c->len >= 1 && c->len <= max);
        total += c->len;
        r->dir.buffered -= c->len;
      }
      harness_chunk_free(c);
    }
  }
  return total;
}

/* Values Toxiproxy 2.12 accepts (no range checks there) get a sane meaning:
 * no empty piece, no negative or overflowing sleep, no division by zero. */
static void edges_of_toxiproxy_values(void **state) {
  (void)state;
  /* slicer: average_size 1000 ± 1000 (Toxiproxy's client test): 1..2000 B */
  rig_t *r = rig_new("slicer", 1000, 1000, 0);
  feed(r, 0, 50000);
  assert_int_equal(drain_pieces(r, 0, 2000), 50000);
  rig_free(r);
  /* average_size 0 or below, no variation: one-byte pieces, never empty */
  int64_t avgs[] = {0, -5, INT64_MIN};
  for (size_t i = 0; i < sizeof(avgs) / sizeof(avgs[0]); i++) {
    r = rig_new("slicer", avgs[i], i == 2 ? INT64_MAX : -1, -7); /* negative delay: none */
    feed(r, 0, 300);
    assert_int_equal(drain_pieces(r, 0, i == 2 ? 300 : 1), 300);
    assert_int_equal(r->ctx.wake, UINT64_MAX);
    rig_free(r);
  }
  /* huge everything: one piece, the delay saturates instead of wrapping */
  r = rig_new("slicer", INT64_MAX, INT64_MAX, INT64_MAX);
  feed(r, 0, 300);
  step_at(r, MSEC(5));
  assert_true(r->out.count >= 1 && r->out.head->len >= 1);
  assert_true(r->st.deadline > MSEC(5) && r->st.deadline < UINT64_MAX / 2);
  rig_free(r);
  /* latency: negative is none; huge saturates (~35 years), not wrapping to "now" */
  r = rig_new("latency", -1000, -5, 0);
  feed(r, MSEC(7), 10);
  assert_int_equal(step_at(r, MSEC(7)), STEP_PROGRESS);
  rig_free(r);
  r = rig_new("latency", INT64_MAX, INT64_MAX, 0);
  feed(r, MSEC(7), 10);
  assert_int_equal(step_at(r, MSEC(7)), STEP_IDLE);
  assert_true(r->ctx.wake > MSEC(7) && r->ctx.wake <= MSEC(7) + MSEC(INT64_C(1) << 41));
  rig_free(r);
  r = rig_new("latency", 0, INT64_MAX, 0); /* jitter alone: 0 .. cap, never negative */
  for (int i = 0; i < 50; i++) {
    feed(r, MSEC(1), 1);
    step_at(r, MSEC(1));
    /* each chunk passes at once (jitter <= 0) or waits until at most the cap:
     * a wrapped negative would show as a deadline past it */
    assert_true(r->st.deadline == 0 ||
                (r->st.deadline > MSEC(1) && r->st.deadline <= MSEC(1) + MSEC(TIME_CAP)));
  }
  rig_free(r);
  /* bandwidth: rate <= 0 passes everything at once; INT64_MAX does not overflow */
  int64_t rates[] = {0, -1, INT64_MIN};
  for (size_t i = 0; i < sizeof(rates) / sizeof(rates[0]); i++) {
    r = rig_new("bandwidth", rates[i], 0, 0);
    feed(r, 0, 100000);
    assert_int_equal(step_at(r, 0), STEP_PROGRESS);
    assert_int_equal(r->out.count, 1);
    assert_int_equal(r->out.head->len, 100000);
    rig_free(r);
  }
  r = rig_new("bandwidth", INT64_MAX, 0, 0);
  feed(r, 0, 100000);
  step_at(r, 0);
  assert_int_equal(r->out.count, 1); /* 100,000 B at ~9e18 KB/s: due at once */
  rig_free(r);
  /* timeout < 0: never closes (as 0) */
  r = rig_new("timeout", -1, 0, 0);
  feed(r, 0, 10);
  assert_int_equal(step_at(r, MSEC(100000)), STEP_PROGRESS);
  assert_int_equal(r->ctx.wake, UINT64_MAX);
  rig_free(r);
  /* reset_peer, slow_close < 0: at once */
  r = rig_new("reset_peer", INT64_MIN, 0, 0);
  feed(r, MSEC(3), 1);
  assert_int_equal(step_at(r, MSEC(3)), STEP_RESET);
  rig_free(r);
  r = rig_new("slow_close", -30, 0, 0);
  feed_eof(r, MSEC(1));
  step_at(r, MSEC(1));
  assert_int_equal(r->out.tail->kind, CHUNK_EOF);
  rig_free(r);
  /* limit_data < 0: nothing passes, closed at the first data */
  r = rig_new("limit_data", -1, 0, 0);
  feed(r, 0, 10);
  step_at(r, 0);
  assert_int_equal(r->out.count, 1);
  assert_int_equal(r->out.head->kind, CHUNK_CLOSE);
  rig_free(r);
  /* noop passes everything */
  r = rig_new("noop", 0, 0, 0);
  feed(r, 0, 10);
  feed_eof(r, 0);
  step_at(r, 0);
  assert_int_equal(r->out.count, 2);
  rig_free(r);
}

static void inactive_passes_everything(void **state) {
  (void)state;
  rig_t *r = rig_new("latency", 1000, 0, 0);
  r->st.active = false;
  feed(r, 0, 10);
  assert_int_equal(step_at(r, 0), STEP_PROGRESS);
  assert_int_equal(r->out.count, 1);
  rig_free(r);
}

/* ---- chain.c itself ------------------------------------------------------ */

static void split_shares_block_and_counts(void **state) {
  (void)state;
  rig_t *r = rig_new("slicer", 4, 0, 0);
  feed(r, 0, 10);
  block_t *b = r->st.in.head->blk;
  harness_step_pass_part(&r->ctx, 4);
  assert_int_equal(r->out.count, 1);
  assert_ptr_equal(r->out.head->blk, b); /* no copy: both point into one block */
  assert_int_equal(b->refs, 2);
  assert_int_equal(r->out.head->off, 0);
  assert_int_equal(r->st.in.head->off, 4);
  assert_int_equal(r->st.in.head->len, 6);
  harness_step_drop_part(&r->ctx, 2);
  assert_int_equal(r->dir.buffered, 8);
  harness_step_pass_part(&r->ctx, 100); /* more than left: the whole chunk moves */
  assert_null(r->st.in.head);
  assert_int_equal(r->out.count, 2);
  assert_int_equal(r->out.tail->off, 6);
  assert_int_equal(r->out.tail->len, 4);
  assert_ptr_equal(r->out.tail->dir, &r->dir);
  queue_t all = {0};
  harness_queue_splice(&all, &r->out);
  assert_int_equal(all.count, 2);
  assert_null(r->out.head);
  harness_queue_clear(&r->dir, &all);
  assert_int_equal(r->dir.buffered, 0);
  rig_free(r);
}

static void answer_back_goes_through_peer_gate(void **state) {
  (void)state;
  rig_t *r = rig_new("latency", 0, 0, 0);
  r->ctx.now = MSEC(5);
  assert_null(r->peer.gate);
  harness_step_answer_back(&r->ctx, "HTTP/1.1 503 x\r\n\r\n", 18, 0); /* creates the peer's gate */
  assert_non_null(r->peer.gate);
  assert_null(r->dir.gate);
  assert_true(r->peer.woken);
  assert_int_equal(r->peer.buffered, 18);
  assert_int_equal(r->dir.buffered, 0);
  chunk_t *c = harness_gate_pop_due(r->peer.gate, MSEC(5)); /* nothing to wait for */
  assert_non_null(c);
  assert_int_equal(c->len, 18);
  assert_ptr_equal(c->dir, &r->peer);
  assert_memory_equal(c->blk->data + c->off, "HTTP/1.1 503", 12);
  r->peer.buffered -= c->len;
  harness_chunk_free(c);
  rig_free(r);
}

/* ---- toxics joining a live HTTP connection -------------------------------- */

/*
 * A whole connection's two directions with their chains, driven the way
 * link.c drives them: bytes enter through harness_chain_read (which shows them to
 * the gate, positions and all) and harness_chain_step runs the stages. Only the
 * sockets are missing: what reaches a direction's output queue is what its
 * sink would get.
 */
typedef struct conn_rig {
  hdir_t dir[2]; /* indexed by stream */
  toxic_t toxics[4];
  size_t ntoxics;
} conn_rig_t;

static conn_rig_t *conn_rig_new(void) {
  conn_rig_t *r = calloc(1, sizeof(*r));
  assert_non_null(r);
  for (int i = 0; i < 2; i++) {
    r->dir[i].stream = i;
    r->dir[i].peer = &r->dir[!i];
  }
  return r;
}

/* Add a stage of `type` at the end of `stream`'s chain, as harness_link_add_toxic
 * does (joined_live once the direction has read bytes). */
static stage_t *conn_rig_add(conn_rig_t *r, int stream, const char *type, int64_t a0, int64_t a1,
                             const char *s2) {
  assert_true(r->ntoxics < 4);
  toxic_t *t = &r->toxics[r->ntoxics++];
  t->type = harness_toxic_type_find(type);
  assert_non_null(t->type);
  snprintf(t->name, sizeof(t->name), "%s", type);
  t->stream = stream;
  t->toxicity = 1;
  t->attr[0] = a0;
  t->attr[1] = a1;
  if (s2 != NULL)
    t->str[2] = strdup(s2);
  hdir_t *d = &r->dir[stream];
  stage_t *st = calloc(1, sizeof(*st));
  assert_non_null(st);
  st->toxic = t;
  st->active = true;
  st->rng = 7;
  st->joined_live = d->bytes_read > 0;
  harness_toxic_stage_init(st, 0);
  d->stages[d->nstages++] = st;
  return st;
}

/* The source of `stream` sends s at `now` (one read). */
static void conn_rig_read(conn_rig_t *r, int stream, uint64_t now, const char *s) {
  hdir_t *d = &r->dir[stream];
  size_t n = strlen(s);
  chunk_t *c = harness_chunk_new(CHUNK_DATA, d, now);
  assert_non_null(c);
  c->blk = harness_block_new(s, n);
  assert_non_null(c->blk);
  c->len = n;
  c->pos = d->bytes_read;
  bool first = d->bytes_read == 0;
  d->bytes_read += n;
  harness_chain_read(d, c, first);
}

/* Step `stream`'s chain at `now` until it rests; the wake-up it asks for. */
static uint64_t conn_rig_run(conn_rig_t *r, int stream, uint64_t now) {
  step_ctx_t ctx = {.dir = &r->dir[stream], .now = now, .wake = UINT64_MAX};
  int s;
  while ((s = harness_chain_step(&r->dir[stream], &ctx)) == STEP_PROGRESS) {
  }
  assert_int_equal(s, STEP_IDLE);
  return ctx.wake;
}

/* What reached `stream`'s sink (its output queue) since the last call, as
 * a string; the chunks are consumed. */
static char *conn_rig_sink(conn_rig_t *r, int stream) {
  hdir_t *d = &r->dir[stream];
  size_t n = 0;
  for (chunk_t *c = d->out.head; c != NULL; c = c->next)
    n += c->len;
  char *s = calloc(1, n + 1);
  assert_non_null(s);
  size_t at = 0;
  chunk_t *c;
  while ((c = harness_queue_pop(&d->out)) != NULL) {
    if (c->kind == CHUNK_DATA) {
      memcpy(s + at, c->blk->data + c->off, c->len);
      at += c->len;
      d->buffered -= c->len;
    }
    harness_chunk_free(c);
  }
  return s;
}

static void conn_rig_free(conn_rig_t *r) {
  for (int i = 0; i < 2; i++) {
    hdir_t *d = &r->dir[i];
    for (size_t k = 0; k < d->nstages; k++) {
      harness_queue_clear(d, &d->stages[k]->in);
      harness_toxic_stage_free(d->stages[k]);
      free(d->stages[k]);
    }
    harness_queue_clear(d, &d->out);
  }
  harness_gate_free(r->dir[STREAM_DOWNSTREAM].gate, &r->dir[STREAM_DOWNSTREAM]);
  harness_gate_free(r->dir[STREAM_UPSTREAM].gate, &r->dir[STREAM_UPSTREAM]);
  for (size_t i = 0; i < r->ntoxics; i++)
    harness_toxic_release(&r->toxics[i]);
  assert_int_equal(r->dir[0].buffered, 0);
  assert_int_equal(r->dir[1].buffered, 0);
  free(r);
}

#define FAKE_REQUEST "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
#define FAKE_BODY FAKE_REQUEST FAKE_REQUEST FAKE_REQUEST

/* The harness's answer waiting in the downstream gate (popped by its
 * fallback time, so whatever it waits for): its text and its `need`. */
static char *pop_answer(conn_rig_t *r, uint64_t *need) {
  gate_t *g = r->dir[STREAM_DOWNSTREAM].gate;
  assert_non_null(g);
  chunk_t *c = harness_gate_pop_due(g, UINT64_MAX - 1);
  if (c == NULL)
    return NULL;
  char *s = strndup(c->blk->data + c->off, c->len);
  *need = c->need;
  r->dir[STREAM_DOWNSTREAM].buffered -= c->len;
  harness_chunk_free(c);
  return s;
}

/*
 * The known gap, closed: a latency stage holds the rest of a request body
 * that starts "GET / HTTP/1.1" when an http_status stage joins behind it.
 * The gate parsed past those bytes long ago (it is at the next request by
 * then), so its state says nothing about them; their stream position and
 * the gate's marks do. The body passes intact, the next request is answered.
 */
static void joining_stage_behind_held_body_acts_on_next_request(void **state) {
  (void)state;
  conn_rig_t *r = conn_rig_new();
  conn_rig_add(r, STREAM_UPSTREAM, "latency", 100, 0, NULL);
  const char *head = "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 88\r\n\r\nprefix|";
  assert_int_equal(strlen("prefix|" FAKE_BODY), 88);
  conn_rig_read(r, STREAM_UPSTREAM, MSEC(0), head);
  assert_int_equal(conn_rig_run(r, STREAM_UPSTREAM, MSEC(0)), MSEC(100));
  conn_rig_run(r, STREAM_UPSTREAM, MSEC(100));
  char *got = conn_rig_sink(r, STREAM_UPSTREAM);
  assert_string_equal(got, head); /* the head is through */
  free(got);
  conn_rig_read(r, STREAM_UPSTREAM, MSEC(150), FAKE_BODY); /* held until 250 */
  conn_rig_read(r, STREAM_UPSTREAM, MSEC(160), "GET /next HTTP/1.1\r\nHost: x\r\n\r\n");
  conn_rig_run(r, STREAM_UPSTREAM, MSEC(170));
  /* Joins now, with both chunks held ahead of it; the gate is past both. */
  stage_t *st = conn_rig_add(r, STREAM_UPSTREAM, "http_status", 503, 100, "late");
  assert_true(st->joined_live);
  assert_int_equal(conn_rig_run(r, STREAM_UPSTREAM, MSEC(170)), MSEC(250));
  conn_rig_run(r, STREAM_UPSTREAM, MSEC(250));
  got = conn_rig_sink(r, STREAM_UPSTREAM);
  assert_string_equal(got, FAKE_BODY); /* body bytes, passed intact */
  free(got);
  uint64_t need = 0;
  assert_null(pop_answer(r, &need)); /* nothing answered */
  conn_rig_run(r, STREAM_UPSTREAM, MSEC(260));
  got = conn_rig_sink(r, STREAM_UPSTREAM);
  assert_string_equal(got, ""); /* the real request does not reach the upstream */
  free(got);
  char *answer = pop_answer(r, &need);
  assert_non_null(answer);
  assert_int_equal(strncmp(answer, "HTTP/1.1 503 ", 13), 0);
  assert_non_null(strstr(answer, "\r\n\r\nlate"));
  assert_int_equal(need, 1); /* request 1: after the POST's response */
  free(answer);
  assert_null(pop_answer(r, &need));
  conn_rig_free(r);
}

/* The rule is "the first message that begins at or after the first byte the
 * stage sees": a request held whole (its first byte still ahead of the
 * joining stage) is the stage's to act on, and keeps its number. */
static void joining_stage_takes_a_request_held_whole(void **state) {
  (void)state;
  conn_rig_t *r = conn_rig_new();
  conn_rig_add(r, STREAM_UPSTREAM, "latency", 100, 0, NULL);
  conn_rig_read(r, STREAM_UPSTREAM, MSEC(0), "GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
  conn_rig_run(r, STREAM_UPSTREAM, MSEC(100));
  free(conn_rig_sink(r, STREAM_UPSTREAM));
  conn_rig_read(r, STREAM_UPSTREAM, MSEC(150), "GET /b HTTP/1.1\r\nHost: x\r\n\r\n");
  conn_rig_run(r, STREAM_UPSTREAM, MSEC(150));
  conn_rig_add(r, STREAM_UPSTREAM, "http_status", 418, 100, "b");
  conn_rig_run(r, STREAM_UPSTREAM, MSEC(250));
  char *got = conn_rig_sink(r, STREAM_UPSTREAM);
  assert_string_equal(got, "");
  free(got);
  uint64_t need = 0;
  char *answer = pop_answer(r, &need);
  assert_non_null(answer);
  assert_int_equal(strncmp(answer, "HTTP/1.1 418 ", 13), 0);
  assert_int_equal(need, 1);
  free(answer);
  conn_rig_free(r);
}

/* The downstream twin: a held response body part that starts "HTTP/1.1 200";
 * an http_status stage joining behind it replaces the next response only. */
static void joining_stage_behind_held_response_body_acts_on_next_response(void **state) {
  (void)state;
  conn_rig_t *r = conn_rig_new();
  conn_rig_add(r, STREAM_DOWNSTREAM, "latency", 100, 0, NULL);
  conn_rig_read(r, STREAM_UPSTREAM, 0, "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n");
  conn_rig_run(r, STREAM_UPSTREAM, 0);
  free(conn_rig_sink(r, STREAM_UPSTREAM));
  const char *fake = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
  char head[128];
  snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\nbody|",
           strlen("body|") + strlen(fake));
  conn_rig_read(r, STREAM_DOWNSTREAM, MSEC(0), head);
  conn_rig_run(r, STREAM_DOWNSTREAM, MSEC(100));
  char *got = conn_rig_sink(r, STREAM_DOWNSTREAM);
  assert_string_equal(got, head);
  free(got);
  conn_rig_read(r, STREAM_DOWNSTREAM, MSEC(150), fake);
  conn_rig_read(r, STREAM_DOWNSTREAM, MSEC(160), "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  conn_rig_run(r, STREAM_DOWNSTREAM, MSEC(170));
  conn_rig_add(r, STREAM_DOWNSTREAM, "http_status", 502, 100, "swapped");
  conn_rig_run(r, STREAM_DOWNSTREAM, MSEC(250));
  got = conn_rig_sink(r, STREAM_DOWNSTREAM);
  assert_string_equal(got, fake); /* the body's second part, intact */
  free(got);
  conn_rig_run(r, STREAM_DOWNSTREAM, MSEC(260));
  got = conn_rig_sink(r, STREAM_DOWNSTREAM);
  assert_int_equal(strncmp(got, "HTTP/1.1 502 ", 13), 0);
  assert_non_null(strstr(got, "\r\n\r\nswapped"));
  assert_null(strstr(got, "ok"));
  free(got);
  conn_rig_free(r);
}

/* The gate's marks: exact positions and numbers; older than the ring holds,
 * the oldest remembered is given (a real first byte, just later). */
static void gate_marks_where_messages_begin(void **state) {
  (void)state;
  conn_rig_t *r = conn_rig_new();
  const char *req = "GET /0123 HTTP/1.1\r\n\r\n"; /* 22 bytes */
  assert_int_equal(strlen(req), 22);
  conn_rig_read(r, STREAM_UPSTREAM, 0, req);
  gate_t *g = r->dir[STREAM_DOWNSTREAM].gate;
  assert_non_null(g);
  for (int i = 1; i < GATE_MARKS + 10; i++)
    conn_rig_read(r, STREAM_UPSTREAM, 0, req);
  uint64_t at = 0, last = 0;
  assert_int_equal(harness_gate_find(g, STREAM_UPSTREAM, 22 * 20 + 3, &at, &last), GATE_FOUND);
  assert_int_equal(at, 22 * 21);
  assert_int_equal(last, 20);
  assert_int_equal(harness_gate_find(g, STREAM_UPSTREAM, 1, &at, &last), GATE_FOUND);
  assert_int_equal(at, 22 * 10); /* requests 0..9 fell out of the ring */
  assert_int_equal(last, 9);
  assert_int_equal(harness_gate_find(g, STREAM_UPSTREAM, 22 * (GATE_MARKS + 10) - 5, &at, &last),
                   GATE_NOT_YET);
  assert_int_equal(at, 22 * (GATE_MARKS + 10)); /* none yet, up to where it has read */
  /* Responses: a 100 Continue counts as a message of its own. */
  conn_rig_read(r, STREAM_DOWNSTREAM, 0, "HTTP/1.1 100 Continue\r\n\r\n"); /* 25 bytes */
  conn_rig_read(r, STREAM_DOWNSTREAM, 0, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  assert_int_equal(harness_gate_find(g, STREAM_DOWNSTREAM, 0, &at, &last), GATE_FOUND);
  assert_int_equal(at, 0);
  assert_int_equal(last, GATE_NONE);
  assert_int_equal(harness_gate_find(g, STREAM_DOWNSTREAM, 1, &at, &last), GATE_FOUND);
  assert_int_equal(at, 25);
  assert_int_equal(last, GATE_NONE); /* the interim answered no request */
  conn_rig_read(r, STREAM_DOWNSTREAM, 0, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  assert_int_equal(harness_gate_find(g, STREAM_DOWNSTREAM, 26, &at, &last), GATE_FOUND);
  assert_int_equal(last, 0);
  /* Not HTTP any more: what it remembers still holds, nothing after. (The
   * bytes that failed have a mark: a stage starting there fails the same way
   * and steps aside too.) */
  conn_rig_read(r, STREAM_DOWNSTREAM, 0, "\x01garbage");
  assert_int_equal(harness_gate_find(g, STREAM_DOWNSTREAM, 26, &at, &last), GATE_FOUND);
  assert_int_equal(at, 25 + 38);
  assert_int_equal(harness_gate_find(g, STREAM_DOWNSTREAM, 25 + 38 * 2 + 1, &at, &last),
                   GATE_NEVER);
  conn_rig_free(r);
}

/* A 1xx ends at its head whatever its Content-Length says (RFC 9112 6.3):
 * the final response begins right after it, on both the upstream's and the
 * client's side of the gate. */
static void gate_ends_an_interim_at_its_head(void **state) {
  (void)state;
  conn_rig_t *r = conn_rig_new();
  conn_rig_read(r, STREAM_UPSTREAM, 0, "GET / HTTP/1.1\r\n\r\n");
  gate_t *g = r->dir[STREAM_DOWNSTREAM].gate;
  assert_non_null(g);
  const char *early = "HTTP/1.1 103 Early Hints\r\nContent-Length: 4\r\n\r\n";
  conn_rig_read(r, STREAM_DOWNSTREAM, 0, early);
  conn_rig_read(r, STREAM_DOWNSTREAM, 0, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  uint64_t at = 0, last = 0;
  assert_int_equal(harness_gate_find(g, STREAM_DOWNSTREAM, 1, &at, &last), GATE_FOUND);
  assert_int_equal(at, strlen(early)); /* not 4 bytes later, inside the final head */
  assert_int_equal(last, GATE_NONE);
  conn_rig_free(r);
}

/* The gate stops following requests when GATE_WINDOW are outstanding; a
 * joining stage whose bytes reach past that point passes what the gate has
 * followed and waits for the rest (never guesses), and goes on when a
 * response moves the window. */
static void joining_stage_waits_where_the_gate_paused(void **state) {
  (void)state;
  conn_rig_t *r = conn_rig_new();
  conn_rig_add(r, STREAM_UPSTREAM, "latency", 100, 0, NULL);
  static char gets[18 * (GATE_WINDOW - 1) + 1]; /* requests 0..254, pipelined */
  for (int i = 0; i < GATE_WINDOW - 1; i++)
    memcpy(gets + 18 * i, "GET / HTTP/1.1\r\n\r\n", 18);
  conn_rig_read(r, STREAM_UPSTREAM, 0, gets);
  const char *post = "POST /last HTTP/1.1\r\nContent-Length: 10\r\n\r\n12345";
  conn_rig_read(r, STREAM_UPSTREAM, 0, post); /* request 255 */
  conn_rig_run(r, STREAM_UPSTREAM, MSEC(100));
  free(conn_rig_sink(r, STREAM_UPSTREAM));
  gate_t *g = r->dir[STREAM_DOWNSTREAM].gate;
  assert_false(harness_gate_full(g));
  /* The body's end completes request 255: the window is full there, and the
   * gate stops before the request after it. */
  conn_rig_read(r, STREAM_UPSTREAM, MSEC(150), "67890GET /after HTTP/1.1\r\n\r\n");
  assert_true(harness_gate_full(g));
  conn_rig_add(r, STREAM_UPSTREAM, "http_status", 503, 100, "late");
  conn_rig_run(r, STREAM_UPSTREAM, MSEC(250));
  char *got = conn_rig_sink(r, STREAM_UPSTREAM);
  assert_string_equal(got, "67890"); /* followed: body; the rest waits */
  free(got);
  assert_int_equal(r->dir[STREAM_UPSTREAM].stages[1]->in.count, 1);
  /* A response goes out to the client: the window moves, the gate follows
   * the next request and says so. */
  const char *resp = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
  assert_int_equal(harness_gate_scan(g, resp, strlen(resp)), strlen(resp));
  assert_true(harness_gate_take_moved(g));
  conn_rig_run(r, STREAM_UPSTREAM, MSEC(250));
  got = conn_rig_sink(r, STREAM_UPSTREAM);
  assert_string_equal(got, ""); /* request 256 answered, not forwarded */
  free(got);
  uint64_t need = 0;
  char *answer = pop_answer(r, &need);
  assert_non_null(answer);
  assert_int_equal(strncmp(answer, "HTTP/1.1 503 ", 13), 0);
  assert_int_equal(need, GATE_WINDOW);
  free(answer);
  conn_rig_free(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(latency_holds_each_chunk),
      cmocka_unit_test(latency_jitter_in_bounds_and_ordered),
      cmocka_unit_test(bandwidth_exact_schedule),
      cmocka_unit_test(slicer_sizes_and_spacing),
      cmocka_unit_test(limit_data_exact),
      cmocka_unit_test(timeout_closes_after_silence),
      cmocka_unit_test(reset_peer_after_first_data),
      cmocka_unit_test(slow_close_holds_fin),
      cmocka_unit_test(garbage_and_flood),
      cmocka_unit_test(edges_of_toxiproxy_values),
      cmocka_unit_test(inactive_passes_everything),
      cmocka_unit_test(split_shares_block_and_counts),
      cmocka_unit_test(answer_back_goes_through_peer_gate),
      cmocka_unit_test(joining_stage_behind_held_body_acts_on_next_request),
      cmocka_unit_test(joining_stage_takes_a_request_held_whole),
      cmocka_unit_test(joining_stage_behind_held_response_body_acts_on_next_response),
      cmocka_unit_test(gate_marks_where_messages_begin),
      cmocka_unit_test(gate_ends_an_interim_at_its_head),
      cmocka_unit_test(joining_stage_waits_where_the_gate_paused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
