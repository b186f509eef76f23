/* tests/unit/test_bulkhead.c: limits, queue accounting, fairness, misuse. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cynic/bulkhead.h"

static cynic_bulkhead_t *make(uint32_t max, uint32_t pending, bool barging) {
  cynic_bulkhead_config_t cfg;
  cynic_bulkhead_config_default(&cfg);
  cfg.max_concurrent = max;
  cfg.max_pending = pending;
  cfg.allow_barging = barging;
  cynic_bulkhead_t *b = NULL;
  assert_int_equal(cynic_bulkhead_new(&cfg, &b), 0);
  assert_non_null(b);
  return b;
}

static cynic_bulkhead_stats_t stats(const cynic_bulkhead_t *b) {
  cynic_bulkhead_stats_t s;
  memset(&s, 0xa5, sizeof(s));
  cynic_bulkhead_stats(b, &s);
  return s;
}

static void test_defaults_and_validation(void **state) {
  (void)state;
  cynic_bulkhead_config_t cfg;
  cynic_bulkhead_config_default(&cfg);
  assert_int_equal(cfg.max_concurrent, 100);
  assert_int_equal(cfg.max_pending, 50);
  assert_false(cfg.allow_barging);

  cynic_bulkhead_t *b = (cynic_bulkhead_t *)&cfg; /* must stay untouched */
  cfg.max_concurrent = 0;
  assert_int_equal(cynic_bulkhead_new(&cfg, &b), CYNIC_EINVAL);
  assert_ptr_equal(b, (cynic_bulkhead_t *)&cfg);
  assert_int_equal(cynic_bulkhead_new(NULL, &b), CYNIC_EINVAL);
  cfg.max_concurrent = 1;
  assert_int_equal(cynic_bulkhead_new(&cfg, NULL), CYNIC_EINVAL);
  cynic_bulkhead_free(NULL);

  b = make(100, 50, false);
  cynic_bulkhead_stats_t s = stats(b);
  assert_int_equal(s.in_use, 0);
  assert_int_equal(s.max_concurrent, 100);
  assert_int_equal(s.pending, 0);
  assert_int_equal(s.max_pending, 50);
  assert_int_equal(s.entered + s.rejected_full + s.left + s.queued +
                       s.queue_rejected + s.dequeued + s.promoted + s.misuse,
                   0);
  cynic_bulkhead_free(b);
}

static void test_enter_leave_exact_counts(void **state) {
  (void)state;
  cynic_bulkhead_t *b = make(3, 0, false);
  for (int i = 0; i < 3; i++)
    assert_int_equal(cynic_bulkhead_try_enter(b), 0);
  assert_int_equal(cynic_bulkhead_try_enter(b), CYNIC_EFULL);
  assert_int_equal(cynic_bulkhead_try_enter(b), CYNIC_EFULL);
  /* max_pending 0: no queue at all. */
  assert_int_equal(cynic_bulkhead_queue(b), CYNIC_EFULL);
  cynic_bulkhead_stats_t s = stats(b);
  assert_int_equal(s.in_use, 3);
  assert_int_equal(s.entered, 3);
  assert_int_equal(s.rejected_full, 2);
  assert_int_equal(s.queue_rejected, 1);
  assert_int_equal(s.pending, 0);

  cynic_bulkhead_leave(b);
  assert_int_equal(cynic_bulkhead_try_enter(b), 0);
  cynic_bulkhead_leave(b);
  cynic_bulkhead_leave(b);
  cynic_bulkhead_leave(b);
  s = stats(b);
  assert_int_equal(s.in_use, 0);
  assert_int_equal(s.entered, 4);
  assert_int_equal(s.left, 4);
  assert_int_equal(s.misuse, 0);
  cynic_bulkhead_free(b);
}

static void test_queue_promote_dequeue_sequence(void **state) {
  (void)state;
  cynic_bulkhead_t *b = make(2, 2, false);
  assert_int_equal(cynic_bulkhead_try_enter(b), 0);
  assert_int_equal(cynic_bulkhead_try_enter(b), 0);
  assert_int_equal(cynic_bulkhead_try_enter(b), CYNIC_EFULL);
  assert_int_equal(cynic_bulkhead_queue(b), 0); /* waiter A */
  assert_int_equal(cynic_bulkhead_queue(b), 0); /* waiter B */
  assert_int_equal(cynic_bulkhead_queue(b), CYNIC_EFULL);
  /* Still full: promote leaves the waiter queued. */
  assert_int_equal(cynic_bulkhead_promote(b), CYNIC_EFULL);
  cynic_bulkhead_stats_t s = stats(b);
  assert_int_equal(s.in_use, 2);
  assert_int_equal(s.pending, 2);
  assert_int_equal(s.promoted, 0);

  cynic_bulkhead_leave(b);
  assert_int_equal(cynic_bulkhead_promote(b), 0); /* A gets the slot */
  s = stats(b);
  assert_int_equal(s.in_use, 2);
  assert_int_equal(s.pending, 1);
  assert_int_equal(s.promoted, 1);

  cynic_bulkhead_dequeue(b); /* B times out */
  s = stats(b);
  assert_int_equal(s.pending, 0);
  assert_int_equal(s.dequeued, 1);
  /* Nothing pending: promote is a caller bug, counted, not underflowed. */
  assert_int_equal(cynic_bulkhead_promote(b), CYNIC_ESTATE);
  s = stats(b);
  assert_int_equal(s.misuse, 1);
  assert_int_equal(s.pending, 0);
  assert_int_equal(s.in_use, 2);

  cynic_bulkhead_leave(b);
  cynic_bulkhead_leave(b);
  s = stats(b);
  assert_int_equal(s.in_use, 0);
  assert_int_equal(s.entered, 2);
  assert_int_equal(s.rejected_full, 1);
  assert_int_equal(s.left, 3);
  assert_int_equal(s.queued, 2);
  assert_int_equal(s.queue_rejected, 1);
  assert_int_equal(s.dequeued, 1);
  assert_int_equal(s.promoted, 1);
  assert_int_equal(s.in_use, s.entered + s.promoted - s.left);
  assert_int_equal(s.pending, s.queued - s.promoted - s.dequeued);
  cynic_bulkhead_free(b);
}

static void test_misuse_never_underflows(void **state) {
  (void)state;
  cynic_bulkhead_t *b = make(1, 1, false);
  cynic_bulkhead_leave(b);
  cynic_bulkhead_dequeue(b);
  cynic_bulkhead_leave(b);
  cynic_bulkhead_stats_t s = stats(b);
  assert_int_equal(s.in_use, 0);
  assert_int_equal(s.pending, 0);
  assert_int_equal(s.misuse, 3);
  assert_int_equal(s.left, 0);
  assert_int_equal(s.dequeued, 0);
  /* And the bulkhead still works at its limits afterwards. */
  assert_int_equal(cynic_bulkhead_try_enter(b), 0);
  assert_int_equal(cynic_bulkhead_try_enter(b), CYNIC_EFULL);
  assert_int_equal(cynic_bulkhead_queue(b), 0);
  assert_int_equal(cynic_bulkhead_queue(b), CYNIC_EFULL);
  cynic_bulkhead_free(b);
}

static void test_fair_arrivals_do_not_jump_the_queue(void **state) {
  (void)state;
  cynic_bulkhead_t *b = make(1, 4, false);
  assert_int_equal(cynic_bulkhead_try_enter(b), 0);
  assert_int_equal(cynic_bulkhead_queue(b), 0);
  cynic_bulkhead_leave(b);
  /* A slot is free, but a waiter is pending: the arrival must not take it. */
  cynic_bulkhead_stats_t s = stats(b);
  assert_int_equal(s.in_use, 0);
  assert_int_equal(s.pending, 1);
  assert_int_equal(cynic_bulkhead_try_enter(b), CYNIC_EFULL);
  bool queued = false;
  assert_int_equal(cynic_bulkhead_enter_or_queue(b, &queued), 0);
  assert_true(queued); /* queued behind the first waiter */
  assert_int_equal(cynic_bulkhead_promote(b), 0);
  assert_int_equal(cynic_bulkhead_promote(b), CYNIC_EFULL);
  s = stats(b);
  assert_int_equal(s.in_use, 1);
  assert_int_equal(s.pending, 1);
  assert_int_equal(s.rejected_full, 1);
  assert_int_equal(s.queued, 2);
  cynic_bulkhead_free(b);

  /* With barging allowed, the arrival takes the free slot. */
  b = make(1, 4, true);
  assert_int_equal(cynic_bulkhead_try_enter(b), 0);
  assert_int_equal(cynic_bulkhead_queue(b), 0);
  cynic_bulkhead_leave(b);
  assert_int_equal(cynic_bulkhead_try_enter(b), 0);
  assert_int_equal(cynic_bulkhead_promote(b), CYNIC_EFULL);
  s = stats(b);
  assert_int_equal(s.in_use, 1);
  assert_int_equal(s.pending, 1);
  cynic_bulkhead_free(b);
}

static void test_enter_or_queue(void **state) {
  (void)state;
  cynic_bulkhead_t *b = make(1, 1, false);
  bool queued = true;
  assert_int_equal(cynic_bulkhead_enter_or_queue(b, NULL), CYNIC_EINVAL);
  assert_int_equal(cynic_bulkhead_enter_or_queue(b, &queued), 0);
  assert_false(queued);
  assert_int_equal(cynic_bulkhead_enter_or_queue(b, &queued), 0);
  assert_true(queued);
  queued = false;
  assert_int_equal(cynic_bulkhead_enter_or_queue(b, &queued), CYNIC_EFULL);
  assert_false(queued); /* untouched on error */
  cynic_bulkhead_stats_t s = stats(b);
  assert_int_equal(s.in_use, 1);
  assert_int_equal(s.pending, 1);
  assert_int_equal(s.entered, 1);
  assert_int_equal(s.queued, 1);
  assert_int_equal(s.queue_rejected, 1);
  cynic_bulkhead_free(b);
}

/* xorshift64*: a fixed-seed generator for the property test. */
static uint64_t rng_next(uint64_t *s) {
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * UINT64_C(2685821657736338717);
}

static void run_property(bool barging) {
  const uint32_t max = 7, max_pending = 5;
  cynic_bulkhead_t *b = make(max, max_pending, barging);
  uint64_t seed = UINT64_C(0x5eed0b01cead) ^ (uint64_t)barging;
  /* The model: what a correct caller holds. */
  uint32_t held = 0, waiting = 0;
  uint64_t misuse = 0;
  for (int i = 0; i < 200000; i++) {
    uint64_t r = rng_next(&seed);
    switch (r % 7) {
    case 0:
    case 1: {
      int rc = cynic_bulkhead_try_enter(b);
      bool can = held < max && (barging || waiting == 0);
      assert_int_equal(rc, can ? 0 : CYNIC_EFULL);
      held += rc == 0;
      break;
    }
    case 2:
      if (held == 0 && (r >> 8) % 16 != 0)
        break; /* misuse only now and then */
      misuse += held == 0;
      held -= held > 0;
      cynic_bulkhead_leave(b);
      break;
    case 3: {
      int rc = cynic_bulkhead_queue(b);
      assert_int_equal(rc, waiting < max_pending ? 0 : CYNIC_EFULL);
      waiting += rc == 0;
      break;
    }
    case 4:
      if (waiting == 0 && (r >> 8) % 16 != 0)
        break;
      misuse += waiting == 0;
      waiting -= waiting > 0;
      cynic_bulkhead_dequeue(b);
      break;
    case 5: {
      int rc = cynic_bulkhead_promote(b);
      int want = waiting == 0 ? CYNIC_ESTATE : held < max ? 0 : CYNIC_EFULL;
      assert_int_equal(rc, want);
      misuse += waiting == 0;
      if (rc == 0) {
        held++;
        waiting--;
      }
      break;
    }
    default: {
      bool q = false;
      int rc = cynic_bulkhead_enter_or_queue(b, &q);
      if (held < max && (barging || waiting == 0)) {
        assert_int_equal(rc, 0);
        assert_false(q);
        held++;
      } else if (waiting < max_pending) {
        assert_int_equal(rc, 0);
        assert_true(q);
        waiting++;
      } else {
        assert_int_equal(rc, CYNIC_EFULL);
      }
    }
    }
    cynic_bulkhead_stats_t s = stats(b);
    assert_true(s.in_use <= max);
    assert_true(s.pending <= max_pending);
    assert_int_equal(s.in_use, held);
    assert_int_equal(s.pending, waiting);
    assert_int_equal(s.entered + s.promoted - s.left, s.in_use);
    assert_int_equal(s.queued - s.promoted - s.dequeued, s.pending);
    assert_int_equal(s.misuse, misuse);
  }
  cynic_bulkhead_stats_t s = stats(b);
  assert_true(s.promoted > 1000); /* the walk reached every state */
  assert_true(s.rejected_full > 1000);
  assert_true(s.queue_rejected > 1000);
  assert_true(misuse > 10);
  cynic_bulkhead_free(b);
}

static void test_property_random_ops_fair(void **state) {
  (void)state;
  run_property(false);
}

static void test_property_random_ops_barging(void **state) {
  (void)state;
  run_property(true);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults_and_validation),
      cmocka_unit_test(test_enter_leave_exact_counts),
      cmocka_unit_test(test_queue_promote_dequeue_sequence),
      cmocka_unit_test(test_misuse_never_underflows),
      cmocka_unit_test(test_fair_arrivals_do_not_jump_the_queue),
      cmocka_unit_test(test_enter_or_queue),
      cmocka_unit_test(test_property_random_ops_fair),
      cmocka_unit_test(test_property_random_ops_barging),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
