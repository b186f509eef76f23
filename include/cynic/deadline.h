/*
 * cynic/deadline.h: deadlines that travel across hops.
 *
 * "Release It!"'s Timeouts pattern says every call to an integration point
 * needs a timeout. When a request crosses several hops (client -> cynic ->
 * service -> database) the timeouts must nest: a hop that starts work its
 * caller has already given up on wastes capacity exactly when capacity is
 * short. A deadline is the absolute instant by which the whole request must be
 * done; each hop derives its own timeout from the time left, keeps a reserve
 * for its own reply, and fails fast when nothing is left.
 *
 * Instants are monotonic nanoseconds (see common.h). Monotonic clocks of two
 * hosts are unrelated, so on the wire a deadline travels as the time LEFT, in
 * whole milliseconds (header CYNIC_DEADLINE_HEADER), and each receiver turns it
 * back into an instant of its own clock. Rounding is always down, so a
 * propagated deadline is never later than the original.
 *
 * All functions are pure: they take `now` from the caller (the clock is read
 * once per event-loop tick), touch no shared state and are safe from any
 * thread. Arithmetic saturates; nothing wraps.
 */
#ifndef CYNIC_DEADLINE_H
#define CYNIC_DEADLINE_H

#include "cynic/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* An absolute deadline on the monotonic clock; at_ns == UINT64_MAX: none. */
typedef struct cynic_deadline {
  uint64_t at_ns;
} cynic_deadline_t;

#define CYNIC_DEADLINE_NONE_NS UINT64_MAX

/* The conventional HTTP header that carries the time left, in milliseconds. */
#define CYNIC_DEADLINE_HEADER "x-cynic-deadline-ms"

/* A buffer size that always fits a formatted header value and its NUL. The
 * longest value is 18446744073709 (UINT64_MAX ns in ms, 14 digits); 21 would
 * fit any uint64_t. */
#define CYNIC_DEADLINE_MS_HEADER_MAX 21

/* No deadline: never expires, time left is UINT64_MAX. */
CYNIC_API cynic_deadline_t cynic_deadline_none(void);

/* True if `d` is the "no deadline" value. */
CYNIC_API bool cynic_deadline_is_none(cynic_deadline_t d);

/*
 * The deadline `timeout_ns` after `now` (saturating: a sum past UINT64_MAX,
 * or timeout_ns == UINT64_MAX, gives "none"). A timeout of 0 gives a deadline
 * that has already expired.
 */
CYNIC_API cynic_deadline_t cynic_deadline_in(uint64_t now, uint64_t timeout_ns);

/* Same, reading `now` from `clock` (NULL or zeroed: CLOCK_MONOTONIC). */
CYNIC_API cynic_deadline_t cynic_deadline_in_clock(const cynic_clock_t *clock, uint64_t timeout_ns);

/*
 * Nanoseconds left until `d` at `now`: 0 once passed (never negative, never
 * wraps), UINT64_MAX for "none".
 */
CYNIC_API uint64_t cynic_deadline_left(cynic_deadline_t d, uint64_t now);

/* True once `now` has reached the deadline (now >= at_ns), i.e. exactly when
 * cynic_deadline_left() is 0. Never true for "none". */
CYNIC_API bool cynic_deadline_expired(cynic_deadline_t d, uint64_t now);

/* The tighter (earlier) of two deadlines; "none" loses to any deadline. */
CYNIC_API cynic_deadline_t cynic_deadline_min(cynic_deadline_t a, cynic_deadline_t b);

/*
 * The timeout to give the next hop:
 *
 *     min(hop_timeout_ns, left(d, now) - reserve_ns)      (saturating at 0)
 *
 * `reserve_ns` is the time this hop keeps for itself after the next hop
 * answers (to build and send its own reply, or to try a fallback). 0 means
 * "don't even start: fail fast", because the caller would give up before the
 * answer could be used. hop_timeout_ns == UINT64_MAX means the hop has no
 * timeout of its own; with no deadline either, the result is UINT64_MAX
 * (unbounded), which a caller should treat as a configuration gap.
 */
CYNIC_API uint64_t cynic_deadline_for_hop(cynic_deadline_t d, uint64_t now, uint64_t hop_timeout_ns,
                                          uint64_t reserve_ns);

/*
 * Parses a header value carrying the time left in milliseconds and stores
 * the deadline now + value into *out. Strict, because the value comes from
 * outside:
 *   - one or more ASCII digits, decimal; leading zeros allowed ("007" is 7);
 *   - optional whitespace (SP or HTAB) before and after the digits is
 *     ignored, because HTTP (RFC 9110 section 5.5) does not count it as part
 *     of a field value; whitespace inside the number is not allowed;
 *   - no sign, no decimal point, no unit, no hex, no NUL bytes;
 *   - the value must fit: ms * 1,000,000 <= UINT64_MAX (about 584 years).
 * "0" is valid and gives an already expired deadline (the caller has no time
 * left: fail fast). A huge value whose instant would pass UINT64_MAX gives
 * "none". `s` need not be NUL-terminated; `len` bytes are read.
 * Returns 0, or CYNIC_EINVAL (with *out untouched) for any other input, or if
 * s (with len > 0) or out is NULL.
 */
CYNIC_API int cynic_deadline_from_ms_header(const char *s, size_t len, uint64_t now,
                                            cynic_deadline_t *out);

/*
 * Formats the time left of `d` at `now` as whole milliseconds, rounded down
 * ("0" once expired), into `buf` with a terminating NUL. Returns the number
 * of characters written, NUL excluded. Returns 0 and writes nothing beyond an
 * empty string (if cap > 0) when `d` is "none" (send no header) or when `cap`
 * is too small; CYNIC_DEADLINE_MS_HEADER_MAX bytes are always enough.
 */
CYNIC_API size_t cynic_deadline_to_ms_header(cynic_deadline_t d, uint64_t now, char *buf,
                                             size_t cap);

#ifdef __cplusplus
}
#endif
#endif /* CYNIC_DEADLINE_H */
