/*
 * src/proxy/health.c: active health checks, one per endpoint of an upstream
 * with a health_check section (health.h has the contract).
 *
 * Each check owns one timer: between checks it is armed for the next one,
 * while a check runs for its timeout, so a check that hangs (a backend that
 * accepts and never answers) is cut at the timeout like any other failure.
 * A check's connection is its own uv_tcp_t, made for the check and closed
 * with its verdict: it never comes from or goes to the pool, takes no
 * bulkhead slot and no retry budget, and the breaker never hears of it as a
 * call (only the verdicts move it: cynic_breaker_hold_open, _end_hold).
 *
 * The response is parsed by src/common/http_msg.c (strict, like every other
 * response cynic reads): the head (status, Content-Type) is judged as soon
 * as it is complete; a check with expect.body then reads the body until the
 * text is found (pass), the body ends without it or CYNIC__HEALTH_MAX_RESPONSE
 * bytes were read (fail). The text is matched across reads by keeping its
 * length - 1 last bytes, so no body is ever buffered.
 *
 * Jitter: the next check starts interval +-10 % after the previous one
 * started (from libcynic's rng, one per process, seeded by
 * cynic_rng_seed_auto), the first at a random point of [0, interval): checks
 * of several endpoints, and of several cynic processes, drift apart instead
 * of arriving together.
 */
#include "health.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cynic/backoff.h"
#include "http_exchange.h"
#include "http_msg.h"
#include "log.h"

#define READ_BUF 4096u
#define RETRY_CLOSING_MS 10u /* the last check's socket is still closing: look again */

typedef struct check check_t;

struct check {
  cynic__health_t *h;
  cynic__endpoint_t *e; /* NULL once the checks are stopped */
  uv_timer_t timer;     /* the next check, or the running one's timeout */
  cynic__stream_t tcp;  /* the running check's connection (TLS when the upstream has tls) */
  uv_connect_t connect;
  uv_write_t write;
  bool tcp_open;       /* tcp initialised, its close callback not yet run */
  bool in_flight;      /* a check runs and has no verdict yet */
  uint64_t started_hr; /* uv_hrtime() at its start (latency) */
  uint64_t started_ms; /* uv_now() at its start (the next one's schedule) */
  size_t read;         /* response bytes read by the running check */
  bool head_ok;        /* its head passed; waiting for expect.body */
  bool body_found;     /* expect.body seen */
  size_t tail_len;     /* body bytes kept to match expect.body across reads */
  char tail[CYNIC__HEALTH_MAX_BODY];
  cynic__http_msg_t msg; /* the response parser (HTTP checks) */
  char *store;           /* its head store; NULL for a TCP check */
  size_t store_size;
  char *buf;     /* the read buffer (READ_BUF); NULL for a TCP check */
  char *request; /* the request, made once; NULL for a TCP check */
  size_t request_len;
  cynic__health_status_t st;
};

struct cynic__health {
  cynic__proxy_t *proxy;
  cynic__config_health_t *cfg;               /* our own copy (a reload compares it) */
  char upstream[CYNIC__CONFIG_MAX_NAME + 1]; /* its name, for logs */
  size_t open_handles;                       /* handles whose close callbacks are due */
  bool stopped;                              /* freed once open_handles is 0 */
  size_t count;
  check_t checks[]; /* one per endpoint, in the same order */
};

/* One per process: checks of every endpoint draw from it. */
static cynic_rng_t rng;
static bool rng_seeded;

const char *cynic__health_state_name(cynic__health_state_t s) {
  switch (s) {
  case CYNIC__HEALTH_HEALTHY:
    return "healthy";
  case CYNIC__HEALTH_UNHEALTHY:
    return "unhealthy";
  case CYNIC__HEALTH_UNKNOWN:
    break;
  }
  return "unknown";
}

static void health_free(cynic__health_t *h) {
  for (size_t k = 0; k < h->count; k++) {
    free(h->checks[k].store);
    free(h->checks[k].buf);
    free(h->checks[k].request);
  }
  cynic__config_health_free(h->cfg);
  free(h);
}

static void handle_closed(cynic__health_t *h) {
  if (--h->open_handles == 0 && h->stopped)
    health_free(h);
}

static void on_timer_closed(uv_handle_t *t) {
  check_t *c = t->data;
  handle_closed(c->h);
}

static void on_tcp_closed(uv_handle_t *t) {
  check_t *c = t->data;
  c->tcp_open = false;
  handle_closed(c->h);
}

static void on_timer(uv_timer_t *t);

/* The next check, interval +-10 % after this one started. */
static void schedule(check_t *c) {
  cynic__proxy_t *p = c->h->proxy;
  if (p->draining || p->stopping || c->e == NULL)
    return; /* a drain ends the checks; the loop may end */
  uint64_t iv = cynic__config_ms(c->h->cfg->interval_ns);
  uint64_t next = cynic_rng_range(&rng, iv - iv / 10, iv + iv / 10);
  uint64_t elapsed = uv_now(p->loop) - c->started_ms;
  uv_timer_start(&c->timer, on_timer, next > elapsed ? next - elapsed : 1, 0);
}

/* A failed check's reason, for the log and /status. */
static void failure_text(check_t *c, const char *fmt, va_list ap) {
  vsnprintf(c->st.last_failure, sizeof c->st.last_failure, fmt, ap);
}

/* The verdict's effect on the endpoint: counts, state, breaker, log. */
static void judge(check_t *c, bool pass) {
  cynic__endpoint_t *e = c->e;
  const cynic__config_health_t *cfg = c->h->cfg;
  cynic__health_status_t *st = &c->st;
  st->checks++;
  if (pass) {
    st->failures_in_row = 0;
    if (st->passes_in_row < UINT32_MAX)
      st->passes_in_row++;
    if (st->state == CYNIC__HEALTH_UNKNOWN) {
      st->state = CYNIC__HEALTH_HEALTHY; /* it was in rotation already */
    } else if (st->state == CYNIC__HEALTH_UNHEALTHY && st->passes_in_row >= cfg->healthy_after) {
      st->state = CYNIC__HEALTH_HEALTHY;
      /* CYNIC_ESTATE: an operator holds it (or reset it): theirs to change */
      bool released = cynic_breaker_end_hold(e->breaker) == 0;
      cynic__log_event(
          CYNIC_LOG_INFO, "endpoint_healthy", "endpoint back in rotation: its health checks pass",
          json_pack("{s:s, s:s, s:i, s:b}", "upstream", c->h->upstream, "endpoint", e->addr->text,
                    "passes", (int)st->passes_in_row, "breaker_closed", released));
    }
    return;
  }
  st->failures++;
  st->passes_in_row = 0;
  if (st->failures_in_row < UINT32_MAX)
    st->failures_in_row++;
  cynic__proxy_event(&e->counters, CYNIC__EV_HEALTH_CHECK_FAILED, "endpoint", e->addr->text,
                     c->h->upstream, st->last_failure);
  if (st->failures_in_row < cfg->unhealthy_after)
    return;
  /* Held open on every failure while unhealthy: an operator's reset puts it
   * back under automatic control, and the next failed check takes it out
   * again; a trip or force_closed is never changed (CYNIC_ESTATE). */
  bool held = cynic_breaker_hold_open(e->breaker) == 0;
  if (st->state != CYNIC__HEALTH_UNHEALTHY) {
    st->state = CYNIC__HEALTH_UNHEALTHY;
    cynic__log_event(CYNIC_LOG_WARN, "endpoint_unhealthy",
                     "endpoint out of rotation: its health checks fail",
                     json_pack("{s:s, s:s, s:i, s:s, s:b}", "upstream", c->h->upstream, "endpoint",
                               e->addr->text, "failures", (int)st->failures_in_row, "error",
                               st->last_failure, "breaker_held", held));
  }
}

/* Ends the running check with its verdict; `fmt` says why it failed (NULL
 * for a pass). Closes its connection and schedules the next one. */
static void finish(check_t *c, bool pass, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void finish(check_t *c, bool pass, const char *fmt, ...) {
  if (!c->in_flight)
    return;
  c->in_flight = false;
  uv_timer_stop(&c->timer);
  if (c->tcp_open && !uv_is_closing((uv_handle_t *)&c->tcp))
    cynic__io_close(&c->tcp, true, on_tcp_closed);
  c->st.last_latency_us = (uv_hrtime() - c->started_hr) / 1000u;
  if (!pass) {
    va_list ap;
    va_start(ap, fmt);
    failure_text(c, fmt, ap);
    va_end(ap);
  }
  if (c->e != NULL)
    judge(c, pass);
  schedule(c);
}

/* ---- HTTP: the response ----------------------------------------------------- */

static int on_body(cynic__http_msg_t *m, const char *at, size_t n) {
  check_t *c = m->data;
  const char *needle = c->h->cfg->expect_body;
  if (needle == NULL || c->body_found || n == 0)
    return 0;
  size_t k = strlen(needle), keep = k - 1; /* 1..CYNIC__HEALTH_MAX_BODY */
  char join[2 * CYNIC__HEALTH_MAX_BODY];
  size_t head = n < keep ? n : keep;
  memcpy(join, c->tail, c->tail_len);
  memcpy(join + c->tail_len, at, head);
  if (memmem(join, c->tail_len + head, needle, k) != NULL || memmem(at, n, needle, k) != NULL) {
    c->body_found = true;
    return 0;
  }
  /* keep the last k - 1 bytes seen, for a match across this read and the next */
  if (n >= keep) {
    memcpy(c->tail, at + n - keep, keep);
    c->tail_len = keep;
  } else {
    size_t total = c->tail_len + n, drop = total > keep ? total - keep : 0;
    memmove(c->tail, c->tail + drop, c->tail_len - drop);
    memcpy(c->tail + c->tail_len - drop, at, n);
    c->tail_len = total - drop;
  }
  return 0;
}

/* The head is complete: status and content type. */
static void judge_head(check_t *c) {
  const cynic__config_health_t *cfg = c->h->cfg;
  int status = c->msg.status;
  if (status < cfg->expect_status_min || status > cfg->expect_status_max) {
    finish(c, false, "status %d outside %u-%u", status, cfg->expect_status_min,
           cfg->expect_status_max);
    return;
  }
  if (cfg->expect_content_type != NULL) {
    size_t n = 0;
    const char *v = cynic__http_msg_find(&c->msg, "Content-Type", &n);
    if (v == NULL) {
      finish(c, false, "no Content-Type; expected %s", cfg->expect_content_type);
      return;
    }
    if (!cynic__hx_media_type_is(v, n, cfg->expect_content_type)) {
      finish(c, false, "content type %.*s; expected %s", (int)(n > 64 ? 64 : n), v,
             cfg->expect_content_type);
      return;
    }
  }
  c->head_ok = true;
  if (cfg->expect_body == NULL)
    finish(c, true, NULL);
}

/* The response ended (DONE): a check still waiting for its body text fails. */
static void response_done(check_t *c) {
  if (c->head_ok && c->body_found)
    finish(c, true, NULL);
  else
    finish(c, false, "body without '%.64s'", c->h->cfg->expect_body);
}

static void feed(check_t *c, const char *data, size_t len) {
  size_t off = 0;
  while (c->in_flight && off < len) {
    size_t used = 0;
    int rc = cynic__http_msg_feed(&c->msg, data + off, len - off, &used);
    off += used;
    if (rc < 0) {
      finish(c, false, "bad response: %s", c->msg.error_reason ? c->msg.error_reason : "refused");
      return;
    }
    if (rc == CYNIC__HTTP_HEAD) {
      if (!c->msg.interim)
        judge_head(c);
    } else if (rc == CYNIC__HTTP_DONE) {
      if (!c->msg.interim) {
        response_done(c);
        return;
      }
      cynic__http_msg_next(&c->msg); /* a 100 Continue or so: the final one follows */
      cynic__http_msg_begin(&c->msg, c->store, c->store_size);
    }
    if (c->in_flight && c->head_ok && c->body_found)
      finish(c, true, NULL);
  }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  (void)suggested;
  check_t *c = h->data;
  *b = uv_buf_init(c->buf, READ_BUF);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  check_t *c = s->data;
  if (!c->in_flight || n == 0)
    return;
  if (n == UV_EOF) {
    int rc = cynic__http_msg_eof(&c->msg);
    if (rc == CYNIC__HTTP_DONE)
      response_done(c);
    else
      finish(c, false, "%s",
             c->msg.status == 0 ? "closed before a response"
                                : "closed before the response was complete");
    return;
  }
  if (n < 0) {
    finish(c, false, "read: %s", uv_strerror((int)n));
    return;
  }
  size_t len = (size_t)n;
  if (len > CYNIC__HEALTH_MAX_RESPONSE - c->read)
    len = CYNIC__HEALTH_MAX_RESPONSE - c->read;
  c->read += len;
  feed(c, b->base, len);
  if (c->in_flight && c->read >= CYNIC__HEALTH_MAX_RESPONSE)
    finish(c, false, "no verdict in the first %u bytes of the response",
           (unsigned)CYNIC__HEALTH_MAX_RESPONSE);
}

static void on_write(uv_write_t *w, int status) {
  check_t *c = w->data;
  if (status < 0 && status != UV_ECANCELED && c->in_flight)
    finish(c, false, "write: %s", uv_strerror(status));
}

/* ---- the check -------------------------------------------------------------- */

/* Connected (and, for a tls upstream, the handshake done): a TCP check
 * passes; an HTTP check sends its request. */
static void connected(check_t *c) {
  if (c->request == NULL) { /* a TCP check: the connect is the check */
    finish(c, true, NULL);
    return;
  }
  uv_buf_t b = uv_buf_init(c->request, (unsigned)c->request_len);
  uv_stream_t *s = (uv_stream_t *)&c->tcp.tcp;
  int rc = cynic__io_write(&c->write, s, &b, 1, on_write);
  if (rc == 0)
    rc = cynic__io_read_start(s, on_alloc, on_read);
  if (rc != 0)
    finish(c, false, "write: %s", uv_strerror(rc));
}

static void on_handshake(cynic__stream_t *s, int status) {
  check_t *c = cynic__container_of(s, check_t, tcp);
  if (!c->in_flight)
    return;
  if (status != 0) {
    finish(c, false, "tls: %s", cynic__tls_last_error());
    return;
  }
  connected(c);
}

static void on_connect(uv_connect_t *req, int status) {
  check_t *c = req->data;
  if (!c->in_flight || status == UV_ECANCELED)
    return;
  if (status < 0) {
    finish(c, false, "connect: %s", uv_strerror(status));
    return;
  }
  /* A tls upstream's endpoint is checked as traffic reaches it: through a
   * verified handshake (a TCP check passes on the handshake). */
  cynic__upstream_t *u = c->e->upstream;
  if (u->tls != NULL) {
    const char *name =
        u->cfg->tls.server_name != NULL ? u->cfg->tls.server_name : c->e->addr->host;
    int rc = cynic__tls_connect(&c->tcp, u->tls, name, c->request != NULL, &c->e->tls_session,
                                NULL, on_handshake);
    if (rc != 0)
      finish(c, false, "tls: %s", uv_strerror(rc));
    return;
  }
  connected(c);
}

/* The check is under way: its state afresh and, for an HTTP check, the
 * response parser ready for the answer. */
static void begin(check_t *c) {
  c->in_flight = true;
  c->read = 0;
  c->head_ok = c->body_found = false;
  c->tail_len = 0;
  if (c->request != NULL) {
    cynic__http_msg_limits_t lim = {CYNIC__HEALTH_MAX_HEAD, CYNIC__HTTP_MSG_MAX_FIELDS, 0};
    cynic__http_msg_init(&c->msg, CYNIC__HTTP_RESPONSE, &lim);
    c->msg.on_body = on_body;
    c->msg.data = c;
    cynic__http_msg_begin(&c->msg, c->store, c->store_size);
    cynic__http_msg_expect(&c->msg, HTTP_GET);
  }
}

static void start(check_t *c) {
  cynic__health_t *h = c->h;
  cynic__proxy_t *p = h->proxy;
  if (c->e == NULL || p->draining || p->stopping)
    return;
  if (c->tcp_open) { /* the last one's socket is still closing */
    uv_timer_start(&c->timer, on_timer, RETRY_CLOSING_MS, 0);
    return;
  }
  c->started_ms = uv_now(p->loop);
  c->started_hr = uv_hrtime();
  if (!c->e->resolved) { /* a host name without an address yet: nothing to check */
    schedule(c);
    return;
  }
  begin(c);
  c->tcp.tls = NULL;
  int rc = uv_tcp_init(p->loop, &c->tcp.tcp);
  if (rc != 0) {
    finish(c, false, "no local resources: %s", uv_strerror(rc));
    return;
  }
  c->tcp.tcp.data = c;
  c->tcp_open = true;
  h->open_handles++;
  c->connect.data = c;
  c->write.data = c;
  uv_timer_start(&c->timer, on_timer, cynic__config_ms(h->cfg->timeout_ns), 0);
  rc = uv_tcp_connect(&c->connect, &c->tcp.tcp, (const struct sockaddr *)&c->e->sa, on_connect);
  if (rc != 0)
    finish(c, false, "connect: %s", uv_strerror(rc));
}

static void on_timer(uv_timer_t *t) {
  check_t *c = t->data;
  if (c->in_flight)
    finish(c, false, "timeout after %llu ms",
           (unsigned long long)cynic__config_ms(c->h->cfg->timeout_ns));
  else
    start(c);
}

/* ---- lifecycle -------------------------------------------------------------- */

/* "GET <path> HTTP/1.1" with Host (the configured one or the endpoint as
 * written), closing the connection after. */
#define REQUEST_FORMAT                                                                             \
  "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: cynic-health-check\r\nAccept: */*\r\n"               \
  "Connection: close\r\n\r\n"

static char *request_new(const cynic__config_health_t *cfg, const cynic__endpoint_t *e,
                         size_t *len) {
  const char *host = cfg->host != NULL ? cfg->host : e->addr->text;
  int n = snprintf(NULL, 0, REQUEST_FORMAT, cfg->path, host);
  char *r = n > 0 ? malloc((size_t)n + 1) : NULL;
  if (r == NULL)
    return NULL;
  snprintf(r, (size_t)n + 1, REQUEST_FORMAT, cfg->path, host);
  *len = (size_t)n;
  return r;
}

/* Checks for u's endpoints (not started), each with the status of the check
 * of the same endpoint address in `from` (NULL: none). NULL without memory. */
static cynic__health_t *health_new(cynic__proxy_t *p, cynic__upstream_t *u,
                                   const cynic__health_t *from) {
  cynic__health_t *h = calloc(1, sizeof *h + u->endpoint_count * sizeof(check_t));
  if (h == NULL)
    return NULL;
  h->proxy = p;
  h->count = u->endpoint_count;
  snprintf(h->upstream, sizeof h->upstream, "%s", u->cfg->name);
  if ((h->cfg = cynic__config_health_copy(&u->cfg->health)) == NULL)
    goto out_free;
  cynic__http_msg_limits_t lim = {CYNIC__HEALTH_MAX_HEAD, CYNIC__HTTP_MSG_MAX_FIELDS, 0};
  size_t store = cynic__http_msg_store_size(&lim);
  for (size_t k = 0; k < h->count; k++) {
    check_t *c = &h->checks[k];
    c->h = h;
    c->e = &u->endpoints[k];
    if (h->cfg->path != NULL) {
      c->store_size = store;
      c->store = aligned_alloc(8, (store + 7) / 8 * 8);
      c->buf = malloc(READ_BUF);
      c->request = request_new(h->cfg, c->e, &c->request_len);
      if (c->store == NULL || c->buf == NULL || c->request == NULL)
        goto out_free;
    }
    for (size_t j = 0; from != NULL && j < from->count; j++) {
      const check_t *o = &from->checks[j];
      if (o->e != NULL && strcmp(o->e->addr->text, c->e->addr->text) == 0) {
        c->st = o->st;
        break;
      }
    }
  }
  return h;
out_free:
  health_free(h);
  return NULL;
}

/* Starts every check at a random point of its first interval. */
static void health_start(cynic__health_t *h) {
  if (!rng_seeded) {
    cynic_rng_seed_auto(&rng);
    rng_seeded = true;
  }
  uint64_t iv = cynic__config_ms(h->cfg->interval_ns);
  for (size_t k = 0; k < h->count; k++) {
    check_t *c = &h->checks[k];
    uv_timer_init(h->proxy->loop, &c->timer);
    c->timer.data = c;
    uv_unref((uv_handle_t *)&c->timer); /* never what keeps the loop running */
    h->open_handles++;
    uv_timer_start(&c->timer, on_timer, cynic_rng_range(&rng, 0, iv - 1), 0);
  }
}

/* Stops h: no check starts again, a running one is dropped (no verdict), the
 * handles close and the last close callback frees h. */
static void health_stop(cynic__health_t *h) {
  h->stopped = true;
  for (size_t k = 0; k < h->count; k++) {
    check_t *c = &h->checks[k];
    c->e = NULL;
    c->in_flight = false;
    if (!uv_is_closing((uv_handle_t *)&c->timer))
      uv_close((uv_handle_t *)&c->timer, on_timer_closed);
    if (c->tcp_open && !uv_is_closing((uv_handle_t *)&c->tcp))
      cynic__io_close(&c->tcp, true, on_tcp_closed);
  }
  if (h->open_handles == 0)
    health_free(h);
}

static bool in_use(const cynic__upstream_t *u) {
  return u->cfg != NULL && !u->retired && !u->fresh && u->endpoints != NULL;
}

/* The checks of the retired upstream named `name` still running (the one a
 * rebuilt upstream replaces), or NULL. */
static const cynic__health_t *retired_named(const cynic__proxy_t *p, const char *name) {
  for (size_t i = 0; i < p->upstream_count; i++) {
    const cynic__upstream_t *u = &p->upstreams[i];
    if (u->retired && u->cfg != NULL && u->health != NULL && strcmp(u->cfg->name, name) == 0)
      return u->health;
  }
  return NULL;
}

void cynic__health_sync(cynic__proxy_t *p) {
  if (p->stopping || p->upstreams == NULL)
    return;
  for (size_t i = 0; i < p->upstream_count; i++) {
    cynic__upstream_t *u = &p->upstreams[i];
    if (!in_use(u) || !u->cfg->health.enabled)
      continue;
    if (u->health != NULL && u->health->count == u->endpoint_count &&
        cynic__config_health_diff(u->health->cfg, &u->cfg->health) == 0)
      continue; /* unchanged: its checks go on as they are */
    const cynic__health_t *from = u->health != NULL ? u->health : retired_named(p, u->cfg->name);
    cynic__health_t *h = health_new(p, u, from);
    if (h == NULL) {
      cynic__log_event(CYNIC_LOG_ERROR, "health_check_off",
                       "no memory for the health checks; they run as before or not at all",
                       json_pack("{s:s}", "upstream", u->cfg->name));
      continue;
    }
    if (u->health != NULL)
      health_stop(u->health);
    u->health = h;
    health_start(h);
  }
  for (size_t i = 0; i < p->upstream_count; i++) {
    cynic__upstream_t *u = &p->upstreams[i];
    if (u->health != NULL && (!in_use(u) || !u->cfg->health.enabled)) {
      health_stop(u->health);
      u->health = NULL;
    }
  }
}

void cynic__health_stop_all(cynic__proxy_t *p) {
  for (size_t i = 0; p->upstreams != NULL && i < p->upstream_count; i++)
    if (p->upstreams[i].health != NULL) {
      health_stop(p->upstreams[i].health);
      p->upstreams[i].health = NULL;
    }
}

const cynic__health_status_t *cynic__health_of(const cynic__endpoint_t *e) {
  const cynic__upstream_t *u = e->upstream;
  if (u == NULL || u->health == NULL)
    return NULL;
  size_t k = (size_t)(e - u->endpoints);
  return k < u->health->count ? &u->health->checks[k].st : NULL;
}

uint64_t cynic__health_interval_ms(const cynic__upstream_t *u) {
  return u->health != NULL ? cynic__config_ms(u->health->cfg->interval_ns) : 0;
}
