/*
 * src/proxy/metrics.h: what the operator sees: counters, histograms, the
 * per-second history of each upstream and the ring of breaker transitions
 * (metrics.c), served by the admin listener (admin.c).
 *
 * The stats structs are embedded in the proxy's objects (proxy.h) and written
 * from the loop thread only, by a few hook calls in tcp.c and upstream.c; the
 * admin listener reads them on the same thread, so nothing here locks.
 *
 * Steady state: every table here has a fixed size set at compile time (the
 * histogram buckets, CYNIC__HISTORY_SECONDS samples per upstream,
 * CYNIC__TRANSITION_RING transitions); nothing grows with traffic.
 *
 * HTTP mode, when it lands, adds request outcomes and a request histogram
 * beside the connection ones: the outcome list is one X-macro (proxy.h's
 * CYNIC__EVENT_MAP plus the three below), so a new kind is one line.
 */
#ifndef CYNIC_PROXY_METRICS_H
#define CYNIC_PROXY_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "buf.h"

struct cynic__proxy;
struct cynic__upstream;

/* Upper bounds of the latency histograms, in seconds (+Inf is implicit).
 * Observations have microsecond resolution (uv_hrtime); the 0.1 ms and
 * 0.25 ms buckets tell a loopback or same-host upstream (tens of µs) from a
 * LAN one (a few hundred µs). */
#define CYNIC__HIST_BUCKETS 18
#define CYNIC__HIST_BOUNDS                                                                         \
  {                                                                                                \
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,   \
        10, 30, 60                                                                                 \
  }

/* A Prometheus histogram: counts per bucket (not cumulative; the last slot is
 * +Inf), the sum of observations and their count. */
typedef struct cynic__hist {
  uint64_t bucket[CYNIC__HIST_BUCKETS + 1];
  double sum;
  uint64_t count;
} cynic__hist_t;

void cynic__hist_observe(cynic__hist_t *h, double seconds);
/* The upper bound of the bucket holding quantile q (0..1), in seconds; -1
 * when empty; the largest finite bound for the +Inf bucket. */
double cynic__hist_quantile(const cynic__hist_t *h, double q);

#define CYNIC__HISTORY_SECONDS 300 /* samples per upstream, one a second */
#define CYNIC__TRANSITION_RING 128 /* last breaker transitions kept, all upstreams */

/* One second of an upstream's life, for the status page's sparklines. */
typedef struct cynic__sample {
  int64_t unix_s;  /* the second this sample ends */
  uint32_t conns;  /* connections that started in that second */
  uint32_t done;   /* connections that ended in it */
  uint32_t errors; /* ... of which failed (fault or fail-fast rejection) */
  float p99_ms;    /* time to first byte, p99 bucket bound; -1 = no data */
  uint16_t open;   /* endpoints whose breaker was open at the end of it */
  uint32_t in_use; /* bulkhead slots in use at the end of it */
} cynic__sample_t;

typedef struct cynic__endpoint_stats {
  uint64_t transitions_to[5]; /* breaker transitions by the state entered */
  char manual_by[64];         /* the last manual change: who ("" = none) */
  char manual_reason[128];    /*   and why */
} cynic__endpoint_stats_t;

/* What became of a failed attempt retry.on names (/status's `retries`,
 * cynic_retries_total's `result`, in this order). */
typedef enum cynic__retry_result {
  CYNIC__RETRY_RETRIED,        /* it went again */
  CYNIC__RETRY_NO_BUDGET,      /* not: the retry budget was spent */
  CYNIC__RETRY_NO_TIME,        /* not: too close to the request deadline */
  CYNIC__RETRY_BODY_TOO_LARGE, /* not: its body was over retry.max_body */
  CYNIC__RETRY_RESULTS
} cynic__retry_result_t;

typedef struct cynic__upstream_stats {
  uint64_t started;          /* connections that began (tcp_start) */
  uint64_t done;             /* connections that ended */
  uint64_t errors;           /* ... that failed */
  cynic__hist_t connect;     /* connect() to connected */
  cynic__hist_t first_byte;  /* first byte sent (or connected) to first byte back */
  cynic__hist_t duration;    /* accept to close */
  cynic__hist_t second_ttfb; /* first_byte of the current second (history p99) */
  uint64_t responses[6]; /* HTTP mode: requests by the status the client got:
                            [0] none (reset or closed), [1..5] 1xx..5xx */
  uint64_t retries[CYNIC__RETRY_RESULTS];        /* HTTP mode: failed attempts retry.on names, by
                                                    what became of them (cynic__retry_result_t) */
  uint64_t last_started, last_done, last_errors; /* at the previous sample */
  cynic__sample_t history[CYNIC__HISTORY_SECONDS];
  size_t history_next;  /* ring position of the next sample */
  size_t history_count; /* samples stored, up to CYNIC__HISTORY_SECONDS */
} cynic__upstream_stats_t;

/* Connection outcomes: every proxy event (proxy.h's CYNIC__EVENT_MAP, in
 * order) and three endings that are not faults. */
#define CYNIC__OUT_OK CYNIC__EV_COUNT           /* both sides closed normally */
#define CYNIC__OUT_RESET (CYNIC__EV_COUNT + 1)  /* a peer reset after the upstream answered */
#define CYNIC__OUT_CLOSED (CYNIC__EV_COUNT + 2) /* closed by cynic: drain deadline, no memory */
#define CYNIC__OUT_COUNT (CYNIC__EV_COUNT + 3)

typedef struct cynic__listener_stats {
  uint64_t outcomes[CYNIC__OUT_COUNT + 1]; /* connections ended, by outcome (+1: room) */
  uint64_t bytes_up;                       /* client -> upstream, as written */
  uint64_t bytes_down;                     /* upstream -> client, as written */
} cynic__listener_stats_t;

/* ---- metrics.c's API (the proxy and upstream types are proxy.h's) ------- */

/* Takes one history sample of every upstream (daemon.c's once-a-second tick). */
void cynic__metrics_sample(struct cynic__proxy *p);
/* Appends the Prometheus text exposition of everything to `out`. 0, or
 * CYNIC_ERANGE / CYNIC_ENOMEM (then `out` holds a cut exposition: never
 * serve it). */
int cynic__metrics_render(struct cynic__proxy *p, cynic__buf_t *out);
/* Where a streamed exposition is (indices only: a reload between two calls
 * retires or reuses slots, and each step reads its object afresh). Zero it
 * to start. */
typedef struct cynic__metrics_cursor {
  size_t family;    /* index into metrics.c's family table */
  size_t item;      /* the listener or upstream slot next */
  bool started;     /* the process families are out */
  bool header_done; /* the current family's HELP/TYPE is out */
} cynic__metrics_cursor_t;
/* Appends the next part of the exposition, about `want` bytes (more by at
 * most one upstream's rows of one family, ~40 KB at the limits): 1 when
 * that was the end, 0 when more follows, or CYNIC_ERANGE / CYNIC_ENOMEM. */
int cynic__metrics_render_next(struct cynic__proxy *p, cynic__buf_t *out,
                               cynic__metrics_cursor_t *cur, size_t want);
/* The upstream's newest history sample as a JSON object; NULL when none. */
json_t *cynic__metrics_last_sample(const struct cynic__upstream *u);
/* The upstream's history samples, oldest first, as a JSON array. */
json_t *cynic__metrics_history(const struct cynic__upstream *u);
/* True for outcomes that count as errors (faults and fail-fast rejections). */
bool cynic__outcome_is_error(int outcome);
/* "ok", "connect_refused", ... */
const char *cynic__outcome_name(int outcome);

#endif /* CYNIC_PROXY_METRICS_H */
