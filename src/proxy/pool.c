/*
 * src/proxy/pool.c: upstream connections, the per-endpoint idle pool and the
 * socket options of every proxied socket (contracts in pool.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "pool.h"

/* ---- socket options ---------------------------------------------------------- */

/* Set with setsockopt directly: uv_tcp_keepalive sets only the idle time. */
bool cynic__sock_options_set(uv_os_fd_t fd, const cynic__config_upstream_t *u) {
  int on = 1;
  int idle = (int)(u->keepalive_idle_ns / UINT64_C(1000000000));
  int intvl = (int)(u->keepalive_interval_ns / UINT64_C(1000000000));
  int cnt = (int)u->keepalive_probes;
  bool ok = setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) == 0;
  ok &= setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) == 0;
  ok &= setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle) == 0;
  ok &= setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl) == 0;
  ok &= setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt) == 0;
  if (u->user_timeout_ns > 0) {
    unsigned int ut = (unsigned int)(u->user_timeout_ns / 1000000u);
    ok &= setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ut, sizeof ut) == 0;
  }
  return ok;
}

static bool int_option_is(uv_os_fd_t fd, int level, int name, int want) {
  int v = 0;
  socklen_t len = sizeof v;
  return getsockopt(fd, level, name, &v, &len) == 0 && v == want;
}

bool cynic__sock_options_match(uv_os_fd_t fd, const cynic__config_upstream_t *u) {
  bool ok = int_option_is(fd, IPPROTO_TCP, TCP_NODELAY, 1) &&
            int_option_is(fd, SOL_SOCKET, SO_KEEPALIVE, 1) &&
            int_option_is(fd, IPPROTO_TCP, TCP_KEEPIDLE,
                          (int)(u->keepalive_idle_ns / UINT64_C(1000000000))) &&
            int_option_is(fd, IPPROTO_TCP, TCP_KEEPINTVL,
                          (int)(u->keepalive_interval_ns / UINT64_C(1000000000))) &&
            int_option_is(fd, IPPROTO_TCP, TCP_KEEPCNT, (int)u->keepalive_probes);
  if (ok && u->user_timeout_ns > 0)
    ok = int_option_is(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, (int)(u->user_timeout_ns / 1000000u));
  return ok;
}

void cynic__sock_linger_zero(uv_tcp_t *h) {
  uv_os_fd_t fd;
  if (uv_fileno((uv_handle_t *)h, &fd) != 0)
    return;
  struct linger l = {.l_onoff = 1, .l_linger = 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
}

/* Accepts a listener checks for inherited options before it sets them on
 * every socket: more than one, because after a reload's refresh the sockets
 * already in the accept queue still carry the old values. */
#define OPTIONS_CHECKS 8u

void cynic__listener_options(cynic__listener_t *l) {
  uv_os_fd_t fd;
  l->options = CYNIC__OPTIONS_PER_CONNECTION;
  if (uv_fileno((uv_handle_t *)&l->handle, &fd) == 0 &&
      cynic__sock_options_set(fd, l->upstream->cfg)) {
    l->options = CYNIC__OPTIONS_UNKNOWN;
    l->options_checks = OPTIONS_CHECKS;
  }
}

void cynic__listener_options_refresh(cynic__listener_t *l) {
  uv_os_fd_t fd;
  if (!l->listening || l->retired || uv_fileno((uv_handle_t *)&l->handle, &fd) != 0)
    return;
  if (l->options != CYNIC__OPTIONS_PER_CONNECTION &&
      cynic__sock_options_match(fd, l->upstream->cfg))
    return; /* unchanged: the verdict on inheritance stands */
  cynic__listener_options(l);
}

/* Five setsockopt calls per connection, unless the listener's first
 * connection showed that accepted sockets inherit them from the listening
 * socket. Checked rather than assumed, so a kernel that does not copy them
 * still gets every option on every socket. */
void cynic__client_options(cynic__listener_t *l, uv_tcp_t *client) {
  uv_os_fd_t fd;
  if (l->options == CYNIC__OPTIONS_INHERITED)
    return;
  if (uv_fileno((uv_handle_t *)client, &fd) != 0)
    return;
  if (l->options == CYNIC__OPTIONS_UNKNOWN) {
    if (cynic__sock_options_match(fd, l->upstream->cfg)) {
      l->options = CYNIC__OPTIONS_INHERITED;
      return;
    }
    if (l->options_checks <= 1) /* this kernel does not copy them */
      l->options = CYNIC__OPTIONS_PER_CONNECTION;
    else
      l->options_checks--; /* maybe accepted before a refresh: look again */
  }
  cynic__sock_options_set(fd, l->upstream->cfg);
}

/* ---- upstream connections ------------------------------------------------------ */

static void on_handshake(cynic__stream_t *s, int status) {
  cynic__upconn_t *uc = cynic__container_of(s, cynic__upconn_t, handle);
  uc->handshaking = false;
  uc->deadline_ms = 0;
  uc->on_connect(uc, status);
}

static void on_connect(uv_connect_t *req, int status) {
  cynic__upconn_t *uc = req->data;
  if (status == 0) {
    uv_os_fd_t fd;
    uc->deadline_ms = 0;
    cynic__upstream_t *u = uc->endpoint->upstream;
    if (uv_fileno((uv_handle_t *)&uc->handle.tcp, &fd) == 0)
      cynic__sock_options_set(fd, u->cfg);
    if (u->tls != NULL) {
      /* The name verified and sent (SNI): tls.server_name, or the endpoint's
       * host as written. */
      const char *name = u->cfg->tls.server_name != NULL ? u->cfg->tls.server_name
                                                         : uc->endpoint->addr->host;
      uc->deadline_ms =
          uv_now(uc->handle.tcp.loop) + cynic__config_ms(u->cfg->tls.handshake_timeout_ns);
      uc->handshaking = true;
      status = cynic__tls_connect(&uc->handle, u->tls, name, uc->http, &uc->endpoint->tls_session,
                                  &u->tls_stats, on_handshake);
      if (status == 0) {
        uc->on_connect(uc, CYNIC__UPCONN_HANDSHAKING);
        return; /* on_handshake goes on */
      }
      uc->handshaking = false;
      uc->deadline_ms = 0;
    }
  }
  uc->on_connect(uc, status);
}

int cynic__upconn_connect(cynic__upconn_t *uc, uv_loop_t *loop, cynic__endpoint_t *e, void *data,
                          cynic__upconn_cb cb) {
  uint64_t ns = e->upstream->cfg->connect_timeout_ns;
  uc->endpoint = e;
  uc->on_connect = cb;
  uc->deadline_ms = uv_now(loop) + cynic__config_ms(ns);
  uc->handshaking = false;
  uc->handle.tls = NULL;
  int rc = uv_tcp_init(loop, &uc->handle.tcp);
  if (rc != 0)
    return rc;
  uc->open = true;
  uc->handle.tcp.data = data;
  uc->connect_req.data = uc;
  return uv_tcp_connect(&uc->connect_req, &uc->handle.tcp, (const struct sockaddr *)&e->sa,
                        on_connect);
}

void cynic__upconn_close(cynic__upconn_t *uc, bool reset, uv_close_cb cb) {
  if (!uc->open)
    return;
  uc->open = false;
  if (reset)
    cynic__sock_linger_zero(&uc->handle.tcp);
  cynic__io_close(&uc->handle, reset, cb);
}

/* ---- the idle pool ------------------------------------------------------------- */

cynic__upconn_t *cynic__upconn_new(void) {
  return calloc(1, sizeof(cynic__upconn_t));
}

void cynic__upconn_free_cb(uv_handle_t *h) {
  free(cynic__container_of((cynic__stream_t *)(void *)h, cynic__upconn_t, handle));
}

static uint64_t idle_timeout_ms(const cynic__endpoint_t *e) {
  return cynic__config_ms(e->upstream->cfg->http.pool_idle_timeout_ns);
}

/* Off the list and closed; the close callback frees it without touching its
 * endpoint (which may be gone by then). */
static void discard(cynic__upconn_t *uc) {
  cynic__endpoint_t *e = uc->endpoint;
  cynic__list_remove(&uc->idle.link);
  e->idle_count--;
  e->pool_discarded++;
  cynic__upconn_close(uc, false, cynic__upconn_free_cb);
}

/* While idle nothing is expected: whatever arrives is read into this and
 * dropped (the connection is closed at once). One loop thread: one buffer. */
static char idle_scratch[64];

static void idle_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  (void)suggested;
  *buf = uv_buf_init(idle_scratch, sizeof idle_scratch);
}

static void idle_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  (void)buf;
  if (nread == 0)
    return; /* EAGAIN: nothing after all */
  /* Bytes nobody asked for, EOF or an error: never hand this one out. */
  discard(s->data);
}

/* True when the kernel holds nothing for the socket and it is not closed:
 * the check just before reuse, for an EOF the loop has not read yet. */
static bool still_open(cynic__upconn_t *uc) {
  uv_os_fd_t fd;
  if (uv_fileno((uv_handle_t *)&uc->handle.tcp, &fd) != 0)
    return false;
  char c;
  ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

cynic__upconn_t *cynic__pool_take(cynic__endpoint_t *e, uint64_t now_ms, bool check) {
  uint64_t max_age = idle_timeout_ms(e);
  while (e->idle_count > 0) {
    cynic__upconn_t *uc = cynic__container_of(e->idle.prev, cynic__upconn_t, idle.link);
    /* The check costs a system call: the caller asks for it when a stale
     * connection would cost more than a retry (a request with a body, which
     * cannot go twice); and a connection given back in this very millisecond
     * (back-to-back requests) was read by the loop since. */
    if (now_ms - uc->idle.since_ms >= max_age ||
        (check && now_ms > uc->idle.since_ms && !still_open(uc))) {
      discard(uc); /* the newest is too old or closed: older ones go at the sweep */
      continue;
    }
    cynic__list_remove(&uc->idle.link);
    e->idle_count--;
    e->pool_reused++;
    uc->handle.tcp.data = NULL;
    return uc;
  }
  return NULL;
}

bool cynic__pool_give(cynic__upconn_t *uc, uint64_t now_ms) {
  cynic__endpoint_t *e = uc->endpoint;
  uint32_t max = e->upstream->cfg == NULL || e->upstream->retired
                     ? 0
                     : e->upstream->cfg->http.pool_max_idle;
  if (max == 0 || !uc->open)
    return false;
  void *owner = uc->handle.tcp.data;
  uc->handle.tcp.data = uc;
  uv_stream_t *st = cynic__upconn_stream(uc);
  if (uc->reading) {
    cynic__io_read_switch(st, idle_alloc, idle_read);
  } else if (cynic__io_read_start(st, idle_alloc, idle_read) != 0) {
    uc->handle.tcp.data = owner; /* still the caller's, for its own close */
    return false;
  }
  uc->reading = true;
  while (e->idle_count >= max) /* full (or max lowered by a reload): the oldest goes */
    discard(cynic__container_of(e->idle.next, cynic__upconn_t, idle.link));
  uc->idle.since_ms = now_ms;
  cynic__list_push(&e->idle, &uc->idle.link);
  e->idle_count++;
  return true;
}

void cynic__pool_sweep(cynic__endpoint_t *e, uint64_t now_ms) {
  if (e->idle_count == 0)
    return;
  uint64_t max_age = idle_timeout_ms(e);
  while (e->idle_count > 0) {
    cynic__upconn_t *uc = cynic__container_of(e->idle.next, cynic__upconn_t, idle.link);
    if (now_ms - uc->idle.since_ms < max_age)
      break; /* oldest first: the rest are younger */
    discard(uc);
  }
}

void cynic__pool_close_all(cynic__endpoint_t *e) {
  while (e->idle_count > 0)
    discard(cynic__container_of(e->idle.next, cynic__upconn_t, idle.link));
}
