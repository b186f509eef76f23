/*
 * link.h: the pieces of a connection's data plane that toxics work on.
 *
 * Each direction of a connection is a chain: bytes read from the source go
 * into the first stage's input queue; stage k moves chunks from its queue to
 * stage k+1's (the last one to the output queue) whenever its toxic allows;
 * the writer sends the output queue to the sink. A stage that has to wait says
 * until when (ctx->wake) and one timer per direction wakes the chain.
 *
 * Bounds: a direction holds at most LINK_BUFFER_MAX bytes (counted from read
 * to write completion) and each queue at most LINK_QUEUE_MAX chunks; past
 * either, the source is not read (back pressure) and stages stop emitting.
 */
#ifndef CYNIC_HARNESS_LINK_H
#define CYNIC_HARNESS_LINK_H

#include "harness.h"

typedef struct block {
  uint32_t refs; /* chunks pointing into data */
  char data[];
} block_t;

enum { CHUNK_DATA, CHUNK_EOF, CHUNK_CLOSE };

typedef struct chunk {
  struct chunk *next;
  block_t *blk; /* NULL unless CHUNK_DATA */
  size_t off, len;
  uint64_t t;   /* ns: when the chunk entered its current queue */
  int kind;
  uv_write_t wreq;
  struct hdir *dir;
} chunk_t;

typedef struct queue {
  chunk_t *head, *tail;
  size_t count;
} queue_t;

typedef struct stage {
  toxic_t *toxic;
  bool active;        /* won the toxicity roll for this connection */
  queue_t in;
  uint64_t rng;       /* this stage's random stream */
  uint64_t deadline;  /* ns: release time of the head chunk (0 = not set) */
  uint64_t next_free; /* ns: bandwidth's line is busy until then */
  uint64_t action_at; /* ns: timeout/reset_peer fire time (0 = not armed) */
  int64_t count;      /* bytes passed (limit_data) */
  bool done;          /* limit_data reached / reset armed */
} stage_t;

typedef struct hdir {
  hconn_t *conn;
  int stream;              /* STREAM_UPSTREAM: client -> upstream */
  uv_tcp_t *src, *dst;
  stage_t *stages[HARNESS_MAX_TOXICS];
  size_t nstages;
  queue_t out;
  size_t buffered;         /* bytes read and not yet written or dropped */
  int writes;              /* uv_write requests in flight */
  bool reading;
  bool src_eof;            /* the source sent FIN */
  bool dst_shut;           /* shutdown of dst requested */
  bool eof_done;           /* shutdown of dst completed */
  bool close_when_flushed; /* a CLOSE marker reached the writer */
  uv_timer_t timer;
  uint64_t timer_at;       /* ns the timer is armed for, 0 = idle */
  uv_shutdown_t shut;
} hdir_t;

enum { STEP_IDLE = 0, STEP_PROGRESS = 1, STEP_CLOSE = 2, STEP_RESET = 3 };

typedef struct step_ctx {
  hdir_t *dir;
  queue_t *in;
  queue_t *out;
  uint64_t now;  /* ns */
  uint64_t wake; /* ns; a stage lowers it to be woken then (UINT64_MAX = never) */
} step_ctx_t;

/* Helpers for toxic step functions (link.c). */
bool step_room(const step_ctx_t *ctx);
/* Move the head chunk to the next queue. */
void step_pass(step_ctx_t *ctx);
/* Move the first n bytes of the head data chunk (n < len splits it). */
void step_pass_part(step_ctx_t *ctx, size_t n);
/* Discard the head chunk (its bytes leave the direction's count). */
void step_drop(step_ctx_t *ctx);
/* Put a CLOSE marker on the next queue (room not checked). */
void step_emit_close(step_ctx_t *ctx);
void step_wake_at(step_ctx_t *ctx, uint64_t t);

/* toxics.c: one step of a stage; STEP_* */
int toxic_step(stage_t *st, step_ctx_t *ctx);
/* Called when a stage is created for a connection. */
void toxic_stage_init(stage_t *st, uint64_t now);

#endif
