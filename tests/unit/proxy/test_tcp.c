/* tests/unit/proxy/test_tcp.c: the pure parts of src/proxy/tcp.c.
 *
 * The ns -> ms rounding of timeouts (config.h's cynic__config_ms, which
 * tcp.c, pool.c, upstream.c and http_exchange.c arm their timers with). The
 * ring and the buffer pool are relay.c's (test_relay.c), the socket options
 * pool.c's (test_pool.c), admission and attempts upstream.c's
 * (test_upstream.c). The socket behaviour is tested black-box in
 * tests/integration/test_proxy_*.py. tcp.c is included to reach its statics
 * (H2O's way); the rest of the daemon is linked as it is (cynic_proxy_daemon),
 * nothing is stubbed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../../src/proxy/tcp.c"

static void test_timeouts_round_up_to_ms(void **state) {
  (void)state;
  assert_int_equal(cynic__config_ms(0), 0);
  assert_int_equal(cynic__config_ms(1), 1);
  assert_int_equal(cynic__config_ms(1000000), 1);
  assert_int_equal(cynic__config_ms(1000001), 2);
  assert_int_equal(cynic__config_ms(UINT64_C(250000000)), 250);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_timeouts_round_up_to_ms),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
