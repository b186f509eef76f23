/*
 * cynic/backoff.h: retry backoff with jitter, against the Dogpile.
 *
 * "Release It!" calls it the Dogpile: when many clients fail at the same
 * moment and all retry after the same fixed delay, they arrive together again
 * and knock the recovering system over a second time. The cure is to spread
 * the retries out in time. libcynic offers the three delay schedules of the AWS
 * Architecture Blog post "Exponential Backoff and Jitter" (Marc Brooker):
 *
 *   EXPONENTIAL           delay(n) = min(cap, base * 2^n)                no jitter
 *   FULL_JITTER           delay(n) = random_between(0, min(cap, base * 2^n))
 *   DECORRELATED_JITTER   delay    = min(cap, random_between(base, prev * 3))
 *
 * n is the 0-based retry number (the first retry waits on the order of `base`),
 * random_between() is inclusive at both ends and unbiased, and `prev` is the
 * previous delay of the same sequence (`base` before the first one). Plain
 * EXPONENTIAL is here for completeness and for tests: it is exactly the
 * synchronised schedule that causes dogpiles, so prefer a jittered kind.
 *
 * Arithmetic saturates: base * 2^n is computed without overflow for any n,
 * so retry 200 gives `cap`, never a wrapped value.
 *
 * Randomness comes from a small seedable PRNG (xoshiro256**, seeded through
 * splitmix64) so a retry schedule is reproducible in tests: the same seed gives
 * the same delays on every platform.
 *
 * Thread safety. A cynic_backoff_t is the state of ONE retry sequence (one
 * request being retried by one caller); it is not meant to be shared and its
 * functions are not thread-safe on the same object. That is the model, not a
 * shortcut: two requests retrying must each draw their own delays, or they
 * would be synchronised again. What threads share is the immutable
 * cynic_backoff_config_t; each request embeds its own cynic_backoff_t (it is a
 * small public struct, fine on the stack, no allocation). For callers that keep
 * their own attempt counter, cynic_backoff_delay() is a stateless helper that
 * is safe to call from any number of threads, given each thread its own
 * cynic_rng_t.
 */
#ifndef CYNIC_BACKOFF_H
#define CYNIC_BACKOFF_H

#include "cynic/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- PRNG --------------------------------------------------------------- */

/*
 * xoshiro256** state (Blackman & Vigna). Public so the caller can embed it or
 * keep it on the stack; treat the fields as private. Not cryptographic: it is
 * for spreading retries, never for secrets. One cynic_rng_t must not be used
 * by two threads at once.
 */
typedef struct cynic_rng {
  uint64_t s[4]; /* never all zero once seeded */
} cynic_rng_t;

/*
 * Seeds `rng` deterministically from `seed` (any value, 0 included): the same
 * seed always gives the same sequence. The four state words are filled by
 * splitmix64, so nearby seeds (1, 2, 3...) give unrelated sequences.
 */
CYNIC_API void cynic_rng_seed(cynic_rng_t *rng, uint64_t seed);

/*
 * Seeds `rng` with a value that differs on every call within the process and
 * between processes started at different times: a process-wide counter, the
 * monotonic clock and the object's address, mixed. Cheap, no system calls
 * beyond clock_gettime, not cryptographic. Safe to call from any thread.
 */
CYNIC_API void cynic_rng_seed_auto(cynic_rng_t *rng);

/* The next 64 uniformly distributed bits. */
CYNIC_API uint64_t cynic_rng_next(cynic_rng_t *rng);

/*
 * A uniformly distributed integer in [lo, hi], both ends inclusive, without
 * modulo bias (rejection sampling: draws that fall in the short tail of the
 * 64-bit range are thrown away, so on average fewer than two draws are
 * needed). [0, UINT64_MAX] is allowed. If lo > hi the bounds are swapped.
 */
CYNIC_API uint64_t cynic_rng_range(cynic_rng_t *rng, uint64_t lo, uint64_t hi);

/* ---- backoff ------------------------------------------------------------- */

typedef enum cynic_backoff_kind {
  CYNIC_BACKOFF_EXPONENTIAL = 0,         /* min(cap, base*2^n), no jitter */
  CYNIC_BACKOFF_FULL_JITTER = 1,         /* uniform in [0, min(cap, base*2^n)] */
  CYNIC_BACKOFF_DECORRELATED_JITTER = 2, /* min(cap, uniform in [base, 3*prev]) */
} cynic_backoff_kind_t;

typedef struct cynic_backoff_config {
  cynic_backoff_kind_t kind; /* default CYNIC_BACKOFF_FULL_JITTER */
  uint64_t base_ns;          /* first delay's scale; > 0; default 50 ms */
  uint64_t cap_ns;           /* no delay is longer; >= base_ns; default 1 s */
  /*
   * PRNG seed for cynic_backoff_init(). 0 (the default) means "a different
   * seed for every sequence" (cynic_rng_seed_auto), which is what production
   * wants: a fixed seed shared by every request would give every request the
   * same jitter and bring the dogpile back. Set a non-zero seed in tests to
   * make the delays reproducible.
   */
  uint64_t seed;
} cynic_backoff_config_t;

/*
 * Fills `cfg` with the defaults: full jitter, base 50 ms, cap 1 s, seed 0
 * (automatic). Why: full jitter spreads retries best (AWS's measurements);
 * 50 ms is above an in-datacenter round trip, so the first retry gives a
 * blip time to pass; the 1 s cap keeps a retried request within an
 * interactive caller's patience.
 */
CYNIC_API void cynic_backoff_config_default(cynic_backoff_config_t *cfg);

/*
 * 0 if `cfg` is usable, CYNIC_EINVAL if it is NULL, its kind is unknown,
 * base_ns is 0 or cap_ns < base_ns.
 */
CYNIC_API int cynic_backoff_config_validate(const cynic_backoff_config_t *cfg);

/*
 * The state of one retry sequence. Public so it can be embedded in a request
 * or live on the stack; read the fields if useful, change them only through
 * the functions below. Not thread-safe: one sequence, one caller (see top).
 */
typedef struct cynic_backoff {
  cynic_backoff_config_t cfg; /* a copy, validated by cynic_backoff_init() */
  uint32_t attempt;           /* delays handed out so far; saturates */
  uint64_t prev_ns;           /* last delay handed out; 0 before the first */
  cynic_rng_t rng;            /* this sequence's own random stream */
} cynic_backoff_t;

/*
 * Starts a retry sequence with a copy of `cfg` (the caller may free or change
 * its config afterwards). Seeds the sequence's PRNG from cfg->seed, or
 * automatically if that is 0. Returns 0, or CYNIC_EINVAL (with `b` untouched)
 * if `b` is NULL or the config is invalid (see cynic_backoff_config_validate).
 * Nothing to free.
 */
CYNIC_API int cynic_backoff_init(cynic_backoff_t *b, const cynic_backoff_config_t *cfg);

/*
 * The delay, in nanoseconds, to wait before the next retry; advances the
 * sequence. Always in [0, cap_ns] (in [base_ns, cap_ns] for decorrelated
 * jitter). Never fails: the attempt counter and all arithmetic saturate.
 */
CYNIC_API uint64_t cynic_backoff_next(cynic_backoff_t *b);

/*
 * Starts the sequence over (attempt 0, no previous delay), e.g. after a
 * success. The PRNG is NOT reseeded: it continues its stream, so a reset
 * sequence does not replay the same jitter.
 */
CYNIC_API void cynic_backoff_reset(cynic_backoff_t *b);

/*
 * Stateless form: the delay before retry number `attempt` (0-based) given the
 * previous delay `prev_ns` (only decorrelated jitter uses it; pass 0 before
 * the first retry, which counts as `base_ns`). `cfg` is only read, so one
 * config may serve every thread; `rng` is advanced and must belong to the
 * calling thread. `rng` may be NULL for CYNIC_BACKOFF_EXPONENTIAL; with NULL,
 * the jittered kinds return the top of their range (no jitter). `cfg` should
 * have passed cynic_backoff_config_validate(); an invalid or NULL one is
 * answered defensively (base 0 gives 0, cap < base is raised to base), never
 * with undefined behaviour.
 */
CYNIC_API uint64_t cynic_backoff_delay(const cynic_backoff_config_t *cfg, uint32_t attempt,
                                       uint64_t prev_ns, cynic_rng_t *rng);

#ifdef __cplusplus
}
#endif
#endif /* CYNIC_BACKOFF_H */
