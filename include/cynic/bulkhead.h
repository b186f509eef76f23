/*
 * cynic/bulkhead.h: Bulkheads and Back Pressure (Nygard, *Release It!*).
 *
 * A bulkhead caps how much of a service one dependency may occupy: at most
 * `max_concurrent` calls are in flight at once, and at most `max_pending` more
 * may wait for a slot. When both are full the caller is told at once
 * (CYNIC_EFULL) and must fail fast; nothing ever blocks inside the bulkhead.
 *
 * The bulkhead only keeps the accounting. Waiting is the caller's business: an
 * event loop keeps its own list of waiters with its own queue timers, and uses
 * the bulkhead to reserve and release their places:
 *
 *     arrival:   cynic_bulkhead_try_enter()  -> 0: run it now
 *                on CYNIC_EFULL: cynic_bulkhead_queue() -> 0: park the waiter
 *                                                       -> CYNIC_EFULL: reject
 *                (or both in one step: cynic_bulkhead_enter_or_queue())
 *     done:      cynic_bulkhead_leave(), then, while it has waiters,
 *                cynic_bulkhead_promote() -> 0: run its oldest waiter
 *     timed out: cynic_bulkhead_dequeue() for the waiter that gave up
 *
 * Fairness: by default a new arrival does not jump the queue. try_enter fails
 * with CYNIC_EFULL while any waiter is pending, even if a slot happens to be
 * free at that instant; the free slot belongs to the oldest waiter, which gets
 * it through promote(). Set `allow_barging` to let arrivals take free slots
 * ahead of waiters (higher throughput, unbounded waits for the queued). With
 * fairness on, whoever holds waiters must call promote() whenever a slot may
 * have freed (after each leave(), and when it queues a waiter, see
 * enter_or_queue), or its waiters sit until their queue timeout.
 *
 * Waiters are anonymous counts: promote() hands a slot to *a* waiter of the
 * caller's choosing. With several event loops sharing one bulkhead, each loop
 * orders its own waiters; the bulkhead guarantees the limits and no barging,
 * not a global FIFO across loops.
 *
 Both forms may share one bulkhead:
 * blocked threads and a loop's parked waiters are all `pending`; FIFO holds
 * among the blocked threads, and no-barging holds against new arrivals.
 *
 * Thread safety: every function may be called from any thread at any time
 * (except _free). The counts live in one 64-bit word (in_use:32 | pending:32)
 * changed only by compare-and-swap, so both move together atomically and
 * neither ever exceeds its limit, whatever the interleaving. The event-loop
 * operations are lock-free and never allocate; leave() and dequeue() add one
 * atomic load, and take the bulkhead's internal mutex only while some thread
 * is blocked in enter_wait(). Statistics are separate relaxed counters:
 * each is exact, but a snapshot is not one instant across all of them (only
 * in_use and pending are read together).
 *
 * Misuse: leave() with nothing in use, dequeue() or promote() with nothing
 * pending are caller bugs. They never underflow and never assert: the counts
 * stay at 0 and the `misuse` counter goes up, so the bug shows in metrics.
 */
#ifndef CYNIC_BULKHEAD_H
#define CYNIC_BULKHEAD_H

#include "cynic/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cynic_bulkhead cynic_bulkhead_t;

typedef struct cynic_bulkhead_config {
  /* Calls allowed in flight at once. 1..UINT32_MAX; 0 is CYNIC_EINVAL.
   * Default 100: the cynic proxy's default `bulkhead.max_connections`, a
   * cap a single upstream rarely needs but one that stops a hung one from
   * taking every file descriptor. Size it from Little's law: peak calls/s
   * times the dependency's latency at its timeout. */
  uint32_t max_concurrent;
  /* Waiters allowed to hold a place in the queue. 0 = no queue: a full
   * bulkhead rejects at once. Default 50: half the slots, so a burst
   * waits but a queue never hides an outage for long. */
  uint32_t max_pending;
  /* false (default): try_enter fails while waiters are pending (no queue
   * jumping). true: an arrival may take a free slot ahead of waiters. */
  bool allow_barging;
} cynic_bulkhead_config_t;

/* A snapshot for metrics and the admin listener. */
typedef struct cynic_bulkhead_stats {
  uint32_t in_use;         /* calls holding a slot now */
  uint32_t max_concurrent; /* the limit on in_use */
  uint32_t pending;        /* waiters holding a queue place now */
  uint32_t max_pending;    /* the limit on pending */
  uint64_t entered;        /* try_enter / enter_or_queue that got a slot */
  uint64_t rejected_full;  /* try_enter refused (slots full, or waiters first);
                              part of `rejected` */
  uint64_t left;           /* leave() that released a slot */
  uint64_t queued;         /* queue / enter_or_queue that got a queue place */
  uint64_t queue_rejected; /* queue / enter_or_queue refused: queue full */
  uint64_t dequeued;       /* waiters that gave up or timed out (dequeue) */
  uint64_t promoted;       /* waiters moved into a slot by promote() */
  uint64_t misuse;         /* leave/dequeue/promote with nothing to release */
  uint64_t timed_out;      /* enter_wait() that gave up at its timeout */
  /*
   * Every answer that turned a caller away: rejected_full + queue_rejected +
   * timed_out. With enter_or_queue() and enter_wait() each caller counts at
   * most once; with the two-step try_enter() then queue(), a caller that
   * try_enter refused and queue() then accepted is counted here too.
   */
  uint64_t rejected;
} cynic_bulkhead_stats_t;

/* The name every component uses for its picture (see cynic_bulkhead_snapshot). */
typedef cynic_bulkhead_stats_t cynic_bulkhead_snapshot_t;
/*
 * When the bulkhead is quiet (no call between the reads), these hold:
 *   in_use  == entered + promoted - left
 *   pending == queued - promoted - dequeued
 */

/* Fills `cfg` with the defaults: 100 concurrent, 50 pending, fair. */
CYNIC_API void cynic_bulkhead_config_default(cynic_bulkhead_config_t *cfg);

/*
 * Creates a bulkhead from `cfg` (copied; the caller keeps it) into `*out`.
 * Returns 0, CYNIC_EINVAL (NULL argument, max_concurrent == 0) or
 * CYNIC_ENOMEM. On error `*out` is left untouched.
 */
CYNIC_API int cynic_bulkhead_new(const cynic_bulkhead_config_t *cfg,
                                 cynic_bulkhead_t **out);

/*
 * Frees a bulkhead. NULL is a no-op. No other thread may be using it, and
 * no call may use it afterwards. Slots still held are simply forgotten.
 */
CYNIC_API void cynic_bulkhead_free(cynic_bulkhead_t *b);

/*
 * Takes a concurrency slot: 0, or CYNIC_EFULL when all slots are in use or
 * (unless allow_barging) when waiters are pending. Every 0 must be matched
 * by exactly one cynic_bulkhead_leave().
 */
CYNIC_API int cynic_bulkhead_try_enter(cynic_bulkhead_t *b);

/* Releases a slot taken by try_enter, enter_or_queue or promote. */
CYNIC_API void cynic_bulkhead_leave(cynic_bulkhead_t *b);

/*
 * Reserves a place in the queue: 0, or CYNIC_EFULL when `max_pending`
 * waiters are already pending (the caller must fail fast). Does not look at
 * the slots; call it after try_enter failed. Every 0 must be matched by
 * exactly one dequeue() (gave up) or one successful promote() (got a slot).
 */
CYNIC_API int cynic_bulkhead_queue(cynic_bulkhead_t *b);

/* Gives back a queue place: the waiter timed out or was cancelled. */
CYNIC_API void cynic_bulkhead_dequeue(cynic_bulkhead_t *b);

/*
 * Moves one pending waiter into a slot, in one atomic step: 0 when a slot
 * was free (pending - 1, in_use + 1: the caller now runs one of its waiters
 * and owes a leave() for it); CYNIC_EFULL when every slot is in use (the
 * waiter stays queued); CYNIC_ESTATE, counted as misuse, when nothing is
 * pending.
 */
CYNIC_API int cynic_bulkhead_promote(cynic_bulkhead_t *b);

/*
 * try_enter, and if that fails, queue, in one atomic step, which closes the
 * race where the last slot frees between a failed try_enter and queue()
 * and nobody is left to promote the new waiter. Returns 0 with *queued =
 * false (a slot: run now), 0 with *queued = true (a queue place: wait for
 * promote), or CYNIC_EFULL (slots and queue full: fail fast). A waiter queued
 * while a slot is free (fair mode, others waiting) is normal: the caller
 * should call promote() right after, as after a leave().
 * CYNIC_EINVAL if `queued` is NULL.
 */
CYNIC_API int cynic_bulkhead_enter_or_queue(cynic_bulkhead_t *b, bool *queued);

/*
 * Takes a slot, waiting up to `timeout_ns` (on CLOCK_MONOTONIC: a blocked
 * thread waits in real time, whatever clock the caller injects elsewhere) for
 * one to free. Returns:
 *   0                 a slot: make the call, then cynic_bulkhead_leave();
 *   CYNIC_EFULL       at once, when the slots are full and `max_pending`
 *                     callers already wait (or, with timeout_ns == 0, when
 *                     try_enter() would refuse: 0 is try_enter());
 *   CYNIC_EDEADLINE   the timeout passed before a slot came;
 *   CYNIC_EINVAL      b is NULL; CYNIC_ENOMEM if the wait could not be set
 *                     up (pthread_cond_init failed).
 * When a slot is free and nobody waits, this is one CAS, like try_enter();
 * only a caller that has to wait sets up a condition variable and takes the
 * bulkhead's mutex. UINT64_MAX waits without a limit. Waiters are served in
 * arrival order and
 * none is lost: leave() and dequeue(), from any thread, promote the oldest
 * one. No caller lock is needed; the waiter lives on the calling thread's
 * stack and nothing is allocated. Not for an event loop's thread (it blocks).
 */
CYNIC_API int cynic_bulkhead_enter_wait(cynic_bulkhead_t *b, uint64_t timeout_ns);

/*
 * Fills `*out` with the current counts and totals. Returns 0, or
 * CYNIC_EINVAL when an argument is NULL. The same scheme as every component:
 * int cynic_X_snapshot(const cynic_X_t *, cynic_X_snapshot_t *).
 */
CYNIC_API int cynic_bulkhead_snapshot(const cynic_bulkhead_t *b, cynic_bulkhead_snapshot_t *out);

/* The older name of cynic_bulkhead_snapshot(), kept for existing callers. */
CYNIC_API void cynic_bulkhead_stats(const cynic_bulkhead_t *b,
                                    cynic_bulkhead_stats_t *out);

#ifdef __cplusplus
}
#endif
#endif /* CYNIC_BULKHEAD_H */
