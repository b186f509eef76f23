/*
 * src/proxy/tcp.c: one proxied TCP connection, from accept to the last close.
 *
 *   accept -> [all breakers open? close at once]
 *          -> bulkhead: slot / queued (queue_timeout) / full: close at once
 *          -> pick endpoint (balance, skip open breakers) -> connect (connect timeout)
 *          -> relay both ways (relay.c: bounded rings, back pressure, half-close)
 *             until both sides have half-closed, a side resets, or a timeout
 *             (first byte, idle) fires
 *
 * This file keeps only TCP mode's lifecycle: admission and the attempt
 * (upstream.c), the upstream connection (pool.c), the byte relay (relay.c),
 * the timeouts, and what is reported when the connection ends. A reset (read
 * or write error) is forwarded as a reset: both sockets are closed with
 * SO_LINGER 0.
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

#include "err.h"
#include "addr.h"
#include "log.h"
#include "pool.h"
#include "proxy.h"
#include "relay.h"
#include "tcp.h"

typedef struct cynic__conn cynic__conn_t;

typedef enum conn_state {
  ST_NEW,        /* accepted, not yet admitted */
  ST_QUEUED,     /* waiting for a bulkhead slot, on upstream->waiters */
  ST_CONNECTING, /* holds a slot and a breaker permit; connect in flight */
  ST_OPEN,       /* forwarding */
  ST_CLOSING     /* handles closing; freed in the last close callback */
} conn_state_t;

struct cynic__conn {
  cynic__session_t base;    /* p->sessions, listener, upstream, client address */
  cynic__waiter_t waiter;   /* on the upstream's queue while ST_QUEUED (upstream.c) */
  cynic__attempt_t attempt; /* the endpoint and its breaker permit (upstream.c) */
  /* Small fields together: one 8-byte word. */
  uint8_t state;    /* conn_state_t */
  uint8_t handles;  /* handles not yet closed (at most 3); freed at 0 */
  bool has_slot;    /* holds a bulkhead slot: leave() when freed */
  bool has_outcome; /* outcome is set (metrics.c) */
  int outcome; /* CYNIC__EV_* or CYNIC__OUT_*: the first reason the connection ended */
  cynic__stream_t client; /* data: &relay (the streams' callbacks are relay.c's); TLS
                             when the listener terminates it (tls.c) */
  cynic__upconn_t server; /* the upstream connection (pool.c); open once connecting */
  uv_timer_t timer;       /* data: this connection */
  cynic__relay_t relay;   /* the byte pump (relay.c), set up once connected:
                             relay.down.got_bytes = the upstream's first byte came,
                             relay.up.got_bytes = the client's first byte went */
  uint64_t first_byte_ms; /* 0 = not armed */
  uint64_t idle_ms;
  const char *why; /* why it ended, for the debug log; static string */
  /* for metrics and the access log (metrics.c), with has_outcome and outcome
   * above (placed in padding holes) */
  const char *decision;
  /* Phase timestamps in microseconds (uv_hrtime, read once per phase event;
   * 0 = not reached). The loop's millisecond clock (uv_now) is too coarse for
   * a loopback or LAN upstream, whose phases last well under a millisecond;
   * the timeouts above keep the loop clock. */
  uint64_t accepted_us, connect_us, connected_us, first_sent_us, first_byte_at_us;
};

static void on_timer(uv_timer_t *t);
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
    next = c->relay.last_active_ms + c->idle_ms;
    if (c->first_byte_ms != 0 && c->first_byte_ms < next)
      next = c->first_byte_ms;
  }
  if (next == UINT64_MAX)
    return;
  uint64_t now = uv_now(c->client.tcp.loop);
  uv_timer_start(&c->timer, on_timer, next > now ? next - now : 0, 0);
}

static void on_timer(uv_timer_t *t) {
  cynic__conn_t *c = t->data;
  uint64_t now = uv_now(c->client.tcp.loop);
  switch (c->state) {
  case ST_CONNECTING:
    if (cynic__upconn_connect_expired(&c->server, now)) {
      if (c->server.handshaking) {
        cynic__tls_count_timeout(cynic__upconn_stream(&c->server));
        fault(c, CYNIC__EV_TLS_HANDSHAKE_TIMEOUT, NULL);
      } else {
        fault(c, CYNIC__EV_CONNECT_TIMEOUT, NULL);
      }
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
    if (now >= c->relay.last_active_ms + c->idle_ms) {
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
      "bytes_up", (json_int_t)c->relay.up.bytes, "bytes_down", (json_int_t)c->relay.down.bytes,
      "duration_ms", (json_int_t)((end_us - c->accepted_us) / 1000u));
  if (f != NULL && c->attempt.endpoint != NULL)
    json_object_set_new(f, "endpoint", json_string(c->attempt.endpoint->addr->text));
  cynic__log_event(CYNIC_LOG_DEBUG, "connection_closed", "connection closed", f);
}

static void conn_free(cynic__conn_t *c) {
  cynic__proxy_t *p = c->base.listener->proxy;
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
      .bytes_up = c->relay.up.bytes,
      .bytes_down = c->relay.down.bytes,
  };
  cynic__metrics_conn_done(&r);
  cynic__relay_free(&c->relay);
  free(c);
  if (had_slot)
    cynic__admission_leave(u); /* may start queued connections */
  cynic__proxy_conn_gone(p);
}

static void handle_closed(cynic__conn_t *c) {
  if (--c->handles == 0)
    conn_free(c);
}

static void on_timer_closed(uv_handle_t *h) {
  handle_closed(h->data);
}

static void on_stream_closed(uv_handle_t *h) {
  handle_closed(cynic__container_of(h->data, cynic__conn_t, relay));
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
  cynic__relay_stop(&c->relay);
  cynic__attempt_release(&c->attempt); /* no outcome yet: the permit goes back */
  /* A socket that received a RST is closed already (the kernel has nothing
   * to send on close), so only the other side needs SO_LINGER 0. */
  if (reset && !c->relay.up.from_reset)
    cynic__sock_linger_zero(&c->client.tcp);
  cynic__io_close(&c->client, reset, on_stream_closed);
  uv_close((uv_handle_t *)&c->timer, on_timer_closed);
  cynic__upconn_close(&c->server, reset && !c->relay.down.from_reset, on_stream_closed);
}

/* ---- relay events (rare: once per direction, or once per connection) ------ */

static void relay_first_bytes(cynic__relay_t *r, cynic__relay_dir_t *d) {
  cynic__conn_t *c = cynic__container_of(r, cynic__conn_t, relay);
  if (d == &r->down) {
    /* The upstream's first byte: the endpoint answered. */
    c->first_byte_ms = 0;
    c->first_byte_at_us = now_us();
    uint64_t from = r->up.got_bytes ? c->first_sent_us : c->connected_us;
    cynic__metrics_first_byte(c->base.upstream,
                              c->first_byte_at_us >= from ? c->first_byte_at_us - from : 0);
    cynic__attempt_success(&c->attempt);
  } else {
    /* The first bytes towards the upstream: from now on it owes an answer. */
    c->first_sent_us = now_us();
    if (!r->down.got_bytes && c->base.upstream->cfg->first_byte_timeout_ns > 0) {
      c->first_byte_ms = r->last_active_ms + cynic__config_ms(c->base.upstream->cfg->first_byte_timeout_ns);
      arm(c);
    }
  }
}

static void relay_eof(cynic__relay_t *r, cynic__relay_dir_t *d) {
  cynic__conn_t *c = cynic__container_of(r, cynic__conn_t, relay);
  /* The upstream closed without a word: a fault, unless the client had
   * closed without sending anything (a TCP health check, a client that
   * changed its mind), to which closing is the right answer. */
  if (d == &r->down && !r->down.got_bytes && (r->up.got_bytes || !r->up.eof))
    fault(c, CYNIC__EV_CLOSED_BEFORE_FIRST_BYTE, NULL);
}

static void relay_failed(cynic__relay_t *r, cynic__relay_dir_t *d, int err, bool writing) {
  cynic__conn_t *c = cynic__container_of(r, cynic__conn_t, relay);
  if (writing) {
    /* A write to d->to failed: that peer is gone; forward it as a reset. */
    if (d == &r->up && !r->down.got_bytes)
      fault(c, CYNIC__EV_RESET_BEFORE_FIRST_BYTE, cynic__strerror(err));
    conn_close(c, true, d == &r->up ? "upstream_write_error" : "client_write_error");
    return;
  }
  if (err == UV_ENOBUFS) { /* no memory for the ring: give up on this connection */
    set_outcome(c, CYNIC__OUT_CLOSED);
    cynic__log_event(CYNIC_LOG_ERROR, "out_of_memory", "out of memory for a connection buffer",
                     NULL);
    conn_close(c, true, "out_of_memory");
    return;
  }
  /* A reset (or another read error): forward it as a reset. */
  if (d == &r->down && !r->down.got_bytes)
    fault(c, CYNIC__EV_RESET_BEFORE_FIRST_BYTE, cynic__strerror(err));
  conn_close(c, true, d == &r->down ? "upstream_reset" : "client_reset");
}

static void relay_done(cynic__relay_t *r) {
  conn_close(cynic__container_of(r, cynic__conn_t, relay), false, "closed");
}

static const cynic__relay_ops_t relay_ops = {
    .first_bytes = relay_first_bytes,
    .eof = relay_eof,
    .failed = relay_failed,
    .done = relay_done,
};

/* ---- connecting ------------------------------------------------------------ */

static void on_connect(cynic__upconn_t *uc, int status) {
  cynic__conn_t *c = cynic__container_of(uc, cynic__conn_t, server);
  if (c->state == ST_CLOSING)
    return;
  if (status == CYNIC__UPCONN_HANDSHAKING) {
    arm(c); /* the handshake's deadline */
    return;
  }
  if (status == CYNIC__TLS_EVERIFY || status == CYNIC__TLS_EPROTOCOL) {
    fault(c, CYNIC__EV_TLS_FAILED, cynic__tls_last_error());
    conn_close(c, false, NULL);
    return;
  }
  if (status != 0) {
    fault(c, status == UV_ECONNREFUSED ? CYNIC__EV_CONNECT_REFUSED : CYNIC__EV_CONNECT_ERROR,
          cynic__strerror(status));
    conn_close(c, false, NULL);
    return;
  }
  c->connected_us = now_us();
  cynic__metrics_connected(c->base.upstream,
                           c->connected_us >= c->connect_us ? c->connected_us - c->connect_us : 0);
  cynic__relay_init(&c->relay, c->base.listener, (uv_stream_t *)&c->client,
                    cynic__upconn_stream(&c->server));
  c->state = ST_OPEN;
  cynic__relay_start(&c->relay, &relay_ops);
  if (c->state == ST_OPEN)
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
  rc = cynic__upconn_connect(&c->server, c->client.tcp.loop, e, &c->relay, on_connect);
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
          cynic__strerror(rc));
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
  if (uv_tcp_init(p->loop, &c->client.tcp) != 0) {
    free(c);
    return NULL;
  }
  c->client.tcp.data = &c->relay;
  return &c->client.tcp;
}

static void on_discarded(uv_handle_t *h) {
  free(cynic__container_of(h->data, cynic__conn_t, relay));
}

static void client_discard(uv_tcp_t *client) {
  cynic__io_close((cynic__stream_t *)(void *)client, true, on_discarded);
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
  c->idle_ms = cynic__config_ms(u->cfg->idle_timeout_ns);
  uint64_t lidle = cynic__config_ms(l->cfg->idle_timeout_ns);
  if (lidle > 0 && lidle < c->idle_ms)
    c->idle_ms = lidle;
  cynic__client_options(l, &c->client.tcp);

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
