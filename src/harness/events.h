/*
 * events.h: the per-connection event log behind GET /events?since=ID, as
 * JSON lines: connection opened, upstream connected or failed, toxic applied,
 * connection closed with its byte counts.
 *
 * A ring of EVENTS_MAX preformatted lines (Steady State: the oldest are
 * dropped, and a reader that fell behind is told how many it missed). Ids
 * start at 1 and never repeat within a run.
 */
#ifndef CYNIC_HARNESS_EVENTS_H
#define CYNIC_HARNESS_EVENTS_H

#include <jansson.h>
#include <stdint.h>

#include "buf.h"

#define EVENTS_MAX 10000
#define EVENTS_PAGE_MAX 10000   /* lines per response */
#define EVENTS_ID_MAX INT64_MAX /* ids and `since` are JSON int64s */

typedef struct events {
  char *lines[EVENTS_MAX]; /* ring; lines[(head + i) % MAX] has id first_id + i */
  size_t head, count;
  uint64_t first_id; /* id of the oldest kept line */
  uint64_t next_id;
} events_t;

void harness_events_init(events_t *e);
void harness_events_free(events_t *e);
/* Record an event; `fields` (may be NULL) is consumed. */
void harness_events_add(events_t *e, const char *event, json_t *fields);
/* Append the lines with id > since (at most `limit`; only those of `proxy`
 * unless NULL) to `out`, preceded by a {"event":"dropped","count":N} line if
 * some were already overwritten. 0 <= since <= EVENTS_ID_MAX (the caller
 * checks); a since at or past the newest id appends nothing. */
int harness_events_dump(const events_t *e, uint64_t since, size_t limit, const char *proxy,
                        cynic__buf_t *out);

#endif
