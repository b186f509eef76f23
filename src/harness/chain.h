/*
 * chain.h: the socket-free half of a connection's data plane: chunks, the
 * queues between toxic stages, and the helpers a toxic's step function uses
 * to move bytes from its input queue to the next one.
 *
 * Each direction of a connection is a chain: bytes read from the source go
 * into the first stage's input queue; stage k moves chunks from its queue to
 * stage k+1's (the last one to the output queue) whenever its toxic allows;
 * link.c's writer sends the output queue to the sink. A stage that has to
 * wait says until when (ctx->wake) and link.c's timer wakes the chain.
 *
 * Nothing here touches a socket, a timer or the loop, so the unit tests
 * (tests/unit/harness/test_toxics.c) drive the real code with a hand-moved
 * clock. The only state shared with link.c is the direction (hdir_t, in
 * link.h): its byte count, its gate and its peer direction.
 *
 * Ownership: a chunk in a queue belongs to the queue's owner (a stage or the
 * direction); a block is shared by the chunks that point into it and freed
 * with the last of them. Every function here that allocates fails soft: out
 * of memory it passes whole what it would have split, or drops a marker,
 * never the bytes it was given.
 */
#ifndef CYNIC_HARNESS_CHAIN_H
#define CYNIC_HARNESS_CHAIN_H

#include "harness.h"

struct hdir;

typedef struct block {
  uint32_t refs; /* chunks pointing into data */
  char data[];
} block_t;

enum { CHUNK_DATA, CHUNK_EOF, CHUNK_CLOSE, CHUNK_RESET };

/* chunk_t.pos of bytes that are not the source's (generated, answers,
 * rewritten heads) and of markers. */
#define CHUNK_NOPOS UINT64_MAX

typedef struct chunk {
  struct chunk *next;
  block_t *blk; /* NULL unless CHUNK_DATA */
  size_t off, len;
  /* Stream position of blk->data[off]: how many bytes the direction's source
   * sent before it (set when read, moved along by every split and partial
   * write), so a stage can ask the gate where messages begin. CHUNK_NOPOS
   * for bytes the harness made. */
  uint64_t pos;
  uint64_t t;    /* ns: when the chunk entered its current queue */
  uint64_t need; /* gate.c: responses that must precede this answer */
  int kind;
  uv_write_t wreq; /* link.c's write request (a plain struct; no handle) */
  struct hdir *dir;
} chunk_t;

typedef struct queue {
  chunk_t *head, *tail;
  size_t count;
} queue_t;

typedef struct stage {
  toxic_t *toxic;
  bool active; /* won the toxicity roll for this connection */
  queue_t in;
  uint64_t rng;            /* this stage's random stream */
  uint64_t deadline;       /* ns: release time of the head chunk (0 = not set) */
  uint64_t next_free;      /* ns: bandwidth's line is busy until then */
  uint64_t action_at;      /* ns: timeout/reset_peer fire time (0 = not armed) */
  int64_t count;           /* bytes passed (limit_data) */
  bool done;               /* limit_data reached / reset armed */
  bool joined_live;        /* added after this direction had carried bytes */
  toxic_t *retired;        /* removed from the proxy mid-message: the stage's own
                              copy of the toxic, kept until the message ends */
  struct http_state *http; /* HTTP-aware toxics: parser and per-message state */
} stage_t;

enum { STEP_IDLE = 0, STEP_PROGRESS = 1, STEP_CLOSE = 2, STEP_RESET = 3 };

typedef struct step_ctx {
  struct hdir *dir;
  queue_t *in;
  queue_t *out;
  uint64_t now;  /* ns */
  uint64_t wake; /* ns; a stage lowers it to be woken then (UINT64_MAX = never) */
} step_ctx_t;

/* ---- chunks and queues --------------------------------------------------- */

/* Drop one reference to a block (NULL is fine); the last one frees it. */
void harness_block_unref(block_t *b);
/* A new block of n bytes holding a copy of p, one reference; NULL out of memory. */
block_t *harness_block_new(const char *p, size_t n);
/* A zeroed chunk of `kind` for direction d, stamped t, with no stream
 * position (CHUNK_NOPOS); NULL out of memory. */
chunk_t *harness_chunk_new(int kind, struct hdir *d, uint64_t t);
/* Release a chunk and its reference to its block (not its bytes' count). */
void harness_chunk_free(chunk_t *c);
/* Drop the first n (< len) bytes of a data chunk from its view (off, len,
 * pos move; the count is the caller's). */
void harness_chunk_skip(chunk_t *c, size_t n);

void harness_queue_push(queue_t *q, chunk_t *c);
void harness_queue_push_front(queue_t *q, chunk_t *c);
/* The head chunk, unlinked; NULL when empty. */
chunk_t *harness_queue_pop(queue_t *q);
/* Append all of `from` to the end of `to`; `from` is left empty. */
void harness_queue_splice(queue_t *to, queue_t *from);
/* Free every chunk of q; their data bytes leave d's count. */
void harness_queue_clear(struct hdir *d, queue_t *q);

/* ---- the chain as a whole (link.c) --------------------------------------- */

/* The queue bytes read from d's source enter: the first stage's, or the
 * output queue when d has no stage. */
queue_t *harness_chain_in(struct hdir *d);
/* link.c's reader: a chunk just read from d's source (data, with its stream
 * position set, or EOF) is shown to the connection's gate (harness_gate_read; `first`:
 * the first bytes read on d) and queued at the chain's entry; its bytes join
 * d's count. -1 (nothing queued; the caller frees ch and resets the
 * connection) when the gate cannot be allocated for request-like bytes. */
int harness_chain_read(struct hdir *d, chunk_t *ch, bool first);
/* One pass over d's stages, in order (ctx->in and ctx->out are set here):
 * STEP_CLOSE or STEP_RESET as soon as a stage asks for it, else
 * STEP_PROGRESS if any stage moved something, else STEP_IDLE. */
int harness_chain_step(struct hdir *d, step_ctx_t *ctx);
/* The writer's next chunk for d's sink (link.c's flush, fuzz/fuzz_gate.c):
 * a harness answer that is due (the gate's) before anything queued, else the
 * head of the output queue; a data chunk to the client is counted by the
 * gate (harness_gate_scan) and cut where a waiting answer falls due, the rest
 * left at the head of the queue. NULL when there is nothing to write. The
 * caller owns the chunk (and, for data, its bytes' count in d->buffered). */
chunk_t *harness_chain_next_out(struct hdir *d, uint64_t now);
/* d ends once its writes are out: closed, or (reset) reset after waiting at
 * most CHAIN_FLUSH_WAIT_NS from `now` for the kernel to send what it holds.
 * The writer's answer to a CLOSE or RESET marker, and a stage's when it
 * cannot queue one (out of memory). */
#define CHAIN_FLUSH_WAIT_NS UINT64_C(2000000000) /* 2 s */
void harness_chain_end_when_flushed(struct hdir *d, bool reset, uint64_t now);

/* ---- helpers for toxic step functions ------------------------------------ */

bool harness_step_room(const step_ctx_t *ctx);
/* Move the head chunk to the next queue. */
void harness_step_pass(step_ctx_t *ctx);
/* Move the first n bytes of the head data chunk (n < len splits it). */
void harness_step_pass_part(step_ctx_t *ctx, size_t n);
/* Discard the head chunk (its bytes leave the direction's count). */
void harness_step_drop(step_ctx_t *ctx);
/* Discard the first n bytes of the head data chunk. */
void harness_step_drop_part(step_ctx_t *ctx, size_t n);
/* Put a CLOSE marker on the next queue (room not checked). */
void harness_step_emit_close(step_ctx_t *ctx);
/* Put a RESET marker on the next queue: the writer resets both sides once
 * everything before it has left the socket. */
void harness_step_emit_reset(step_ctx_t *ctx);
/* true if a generating toxic may add bytes now (queue room and byte cap). */
bool harness_step_can_generate(const step_ctx_t *ctx);
/* Add n generated bytes to the next queue (no stream position). */
void harness_step_emit_bytes(step_ctx_t *ctx, const char *p, size_t n);
/* Add a copy of n of the source's bytes, unchanged, whose first byte was at
 * stream position pos (CHUNK_NOPOS: unknown), to the next queue. */
void harness_step_emit_copy(step_ctx_t *ctx, const char *p, size_t n, uint64_t pos);
/* Answer the source with n bytes on the other direction, once `need` responses
 * have gone out there (see gate.h), and flag it for waking (hdir_t.woken;
 * link.c arms its timer once this direction's step is over). */
void harness_step_answer_back(step_ctx_t *ctx, const char *p, size_t n, uint64_t need);
/* The connection's gate (gate.h), NULL if it has none (not HTTP). */
struct gate *harness_step_gate(step_ctx_t *ctx);
void harness_step_wake_at(step_ctx_t *ctx, uint64_t t);

/* ---- toxics.c, http_toxics.c --------------------------------------------- */

/* toxics.c: one step of a stage; STEP_* */
int harness_toxic_step(stage_t *st, step_ctx_t *ctx);
/* Called when a stage is created for a connection. */
void harness_toxic_stage_init(stage_t *st, uint64_t now);
/* Release what harness_toxic_step allocated for the stage (not the stage itself). */
void harness_toxic_stage_free(stage_t *st);
/* http_toxics.c: one step of an HTTP-aware stage. */
int harness_http_toxic_step(stage_t *st, step_ctx_t *ctx);
/* Whether the stage is inside a message it alters (dropping, collecting or
 * holding it): removing it then would cut that message in two. */
bool harness_http_toxic_mid_message(const stage_t *st);
void harness_http_toxic_free(stage_t *st);
/* An active stage that stops its connection reading (blackhole). */
bool harness_toxic_stage_blocks_reading(const stage_t *st);
/* How long an active stage holds a new connection before the dial, in ms. */
int64_t harness_toxic_stage_accept_delay(const stage_t *st);

#endif
