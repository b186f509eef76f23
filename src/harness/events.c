/* events.c: bounded in-memory event log. */
#include "events.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "json.h"

void harness_events_init(events_t *e) {
  memset(e, 0, sizeof(*e));
  e->first_id = 1;
  e->next_id = 1;
}

void harness_events_free(events_t *e) {
  for (size_t i = 0; i < e->count; i++)
    free(e->lines[(e->head + i) % EVENTS_MAX]);
  e->count = 0;
}

void harness_events_add(events_t *e, const char *event, json_t *fields) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char when[96];
  snprintf(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
           tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000);
  json_t *o = json_object();
  json_object_set_new(o, "id", json_integer((json_int_t)e->next_id));
  json_object_set_new(o, "time", json_string(when));
  json_object_set_new(o, "event", json_string(event));
  if (json_is_object(fields))
    json_object_update(o, fields);
  json_decref(fields);
  char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(o);
  if (line == NULL)
    return;
  if (e->count == EVENTS_MAX) {
    free(e->lines[e->head]);
    e->head = (e->head + 1) % EVENTS_MAX;
    e->count--;
    e->first_id++;
  }
  e->lines[(e->head + e->count) % EVENTS_MAX] = line;
  e->count++;
  e->next_id++;
}

int harness_events_dump(const events_t *e, uint64_t since, size_t limit, const char *proxy,
                        cynic__buf_t *out) {
  int err = 0;
  if (since + 1 < e->first_id)
    err = cynic__buf_printf(out, "{\"event\":\"dropped\",\"count\":%llu}\n",
                            (unsigned long long)(e->first_id - since - 1));
  /* Proxy names are restricted to characters that need no JSON escaping, so
   * the field can be matched as text. */
  char needle[HARNESS_NAME_MAX + 16];
  if (proxy != NULL)
    snprintf(needle, sizeof(needle), "\"proxy\":\"%s\",", proxy);
  uint64_t start = since + 1 > e->first_id ? since + 1 : e->first_id;
  for (uint64_t id = start; !err && id < e->first_id + e->count && limit > 0; id++) {
    const char *line = e->lines[(e->head + (id - e->first_id)) % EVENTS_MAX];
    if (proxy != NULL && strstr(line, needle) == NULL)
      continue;
    err = cynic__buf_puts(out, line);
    if (!err)
      err = cynic__buf_puts(out, "\n");
    limit--;
  }
  return err;
}
