/* tests/unit/test_common.c: error names, clock, version. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cynic/common.h"
#include "fake_clock.h"

static void test_strerror_names_every_code(void **state) {
  (void)state;
  assert_string_equal(cynic_strerror(CYNIC_EOPEN), "circuit breaker is open");
  assert_string_equal(cynic_err_name(CYNIC_EFULL), "EFULL");
  assert_string_equal(cynic_strerror(12345), "unknown error");
  assert_string_equal(cynic_err_name(0), "UNKNOWN");
#define XX(name, value, msg)                                                   \
  assert_int_equal(CYNIC_##name, value);                                       \
  assert_true(value < 0);                                                      \
  assert_string_equal(cynic_strerror(value), msg);                             \
  assert_string_equal(cynic_err_name(value), #name);
  CYNIC_ERRNO_MAP(XX)
#undef XX
}

static void test_monotonic_clock_never_goes_back(void **state) {
  (void)state;
  uint64_t prev = cynic_clock_now(NULL);
  for (int i = 0; i < 1000; i++) {
    uint64_t now = cynic_clock_now(NULL);
    assert_true(now >= prev);
    prev = now;
  }
  assert_true(prev > 0);
}

static void test_injected_clock_is_used(void **state) {
  (void)state;
  fake_clock_t fc = {0};
  fake_clock_set(&fc, CYNIC_SEC(5));
  cynic_clock_t c = fake_clock_bind(&fc);
  assert_int_equal(cynic_clock_now(&c), CYNIC_SEC(5));
  fake_clock_advance(&fc, CYNIC_MS(250));
  assert_int_equal(cynic_clock_now(&c), CYNIC_SEC(5) + CYNIC_MS(250));
}

static void test_saturating_time_arithmetic(void **state) {
  (void)state;
  assert_int_equal(cynic__sat_add(UINT64_MAX - 1, 5), UINT64_MAX);
  assert_int_equal(cynic__sat_add(1, 2), 3);
  assert_int_equal(cynic__sat_sub(1, 5), 0);
  assert_int_equal(cynic__sat_sub(7, 5), 2);
}

static void test_version_is_semver(void **state) {
  (void)state;
  unsigned a, b, c;
  assert_int_equal(sscanf(cynic_version(), "%u.%u.%u", &a, &b, &c), 3);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_strerror_names_every_code),
      cmocka_unit_test(test_monotonic_clock_never_goes_back),
      cmocka_unit_test(test_injected_clock_is_used),
      cmocka_unit_test(test_saturating_time_arithmetic),
      cmocka_unit_test(test_version_is_semver),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
