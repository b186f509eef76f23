/*
 * tests/unit/proxy/test_http_limits.c: the socket-free parts of HTTP mode's
 * rate limit and load shedding (http_limits.c): which element of a header
 * names the client, Retry-After from a bucket's wait (with libcynic's table
 * on a fake clock, at a per-minute rate), and the overloaded state's
 * hysteresis at exact pending counts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "../fake_clock.h"
#include "http_limits.h"

static void expect_element(const char *v, const char *want) {
  const char *out = NULL;
  size_t n = cynic__hl_last_element(v, strlen(v), &out);
  assert_int_equal(n, strlen(want));
  assert_memory_equal(out, want, n);
}

static void test_last_element_is_the_one_the_trusted_proxy_appended(void **state) {
  (void)state;
  expect_element("203.0.113.7", "203.0.113.7");
  expect_element("evil, 203.0.113.7", "203.0.113.7");
  expect_element("a,b,c", "c");
  expect_element(" \t a \t ", "a");
  expect_element("a, \t", "");
  expect_element("", "");
  expect_element(",", "");
  expect_element("a , b c ", "b c"); /* inner spaces are part of the key */
}

static void test_retry_after_rounds_up_to_whole_seconds(void **state) {
  (void)state;
  assert_int_equal(cynic__hl_retry_after_s(0), 1);
  assert_int_equal(cynic__hl_retry_after_s(1), 1);
  assert_int_equal(cynic__hl_retry_after_s(CYNIC_SEC(1)), 1);
  assert_int_equal(cynic__hl_retry_after_s(CYNIC_SEC(1) + 1), 2);
  assert_int_equal(cynic__hl_retry_after_s(CYNIC_SEC(3600)), 3600);
  assert_int_equal(cynic__hl_retry_after_s(UINT64_MAX), 86400); /* never: a day */
}

/* 1/m, burst 2 (the integration test's key_header case), on a fake clock:
 * the seconds a 429 tells are the bucket's exact wait, rounded up. */
static void test_retry_after_of_a_per_minute_bucket(void **state) {
  (void)state;
  fake_clock_t fc = {0};
  fake_clock_set(&fc, CYNIC_SEC(1));
  cynic_ratetable_config_t cfg;
  cynic_ratetable_config_default(&cfg);
  cfg.clock = fake_clock_bind(&fc);
  cfg.rate_per_sec = 1.0 / 60.0;
  cfg.burst = 2;
  cfg.capacity = 4;
  cfg.seed = 1;
  cynic_ratetable_t *t = NULL;
  assert_int_equal(cynic_ratetable_new(&cfg, &t), 0);
  uint64_t wait = 0;
  assert_int_equal(cynic_ratetable_take(t, "a", 1, 1, &wait), 0);
  assert_int_equal(cynic_ratetable_take(t, "a", 1, 1, &wait), 0);
  assert_int_equal(cynic_ratetable_take(t, "a", 1, 1, &wait), CYNIC_ELIMITED);
  assert_int_equal(cynic__hl_retry_after_s(wait), 60);
  fake_clock_advance(&fc, CYNIC_MS(500));
  assert_int_equal(cynic_ratetable_take(t, "a", 1, 1, &wait), CYNIC_ELIMITED);
  assert_int_equal(cynic__hl_retry_after_s(wait), 60); /* 59.5 s: rounded up */
  fake_clock_advance(&fc, CYNIC_MS(59400));
  assert_int_equal(cynic_ratetable_take(t, "a", 1, 1, &wait), CYNIC_ELIMITED);
  assert_int_equal(cynic__hl_retry_after_s(wait), 1); /* 100 ms left */
  fake_clock_advance(&fc, CYNIC_MS(100));
  assert_int_equal(cynic_ratetable_take(t, "a", 1, 1, &wait), 0);
  cynic_ratetable_free(t);
}

/* Overloaded from the ceiling until pending falls below 90% of it. */
static void test_overloaded_has_hysteresis(void **state) {
  (void)state;
  static cynic__config_t cfg;
  static cynic__proxy_t p;
  cfg.limits.max_pending_requests = 100;
  p.cfg = &cfg;
  p.requests_pending = 99;
  assert_false(cynic__hl_overloaded(&p));
  p.requests_pending = 100;
  assert_true(cynic__hl_overloaded(&p));
  p.requests_pending = 90;
  assert_true(cynic__hl_overloaded(&p)); /* 90%: not below it */
  p.requests_pending = 89;
  assert_false(cynic__hl_overloaded(&p));
  p.requests_pending = 95;
  assert_false(cynic__hl_overloaded(&p)); /* on the way up: the ceiling decides */
  p.requests_pending = 100;
  assert_true(cynic__hl_overloaded(&p));
  cfg.limits.max_pending_requests = 0; /* a reload turned it off */
  assert_false(cynic__hl_overloaded(&p));
  cfg.limits.max_pending_requests = 1; /* the smallest ceiling: 0 is below 90% */
  p.requests_pending = 1;
  assert_true(cynic__hl_overloaded(&p));
  p.requests_pending = 0;
  assert_false(cynic__hl_overloaded(&p));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_last_element_is_the_one_the_trusted_proxy_appended),
      cmocka_unit_test(test_retry_after_rounds_up_to_whole_seconds),
      cmocka_unit_test(test_retry_after_of_a_per_minute_bucket),
      cmocka_unit_test(test_overloaded_has_hysteresis),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
