/*
 * cynic/ratelimit.h: token buckets against Unwanted Users (Nygard,
 * *Release It!*).
 *
 * A token bucket refills at `rate_per_sec` tokens a second up to `burst`
 * tokens; a caller takes n tokens per unit of work (a request, a connection,
 * a kilobyte) or is told how long to wait for them. cynic_tokens_t is one
 * bucket; cynic_ratetable_t is a fixed-size table of buckets keyed by client
 * (an address, an API key) so each client has its own limit and a flood of
 * distinct clients cannot grow memory.
 *
 * Arithmetic (exact, so limits can be tested exactly). The bucket is kept
 * as a "theoretical arrival time" (GCRA, the cell-rate form of a token
 * bucket) in ticks of 1/16 ns counted from the bucket's creation:
 *
 *   T   = ceil(16e9 / rate_per_sec)   ticks one token costs
 *   tau = floor(burst * T)            ticks of credit a full bucket holds
 *   take(n) at time now:  tat' = max(tat, now) + n*T;
 *                         granted iff tat' - now <= tau, then tat = tat'.
 *
 * Hence over any run, (tokens granted) * T <= (ticks elapsed) + tau, that
 * is, granted <= rate' * elapsed + burst with rate' = 16e9 / T <= the
 * configured rate: T is rounded up, so the bucket never grants more than
 * configured (it may grant up to 1/T less: under 0.007% below 1e6 tokens/s).
 * A new bucket starts full. A clock that goes backwards earns nothing: a
 * time before the last grant only makes tat' - now larger.
 *
 * Bounds: rate_per_sec in [1e-6, 1.6e10]; burst >= 1 and burst * T < 2^62.
 * Ticks saturate after ~36 years of one bucket's life.
 */
#ifndef CYNIC_RATELIMIT_H
#define CYNIC_RATELIMIT_H

#include "cynic/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- one token bucket ---------------------------------------------------- */

typedef struct cynic_tokens cynic_tokens_t;

typedef struct cynic_tokens_config {
  cynic_clock_t clock; /* zeroed = CLOCK_MONOTONIC */
  double rate_per_sec; /* refill rate, tokens a second. Default 100 */
  double burst;        /* bucket size in tokens (>= 1). Default 200 */
} cynic_tokens_config_t;

typedef struct cynic_tokens_stats {
  uint64_t granted; /* tokens handed out */
  uint64_t takes;   /* take() calls granted */
  uint64_t limited; /* take() calls answered CYNIC_ELIMITED */
} cynic_tokens_stats_t;

/* Defaults: 100 tokens/s, burst 200, as the cynic proxy's default
 * `rate_limit: { per_client: 100/s, burst: 200 }`: a client may double its
 * steady rate for two seconds (a page load, a reconnect storm) before it is
 * told to slow down. */
CYNIC_API void cynic_tokens_config_default(cynic_tokens_config_t *cfg);

/*
 * Creates a full bucket. `cfg` is copied. Reads the clock once, to mark the
 * bucket's origin. Returns 0, CYNIC_EINVAL (NULL argument, rate or burst
 * outside the bounds above, NaN) or CYNIC_ENOMEM.
 */
CYNIC_API int cynic_tokens_new(const cynic_tokens_config_t *cfg,
                               cynic_tokens_t **out);

/* Frees the bucket; NULL is a no-op. No thread may be using it. */
CYNIC_API void cynic_tokens_free(cynic_tokens_t *t);

/*
 * Takes `n` tokens now. Returns 0 (granted; *wait_ns = 0) or CYNIC_ELIMITED
 * with *wait_ns = nanoseconds until n tokens will be there if nobody else
 * takes any (rounded up: a take after that long succeeds), or UINT64_MAX
 * when n > burst (never). n == 0 is always granted and does not read the
 * clock. `wait_ns` may be NULL.
 *
 * Thread safety: lock-free; one compare-and-swap on the bucket's 64-bit
 * word per attempt. Concurrent takes never jointly exceed the bound above.
 */
CYNIC_API int cynic_tokens_take(cynic_tokens_t *t, uint32_t n,
                                uint64_t *wait_ns);

/* Whole tokens available now (for metrics; may be stale at once). */
CYNIC_API uint64_t cynic_tokens_available(const cynic_tokens_t *t);

/* The name every component uses for its picture. */
typedef cynic_tokens_stats_t cynic_tokens_snapshot_t;

/* Totals since creation; each counter exact, not one instant across them.
 * Returns 0, or CYNIC_EINVAL when an argument is NULL. */
CYNIC_API int cynic_tokens_snapshot(const cynic_tokens_t *t, cynic_tokens_snapshot_t *out);

/* The older name of cynic_tokens_snapshot(), kept for existing callers. */
CYNIC_API void cynic_tokens_stats(const cynic_tokens_t *t,
                                  cynic_tokens_stats_t *out);

/* ---- a table of buckets, one per client ----------------------------------- */

/*
 * Keys up to this many bytes (an IPv6 address) are stored as they are and
 * compared bytewise. Longer keys (API keys, user ids, e-mail addresses) are
 * accepted too, of any length, and stored as a 128-bit digest: two SipHash-1-3
 * values under two independent random keys, so an entry stays 64 bytes and
 * memory stays bounded by `capacity`. Why 128 bits is enough: two distinct
 * long keys share a bucket only if both digests are equal; the hash key is
 * secret, so a client cannot aim for that, and by chance it happens with
 * probability about n^2 / 2^129 over n distinct keys: below 1e-14 even after
 * 10^12 keys (the table holds at most 2^24 at once). A short key and a long
 * one never share an entry: the entry records which kind it holds.
 */
#define CYNIC_RATETABLE_KEY_MAX 16
/* The largest capacity accepted (entries are ~64 bytes each). */
#define CYNIC_RATETABLE_CAPACITY_MAX (UINT32_C(1) << 24)

typedef struct cynic_ratetable cynic_ratetable_t;

typedef struct cynic_ratetable_config {
  cynic_clock_t clock;  /* zeroed = CLOCK_MONOTONIC */
  double rate_per_sec;  /* per key; default 100 */
  double burst;         /* per key; default 200 */
  uint32_t capacity;    /* keys tracked at most, 1..CAPACITY_MAX; 10000 */
  uint64_t seed;        /* hash key; 0 = random at creation (getrandom) */
} cynic_ratetable_config_t;

typedef struct cynic_ratetable_stats {
  uint32_t size;      /* keys tracked now */
  uint32_t capacity;  /* the limit on size */
  uint64_t hits;      /* takes whose key was in the table */
  uint64_t misses;    /* takes that added their key */
  uint64_t evictions; /* keys dropped to make room (least recently used) */
  uint64_t granted;   /* takes granted */
  uint64_t rejected;  /* takes answered CYNIC_ELIMITED */
} cynic_ratetable_stats_t;

CYNIC_API void cynic_ratetable_config_default(cynic_ratetable_config_t *cfg);

/*
 * Creates a table for `capacity` keys; all memory is allocated here and
 * nothing grows afterwards. Returns 0, CYNIC_EINVAL (NULL, bad rate/burst as
 * for cynic_tokens_new, capacity 0 or above CAPACITY_MAX) or CYNIC_ENOMEM.
 *
 * Keys are hashed with SipHash-1-3 keyed from `seed`, so a client cannot
 * choose addresses that collide unless it knows the seed; leave seed 0 in
 * production, set it in tests for reproducible layouts.
 */
CYNIC_API int cynic_ratetable_new(const cynic_ratetable_config_t *cfg,
                                  cynic_ratetable_t **out);

/* Frees the table; NULL is a no-op. No thread may be using it. */
CYNIC_API void cynic_ratetable_free(cynic_ratetable_t *t);

/*
 * Takes `n` tokens from the bucket of `key` (keylen bytes, at least 1, any
 * length; a 4-byte and a 16-byte key are different clients; keys longer
 * than CYNIC_RATETABLE_KEY_MAX are told apart by a 128-bit digest, see
 * above: hashing them costs one more SipHash, outside the lock).
 * Answers as cynic_tokens_take. A key not in the table gets a new, full
 * bucket; when the table is full the least recently used key is evicted for
 * it. Every take, granted or not, makes its key the most recently used.
 *
 * Trade-off: eviction forgets a client's debt, so a client evicted and seen
 * again starts with a full burst. An attacker cycling more addresses than
 * `capacity` gets `burst` tokens per address per cycle; size the capacity
 * above the number of clients active within burst/rate seconds and
 * watch `evictions`. Memory stays bounded, which is the point.
 *
 * Returns CYNIC_EINVAL for a NULL table or key or keylen 0 (nothing
 * recorded). (Before issue 15, keys over 16 bytes were CYNIC_EINVAL.)
 * Thread safety: one mutex guards the table; the critical section is a hash
 * lookup, an LRU relink and the bucket arithmetic, with no allocation and
 * no clock read (the clock is read before taking the lock).
 */
CYNIC_API int cynic_ratetable_take(cynic_ratetable_t *t, const void *key,
                                   size_t keylen, uint32_t n,
                                   uint64_t *wait_ns);

/* The name every component uses for its picture. */
typedef cynic_ratetable_stats_t cynic_ratetable_snapshot_t;

/* Current size and totals, read under the mutex (one consistent instant).
 * Returns 0, or CYNIC_EINVAL when an argument is NULL. */
CYNIC_API int cynic_ratetable_snapshot(const cynic_ratetable_t *t,
                                       cynic_ratetable_snapshot_t *out);

/* The older name of cynic_ratetable_snapshot(), kept for existing callers. */
CYNIC_API void cynic_ratetable_stats(cynic_ratetable_t *t,
                                     cynic_ratetable_stats_t *out);

#ifdef __cplusplus
}
#endif
#endif /* CYNIC_RATELIMIT_H */
