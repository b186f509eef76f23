/*
 * toxics.c: what each toxic does to the bytes of one direction. A step moves
 * what it may from its input queue to the next queue and, when it must wait,
 * says until when. Times are nanoseconds on uv_hrtime's clock.
 *
 * Semantics follow Toxiproxy 2.12 (its toxics directory) except where noted:
 *  - latency: each chunk leaves `latency` ± `jitter` ms after it reached this
 *    toxic (Toxiproxy counts from when the proxy read it, so two stacked
 *    latency toxics do not add up there; here they do). Order is kept.
 *  - bandwidth: `rate` KB/s with KB = 1000 bytes, as Toxiproxy computes it;
 *    chunks larger than 100 ms worth are split so the flow is smooth.
 *  - slicer: pieces of average_size ± size_variation bytes (at least 1),
 *    `delay` µs apart.
 *  - limit_data: pass exactly `bytes` bytes, then close the connection.
 *  - timeout: drop everything; close `timeout` ms after the last chunk (or
 *    after the toxic took effect); 0 = never close.
 *  - reset_peer: on the first data, wait `timeout` ms then reset (RST) both
 *    sides; data is dropped.
 *  - slow_close: data passes; the FIN is held `delay` ms.
 *
 * Beyond Toxiproxy:
 *  - refuse: the proxy's listener is closed while the toxic exists (clients
 *    get "connection refused"); handled in proxy.c, a no-op here.
 *  - blackhole: the connection is accepted, then neither side is read nor
 *    written: the peers' socket buffers fill. Removing it lets data flow.
 *  - accept_delay: a new connection waits `delay` ms before the upstream is
 *    dialled; handled at accept (link.c), a no-op here.
 *  - garbage: the stream's sink gets `bytes` random bytes, then the
 *    connection is closed; what the source sends is dropped.
 *  - flood: the sink gets `bytes` random bytes (0 = without end) regardless
 *    of what the source sends (dropped), then the connection is closed.
 *  - reset_after_bytes: pass `bytes` bytes, then reset (RST) both sides.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "link.h"
#include "toxic.h"

/*
 * Toxiproxy's toxics take any integer (toxic.c checks ranges only with
 * -strict-toxics), so every value read here is given a meaning first, as
 * Toxiproxy's code gives it, and kept where arithmetic cannot overflow:
 *  - a negative duration is 0 (Go's time.After fires at once); durations
 *    saturate at TIME_CAP ms or µs (~35 years: "never" for a test);
 *  - timeout <= 0 never closes; bandwidth rate <= 0 passes everything;
 *  - a slicer piece is average_size ± size_variation bytes (size_variation
 *    <= 0: no variation), at least 1 byte whatever the two say;
 *  - limit_data bytes <= 0 passes nothing and closes at the first data.
 */
#define TIME_CAP (INT64_C(1) << 40)
#define SIZE_CAP (INT64_C(1) << 40) /* bytes: more than any chunk */

static int64_t clamp64(int64_t v, int64_t lo, int64_t hi) {
  return v < lo ? lo : v > hi ? hi : v;
}

/* ms or µs (negative: 0) as ns, saturated */
static uint64_t ms_ns(int64_t ms) {
  return (uint64_t)clamp64(ms, 0, TIME_CAP) * UINT64_C(1000000);
}
static uint64_t us_ns(int64_t us) {
  return (uint64_t)clamp64(us, 0, TIME_CAP) * UINT64_C(1000);
}

/* v ± spread (spread <= 0: v), both clamped to ±cap first: no overflow */
static int64_t vary(uint64_t *rng, int64_t v, int64_t spread, int64_t cap) {
  v = clamp64(v, -cap, cap);
  if (spread > 0) {
    spread = clamp64(spread, 0, cap);
    v += rng_range(rng, -spread, spread);
  }
  return v;
}

void harness_toxic_stage_init(stage_t *st, uint64_t now) {
  (void)now;
  st->deadline = 0;
  st->action_at = 0;
  st->next_free = 0;
  st->count = 0;
  st->done = false;
}

/* An inactive toxic (lost the toxicity roll) lets everything through. */
static int pass_all(step_ctx_t *ctx) {
  int r = STEP_IDLE;
  while (ctx->in->head != NULL && harness_step_room(ctx)) {
    harness_step_pass(ctx);
    r = STEP_PROGRESS;
  }
  return r;
}

static int step_latency(stage_t *st, step_ctx_t *ctx) {
  int r = STEP_IDLE;
  const toxic_t *t = st->toxic;
  while (ctx->in->head != NULL && harness_step_room(ctx)) {
    chunk_t *c = ctx->in->head;
    if (c->kind != CHUNK_DATA) {
      harness_step_pass(ctx);
      r = STEP_PROGRESS;
      continue;
    }
    if (st->deadline == 0) {
      st->deadline = c->t + ms_ns(vary(&st->rng, t->attr[0], t->attr[1], TIME_CAP));
      if (st->deadline < st->next_free) /* keep order: never before the previous one */
        st->deadline = st->next_free;
    }
    if (ctx->now < st->deadline) {
      harness_step_wake_at(ctx, st->deadline);
      break;
    }
    st->next_free = st->deadline;
    st->deadline = 0;
    harness_step_pass(ctx);
    r = STEP_PROGRESS;
  }
  return r;
}

static int step_bandwidth(stage_t *st, step_ctx_t *ctx) {
  int r = STEP_IDLE;
  int64_t rate = st->toxic->attr[0]; /* KB/s */
  if (rate <= 0)
    return pass_all(ctx); /* no limit, as in Toxiproxy */
  /* 100 ms worth (saturated: any chunk is less) */
  uint64_t piece_max = (uint64_t)rate > UINT64_MAX / 100 ? UINT64_MAX : (uint64_t)rate * 100;
  while (ctx->in->head != NULL && harness_step_room(ctx)) {
    chunk_t *c = ctx->in->head;
    if (c->kind != CHUNK_DATA) {
      harness_step_pass(ctx);
      r = STEP_PROGRESS;
      continue;
    }
    size_t n = c->len < piece_max ? c->len : (size_t)piece_max;
    if (st->deadline == 0) {
      uint64_t start = c->t > st->next_free ? c->t : st->next_free;
      /* n bytes at rate*1000 bytes/s take n * 1e6 / rate ns */
      st->deadline = start + (uint64_t)n * UINT64_C(1000000) / (uint64_t)rate;
    }
    if (ctx->now < st->deadline) {
      harness_step_wake_at(ctx, st->deadline);
      break;
    }
    st->next_free = st->deadline;
    st->deadline = 0;
    harness_step_pass_part(ctx, n);
    r = STEP_PROGRESS;
  }
  return r;
}

static int step_slicer(stage_t *st, step_ctx_t *ctx) {
  int r = STEP_IDLE;
  const toxic_t *t = st->toxic;
  while (ctx->in->head != NULL && harness_step_room(ctx)) {
    chunk_t *c = ctx->in->head;
    if (c->kind != CHUNK_DATA) {
      harness_step_pass(ctx);
      r = STEP_PROGRESS;
      continue;
    }
    if (st->deadline != 0 && ctx->now < st->deadline) {
      harness_step_wake_at(ctx, st->deadline);
      break;
    }
    int64_t size = vary(&st->rng, t->attr[0], t->attr[1], SIZE_CAP);
    if (size < 1)
      size = 1; /* never an empty piece, whatever average_size and size_variation say */
    harness_step_pass_part(ctx, (size_t)size);
    st->deadline = t->attr[2] > 0 ? ctx->now + us_ns(t->attr[2]) : 0;
    r = STEP_PROGRESS;
  }
  return r;
}

/* Passes `attr[0]` bytes, then ends the stream: with a FIN (limit_data) or a
 * RST (reset_after_bytes); whatever comes after is dropped. */
static int step_pass_then_end(stage_t *st, step_ctx_t *ctx, bool reset) {
  int r = STEP_IDLE;
  int64_t limit = st->toxic->attr[0];
  while (ctx->in->head != NULL) {
    chunk_t *c = ctx->in->head;
    if (st->done) {
      harness_step_drop(ctx);
      r = STEP_PROGRESS;
      continue;
    }
    if (!harness_step_room(ctx))
      break;
    if (c->kind != CHUNK_DATA) {
      harness_step_pass(ctx);
      r = STEP_PROGRESS;
      continue;
    }
    int64_t left = limit - st->count;
    if (left > 0) {
      size_t n = (uint64_t)left < c->len ? (size_t)left : c->len;
      st->count += (int64_t)n;
      harness_step_pass_part(ctx, n);
      r = STEP_PROGRESS;
    }
    if (st->count >= limit) {
      st->done = true;
      if (reset)
        harness_step_emit_reset(ctx);
      else
        harness_step_emit_close(ctx);
      r = STEP_PROGRESS;
    }
  }
  return r;
}

static int step_limit_data(stage_t *st, step_ctx_t *ctx) {
  return step_pass_then_end(st, ctx, false);
}

static int step_timeout(stage_t *st, step_ctx_t *ctx) {
  int64_t ms = st->toxic->attr[0];
  int r = STEP_IDLE;
  if (ms > 0 && st->action_at == 0)
    st->action_at = ctx->now + ms_ns(ms);
  while (ctx->in->head != NULL) {
    if (ctx->in->head->kind != CHUNK_DATA)
      return STEP_CLOSE; /* the peer closed: so do we (Toxiproxy does the same) */
    harness_step_drop(ctx);
    if (ms > 0)
      st->action_at = ctx->now + ms_ns(ms);
    r = STEP_PROGRESS;
  }
  if (ms > 0) {
    if (ctx->now >= st->action_at)
      return STEP_CLOSE;
    harness_step_wake_at(ctx, st->action_at);
  }
  return r;
}

static int step_reset_peer(stage_t *st, step_ctx_t *ctx) {
  int r = STEP_IDLE;
  while (ctx->in->head != NULL) {
    if (!st->done) {
      st->done = true;
      st->action_at = ctx->now + ms_ns(st->toxic->attr[0]);
    }
    harness_step_drop(ctx);
    r = STEP_PROGRESS;
  }
  if (st->done) {
    if (ctx->now >= st->action_at)
      return STEP_RESET;
    harness_step_wake_at(ctx, st->action_at);
  }
  return r;
}

static int step_slow_close(stage_t *st, step_ctx_t *ctx) {
  int r = STEP_IDLE;
  while (ctx->in->head != NULL && harness_step_room(ctx)) {
    chunk_t *c = ctx->in->head;
    if (c->kind == CHUNK_EOF) {
      uint64_t due = c->t + ms_ns(st->toxic->attr[0]);
      if (ctx->now < due) {
        harness_step_wake_at(ctx, due);
        break;
      }
    }
    harness_step_pass(ctx);
    r = STEP_PROGRESS;
  }
  return r;
}

void harness_toxic_stage_free(stage_t *st) {
  harness_http_toxic_free(st);
  harness_toxic_free(st->retired);
  st->retired = NULL;
}

bool harness_toxic_stage_blocks_reading(const stage_t *st) {
  return st->active && st->toxic->type->id == TOXIC_BLACKHOLE;
}

int64_t harness_toxic_stage_accept_delay(const stage_t *st) {
  return st->active && st->toxic->type->id == TOXIC_ACCEPT_DELAY ? st->toxic->attr[0] : 0;
}

/* garbage and flood: count (st->count) bytes generated so far. */
static int step_generate(stage_t *st, step_ctx_t *ctx, int64_t total, bool endless) {
  int r = STEP_IDLE;
  while (ctx->in->head != NULL) { /* the source's bytes go nowhere */
    harness_step_drop(ctx);
    r = STEP_PROGRESS;
  }
  if (st->done)
    return r;
  char buf[16384];
  while (harness_step_can_generate(ctx) && (endless || st->count < total)) {
    size_t n = sizeof(buf);
    if (!endless && (int64_t)n > total - st->count)
      n = (size_t)(total - st->count);
    for (size_t i = 0; i < n; i += 8) {
      uint64_t v = rng_next(&st->rng);
      memcpy(buf + i, &v, n - i < 8 ? n - i : 8);
    }
    harness_step_emit_bytes(ctx, buf, n);
    st->count += (int64_t)n;
    r = STEP_PROGRESS;
  }
  if (!endless && st->count >= total && harness_step_room(ctx)) {
    st->done = true;
    harness_step_emit_close(ctx);
    r = STEP_PROGRESS;
  }
  return r;
}

static int step_reset_after_bytes(stage_t *st, step_ctx_t *ctx) {
  return step_pass_then_end(st, ctx, true);
}

int harness_toxic_step(stage_t *st, step_ctx_t *ctx) {
  if (!st->active)
    return pass_all(ctx);
  switch (st->toxic->type->id) {
  case TOXIC_LATENCY:
    return step_latency(st, ctx);
  case TOXIC_BANDWIDTH:
    return step_bandwidth(st, ctx);
  case TOXIC_SLICER:
    return step_slicer(st, ctx);
  case TOXIC_LIMIT_DATA:
    return step_limit_data(st, ctx);
  case TOXIC_TIMEOUT:
    return step_timeout(st, ctx);
  case TOXIC_RESET_PEER:
    return step_reset_peer(st, ctx);
  case TOXIC_SLOW_CLOSE:
    return step_slow_close(st, ctx);
  case TOXIC_BLACKHOLE:
    return STEP_IDLE; /* holds everything; link.c stops reading */
  case TOXIC_GARBAGE:
    return step_generate(st, ctx, st->toxic->attr[0], false);
  case TOXIC_FLOOD:
    return step_generate(st, ctx, st->toxic->attr[0], st->toxic->attr[0] == 0);
  case TOXIC_RESET_AFTER_BYTES:
    return step_reset_after_bytes(st, ctx);
  case TOXIC_HTTP_STATUS:
  case TOXIC_HTTP_LATENCY:
  case TOXIC_HTTP_CONTENT_TYPE:
  case TOXIC_HTTP_DROP_FIRST_N:
    return harness_http_toxic_step(st, ctx);
  default:
    return pass_all(ctx);
  }
}
