/*
 * src/proxy/daemon.c: the cynic process: loop, signals, drain, log summaries.
 *
 * Start: upstreams (breakers, bulkheads, name resolution), then listeners.
 * SIGTERM / SIGINT: drain (stop accepting, let open connections finish for up
 * to admin.drain_timeout, close the rest, exit 0). SIGUSR1: reopen the log.
 * SIGHUP: reload the config (reload.c).
 *
 * The once-a-second tick (from the admin listener's start, so /status/history
 * has samples while the first names resolve): the reload sweep, one history
 * sample of every upstream, the status streams' tick (after the sample they
 * carry), and the access logs' rotation check, in that order.
 *
 * Steady State for logs: an outage must not flood the disk. The first fault of
 * each kind per thing (endpoint, upstream, listener) in a summary window is
 * logged at once; the rest are counted and written as one summary line when
 * the window (log.summary_interval) ends ("1234 connect refused by
 * db:5432 in the last 10s").
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "accesslog.h"
#include "admin.h"
#include "err.h"
#include "file.h"
#include "http_session.h"
#include "log.h"
#include "proxy.h"
#include "reload.h"
#include "shed.h"
#include "summary_text.h"

#define ROTATE_CHECK_MS 1000u /* log.rotate: how often the file's size is checked */

static const char *const event_msgs[] = {
#define EVENT_MSG(name, key, msg, text) msg,
    CYNIC__EVENT_MAP(EVENT_MSG)
#undef EVENT_MSG
};
static const char *const event_texts[] = {
#define EVENT_TEXT(name, key, msg, text) text,
    CYNIC__EVENT_MAP(EVENT_TEXT)
#undef EVENT_TEXT
};

int64_t cynic__unix_ms(void) {
  uv_timeval64_t tv;
  if (uv_gettimeofday(&tv) != 0)
    return 0;
  return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

void cynic__proxy_config_warnings(const cynic__config_t *cfg) {
  for (size_t i = 0; i < cfg->upstream_count; i++) {
    const cynic__config_upstream_t *u = &cfg->upstreams[i];
    if (u->keepalive_old_name.line == 0)
      continue;
    cynic__log_event(CYNIC_LOG_WARN, "config_deprecated",
                     "config: 'keepalive' is deprecated; rename it to 'tcp_keepalive'",
                     json_pack("{s:s, s:i, s:i, s:s, s:s, s:s}", "file", cfg->path, "line",
                               (int)u->keepalive_old_name.line, "column",
                               (int)u->keepalive_old_name.column, "upstream", u->name, "key",
                               "keepalive", "use", "tcp_keepalive"));
  }
}

static int64_t wall_now(void *arg) {
  (void)arg;
  return cynic__unix_ms();
}

int64_t cynic__proxy_unix_ms(const cynic__proxy_t *p) {
  return p->wall_ms != NULL ? p->wall_ms(p->wall_ms_arg) : cynic__unix_ms();
}

uint64_t cynic__proxy_clock(void *arg) {
  const cynic__proxy_t *p = arg;
  return uv_now(p->loop) * UINT64_C(1000000);
}

void cynic__proxy_event(cynic__counters_t *c, cynic__event_t ev, const char *what, const char *name,
                        const char *upstream, const char *detail) {
  c->total[ev]++;
  if (c->window[ev]++ != 0)
    return; /* counted; the window's summary line will say how many */
  json_t *f = json_pack("{s:s}", what, name);
  if (f != NULL && upstream != NULL && strcmp(what, "upstream") != 0)
    json_object_set_new(f, "upstream", json_string(upstream));
  if (f != NULL && detail != NULL)
    json_object_set_new(f, "error", json_string(detail));
  cynic__log_event(CYNIC_LOG_WARN, cynic__event_key(ev), event_msgs[ev], f);
}

json_t *cynic__counts_json(const cynic__counters_t *c) {
  json_t *o = json_object();
  for (int ev = 0; ev < CYNIC__EV_COUNT; ev++)
    if (c->total[ev] != 0)
      json_object_set_new(o, cynic__event_key(ev), json_integer((json_int_t)c->total[ev]));
  return o;
}

/* One "totals" line for a thing with any event counted since start: what
 * happened, by kind: the process's record at exit (while it runs, /metrics
 * has the same counts). */
static void total(const cynic__counters_t *c, const char *what, const char *name) {
  json_t *counts = cynic__counts_json(c);
  if (json_object_size(counts) == 0) {
    json_decref(counts);
    return;
  }
  cynic__log_event(CYNIC_LOG_INFO, "totals", "totals",
                   json_pack("{s:s, s:o}", what, name, "counts", counts));
}

static void log_totals(const cynic__proxy_t *p) {
  for (size_t i = 0; i < p->upstream_count; i++) {
    const cynic__upstream_t *u = &p->upstreams[i];
    if (u->cfg == NULL)
      continue; /* reclaimed after a reload */
    for (size_t e = 0; e < u->endpoint_count; e++)
      total(&u->endpoints[e].counters, "endpoint", u->endpoints[e].addr->text);
    total(&u->counters, "upstream", u->cfg->name);
  }
  for (size_t i = 0; i < p->listener_count; i++)
    if (p->listeners[i].cfg != NULL)
      total(&p->listeners[i].counters, "listener", p->listeners[i].cfg->name);
}

/* Writes one summary line per counter that saw more than the one event
 * already logged, and starts a new window. */
static void summarise(cynic__counters_t *c, const char *what, const char *name, const char *window,
                      uint64_t window_ms) {
  for (int ev = 0; ev < CYNIC__EV_COUNT; ev++) {
    uint32_t n = c->window[ev];
    c->window[ev] = 0;
    if (n <= 1)
      continue;
    char text[256];
    char count[16];
    cynic__thousands(n, count, sizeof count);
    snprintf(text, sizeof text, "%s %s %s in the last %s", count, event_texts[ev], name, window);
    cynic__log_event(CYNIC_LOG_WARN, cynic__event_key(ev), text,
                     json_pack("{s:s, s:i, s:I}", what, name, "count", (json_int_t)n, "window_ms",
                               (json_int_t)window_ms));
  }
}

static uint64_t summary_ms(const cynic__proxy_t *p) {
  uint64_t ms = p->cfg->log.summary_interval_ns / 1000000u;
  return ms > 0 ? ms : 1;
}

static void on_summary(uv_timer_t *t) {
  cynic__proxy_t *p = t->data;
  uint64_t ms = summary_ms(p);
  char w[32];
  cynic__window_text(ms, w, sizeof w);
  for (size_t i = 0; i < p->upstream_count; i++) {
    cynic__upstream_t *u = &p->upstreams[i];
    if (u->cfg == NULL)
      continue; /* reclaimed after a reload */
    for (size_t e = 0; e < u->endpoint_count; e++)
      summarise(&u->endpoints[e].counters, "endpoint", u->endpoints[e].addr->text, w, ms);
    summarise(&u->counters, "upstream", u->cfg->name, w, ms);
  }
  for (size_t i = 0; i < p->listener_count; i++)
    if (p->listeners[i].cfg != NULL)
      summarise(&p->listeners[i].counters, "listener", p->listeners[i].cfg->name, w, ms);
}

/* log.rotate (Steady State: logs never fill the disk). The file's size is
 * checked once a second rather than on every line (src/common's logger does
 * not rotate), so a file may pass max_bytes by one second of logging, which
 * the rate-limited summaries keep small. Rotation renames file.N-1 to file.N
 * down to file to file.1 (the oldest, file.keep, is overwritten), then
 * reopens `file`. Blocking file calls on the loop: a few renames a rotation. */
static void on_rotate_check(uv_timer_t *t) {
  const cynic__proxy_t *p = t->data;
  const cynic__config_log_t *lc = &p->cfg->log;
  struct stat st;
  if (stat(lc->file, &st) != 0 || (uint64_t)st.st_size < lc->rotate_max_bytes)
    return;
  char to[4096 + 16];
  int rc = cynic__file_rotate(lc->file, lc->rotate_keep, to, sizeof to);
  if (rc == 0)
    rc = cynic__log_reopen();
  cynic__log_event(rc == 0 ? CYNIC_LOG_INFO : CYNIC_LOG_ERROR, "log_rotated", "log rotated",
                   json_pack("{s:s, s:I, s:s}", "previous", to, "bytes", (json_int_t)st.st_size,
                             "result", rc == 0 ? "ok" : cynic__file_strerror(rc)));
}

/* The check timer for `log` (the config in use, or the one a reload is
 * applying: the first check runs on a later loop turn, after the swap). */
static void rotate_apply(cynic__proxy_t *p, const cynic__config_log_t *log) {
  if (p->stopping)
    return;
  if (log->rotate_max_bytes > 0 && strcmp(log->file, "-") != 0)
    uv_timer_start(&p->rotate_timer, on_rotate_check, 0, ROTATE_CHECK_MS);
  else
    uv_timer_stop(&p->rotate_timer);
}

void cynic__proxy_rotate_apply(cynic__proxy_t *p) {
  rotate_apply(p, &p->cfg->log);
}

static const cynic_log_level_t log_levels[] = {
    [CYNIC__LOG_DEBUG] = CYNIC_LOG_DEBUG,
    [CYNIC__LOG_INFO] = CYNIC_LOG_INFO,
    [CYNIC__LOG_WARN] = CYNIC_LOG_WARN,
    [CYNIC__LOG_ERROR] = CYNIC_LOG_ERROR,
};

int cynic__proxy_log_prepare(const cynic__proxy_t *p, const cynic__config_t *n, char *why,
                             size_t len) {
  unsigned changes = cynic__config_log_diff(&p->cfg->log, &n->log);
  if (!(changes & CYNIC__CHANGE_LOG_FILE) || strcmp(n->log.file, "-") == 0)
    return 0;
  int err = 0;
  FILE *f = cynic__file_open_log(n->log.file, &err); /* can it be opened? (switched in _apply) */
  if (f == NULL) {
    snprintf(why, len, "log.file: cannot open '%s': %s", n->log.file, cynic__file_strerror(err));
    return err < 0 ? err : CYNIC_EINVAL;
  }
  fclose(f);
  return 0;
}

void cynic__proxy_log_apply(cynic__proxy_t *p, const cynic__config_t *n) {
  unsigned changes = cynic__config_log_diff(&p->cfg->log, &n->log);
  cynic_log_level_t level = log_levels[n->log.level];
  if (changes & CYNIC__CHANGE_LOG_FILE) {
    cynic__log_event(CYNIC_LOG_INFO, "log_moved", "log continues in another file",
                     json_pack("{s:s}", "file", n->log.file));
    if (cynic__log_open(n->log.file, level) != 0)
      cynic__log_open("-", level); /* checked by _prepare; never lose the log */
  } else if (changes & CYNIC__CHANGE_LOG_LEVEL) {
    cynic__log_set_level(level);
  }
  if (changes & (CYNIC__CHANGE_LOG_FILE | CYNIC__CHANGE_LOG_ROTATE))
    rotate_apply(p, &n->log);
}

/* Ends the loop: every handle the proxy owns is closed; uv_run returns once
 * their close callbacks have run. */
void cynic__proxy_stop(cynic__proxy_t *p) {
  if (p->stopping)
    return;
  p->stopping = true;
  cynic__admin_stop(p);
  cynic__listeners_stop(p);
  cynic__upstreams_stop(p);
  uv_close((uv_handle_t *)&p->sigterm, NULL);
  uv_close((uv_handle_t *)&p->sigint, NULL);
  uv_close((uv_handle_t *)&p->sigusr1, NULL);
  uv_close((uv_handle_t *)&p->sighup, NULL);
  uv_close((uv_handle_t *)&p->tick_timer, NULL);
  uv_close((uv_handle_t *)&p->summary_timer, NULL);
  uv_close((uv_handle_t *)&p->rotate_timer, NULL);
  uv_close((uv_handle_t *)&p->drain_timer, NULL);
  cynic__tls_stop();
}

void cynic__proxy_conn_gone(cynic__proxy_t *p) {
  if (p->draining && p->conn_count == 0 && !p->stopping) {
    cynic__log_event(CYNIC_LOG_INFO, "drained", "drained",
                     json_pack("{s:b}", "complete", !p->drain_cut));
    cynic__proxy_stop(p);
  }
}

static void on_drain_deadline(uv_timer_t *t) {
  cynic__proxy_t *p = t->data;
  cynic__log_event(CYNIC_LOG_WARN, "drain_cut", "drain timeout: closing the remaining connections",
                   json_pack("{s:i}", "connections", (json_int_t)p->conn_count));
  p->drain_cut = true;
  cynic__sessions_close_all(p, "drain_cut");
}

void cynic__proxy_drain(cynic__proxy_t *p, const char *why) {
  if (p->draining) {
    /* A second signal while draining (Ctrl-C twice): do not wait any longer. */
    if (!p->drain_cut && p->conn_count > 0) {
      cynic__log_event(
          CYNIC_LOG_WARN, "drain_cut", "second signal: closing the remaining connections now",
          json_pack("{s:s, s:i}", "cause", why, "connections", (json_int_t)p->conn_count));
      p->drain_cut = true;
      cynic__sessions_close_all(p, "drain_cut");
    }
    return;
  }
  p->draining = true;
  uint64_t ms = cynic__config_ms(p->cfg->admin.drain_timeout_ns);
  cynic__listeners_stop(p); /* new connections are refused from now on... */
  cynic__log_event(CYNIC_LOG_INFO, "draining", "draining", /* ...which this line may promise */
                   json_pack("{s:s, s:i, s:i}", "cause", why, "connections",
                             (json_int_t)p->conn_count, "drain_timeout_ms", (json_int_t)ms));
  cynic__sessions_drain(p); /* idle keep-alive connections close now */
  if (p->conn_count == 0) {
    cynic__proxy_conn_gone(p);
    return;
  }
  uv_timer_start(&p->drain_timer, on_drain_deadline, ms, 0);
}

/* The tick's steps, in their order: the sweep first (retired objects give
 * their places back), the idle pools' age limit, the reuse caches' trim, then the sample, then
 * the streams that carry it, then the rotation check. A step returns false when it had nothing to do. */
static bool tick_sweep(cynic__proxy_t *p) {
  cynic__reload_sweep(p);
  return true;
}
static bool tick_pool(cynic__proxy_t *p) {
  cynic__upstreams_tick(p); /* idle upstream connections past pool.idle_timeout */
  return true;
}
static bool tick_trim(cynic__proxy_t *p) {
  cynic__listeners_trim(p); /* buffers and HTTP's stores beyond the last second's peak */
  cynic__http_caches_trim();
  return true;
}
static bool tick_sample(cynic__proxy_t *p) {
  cynic__metrics_sample(p);
  return true;
}
static bool tick_streams(cynic__proxy_t *p) {
  if (p->admin == NULL)
    return false; /* no admin listener, no streams */
  cynic__admin_streams_tick(p->admin);
  return true;
}
static bool tick_rotate(cynic__proxy_t *p) {
  cynic__accesslog_rotate(p->cfg->log.rotate_max_bytes, p->cfg->log.rotate_keep);
  return true;
}

static const struct tick_step {
  const char *name;
  bool (*run)(cynic__proxy_t *p);
} tick_steps[] = {
    {"sweep", tick_sweep},
    {"pool", tick_pool},
    {"trim", tick_trim},
    {"sample", tick_sample},
    {"streams", tick_streams},
    {"rotate", tick_rotate},
};

void cynic__proxy_tick(cynic__proxy_t *p) {
  for (size_t i = 0; i < sizeof tick_steps / sizeof tick_steps[0]; i++)
    if (tick_steps[i].run(p) && p->tick_observer != NULL)
      p->tick_observer(p->tick_observer_arg, tick_steps[i].name);
}

static void on_tick(uv_timer_t *t) {
  cynic__proxy_tick(t->data);
}

static void on_signal(uv_signal_t *s, int signum) {
  cynic__proxy_signal(s->data, signum);
}

void cynic__proxy_signal(cynic__proxy_t *p, int signum) {
  if (signum == SIGHUP) {
    int status;
    json_decref(cynic__reload(p, "SIGHUP", &status)); /* reload.c logged the outcome */
    return;
  }
  if (signum == SIGUSR1) {
    int rc = cynic__log_reopen();
    cynic__accesslog_reopen();
    cynic__log_event(rc == 0 ? CYNIC_LOG_INFO : CYNIC_LOG_ERROR, "log_reopened", "log reopened",
                     json_pack("{s:s}", "result", rc == 0 ? "ok" : cynic__file_strerror(rc)));
    return;
  }
  cynic__proxy_drain(p, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* Binds the listeners: the proxy is open for business. Called once the host
 * names of every endpoint have had their first resolution, so the first
 * clients do not find endpoints without an address. */
static void serve(cynic__proxy_t *p) {
  /* TLS contexts from the files as they are now (main.c read them once to
   * check; a reload during the start may have changed the config). */
  static cynic__tls_reload_t tls; /* loop thread only */
  char why[512];
  if (cynic__tls_prepare(p->cfg, &tls, why, sizeof why) != 0) {
    cynic__log_event(CYNIC_LOG_ERROR, "start_failed", "cannot load TLS files",
                     json_pack("{s:s}", "error", why));
    p->status = 2;
    cynic__proxy_stop(p);
    return;
  }
  if (cynic__listeners_start(p) != 0) {
    cynic__tls_undo(&tls);
    p->status = 1; /* listener.c said which address and why */
    cynic__proxy_stop(p);
    return;
  }
  cynic__tls_apply(p, p->cfg, &tls); /* before the first accept: a later loop turn */
  uv_timer_start(&p->summary_timer, on_summary, summary_ms(p), summary_ms(p));
  cynic__proxy_rotate_apply(p);
  cynic__log_event(CYNIC_LOG_INFO, "started", "started",
                   json_pack("{s:s, s:i, s:i, s:i}", "version", cynic_version(), "pid",
                             (json_int_t)getpid(), "listeners", (json_int_t)p->listener_count,
                             "upstreams", (json_int_t)p->upstream_count));
}

void cynic__proxy_resolved(cynic__proxy_t *p) {
  if (p->first_resolutions > 0 && --p->first_resolutions == 0)
    cynic__proxy_serve_if_resolved(p);
}

void cynic__proxy_serve_if_resolved(cynic__proxy_t *p) {
  if (p->listeners == NULL && p->first_resolutions == 0 && !p->stopping && !p->draining &&
      p->status == 0)
    serve(p);
}

void cynic__proxy_init(cynic__proxy_t *p, uv_loop_t *loop, const cynic__config_t *cfg) {
  memset(p, 0, sizeof *p);
  p->loop = loop;
  p->clock.now = cynic__proxy_clock;
  p->clock.arg = p;
  p->wall_ms = wall_now; /* tests inject their own (test_daemon) */
  p->cfg = cfg;
  p->started_unix_ms = p->config_unix_ms = cynic__proxy_unix_ms(p);
  cynic__list_init(&p->sessions);
  uv_timer_init(loop, &p->summary_timer);
  uv_timer_init(loop, &p->rotate_timer);
  p->rotate_timer.data = p;
  uv_unref((uv_handle_t *)&p->rotate_timer);
  uv_timer_init(loop, &p->drain_timer);
  p->summary_timer.data = p->drain_timer.data = p;
  uv_unref((uv_handle_t *)&p->summary_timer);
  uv_timer_init(loop, &p->tick_timer);
  p->tick_timer.data = p;
  uv_unref((uv_handle_t *)&p->tick_timer);
  uv_signal_t *sigs[] = {&p->sigterm, &p->sigint, &p->sigusr1, &p->sighup};
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
    uv_signal_init(loop, sigs[i]); /* started by cynic__proxy_run only */
    sigs[i]->data = p;
  }
}

void cynic__proxy_free(cynic__proxy_t *p) {
  cynic__admin_free(p);
  cynic__listeners_free(p);
  cynic__http_free_caches();
  cynic__upstreams_free(p);
  cynic__config_free(p->reloaded_cfg); /* after everything that points into it */
  p->reloaded_cfg = NULL;
  cynic__reload_free(p);
}

int cynic__proxy_run(const cynic__config_t *cfg) {
  int rc = cynic__log_open(cfg->log.file, log_levels[cfg->log.level]);
  if (rc != 0) {
    fprintf(stderr, "cynic: cannot open log file %s: %s\n", cfg->log.file,
            cynic__file_strerror(rc));
    cynic__log_close();
    return 1;
  }
  cynic__proxy_config_warnings(cfg);
  /* A peer that goes away while we write must be an error code, not a signal. */
  signal(SIGPIPE, SIG_IGN);

  cynic__proxy_t p;
  uv_loop_t loop;
  if (uv_loop_init(&loop) != 0) {
    cynic__log_close();
    return 1;
  }
  cynic__reserve_fd_table(&loop, 65536); /* libuv aborts if it cannot grow it later */
  cynic__proxy_init(&p, &loop, cfg);

  if (uv_signal_start(&p.sigterm, on_signal, SIGTERM) != 0 ||
      uv_signal_start(&p.sigint, on_signal, SIGINT) != 0 ||
      uv_signal_start(&p.sigusr1, on_signal, SIGUSR1) != 0) {
    cynic__log_event(CYNIC_LOG_ERROR, "start_failed", "cannot install signal handlers", NULL);
    p.status = 1;
  } else if ((rc = cynic__upstreams_start(&p)) != 0) {
    cynic__log_event(
        CYNIC_LOG_ERROR, "start_failed", "cannot start upstreams",
        json_pack("{s:s}", "error", cynic__strerror(rc)));
    p.status = 1;
  } else if (cynic__admin_start(&p) != 0) {
    p.status = 1; /* admin.c said which address and why */
  } else {
    uv_timer_start(&p.tick_timer, on_tick, 1000, 1000);
    uv_signal_start(&p.sighup, on_signal, SIGHUP);
    if (p.first_resolutions == 0)
      serve(&p); /* no host names to wait for */
  }
  if (p.status != 0)
    cynic__proxy_stop(&p);
  uv_run(&loop, UV_RUN_DEFAULT);

  log_totals(&p);
  cynic__proxy_free(&p);
  int status = p.status;
  int close_rc = uv_loop_close(&loop);
  if (close_rc != 0) {
    cynic__log_event(CYNIC_LOG_ERROR, "stop_unclean", "event loop closed with handles still open",
                     json_pack("{s:s}", "error", cynic__strerror(close_rc)));
    if (status == 0)
      status = 1;
  }
  if (status == 0)
    cynic__log_event(CYNIC_LOG_INFO, "stopped", "stopped", NULL);
  cynic__log_close();
  return status;
}
