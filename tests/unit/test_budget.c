/* tests/unit/test_budget.c: retry budget on a fake clock.
 *
 * Includes lib/budget.c to reach the slot array for the saturation test. */
#include "budget.c" /* first: it sets _POSIX_C_SOURCE */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cynic/backoff.h"
#include "fake_clock.h"

#define MS CYNIC_MS(1)
#define T0 CYNIC_SEC(100) /* where the fake clock starts: period 100 */

typedef struct fixture {
  fake_clock_t fc;
  cynic_budget_t *b;
} fixture_t;

static fixture_t fx;

static cynic_budget_t *make(uint64_t ttl, double pct, uint32_t min_per_sec) {
  fake_clock_set(&fx.fc, T0);
  cynic_budget_config_t cfg;
  cynic_budget_config_default(&cfg);
  cfg.clock = fake_clock_bind(&fx.fc);
  cfg.ttl_ns = ttl;
  cfg.retry_percent = pct;
  cfg.min_retries_per_sec = min_per_sec;
  assert_int_equal(cynic_budget_new(&cfg, &fx.b), 0);
  return fx.b;
}

static int teardown(void **state) {
  (void)state;
  cynic_budget_free(fx.b);
  fx.b = NULL;
  return 0;
}

static cynic_budget_snapshot_t snap(cynic_budget_t *b) {
  cynic_budget_snapshot_t s;
  memset(&s, 0xEE, sizeof(s));
  assert_int_equal(cynic_budget_snapshot(b, &s), 0);
  assert_int_equal(cynic_budget_snapshot(NULL, &s), CYNIC_EINVAL);
  return s;
}

static void deposit_n(cynic_budget_t *b, int n) {
  for (int i = 0; i < n; i++)
    cynic_budget_deposit(b);
}

/* Withdraws until refused; returns how many were granted (bounded). */
static int drain(cynic_budget_t *b) {
  int n = 0;
  while (n < 1000000 && cynic_budget_withdraw(b) == 0)
    n++;
  return n;
}

static void test_config_default_and_validation(void **state) {
  (void)state;
  cynic_budget_config_t c;
  cynic_budget_config_default(&c);
  assert_int_equal(c.ttl_ns, CYNIC_SEC(10));
  assert_true(c.retry_percent == 20.0);
  assert_int_equal(c.min_retries_per_sec, 10);
  assert_null(c.clock.now);

  cynic_budget_t *b = (cynic_budget_t *)&c; /* must stay untouched */
  cynic_budget_t *const sentinel = b;
  assert_int_equal(cynic_budget_new(NULL, &b), CYNIC_EINVAL);
  assert_int_equal(cynic_budget_new(&c, NULL), CYNIC_EINVAL);
  const struct {
    uint64_t ttl;
    double pct;
    uint32_t min;
  } bad[] = {
      {CYNIC_SEC(1) - 1, 20, 10},   {CYNIC_SEC(60) + 1, 20, 10},  {0, 20, 10},
      {CYNIC_SEC(10), -0.5, 10},    {CYNIC_SEC(10), 1000.01, 10}, {CYNIC_SEC(10), NAN, 10},
      {CYNIC_SEC(10), 20, 1000001},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    c.ttl_ns = bad[i].ttl;
    c.retry_percent = bad[i].pct;
    c.min_retries_per_sec = bad[i].min;
    assert_int_equal(cynic_budget_new(&c, &b), CYNIC_EINVAL);
    assert_ptr_equal(b, sentinel);
  }
  /* The edges are allowed. */
  c.ttl_ns = CYNIC_SEC(1);
  c.retry_percent = 1000;
  c.min_retries_per_sec = 1000000;
  assert_int_equal(cynic_budget_new(&c, &b), 0);
  cynic_budget_free(b);
  c.ttl_ns = CYNIC_SEC(60);
  c.retry_percent = 0;
  c.min_retries_per_sec = 0;
  assert_int_equal(cynic_budget_new(&c, &b), 0);
  cynic_budget_free(b);
  cynic_budget_free(NULL);
}

static void test_exact_balance_percent_plus_reserve(void **state) {
  (void)state;
  /* 20 %, 1 retry/s over 10 s: a reserve of 10. */
  cynic_budget_t *b = make(CYNIC_SEC(10), 20, 1);
  cynic_budget_snapshot_t s = snap(b);
  assert_int_equal(s.reserve, 10);
  assert_int_equal(s.balance, 10);
  assert_int_equal(s.deposits_in_window, 0);

  deposit_n(b, 100);
  s = snap(b);
  assert_int_equal(s.deposits_in_window, 100);
  assert_int_equal(s.balance, 20 + 10);

  for (int i = 0; i < 30; i++)
    assert_int_equal(cynic_budget_withdraw(b), 0);
  assert_int_equal(cynic_budget_withdraw(b), CYNIC_EBUDGET);
  assert_int_equal(cynic_budget_withdraw(b), CYNIC_EBUDGET);
  s = snap(b);
  assert_int_equal(s.balance, 0);
  assert_int_equal(s.withdrawals_in_window, 30);
  assert_int_equal(s.total_deposits, 100);
  assert_int_equal(s.total_withdrawals, 30);
  assert_int_equal(s.total_exhausted, 2);

  /* Each 5 new requests earn exactly one retry at 20 %. */
  deposit_n(b, 4);
  assert_int_equal(cynic_budget_withdraw(b), CYNIC_EBUDGET);
  deposit_n(b, 1);
  assert_int_equal(cynic_budget_withdraw(b), 0);
  assert_int_equal(cynic_budget_withdraw(b), CYNIC_EBUDGET);
}

static void test_fractional_shares_round_down(void **state) {
  (void)state;
  cynic_budget_t *b = make(CYNIC_SEC(10), 12.5, 0);
  deposit_n(b, 15); /* 1.875 retries -> 1 */
  assert_int_equal(snap(b).balance, 1);
  deposit_n(b, 1); /* 2.0 -> 2 */
  assert_int_equal(snap(b).balance, 2);
  cynic_budget_free(b);

  /* 1.5 s at 3/s: a reserve of 4 (4.5 rounded down). */
  b = make(CYNIC_MS(1500), 0, 3);
  assert_int_equal(snap(b).reserve, 4);
  assert_int_equal(drain(b), 4);
  cynic_budget_free(b);

  /* 1000 %: ten retries per request. */
  b = make(CYNIC_SEC(10), 1000, 0);
  deposit_n(b, 3);
  assert_int_equal(drain(b), 30);
}

static void test_window_expiry(void **state) {
  (void)state;
  cynic_budget_t *b = make(CYNIC_SEC(10), 20, 1); /* slots of 1 s */
  deposit_n(b, 100);                              /* in period 100 */
  assert_int_equal(drain(b), 30);

  /* 9.999 s later the slot of period 100 is still in the window. */
  fake_clock_advance(&fx.fc, CYNIC_SEC(10) - 1);
  cynic_budget_snapshot_t s = snap(b);
  assert_int_equal(s.deposits_in_window, 100);
  assert_int_equal(s.withdrawals_in_window, 30);
  assert_int_equal(cynic_budget_withdraw(b), CYNIC_EBUDGET);

  /* At 10 s both the deposits and the withdrawals have aged out. */
  fake_clock_advance(&fx.fc, 1);
  s = snap(b);
  assert_int_equal(s.deposits_in_window, 0);
  assert_int_equal(s.withdrawals_in_window, 0);
  assert_int_equal(s.balance, 10); /* the reserve alone */
  assert_int_equal(s.total_deposits, 100);
  assert_int_equal(s.total_withdrawals, 30);

  /* Staggered: 50 at t=110 s, 50 at t=115 s; at t=120 s only the second
   * half counts. */
  deposit_n(b, 50);
  fake_clock_advance(&fx.fc, CYNIC_SEC(5));
  deposit_n(b, 50);
  assert_int_equal(snap(b).deposits_in_window, 100);
  fake_clock_advance(&fx.fc, CYNIC_SEC(5));
  s = snap(b);
  assert_int_equal(s.deposits_in_window, 50);
  assert_int_equal(s.balance, 10 + 10);
  /* A slot is reused for a new period, not added to: 1 s later, period
   * 121 shares slot 1 with period 111 (empty) and 101 (long gone). */
  fake_clock_advance(&fx.fc, CYNIC_SEC(1));
  deposit_n(b, 5);
  assert_int_equal(snap(b).deposits_in_window, 55);
  /* After a long silence everything has aged out. */
  fake_clock_advance(&fx.fc, CYNIC_SEC(3600));
  s = snap(b);
  assert_int_equal(s.deposits_in_window, 0);
  assert_int_equal(s.balance, 10);
}

static void test_min_per_second_without_traffic(void **state) {
  (void)state;
  /* No requests at all: the reserve of 5/s over 10 s still allows 50. */
  cynic_budget_t *b = make(CYNIC_SEC(10), 20, 5);
  assert_int_equal(drain(b), 50);
  assert_int_equal(snap(b).total_exhausted, 1);
  /* The reserve is spread over the ttl, not per second: nothing is given
   * back 1 s later... */
  fake_clock_advance(&fx.fc, CYNIC_SEC(1));
  assert_int_equal(cynic_budget_withdraw(b), CYNIC_EBUDGET);
  /* ...but once the withdrawals have aged out the reserve is whole again. */
  fake_clock_advance(&fx.fc, CYNIC_SEC(9));
  assert_int_equal(drain(b), 50);
  cynic_budget_free(b);

  /* Zero percent: the reserve is the whole budget, traffic earns nothing. */
  b = make(CYNIC_SEC(10), 0, 2);
  deposit_n(b, 1000);
  assert_int_equal(drain(b), 20);
  cynic_budget_free(b);

  /* No reserve and no traffic: no retries at all. */
  b = make(CYNIC_SEC(10), 20, 0);
  assert_int_equal(cynic_budget_withdraw(b), CYNIC_EBUDGET);
}

static void test_clock_going_back_does_not_rewind_window(void **state) {
  (void)state;
  cynic_budget_t *b = make(CYNIC_SEC(10), 20, 0);
  deposit_n(b, 50); /* period 100 */
  fake_clock_set(&fx.fc, CYNIC_SEC(50));
  /* Still period 100: the deposits are there, a new one lands with them. */
  cynic_budget_deposit(b);
  cynic_budget_snapshot_t s = snap(b);
  assert_int_equal(s.deposits_in_window, 51);
  assert_int_equal(s.balance, 10);
  assert_int_equal(b->deposits[100 % SLOTS] & 0xFFFFFFFFu, 51);
}

static void test_slot_count_saturates(void **state) {
  (void)state;
  cynic_budget_t *b = make(CYNIC_SEC(10), 100, 0);
  atomic_store(&b->deposits[100 % SLOTS], pack(100, UINT32_MAX - 1));
  cynic_budget_deposit(b);
  cynic_budget_deposit(b);
  cynic_budget_deposit(b);
  assert_int_equal(atomic_load(&b->deposits[100 % SLOTS]), pack(100, UINT32_MAX));
  assert_int_equal(snap(b).deposits_in_window, UINT32_MAX);
  assert_int_equal(snap(b).balance, UINT32_MAX);
}

/* Reference model of the documented semantics, by whole period. */
enum { PERIODS = 4000 };
static uint32_t ref_dep[PERIODS], ref_wd[PERIODS];

static uint64_t ref_sum(const uint32_t *a, long from, long to) {
  uint64_t s = 0;
  for (long p = from < 0 ? 0 : from; p <= to; p++)
    s += a[p];
  return s;
}

static void test_property_never_exceeds_bound(void **state) {
  (void)state;
  const uint64_t pct = 20, reserve = 10; /* 1/s over 10 s */
  cynic_budget_t *b = make(CYNIC_SEC(10), (double)pct, 1);
  fake_clock_set(&fx.fc, 0);
  memset(ref_dep, 0, sizeof(ref_dep));
  memset(ref_wd, 0, sizeof(ref_wd));
  cynic_rng_t r;
  cynic_rng_seed(&r, 20240601);

  uint64_t granted = 0, refused = 0;
  long p = 0;
  while (p < PERIODS - 100) {
    /* Phases: normal traffic, outage (few requests, many retries), idle. */
    uint64_t phase = cynic_rng_range(&r, 0, 2);
    uint64_t steps = cynic_rng_range(&r, 1, 40);
    for (uint64_t i = 0; i < steps; i++) {
      uint64_t deps = phase == 0   ? cynic_rng_range(&r, 0, 30)
                      : phase == 1 ? cynic_rng_range(&r, 0, 2)
                                   : 0;
      uint64_t tries = phase == 0   ? cynic_rng_range(&r, 0, 6)
                       : phase == 1 ? cynic_rng_range(&r, 0, 40)
                                    : cynic_rng_range(&r, 0, 1);
      for (uint64_t k = 0; k < deps; k++) {
        cynic_budget_deposit(b);
        ref_dep[p]++;
      }
      for (uint64_t k = 0; k < tries; k++) {
        uint64_t dep = ref_sum(ref_dep, p - 9, p);
        uint64_t wd = ref_sum(ref_wd, p - 9, p);
        bool model_ok = wd < dep * pct / 100 + reserve;
        int err = cynic_budget_withdraw(b);
        /* Exactly the documented semantics, at every single decision. */
        assert_int_equal(err == 0, model_ok);
        if (err == 0) {
          ref_wd[p]++;
          granted++;
        } else {
          assert_int_equal(err, CYNIC_EBUDGET);
          refused++;
        }
      }
      cynic_budget_snapshot_t s = snap(b);
      assert_int_equal(s.deposits_in_window, ref_sum(ref_dep, p - 9, p));
      assert_int_equal(s.withdrawals_in_window, ref_sum(ref_wd, p - 9, p));
      fake_clock_advance(&fx.fc, cynic_rng_range(&r, 0, 700 * MS));
      p = (long)(fake_clock_read(&fx.fc) / CYNIC_SEC(1));
    }
  }
  assert_true(granted > 1000 && refused > 1000); /* both sides exercised */

  /* The guarantee: over ANY window of 10 periods, retries are at most 20 %
   * of the requests of that window and the 9 periods before it, plus the
   * reserve. */
  for (long w = 0; w + 9 < p; w++) {
    uint64_t wd = ref_sum(ref_wd, w, w + 9);
    uint64_t dep = ref_sum(ref_dep, w - 9, w + 9);
    assert_true(wd <= dep * pct / 100 + reserve);
  }
  /* And in the long run retries are bounded by the share plus one reserve
   * per window: they cannot multiply load. */
  uint64_t total_dep = ref_sum(ref_dep, 0, p);
  uint64_t windows = (uint64_t)(p / 10 + 1);
  assert_true(granted <= total_dep * pct / 100 + windows * reserve);
  cynic_budget_snapshot_t s = snap(b);
  assert_int_equal(s.total_withdrawals, granted);
  assert_int_equal(s.total_exhausted, refused);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_config_default_and_validation),
      cmocka_unit_test_teardown(test_exact_balance_percent_plus_reserve, teardown),
      cmocka_unit_test_teardown(test_fractional_shares_round_down, teardown),
      cmocka_unit_test_teardown(test_window_expiry, teardown),
      cmocka_unit_test_teardown(test_min_per_second_without_traffic, teardown),
      cmocka_unit_test_teardown(test_clock_going_back_does_not_rewind_window, teardown),
      cmocka_unit_test_teardown(test_slot_count_saturates, teardown),
      cmocka_unit_test_teardown(test_property_never_exceeds_bound, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
