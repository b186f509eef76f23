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

/* ---- stubs for listener.c, upstream.c, tcp.c, admin.c --------------------- */
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
void cynic__accesslog_reopen(void) {
}
void cynic__reload_free(cynic__proxy_t *p) {
  (void)p;
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
      cmocka_unit_test(test_thousands),
      cmocka_unit_test(test_window_text),
      cmocka_unit_test(test_event_keys),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
