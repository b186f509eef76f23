/*
 * cynic/breaker.h: the Circuit Breaker of "Release It!".
 *
 * A breaker sits in front of an integration point. While the dependency is healthy
 * it is CLOSED and every call goes through. When faults pile up it trips to OPEN
 * and calls fail fast, without touching the dependency, for an open interval. Then
 * it goes HALF_OPEN and lets a few probe calls through: if they succeed the breaker
 * closes, if one fails it opens again (for longer, when the interval grows). An
 * operator can force it open (trip) or closed, and reset it to automatic control.
 *
 *                 faults / failure rate / slow rate
 *      CLOSED ---------------------------------------> OPEN
 *        ^                                             |  ^
 *        | half_open_probes successes     open interval|  | a probe failed
 *        |                                  elapsed    v  |
 *        +-------------------------------------------- HALF_OPEN
 *
 *   trip() -> FORCED_OPEN   force_closed() -> FORCED_CLOSED   reset() -> CLOSED
 *   (from any state; forced states ignore every fault until reset())
 *
 * Use:
 *
 *     cynic_breaker_permit_t p;
 *     uint64_t retry_after;
 *     if (cynic_breaker_acquire(b, &p, &retry_after) != 0)
 *       return fail_fast(retry_after);             // CYNIC_EOPEN: do not call
 *     int rc = call_the_dependency();
 *     cynic_breaker_record(b, &p, rc == 0 ? CYNIC_OUTCOME_SUCCESS
 *                                         : CYNIC_OUTCOME_FAILURE, elapsed_ns);
 *
 * Every permit from a successful acquire must be handed back exactly once, with
 * cynic_breaker_record() or, when the call was abandoned, cynic_breaker_release().
 *
 * Fault counting (either or both; with neither the breaker only trips by hand):
 *  - Leaky bucket (Nygard): each fault adds one to a bucket of integer level; one
 *    unit leaks out every `leak_ns`, the leak clock starting when a fault falls
 *    into an empty bucket (so leaks happen at anchor + k * leak_ns). A leak that
 *    falls due at the same instant as a fault happens first. The breaker trips
 *    when the level reaches `faults`.
 *  - Failure-rate window (resilience4j's model): the last `size` calls (COUNT) or
 *    the calls of the last `size` whole seconds of the clock (TIME, one bucket per
 *    second). Once it holds at least `min_calls` calls, the breaker trips when the
 *    failure rate or the slow-call rate is at or above its threshold.
 *  - Both (the default): with bucket_low_traffic_only, the window judges
 *    busy traffic (once it holds min_calls calls) and the bucket only quiet
 *    traffic (while it holds fewer; a fault then fills the bucket, not
 *    otherwise). Without it, both judge every call and either trips.
 *
 * Sizing the bucket: it counts faults, not a rate, so it trips whenever faults
 * arrive faster than one per leak_ns for long enough, however many successes
 * surround them. The leak must outpace the expected fault rate at peak: one
 * fault leaks per leak_ns, so 1 s / leak_ns must be well above peak calls/s *
 * normal error ratio (faults come in random bursts; `faults` is the burst it
 * absorbs, not a rate). E.g. 100 calls/s at 1 % errors is 1 random fault/s;
 * with faults = 5 a leak of 1 s trips that healthy traffic in about 14 s
 * (median, bench/bench_bucket.c), 500 ms in 2.4 min, 200 ms in 2.5 h,
 * 100 ms in 42 h: the margin must be tenfold or more, and re-sized
 * whenever the peak grows. Where the bucket judges all
 * traffic (no window, or bucket_low_traffic_only false) a busy dependency
 * is better judged by a rate; see cynic_breaker_config_default().
 *
 * Every transition into any state starts that state with an empty bucket and an
 * empty window; outcomes of calls admitted in an earlier state ("stale" permits,
 * e.g. a call admitted before a trip that finishes after it) count in the totals
 * but never in the bucket, the window or the half-open probe count.
 *
 * Half-open by N probes (opt-in, half_open_calls): instead of "any probe
 * failure reopens", the period is judged on N probe outcomes, as resilience4j does.
 *
 * Thread safety: every function may be called from any thread on a shared breaker.
 * A permit is a plain value: it may be recorded or released by another thread than
 * the one that acquired it (still exactly once).
 * The state lives in one atomic word (state, probes in flight, generation):
 *  - acquire in CLOSED / FORCED_CLOSED is one atomic load: no clock read, no lock;
 *  - acquire in OPEN / FORCED_OPEN reads the clock but takes no lock, except the
 *    one call that moves the breaker to HALF_OPEN;
 *  - acquire in HALF_OPEN admits probes by compare-and-swap on that word, so
 *    never more than `half_open_probes` probes are in flight, exactly;
 *  - record of a success (or of a slow success that does not feed the bucket)
 *    in a non-probe call with no window configured is one relaxed atomic
 *    increment: no clock read, no lock;
 *  - record of a success (not slow) in a non-probe call with a TIME window (the
 *    default) is a clock read and one compare-and-swap, no lock, while the
 *    window's newest second is "armed": the breaker arms it under the mutex
 *    when no number of further successes in that second could trip it (they
 *    only lower the rates; it stays disarmed while a success could bring the
 *    window to min_calls at a rate at or above a threshold). The first success
 *    of a new second, one that could trip, and one in every 524,287 of a
 *    second take the mutex (the window rotates there), so every success
 *    counts in exactly one second and the verdicts are the mutex's;
 *  - failures, slow calls, COUNT window updates, probe outcomes, manual changes
 *    and snapshots take the breaker's mutex: a bucket update is two words and a
 *    window update several, and a transition must publish state, interval and
 *    counters together.
 * Transitions are totally ordered (they happen under the mutex).
 *
 * Clocks: with an injected clock everything reads it, the TIME window included
 * (one reading per record, as ever). On the default clock (clock.now NULL) the
 * open interval, the bucket's leaks, slow calls and every time the breaker
 * reports (at_ns, since_ns, now_ns) read CLOCK_MONOTONIC, but the TIME window
 * buckets calls by the seconds of CLOCK_MONOTONIC_COARSE (Linux; a vDSO read
 * without a syscall, the time of the last timer tick, 1-4 ms behind): a call
 * made within a tick after a second boundary may count in the second before
 * it, so it leaves the window up to a tick early. Where CLOCK_MONOTONIC itself
 * is a syscall (VMs on kvm-clock: ~70 ns against ~10 ns) this is what keeps a
 * success cheap; inject a clock to have the window on any other.
 */
#ifndef CYNIC_BREAKER_H
#define CYNIC_BREAKER_H

#include "cynic/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cynic_breaker_state {
  CYNIC_BREAKER_CLOSED = 0,        /* calls go through; faults are counted */
  CYNIC_BREAKER_OPEN = 1,          /* calls fail fast until the open interval ends */
  CYNIC_BREAKER_HALF_OPEN = 2,     /* up to half_open_probes probe calls at once */
  CYNIC_BREAKER_FORCED_OPEN = 3,   /* tripped by hand: every call fails fast */
  CYNIC_BREAKER_FORCED_CLOSED = 4, /* forced closed by hand: every call goes through */
} cynic_breaker_state_t;

/* "closed", "open", "half_open", "forced_open", "forced_closed"; "unknown" for
 * anything else. Never NULL; the string is static. */
CYNIC_API const char *cynic_breaker_state_name(cynic_breaker_state_t state);

/* Why a transition happened. */
typedef enum cynic_breaker_reason {
  CYNIC_BREAKER_REASON_NONE = 0,            /* "none": no transition yet (snapshot only) */
  CYNIC_BREAKER_REASON_FAULTS,              /* "fault_threshold": bucket reached `faults` */
  CYNIC_BREAKER_REASON_FAILURE_RATE,        /* "failure_rate": window failure rate >= threshold */
  CYNIC_BREAKER_REASON_SLOW_RATE,           /* "slow_call_rate": window slow rate >= threshold */
  CYNIC_BREAKER_REASON_OPEN_ELAPSED,        /* "open_elapsed": open interval over, probing */
  CYNIC_BREAKER_REASON_PROBES_SUCCEEDED,    /* "probes_succeeded": half-open -> closed */
  CYNIC_BREAKER_REASON_PROBE_FAILED,        /* "probe_failed": half-open -> open */
  CYNIC_BREAKER_REASON_MANUAL_TRIP,         /* "manual_trip": cynic_breaker_trip() */
  CYNIC_BREAKER_REASON_MANUAL_FORCE_CLOSED, /* "manual_force_closed" */
  CYNIC_BREAKER_REASON_MANUAL_RESET,        /* "manual_reset": cynic_breaker_reset() */
  CYNIC_BREAKER_REASON_HEALTH_CHECK,        /* "health_check": cynic_breaker_hold_open() or
                                               cynic_breaker_end_hold() */
} cynic_breaker_reason_t;

/* The reason's short snake_case name (shown above), fit for logs and metric
 * labels; "unknown" for anything else. Never NULL; the string is static. */
CYNIC_API const char *cynic_breaker_reason_name(cynic_breaker_reason_t reason);

/* A call's outcome, as the caller classifies it. */
typedef enum cynic_breaker_outcome {
  CYNIC_OUTCOME_SUCCESS = 0, /* worked; becomes SLOW when duration_ns >= slow_call_ns */
  CYNIC_OUTCOME_FAILURE = 1, /* a fault: error, timeout, bad answer */
  CYNIC_OUTCOME_SLOW = 2,    /* worked, but too slowly (caller-classified) */
} cynic_breaker_outcome_t;

typedef enum cynic_breaker_window_kind {
  CYNIC_BREAKER_WINDOW_NONE = 0,  /* no failure-rate window */
  CYNIC_BREAKER_WINDOW_COUNT = 1, /* the last `size` calls */
  CYNIC_BREAKER_WINDOW_TIME = 2,  /* the calls of the last `size` seconds (default) */
} cynic_breaker_window_kind_t;

#define CYNIC_BREAKER_MAX_FAULTS 1000000u
#define CYNIC_BREAKER_MAX_WINDOW_CALLS 10000u
#define CYNIC_BREAKER_MAX_WINDOW_SECONDS 3600u
#define CYNIC_BREAKER_MAX_PROBES 1024u
#define CYNIC_BREAKER_MAX_MULTIPLIER 1000.0

/*
 * Called on every transition, synchronously, in the thread that caused it, in
 * transition order, WITH THE BREAKER'S MUTEX HELD: keep it short (log a line, bump
 * a metric) and never call any cynic_breaker_* function on the same breaker from
 * it (that deadlocks or sees a half-made transition). It may call other cynic
 * objects that never block and never call user code (a budget, a token bucket or
 * table, cynic_bulkhead_leave()); not cynic_bulkhead_enter_wait() or
 * cynic_guard_call() (they block with this mutex held), nor another breaker whose
 * own callback may call this one (lock-order deadlock). `at_ns` is the clock time at
 * which the breaker made the transition (for OPEN -> HALF_OPEN: when the first
 * acquire after the interval noticed it, not when the interval ended).
 */
typedef void (*cynic_breaker_transition_fn)(void *arg, cynic_breaker_state_t from,
                                            cynic_breaker_state_t to, cynic_breaker_reason_t reason,
                                            uint64_t at_ns);

typedef struct cynic_breaker_window_config {
  cynic_breaker_window_kind_t kind; /* NONE, COUNT or TIME (default) */
  uint32_t size;                    /* COUNT: calls, 1..10000; TIME: seconds, 1..3600: at time t
                                       the window holds the calls made in clock seconds
                                       (t/1s - size, t/1s]. Default 5 (TIME) */
  uint32_t min_calls;               /* rates are judged only from this many calls on; >= 1
                                       (and <= size for COUNT). Default 10 */
  double failure_rate;              /* percent in (0, 100] that trips; 0 = not judged. Default 50 */
  double slow_rate;                 /* percent in (0, 100] that trips; 0 = not judged. Default 0 */
} cynic_breaker_window_config_t;

typedef struct cynic_breaker_config {
  cynic_clock_t clock; /* zeroed = CLOCK_MONOTONIC */

  /* Leaky bucket. */
  uint32_t faults;    /* trip when the level reaches this; 0 = no bucket. Default 5,
                         at most CYNIC_BREAKER_MAX_FAULTS */
  uint64_t leak_ns;   /* one fault leaks out per interval; > 0 when faults > 0.
                         Default 10 s */
  bool slow_is_fault; /* slow successes also add to the bucket. Default false */

  /* Failure-rate window; slow calls always count toward its slow-call rate. */
  cynic_breaker_window_config_t window;
  uint64_t slow_call_ns; /* a SUCCESS lasting >= this is SLOW; 0 = only SLOW is slow.
                            Default 0 */

  /* Open interval: open_ns after the first trip, then multiplied by
   * open_multiplier for each consecutive trip (a failed probe), capped at
   * open_max_ns. Consecutive trips reset when probes close the breaker or on
   * reset(). */
  uint64_t open_ns;       /* > 0. Default 30 s */
  uint64_t open_max_ns;   /* cap; must be >= open_ns when open_multiplier > 1,
                             ignored otherwise. Default 300 s */
  double open_multiplier; /* 1 = constant (default); at most 1000 */

  uint32_t half_open_probes; /* probes at once, and successes needed to close;
                                1..CYNIC_BREAKER_MAX_PROBES. Default 1 */

  cynic_breaker_transition_fn on_transition; /* may be NULL */
  void *on_transition_arg;

  /*
   * Judging half-open by N probes (resilience4j's
   * permittedNumberOfCallsInHalfOpenState), opt-in. 0 (the default): the
   * rule above: half_open_probes successes close, any probe failure reopens.
   * N in 1..CYNIC_BREAKER_MAX_PROBES: the half-open period is judged on N
   * probe outcomes (at most half_open_probes in flight at once, admitted as
   * others finish): it closes as soon as `half_open_successes` of them
   * succeeded, and reopens as soon as that can no longer happen (more than
   * N - half_open_successes failed). One unlucky probe, from a dependency
   * that hangs now and then, then no longer doubles the open time.
   */
  uint32_t half_open_calls;
  /* With half_open_calls = N: successes needed, 1..N; 0 means N (every probe
   * must succeed). Ignored when half_open_calls is 0. */
  uint32_t half_open_successes;

  /*
   * How bucket and window share the verdict when both are on. true (the
   * default): the bucket is the guard for low traffic only: a fault fills it,
   * and can trip it, only while the window holds fewer than min_calls calls;
   * from min_calls on the window alone judges (busy traffic is judged by its
   * failure rate, however many faults a second that is). Use it with a TIME
   * window: a COUNT window never empties with time, so after min_calls calls
   * the bucket would never judge again. false (zeroed configs, and the cynic
   * proxy): both judge every call and either trips. Ignored without a window.
   */
  bool bucket_low_traffic_only;
} cynic_breaker_config_t;

/*
 * Fills `cfg` with the defaults above, safe at any traffic: a TIME window of
 * the last 5 s tripping at a 50 % failure rate from 10 calls on (traffic of
 * 2 calls/s and up is judged by its rate), a bucket of 5 faults leaking one
 * per 10 s judging only quieter traffic (bucket_low_traffic_only), open 30 s,
 * one probe, no growth, default clock, no callback, today's half-open rule.
 * Does nothing if cfg is NULL.
 *
 * Why: a healthy busy dependency still fails now and then, and a bucket that
 * judged it would trip on its fault count alone (1,000 calls/s at 0.1 %
 * errors is one fault a second, and a 10 s leak trips that in about 6 s); a
 * failure rate does not care how busy it is, 1,000 calls/s at 0.1 % errors
 * or 100 calls/s at 1 % never come near 50 %. A window needs calls to judge,
 * so quiet traffic (a call a second) is judged by the bucket: five faults in
 * a row trip it, one leak per 10 s forgives a stray error. On a simulated
 * day of random calls at 0.2 to 100 calls/s (bench/bench_bucket.c) it never
 * opened at 2.5 % errors or less; at 5 % the bucket opened it 12 to 22
 * times a day at 1 to 2 calls/s, where 5 faults in 50 s are no longer
 * rare. 30 s open lets a restarting dependency come back; one probe
 * asks it as little as possible. A dead busy dependency trips within the
 * window: 2 to 2.5 s at 100 % errors, about 5 s at 50 %.
 *
 * Cost: a success is a coarse clock read and one compare-and-swap (the TIME
 * window's armed second, see "Thread safety" above); without a window it is
 * one atomic increment; failures take the mutex (docs/benchmarks.md has the
 * figures). To go back to the book's bucket alone, set window.kind
 * to CYNIC_BREAKER_WINDOW_NONE and size the leak by the rule above.
 * (Before 2026-12 the default had no window; callers that relied on that
 * must now set window.kind = CYNIC_BREAKER_WINDOW_NONE themselves.)
 */
CYNIC_API void cynic_breaker_config_default(cynic_breaker_config_t *cfg);

/*
 * The same as cynic_breaker_config_default(), kept for programs written when
 * the default had no window and this one added it. Does nothing if cfg is NULL.
 */
CYNIC_API void cynic_breaker_config_rate(cynic_breaker_config_t *cfg);

typedef struct cynic_breaker cynic_breaker_t;

/*
 * A call's admission ticket, filled by cynic_breaker_acquire() in the caller's
 * memory (no allocation). It remembers the state and generation the call was
 * admitted in, so a late outcome from before a transition cannot move a later
 * state, and a probe's slot is freed only in its own half-open period. The fields
 * are private; `state` may be read (the state the call was admitted in).
 */
typedef struct cynic_breaker_permit {
  uint64_t generation;         /* private */
  cynic_breaker_state_t state; /* state at admission */
  uint32_t flags;              /* private */
} cynic_breaker_permit_t;

/*
 * Validates `cfg` and creates a breaker in CLOSED with empty counters; the window's
 * storage is allocated here and nowhere else. The config is copied; `cfg` may be
 * freed afterwards. Does not read the clock.
 * Returns 0 and sets *out, CYNIC_EINVAL for a NULL argument or a bad config (see
 * the field comments for every bound), CYNIC_ENOMEM.
 */
CYNIC_API int cynic_breaker_new(const cynic_breaker_config_t *cfg, cynic_breaker_t **out);

/* Frees the breaker. No other thread may be using it; outstanding permits become
 * meaningless. NULL is a no-op. */
CYNIC_API void cynic_breaker_free(cynic_breaker_t *b);

/*
 * May a call proceed?
 * Returns 0 with *permit filled: make the call, then record() or release() it.
 * Returns CYNIC_EOPEN: do not make the call; *retry_after_ns (if not NULL) is
 *   - OPEN: the time until the open interval ends (> 0);
 *   - HALF_OPEN with every probe slot busy: 0, meaning "unknown, as soon as an
 *     in-flight probe finishes" (turn it into at least 1 s for a Retry-After);
 *   - FORCED_OPEN: UINT64_MAX (until an operator acts).
 * Returns CYNIC_EINVAL when b or permit is NULL.
 * In OPEN, the first acquire at or after the end of the interval moves the
 * breaker to HALF_OPEN (firing the callback) and is admitted as its first probe.
 * *retry_after_ns is left untouched on success.
 */
CYNIC_API int cynic_breaker_acquire(cynic_breaker_t *b, cynic_breaker_permit_t *permit,
                                    uint64_t *retry_after_ns);

/*
 * Reports how an admitted call went, and gives the permit back. `duration_ns`
 * turns a SUCCESS into SLOW when slow_call_ns is set; it is otherwise unused.
 * In CLOSED a fault may trip the breaker; in HALF_OPEN a probe's success counts
 * toward closing and its failure reopens the breaker (a SLOW probe counts as a
 * failure when slow calls count against the breaker at all: slow_is_fault or a
 * window slow_rate; otherwise as a success). In forced states outcomes feed the
 * bucket and window (for the snapshot) but never cause a transition.
 * Each permit must be recorded or released exactly once; passing it again is a
 * caller bug (memory-safe, but it may free another probe's slot).
 * Returns 0, or CYNIC_EINVAL for a NULL argument or an unknown outcome.
 */
CYNIC_API int cynic_breaker_record(cynic_breaker_t *b, const cynic_breaker_permit_t *permit,
                                   cynic_breaker_outcome_t outcome, uint64_t duration_ns);

/*
 * Gives a permit back without an outcome (the call was abandoned or cancelled,
 * e.g. the client went away): frees its half-open probe slot, counts nothing but
 * the `abandoned` total. Never takes the mutex. Same once-only rule as record().
 * Returns 0, or CYNIC_EINVAL for a NULL argument.
 */
CYNIC_API int cynic_breaker_release(cynic_breaker_t *b, const cynic_breaker_permit_t *permit);

/*
 * Manual control (an admin API's trip / force-closed / reset). Each call is a
 * transition, even into the state the breaker is already in: it fires the
 * callback with its reason, counts in `transitions`, empties bucket and window and
 * makes every outstanding permit stale.
 *  - trip(): FORCED_OPEN, rejecting every call, whatever happens, until reset() or
 *    force_closed().
 *  - force_closed(): FORCED_CLOSED, admitting every call, whatever fails.
 *  - reset(): back to automatic CLOSED, consecutive trips and the open interval
 *    back to their start.
 * Return 0, or CYNIC_EINVAL when b is NULL.
 */
CYNIC_API int cynic_breaker_trip(cynic_breaker_t *b);
CYNIC_API int cynic_breaker_force_closed(cynic_breaker_t *b);
CYNIC_API int cynic_breaker_reset(cynic_breaker_t *b);

/*
 * An external judge (an active health check: "synthetic transactions") says
 * the dependency is down or back, without a call of its own going through the
 * breaker.
 *  - hold_open(): OPEN with reason HEALTH_CHECK, "held": the open interval
 *    never ends by itself (no half-open probe is let through; acquire answers
 *    CYNIC_EOPEN with *retry_after_ns UINT64_MAX, the snapshot's next_probe_ns
 *    is UINT64_MAX and `held` is true) until end_hold(), an operator's
 *    trip/force_closed/reset, or a carry. Consecutive trips and the open
 *    interval are left as they are (this is not a fault trip). Already held:
 *    nothing happens, 0.
 *  - end_hold(): a held breaker goes straight to CLOSED with reason
 *    HEALTH_CHECK (no user call risked as the probe), consecutive trips and
 *    the open interval back to their start. CYNIC_ESTATE when the breaker is
 *    not held (nothing happens: a breaker opened by faults keeps its own
 *    half-open probing).
 * An operator wins: in FORCED_OPEN or FORCED_CLOSED both return CYNIC_ESTATE
 * and change nothing. Each real change is a transition (callback, counted).
 * Return 0, CYNIC_ESTATE as above, or CYNIC_EINVAL when b is NULL.
 */
CYNIC_API int cynic_breaker_hold_open(cynic_breaker_t *b);
CYNIC_API int cynic_breaker_end_hold(cynic_breaker_t *b);

/*
 * Starts `to` where `from` stands: for a breaker rebuilt with another config
 * (a reload that changed the thresholds or the endpoint list), so that what
 * was known about the dependency is not forgotten.
 *  - FORCED_OPEN and FORCED_CLOSED carry over as they are (an operator's
 *    decision outlives a config change);
 *  - OPEN carries over with the same end of its interval (`to` probes when
 *    `from` would have) and the same open interval (within `to`'s open_ns ..
 *    open_max_ns) and consecutive trips, so a later trip backs off from where
 *    `from` was;
 *  - HALF_OPEN becomes OPEN with the interval over: the next acquire of `to`
 *    is a probe (the probes in flight belong to `from`);
 *  - CLOSED leaves `to` as it is (a bucket or window of another config is not
 *    comparable);
 *  - a held OPEN (cynic_breaker_hold_open) stays held.
 * The time of the last transition (since) and its reason carry over too. This
 * is not a transition of `to`: the callback does not fire and `transitions`
 * does not count it (the caller mirrors the state itself if it keeps a copy);
 * totals (successes, failures, ...) are not carried. Permits of `to`
 * outstanding from before become stale. Both breakers must read the same
 * clock (times are copied as they are). `from` is only read (under its
 * mutex, released before `to`'s is taken, so two carries in opposite
 * directions cannot deadlock).
 * Returns 0, or CYNIC_EINVAL when an argument is NULL or both are the same.
 */
CYNIC_API int cynic_breaker_carry(cynic_breaker_t *to, const cynic_breaker_t *from);

/* A consistent picture of the breaker for metrics and the admin API. */
typedef struct cynic_breaker_snapshot {
  cynic_breaker_state_t state;        /* as last set; an OPEN breaker whose interval
                                         is over still reads OPEN (next_probe_ns 0)
                                         until an acquire moves it */
  cynic_breaker_reason_t last_reason; /* of the last transition; NONE before any */
  uint64_t now_ns;                    /* clock time the snapshot was taken at */
  uint64_t since_ns;                  /* time of the last transition; 0 before any */
  /* Totals since creation (never cleared, not even by reset()). */
  uint64_t successes;   /* recorded successes (not slow) */
  uint64_t failures;    /* recorded failures */
  uint64_t slow;        /* recorded slow successes */
  uint64_t abandoned;   /* permits released without an outcome */
  uint64_t rejected;    /* acquires answered CYNIC_EOPEN */
  uint64_t transitions; /* transitions, manual ones included */
  /* The current state's counting. */
  double bucket_level;        /* leaked to now_ns; whole numbers (the bucket is discrete);
                                 0 without a bucket */
  uint32_t window_calls;      /* calls in the window at now_ns; 0 without a window */
  double failure_rate;        /* percent, -1 with fewer than min_calls or no window */
  double slow_rate;           /* percent, -1 likewise */
  uint32_t probes_in_flight;  /* HALF_OPEN: admitted probes not yet given back */
  uint32_t probe_successes;   /* HALF_OPEN: successes so far */
  uint32_t consecutive_trips; /* trips since the breaker last closed by probes or reset */
  uint64_t open_interval_ns;  /* OPEN: this period's interval; HALF_OPEN: the one just
                                 ended; CLOSED: open_ns (the next trip's); forced
                                 states leave it as it was */
  uint64_t next_probe_ns;     /* time until a probe may be admitted: OPEN: rest of the
                                 interval; FORCED_OPEN: UINT64_MAX; otherwise 0 */
  uint32_t probe_failures;    /* HALF_OPEN with half_open_calls: failures so far */
  bool held;                  /* OPEN held by cynic_breaker_hold_open() (next_probe_ns is
                                 UINT64_MAX) */
} cynic_breaker_snapshot_t;

/*
 * Fills *out. Takes the mutex and reads the clock; changes nothing (it does not
 * move an OPEN breaker to HALF_OPEN). Returns 0, or CYNIC_EINVAL for NULL.
 */
CYNIC_API int cynic_breaker_snapshot(const cynic_breaker_t *b, cynic_breaker_snapshot_t *out);

#ifdef __cplusplus
}
#endif
#endif /* CYNIC_BREAKER_H */
