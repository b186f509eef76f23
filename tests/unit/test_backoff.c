/* tests/unit/test_backoff.c: PRNG and jittered backoff (Dogpile). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cynic/backoff.h"

#define MS CYNIC_MS(1)

static cynic_backoff_config_t config(cynic_backoff_kind_t kind, uint64_t base, uint64_t cap,
                                     uint64_t seed) {
  cynic_backoff_config_t c;
  cynic_backoff_config_default(&c);
  c.kind = kind;
  c.base_ns = base;
  c.cap_ns = cap;
  c.seed = seed;
  return c;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static size_t count_distinct(uint64_t *v, size_t n) {
  qsort(v, n, sizeof(*v), cmp_u64);
  size_t d = n > 0;
  for (size_t i = 1; i < n; i++)
    d += v[i] != v[i - 1];
  return d;
}

/* ---- PRNG --------------------------------------------------------------- */

static void test_rng_matches_reference_vectors(void **state) {
  (void)state;
  cynic_rng_t r;
  /* splitmix64's first output for seed 0 is the published test value. */
  cynic_rng_seed(&r, 0);
  assert_int_equal(r.s[0], UINT64_C(0xE220A8397B1DCDAF));
  /* xoshiro256** reference outputs for state {1, 2, 3, 4}. */
  r.s[0] = 1, r.s[1] = 2, r.s[2] = 3, r.s[3] = 4;
  assert_int_equal(cynic_rng_next(&r), UINT64_C(11520));
  assert_int_equal(cynic_rng_next(&r), UINT64_C(0));
  assert_int_equal(cynic_rng_next(&r), UINT64_C(1509978240));
  assert_int_equal(cynic_rng_next(&r), UINT64_C(1215971899390074240));
  /* Seed 42, checked against an independent Python model. */
  cynic_rng_seed(&r, 42);
  assert_int_equal(cynic_rng_next(&r), UINT64_C(1546998764402558742));
  assert_int_equal(cynic_rng_next(&r), UINT64_C(6990951692964543102));
  assert_int_equal(cynic_rng_next(&r), UINT64_C(12544586762248559009));
}

static void test_rng_same_seed_same_sequence(void **state) {
  (void)state;
  cynic_rng_t a, b, c;
  cynic_rng_seed(&a, 7);
  cynic_rng_seed(&b, 7);
  cynic_rng_seed(&c, 8);
  int differ = 0;
  for (int i = 0; i < 1000; i++) {
    uint64_t x = cynic_rng_next(&a);
    assert_int_equal(x, cynic_rng_next(&b));
    differ += x != cynic_rng_next(&c);
  }
  assert_int_equal(differ, 1000);
}

static void test_rng_auto_seeds_differ(void **state) {
  (void)state;
  cynic_rng_t a, b;
  cynic_rng_seed_auto(&a);
  cynic_rng_seed_auto(&b);
  assert_true(cynic_rng_next(&a) != cynic_rng_next(&b));
}

static void test_rng_range_is_inclusive(void **state) {
  (void)state;
  cynic_rng_t r;
  cynic_rng_seed(&r, 1);
  int seen[3] = {0};
  for (int i = 0; i < 3000; i++) {
    uint64_t x = cynic_rng_range(&r, 5, 7);
    assert_in_range(x, 5, 7);
    seen[x - 5]++;
  }
  assert_true(seen[0] > 0 && seen[1] > 0 && seen[2] > 0);
  assert_int_equal(cynic_rng_range(&r, 9, 9), 9);
  assert_int_equal(cynic_rng_range(&r, UINT64_MAX, UINT64_MAX), UINT64_MAX);
  /* Swapped bounds are put in order. */
  for (int i = 0; i < 100; i++)
    assert_in_range(cynic_rng_range(&r, 20, 10), 10, 20);
  /* The full range works (span 2^64 wraps to 0 internally). */
  int high = 0;
  for (int i = 0; i < 1000; i++)
    high += cynic_rng_range(&r, 0, UINT64_MAX) > UINT64_MAX / 2;
  assert_in_range(high, 400, 600);
  /* Top of a 64-bit range is reachable. */
  int top = 0;
  for (int i = 0; i < 1000; i++)
    top += cynic_rng_range(&r, UINT64_MAX - 1, UINT64_MAX) == UINT64_MAX;
  assert_in_range(top, 400, 600);
}

static void test_rng_range_is_unbiased(void **state) {
  (void)state;
  cynic_rng_t r;
  cynic_rng_seed(&r, 2024);
  /* Chi-square over 10 buckets, 100,000 draws: 9 degrees of freedom; 40 is
   * far out in the tail (p < 1e-5) and the seed is fixed, so no flakiness. */
  enum { BUCKETS = 10, DRAWS = 100000 };
  int count[BUCKETS] = {0};
  for (int i = 0; i < DRAWS; i++)
    count[cynic_rng_range(&r, 0, BUCKETS - 1)]++;
  double chi2 = 0, expect = (double)DRAWS / BUCKETS;
  for (int i = 0; i < BUCKETS; i++)
    chi2 += (count[i] - expect) * (count[i] - expect) / expect;
  assert_true(chi2 < 40.0);

  /* Modulo bias would show here: with span 3 * 2^62, a plain r % span hits
   * [0, 2^62) twice as often (1/2 of draws instead of 1/3). */
  uint64_t hi = UINT64_C(3) * (UINT64_C(1) << 62) - 1;
  int low = 0;
  for (int i = 0; i < 30000; i++)
    low += cynic_rng_range(&r, 0, hi) < (UINT64_C(1) << 62);
  assert_in_range(low, 9400, 10600); /* 1/3 of 30,000 = 10,000 */
}

/* ---- backoff ------------------------------------------------------------- */

static void test_config_default_and_validation(void **state) {
  (void)state;
  cynic_backoff_config_t c;
  cynic_backoff_config_default(&c);
  assert_int_equal(c.kind, CYNIC_BACKOFF_FULL_JITTER);
  assert_int_equal(c.base_ns, CYNIC_MS(50));
  assert_int_equal(c.cap_ns, CYNIC_SEC(1));
  assert_int_equal(c.seed, 0);
  assert_int_equal(cynic_backoff_config_validate(&c), 0);

  cynic_backoff_t b;
  memset(&b, 0xAB, sizeof(b));
  cynic_backoff_t before = b;
  c = config(CYNIC_BACKOFF_EXPONENTIAL, 0, MS, 1);
  assert_int_equal(cynic_backoff_init(&b, &c), CYNIC_EINVAL); /* base 0 */
  c = config(CYNIC_BACKOFF_EXPONENTIAL, 2 * MS, MS, 1);
  assert_int_equal(cynic_backoff_init(&b, &c), CYNIC_EINVAL); /* cap < base */
  c = config((cynic_backoff_kind_t)3, MS, MS, 1);
  assert_int_equal(cynic_backoff_init(&b, &c), CYNIC_EINVAL); /* kind */
  assert_int_equal(cynic_backoff_init(&b, NULL), CYNIC_EINVAL);
  assert_int_equal(cynic_backoff_init(NULL, &c), CYNIC_EINVAL);
  assert_memory_equal(&b, &before, sizeof(b)); /* untouched on failure */
  assert_int_equal(cynic_backoff_config_validate(NULL), CYNIC_EINVAL);
  c = config(CYNIC_BACKOFF_DECORRELATED_JITTER, MS, MS, 0); /* cap == base */
  assert_int_equal(cynic_backoff_init(&b, &c), 0);
  assert_int_equal(cynic_backoff_next(&b), MS);
}

static void test_exponential_exact_values_and_cap(void **state) {
  (void)state;
  cynic_backoff_config_t c = config(CYNIC_BACKOFF_EXPONENTIAL, 100 * MS, 1000 * MS, 1);
  cynic_backoff_t b;
  assert_int_equal(cynic_backoff_init(&b, &c), 0);
  const uint64_t want[] = {100, 200, 400, 800, 1000, 1000, 1000};
  for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
    assert_int_equal(cynic_backoff_next(&b), want[i] * MS);
  assert_int_equal(b.attempt, 7);
  cynic_backoff_reset(&b);
  assert_int_equal(b.attempt, 0);
  assert_int_equal(cynic_backoff_next(&b), 100 * MS);
}

static void test_huge_attempts_saturate(void **state) {
  (void)state;
  const cynic_backoff_kind_t kinds[] = {CYNIC_BACKOFF_EXPONENTIAL, CYNIC_BACKOFF_FULL_JITTER};
  const uint32_t attempts[] = {34, 62, 63, 64, 65, 200, UINT32_MAX};
  cynic_rng_t r;
  cynic_rng_seed(&r, 5);
  for (size_t k = 0; k < 2; k++) {
    cynic_backoff_config_t c = config(kinds[k], 3, CYNIC_SEC(30), 1);
    for (size_t i = 0; i < sizeof(attempts) / sizeof(attempts[0]); i++) {
      uint64_t d = cynic_backoff_delay(&c, attempts[i], 0, &r);
      if (kinds[k] == CYNIC_BACKOFF_EXPONENTIAL)
        assert_int_equal(d, CYNIC_SEC(30));
      else
        assert_true(d <= CYNIC_SEC(30));
    }
  }
  /* A cap at the very top of the range: 2^attempt * base must not wrap. */
  cynic_backoff_config_t c = config(CYNIC_BACKOFF_EXPONENTIAL, UINT64_C(1) << 40, UINT64_MAX, 1);
  assert_int_equal(cynic_backoff_delay(&c, 23, 0, NULL), UINT64_C(1) << 63);
  assert_int_equal(cynic_backoff_delay(&c, 24, 0, NULL), UINT64_MAX);
  assert_int_equal(cynic_backoff_delay(&c, 200, 0, NULL), UINT64_MAX);

  /* The sequence's own counter saturates too: 300 steps, then the top. */
  cynic_backoff_t b;
  c = config(CYNIC_BACKOFF_EXPONENTIAL, MS, CYNIC_SEC(10), 1);
  assert_int_equal(cynic_backoff_init(&b, &c), 0);
  for (int i = 0; i < 300; i++)
    assert_true(cynic_backoff_next(&b) <= CYNIC_SEC(10));
  assert_int_equal(b.attempt, 300);
  assert_int_equal(cynic_backoff_next(&b), CYNIC_SEC(10));
  b.attempt = UINT32_MAX - 1;
  assert_int_equal(cynic_backoff_next(&b), CYNIC_SEC(10));
  assert_int_equal(cynic_backoff_next(&b), CYNIC_SEC(10));
  assert_int_equal(b.attempt, UINT32_MAX);

  /* Decorrelated with a huge previous delay: 3 * prev saturates, cap holds. */
  c = config(CYNIC_BACKOFF_DECORRELATED_JITTER, MS, CYNIC_SEC(1), 1);
  for (int i = 0; i < 100; i++) {
    uint64_t d = cynic_backoff_delay(&c, 0, UINT64_MAX - 5, &r);
    assert_in_range(d, MS, CYNIC_SEC(1));
  }
}

static void test_full_jitter_exact_values_with_seed(void **state) {
  (void)state;
  /* Golden values from an independent model of the published formula. */
  cynic_backoff_config_t c = config(CYNIC_BACKOFF_FULL_JITTER, 100 * MS, 1000 * MS, 42);
  cynic_backoff_t b;
  assert_int_equal(cynic_backoff_init(&b, &c), 0);
  const uint64_t want[] = {32571253, 9784812, 87092182, 660156584, 769764517, 866563769};
  for (size_t i = 0; i < 6; i++)
    assert_int_equal(cynic_backoff_next(&b), want[i]);
}

static void test_decorrelated_exact_values_with_seed(void **state) {
  (void)state;
  cynic_backoff_config_t c = config(CYNIC_BACKOFF_DECORRELATED_JITTER, 100 * MS, 1000 * MS, 42);
  cynic_backoff_t b;
  assert_int_equal(cynic_backoff_init(&b, &c), 0);
  const uint64_t want[] = {167564959, 222955234, 271405281, 691067301, 764068052, 1000000000};
  for (size_t i = 0; i < 6; i++)
    assert_int_equal(cynic_backoff_next(&b), want[i]);
}

static void test_full_jitter_stays_in_bounds(void **state) {
  (void)state;
  for (uint64_t seed = 1; seed <= 200; seed++) {
    cynic_backoff_config_t c = config(CYNIC_BACKOFF_FULL_JITTER, 10 * MS, 700 * MS, seed);
    cynic_backoff_t b;
    assert_int_equal(cynic_backoff_init(&b, &c), 0);
    for (uint32_t n = 0; n < 20; n++) {
      uint64_t top = n < 7 ? (10 * MS) << n : 700 * MS;
      if (top > 700 * MS)
        top = 700 * MS;
      assert_in_range(cynic_backoff_next(&b), 0, top);
    }
  }
}

static void test_decorrelated_stays_in_bounds(void **state) {
  (void)state;
  for (uint64_t seed = 1; seed <= 200; seed++) {
    cynic_backoff_config_t c = config(CYNIC_BACKOFF_DECORRELATED_JITTER, 10 * MS, 700 * MS, seed);
    cynic_backoff_t b;
    assert_int_equal(cynic_backoff_init(&b, &c), 0);
    uint64_t prev = 10 * MS; /* before the first retry, prev counts as base */
    for (int n = 0; n < 30; n++) {
      uint64_t top = 3 * prev < 700 * MS ? 3 * prev : 700 * MS;
      uint64_t d = cynic_backoff_next(&b);
      assert_in_range(d, 10 * MS, top);
      assert_int_equal(b.prev_ns, d);
      prev = d;
    }
  }
}

static void test_same_seed_reproduces_different_seeds_differ(void **state) {
  (void)state;
  const cynic_backoff_kind_t kinds[] = {CYNIC_BACKOFF_FULL_JITTER,
                                        CYNIC_BACKOFF_DECORRELATED_JITTER};
  for (size_t k = 0; k < 2; k++) {
    cynic_backoff_config_t c1 = config(kinds[k], MS, CYNIC_SEC(60), 99);
    cynic_backoff_config_t c2 = config(kinds[k], MS, CYNIC_SEC(60), 100);
    cynic_backoff_t a, b, d;
    assert_int_equal(cynic_backoff_init(&a, &c1), 0);
    assert_int_equal(cynic_backoff_init(&b, &c1), 0);
    assert_int_equal(cynic_backoff_init(&d, &c2), 0);
    int differ = 0;
    for (int i = 0; i < 10; i++) {
      uint64_t x = cynic_backoff_next(&a);
      assert_int_equal(x, cynic_backoff_next(&b));
      differ += x != cynic_backoff_next(&d);
    }
    assert_true(differ >= 9);
  }
}

static void test_auto_seed_gives_each_sequence_its_own_jitter(void **state) {
  (void)state;
  cynic_backoff_config_t c;
  cynic_backoff_config_default(&c); /* seed 0: automatic */
  cynic_backoff_t a, b;
  assert_int_equal(cynic_backoff_init(&a, &c), 0);
  assert_int_equal(cynic_backoff_init(&b, &c), 0);
  int same = 0;
  for (int i = 0; i < 8; i++)
    same += cynic_backoff_next(&a) == cynic_backoff_next(&b);
  assert_true(same <= 1);
}

static void test_reset_does_not_replay_jitter(void **state) {
  (void)state;
  cynic_backoff_config_t c = config(CYNIC_BACKOFF_FULL_JITTER, CYNIC_SEC(1), CYNIC_SEC(100), 3);
  cynic_backoff_t b;
  assert_int_equal(cynic_backoff_init(&b, &c), 0);
  uint64_t first[4];
  for (int i = 0; i < 4; i++)
    first[i] = cynic_backoff_next(&b);
  cynic_backoff_reset(&b);
  assert_int_equal(b.attempt, 0);
  assert_int_equal(b.prev_ns, 0);
  int same = 0;
  for (int i = 0; i < 4; i++) {
    uint64_t d = cynic_backoff_next(&b);
    assert_true(d <= (CYNIC_SEC(1) << i)); /* the bound restarted */
    same += d == first[i];
  }
  assert_int_equal(same, 0);
}

/* The anti-dogpile property: 1,000 clients that fail at the same moment do
 * not come back at the same moment. */
static void test_jitter_spreads_a_thousand_clients(void **state) {
  (void)state;
  enum { CLIENTS = 1000, BUCKETS = 10 };
  static uint64_t first[CLIENTS];
  const uint64_t base = 100 * MS;

  /* Full jitter: first retries spread over [0, base]. */
  int bucket[BUCKETS] = {0};
  uint64_t sum = 0;
  for (int i = 0; i < CLIENTS; i++) {
    cynic_backoff_config_t c = config(CYNIC_BACKOFF_FULL_JITTER, base, CYNIC_SEC(1), 1000 + i);
    cynic_backoff_t b;
    assert_int_equal(cynic_backoff_init(&b, &c), 0);
    first[i] = cynic_backoff_next(&b);
    assert_true(first[i] <= base);
    bucket[first[i] * BUCKETS / (base + 1)]++;
    sum += first[i];
  }
  for (int i = 0; i < BUCKETS; i++)
    assert_in_range(bucket[i], 50, 150); /* 100 expected in each tenth */
  assert_in_range(sum / CLIENTS, 45 * MS, 55 * MS);
  assert_true(count_distinct(first, CLIENTS) >= 990);
  assert_true(first[0] < 2 * MS && first[CLIENTS - 1] > 98 * MS);

  /* Decorrelated jitter: first retries spread over [base, 3 * base]. */
  memset(bucket, 0, sizeof(bucket));
  for (int i = 0; i < CLIENTS; i++) {
    cynic_backoff_config_t c =
        config(CYNIC_BACKOFF_DECORRELATED_JITTER, base, CYNIC_SEC(1), 5000 + i);
    cynic_backoff_t b;
    assert_int_equal(cynic_backoff_init(&b, &c), 0);
    first[i] = cynic_backoff_next(&b);
    assert_in_range(first[i], base, 3 * base);
    bucket[(first[i] - base) * BUCKETS / (2 * base + 1)]++;
  }
  for (int i = 0; i < BUCKETS; i++)
    assert_in_range(bucket[i], 50, 150);
  assert_true(count_distinct(first, CLIENTS) >= 990);

  /* And the reason jitter exists: without it, everyone comes back at once. */
  for (int i = 0; i < CLIENTS; i++) {
    cynic_backoff_config_t c = config(CYNIC_BACKOFF_EXPONENTIAL, base, CYNIC_SEC(1), 1000 + i);
    cynic_backoff_t b;
    assert_int_equal(cynic_backoff_init(&b, &c), 0);
    first[i] = cynic_backoff_next(&b);
  }
  assert_int_equal(count_distinct(first, CLIENTS), 1);
}

static void test_stateless_helper(void **state) {
  (void)state;
  cynic_backoff_config_t c = config(CYNIC_BACKOFF_FULL_JITTER, 100 * MS, 1000 * MS, 42);
  /* Same stream as the stateful form when fed the same rng. */
  cynic_rng_t r;
  cynic_rng_seed(&r, 42);
  assert_int_equal(cynic_backoff_delay(&c, 0, 0, &r), 32571253);
  assert_int_equal(cynic_backoff_delay(&c, 1, 32571253, &r), 9784812);
  /* Without an rng the jittered kinds give the top of their range. */
  assert_int_equal(cynic_backoff_delay(&c, 2, 0, NULL), 400 * MS);
  c.kind = CYNIC_BACKOFF_DECORRELATED_JITTER;
  assert_int_equal(cynic_backoff_delay(&c, 0, 0, NULL), 300 * MS);
  assert_int_equal(cynic_backoff_delay(&c, 0, 500 * MS, NULL), 1000 * MS);
  /* Invalid configs are answered, not crashed on. */
  assert_int_equal(cynic_backoff_delay(NULL, 0, 0, &r), 0);
  c.base_ns = 0;
  assert_int_equal(cynic_backoff_delay(&c, 3, 0, &r), 0);
  c.kind = CYNIC_BACKOFF_EXPONENTIAL;
  c.base_ns = 5 * MS;
  c.cap_ns = MS; /* cap < base is raised to base */
  assert_int_equal(cynic_backoff_delay(&c, 3, 0, &r), 5 * MS);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rng_matches_reference_vectors),
      cmocka_unit_test(test_rng_same_seed_same_sequence),
      cmocka_unit_test(test_rng_auto_seeds_differ),
      cmocka_unit_test(test_rng_range_is_inclusive),
      cmocka_unit_test(test_rng_range_is_unbiased),
      cmocka_unit_test(test_config_default_and_validation),
      cmocka_unit_test(test_exponential_exact_values_and_cap),
      cmocka_unit_test(test_huge_attempts_saturate),
      cmocka_unit_test(test_full_jitter_exact_values_with_seed),
      cmocka_unit_test(test_decorrelated_exact_values_with_seed),
      cmocka_unit_test(test_full_jitter_stays_in_bounds),
      cmocka_unit_test(test_decorrelated_stays_in_bounds),
      cmocka_unit_test(test_same_seed_reproduces_different_seeds_differ),
      cmocka_unit_test(test_auto_seed_gives_each_sequence_its_own_jitter),
      cmocka_unit_test(test_reset_does_not_replay_jitter),
      cmocka_unit_test(test_jitter_spreads_a_thousand_clients),
      cmocka_unit_test(test_stateless_helper),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
