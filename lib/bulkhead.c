/*
 * lib/bulkhead.c: Bulkheads and Back Pressure as lock-free accounting.
 *
 * State is one 64-bit word, in_use in the high half and pending in the low
 * half, changed only by compare-and-swap. Every operation loads the word,
 * decides from both counts, and publishes both new counts at once, so no
 * interleaving can push either past its limit or below zero. Statistics are
 * relaxed counters beside it, on their own cache line so that metric updates
 * do not bounce the line the CAS loops spin on.
 */
#define _POSIX_C_SOURCE 200809L
#include "cynic/bulkhead.h"

#include <errno.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#define WORD(in_use, pending) (((uint64_t)(in_use) << 32) | (uint64_t)(pending))
#define IN_USE(w) ((uint32_t)((w) >> 32))
#define PENDING(w) ((uint32_t)(w))

/*
 * A thread blocked in cynic_bulkhead_enter_wait(), on its own stack. Each
 * waiter has its own condition variable so a promotion wakes exactly the
 * thread it chose (no thundering herd, no stolen wake-up).
 */
typedef struct waiter {
  struct waiter *next;
  struct waiter *prev;
  pthread_cond_t cond;
  bool granted; /* set under `lock` by the thread that promoted it */
} waiter_t;

struct cynic_bulkhead {
  alignas(64) _Atomic uint64_t state; /* in_use:32 | pending:32 */
  uint32_t max_concurrent;
  uint32_t max_pending;
  bool allow_barging;
  /*
   * Blocking waiters. `blocked` is read by leave() after its CAS: non-zero
   * means some thread may be waiting, so leave() takes `lock` and hands the
   * freed slot to the oldest waiter. A waiter raises `blocked` before its
   * enter_or_queue CAS, so a leave() whose CAS comes later in the state
   * word's order sees it (the CAS chain carries the happens-before).
   */
  _Atomic uint32_t blocked;
  pthread_mutex_t lock; /* guards head, tail and every waiter's `granted` */
  waiter_t *head;       /* oldest waiter: FIFO among blocking waiters */
  waiter_t *tail;
  alignas(64) _Atomic uint64_t entered;
  _Atomic uint64_t rejected_full;
  _Atomic uint64_t left;
  _Atomic uint64_t queued;
  _Atomic uint64_t queue_rejected;
  _Atomic uint64_t dequeued;
  _Atomic uint64_t promoted;
  _Atomic uint64_t misuse;
  _Atomic uint64_t timed_out;
};

static void count(_Atomic uint64_t *c) {
  atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/* Replaces `*w` by `next` if the state still holds `*w`; on failure `*w` is
 * refreshed. Acquire/release so that work done under a slot happens-before
 * the next holder of that slot sees it free. */
static bool publish(cynic_bulkhead_t *b, uint64_t *w, uint64_t next) {
  return atomic_compare_exchange_weak_explicit(
      &b->state, w, next, memory_order_acq_rel, memory_order_acquire);
}

/* May an arrival take a slot in state `w`? */
static bool slot_open(const cynic_bulkhead_t *b, uint64_t w) {
  if (IN_USE(w) >= b->max_concurrent)
    return false;
  return b->allow_barging || PENDING(w) == 0;
}

void cynic_bulkhead_config_default(cynic_bulkhead_config_t *cfg) {
  if (cfg == NULL)
    return;
  cfg->max_concurrent = 100;
  cfg->max_pending = 50;
  cfg->allow_barging = false;
}

int cynic_bulkhead_new(const cynic_bulkhead_config_t *cfg,
                       cynic_bulkhead_t **out) {
  if (cfg == NULL || out == NULL || cfg->max_concurrent == 0)
    return CYNIC_EINVAL;
  /* aligned_alloc wants a size that is a multiple of the alignment. */
  size_t size = (sizeof(cynic_bulkhead_t) + 63) / 64 * 64;
  cynic_bulkhead_t *b = aligned_alloc(64, size);
  if (b == NULL)
    return CYNIC_ENOMEM;
  atomic_init(&b->state, WORD(0, 0));
  b->max_concurrent = cfg->max_concurrent;
  b->max_pending = cfg->max_pending;
  b->allow_barging = cfg->allow_barging;
  atomic_init(&b->entered, 0);
  atomic_init(&b->rejected_full, 0);
  atomic_init(&b->left, 0);
  atomic_init(&b->queued, 0);
  atomic_init(&b->queue_rejected, 0);
  atomic_init(&b->dequeued, 0);
  atomic_init(&b->promoted, 0);
  atomic_init(&b->misuse, 0);
  atomic_init(&b->timed_out, 0);
  atomic_init(&b->blocked, 0);
  if (pthread_mutex_init(&b->lock, NULL) != 0) {
    free(b);
    return CYNIC_ENOMEM;
  }
  b->head = NULL;
  b->tail = NULL;
  *out = b;
  return 0;
}

void cynic_bulkhead_free(cynic_bulkhead_t *b) {
  if (b == NULL)
    return;
  pthread_mutex_destroy(&b->lock);
  free(b);
}

/* Hands free slots to the oldest blocking waiters, under `lock`. */
static void wake_waiters_locked(cynic_bulkhead_t *b) {
  while (b->head != NULL && cynic_bulkhead_promote(b) == 0) {
    waiter_t *w = b->head;
    b->head = w->next;
    if (b->head != NULL)
      b->head->prev = NULL;
    else
      b->tail = NULL;
    w->next = w->prev = NULL;
    w->granted = true;
    pthread_cond_signal(&w->cond);
  }
}

static void unlink_locked(cynic_bulkhead_t *b, waiter_t *w) {
  if (w->prev != NULL)
    w->prev->next = w->next;
  else
    b->head = w->next;
  if (w->next != NULL)
    w->next->prev = w->prev;
  else
    b->tail = w->prev;
  w->next = w->prev = NULL;
}

/* After a slot or a queue place was given back: if a thread may be blocked,
 * give it the slot. One atomic load when nobody blocks. */
static void after_release(cynic_bulkhead_t *b) {
  if (atomic_load_explicit(&b->blocked, memory_order_seq_cst) == 0)
    return;
  pthread_mutex_lock(&b->lock);
  wake_waiters_locked(b);
  pthread_mutex_unlock(&b->lock);
}

int cynic_bulkhead_try_enter(cynic_bulkhead_t *b) {
  uint64_t w = atomic_load_explicit(&b->state, memory_order_acquire);
  for (;;) {
    if (!slot_open(b, w)) {
      count(&b->rejected_full);
      return CYNIC_EFULL;
    }
    if (publish(b, &w, WORD(IN_USE(w) + 1, PENDING(w))))
      break;
  }
  count(&b->entered);
  return 0;
}

void cynic_bulkhead_leave(cynic_bulkhead_t *b) {
  uint64_t w = atomic_load_explicit(&b->state, memory_order_acquire);
  for (;;) {
    if (IN_USE(w) == 0) {
      count(&b->misuse);
      return;
    }
    if (publish(b, &w, WORD(IN_USE(w) - 1, PENDING(w))))
      break;
  }
  count(&b->left);
  after_release(b);
}

int cynic_bulkhead_queue(cynic_bulkhead_t *b) {
  uint64_t w = atomic_load_explicit(&b->state, memory_order_acquire);
  for (;;) {
    if (PENDING(w) >= b->max_pending) {
      count(&b->queue_rejected);
      return CYNIC_EFULL;
    }
    if (publish(b, &w, WORD(IN_USE(w), PENDING(w) + 1)))
      break;
  }
  count(&b->queued);
  return 0;
}

void cynic_bulkhead_dequeue(cynic_bulkhead_t *b) {
  uint64_t w = atomic_load_explicit(&b->state, memory_order_acquire);
  for (;;) {
    if (PENDING(w) == 0) {
      count(&b->misuse);
      return;
    }
    if (publish(b, &w, WORD(IN_USE(w), PENDING(w) - 1)))
      break;
  }
  count(&b->dequeued);
  after_release(b);
}

int cynic_bulkhead_promote(cynic_bulkhead_t *b) {
  uint64_t w = atomic_load_explicit(&b->state, memory_order_acquire);
  for (;;) {
    if (PENDING(w) == 0) {
      count(&b->misuse);
      return CYNIC_ESTATE;
    }
    if (IN_USE(w) >= b->max_concurrent)
      return CYNIC_EFULL;
    if (publish(b, &w, WORD(IN_USE(w) + 1, PENDING(w) - 1)))
      break;
  }
  count(&b->promoted);
  return 0;
}

int cynic_bulkhead_enter_or_queue(cynic_bulkhead_t *b, bool *queued) {
  if (queued == NULL)
    return CYNIC_EINVAL;
  uint64_t w = atomic_load_explicit(&b->state, memory_order_acquire);
  for (;;) {
    if (slot_open(b, w)) {
      if (publish(b, &w, WORD(IN_USE(w) + 1, PENDING(w)))) {
        count(&b->entered);
        *queued = false;
        return 0;
      }
      continue;
    }
    if (PENDING(w) >= b->max_pending) {
      count(&b->queue_rejected);
      return CYNIC_EFULL;
    }
    if (publish(b, &w, WORD(IN_USE(w), PENDING(w) + 1))) {
      count(&b->queued);
      *queued = true;
      return 0;
    }
  }
}

int cynic_bulkhead_enter_wait(cynic_bulkhead_t *b, uint64_t timeout_ns) {
  if (b == NULL)
    return CYNIC_EINVAL;
  if (timeout_ns == 0)
    return cynic_bulkhead_try_enter(b);
  /* Fast path: a slot free and nobody waiting (or barging allowed): take it
   * with one CAS, no mutex, no condition variable. A refusal here is not
   * counted: the caller goes on to queue. */
  uint64_t w = atomic_load_explicit(&b->state, memory_order_acquire);
  while (slot_open(b, w)) {
    if (publish(b, &w, WORD(IN_USE(w) + 1, PENDING(w)))) {
      count(&b->entered);
      return 0;
    }
  }
  /* The absolute end of the wait on CLOCK_MONOTONIC, saturated. */
  struct timespec end;
  bool forever = timeout_ns == UINT64_MAX;
  if (!forever) {
    uint64_t at = cynic__sat_add(cynic_clock_monotonic(NULL), timeout_ns);
    end.tv_sec = (time_t)(at / UINT64_C(1000000000));
    end.tv_nsec = (long)(at % UINT64_C(1000000000));
  }
  waiter_t self = {NULL, NULL, PTHREAD_COND_INITIALIZER, false};
  pthread_condattr_t attr;
  if (pthread_condattr_init(&attr) != 0)
    return CYNIC_ENOMEM;
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  int rc = pthread_cond_init(&self.cond, &attr);
  pthread_condattr_destroy(&attr);
  if (rc != 0)
    return CYNIC_ENOMEM;

  atomic_fetch_add_explicit(&b->blocked, 1, memory_order_seq_cst);
  pthread_mutex_lock(&b->lock);
  bool queued = false;
  rc = cynic_bulkhead_enter_or_queue(b, &queued);
  if (rc == 0 && queued) {
    self.prev = b->tail;
    if (b->tail != NULL)
      b->tail->next = &self;
    else
      b->head = &self;
    b->tail = &self;
    /* A slot may be free already (fair mode queues behind other waiters). */
    wake_waiters_locked(b);
    while (!self.granted) {
      int e = forever ? pthread_cond_wait(&self.cond, &b->lock)
                      : pthread_cond_timedwait(&self.cond, &b->lock, &end);
      if (e == ETIMEDOUT && !self.granted) {
        unlink_locked(b, &self);
        rc = CYNIC_EDEADLINE;
        break;
      }
    }
  }
  pthread_mutex_unlock(&b->lock);
  atomic_fetch_sub_explicit(&b->blocked, 1, memory_order_seq_cst);
  pthread_cond_destroy(&self.cond);
  if (rc == CYNIC_EDEADLINE) {
    count(&b->timed_out);
    /* Gives the queue place back; may wake the next waiter in fair mode. */
    cynic_bulkhead_dequeue(b);
  }
  return rc;
}

int cynic_bulkhead_snapshot(const cynic_bulkhead_t *b, cynic_bulkhead_snapshot_t *out) {
  if (b == NULL || out == NULL)
    return CYNIC_EINVAL;
  cynic_bulkhead_stats(b, out);
  return 0;
}

void cynic_bulkhead_stats(const cynic_bulkhead_t *b,
                          cynic_bulkhead_stats_t *out) {
  /* The counters are only read; the cast drops const for C11's
   * atomic_load, whose parameter is not const-qualified in older libcs. */
  cynic_bulkhead_t *m = (cynic_bulkhead_t *)b;
  uint64_t w = atomic_load_explicit(&m->state, memory_order_acquire);
  out->in_use = IN_USE(w);
  out->max_concurrent = b->max_concurrent;
  out->pending = PENDING(w);
  out->max_pending = b->max_pending;
  out->entered = atomic_load_explicit(&m->entered, memory_order_relaxed);
  out->rejected_full =
      atomic_load_explicit(&m->rejected_full, memory_order_relaxed);
  out->left = atomic_load_explicit(&m->left, memory_order_relaxed);
  out->queued = atomic_load_explicit(&m->queued, memory_order_relaxed);
  out->queue_rejected =
      atomic_load_explicit(&m->queue_rejected, memory_order_relaxed);
  out->dequeued = atomic_load_explicit(&m->dequeued, memory_order_relaxed);
  out->promoted = atomic_load_explicit(&m->promoted, memory_order_relaxed);
  out->misuse = atomic_load_explicit(&m->misuse, memory_order_relaxed);
  out->timed_out = atomic_load_explicit(&m->timed_out, memory_order_relaxed);
  out->rejected = out->rejected_full + out->queue_rejected + out->timed_out;
}
