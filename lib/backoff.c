/*
 * lib/backoff.c: seedable PRNG and jittered exponential backoff (Dogpile).
 *
 * The PRNG is xoshiro256** seeded by splitmix64, both by Blackman & Vigna
 * (public domain reference code at prng.di.unimi.it). Chosen because it is
 * small (32 bytes of state, embeddable), fast, statistically strong and gives
 * the same stream on every platform, which keeps tests reproducible.
 */
#include "cynic/backoff.h"

#include <stdatomic.h>

/* ---- PRNG --------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += UINT64_C(0x9E3779B97F4A7C15));
  z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
  return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

void cynic_rng_seed(cynic_rng_t *rng, uint64_t seed) {
  uint64_t x = seed;
  for (int i = 0; i < 4; i++)
    rng->s[i] = splitmix64(&x);
  /* splitmix64 is a bijection of a counter, so four consecutive outputs are
   * never all zero; keep the invariant explicit anyway. */
  if ((rng->s[0] | rng->s[1] | rng->s[2] | rng->s[3]) == 0)
    rng->s[0] = 1;
}

void cynic_rng_seed_auto(cynic_rng_t *rng) {
  static _Atomic uint64_t counter;
  uint64_t n = atomic_fetch_add_explicit(&counter, 1, memory_order_relaxed);
  uint64_t x = cynic_clock_monotonic(NULL);
  uint64_t mix = splitmix64(&x);
  x = mix ^ (n * UINT64_C(0xD1B54A32D192ED03)) ^ (uint64_t)(uintptr_t)rng;
  cynic_rng_seed(rng, splitmix64(&x));
}

uint64_t cynic_rng_next(cynic_rng_t *rng) {
  uint64_t *s = rng->s;
  const uint64_t result = rotl(s[1] * 5, 7) * 9;
  const uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

uint64_t cynic_rng_range(cynic_rng_t *rng, uint64_t lo, uint64_t hi) {
  if (lo > hi) {
    uint64_t t = lo;
    lo = hi;
    hi = t;
  }
  uint64_t span = hi - lo + 1; /* 0 means the full 2^64 range */
  if (span == 0)
    return cynic_rng_next(rng);
  /* Reject the lowest (2^64 mod span) values so that the remaining count is a
   * multiple of span; then r % span is exactly uniform. (-span) % span is
   * 2^64 mod span computed in 64 bits. Rejection chance < 1/2 per draw. */
  uint64_t threshold = (0 - span) % span;
  for (;;) {
    uint64_t r = cynic_rng_next(rng);
    if (r >= threshold)
      return lo + r % span;
  }
}

/* ---- backoff ------------------------------------------------------------- */

void cynic_backoff_config_default(cynic_backoff_config_t *cfg) {
  if (cfg == NULL)
    return;
  cfg->kind = CYNIC_BACKOFF_FULL_JITTER;
  cfg->base_ns = CYNIC_MS(50);
  cfg->cap_ns = CYNIC_SEC(1);
  cfg->seed = 0;
}

int cynic_backoff_config_validate(const cynic_backoff_config_t *cfg) {
  if (cfg == NULL)
    return CYNIC_EINVAL;
  switch (cfg->kind) {
  case CYNIC_BACKOFF_EXPONENTIAL:
  case CYNIC_BACKOFF_FULL_JITTER:
  case CYNIC_BACKOFF_DECORRELATED_JITTER:
    break;
  default:
    return CYNIC_EINVAL;
  }
  if (cfg->base_ns == 0 || cfg->cap_ns < cfg->base_ns)
    return CYNIC_EINVAL;
  return 0;
}

/* min(cap, base * 2^attempt) without overflow; requires base <= cap. */
static uint64_t exp_ceiling(uint64_t base, uint64_t cap, uint32_t attempt) {
  if (attempt >= 64 || base > (cap >> attempt))
    return cap;
  return base << attempt; /* <= cap, so it did not overflow */
}

static uint64_t sat_mul3(uint64_t x) {
  return x > UINT64_MAX / 3 ? UINT64_MAX : x * 3;
}

uint64_t cynic_backoff_delay(const cynic_backoff_config_t *cfg, uint32_t attempt, uint64_t prev_ns,
                             cynic_rng_t *rng) {
  if (cfg == NULL)
    return 0;
  uint64_t base = cfg->base_ns;
  uint64_t cap = cfg->cap_ns < base ? base : cfg->cap_ns;

  switch (cfg->kind) {
  case CYNIC_BACKOFF_FULL_JITTER: {
    uint64_t top = exp_ceiling(base, cap, attempt);
    return rng == NULL ? top : cynic_rng_range(rng, 0, top);
  }
  case CYNIC_BACKOFF_DECORRELATED_JITTER: {
    /* The AWS formula as published: the draw may exceed cap and is then
     * clamped, so once a sequence reaches cap it stays near it. */
    uint64_t prev = prev_ns < base ? base : prev_ns;
    uint64_t hi = sat_mul3(prev);
    uint64_t d = rng == NULL ? hi : cynic_rng_range(rng, base, hi);
    return d < cap ? d : cap;
  }
  case CYNIC_BACKOFF_EXPONENTIAL:
  default:
    return exp_ceiling(base, cap, attempt);
  }
}

int cynic_backoff_init(cynic_backoff_t *b, const cynic_backoff_config_t *cfg) {
  if (b == NULL)
    return CYNIC_EINVAL;
  int err = cynic_backoff_config_validate(cfg);
  if (err != 0)
    return err;
  b->cfg = *cfg;
  b->attempt = 0;
  b->prev_ns = 0;
  if (cfg->seed != 0)
    cynic_rng_seed(&b->rng, cfg->seed);
  else
    cynic_rng_seed_auto(&b->rng);
  return 0;
}

uint64_t cynic_backoff_next(cynic_backoff_t *b) {
  uint64_t d = cynic_backoff_delay(&b->cfg, b->attempt, b->prev_ns, &b->rng);
  if (b->attempt != UINT32_MAX)
    b->attempt++;
  b->prev_ns = d;
  return d;
}

void cynic_backoff_reset(cynic_backoff_t *b) {
  b->attempt = 0;
  b->prev_ns = 0;
}
