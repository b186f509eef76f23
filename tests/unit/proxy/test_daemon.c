/* tests/unit/proxy/test_daemon.c: what src/proxy/daemon.c decides, on a real
 * proxy: the once-a-second tick's order, SIGHUP, and how summary lines write
 * counts ("1,234") and windows ("10s", "1m", "250ms", summary_text.c).
 *
 * Nothing is stubbed: the daemon's modules are linked as they are
 * (cynic_proxy_daemon) and the proxy is started as cynic__proxy_run starts it
 * (upstreams, admin listener, listeners on 127.0.0.1 port 0) from a config
 * file in a scratch directory, on a real loop. The tick's order is watched
 * through the proxy's tick observer while the real steps run, and each step
 * is seen to have done its work. The daemon as a process is tested black-box
 * in tests/integration. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "accesslog.h"
#include "log.h"
#include "proxy.h"
#include "reload.h"
#include "summary_text.h"

typedef struct world {
  char dir[64];
  char config_path[128], access_path[128], log_path[128];
  uv_loop_t loop;
  cynic__proxy_t p;
  cynic__config_t *cfg;
  char steps[128]; /* the tick observer's record: "sweep,sample,..." */
} world_t;

static int64_t fake_unix_ms = INT64_C(1700000000000);
static int64_t fake_wall(void *arg) {
  (void)arg;
  return fake_unix_ms;
}

static void observe(void *arg, const char *step) {
  world_t *w = arg;
  size_t n = strlen(w->steps);
  snprintf(w->steps + n, sizeof w->steps - n, "%s%s", n > 0 ? "," : "", step);
}

static void write_file(const char *path, const char *text, size_t pad) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  for (size_t i = 0; i < pad; i++)
    fputc('x', f);
  assert_int_equal(fclose(f), 0);
}

static bool exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

/* A proxy as cynic__proxy_run makes it; with_admin: an admin listener. The
 * access log starts over log.rotate's max_bytes, so the tick's rotation
 * check has something to do. */
static world_t *start(bool with_admin) {
  world_t *w = calloc(1, sizeof *w);
  assert_non_null(w);
  snprintf(w->dir, sizeof w->dir, "/tmp/cynic_test_daemon.XXXXXX");
  assert_non_null(mkdtemp(w->dir));
  snprintf(w->config_path, sizeof w->config_path, "%s/cynic.yaml", w->dir);
  snprintf(w->access_path, sizeof w->access_path, "%s/access.log", w->dir);
  snprintf(w->log_path, sizeof w->log_path, "%s/cynic.log", w->dir);
  char yaml[1024];
  snprintf(yaml, sizeof yaml,
           "%s"
           "log: { file: \"%s\", rotate: { max_bytes: 64KB, keep: 1 } }\n"
           "listeners:\n"
           "  - { name: l, listen: 127.0.0.1:0, upstream: u, access_log: \"%s\" }\n"
           "upstreams:\n"
           "  - { name: u, endpoints: [127.0.0.1:9] }\n",
           with_admin ? "admin: { listen: 127.0.0.1:0 }\n" : "", w->log_path, w->access_path);
  write_file(w->config_path, yaml, 0);
  write_file(w->access_path, "", 70 * 1024); /* over 64KB */
  static cynic__config_errors_t errs;
  memset(&errs, 0, sizeof errs);
  assert_int_equal(cynic__config_load(w->config_path, &w->cfg, &errs), 0);
  assert_int_equal(cynic__log_open(w->log_path, CYNIC_LOG_DEBUG), 0);

  assert_int_equal(uv_loop_init(&w->loop), 0);
  cynic__proxy_t *p = &w->p;
  p->loop = &w->loop;
  p->clock.now = cynic__proxy_clock;
  p->clock.arg = p;
  p->wall_ms = fake_wall;
  p->cfg = w->cfg;
  p->tick_observer = observe;
  p->tick_observer_arg = w;
  cynic__list_init(&p->sessions);
  assert_int_equal(cynic__upstreams_start(p), 0);
  assert_int_equal(p->first_resolutions, 0); /* a literal address: nothing to resolve */
  if (with_admin) {
    assert_int_equal(cynic__admin_start(p), 0);
  } else {
    p->admin = NULL; /* no admin section: cynic__admin_start is not called */
    assert_int_equal(cynic__accesslog_open(p->cfg, NULL, 0), 0); /* as admin_start does */
  }
  assert_int_equal(cynic__listeners_start(p), 0);
  return w;
}

/* Closes everything as cynic__proxy_run does after its loop, and checks that
 * nothing was left open. */
static void finish(world_t *w) {
  cynic__proxy_t *p = &w->p;
  p->stopping = true;
  cynic__admin_stop(p);
  cynic__listeners_stop(p);
  cynic__upstreams_stop(p);
  assert_int_equal(uv_run(&w->loop, UV_RUN_DEFAULT), 0);
  cynic__admin_free(p);
  cynic__listeners_free(p);
  cynic__upstreams_free(p);
  cynic__config_free(p->reloaded_cfg);
  cynic__reload_free(p);
  cynic__accesslog_close();
  assert_int_equal(uv_loop_close(&w->loop), 0);
  cynic__config_free(w->cfg);
  cynic__log_close();
  char rotated[160];
  snprintf(rotated, sizeof rotated, "%s.1", w->access_path);
  unlink(rotated);
  unlink(w->access_path);
  unlink(w->log_path);
  unlink(w->config_path);
  assert_int_equal(rmdir(w->dir), 0);
  free(w);
}

/* The daemon owns the once-a-second tick (issue 9): the reload sweep, the
 * idle pools' age limit, the history sample, then the status streams (which
 * carry that sample), then the access logs' rotation; without an admin
 * listener, no streams. */
static void test_tick_runs_the_housekeeping_in_order(void **state) {
  (void)state;
  for (int with_admin = 1; with_admin >= 0; with_admin--) {
    world_t *w = start(with_admin);
    const cynic__upstream_t *u = &w->p.upstreams[0];
    char rotated[160];
    snprintf(rotated, sizeof rotated, "%s.1", w->access_path);
    assert_int_equal(u->stats.history_count, 0);
    assert_false(exists(rotated));
    /* two connection buffers were in use at once and are back */
    cynic__blocks_t *bufs = &w->p.listeners[0].buffers;
    cynic__blocks_init(bufs, 4096, CYNIC__BUFFERS_KEPT_MAX);
    void *b1 = cynic__blocks_take(bufs), *b2 = cynic__blocks_take(bufs);
    cynic__blocks_put(bufs, b1);
    cynic__blocks_put(bufs, b2);

    w->steps[0] = '\0';
    cynic__proxy_tick(&w->p);
    assert_string_equal(w->steps, with_admin ? "sweep,pool,trim,sample,streams,rotate"
                                             : "sweep,pool,trim,sample,rotate");
    assert_int_equal(bufs->len, 2); /* the last second's peak needed them */
    /* the real steps did their work: one sample, stamped with the proxy's
     * wall clock; the access log past max_bytes rotated */
    assert_int_equal(u->stats.history_count, 1);
    assert_int_equal(u->stats.history[0].unix_s, fake_unix_ms / 1000);
    assert_true(exists(rotated));
    cynic__proxy_tick(&w->p);
    assert_int_equal(bufs->len, 0); /* this second's did not: back to malloc */
    finish(w);
  }
}

/* SIGHUP is the daemon's: it reloads (and nothing else). */
static void test_sighup_reloads(void **state) {
  (void)state;
  world_t *w = start(true);
  assert_int_equal(w->p.reloads, 0);
  w->steps[0] = '\0';
  cynic__proxy_signal(&w->p, SIGHUP);
  assert_int_equal(w->p.reloads, 1); /* the file was read again and applied */
  assert_non_null(w->p.reloaded_cfg);
  assert_false(w->p.draining);
  assert_string_equal(w->steps, ""); /* not a tick */
  finish(w);
}

static void test_thousands(void **state) {
  (void)state;
  char b[16];
  cynic__thousands(0, b, sizeof b);
  assert_string_equal(b, "0");
  cynic__thousands(999, b, sizeof b);
  assert_string_equal(b, "999");
  cynic__thousands(1000, b, sizeof b);
  assert_string_equal(b, "1,000");
  cynic__thousands(1234, b, sizeof b);
  assert_string_equal(b, "1,234");
  cynic__thousands(1234567, b, sizeof b);
  assert_string_equal(b, "1,234,567");
  cynic__thousands(UINT32_MAX, b, sizeof b);
  assert_string_equal(b, "4,294,967,295");
  cynic__thousands(1234567, b, 4); /* truncated, still terminated */
  assert_int_equal(strlen(b), 3);
}

static void test_window_text(void **state) {
  (void)state;
  char b[32];
  cynic__window_text(10000, b, sizeof b);
  assert_string_equal(b, "10s");
  cynic__window_text(60000, b, sizeof b);
  assert_string_equal(b, "1m");
  cynic__window_text(90000, b, sizeof b);
  assert_string_equal(b, "90s");
  cynic__window_text(250, b, sizeof b);
  assert_string_equal(b, "250ms");
}

static void test_event_keys(void **state) {
  (void)state;
  assert_string_equal(cynic__event_key(CYNIC__EV_CONNECT_REFUSED), "connect_refused");
  assert_string_equal(cynic__event_key(CYNIC__EV_FIRST_BYTE_TIMEOUT), "first_byte_timeout");
  assert_string_equal(cynic__event_key(CYNIC__EV_COUNT), "unknown");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tick_runs_the_housekeeping_in_order),
      cmocka_unit_test(test_sighup_reloads),
      cmocka_unit_test(test_thousands),
      cmocka_unit_test(test_window_text),
      cmocka_unit_test(test_event_keys),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
