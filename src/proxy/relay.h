/*
 * src/proxy/relay.h: the bounded byte pump between two streams, both ways.
 *
 * Back Pressure: each direction has at most one ring buffer of `cap` bytes,
 * taken from the listener's pool of free buffers when bytes arrive and given
 * back as soon as it is empty again (an idle relay holds none), and at most
 * one write in flight. Reading a side stops when the buffer towards the other
 * side is full and resumes as soon as a write drains some of it, so a peer
 * that never reads costs at most the two buffers (plus the kernel's socket
 * buffers), whatever the other peer sends. Bytes are tried with uv_try_write
 * straight from the read, so the common case of a writable socket queues
 * nothing and the buffer goes back to the pool at once.
 *
 * Half-close: EOF from one side is forwarded as shutdown(SHUT_WR) to the other
 * once everything read before it has been written; the relay is done when
 * both directions have been shut down. A read or write error is reported to
 * the owner, who forwards it as a reset (closes both with SO_LINGER 0).
 *
 * The relay is embedded in its owner (TCP mode's connection; HTTP will use it
 * to stream bodies and to tunnel). The per-byte path (alloc, read, write,
 * consume) calls no function pointer: the owner hears of rare events only
 * (a direction's first bytes, EOF, an error, done) through its ops, and
 * reads the rest (last_active_ms, bytes, from_reset) from the fields.
 *
 * The two streams' handle.data must point to the relay from init until
 * their close callbacks (a write's or shutdown's callback finds its relay
 * there, even after cynic__relay_stop); the owner closes the streams (after cynic__relay_stop) and gives the buffers
 * back with cynic__relay_free once their close callbacks have run.
 */
#ifndef CYNIC_PROXY_RELAY_H
#define CYNIC_PROXY_RELAY_H

#include "proxy.h"

typedef struct cynic__relay cynic__relay_t;

/* One direction: bytes read from `from`, written to `to`. */
typedef struct cynic__relay_dir {
  uv_stream_t *from, *to; /* from->data is the relay (see above) */
  char *buf;              /* ring buffer of cap bytes; NULL while empty (pooled) */
  /* Ring offsets in 32 bits: `buffer` is at most 16 MB (config.c), and four
   * 8-byte words here would cost 32 bytes a connection for nothing. */
  uint32_t cap;     /* the listener's `buffer` */
  uint32_t head;    /* first byte not yet written */
  uint32_t len;     /* bytes read and not yet written (held ones included) */
  uint32_t writing; /* bytes of the write in flight (from head); 0 = none */
  uint32_t held;    /* hold mode: the last `held` of `len` wait for the owner */
  /* Flags as bits: with `held` the direction keeps its size (TCP mode's
   * connection stays 1,664 bytes). */
  bool reading : 1;    /* uv_read_start is on for `from` */
  bool eof : 1;        /* `from` sent FIN */
  bool shut : 1;       /* shutdown sent to `to` */
  bool shut_done : 1;  /* ... and completed */
  bool got_bytes : 1;  /* some bytes were read from `from` */
  bool from_reset : 1; /* a read from `from` failed with ECONNRESET (it is closed) */
  bool hold : 1;       /* hold mode (cynic__relay_hold) */
  uv_write_t write_req;
  uv_shutdown_t shutdown_req;
  uint64_t bytes; /* forwarded so far */
} cynic__relay_dir_t;

/* What the owner hears, on rare events only. Each may close the owner (after
 * cynic__relay_stop, which the owner calls first thing when it closes). */
typedef struct cynic__relay_ops {
  /* The first bytes read from d->from (once per direction), before they are
   * forwarded. */
  void (*first_bytes)(cynic__relay_t *r, cynic__relay_dir_t *d);
  /* d->from sent FIN (before it is forwarded). */
  void (*eof)(cynic__relay_t *r, cynic__relay_dir_t *d);
  /* Reading d->from (writing = false) or writing d->to (true) failed with
   * libuv error `err`; UV_ENOBUFS when reading: no memory for a buffer. The
   * owner must close, with a reset. */
  void (*failed)(cynic__relay_t *r, cynic__relay_dir_t *d, int err, bool writing);
  /* Both directions have been shut down: the owner closes normally. */
  void (*done)(cynic__relay_t *r);
  /* Hold mode only (NULL otherwise): bytes arrived from d->from and wait,
   * held, for the owner to read them (cynic__relay_held) and release or skip
   * them. Called once per read, never per byte. */
  void (*data)(cynic__relay_t *r, cynic__relay_dir_t *d);
  /* Optional (NULL in TCP mode): a queued write of d's released bytes
   * completed and none is left to write (cynic__relay_drained). Not called
   * when uv_try_write took everything at once: the owner checks after it
   * releases. */
  void (*drained)(cynic__relay_t *r, cynic__relay_dir_t *d);
} cynic__relay_ops_t;

struct cynic__relay {
  cynic__relay_dir_t up;         /* client -> upstream */
  cynic__relay_dir_t down;       /* upstream -> client */
  const cynic__relay_ops_t *ops; /* NULL once stopped: nothing moves any more */
  cynic__listener_t *listener;   /* its buffer pool and byte counters */
  uint64_t last_active_ms;       /* the loop time of the last bytes read */
};

/* Sets `r` up between `client` and `server` (both open, handle.data = r),
 * with rings of the listener's buffer size; nothing is read yet. */
void cynic__relay_init(cynic__relay_t *r, cynic__listener_t *l, uv_stream_t *client,
                       uv_stream_t *server);
/* Starts reading both sides; `ops` (static) hears the rare events until
 * cynic__relay_stop. */
void cynic__relay_start(cynic__relay_t *r, const cynic__relay_ops_t *ops);
/* The owner is closing: from now on no callback of the streams moves bytes
 * or calls the ops. Idempotent. */
void cynic__relay_stop(cynic__relay_t *r);
/* ---- hold mode (HTTP: the owner parses what passes) ----
 *
 * In hold mode a direction forwards nothing it read until the owner says so:
 * each read adds to the held bytes and calls ops->data; the owner reads them
 * in order (cynic__relay_held) and, from the oldest, releases them to be
 * forwarded (a body) or skips them (a head the owner rewrites and writes
 * itself, with its own uv_write before it releases the body: libuv keeps
 * writes on a stream in order and uv_try_write refuses while one is queued).
 * Bytes it neither releases nor skips stay held (the next pipelined message)
 * and count against the ring, so a peer that sends ahead is stopped by back
 * pressure. The relay does not forward `from`'s EOF in hold mode: the owner
 * hears it (ops->eof) and decides. TCP mode never holds: its path is
 * unchanged. */

/* Turns hold mode on or off for `d` (off releases nothing by itself). */
void cynic__relay_hold(cynic__relay_dir_t *d, bool on);
/* The held bytes, oldest first, as one or two spans (the ring may wrap):
 * how many spans (0 when nothing is held). */
unsigned int cynic__relay_held(const cynic__relay_dir_t *d, uv_buf_t spans[2]);
/* The oldest `n` held bytes (n <= held) are forwarded. */
void cynic__relay_release(cynic__relay_dir_t *d, size_t n);
/* The oldest `n` held bytes (n <= held) are dropped unwritten: 0, or
 * CYNIC_EINVAL while released bytes still wait to be written before them
 * (the ring cannot drop bytes behind others) or n > held. */
int cynic__relay_skip(cynic__relay_dir_t *d, size_t n);

/* Drops every held byte unwritten (they are the newest in the ring): bytes
 * an upstream sent after its response, never to be forwarded. */
void cynic__relay_drop_held(cynic__relay_dir_t *d);
/* True when no released byte of `d` waits to be written or is being
 * written (held ones may remain). */
bool cynic__relay_drained(const cynic__relay_dir_t *d);

/* ---- a detachable upstream (HTTP: one client, a pooled connection per
 * exchange) ----
 *
 * A relay may be initialised and started with `server` NULL: the client is
 * read (in hold mode) and nothing goes anywhere until an upstream is
 * attached. Attach points up.to and down.from at `server` (its handle.data
 * must be the relay) and reads it: `reading` says it is being read already
 * (a pooled connection: the callbacks are switched, not restarted). Detach
 * forgets it without stopping its read: it returns whether the stream is
 * being read still (with the relay's callbacks, which must not run again:
 * before the loop runs the owner switches them (the pool does) or closes
 * it). Detach only when nothing moves on it: cynic__relay_drained(&r->up)
 * and no held byte in r->down (drop them first). */
void cynic__relay_attach(cynic__relay_t *r, uv_stream_t *server, bool reading);
bool cynic__relay_detach(cynic__relay_t *r);

/* Gives the buffers back to the listener's pool (after the streams' close
 * callbacks: a write in flight may still point into them until then). A
 * relay never initialised (all zero) is fine. */
void cynic__relay_free(cynic__relay_t *r);

#endif /* CYNIC_PROXY_RELAY_H */
