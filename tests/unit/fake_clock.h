/* tests/unit/fake_clock.h: a clock the test moves by hand. */
#ifndef CYNIC_TEST_FAKE_CLOCK_H
#define CYNIC_TEST_FAKE_CLOCK_H

#include <stdatomic.h>
#include <stdint.h>

#include "cynic/common.h"

typedef struct fake_clock {
  _Atomic uint64_t now; /* nanoseconds; starts wherever the test puts it */
} fake_clock_t;

static inline uint64_t fake_clock_read(void *arg) {
  return atomic_load_explicit(&((fake_clock_t *)arg)->now, memory_order_relaxed);
}

/* A cynic_clock_t that reads `fc`. */
static inline cynic_clock_t fake_clock_bind(fake_clock_t *fc) {
  cynic_clock_t c = {fake_clock_read, fc};
  return c;
}

static inline void fake_clock_set(fake_clock_t *fc, uint64_t ns) {
  atomic_store_explicit(&fc->now, ns, memory_order_relaxed);
}

static inline void fake_clock_advance(fake_clock_t *fc, uint64_t ns) {
  atomic_fetch_add_explicit(&fc->now, ns, memory_order_relaxed);
}

#endif
