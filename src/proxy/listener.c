/*
 * src/proxy/listener.c: bound addresses that accept clients.
 *
 * Handshaking and Fail Fast at the front door: past max_connections (and past
 * max_connections_per_client or rate_limit for one client address) a new
 * connection is accepted and closed at once, counted and summarised in the
 * log, instead of being left in the kernel's backlog where the client cannot
 * tell a busy proxy from a dead one. Every listener binds the explicit address of its
 * config (NICs and names); port 0 takes an ephemeral port, which the
 * "listening" log line reports.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "addr.h"
#include "log.h"
#include "pool.h"
#include "proxy.h"
#include "session.h"
#include "shed.h"

#define LISTEN_BACKLOG 511

/* The client's address as 16 bytes, IPv4 mapped into IPv6. */
static void client_ip(const struct sockaddr_storage *ss, uint8_t ip[16]) {
  memset(ip, 0, 16);
  if (ss->ss_family == AF_INET) {
    ip[10] = ip[11] = 0xff;
    memcpy(ip + 12, &((const struct sockaddr_in *)ss)->sin_addr, 4);
  } else if (ss->ss_family == AF_INET6) {
    memcpy(ip, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
  }
}

void cynic__client_sockaddr(const uint8_t ip[16], uint16_t port, struct sockaddr_storage *ss) {
  static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  memset(ss, 0, sizeof *ss);
  if (memcmp(ip, mapped, 12) == 0) {
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    memcpy(&in->sin_addr, ip + 12, 4);
  } else {
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    memcpy(&in6->sin6_addr, ip, 16);
  }
}

static size_t ip_hash(const uint8_t ip[16], size_t buckets) {
  uint64_t h = UINT64_C(1469598103934665603); /* FNV-1a */
  for (int i = 0; i < 16; i++)
    h = (h ^ ip[i]) * UINT64_C(1099511628211);
  return (size_t)(h & (buckets - 1));
}

/* Counts one more connection from `ip`: false when the client is at its limit
 * (or the entry cannot be allocated: fail closed, never unbounded). */
static bool client_enter(cynic__listener_t *l, const uint8_t ip[16]) {
  cynic__client_count_t **slot = &l->clients[ip_hash(ip, l->client_buckets)];
  for (cynic__client_count_t *c = *slot; c != NULL; c = c->next)
    if (memcmp(c->ip, ip, 16) == 0) {
      if (c->open >= l->cfg->max_connections_per_client)
        return false;
      c->open++;
      return true;
    }
  cynic__client_count_t *c = calloc(1, sizeof *c);
  if (c == NULL)
    return false;
  memcpy(c->ip, ip, 16);
  c->open = 1;
  c->next = *slot;
  *slot = c;
  return true;
}

void cynic__listener_release(cynic__listener_t *l, const uint8_t ip[16]) {
  l->open--;
  if (l->client_buckets == 0)
    return;
  for (cynic__client_count_t **p = &l->clients[ip_hash(ip, l->client_buckets)]; *p != NULL;
       p = &(*p)->next)
    if (memcmp((*p)->ip, ip, 16) == 0) {
      cynic__client_count_t *c = *p;
      if (--c->open == 0) {
        *p = c->next;
        free(c);
      }
      return;
    }
}

/* At most this many connections are accepted per listener per loop turn
 * (HAProxy's tune.maxaccept is 64 too). libuv accepts for as long as the
 * backlog has connections, so without a bound a reconnect storm on one
 * listener keeps the loop in its accept callback and every other socket
 * waits: the admin listener's /health and /ready among them (measured by
 * bench/overload.py: up to 725 ms under 1,000 reconnecting clients). Past
 * the budget the connection stays in libuv (which stops watching the
 * listener until it is accepted) and is taken at the end of this turn, after
 * the other sockets' callbacks have run. CYNIC__ACCEPT_BUDGET (proxy.h). */

static void accept_one(cynic__listener_t *l);

static void on_connection(uv_stream_t *server, int status) {
  cynic__listener_t *l = server->data;
  if (status < 0) {
    /* EMFILE and friends: libuv sheds the connection; the log stays bounded. */
    cynic__proxy_event(&l->counters, CYNIC__EV_ACCEPT_ERROR, "listener", l->cfg->name, NULL,
                       cynic__strerror(status));
    return;
  }
  cynic__proxy_t *p = l->proxy;
  if (l->accept_turn != p->turn) {
    l->accept_turn = p->turn;
    l->accepted = 0;
  }
  if (l->accepted >= CYNIC__ACCEPT_BUDGET) {
    l->accept_deferred = true; /* on_turn takes it */
    p->accept_deferred = true;
    return;
  }
  l->accepted++;
  accept_one(l);
}

/* After the poll phase of every loop turn: a new turn for the budgets, and
 * each listener that deferred a connection takes it now (which makes libuv
 * watch the listener again). */
static void on_turn(uv_check_t *c) {
  cynic__proxy_t *p = c->data;
  p->turn++;
  if (!p->accept_deferred)
    return;
  p->accept_deferred = false;
  for (size_t i = 0; i < p->listener_count; i++) {
    cynic__listener_t *l = &p->listeners[i];
    if (!l->accept_deferred)
      continue;
    l->accept_deferred = false;
    if (!l->listening)
      continue; /* closed meanwhile: libuv closed the pending socket with it */
    l->accept_turn = p->turn;
    l->accepted = 1;
    accept_one(l);
  }
}

/* A client's TLS handshake failed or timed out: counted and summarised. */
static void on_client_tls_failed(void *arg, cynic__tls_fail_t kind, const char *why) {
  (void)kind; /* l->tls_stats counts by kind (tls.c) */
  cynic__listener_t *l = arg;
  if (l->cfg != NULL)
    cynic__proxy_event(&l->counters, CYNIC__EV_CLIENT_TLS_FAILED, "listener", l->cfg->name, NULL,
                       why);
}

/* Takes the connection libuv holds for `l`: front-door limits, then its mode. */
static void accept_one(cynic__listener_t *l) {
  cynic__proxy_t *p = l->proxy;
  uv_stream_t *server = (uv_stream_t *)&l->handle;
  if (l->reserve == NULL)
    l->reserve = l->mode->client_new(p); /* refill after a shortage */
  uv_tcp_t *client = l->mode->client_new(p);
  if (client == NULL) {
    /* Out of memory. libuv stops reading a listener until its pending
     * connection is accepted, so accept it into the reserve and close it:
     * shed, not stuck. */
    client = l->reserve;
    l->reserve = NULL;
    if (client != NULL && uv_accept(server, (uv_stream_t *)client) == 0)
      cynic__proxy_event(&l->counters, CYNIC__EV_ACCEPT_ERROR, "listener", l->cfg->name, NULL,
                         "out of memory");
    if (client != NULL)
      l->mode->client_discard(client);
    else
      cynic__shed(server); /* no reserve either: never leave it pending */
    return;
  }
  if (uv_accept(server, (uv_stream_t *)client) != 0) {
    l->mode->client_discard(client);
    return;
  }
  struct sockaddr_storage peer;
  int len = sizeof peer;
  uint8_t ip[16];
  memset(&peer, 0, sizeof peer);
  uv_tcp_getpeername(client, (struct sockaddr *)&peer, &len);
  client_ip(&peer, ip);
  /* tcp mode: new connections per client; http mode counts requests instead
   * (http_limits.c). */
  if (l->rate != NULL && l->cfg->mode == CYNIC__MODE_TCP &&
      cynic_ratetable_take(l->rate, ip, 16, 1, NULL) != 0) {
    char who[CYNIC_ADDR_STR_MAX];
    cynic__addr_format((struct sockaddr *)&peer, who, sizeof who);
    cynic__proxy_event(&l->counters, CYNIC__EV_RATE_LIMITED, "listener", l->cfg->name, NULL, who);
    l->mode->client_discard(client);
    return;
  }
  if (l->open >= l->cfg->max_connections) {
    cynic__proxy_event(&l->counters, CYNIC__EV_MAX_CONNECTIONS, "listener", l->cfg->name, NULL,
                       NULL);
    l->mode->client_discard(client);
    return;
  }
  if (l->client_buckets != 0 && !client_enter(l, ip)) {
    char who[CYNIC_ADDR_STR_MAX];
    cynic__addr_format((struct sockaddr *)&peer, who, sizeof who);
    cynic__proxy_event(&l->counters, CYNIC__EV_MAX_PER_CLIENT, "listener", l->cfg->name, NULL, who);
    l->mode->client_discard(client);
    return;
  }
  /* TLS after the limits: a client refused costs no handshake. */
  if (l->tls != NULL &&
      cynic__tls_accept((cynic__stream_t *)(void *)client, l->tls, &l->tls_stats,
                        cynic__config_ms(l->cfg->tls.handshake_timeout_ns), on_client_tls_failed,
                        l) != 0) {
    cynic__proxy_event(&l->counters, CYNIC__EV_ACCEPT_ERROR, "listener", l->cfg->name, NULL,
                       "out of memory for TLS");
    l->mode->client_discard(client);
    return;
  }
  l->open++;
  uint16_t port = peer.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&peer)->sin6_port)
                                             : ntohs(((struct sockaddr_in *)&peer)->sin_port);
  l->mode->start(l, client, ip, port);
}

static void on_handle_closed(uv_handle_t *h) {
  cynic__listener_t *l = h->data;
  l->handle_open = false;
}

void cynic__listener_close(cynic__listener_t *l) {
  if (l->listening) {
    l->listening = false;
    cynic__shed_forget((uv_stream_t *)&l->handle);
    uv_close((uv_handle_t *)&l->handle, on_handle_closed);
  }
  if (l->reserve != NULL) {
    l->mode->client_discard(l->reserve);
    l->reserve = NULL;
  }
}

static int listener_start(cynic__proxy_t *p, cynic__listener_t *l) {
  const cynic__config_addr_t *a = &l->cfg->listen;
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  if (a->kind == CYNIC__ADDR_IPV4) {
    struct sockaddr_in *s = (struct sockaddr_in *)&ss;
    s->sin_family = AF_INET;
    s->sin_port = htons(a->port);
    memcpy(&s->sin_addr, a->ip, 4);
  } else {
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;
    s->sin6_family = AF_INET6;
    s->sin6_port = htons(a->port);
    memcpy(&s->sin6_addr, a->ip, 16);
  }
  int rc = uv_tcp_init(p->loop, &l->handle);
  if (rc != 0)
    return rc;
  l->listening = l->handle_open = true;
  l->handle.data = l;
  l->reserve = l->mode->client_new(p);
  /* An IPv6 listener takes IPv6 only: [::] and 0.0.0.0 are separate choices. */
  rc = uv_tcp_bind(&l->handle, (struct sockaddr *)&ss,
                   a->kind == CYNIC__ADDR_IPV6 ? UV_TCP_IPV6ONLY : 0);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&l->handle, LISTEN_BACKLOG, on_connection);
  if (rc != 0)
    return rc;
  cynic__listener_options(l);
  int len = sizeof ss;
  uv_tcp_getsockname(&l->handle, (struct sockaddr *)&ss, &len);
  cynic__addr_format((struct sockaddr *)&ss, l->address, sizeof l->address);
  cynic__log_event(CYNIC_LOG_INFO, "listening", "listening",
                   json_pack("{s:s, s:s, s:s, s:s}", "listener", l->cfg->name, "address",
                             l->address, "mode", l->mode->name, "upstream",
                             l->upstream->cfg->name));
  return 0;
}

int cynic__listener_adopt(cynic__proxy_t *p, cynic__listener_t *l, const cynic__listener_t *from) {
  uv_os_fd_t fd;
  int rc = uv_fileno((const uv_handle_t *)&from->handle, &fd);
  if (rc != 0)
    return rc;
  /* The same socket under a second descriptor: when the old listener closes
   * its descriptor the socket, its port and its backlog stay with this one,
   * so no client is refused in between. */
  int nfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (nfd < 0)
    return uv_translate_sys_error(errno);
  if ((rc = uv_tcp_init(p->loop, &l->handle)) != 0) {
    close(nfd);
    return rc;
  }
  l->listening = l->handle_open = true;
  l->handle.data = l;
  l->reserve = l->mode->client_new(p);
  if ((rc = uv_tcp_open(&l->handle, nfd)) != 0) {
    close(nfd); /* the handle does not own it yet; closing the handle is safe */
    return rc;
  }
  /* listen() again on a listening socket only sets the backlog */
  if ((rc = uv_listen((uv_stream_t *)&l->handle, LISTEN_BACKLOG, on_connection)) != 0)
    return rc;
  cynic__listener_options(l);
  memcpy(l->address, from->address, sizeof l->address);
  cynic__log_event(CYNIC_LOG_INFO, "listener_rebuilt", "listening",
                   json_pack("{s:s, s:s, s:s, s:s, s:I}", "listener", l->cfg->name, "address",
                             l->address, "mode", l->cfg->mode == CYNIC__MODE_HTTP ? "http" : "tcp",
                             "upstream", l->upstream->cfg->name, "buffer_bytes",
                             (json_int_t)l->cfg->buffer_bytes));
  return 0;
}

int cynic__listener_setup(cynic__proxy_t *p, cynic__listener_t *l,
                          const cynic__config_listener_t *cfg, cynic__upstream_t *u) {
  l->proxy = p;
  l->cfg = cfg;
  l->upstream = u;
  l->mode = cynic__mode_for(cfg->mode);
  int rc = cynic__listener_clients_new(cfg, &l->clients, &l->client_buckets);
  if (rc != 0)
    return rc;
  return cynic__listener_rate_new(p, cfg, &l->rate);
}

int cynic__listener_clients_new(const cynic__config_listener_t *cfg, cynic__client_count_t ***out,
                                size_t *buckets) {
  *out = NULL;
  *buckets = 0;
  if (cfg->max_connections_per_client == 0)
    return 0;
  size_t n = 64;
  while (n < cfg->max_connections / 4 && n < 65536)
    n *= 2;
  *out = calloc(n, sizeof **out);
  if (*out == NULL)
    return CYNIC_ENOMEM;
  *buckets = n;
  return 0;
}

int cynic__listener_rate_new(cynic__proxy_t *p, const cynic__config_listener_t *cfg,
                             cynic_ratetable_t **out) {
  *out = NULL;
  if (cfg->rate_count == 0)
    return 0;
  /* Unwanted Users: new connections (tcp) or requests (http) per client.
   * The table is bounded at rate_limit.max_clients (least recently seen
   * clients are forgotten first). */
  cynic_ratetable_config_t rc;
  cynic_ratetable_config_default(&rc);
  rc.clock.now = cynic__proxy_clock;
  rc.clock.arg = p;
  rc.rate_per_sec = (double)cfg->rate_count * 1e9 / (double)cfg->rate_period_ns;
  rc.burst = cfg->rate_burst;
  rc.capacity = cfg->rate_max_clients;
  return cynic_ratetable_new(&rc, out);
}

int cynic__listener_bind(cynic__proxy_t *p, cynic__listener_t *l) {
  int rc = listener_start(p, l);
  if (rc != 0)
    cynic__log_event(CYNIC_LOG_ERROR, "listen_failed", "cannot listen",
                     json_pack("{s:s, s:s, s:s}", "listener", l->cfg->name, "address",
                               l->cfg->listen.text, "error", cynic__strerror(rc)));
  return rc;
}

void cynic__listener_clients_free(cynic__listener_t *l) {
  for (size_t b = 0; b < l->client_buckets; b++)
    while (l->clients[b] != NULL) {
      cynic__client_count_t *c = l->clients[b];
      l->clients[b] = c->next;
      free(c);
    }
  free(l->clients);
  l->clients = NULL;
  l->client_buckets = 0;
}

static void listener_free(cynic__listener_t *l) {
  cynic__tls_listener_free(l);
  cynic__listener_clients_free(l);
  cynic_ratetable_free(l->rate);
  l->rate = NULL;
  cynic__blocks_free(&l->buffers);
}

void cynic__listener_discard(cynic__listener_t *l) {
  cynic__listener_close(l);
  listener_free(l);
}

bool cynic__listener_reclaim(cynic__listener_t *l) {
  cynic__listener_close(l);
  if (l->handle_open)
    return false; /* libuv still holds the handle: the next sweep */
  listener_free(l);
  memset(l, 0, sizeof *l);
  l->retired = true; /* cfg NULL: vacant */
  return true;
}

int cynic__listeners_start(cynic__proxy_t *p) {
  const cynic__config_t *cfg = p->cfg;
  if (uv_check_init(p->loop, &p->turn_check) == 0) {
    p->turn_check.data = p;
    p->turn_check_open = true;
    uv_check_start(&p->turn_check, on_turn);
    uv_unref((uv_handle_t *)&p->turn_check); /* never keeps the loop alive */
  }
  /* Room for the most a config may hold: a reload adds listeners in place and
   * never moves one (connections and libuv hold pointers into them). */
  p->listeners = calloc(CYNIC__CONFIG_MAX_LISTENERS, sizeof *p->listeners);
  if (p->listeners == NULL)
    return CYNIC_ENOMEM;
  p->listener_count = cfg->listener_count;
  for (size_t i = 0; i < cfg->listener_count; i++) {
    const cynic__config_listener_t *lc = &cfg->listeners[i];
    /* by name: after a reload the upstreams' order may differ from cfg's */
    cynic__upstream_t *u = &p->upstreams[lc->upstream];
    for (size_t k = 0; k < p->upstream_count; k++)
      if (!p->upstreams[k].retired && strcmp(p->upstreams[k].cfg->name, lc->upstream_name) == 0)
        u = &p->upstreams[k]; /* a reload during start may have retired some */
    int rc = cynic__listener_setup(p, &p->listeners[i], lc, u);
    if (rc != 0)
      return rc;
  }
  for (size_t i = 0; i < p->listener_count; i++) {
    int rc = cynic__listener_bind(p, &p->listeners[i]);
    if (rc != 0)
      return rc;
  }
  return 0;
}

void cynic__listeners_options_refresh(cynic__proxy_t *p) {
  for (size_t i = 0; i < p->listener_count; i++)
    if (p->listeners[i].cfg != NULL)
      cynic__listener_options_refresh(&p->listeners[i]);
}

void cynic__listeners_trim(cynic__proxy_t *p) {
  for (size_t i = 0; i < p->listener_count; i++)
    cynic__blocks_trim(&p->listeners[i].buffers);
}

void cynic__listeners_stop(cynic__proxy_t *p) {
  for (size_t i = 0; i < p->listener_count; i++) {
    cynic__listener_close(&p->listeners[i]);
  }
  if (p->turn_check_open) {
    p->turn_check_open = false;
    uv_close((uv_handle_t *)&p->turn_check, NULL);
  }
}

void cynic__listeners_free(cynic__proxy_t *p) {
  for (size_t i = 0; i < p->listener_count; i++)
    listener_free(&p->listeners[i]);
  free(p->listeners);
  p->listeners = NULL;
  p->listener_count = 0;
}

/* ---- reload: the listeners' part ------------------------------------------ */

void cynic__listeners_reload_undo(cynic__listeners_reload_t *r) {
  for (size_t i = 0; i < r->count; i++) {
    cynic_ratetable_free(r->rates[i]);
    free(r->clients[i]);
    r->rates[i] = NULL, r->clients[i] = NULL;
  }
}

int cynic__listeners_reload_prepare(cynic__proxy_t *p, const cynic__config_t *n,
                                    cynic__listeners_reload_t *r, const char **msg, char *why,
                                    size_t len) {
  r->count = p->listener_count;
  for (size_t i = 0; i < r->count; i++) {
    r->rates[i] = NULL, r->rate_swap[i] = false;
    r->clients[i] = NULL, r->client_buckets[i] = 0, r->drop_clients[i] = false;
  }
  for (size_t i = 0; i < r->count; i++) {
    const cynic__listener_t *l = &p->listeners[i];
    if (l->retired || l->cfg == NULL)
      continue;
    const cynic__config_listener_t *lc = cynic__config_listener_find(n, l->cfg->name);
    if (lc == NULL)
      continue;
    unsigned changes = cynic__config_listener_diff(l->cfg, lc);
    if (changes & (CYNIC__CHANGE_ADDRESS | CYNIC__CHANGE_REBUILD))
      continue; /* not kept: a new object is made from lc */
    int rc = 0;
    if (changes & CYNIC__CHANGE_RATE) {
      r->rate_swap[i] = true;
      if ((rc = cynic__listener_rate_new(p, lc, &r->rates[i])) != 0) {
        *msg = "reload refused: cannot make a rate table";
        snprintf(why, len, "listener '%s': rate_limit: %s", lc->name, cynic__strerror(rc));
      }
    }
    if (rc == 0 && l->client_buckets == 0 && lc->max_connections_per_client != 0 &&
        (rc = cynic__listener_clients_new(lc, &r->clients[i], &r->client_buckets[i])) != 0) {
      *msg = "reload refused: out of memory";
      snprintf(why, len, "out of memory");
    }
    if (rc != 0) {
      cynic__listeners_reload_undo(r);
      return rc;
    }
    r->drop_clients[i] = l->client_buckets != 0 && lc->max_connections_per_client == 0;
  }
  return 0;
}

void cynic__listeners_reload_apply(cynic__proxy_t *p, cynic__listeners_reload_t *r) {
  for (size_t i = 0; i < r->count; i++) {
    cynic__listener_t *l = &p->listeners[i];
    if (r->clients[i] != NULL) {
      l->clients = r->clients[i];
      l->client_buckets = r->client_buckets[i];
      r->clients[i] = NULL;
    } else if (r->drop_clients[i]) {
      cynic__listener_clients_free(l);
    }
    if (r->rate_swap[i]) { /* a new bucket per client: the new rate starts full */
      cynic_ratetable_free(l->rate);
      l->rate = r->rates[i];
      r->rates[i] = NULL;
    }
  }
  for (size_t i = 0; i < p->listener_count; i++) {
    cynic__listener_t *l = &p->listeners[i];
    if (!l->retired && l->cfg != NULL &&
        (l->upstream->retired || strcmp(l->upstream->cfg->name, l->cfg->upstream_name) != 0))
      l->upstream = cynic__upstream_named(p, l->cfg->upstream_name);
  }
  cynic__listeners_options_refresh(p); /* new client sockets inherit the new options */
}
