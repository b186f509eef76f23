/*
 * src/proxy/relay.c: the bounded byte pump both ways (contract in relay.h).
 */
#include <stdlib.h>

#include "log.h"
#include "pool.h"
#include "relay.h"
#include "sock.h"

/* ---- buffers --------------------------------------------------------------- */

static char *buffer_get(cynic__listener_t *l) {
  if (l->buffers.size == 0)
    cynic__blocks_init(&l->buffers, (size_t)l->cfg->buffer_bytes, CYNIC__BUFFERS_KEPT_MAX);
  return cynic__blocks_take(&l->buffers);
}

static void buffer_put(cynic__listener_t *l, char *buf) {
  cynic__blocks_put(&l->buffers, buf);
}

/* ---- the ring ---------------------------------------------------------------- */

/* `n` bytes of the ring from offset `from` (relative to head) as at most two
 * buffers (the ring may wrap). */
static unsigned int ring_bufs(const cynic__relay_dir_t *d, size_t from, size_t n, uv_buf_t bufs[2]) {
  size_t start = ((size_t)d->head + from) % d->cap;
  size_t first = start + n <= d->cap ? n : d->cap - start;
  bufs[0] = uv_buf_init(d->buf + start, (unsigned int)first);
  if (first == n)
    return 1;
  bufs[1] = uv_buf_init(d->buf, (unsigned int)(n - first));
  return 2;
}

/* The pending bytes that may be written (all but the held ones). */
static unsigned int pending_bufs(const cynic__relay_dir_t *d, uv_buf_t bufs[2]) {
  return ring_bufs(d, 0, d->len - d->held, bufs);
}

/* The relay `d` belongs to: its `from` stream's data (relay.h), rather than a
 * pointer per direction that would say the same. */
static inline cynic__relay_t *dir_relay(const cynic__relay_dir_t *d) {
  /* HTTP mode detaches the upstream between exchanges: one end may be NULL,
   * never both (the client's stream stays). */
  return (d->from != NULL ? d->from : d->to)->data;
}

static void consume(cynic__relay_dir_t *d, size_t n) {
  cynic__relay_t *r = dir_relay(d);
  d->head = (uint32_t)((d->head + n) % d->cap);
  d->len -= (uint32_t)n;
  d->bytes += n;
  if (d == &r->up)
    r->listener->stats.bytes_up += n;
  else
    r->listener->stats.bytes_down += n;
  if (d->len == 0)
    d->head = 0; /* keep the free space contiguous */
}

/* ---- forwarding ------------------------------------------------------------ */

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void on_write(uv_write_t *req, int status);
static void on_shutdown(uv_shutdown_t *req, int status);

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  cynic__relay_t *r = h->data;
  cynic__relay_dir_t *d = (uv_stream_t *)h == r->up.from ? &r->up : &r->down;
  if (d->buf == NULL) {
    /* Bytes to read: take a ring from the listener's pool (flush gives it
     * back when it is empty again). */
    d->buf = buffer_get(r->listener);
    if (d->buf == NULL) {
      *buf = uv_buf_init(NULL, 0); /* read_cb gets UV_ENOBUFS: closed */
      return;
    }
  }
  if (d->len == d->cap) {
    *buf = uv_buf_init(NULL, 0); /* read_cb gets UV_ENOBUFS; never expected */
    return;
  }
  size_t tail = ((size_t)d->head + d->len) % d->cap;
  size_t room = tail >= d->head ? d->cap - tail : d->head - tail;
  *buf = uv_buf_init(d->buf + tail, (unsigned int)room);
}

/* Moves `d` along: writes what is pending (if no write is in flight), resumes
 * reading when there is room, and forwards EOF once everything is written. */
static void flush(cynic__relay_dir_t *d) {
  cynic__relay_t *r = dir_relay(d);
  if (d->writing == 0 && d->len > d->held && d->to != NULL) {
    uv_buf_t bufs[2];
    unsigned int n = pending_bufs(d, bufs);
    int w = cynic__io_try_write(d->to, bufs, n);
    if (w < 0 && w != UV_EAGAIN && w != UV_ENOSYS) {
      r->ops->failed(r, d, w, true);
      return;
    }
    if (w > 0)
      consume(d, (size_t)w);
    if (d->len > d->held) {
      n = pending_bufs(d, bufs);
      int rc = cynic__io_write(&d->write_req, d->to, bufs, n, on_write);
      if (rc != 0) {
        r->ops->failed(r, d, rc, true);
        return;
      }
      d->writing = d->len - d->held;
    }
  }
  if (!d->reading && !d->eof && d->len < d->cap && d->from != NULL) {
    if (cynic__io_read_start(d->from, on_alloc, on_read) == 0)
      d->reading = true;
  }
  if (d->len == 0 && d->writing == 0 && d->buf != NULL) {
    buffer_put(r->listener, d->buf); /* empty: an idle direction holds no memory */
    d->buf = NULL;
    d->head = 0;
  }
  if (d->eof && !d->hold && d->len == 0 && d->writing == 0 && !d->shut) {
    d->shut = true;
    if (cynic__io_shutdown(&d->shutdown_req, d->to, on_shutdown) != 0)
      d->shut_done = true; /* the peer is gone already; nothing more to say */
  }
  if (r->up.shut_done && r->down.shut_done)
    r->ops->done(r); /* both sides said goodbye */
}

static void on_write(uv_write_t *req, int status) {
  cynic__relay_dir_t *d = req->data;
  cynic__relay_t *r = dir_relay(d);
  if (r->ops == NULL)
    return;
  if (status < 0) {
    r->ops->failed(r, d, status, true);
    return;
  }
  consume(d, d->writing);
  d->writing = 0;
  flush(d);
  /* Hold mode: the owner waits for the bytes it released to be out (HTTP:
   * the response before the next request starts). Rare: after a queued
   * write only, never on the uv_try_write path. */
  if (r->ops != NULL && r->ops->drained != NULL && d->writing == 0 && d->len == d->held)
    r->ops->drained(r, d);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  (void)status; /* a failed shutdown means the peer is gone: just as final */
  cynic__relay_dir_t *d = req->data;
  if (dir_relay(d)->ops == NULL)
    return;
  d->shut_done = true;
  flush(d);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  (void)buf;
  cynic__relay_t *r = s->data;
  cynic__relay_dir_t *d = s == r->up.from ? &r->up : &r->down;
  if (r->ops == NULL)
    return;
  if (nread == 0) {
    /* Nothing after all (EAGAIN; a TLS stream's read that completed no
     * record): an empty ring goes back, so an idle connection holds none. */
    if (d->len == 0 && d->writing == 0 && d->buf != NULL) {
      buffer_put(r->listener, d->buf);
      d->buf = NULL;
      d->head = 0;
    }
    return;
  }
  if (nread > 0) {
    r->last_active_ms = uv_now(s->loop);
    d->len += (uint32_t)nread; /* at most the room on_alloc gave, < cap */
    if (!d->got_bytes) {
      d->got_bytes = true;
      r->ops->first_bytes(r, d);
      if (r->ops == NULL)
        return;
    }
    if (d->hold) {
      d->held += (uint32_t)nread;
      r->ops->data(r, d); /* the owner releases, skips or keeps them */
      if (r->ops == NULL)
        return;
    }
    flush(d);
    if (r->ops != NULL && d->reading && d->len == d->cap) {
      cynic__io_read_stop(s); /* back pressure: the other side is behind */
      d->reading = false;
    }
    return;
  }
  /* A reset that came right behind the last bytes reaches us as UV_EOF
   * (sock.h): ask the socket, so that it is forwarded as a reset. */
  if (nread == UV_EOF)
    nread = cynic__sock_pending_error(s) == UV_ECONNRESET ? UV_ECONNRESET : UV_EOF;
  if (nread == UV_EOF) {
    cynic__io_read_stop(s);
    d->reading = false;
    d->eof = true;
    r->ops->eof(r, d);
    if (r->ops != NULL)
      flush(d);
    return;
  }
  if (nread == UV_ENOBUFS && d->buf != NULL) { /* cannot happen: reading stops when full */
    cynic__io_read_stop(s);
    d->reading = false;
    return;
  }
  if (nread == UV_ECONNRESET)
    d->from_reset = true;
  r->ops->failed(r, d, (int)nread, false); /* a reset, another error, or no memory */
}

/* ---- the owner's side ---------------------------------------------------------- */

static void dir_init(cynic__relay_dir_t *d, uv_stream_t *from, uv_stream_t *to, size_t cap) {
  d->from = from;
  d->to = to;
  d->cap = (uint32_t)cap; /* <= 16 MB (config.c) */
  d->write_req.data = d;
  d->shutdown_req.data = d;
}

void cynic__relay_init(cynic__relay_t *r, cynic__listener_t *l, uv_stream_t *client,
                       uv_stream_t *server) {
  size_t cap = (size_t)l->cfg->buffer_bytes;
  r->ops = NULL; /* until started */
  r->listener = l;
  dir_init(&r->up, client, server, cap);
  dir_init(&r->down, server, client, cap);
}

void cynic__relay_start(cynic__relay_t *r, const cynic__relay_ops_t *ops) {
  r->ops = ops;
  r->last_active_ms = uv_now(r->up.from->loop);
  flush(&r->up); /* starts reading both sides */
  if (r->ops != NULL)
    flush(&r->down);
}

void cynic__relay_stop(cynic__relay_t *r) {
  r->ops = NULL;
}

/* ---- hold mode ----------------------------------------------------------------- */

void cynic__relay_hold(cynic__relay_dir_t *d, bool on) {
  d->hold = on;
}

unsigned int cynic__relay_held(const cynic__relay_dir_t *d, uv_buf_t spans[2]) {
  if (d->held == 0)
    return 0;
  return ring_bufs(d, d->len - d->held, d->held, spans);
}

void cynic__relay_release(cynic__relay_dir_t *d, size_t n) {
  if (n > d->held)
    n = d->held;
  d->held -= (uint32_t)n;
  if (n > 0 && dir_relay(d)->ops != NULL)
    flush(d);
}

int cynic__relay_skip(cynic__relay_dir_t *d, size_t n) {
  if (n > d->held || d->len != d->held)
    return CYNIC_EINVAL; /* released bytes wait before the held ones */
  d->head = (uint32_t)(((size_t)d->head + n) % d->cap);
  d->len -= (uint32_t)n;
  d->held -= (uint32_t)n;
  if (d->len == 0)
    d->head = 0; /* keep the free space contiguous */
  if (dir_relay(d)->ops != NULL)
    flush(d); /* room again: reading may resume; an empty ring goes back */
  return 0;
}

void cynic__relay_drop_held(cynic__relay_dir_t *d) {
  d->len -= d->held; /* the held bytes are the newest: the ring's tail */
  d->held = 0;
  if (d->len == 0)
    d->head = 0;
  if (dir_relay(d)->ops != NULL)
    flush(d);
}

bool cynic__relay_drained(const cynic__relay_dir_t *d) {
  return d->writing == 0 && d->len == d->held;
}

void cynic__relay_attach(cynic__relay_t *r, uv_stream_t *server, bool reading) {
  r->up.to = server;
  r->down.from = server;
  r->down.eof = r->down.shut = r->down.shut_done = false;
  r->down.got_bytes = r->down.from_reset = false;
  r->up.shut = r->up.shut_done = false;
  r->down.reading = reading;
  if (reading)
    cynic__io_read_switch(server, on_alloc, on_read); /* from the pool's: no epoll_ctl */
  if (r->ops != NULL)
    flush(&r->down); /* starts reading the upstream (when it is not yet) */
}

bool cynic__relay_detach(cynic__relay_t *r) {
  bool reading = r->down.reading && r->down.from != NULL;
  r->down.reading = false;
  r->down.from = NULL;
  r->up.to = NULL;
  return reading;
}

void cynic__relay_free(cynic__relay_t *r) {
  if (r->listener == NULL)
    return;
  buffer_put(r->listener, r->up.buf);
  buffer_put(r->listener, r->down.buf);
  r->up.buf = r->down.buf = NULL;
}
