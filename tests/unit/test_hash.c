/* tests/unit/test_hash.c: lib/hash.c: SipHash-1-3 is a function of its key
 * and every input byte (length included), keys from cynic_hash_key differ,
 * and the rate table, which hashes with it, still finds its keys (its own
 * tests, test_ratelimit.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cynic/hash.h"

static void test_siphash_depends_on_key_bytes_and_length(void **state) {
  (void)state;
  uint8_t buf[64];
  for (size_t i = 0; i < sizeof buf; i++)
    buf[i] = (uint8_t)i;
  uint64_t seen[65];
  for (size_t n = 0; n <= sizeof buf; n++) {
    seen[n] = cynic_siphash13(1, 2, buf, n);
    assert_int_equal(seen[n], cynic_siphash13(1, 2, buf, n)); /* a function */
    for (size_t k = 0; k < n; k++)
      if (seen[k] == seen[n])
        fail_msg("lengths %zu and %zu collide", k, n);
    assert_int_not_equal(seen[n], cynic_siphash13(1, 3, buf, n));
    assert_int_not_equal(seen[n], cynic_siphash13(0, 2, buf, n));
  }
  /* every byte counts, whatever its place (the tail and whole words) */
  for (size_t i = 0; i < 20; i++) {
    uint8_t a[20] = {0}, b[20] = {0};
    b[i] = 1;
    assert_int_not_equal(cynic_siphash13(7, 9, a, sizeof a), cynic_siphash13(7, 9, b, sizeof b));
  }
  /* NULL with length 0 is fine */
  assert_int_equal(cynic_siphash13(1, 2, NULL, 0), seen[0]);
}

static void test_keys_differ(void **state) {
  (void)state;
  uint64_t a[2], b[2];
  cynic_hash_key(a, 1);
  cynic_hash_key(b, 1);
  assert_false(a[0] == b[0] && a[1] == b[1]);
  assert_int_not_equal(cynic_splitmix64(1), cynic_splitmix64(2));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_siphash_depends_on_key_bytes_and_length),
      cmocka_unit_test(test_keys_differ),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
