/*
 * cynic/common.h: what every libcynic component shares.
 *
 *  - Time: monotonic nanoseconds as uint64_t, read through an injected clock so
 *    tests move time by hand. Components never read the system clock on their own
 *    when a caller gives them `now`.
 *  - Errors: 0 on success, a negative CYNIC_E* code on failure. Codes and their
 *    messages come from one X-macro list (CYNIC_ERRNO_MAP) so they cannot drift.
 *  - Symbol visibility: only functions marked CYNIC_API leave the shared library.
 *
 * Thread safety: everything in this header is safe to call from any thread.
 */
#ifndef CYNIC_COMMON_H
#define CYNIC_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define CYNIC_API __attribute__((visibility("default")))
#else
#define CYNIC_API
#endif

/* Durations and instants are nanoseconds on a monotonic clock. */
#define CYNIC_NS(x) ((uint64_t)(x))
#define CYNIC_US(x) ((uint64_t)(x) * UINT64_C(1000))
#define CYNIC_MS(x) ((uint64_t)(x) * UINT64_C(1000000))
#define CYNIC_SEC(x) ((uint64_t)(x) * UINT64_C(1000000000))

/*
 * An injected clock. `now` returns monotonic nanoseconds and must never go
 * backwards; components clamp if it does. `arg` is passed to `now` untouched.
 * A zeroed cynic_clock_t (now == NULL) means the default clock, CLOCK_MONOTONIC.
 */
typedef struct cynic_clock {
  uint64_t (*now)(void *arg);
  void *arg;
} cynic_clock_t;

/* CLOCK_MONOTONIC in nanoseconds; `arg` is ignored. */
CYNIC_API uint64_t cynic_clock_monotonic(void *arg);

/* The clock's current time; a clock with now == NULL reads CLOCK_MONOTONIC. */
static inline uint64_t cynic_clock_now(const cynic_clock_t *clock) {
  if (clock == NULL || clock->now == NULL)
    return cynic_clock_monotonic(NULL);
  return clock->now(clock->arg);
}

/*
 * Error codes: XX(NAME, message). Values are negative and stable. Who returns
 * what, beyond EINVAL and ENOMEM:
 *   EOPEN        cynic_breaker_acquire(); cynic_guard_call() (c.stop)
 *   EFULL        cynic_bulkhead_try_enter/queue/promote/enter_or_queue/
 *                enter_wait(); cynic_guard_call()
 *   ELIMITED     cynic_tokens_take(), cynic_ratetable_take(); cynic_guard_call()
 *   EBUDGET      cynic_budget_withdraw(); cynic_guard_call() (c.stop)
 *   EDEADLINE    cynic_bulkhead_enter_wait() (its timeout passed) and
 *                cynic_guard_call() (the call's deadline); no pure deadline
 *                helper returns it: they answer with the time left
 *   ESTATE       cynic_bulkhead_promote() with nothing pending;
 *                cynic_guard_report() out of turn
 *   EDEPENDENCY  returned by no component: it is the code for a caller to say
 *                "the dependency failed" (a guarded function's failure, a
 *                log line), so cynic_strerror() prints it sensibly
 *   ERANGE       returned by no libcynic function today; the cynic programs
 *                use it for a buffer over its cap
 */
#define CYNIC_ERRNO_MAP(XX)                                                    \
  XX(EINVAL, -22, "invalid argument")                                          \
  XX(ENOMEM, -12, "out of memory")                                             \
  XX(ERANGE, -34, "value out of range")                                        \
  XX(EOPEN, -1001, "circuit breaker is open")                                  \
  XX(EFULL, -1002, "bulkhead is full")                                         \
  XX(ELIMITED, -1003, "rate limit exceeded")                                   \
  XX(EBUDGET, -1004, "retry budget exhausted")                                 \
  XX(EDEADLINE, -1005, "deadline exceeded")                                    \
  XX(ESTATE, -1006, "operation not allowed in the current state")              \
  XX(EDEPENDENCY, -1007, "the dependency failed")

typedef enum cynic_errno {
#define CYNIC_ERRNO_ENUM(name, value, msg) CYNIC_##name = (value),
  CYNIC_ERRNO_MAP(CYNIC_ERRNO_ENUM)
#undef CYNIC_ERRNO_ENUM
} cynic_errno_t;

/* The message for a CYNIC_E* code; "unknown error" for anything else. Never NULL. */
CYNIC_API const char *cynic_strerror(int err);
/* The code's name without prefix, e.g. "EOPEN"; "UNKNOWN" for anything else. */
CYNIC_API const char *cynic_err_name(int err);

/* The library's version as "MAJOR.MINOR.PATCH". */
CYNIC_API const char *cynic_version(void);

/* Saturating helpers: time arithmetic never wraps. */
static inline uint64_t cynic__sat_add(uint64_t a, uint64_t b) {
  return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}
static inline uint64_t cynic__sat_sub(uint64_t a, uint64_t b) {
  return a > b ? a - b : 0;
}

#ifdef __cplusplus
}
#endif
#endif /* CYNIC_COMMON_H */
