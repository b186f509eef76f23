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

void harness_block_unref(block_t *b) {
  if (b != NULL && --b->refs == 0)
    free(b);
}

block_t *harness_block_new(const char *p, size_t n) {
  block_t *b = malloc(sizeof(block_t) + n);
  if (b == NULL)
    return NULL;
  b->refs = 1;
  memcpy(b->data, p, n);
  return b;
}

chunk_t *harness_chunk_new(int kind, hdir_t *d, uint64_t t) {
  chunk_t *c = calloc(1, sizeof(*c));
  if (c == NULL)
    return NULL;
  c->kind = kind;
  c->dir = d;
  c->t = t;
  c->pos = CHUNK_NOPOS;
  return c;
}

void harness_chunk_free(chunk_t *c) {
  harness_block_unref(c->blk);
  free(c);
}

void harness_chunk_skip(chunk_t *c, size_t n) {
  c->off += n;
  c->len -= n;
  if (c->pos != CHUNK_NOPOS)
    c->pos += n;
}

void harness_queue_push(queue_t *q, chunk_t *c) {
  c->next = NULL;
  if (q->tail)
    q->tail->next = c;
  else
    q->head = c;
  q->tail = c;
  q->count++;
}

void harness_queue_push_front(queue_t *q, chunk_t *c) {
  c->next = q->head;
  q->head = c;
  if (q->tail == NULL)
    q->tail = c;
  q->count++;
}

chunk_t *harness_queue_pop(queue_t *q) {
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

void harness_queue_splice(queue_t *to, queue_t *from) {
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

void harness_queue_clear(hdir_t *d, queue_t *q) {
  chunk_t *c;
  while ((c = harness_queue_pop(q)) != NULL) {
    if (c->kind == CHUNK_DATA)
      d->buffered -= c->len;
    harness_chunk_free(c);
  }
}

/* ---- the chain as a whole ------------------------------------------------ */

/* Where the connection's gate is kept: on its downstream direction (gate.h). */
static struct gate **gate_slot(hdir_t *d) {
  return d->stream == STREAM_DOWNSTREAM ? &d->gate : &d->peer->gate;
}

queue_t *harness_chain_in(hdir_t *d) {
  return d->nstages > 0 ? &d->stages[0]->in : &d->out;
}

int harness_chain_read(hdir_t *d, chunk_t *ch, bool first) {
  if (ch->kind == CHUNK_DATA) {
    struct gate **gp = gate_slot(d);
    if ((first || *gp != NULL) && /* HTTP framing, followed from the first byte */
        harness_gate_read(gp, d->stream, first, ch->blk, ch->off, ch->len, ch->pos) != 0)
      return -1;
    d->buffered += ch->len;
  }
  harness_queue_push(harness_chain_in(d), ch);
  return 0;
}

int harness_chain_step(hdir_t *d, step_ctx_t *ctx) {
  int r = STEP_IDLE;
  for (size_t k = 0; k < d->nstages; k++) {
    ctx->in = &d->stages[k]->in;
    ctx->out = k + 1 < d->nstages ? &d->stages[k + 1]->in : &d->out;
    int s = harness_toxic_step(d->stages[k], ctx);
    if (s == STEP_CLOSE || s == STEP_RESET)
      return s;
    if (s == STEP_PROGRESS)
      r = STEP_PROGRESS;
  }
  return r;
}

chunk_t *harness_chain_next_out(hdir_t *d, uint64_t now) {
  /* A harness answer that is due goes before anything else queued. */
  chunk_t *ch = d->gate ? harness_gate_pop_due(d->gate, now) : NULL;
  if (ch == NULL)
    ch = harness_queue_pop(&d->out);
  if (ch != NULL && ch->kind == CHUNK_DATA && d->gate != NULL && !d->dst_shut) {
    /* Count the responses going out; stop at a boundary where an answer
     * falls due and send the rest after it. */
    size_t ok = harness_gate_scan(d->gate, ch->blk->data + ch->off, ch->len);
    if (ok < ch->len) {
      chunk_t *rest = calloc(1, sizeof(*rest));
      if (rest != NULL) {
        *rest = *ch;
        rest->blk->refs++;
        harness_chunk_skip(rest, ok);
        ch->len = ok;
        harness_queue_push_front(&d->out, rest);
      }
    }
  }
  return ch;
}

void harness_chain_end_when_flushed(hdir_t *d, bool reset, uint64_t now) {
  d->close_when_flushed = true;
  d->reset_when_flushed = reset;
  d->flush_deadline = now + CHAIN_FLUSH_WAIT_NS;
}

/* ---- helpers for toxics -------------------------------------------------- */

bool harness_step_room(const step_ctx_t *ctx) {
  return ctx->out->count < LINK_QUEUE_MAX;
}

void harness_step_pass(step_ctx_t *ctx) {
  chunk_t *c = harness_queue_pop(ctx->in);
  c->t = ctx->now;
  harness_queue_push(ctx->out, c);
}

void harness_step_pass_part(step_ctx_t *ctx, size_t n) {
  chunk_t *head = ctx->in->head;
  if (n >= head->len) {
    harness_step_pass(ctx);
    return;
  }
  chunk_t *c = harness_chunk_new(CHUNK_DATA, ctx->dir, ctx->now);
  if (c == NULL) { /* out of memory: pass it whole rather than lose bytes */
    harness_step_pass(ctx);
    return;
  }
  c->blk = head->blk;
  c->blk->refs++;
  c->off = head->off;
  c->len = n;
  c->pos = head->pos;
  harness_chunk_skip(head, n);
  harness_queue_push(ctx->out, c);
}

void harness_step_drop(step_ctx_t *ctx) {
  chunk_t *c = harness_queue_pop(ctx->in);
  if (c->kind == CHUNK_DATA)
    ctx->dir->buffered -= c->len;
  harness_chunk_free(c);
}

void harness_step_drop_part(step_ctx_t *ctx, size_t n) {
  chunk_t *head = ctx->in->head;
  if (n >= head->len) {
    harness_step_drop(ctx);
    return;
  }
  harness_chunk_skip(head, n);
  ctx->dir->buffered -= n;
}

/* Out of memory in a toxic: a marker or bytes it meant to send cannot be
 * queued. The direction ends (reset, or closed for a lost CLOSE) once what is
 * being written has gone, rather than hang or go on short of bytes a client
 * would wait for. */
static void out_of_memory(step_ctx_t *ctx, bool reset) {
  harness_chain_end_when_flushed(ctx->dir, reset, ctx->now);
}

static void emit_marker(step_ctx_t *ctx, int kind) {
  chunk_t *c = harness_chunk_new(kind, ctx->dir, ctx->now);
  if (c == NULL) {
    out_of_memory(ctx, kind == CHUNK_RESET);
    return;
  }
  harness_queue_push(ctx->out, c);
}

void harness_step_emit_close(step_ctx_t *ctx) {
  emit_marker(ctx, CHUNK_CLOSE);
}

void harness_step_emit_reset(step_ctx_t *ctx) {
  emit_marker(ctx, CHUNK_RESET);
}

bool harness_step_can_generate(const step_ctx_t *ctx) {
  return harness_step_room(ctx) && ctx->dir->buffered < LINK_BUFFER_MAX;
}

/* A data chunk owning a copy of p[0..n), counted in d; NULL out of memory. */
static chunk_t *copy_chunk(hdir_t *d, const char *p, size_t n, uint64_t t) {
  chunk_t *c = harness_chunk_new(CHUNK_DATA, d, t);
  block_t *b = harness_block_new(p, n);
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

void harness_step_emit_bytes(step_ctx_t *ctx, const char *p, size_t n) {
  harness_step_emit_copy(ctx, p, n, CHUNK_NOPOS);
}

void harness_step_emit_copy(step_ctx_t *ctx, const char *p, size_t n, uint64_t pos) {
  chunk_t *c = copy_chunk(ctx->dir, p, n, ctx->now);
  if (c == NULL) {
    out_of_memory(ctx, true);
    return;
  }
  c->pos = pos;
  harness_queue_push(ctx->out, c);
}

struct gate *harness_step_gate(step_ctx_t *ctx) {
  return *gate_slot(ctx->dir);
}

void harness_step_answer_back(step_ctx_t *ctx, const char *p, size_t n, uint64_t need) {
  hdir_t *other = ctx->dir->peer;
  chunk_t *c = copy_chunk(other, p, n, ctx->now);
  if (c == NULL) {
    out_of_memory(ctx, true); /* the client would wait for this answer for ever */
    return;
  }
  if (other->gate == NULL)
    other->gate = harness_gate_new();
  if (other->gate != NULL)
    harness_gate_push(other->gate, c, need, ctx->now);
  else
    harness_queue_push(&other->out, c); /* no gate (out of memory): unordered, but delivered */
  /* Not pumped from here: this direction's pump is running. */
  other->woken = true;
}

void harness_step_wake_at(step_ctx_t *ctx, uint64_t t) {
  if (t < ctx->wake)
    ctx->wake = t;
}
