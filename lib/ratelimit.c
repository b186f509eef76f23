/*
 * lib/ratelimit.c: token buckets (GCRA form) and a bounded, LRU-evicting
 * table of them, against Unwanted Users.
 *
 * A bucket's whole state is its theoretical arrival time `tat` in ticks of
 * 1/16 ns since the origin: the instant at which the bucket would be full
 * again. Tokens available at `now` are (now + tau - max(tat, now)) / T. One
 * word means one compare-and-swap per take, and integer ticks make the
 * bound exact (see cynic/ratelimit.h for the arithmetic).
 *
 * The table is a chained hash (power-of-two bucket heads, chain links inside
 * the entries) plus an intrusive doubly linked LRU list, all in two arrays
 * allocated at creation and indexed by uint32_t. A mutex guards it: LRU
 * relinking touches three entries and cannot be made lock-free cheaply, and
 * the section is a few dozen instructions.
 */
#include "cynic/ratelimit.h"

#include "cynic/hash.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define TICKS_PER_NS 16
/* Elapsed ns are clamped here so ticks stay below 2^63 and tat + tau
 * (tau < 2^62) cannot wrap: ~18 years of one bucket's life. */
#define ELAPSED_NS_MAX (UINT64_C(1) << 59)
#define TAU_MAX (UINT64_C(1) << 62)
#define NIL UINT32_MAX

/* What every bucket of a kind shares: its rate, size and time origin. */
typedef struct bucket_params {
  cynic_clock_t clock;
  uint64_t origin_ns; /* the clock at creation; tick 0 */
  uint64_t cost;      /* T: ticks per token, >= 1 */
  uint64_t tau;       /* ticks of credit in a full bucket, < 2^62 */
  uint64_t max_n;     /* floor(tau / T): the largest grantable take */
} bucket_params_t;

/* Ticks since origin; a clock behind the origin reads as tick 0. */
static uint64_t ticks_at(const bucket_params_t *p, uint64_t now_ns) {
  uint64_t e = cynic__sat_sub(now_ns, p->origin_ns);
  if (e > ELAPSED_NS_MAX)
    e = ELAPSED_NS_MAX;
  return e * TICKS_PER_NS;
}

static int params_init(bucket_params_t *p, const cynic_clock_t *clock,
                       double rate, double burst) {
  /* The negated comparisons also reject NaN. */
  if (!(rate >= 1e-6 && rate <= 1.6e10) || !(burst >= 1.0 && burst < 4e18))
    return CYNIC_EINVAL;
  double cost = ceil(16e9 / rate); /* in [1, 1.6e16]: exact in a double */
  if (cost < 1.0)
    cost = 1.0;
  if (cost * rate < 16e9) /* the quotient was rounded down past an integer */
    cost += 1.0;
  double tau = floor(burst * cost);
  if (!(tau < (double)TAU_MAX))
    return CYNIC_EINVAL;
  p->clock = *clock;
  p->cost = (uint64_t)cost;
  p->tau = (uint64_t)tau;
  /* burst >= 1 and cost integral, so tau >= cost and max_n >= 1. */
  p->max_n = p->tau / p->cost;
  p->origin_ns = cynic_clock_now(clock);
  return 0;
}

/*
 * The GCRA decision for `n` tokens (1 <= n <= max_n) at tick `now_t`, for a
 * bucket at `tat`. Granted: returns 0 and the bucket's new tat in *next.
 * Refused: CYNIC_ELIMITED and the ticks to wait in *wait_t.
 */
static int decide(const bucket_params_t *p, uint64_t tat, uint32_t n,
                  uint64_t now_t, uint64_t *next, uint64_t *wait_t) {
  uint64_t base = tat > now_t ? tat : now_t;
  uint64_t after = base + (uint64_t)n * p->cost; /* < 2^63 + 2^62 */
  uint64_t debt = after - now_t;
  if (debt > p->tau) {
    *wait_t = debt - p->tau;
    return CYNIC_ELIMITED;
  }
  *next = after;
  return 0;
}

/* Ticks to wait as ns, rounded up, plus any time the clock is behind the
 * origin (ticks_at clamped it to 0). */
static uint64_t wait_ns_of(const bucket_params_t *p, uint64_t wait_t,
                           uint64_t now_ns) {
  uint64_t ns = wait_t / TICKS_PER_NS + (wait_t % TICKS_PER_NS != 0);
  return cynic__sat_add(ns, cynic__sat_sub(p->origin_ns, now_ns));
}

static uint64_t available_at(const bucket_params_t *p, uint64_t tat,
                             uint64_t now_t) {
  uint64_t base = tat > now_t ? tat : now_t;
  uint64_t full = now_t + p->tau;
  return full > base ? (full - base) / p->cost : 0;
}

static void set_wait(uint64_t *wait_ns, uint64_t v) {
  if (wait_ns != NULL)
    *wait_ns = v;
}

/* ---- one token bucket ---------------------------------------------------- */

struct cynic_tokens {
  bucket_params_t p;
  _Atomic uint64_t tat;
  _Atomic uint64_t granted;
  _Atomic uint64_t takes;
  _Atomic uint64_t limited;
};

void cynic_tokens_config_default(cynic_tokens_config_t *cfg) {
  if (cfg == NULL)
    return;
  memset(cfg, 0, sizeof(*cfg));
  cfg->rate_per_sec = 100.0;
  cfg->burst = 200.0;
}

int cynic_tokens_new(const cynic_tokens_config_t *cfg, cynic_tokens_t **out) {
  if (cfg == NULL || out == NULL)
    return CYNIC_EINVAL;
  cynic_tokens_t *t = calloc(1, sizeof(*t));
  if (t == NULL)
    return CYNIC_ENOMEM;
  int err = params_init(&t->p, &cfg->clock, cfg->rate_per_sec, cfg->burst);
  if (err != 0)
    goto out_free_bucket;
  atomic_init(&t->tat, 0); /* at or before now: full */
  atomic_init(&t->granted, 0);
  atomic_init(&t->takes, 0);
  atomic_init(&t->limited, 0);
  *out = t;
  return 0;

out_free_bucket:
  free(t);
  return err;
}

void cynic_tokens_free(cynic_tokens_t *t) { free(t); }

int cynic_tokens_take(cynic_tokens_t *t, uint32_t n, uint64_t *wait_ns) {
  if (n == 0) {
    set_wait(wait_ns, 0);
    return 0;
  }
  if (n > t->p.max_n) {
    atomic_fetch_add_explicit(&t->limited, 1, memory_order_relaxed);
    set_wait(wait_ns, UINT64_MAX);
    return CYNIC_ELIMITED;
  }
  uint64_t now_ns = cynic_clock_now(&t->p.clock);
  uint64_t now_t = ticks_at(&t->p, now_ns);
  uint64_t tat = atomic_load_explicit(&t->tat, memory_order_relaxed);
  uint64_t next, wait_t;
  do {
    if (decide(&t->p, tat, n, now_t, &next, &wait_t) != 0) {
      atomic_fetch_add_explicit(&t->limited, 1, memory_order_relaxed);
      set_wait(wait_ns, wait_ns_of(&t->p, wait_t, now_ns));
      return CYNIC_ELIMITED;
    }
    /* Relaxed: the bucket publishes no other data, and the CAS alone makes
     * every grant see every earlier one (one modification order). */
  } while (!atomic_compare_exchange_weak_explicit(
      &t->tat, &tat, next, memory_order_relaxed, memory_order_relaxed));
  atomic_fetch_add_explicit(&t->takes, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&t->granted, n, memory_order_relaxed);
  set_wait(wait_ns, 0);
  return 0;
}

uint64_t cynic_tokens_available(const cynic_tokens_t *t) {
  cynic_tokens_t *m = (cynic_tokens_t *)t; /* atomic_load wants non-const */
  uint64_t now_t = ticks_at(&t->p, cynic_clock_now(&t->p.clock));
  return available_at(&t->p, atomic_load_explicit(&m->tat, memory_order_relaxed),
                      now_t);
}

int cynic_tokens_snapshot(const cynic_tokens_t *t, cynic_tokens_snapshot_t *out) {
  if (t == NULL || out == NULL)
    return CYNIC_EINVAL;
  cynic_tokens_stats(t, out);
  return 0;
}

void cynic_tokens_stats(const cynic_tokens_t *t, cynic_tokens_stats_t *out) {
  cynic_tokens_t *m = (cynic_tokens_t *)t;
  out->granted = atomic_load_explicit(&m->granted, memory_order_relaxed);
  out->takes = atomic_load_explicit(&m->takes, memory_order_relaxed);
  out->limited = atomic_load_explicit(&m->limited, memory_order_relaxed);
}

/* ---- the keyed table ------------------------------------------------------ */

typedef struct entry {
  uint64_t tat;      /* the key's bucket */
  uint64_t hash;     /* SipHash of the key; finds the chain on eviction */
  uint32_t chain;    /* next entry in the same hash chain, or NIL */
  uint32_t lru_prev; /* towards the most recently used, or NIL */
  uint32_t lru_next; /* towards the least recently used, or NIL */
  uint8_t keylen;    /* bytes of key[] in use */
  bool digest;       /* key[] holds the 128-bit digest of a longer key */
  uint8_t key[CYNIC_RATETABLE_KEY_MAX]; /* the key itself, or its digest */
} entry_t;

struct cynic_ratetable {
  pthread_mutex_t lock; /* guards everything below except `p` and keys */
  bucket_params_t p;    /* read-only after creation */
  uint64_t k0, k1;      /* SipHash key, read-only after creation */
  uint64_t k2, k3;      /* second, independent key: the digest's high half */
  uint32_t capacity;
  uint32_t mask;     /* heads has mask + 1 slots, a power of two */
  uint32_t size;     /* entries[0, size) are in use */
  uint32_t lru_head; /* most recently used, or NIL */
  uint32_t lru_tail; /* least recently used: the next to go */
  uint32_t *heads;   /* hash chain heads */
  entry_t *entries;
  uint64_t hits, misses, evictions, granted, rejected;
};

void cynic_ratetable_config_default(cynic_ratetable_config_t *cfg) {
  if (cfg == NULL)
    return;
  memset(cfg, 0, sizeof(*cfg));
  cfg->rate_per_sec = 100.0;
  cfg->burst = 200.0;
  cfg->capacity = 10000;
}

/* The digest key, derived from the first so a seed still fixes the layout. */
static void derive_digest_key(cynic_ratetable_t *t) {
  t->k2 = cynic_splitmix64(t->k0 ^ UINT64_C(0x6c6f6e67206b6579)); /* "long key" */
  t->k3 = cynic_splitmix64(t->k1 ^ t->k2);
}

int cynic_ratetable_new(const cynic_ratetable_config_t *cfg,
                        cynic_ratetable_t **out) {
  if (cfg == NULL || out == NULL || cfg->capacity == 0 ||
      cfg->capacity > CYNIC_RATETABLE_CAPACITY_MAX)
    return CYNIC_EINVAL;
  int err = CYNIC_ENOMEM;
  cynic_ratetable_t *t = calloc(1, sizeof(*t));
  if (t == NULL)
    return CYNIC_ENOMEM;
  uint32_t nheads = 1;
  while (nheads < cfg->capacity)
    nheads <<= 1;
  t->heads = malloc((size_t)nheads * sizeof(*t->heads));
  if (t->heads == NULL)
    goto out_free_table;
  t->entries = malloc((size_t)cfg->capacity * sizeof(*t->entries));
  if (t->entries == NULL)
    goto out_free_heads;
  err = params_init(&t->p, &cfg->clock, cfg->rate_per_sec, cfg->burst);
  if (err != 0)
    goto out_free_entries;
  if (pthread_mutex_init(&t->lock, NULL) != 0) {
    err = CYNIC_ENOMEM;
    goto out_free_entries;
  }
  for (uint32_t i = 0; i < nheads; i++)
    t->heads[i] = NIL;
  t->mask = nheads - 1;
  t->capacity = cfg->capacity;
  t->lru_head = t->lru_tail = NIL;
  if (cfg->seed != 0) {
    t->k0 = cynic_splitmix64(cfg->seed);
    t->k1 = cynic_splitmix64(t->k0);
  } else {
    uint64_t k[2];
    cynic_hash_key(k, (uint64_t)(uintptr_t)t); /* never a fixed key, even without entropy */
    t->k0 = k[0];
    t->k1 = k[1];
  }
  derive_digest_key(t);
  *out = t;
  return 0;

out_free_entries:
  free(t->entries);
out_free_heads:
  free(t->heads);
out_free_table:
  free(t);
  return err;
}

void cynic_ratetable_free(cynic_ratetable_t *t) {
  if (t == NULL)
    return;
  pthread_mutex_destroy(&t->lock);
  free(t->entries);
  free(t->heads);
  free(t);
}

static void lru_unlink(cynic_ratetable_t *t, uint32_t i) {
  entry_t *e = &t->entries[i];
  if (e->lru_prev != NIL)
    t->entries[e->lru_prev].lru_next = e->lru_next;
  else
    t->lru_head = e->lru_next;
  if (e->lru_next != NIL)
    t->entries[e->lru_next].lru_prev = e->lru_prev;
  else
    t->lru_tail = e->lru_prev;
}

static void lru_push_front(cynic_ratetable_t *t, uint32_t i) {
  entry_t *e = &t->entries[i];
  e->lru_prev = NIL;
  e->lru_next = t->lru_head;
  if (t->lru_head != NIL)
    t->entries[t->lru_head].lru_prev = i;
  else
    t->lru_tail = i;
  t->lru_head = i;
}

static void chain_unlink(cynic_ratetable_t *t, uint32_t i) {
  uint32_t *link = &t->heads[t->entries[i].hash & t->mask];
  while (*link != i)
    link = &t->entries[*link].chain; /* i is on this chain: invariant */
  *link = t->entries[i].chain;
}

/* The entry for the key, created (evicting the LRU key if full) if absent,
 * and made the most recently used. Called with the lock held. */
static uint32_t lookup(cynic_ratetable_t *t, const uint8_t *key,
                       uint8_t keylen, bool digest, uint64_t hash) {
  uint32_t *head = &t->heads[hash & t->mask];
  for (uint32_t i = *head; i != NIL; i = t->entries[i].chain) {
    entry_t *e = &t->entries[i];
    if (e->hash == hash && e->keylen == keylen && e->digest == digest &&
        memcmp(e->key, key, keylen) == 0) {
      t->hits++;
      if (t->lru_head != i) {
        lru_unlink(t, i);
        lru_push_front(t, i);
      }
      return i;
    }
  }
  t->misses++;
  uint32_t i;
  if (t->size < t->capacity) {
    i = t->size++;
  } else {
    i = t->lru_tail;
    lru_unlink(t, i);
    chain_unlink(t, i);
    t->evictions++;
  }
  entry_t *e = &t->entries[i];
  e->tat = 0; /* at or before now: a full bucket */
  e->hash = hash;
  e->keylen = keylen;
  e->digest = digest;
  memcpy(e->key, key, keylen);
  e->chain = *head;
  *head = i;
  lru_push_front(t, i);
  return i;
}

int cynic_ratetable_take(cynic_ratetable_t *t, const void *key, size_t keylen,
                         uint32_t n, uint64_t *wait_ns) {
  if (t == NULL || key == NULL || keylen == 0)
    return CYNIC_EINVAL;
  uint64_t hash = cynic_siphash13(t->k0, t->k1, key, keylen);
  /* A key longer than KEY_MAX is stored as a 128-bit keyed digest: the chain
   * hash and a second SipHash under an independent key. Outside the lock. */
  uint8_t stored[CYNIC_RATETABLE_KEY_MAX];
  bool digest = keylen > CYNIC_RATETABLE_KEY_MAX;
  if (digest) {
    uint64_t hi = cynic_siphash13(t->k2, t->k3, key, keylen);
    for (int b = 0; b < 8; b++) {
      stored[b] = (uint8_t)(hash >> (8 * b));
      stored[8 + b] = (uint8_t)(hi >> (8 * b));
    }
    key = stored;
    keylen = sizeof stored;
  }
  uint64_t now_ns = 0, now_t = 0;
  if (n != 0 && n <= t->p.max_n) {
    now_ns = cynic_clock_now(&t->p.clock);
    now_t = ticks_at(&t->p, now_ns);
  }
  int err = 0;
  uint64_t wait = 0;

  pthread_mutex_lock(&t->lock);
  entry_t *e = &t->entries[lookup(t, key, (uint8_t)keylen, digest, hash)];
  if (n > t->p.max_n) {
    err = CYNIC_ELIMITED;
    wait = UINT64_MAX;
  } else if (n != 0) {
    uint64_t next, wait_t;
    err = decide(&t->p, e->tat, n, now_t, &next, &wait_t);
    if (err == 0)
      e->tat = next;
    else
      wait = wait_ns_of(&t->p, wait_t, now_ns);
  }
  if (err == 0)
    t->granted++;
  else
    t->rejected++;
  pthread_mutex_unlock(&t->lock);

  set_wait(wait_ns, wait);
  return err;
}

int cynic_ratetable_snapshot(const cynic_ratetable_t *t, cynic_ratetable_snapshot_t *out) {
  if (t == NULL || out == NULL)
    return CYNIC_EINVAL;
  /* The mutex is not part of the table's observable value. */
  cynic_ratetable_stats((cynic_ratetable_t *)t, out);
  return 0;
}

void cynic_ratetable_stats(cynic_ratetable_t *t,
                           cynic_ratetable_stats_t *out) {
  pthread_mutex_lock(&t->lock);
  out->size = t->size;
  out->capacity = t->capacity;
  out->hits = t->hits;
  out->misses = t->misses;
  out->evictions = t->evictions;
  out->granted = t->granted;
  out->rejected = t->rejected;
  pthread_mutex_unlock(&t->lock);
}
