/*
 * cynic/cynic.h: the whole of libcynic, the stability patterns of Michael
 * Nygard's *Release It!* as a small C library with no I/O.
 *
 *   common.h     injected clock, error codes, version
 *   breaker.h    Circuit Breaker
 *   bulkhead.h   Bulkheads and Back Pressure
 *   ratelimit.h  token bucket and per-client table (Unwanted users)
 *   backoff.h    exponential backoff with jitter, seedable PRNG (Dogpile)
 *   budget.h     retry budget (retries as a share of traffic)
 *   deadline.h   deadlines across hops (Timeouts)
 *   guard.h      all of them around one call, in one documented order
 */
#ifndef CYNIC_CYNIC_H
#define CYNIC_CYNIC_H

#include "cynic/common.h"

#include "cynic/backoff.h"
#include "cynic/breaker.h"
#include "cynic/budget.h"
#include "cynic/bulkhead.h"
#include "cynic/deadline.h"
#include "cynic/guard.h"
#include "cynic/hash.h"
#include "cynic/ratelimit.h"

#endif /* CYNIC_CYNIC_H */
