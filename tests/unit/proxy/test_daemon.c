/* tests/unit/proxy/test_daemon.c: the pure helpers of src/proxy/daemon.c: how
 * summary lines write counts ("1,234") and windows ("10s", "1m", "250ms").
 * daemon.c is included to reach its statics; the other daemon files are
 * stubbed. The daemon itself is tested black-box in tests/integration. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../../src/proxy/daemon.c"

/* ---- stubs for listener.c, upstream.c, tcp.c, admin.c, metrics.c, reload.c, accesslog.c */
int cynic__upstreams_start(cynic__proxy_t *p) {
  (void)p;
  return 0;
}
void cynic__upstreams_stop(cynic__proxy_t *p) {
  (void)p;
}
void cynic__upstreams_free(cynic__proxy_t *p) {
  (void)p;
}
void cynic__upstreams_tick(cynic__proxy_t *p) {
  (void)p;
}
int cynic__listeners_start(cynic__proxy_t *p) {
  (void)p;
  return 0;
}
void cynic__listeners_stop(cynic__proxy_t *p) {
  (void)p;
}
void cynic__listeners_free(cynic__proxy_t *p) {
  (void)p;
}
void cynic__sessions_close_all(cynic__proxy_t *p, const char *why) {
  (void)why;
  (void)p;
}
int cynic__admin_start(cynic__proxy_t *p) {
  (void)p;
  return 0;
}
void cynic__admin_stop(cynic__proxy_t *p) {
  (void)p;
}
void cynic__admin_free(cynic__proxy_t *p) {
  (void)p;
}
void cynic__accesslog_reopen(void) {}
void cynic__reload_free(cynic__proxy_t *p) {
  (void)p;
}

/* The tick's and SIGHUP's callees record the order they ran in. */
static char calls[128];
static void called(const char *what) {
  size_t n = strlen(calls);
  snprintf(calls + n, sizeof calls - n, "%s%s", n > 0 ? "," : "", what);
}
void cynic__reload_sweep(cynic__proxy_t *p) {
  (void)p;
  called("sweep");
}
void cynic__metrics_sample(cynic__proxy_t *p) {
  (void)p;
  called("sample");
}
void cynic__admin_streams_tick(cynic__admin_t *a) {
  (void)a;
  called("streams");
}
void cynic__accesslog_rotate(uint64_t max_bytes, uint32_t keep) {
  (void)max_bytes;
  (void)keep;
  called("rotate");
}
json_t *cynic__reload(cynic__proxy_t *p, const char *who, int *status) {
  (void)p;
  called(who);
  *status = 200;
  return json_object();
}

/* The daemon owns the once-a-second tick (issue 9): the reload sweep, the
 * history sample, then the status streams (which carry that sample), then
 * the access logs' rotation; without an admin listener, no streams. */
static void test_tick_runs_the_housekeeping_in_order(void **state) {
  (void)state;
  cynic__config_t cfg;
  memset(&cfg, 0, sizeof cfg);
  cynic__proxy_t p;
  memset(&p, 0, sizeof p);
  p.cfg = &cfg;
  p.admin = (cynic__admin_t *)&p; /* only compared with NULL here */
  p.tick_timer.data = &p;
  calls[0] = '\0';
  on_tick(&p.tick_timer);
  assert_string_equal(calls, "sweep,sample,streams,rotate");
  p.admin = NULL;
  calls[0] = '\0';
  on_tick(&p.tick_timer);
  assert_string_equal(calls, "sweep,sample,rotate");
}

/* SIGHUP is the daemon's: it reloads (and nothing else). */
static void test_sighup_reloads(void **state) {
  (void)state;
  cynic__proxy_t p;
  memset(&p, 0, sizeof p);
  p.sighup.data = &p;
  calls[0] = '\0';
  on_signal(&p.sighup, SIGHUP);
  assert_string_equal(calls, "SIGHUP");
  assert_false(p.draining);
}

static void test_thousands(void **state) {
  (void)state;
  char b[16];
  thousands(0, b, sizeof b);
  assert_string_equal(b, "0");
  thousands(999, b, sizeof b);
  assert_string_equal(b, "999");
  thousands(1000, b, sizeof b);
  assert_string_equal(b, "1,000");
  thousands(1234, b, sizeof b);
  assert_string_equal(b, "1,234");
  thousands(1234567, b, sizeof b);
  assert_string_equal(b, "1,234,567");
  thousands(UINT32_MAX, b, sizeof b);
  assert_string_equal(b, "4,294,967,295");
  thousands(1234567, b, 4); /* truncated, still terminated */
  assert_int_equal(strlen(b), 3);
}

static void test_window_text(void **state) {
  (void)state;
  char b[32];
  window_text(10000, b, sizeof b);
  assert_string_equal(b, "10s");
  window_text(60000, b, sizeof b);
  assert_string_equal(b, "1m");
  window_text(90000, b, sizeof b);
  assert_string_equal(b, "90s");
  window_text(250, b, sizeof b);
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
