/*
 * Unit tests of src/harness/toxics.c: each toxic's step function driven by a
 * hand-moved clock, asserting exact release times, sizes and actions. The
 * queue helpers of link.c are replaced here by plain versions without
 * sockets (H2O style: include the .c under test).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../toxics.c"

#define MSEC(x) ((uint64_t)(x)*UINT64_C(1000000))

/* ---- stand-ins for link.c ------------------------------------------------ */

static void q_push(queue_t *q, chunk_t *c) {
  c->next = NULL;
  if (q->tail)
    q->tail->next = c;
  else
    q->head = c;
  q->tail = c;
  q->count++;
}

static chunk_t *q_pop(queue_t *q) {
  chunk_t *c = q->head;
  if (c == NULL)
    return NULL;
  q->head = c->next;
  if (q->head == NULL)
    q->tail = NULL;
  q->count--;
  return c;
}

static void chunk_free(chunk_t *c) {
  if (c->blk && --c->blk->refs == 0)
    free(c->blk);
  free(c);
}

bool step_room(const step_ctx_t *ctx) {
  return ctx->out->count < LINK_QUEUE_MAX;
}

void step_pass(step_ctx_t *ctx) {
  chunk_t *c = q_pop(ctx->in);
  c->t = ctx->now;
  q_push(ctx->out, c);
}

void step_pass_part(step_ctx_t *ctx, size_t n) {
  chunk_t *head = ctx->in->head;
  if (n >= head->len) {
    step_pass(ctx);
    return;
  }
  chunk_t *c = calloc(1, sizeof(*c));
  c->kind = CHUNK_DATA;
  c->blk = head->blk;
  c->blk->refs++;
  c->off = head->off;
  c->len = n;
  c->t = ctx->now;
  head->off += n;
  head->len -= n;
  q_push(ctx->out, c);
}

void step_drop(step_ctx_t *ctx) {
  chunk_t *c = q_pop(ctx->in);
  if (c->kind == CHUNK_DATA)
    ctx->dir->buffered -= c->len;
  chunk_free(c);
}

void step_drop_part(step_ctx_t *ctx, size_t n) {
  chunk_t *head = ctx->in->head;
  if (n >= head->len) {
    step_drop(ctx);
    return;
  }
  head->off += n;
  head->len -= n;
  ctx->dir->buffered -= n;
}

static void marker(step_ctx_t *ctx, int kind) {
  chunk_t *c = calloc(1, sizeof(*c));
  c->kind = kind;
  c->t = ctx->now;
  q_push(ctx->out, c);
}

void step_emit_close(step_ctx_t *ctx) {
  marker(ctx, CHUNK_CLOSE);
}

void step_emit_reset(step_ctx_t *ctx) {
  marker(ctx, CHUNK_RESET);
}

bool step_can_generate(const step_ctx_t *ctx) {
  return step_room(ctx) && ctx->dir->buffered < LINK_BUFFER_MAX;
}

void step_emit_bytes(step_ctx_t *ctx, const char *p, size_t n) {
  chunk_t *c = calloc(1, sizeof(*c));
  c->blk = malloc(sizeof(block_t) + n);
  c->blk->refs = 1;
  memcpy(c->blk->data, p, n);
  c->kind = CHUNK_DATA;
  c->len = n;
  c->t = ctx->now;
  ctx->dir->buffered += n;
  q_push(ctx->out, c);
}

void step_answer_back(step_ctx_t *ctx, const char *p, size_t n, uint64_t need) {
  (void)ctx;
  (void)p;
  (void)n;
  (void)need;
}

void step_note_request(step_ctx_t *ctx, uint64_t index, bool head) {
  (void)ctx;
  (void)index;
  (void)head;
}

uint64_t step_answers_base(step_ctx_t *ctx) {
  (void)ctx;
  return 0;
}

void step_wake_at(step_ctx_t *ctx, uint64_t t) {
  if (t < ctx->wake)
    ctx->wake = t;
}

int http_toxic_step(stage_t *st, step_ctx_t *ctx) {
  (void)st;
  (void)ctx;
  return STEP_IDLE;
}

void http_toxic_free(stage_t *st) {
  (void)st;
}

/* ---- fixture ------------------------------------------------------------- */

typedef struct rig {
  toxic_t toxic;
  stage_t st;
  hdir_t dir;
  queue_t out;
  step_ctx_t ctx;
} rig_t;

static rig_t *rig_new(const char *type, int64_t a0, int64_t a1, int64_t a2) {
  rig_t *r = calloc(1, sizeof(*r));
  r->toxic.type = toxic_type_find(type);
  assert_non_null(r->toxic.type);
  r->toxic.attr[0] = a0;
  r->toxic.attr[1] = a1;
  r->toxic.attr[2] = a2;
  r->toxic.toxicity = 1;
  r->st.toxic = &r->toxic;
  r->st.active = true;
  r->st.rng = 42;
  toxic_stage_init(&r->st, 0);
  r->ctx.dir = &r->dir;
  r->ctx.in = &r->st.in;
  r->ctx.out = &r->out;
  return r;
}

static void rig_free(rig_t *r) {
  chunk_t *c;
  while ((c = q_pop(&r->st.in)) != NULL)
    chunk_free(c);
  while ((c = q_pop(&r->out)) != NULL)
    chunk_free(c);
  free(r);
}

/* Data arriving at `t`. */
static void feed(rig_t *r, uint64_t t, size_t n) {
  chunk_t *c = calloc(1, sizeof(*c));
  c->blk = malloc(sizeof(block_t) + n);
  c->blk->refs = 1;
  memset(c->blk->data, 'd', n);
  c->kind = CHUNK_DATA;
  c->len = n;
  c->t = t;
  r->dir.buffered += n;
  q_push(&r->st.in, c);
}

static void feed_eof(rig_t *r, uint64_t t) {
  chunk_t *c = calloc(1, sizeof(*c));
  c->kind = CHUNK_EOF;
  c->t = t;
  q_push(&r->st.in, c);
}

static int step_at(rig_t *r, uint64_t now) {
  r->ctx.now = now;
  r->ctx.wake = UINT64_MAX;
  return toxic_step(&r->st, &r->ctx);
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
    chunk_free(q_pop(&r->out));
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

static void inactive_passes_everything(void **state) {
  (void)state;
  rig_t *r = rig_new("latency", 1000, 0, 0);
  r->st.active = false;
  feed(r, 0, 10);
  assert_int_equal(step_at(r, 0), STEP_PROGRESS);
  assert_int_equal(r->out.count, 1);
  rig_free(r);
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
      cmocka_unit_test(inactive_passes_everything),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
