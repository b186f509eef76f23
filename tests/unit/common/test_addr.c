/* Unit tests of src/common/addr.c. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "addr.h"
#include "cynic/common.h"

static void split_good(void **state) {
  (void)state;
  char host[CYNIC_ADDR_HOST_MAX];
  uint16_t port;
  assert_int_equal(cynic__addr_split("localhost:8474", host, sizeof(host), &port), 0);
  assert_string_equal(host, "localhost");
  assert_int_equal(port, 8474);
  assert_int_equal(cynic__addr_split("10.0.0.1:0", host, sizeof(host), &port), 0);
  assert_string_equal(host, "10.0.0.1");
  assert_int_equal(port, 0);
  assert_int_equal(cynic__addr_split("[::1]:65535", host, sizeof(host), &port), 0);
  assert_string_equal(host, "::1");
  assert_int_equal(port, 65535);
  assert_int_equal(cynic__addr_split("[fe80::1%eth0]:80", host, sizeof(host), &port), 0);
  assert_string_equal(host, "fe80::1%eth0");
  assert_int_equal(cynic__addr_split(":26379", host, sizeof(host), &port), 0);
  assert_string_equal(host, "");
  assert_int_equal(port, 26379);
}

static void split_bad(void **state) {
  (void)state;
  static const char *bad[] = {
      "",        "localhost", "host:",   "host:65536", "host:-1", "host:1x",      "::1:80",
      "[::1]",   "[::1]80",   "[]:80",   "[host]:80",  "a b:80",  "a/b:80",       "host:000080",
      "[::1:80", "host:+80",  "a\"b:80", "a\\b:80",    "a{b}:80", "h\xc3\xa9:80",
  };
  char host[CYNIC_ADDR_HOST_MAX];
  uint16_t port;
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    int rc = cynic__addr_split(bad[i], host, sizeof(host), &port);
    if (rc != CYNIC_EINVAL)
      fail_msg("accepted \"%s\"", bad[i]);
  }
  char small[4];
  assert_int_equal(cynic__addr_split("longhost:1", small, sizeof(small), &port), CYNIC_EINVAL);
  assert_int_equal(cynic__addr_split(NULL, host, sizeof(host), &port), CYNIC_EINVAL);
}

static void numeric_and_format(void **state) {
  (void)state;
  struct sockaddr_storage ss;
  char out[CYNIC_ADDR_STR_MAX];
  assert_true(cynic__addr_numeric("127.0.0.1", 80, false, &ss));
  assert_int_equal(cynic__addr_format((struct sockaddr *)&ss, out, sizeof(out)), 0);
  assert_string_equal(out, "127.0.0.1:80");
  assert_true(cynic__addr_numeric("::1", 443, false, &ss));
  assert_int_equal(cynic__addr_format((struct sockaddr *)&ss, out, sizeof(out)), 0);
  assert_string_equal(out, "[::1]:443");
  assert_true(cynic__addr_numeric("", 9, true, &ss));
  assert_int_equal(ss.ss_family, AF_INET6);
  assert_true(cynic__addr_numeric("", 9, false, &ss));
  assert_int_equal(ss.ss_family, AF_INET);
  assert_false(cynic__addr_numeric("localhost", 9, false, &ss));
  assert_false(cynic__addr_numeric("1.2.3", 9, false, &ss));
  char tiny[5];
  assert_true(cynic__addr_numeric("127.0.0.1", 80, false, &ss));
  assert_int_equal(cynic__addr_format((struct sockaddr *)&ss, tiny, sizeof(tiny)), CYNIC_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(split_good),
      cmocka_unit_test(split_bad),
      cmocka_unit_test(numeric_and_format),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
