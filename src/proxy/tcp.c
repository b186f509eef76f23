/*
 * src/proxy/tcp.c: one proxied TCP connection, from accept to the last close.
 *
 *   accept -> [all breakers open? close at once]
 *          -> bulkhead: slot / queued (queue_timeout) / full: close at once
 *          -> pick endpoint (balance, skip open breakers) -> connect (connect timeout)
 *          -> forward both ways until both sides have half-closed, a side resets,
 *             or a timeout (first byte, idle) fires
 *
 * Back Pressure: each direction has at most one ring buffer of `buffer`
 * bytes, taken from the listener's pool of free buffers when bytes arrive and
 * given back as soon as it is empty again (an idle connection holds none), and
 * at most one write in flight. Reading a side stops when the buffer towards
 * the other side is full and resumes as soon as a write drains some of it, so
 * a peer that never reads costs at most the two buffers (plus the kernel's
 * socket buffers), whatever the other peer sends. Bytes are tried with
 * uv_try_write straight from the read, so the common case of a writable
 * socket queues nothing and the buffer goes back to the pool at once.
 *
 * Half-close: EOF from one side is forwarded as shutdown(SHUT_WR) to the other
 * once everything read before it has been written; the connection ends
 * normally when both directions have been shut down. A reset (read or write
 * error) is forwarded as a reset: both sockets are closed with SO_LINGER 0.
 *
 * Circuit breaker outcomes (one permit per connection):
 *   fault    connect refused, connect error, connect timeout; a reset or a close
 *            from the upstream before its first byte (except a close after the
 *            client closed without sending anything); the first-byte timeout
 *   success  the first byte from the upstream: the endpoint answered. Recorded
 *            then, not at close, so a long-lived connection (a database pool)
 *            does not hold a half-open probe for hours.
 *   released anything else that ends a connection before an outcome (the
 *            client left, idle timeout before any byte, drain)
 *
 * Timeouts share one timer per connection. Reads only note the time of the
 * last byte; the timer, when it fires, checks the deadlines and re-arms for the
 * nearest one, so the hot path never touches the timer heap.
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "addr.h"
#include "log.h"
#include "pool.h"
#include "proxy.h"
#include "tcp.h"

typedef struct cynic__conn cynic__conn_t;

typedef enum conn_state {
  ST_NEW,        /* accepted, not yet admitted */
  ST_QUEUED,     /* waiting for a bulkhead slot, on upstream->waiters */
  ST_CONNECTING, /* holds a slot and a breaker permit; connect in flight */
  ST_OPEN,       /* forwarding */
  ST_CLOSING     /* handles closing; freed in the last close callback */
} conn_state_t;

/* One direction of a connection: bytes read from `from`, written to `to`. */
typedef struct direction {
  cynic__conn_t *conn;
  uv_tcp_t *from, *to;
  char *buf;      /* ring buffer of cap bytes; NULL while empty (pooled) */
  size_t cap;     /* the listener's `buffer` */
  size_t head;    /* first byte not yet written */
  size_t len;     /* bytes read and not yet written */
  size_t writing; /* bytes of the write in flight (from head); 0 = none */
  uv_write_t write_req;
  uv_shutdown_t shutdown_req;
  bool reading;   /* uv_read_start is on for `from` */
  bool eof;       /* `from` sent FIN */
  bool shut;      /* shutdown sent to `to` */
  bool shut_done; /* ... and completed */
  uint64_t bytes; /* forwarded so far */
} direction_t;

struct cynic__conn {
  cynic__session_t base;    /* p->sessions, listener, upstream, client address */
  cynic__waiter_t waiter;   /* on the upstream's queue while ST_QUEUED (upstream.c) */
  cynic__attempt_t attempt; /* the endpoint and its breaker permit (upstream.c) */
  conn_state_t state;
  uv_tcp_t client;
  cynic__upconn_t server; /* the upstream connection (pool.c); open once connecting */
  uv_timer_t timer;
  bool started;           /* counted in the proxy and its listener */
  int handles;            /* handles not yet closed; freed at 0 */
  direction_t up;         /* client -> upstream */
  direction_t down;       /* upstream -> client */
  bool has_slot;          /* holds a bulkhead slot: leave() when freed */
  bool client_was_reset;  /* a read from the client failed with ECONNRESET */
  bool server_was_reset;  /* ... from the upstream */
  bool got_first_byte;    /* from the upstream */
  bool sent_first_byte;   /* to the upstream: starts the first-byte timeout */
  uint64_t first_byte_ms; /* 0 = not armed */
  uint64_t last_active_ms;
  uint64_t idle_ms;
  const char *why; /* why it ended, for the debug log; static string */
  /* for metrics and the access log (metrics.c) */
  bool has_outcome;
  int outcome; /* CYNIC__EV_* or CYNIC__OUT_*: the first reason the connection ended */
  const char *decision;
  /* Phase timestamps in microseconds (uv_hrtime, read once per phase event;
   * 0 = not reached). The loop's millisecond clock (uv_now) is too coarse for
   * a loopback or LAN upstream, whose phases last well under a millisecond;
   * the timeouts above keep the loop clock. */
  uint64_t accepted_us, connect_us, connected_us, first_sent_us, first_byte_at_us;
};

static void on_timer(uv_timer_t *t);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void conn_close(cynic__conn_t *c, bool reset, const char *why);
static const cynic__session_ops_t session_ops;

/* Notes why the connection ends; the first reason given wins. */
static void set_outcome(cynic__conn_t *c, int outcome) {
  if (!c->has_outcome) {
    c->has_outcome = true;
    c->outcome = outcome;
  }
}

/* Now in microseconds on the monotonic high-resolution clock (a vDSO call). */
static uint64_t now_us(void) {
  return uv_hrtime() / 1000u;
}

static uint64_t to_ms(uint64_t ns) {
  uint64_t ms = ns / 1000000u + (ns % 1000000u != 0);
  return ms;
}

/* ---- breaker outcomes and counters ------------------------------------------ */

static void fault(cynic__conn_t *c, cynic__event_t ev, const char *detail) {
  set_outcome(c, (int)ev);
  if (c->why == NULL)
    c->why = cynic__event_key(ev);
  cynic__attempt_fault(&c->attempt, ev, detail);
}

static void upstream_event(cynic__conn_t *c, cynic__event_t ev) {
  set_outcome(c, (int)ev);
  if (ev == CYNIC__EV_BREAKER_OPEN)
    c->decision = "rejected";
  if (c->why == NULL)
    c->why = cynic__event_key(ev);
  cynic__proxy_event(&c->base.upstream->counters, ev, "upstream", c->base.upstream->cfg->name, NULL,
                     NULL);
}

/* ---- the timer ------------------------------------------------------------- */

static void arm(cynic__conn_t *c) {
  uint64_t next = UINT64_MAX;
  if (c->state == ST_CONNECTING)
    next = c->server.deadline_ms; /* the connect timeout (pool.c) */
  if (c->state == ST_OPEN) {
    next = c->last_active_ms + c->idle_ms;
    if (c->first_byte_ms != 0 && c->first_byte_ms < next)
      next = c->first_byte_ms;
  }
  if (next == UINT64_MAX)
    return;
  uint64_t now = uv_now(c->base.proxy->loop);
  uv_timer_start(&c->timer, on_timer, next > now ? next - now : 0, 0);
}

static void on_timer(uv_timer_t *t) {
  cynic__conn_t *c = t->data;
  uint64_t now = uv_now(c->base.proxy->loop);
  switch (c->state) {
  case ST_CONNECTING:
    if (cynic__upconn_connect_expired(&c->server, now)) {
      fault(c, CYNIC__EV_CONNECT_TIMEOUT, NULL);
      conn_close(c, false, NULL);
      return;
    }
    break;
  case ST_OPEN:
    if (c->first_byte_ms != 0 && now >= c->first_byte_ms) {
      fault(c, CYNIC__EV_FIRST_BYTE_TIMEOUT, NULL);
      conn_close(c, false, NULL);
      return;
    }
    if (now >= c->last_active_ms + c->idle_ms) {
      set_outcome(c, CYNIC__EV_IDLE_TIMEOUT);
      cynic__proxy_event(&c->attempt.endpoint->counters, CYNIC__EV_IDLE_TIMEOUT, "endpoint",
                         c->attempt.endpoint->addr->text, c->base.upstream->cfg->name, NULL);
      conn_close(c, false, "idle_timeout");
      return;
    }
    break;
  default:
    return;
  }
  arm(c);
}

/* ---- buffers --------------------------------------------------------------- */

static char *buffer_get(cynic__listener_t *l) {
  if (l->pool_len > 0)
    return l->pool[--l->pool_len];
  return malloc((size_t)l->cfg->buffer_bytes);
}

static void buffer_put(cynic__listener_t *l, char *buf) {
  if (buf == NULL)
    return;
  if (l->pool_len < CYNIC__BUFFER_POOL_MAX)
    l->pool[l->pool_len++] = buf;
  else
    free(buf);
}

/* ---- freeing --------------------------------------------------------------- */

/* debug level: one line per connection, how it went and why it ended. */
static void log_connection(const cynic__conn_t *c, uint64_t end_us) {
  char client[CYNIC_ADDR_STR_MAX] = "?";
  struct sockaddr_storage ss;
  cynic__client_sockaddr(c->base.ip, c->base.port, &ss);
  if (cynic__addr_format((const struct sockaddr *)&ss, client, sizeof client) != 0)
    snprintf(client, sizeof client, "?");
  json_t *f = json_pack(
      "{s:s, s:s, s:s, s:s, s:I, s:I, s:I}", "listener", c->base.listener->cfg->name, "client",
      client, "upstream", c->base.upstream->cfg->name, "reason", c->why != NULL ? c->why : "closed",
      "bytes_up", (json_int_t)c->up.bytes, "bytes_down", (json_int_t)c->down.bytes, "duration_ms",
      (json_int_t)((end_us - c->accepted_us) / 1000u));
  if (f != NULL && c->attempt.endpoint != NULL)
    json_object_set_new(f, "endpoint", json_string(c->attempt.endpoint->addr->text));
  cynic__log_event(CYNIC_LOG_DEBUG, "connection_closed", "connection closed", f);
}

static void conn_free(cynic__conn_t *c) {
  cynic__proxy_t *p = c->base.proxy;
  cynic__upstream_t *u = c->base.upstream;
  uint64_t end_us = now_us();
  if (cynic__log_enabled(CYNIC_LOG_DEBUG)) /* no JSON built for nothing */
    log_connection(c, end_us);
  cynic__attempt_end(&c->attempt);
  cynic__listener_release(c->base.listener, c->base.ip);
  cynic__session_remove(p, &c->base);
  bool had_slot = c->has_slot;
  cynic__conn_report_t r = {
      .listener = c->base.listener,
      .upstream = u,
      .endpoint = c->attempt.endpoint,
      .outcome = c->has_outcome ? c->outcome : CYNIC__OUT_OK,
      .decision = c->decision,
      .ip = c->base.ip,
      .accepted_us = c->accepted_us,
      .connect_us = c->connect_us,
      .connected_us = c->connected_us,
      .first_byte_us = c->first_byte_at_us,
      .end_us = end_us,
      .bytes_up = c->up.bytes,
      .bytes_down = c->down.bytes,
  };
  cynic__metrics_conn_done(&r);
  buffer_put(c->base.listener, c->up.buf);
  buffer_put(c->base.listener, c->down.buf);
  free(c);
  if (had_slot)
    cynic__admission_leave(u); /* may start queued connections */
  cynic__proxy_conn_gone(p);
}

static void on_handle_closed(uv_handle_t *h) {
  cynic__conn_t *c = h->data;
  if (--c->handles == 0)
    conn_free(c);
}

static void conn_close(cynic__conn_t *c, bool reset, const char *why) {
  if (c->state == ST_CLOSING)
    return;
  set_outcome(c, reset ? CYNIC__OUT_RESET : CYNIC__OUT_OK);
  if (c->why == NULL)
    c->why = why;
  if (c->state == ST_QUEUED)
    cynic__admission_cancel(c->base.upstream, &c->waiter);
  c->state = ST_CLOSING;
  cynic__attempt_release(&c->attempt); /* no outcome yet: the permit goes back */
  if (reset) {
    /* A socket that received a RST is closed already (the kernel has nothing
     * to send on close), so only the other side needs SO_LINGER 0. */
    if (!c->client_was_reset)
      cynic__sock_linger_zero(&c->client);
  }
  uv_close((uv_handle_t *)&c->client, on_handle_closed);
  uv_close((uv_handle_t *)&c->timer, on_handle_closed);
  cynic__upconn_close(&c->server, reset && !c->server_was_reset, on_handle_closed);
}

/* ---- forwarding ------------------------------------------------------------ */

/* The pending bytes as at most two buffers (the ring may wrap). */
static unsigned int pending_bufs(const direction_t *d, uv_buf_t bufs[2]) {
  size_t first = d->head + d->len <= d->cap ? d->len : d->cap - d->head;
  bufs[0] = uv_buf_init(d->buf + d->head, (unsigned int)first);
  if (first == d->len)
    return 1;
  bufs[1] = uv_buf_init(d->buf, (unsigned int)(d->len - first));
  return 2;
}

static void consume(direction_t *d, size_t n) {
  d->head = (d->head + n) % d->cap;
  d->len -= n;
  d->bytes += n;
  if (d == &d->conn->up)
    d->conn->base.listener->stats.bytes_up += n;
  else
    d->conn->base.listener->stats.bytes_down += n;
  if (d->len == 0)
    d->head = 0; /* keep the free space contiguous */
}

/* A write to `d->to` failed: that peer is gone; forward it as a reset. */
static void write_failed(direction_t *d, int err) {
  cynic__conn_t *c = d->conn;
  if (d->to == &c->server.handle && !c->got_first_byte)
    fault(c, CYNIC__EV_RESET_BEFORE_FIRST_BYTE, uv_strerror(err));
  conn_close(c, true, d->to == &c->server.handle ? "upstream_write_error" : "client_write_error");
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  cynic__conn_t *c = h->data;
  direction_t *d = (uv_tcp_t *)h == &c->client ? &c->up : &c->down;
  if (d->buf == NULL) {
    /* Bytes to read: take a ring from the listener's pool (flush gives it
     * back when it is empty again). */
    d->buf = buffer_get(c->base.listener);
    if (d->buf == NULL) {
      *buf = uv_buf_init(NULL, 0); /* read_cb gets UV_ENOBUFS: closed */
      return;
    }
  }
  if (d->len == d->cap) {
    *buf = uv_buf_init(NULL, 0); /* read_cb gets UV_ENOBUFS; never expected */
    return;
  }
  size_t tail = (d->head + d->len) % d->cap;
  size_t room = tail >= d->head ? d->cap - tail : d->head - tail;
  *buf = uv_buf_init(d->buf + tail, (unsigned int)room);
}

static void on_write(uv_write_t *req, int status);
static void on_shutdown(uv_shutdown_t *req, int status);

/* Moves `d` along: writes what is pending (if no write is in flight), resumes
 * reading when there is room, and forwards EOF once everything is written. */
static void flush(direction_t *d) {
  cynic__conn_t *c = d->conn;
  if (d->writing == 0 && d->len > 0) {
    uv_buf_t bufs[2];
    unsigned int n = pending_bufs(d, bufs);
    int w = uv_try_write((uv_stream_t *)d->to, bufs, n);
    if (w < 0 && w != UV_EAGAIN && w != UV_ENOSYS) {
      write_failed(d, w);
      return;
    }
    if (w > 0)
      consume(d, (size_t)w);
    if (d->len > 0) {
      n = pending_bufs(d, bufs);
      int rc = uv_write(&d->write_req, (uv_stream_t *)d->to, bufs, n, on_write);
      if (rc != 0) {
        write_failed(d, rc);
        return;
      }
      d->writing = d->len;
    }
  }
  if (!d->reading && !d->eof && d->len < d->cap) {
    if (uv_read_start((uv_stream_t *)d->from, on_alloc, on_read) == 0)
      d->reading = true;
  }
  if (d->len == 0 && d->writing == 0 && d->buf != NULL) {
    buffer_put(c->base.listener, d->buf); /* empty: an idle direction holds no memory */
    d->buf = NULL;
    d->head = 0;
  }
  if (d->eof && d->len == 0 && d->writing == 0 && !d->shut) {
    d->shut = true;
    if (uv_shutdown(&d->shutdown_req, (uv_stream_t *)d->to, on_shutdown) != 0)
      d->shut_done = true; /* the peer is gone already; nothing more to say */
  }
  if (c->up.shut_done && c->down.shut_done)
    conn_close(c, false, "closed"); /* both sides said goodbye: done */
}

static void on_write(uv_write_t *req, int status) {
  direction_t *d = req->data;
  if (d->conn->state == ST_CLOSING)
    return;
  if (status < 0) {
    write_failed(d, status);
    return;
  }
  consume(d, d->writing);
  d->writing = 0;
  flush(d);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  (void)status; /* a failed shutdown means the peer is gone: just as final */
  direction_t *d = req->data;
  if (d->conn->state == ST_CLOSING)
    return;
  d->shut_done = true;
  flush(d);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  (void)buf;
  cynic__conn_t *c = s->data;
  direction_t *d = (uv_tcp_t *)s == &c->client ? &c->up : &c->down;
  if (c->state != ST_OPEN || nread == 0)
    return;
  if (nread > 0) {
    uint64_t now = uv_now(c->base.proxy->loop);
    c->last_active_ms = now;
    d->len += (size_t)nread;
    if (d == &c->down && !c->got_first_byte) {
      c->got_first_byte = true;
      c->first_byte_ms = 0;
      c->first_byte_at_us = now_us();
      uint64_t from = c->sent_first_byte ? c->first_sent_us : c->connected_us;
      cynic__metrics_first_byte(c->base.upstream,
                                c->first_byte_at_us >= from ? c->first_byte_at_us - from : 0);
      cynic__attempt_success(&c->attempt); /* the endpoint answered */
    } else if (d == &c->up && !c->sent_first_byte) {
      /* The first bytes towards the upstream: from now on it owes an answer. */
      c->sent_first_byte = true;
      c->first_sent_us = now_us();
      if (!c->got_first_byte && c->base.upstream->cfg->first_byte_timeout_ns > 0) {
        c->first_byte_ms = now + to_ms(c->base.upstream->cfg->first_byte_timeout_ns);
        arm(c);
      }
    }
    flush(d);
    if (c->state == ST_OPEN && d->reading && d->len == d->cap) {
      uv_read_stop(s); /* back pressure: the other side is behind */
      d->reading = false;
    }
    return;
  }
  if (nread == UV_EOF) {
    uv_read_stop(s);
    d->reading = false;
    d->eof = true;
    /* The upstream closed without a word: a fault, unless the client had
     * closed without sending anything (a TCP health check, a client that
     * changed its mind), to which closing is the right answer. */
    if (d == &c->down && !c->got_first_byte && (c->sent_first_byte || !c->up.eof))
      fault(c, CYNIC__EV_CLOSED_BEFORE_FIRST_BYTE, NULL);
    flush(d);
    return;
  }
  if (nread == UV_ENOBUFS && d->buf != NULL) { /* cannot happen: reading stops when full */
    uv_read_stop(s);
    d->reading = false;
    return;
  }
  if (nread == UV_ENOBUFS) { /* no memory for the ring: give up on this connection */
    set_outcome(c, CYNIC__OUT_CLOSED);
    cynic__log_event(CYNIC_LOG_ERROR, "out_of_memory", "out of memory for a connection buffer",
                     NULL);
    conn_close(c, true, "out_of_memory");
    return;
  }
  /* A reset (or another read error): forward it as a reset. */
  if (nread == UV_ECONNRESET) {
    if (d == &c->up)
      c->client_was_reset = true;
    else
      c->server_was_reset = true;
  }
  if (d == &c->down && !c->got_first_byte)
    fault(c, CYNIC__EV_RESET_BEFORE_FIRST_BYTE, uv_strerror((int)nread));
  conn_close(c, true, d == &c->down ? "upstream_reset" : "client_reset");
}

/* ---- connecting ------------------------------------------------------------ */

static void direction_init(cynic__conn_t *c, direction_t *d, uv_tcp_t *from, uv_tcp_t *to,
                           size_t cap) {
  d->conn = c;
  d->from = from;
  d->to = to;
  d->cap = cap;
  d->write_req.data = d;
  d->shutdown_req.data = d;
}

static void on_connect(cynic__upconn_t *uc, int status) {
  cynic__conn_t *c = cynic__container_of(uc, cynic__conn_t, server);
  if (c->state == ST_CLOSING)
    return;
  if (status != 0) {
    fault(c, status == UV_ECONNREFUSED ? CYNIC__EV_CONNECT_REFUSED : CYNIC__EV_CONNECT_ERROR,
          uv_strerror(status));
    conn_close(c, false, NULL);
    return;
  }
  c->connected_us = now_us();
  cynic__metrics_connected(c->base.upstream,
                           c->connected_us >= c->connect_us ? c->connected_us - c->connect_us : 0);
  size_t cap = (size_t)c->base.listener->cfg->buffer_bytes;
  direction_init(c, &c->up, &c->client, &c->server.handle, cap);
  direction_init(c, &c->down, &c->server.handle, &c->client, cap);
  c->state = ST_OPEN;
  c->last_active_ms = uv_now(c->base.proxy->loop);
  flush(&c->up); /* starts reading both sides */
  flush(&c->down);
  arm(c);
}

/* Holds a bulkhead slot: pick an endpoint and connect to it. */
static void connect_upstream(cynic__conn_t *c) {
  cynic__upstream_t *u = c->base.upstream;
  int rc = cynic__attempt_start(u, &c->attempt);
  if (rc != 0) {
    upstream_event(c, rc == CYNIC_EOPEN ? CYNIC__EV_BREAKER_OPEN : CYNIC__EV_UNRESOLVED);
    conn_close(c, false, NULL);
    return;
  }
  cynic__endpoint_t *e = c->attempt.endpoint;
  c->decision = cynic_breaker_state_name(c->attempt.permit.state);
  c->state = ST_CONNECTING;
  c->connect_us = now_us();
  rc = cynic__upconn_connect(&c->server, c->base.proxy->loop, e, c, on_connect);
  if (c->server.open)
    c->handles++;
  if (rc == UV_EMFILE || rc == UV_ENFILE || rc == UV_ENOBUFS || rc == UV_ENOMEM) {
    /* Our shortage, not the endpoint's fault: the permit goes back unused. */
    upstream_event(c, CYNIC__EV_LOCAL_ERROR);
    conn_close(c, false, NULL);
    return;
  }
  if (rc != 0) {
    fault(c, rc == UV_ECONNREFUSED ? CYNIC__EV_CONNECT_REFUSED : CYNIC__EV_CONNECT_ERROR,
          uv_strerror(rc));
    conn_close(c, false, NULL);
    return;
  }
  arm(c);
}

/* The wait for a bulkhead slot is over (upstream.c): connect, or give up. */
static void on_admitted(cynic__waiter_t *w, int status) {
  cynic__conn_t *c = cynic__container_of(w, cynic__conn_t, waiter);
  c->state = ST_NEW;
  if (status != 0) {
    upstream_event(c, CYNIC__EV_QUEUE_TIMEOUT);
    conn_close(c, false, NULL);
    return;
  }
  c->has_slot = true;
  connect_upstream(c);
}

/* ---- accept ---------------------------------------------------------------- */

static uv_tcp_t *client_new(cynic__proxy_t *p) {
  cynic__conn_t *c = calloc(1, sizeof *c);
  if (c == NULL)
    return NULL;
  c->base.proxy = p;
  if (uv_tcp_init(p->loop, &c->client) != 0) {
    free(c);
    return NULL;
  }
  c->client.data = c;
  return &c->client;
}

static void on_discarded(uv_handle_t *h) {
  free(h->data);
}

static void client_discard(uv_tcp_t *client) {
  uv_close((uv_handle_t *)client, on_discarded);
}

static void tcp_start(cynic__listener_t *l, uv_tcp_t *client, const uint8_t ip[16], uint16_t port) {
  cynic__conn_t *c = cynic__container_of(client, cynic__conn_t, client);
  cynic__proxy_t *p = l->proxy;
  cynic__upstream_t *u = l->upstream;
  c->base.listener = l;
  c->base.upstream = u;
  memcpy(c->base.ip, ip, 16);
  c->base.port = port;
  c->base.ops = &session_ops;
  cynic__session_add(p, &c->base);
  uv_timer_init(p->loop, &c->timer);
  c->timer.data = c;
  c->handles = 2; /* client, timer */
  c->state = ST_NEW;
  c->accepted_us = now_us();
  cynic__metrics_conn_started(u);
  /* Idle: "no bytes either way" for the upstream; the listener's idle also
   * counts bytes both ways in tcp mode, so a long download is not cut off
   * because the client is quiet. The shorter one wins. */
  c->idle_ms = to_ms(u->cfg->idle_timeout_ns);
  uint64_t lidle = to_ms(l->cfg->idle_timeout_ns);
  if (lidle > 0 && lidle < c->idle_ms)
    c->idle_ms = lidle;
  cynic__client_options(l, &c->client);

  if (!cynic__upstream_available(u)) {
    upstream_event(c, CYNIC__EV_BREAKER_OPEN);
    conn_close(c, false, NULL);
    return;
  }
  bool queued = false;
  if (cynic__admission_enter(u, &c->waiter, on_admitted, &queued) != 0) {
    upstream_event(c, CYNIC__EV_BULKHEAD_FULL);
    conn_close(c, false, NULL);
    return;
  }
  if (queued) {
    c->state = ST_QUEUED; /* on_admitted goes on; upstream.c times the wait */
    return;
  }
  c->has_slot = true;
  connect_upstream(c);
}

/* ---- the session ops (rare events only) ------------------------------------ */

static void session_close(cynic__session_t *s, const char *why) {
  cynic__conn_t *c = cynic__container_of(s, cynic__conn_t, base);
  if (c->state == ST_CLOSING)
    return;
  set_outcome(c, CYNIC__OUT_CLOSED);
  conn_close(c, false, why);
}

static bool session_uses_endpoint(const cynic__session_t *s, const cynic__endpoint_t *e) {
  const cynic__conn_t *c = cynic__container_of(s, cynic__conn_t, base);
  return c->attempt.endpoint == e && c->state != ST_CLOSING;
}

static const cynic__session_ops_t session_ops = {
    .close = session_close,
    .uses_endpoint = session_uses_endpoint,
    .mark_in_use = NULL, /* one listener, one upstream: the base says it */
};

const cynic__mode_t cynic__tcp_mode = {
    .name = "tcp",
    .client_new = client_new,
    .client_discard = client_discard,
    .start = tcp_start,
};
