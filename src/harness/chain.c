/*
 * chain.c: chunks, queues and the step helpers toxics move bytes with. No
 * sockets, timers or loop here (see chain.h); link.c and the unit tests link
 * this same file.
 */
#include "chain.h"

#include <stdlib.h>
#include <string.h>

#include "gate.h"
#include "link.h"

/* ---- chunks and queues --------------------------------------------------- */

void block_unref(block_t *b) {
  if (b != NULL && --b->refs == 0)
    free(b);
}

block_t *block_new(const char *p, size_t n) {
  block_t *b = malloc(sizeof(block_t) + n);
  if (b == NULL)
    return NULL;
  b->refs = 1;
  memcpy(b->data, p, n);
  return b;
}

chunk_t *chunk_new(int kind, hdir_t *d, uint64_t t) {
  chunk_t *c = calloc(1, sizeof(*c));
  if (c == NULL)
    return NULL;
  c->kind = kind;
  c->dir = d;
  c->t = t;
  c->pos = CHUNK_NOPOS;
  return c;
}

void chunk_free(chunk_t *c) {
  block_unref(c->blk);
  free(c);
}

void chunk_skip(chunk_t *c, size_t n) {
  c->off += n;
  c->len -= n;
  if (c->pos != CHUNK_NOPOS)
    c->pos += n;
}

void queue_push(queue_t *q, chunk_t *c) {
  c->next = NULL;
  if (q->tail)
    q->tail->next = c;
  else
    q->head = c;
  q->tail = c;
  q->count++;
}

void queue_push_front(queue_t *q, chunk_t *c) {
  c->next = q->head;
  q->head = c;
  if (q->tail == NULL)
    q->tail = c;
  q->count++;
}

chunk_t *queue_pop(queue_t *q) {
  chunk_t *c = q->head;
  if (c == NULL)
    return NULL;
  q->head = c->next;
  if (q->head == NULL)
    q->tail = NULL;
  q->count--;
  c->next = NULL;
  return c;
}

void queue_splice(queue_t *to, queue_t *from) {
  if (from->head == NULL)
    return;
  if (to->tail)
    to->tail->next = from->head;
  else
    to->head = from->head;
  to->tail = from->tail;
  to->count += from->count;
  from->head = from->tail = NULL;
  from->count = 0;
}

void queue_clear(hdir_t *d, queue_t *q) {
  chunk_t *c;
  while ((c = queue_pop(q)) != NULL) {
    if (c->kind == CHUNK_DATA)
      d->buffered -= c->len;
    chunk_free(c);
  }
}

/* ---- the chain as a whole ------------------------------------------------ */

/* Where the connection's gate is kept: on its downstream direction (gate.h). */
static struct gate **gate_slot(hdir_t *d) {
  return d->stream == STREAM_DOWNSTREAM ? &d->gate : &d->peer->gate;
}

queue_t *chain_in(hdir_t *d) {
  return d->nstages > 0 ? &d->stages[0]->in : &d->out;
}

int chain_read(hdir_t *d, chunk_t *ch, bool first) {
  if (ch->kind == CHUNK_DATA) {
    struct gate **gp = gate_slot(d);
    if ((first || *gp != NULL) && /* HTTP framing, followed from the first byte */
        gate_read(gp, d->stream, first, ch->blk, ch->off, ch->len, ch->pos) != 0)
      return -1;
    d->buffered += ch->len;
  }
  queue_push(chain_in(d), ch);
  return 0;
}

int chain_step(hdir_t *d, step_ctx_t *ctx) {
  int r = STEP_IDLE;
  for (size_t k = 0; k < d->nstages; k++) {
    ctx->in = &d->stages[k]->in;
    ctx->out = k + 1 < d->nstages ? &d->stages[k + 1]->in : &d->out;
    int s = toxic_step(d->stages[k], ctx);
    if (s == STEP_CLOSE || s == STEP_RESET)
      return s;
    if (s == STEP_PROGRESS)
      r = STEP_PROGRESS;
  }
  return r;
}

void chain_end_when_flushed(hdir_t *d, bool reset, uint64_t now) {
  d->close_when_flushed = true;
  d->reset_when_flushed = reset;
  d->flush_deadline = now + CHAIN_FLUSH_WAIT_NS;
}

/* ---- helpers for toxics -------------------------------------------------- */

bool step_room(const step_ctx_t *ctx) {
  return ctx->out->count < LINK_QUEUE_MAX;
}

void step_pass(step_ctx_t *ctx) {
  chunk_t *c = queue_pop(ctx->in);
  c->t = ctx->now;
  queue_push(ctx->out, c);
}

void step_pass_part(step_ctx_t *ctx, size_t n) {
  chunk_t *head = ctx->in->head;
  if (n >= head->len) {
    step_pass(ctx);
    return;
  }
  chunk_t *c = chunk_new(CHUNK_DATA, ctx->dir, ctx->now);
  if (c == NULL) { /* out of memory: pass it whole rather than lose bytes */
    step_pass(ctx);
    return;
  }
  c->blk = head->blk;
  c->blk->refs++;
  c->off = head->off;
  c->len = n;
  c->pos = head->pos;
  chunk_skip(head, n);
  queue_push(ctx->out, c);
}

void step_drop(step_ctx_t *ctx) {
  chunk_t *c = queue_pop(ctx->in);
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
  chunk_skip(head, n);
  ctx->dir->buffered -= n;
}

/* Out of memory in a toxic: a marker or bytes it meant to send cannot be
 * queued. The direction ends (reset, or closed for a lost CLOSE) once what is
 * being written has gone, rather than hang or go on short of bytes a client
 * would wait for. */
static void out_of_memory(step_ctx_t *ctx, bool reset) {
  chain_end_when_flushed(ctx->dir, reset, ctx->now);
}

static void emit_marker(step_ctx_t *ctx, int kind) {
  chunk_t *c = chunk_new(kind, ctx->dir, ctx->now);
  if (c == NULL) {
    out_of_memory(ctx, kind == CHUNK_RESET);
    return;
  }
  queue_push(ctx->out, c);
}

void step_emit_close(step_ctx_t *ctx) {
  emit_marker(ctx, CHUNK_CLOSE);
}

void step_emit_reset(step_ctx_t *ctx) {
  emit_marker(ctx, CHUNK_RESET);
}

bool step_can_generate(const step_ctx_t *ctx) {
  return step_room(ctx) && ctx->dir->buffered < LINK_BUFFER_MAX;
}

/* A data chunk owning a copy of p[0..n), counted in d; NULL out of memory. */
static chunk_t *copy_chunk(hdir_t *d, const char *p, size_t n, uint64_t t) {
  chunk_t *c = chunk_new(CHUNK_DATA, d, t);
  block_t *b = block_new(p, n);
  if (c == NULL || b == NULL) {
    free(c);
    free(b);
    return NULL;
  }
  c->blk = b;
  c->len = n;
  d->buffered += n;
  return c;
}

void step_emit_bytes(step_ctx_t *ctx, const char *p, size_t n) {
  step_emit_copy(ctx, p, n, CHUNK_NOPOS);
}

void step_emit_copy(step_ctx_t *ctx, const char *p, size_t n, uint64_t pos) {
  chunk_t *c = copy_chunk(ctx->dir, p, n, ctx->now);
  if (c == NULL) {
    out_of_memory(ctx, true);
    return;
  }
  c->pos = pos;
  queue_push(ctx->out, c);
}

struct gate *step_gate(step_ctx_t *ctx) {
  return *gate_slot(ctx->dir);
}

void step_answer_back(step_ctx_t *ctx, const char *p, size_t n, uint64_t need) {
  hdir_t *other = ctx->dir->peer;
  chunk_t *c = copy_chunk(other, p, n, ctx->now);
  if (c == NULL) {
    out_of_memory(ctx, true); /* the client would wait for this answer for ever */
    return;
  }
  if (other->gate == NULL)
    other->gate = gate_new();
  if (other->gate != NULL)
    gate_push(other->gate, c, need, ctx->now);
  else
    queue_push(&other->out, c); /* no gate (out of memory): unordered, but delivered */
  /* Not pumped from here: this direction's pump is running. */
  other->woken = true;
}

void step_wake_at(step_ctx_t *ctx, uint64_t t) {
  if (t < ctx->wake)
    ctx->wake = t;
}
