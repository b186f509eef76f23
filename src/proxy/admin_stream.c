/*
 * src/proxy/admin_stream.c: GET /status/stream, server-sent events: the stream table,
 * the shared event build in slices, the push and the slow-reader bound.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "accesslog.h"
#include "addr.h"
#include "admin.h"
#include "json.h"
#include "log.h"
#include "token.h"

typedef cynic__admin_req_t req_t;

/* ---- status streams (server-sent events) -------------------------------------------- */

/* One server-sent event into b (initialised by the caller, freed by it):
 * "event: NAME\ndata: JSON\n\n", the JSON compact (one line). Consumes
 * data's reference (NULL is an error). 0 or a negative CYNIC_E*. */
static int event_format(cynic__buf_t *b, const char *event, json_t *data) {
  if (data == NULL)
    return CYNIC_ENOMEM;
  int rc = cynic__buf_printf(b, "event: %s\ndata: ", event);
  if (rc == 0)
    rc = cynic__json_dump(data, b);
  json_decref(data);
  if (rc == 0)
    rc = cynic__buf_puts(b, "\n\n");
  return rc;
}

/* Queues `b` (whole events) on every stream, in one write each. A stream
 * whose reader still has more than STREAM_MAX_PENDING plus the previous
 * push pending (it has not read the last one) is dropped (logged) rather
 * than buffered for: a reader that keeps up gets every event, however large
 * the status, and what is queued per stream stays under STREAM_MAX_PENDING
 * plus two pushes. Streams with skip[i] set, and streams still waiting for
 * their first status, get nothing. */
static void stream_send(cynic__admin_t *a, const cynic__buf_t *b, const bool *skip) {
  size_t allow = CYNIC__ADMIN_STREAM_MAX_PENDING + a->stream_last_push;
  for (size_t i = 0; b->len > 0 && i < CYNIC__ADMIN_MAX_STREAMS; i++) {
    cynic__httpd_stream_t *st = a->streams[i];
    if (st == NULL || skip[i] || a->stream_fresh[i])
      continue; /* welcomed by this push, or waiting for the next one's welcome */
    /* the peer's address (a getpeername) only for a stream the write below
     * will drop: it is gone after the write */
    char peer[96] = "?";
    size_t pending = cynic__httpd_stream_pending(st);
    if (pending > allow)
      cynic__httpd_stream_peer(st, peer, sizeof peer);
    cynic__httpd_stream_set_max_pending(st, allow);
    if (cynic__httpd_stream_write(st, b->data, b->len) == CYNIC_ERANGE) {
      cynic__log_event(CYNIC_LOG_WARN, "status_stream_dropped",
                       "status stream client dropped: it reads too slowly",
                       json_pack("{s:s, s:I, s:I}", "client", peer, "pending_bytes",
                                 (json_int_t)pending, "limit_bytes", (json_int_t)allow));
    }
  }
  if (b->len > 0)
    a->stream_last_push = b->len;
}

static json_t *samples_json(cynic__admin_t *a) {
  cynic__proxy_t *p = a->proxy;
  json_t *us = json_object();
  for (size_t i = 0; i < p->upstream_count; i++) {
    if (p->upstreams[i].retired)
      continue;
    json_t *s = cynic__metrics_last_sample(&p->upstreams[i]);
    if (s != NULL)
      json_object_set_new(us, p->upstreams[i].cfg->name, s);
  }
  return json_pack("{s:I, s:o}", "now", (json_int_t)(cynic__proxy_unix_ms(p) / 1000), "upstreams",
                   us);
}

static void on_stream_closed(cynic__httpd_stream_t *st, void *arg);

/*
 * The events are built in slices (issue 10). A `status` or `transition`
 * event carries the whole /status (~6 MB at the config limits, ~0.4 s of
 * jansson): built at once it held the loop that forwards traffic that long.
 * So one build at a time, shared by every stream, renders /status with the
 * listing producer of GET /status (one upstream or ~16 KB a step) from an
 * idle handle, for at most the admin server's work budget per loop turn
 * (work_budget_us, 1 ms), straight into the buffer that is then pushed.
 * Like GET /status, each upstream's part is one instant and the event spans
 * the build (at the limits ~0.4 s of steps, more on a loaded loop).
 *
 * What a build is for (STREAM_EV_*), fixed when it starts:
 *   TRANSITION  one or more breakers changed state since the last build began;
 *   TICK        the once-a-second `sample` and `status`;
 *   WELCOME     streams opened since (their first `status`).
 * Wants that arrive during a build wait for the next one (they coalesce: a
 * loop that cannot build a status a second skips ticks, never queues them),
 * except a transition during a build for a TICK without TRANSITION: that
 * build starts over as TRANSITION|TICK, so no tick's status shows a
 * transition before its own `transition` event does (at most one restart a
 * build: a restarted build has TRANSITION). Existing streams get the build's
 * transition, sample and status events in one write; the streams it
 * welcomes get its status alone.
 */
enum { STREAM_EV_TRANSITION = 1u, STREAM_EV_TICK = 2u, STREAM_EV_WELCOME = 4u };

struct cynic__admin_stream_build {
  unsigned events;                        /* STREAM_EV_* this build serves */
  bool welcome[CYNIC__ADMIN_MAX_STREAMS]; /* the fresh streams it will welcome */
  cynic__admin_listing_t status;          /* the /status producer's cursor */
  cynic__buf_t out;                       /* the push, built in place (cap EVENT_MAX x 2) */
  cynic__buf_t sample;                    /* the `sample` event (TICK|TRANSITION) */
  size_t data_at;                         /* where the status's "data: " line starts in out */
  uint64_t json_failures; /* cynic__json_alloc_failures() when it started (json.h) */
};
typedef struct cynic__admin_stream_build stream_build_t;

static void stream_build_free(stream_build_t *b) {
  if (b == NULL)
    return;
  cynic__buf_free(&b->out);
  cynic__buf_free(&b->sample);
  free(b);
}

static void event_failed(const char *event, int rc) {
  cynic__log_event(CYNIC_LOG_ERROR, "status_stream_event_failed",
                   "a status stream event could not be made",
                   json_pack("{s:s, s:s, s:I}", "event", event, "error", cynic__strerror(rc),
                             "limit_bytes", (json_int_t)CYNIC__ADMIN_EVENT_MAX));
}

/* Starts a build for what is wanted; false when nothing is (or out of
 * memory: logged, the wants dropped, so a failing build never spins). */
static bool stream_build_start(cynic__admin_t *a) {
  unsigned ev = a->stream_want;
  a->stream_want = 0;
  if (ev == 0 || a->stream_count == 0)
    return false;
  stream_build_t *b = calloc(1, sizeof *b);
  if (b == NULL) {
    event_failed(ev & STREAM_EV_TRANSITION ? "transition" : "status", CYNIC_ENOMEM);
    return false;
  }
  b->events = ev;
  b->json_failures = cynic__json_alloc_failures();
  for (size_t i = 0; i < CYNIC__ADMIN_MAX_STREAMS; i++) {
    b->welcome[i] = a->streams[i] != NULL && a->stream_fresh[i];
    if (b->welcome[i])
      a->stream_fresh[i] = false; /* welcomed by this build, or (failing) by the next tick */
  }
  /* two copies of the status at most (transition and status), and a sample */
  cynic__buf_init(&b->out, 2 * (size_t)CYNIC__ADMIN_EVENT_MAX + (1u << 20));
  cynic__buf_init(&b->sample, 1u << 20);
  b->status.a = a;
  b->status.kind = LIST_STATUS;
  int rc = 0;
  if ((ev & STREAM_EV_TICK) && (rc = event_format(&b->sample, "sample", samples_json(a))) != 0)
    event_failed("sample", rc); /* the status still goes out */
  const char *first = ev & STREAM_EV_TRANSITION ? "transition" : "status";
  if (!(ev & STREAM_EV_TRANSITION) && b->sample.len > 0)
    rc = cynic__buf_append(&b->out, b->sample.data, b->sample.len);
  if (rc == 0)
    rc = cynic__buf_printf(&b->out, "event: %s\n", first);
  b->data_at = b->out.len;
  if (rc == 0)
    rc = cynic__buf_puts(&b->out, "data: ");
  if (rc != 0) {
    event_failed(first, rc);
    stream_build_free(b);
    return false;
  }
  a->build = b;
  return true;
}

/* The finished push: to the streams it welcomes (the status alone), and to
 * the others (everything it was built for, in one write). */
static void stream_build_send(cynic__admin_t *a, stream_build_t *b) {
  int rc = 0;
  size_t data_end = b->out.len;
  if ((b->events & STREAM_EV_TRANSITION) && (b->events & STREAM_EV_TICK)) {
    /* the transition, then the tick: its sample and the same status */
    rc = cynic__buf_append(&b->out, b->sample.data, b->sample.len);
    if (rc == 0)
      rc = cynic__buf_puts(&b->out, "event: status\n");
    if (rc == 0)
      rc = cynic__buf_append(&b->out, b->out.data + b->data_at, data_end - b->data_at);
    if (rc != 0) {
      event_failed("status", rc);
      b->out.len = data_end; /* the transition still goes out */
    }
  }
  static const char head[] = "event: status\n";
  size_t n = data_end - b->data_at;
  for (size_t i = 0; i < CYNIC__ADMIN_MAX_STREAMS; i++) {
    cynic__httpd_stream_t *st = a->streams[i];
    if (st == NULL || !b->welcome[i])
      continue;
    cynic__httpd_stream_set_max_pending(st, CYNIC__ADMIN_STREAM_MAX_PENDING + n);
    if (cynic__httpd_stream_write(st, head, sizeof head - 1) == 0)
      cynic__httpd_stream_write(st, b->out.data + b->data_at, n);
  }
  if (b->events & (STREAM_EV_TRANSITION | STREAM_EV_TICK))
    stream_send(a, &b->out, b->welcome);
}

/* One loop turn's share of the build: producer steps until the work budget
 * is spent (one step at least), then the push once the status is whole. */
static void on_stream_work(uv_idle_t *h) {
  cynic__admin_t *a = h->data;
  if (a->build == NULL && !stream_build_start(a)) {
    uv_idle_stop(h);
    return;
  }
  stream_build_t *b = a->build;
  uint64_t budget_ns = (uint64_t)a->httpd->config.work_budget_us * 1000u;
  uint64_t t0 = uv_hrtime();
  int rc;
  do { /* each step appends to the push itself; a step overshoots by one upstream at most */
    rc = cynic__admin_listing_next(&b->status, &b->out, CYNIC__ADMIN_JSON_SLICE);
    if (rc >= 0 && b->out.len - b->data_at > CYNIC__ADMIN_EVENT_MAX)
      rc = CYNIC_ERANGE;
  } while (rc == 0 && uv_hrtime() - t0 < budget_ns);
  if (rc == 0)
    return; /* more next turn */
  a->build = NULL;
  if (rc == 1 && cynic__json_alloc_failures() != b->json_failures)
    rc = CYNIC_ENOMEM; /* jansson may have left a value out: never push a cut status */
  /* the producer ends the JSON with "\n": one more ends the event */
  if (rc == 1 && (rc = cynic__buf_puts(&b->out, "\n")) == 0)
    stream_build_send(a, b);
  else
    event_failed(b->events & STREAM_EV_TRANSITION ? "transition" : "status", rc);
  stream_build_free(b);
}

/* Asks for events (STREAM_EV_*): built from the next loop turn on. */
static void stream_want(cynic__admin_t *a, unsigned ev) {
  if (a->stream_count == 0 || a->stopping)
    return;
  stream_build_t *b = a->build;
  if (b != NULL && (ev & STREAM_EV_TRANSITION) && (b->events & STREAM_EV_TICK) &&
      !(b->events & STREAM_EV_TRANSITION)) {
    /* start over as TRANSITION|TICK (see above): the streams it was to
     * welcome are fresh again */
    for (size_t i = 0; i < CYNIC__ADMIN_MAX_STREAMS; i++)
      if (b->welcome[i])
        a->stream_fresh[i] = true;
    a->stream_want |= b->events;
    a->build = NULL;
    stream_build_free(b);
  }
  a->stream_want |= ev;
  if (!uv_is_active((uv_handle_t *)&a->stream_work))
    uv_idle_start(&a->stream_work, on_stream_work);
}

void cynic__admin_streams_kick(cynic__admin_t *a) {
  stream_want(a, STREAM_EV_TRANSITION);
}

/* Once a second, after the history sample. */
void cynic__admin_streams_tick(cynic__admin_t *a) {
  stream_want(a, STREAM_EV_TICK);
}

static void on_stream_closed(cynic__httpd_stream_t *st, void *arg) {
  cynic__admin_t *a = arg;
  for (size_t i = 0; i < CYNIC__ADMIN_MAX_STREAMS; i++)
    if (a->streams[i] == st) {
      a->streams[i] = NULL;
      a->stream_fresh[i] = false;
      if (a->build != NULL)
        a->build->welcome[i] = false; /* the slot may be another stream's before the push */
      a->stream_count--;
    }
}

void cynic__admin_get_stream(req_t *r) {
  cynic__admin_t *a = r->a;
  if (a->stream_count >= CYNIC__ADMIN_MAX_STREAMS) {
    char msg[128];
    snprintf(msg, sizeof msg, "too many status streams (the limit is %d); poll GET /status",
             CYNIC__ADMIN_MAX_STREAMS);
    r->resp->headers = "Retry-After: 5\r\n";
    cynic__admin_reply_error(r, 503, msg);
    return;
  }
  size_t slot = 0;
  while (a->streams[slot] != NULL)
    slot++;
  r->resp->status = 200;
  r->resp->content_type = "text/event-stream";
  r->resp->headers = "Cache-Control: no-store\r\n";
  cynic__httpd_stream_t *st = cynic__httpd_stream(r->resp, CYNIC__ADMIN_STREAM_MAX_PENDING,
                                                  CYNIC__ADMIN_STREAM_SNDBUF, on_stream_closed, a);
  if (st == NULL) {
    r->resp->headers = NULL;
    cynic__admin_reply_error(r, 503, "cannot open a status stream");
    return;
  }
  a->streams[slot] = st;
  a->stream_fresh[slot] = true;
  a->stream_count++;
  /* the client reconnects after 1 s if the connection drops; its first
   * status is built from the next loop turn on, not at the next tick */
  static const char retry[] = "retry: 1000\n\n";
  if (cynic__httpd_stream_write(st, retry, sizeof retry - 1) != 0)
    return; /* gone already: on_stream_closed freed the slot */
  stream_want(a, STREAM_EV_WELCOME);
}

/* See admin.h. */
void cynic__admin_streams_init(cynic__admin_t *a) {
  uv_idle_init(a->proxy->loop, &a->stream_work);
  uv_unref((uv_handle_t *)&a->stream_work);
  a->stream_work.data = a;
}

void cynic__admin_streams_close(cynic__admin_t *a) {
  uv_close((uv_handle_t *)&a->stream_work, NULL);
  stream_build_free(a->build);
  a->build = NULL;
}
