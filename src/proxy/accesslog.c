/*
 * src/proxy/accesslog.c: the per-listener access log: one JSON line per
 * client connection (docs/logs.md has the schema), written when the
 * connection is freed.
 *
 * Files are opened at start and by reloads (listeners naming the same path
 * share one FILE) and closed once no listener, live or retired with
 * connections finishing, names them (cynic__accesslog_sweep), so at most one
 * file per listener slot is open however many paths reloads bring. They are
 * appended to with line buffering, reopened on SIGUSR1 and, when
 * log.rotate is set, rotated like the main log: past max_bytes the file
 * becomes file.1, file.1 becomes file.2, ... up to keep files (Steady State).
 *
 * Process-wide, loop thread only, like src/common/log.c.
 */
#include "accesslog.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "admin.h"
#include "file.h"
#include "http_head.h"
#include "log.h"

typedef struct alog {
  char *path;
  FILE *f; /* NULL when a reopen failed: lines are dropped, and counted */
} alog_t;

static struct {
  alog_t files[CYNIC__CONFIG_MAX_LISTENERS];
  size_t n;
  uint64_t dropped; /* lines lost to a file that could not be (re)opened */
} logs;

static alog_t *find(const char *path) {
  for (size_t i = 0; i < logs.n; i++)
    if (strcmp(logs.files[i].path, path) == 0)
      return &logs.files[i];
  return NULL;
}

static int open_error; /* why the last open_file failed (file.h codes) */

/* Never waits on a FIFO nobody reads (file.h says what is accepted). */
static FILE *open_file(const char *path) {
  return cynic__file_open_log(path, &open_error);
}

int cynic__accesslog_open(const cynic__config_t *cfg, char *why, size_t why_size) {
  for (size_t i = 0; i < cfg->listener_count; i++) {
    const char *path = cfg->listeners[i].access_log;
    if (path == NULL || find(path) != NULL)
      continue;
    if (logs.n == CYNIC__CONFIG_MAX_LISTENERS) {
      if (why != NULL)
        snprintf(why, why_size, "listener '%s': access_log: too many access log files open",
                 cfg->listeners[i].name);
      return -EMFILE; /* a reload naming more new paths than the sweep freed */
    }
    alog_t *a = &logs.files[logs.n];
    a->f = open_file(path);
    if (a->f == NULL || (a->path = strdup(path)) == NULL) {
      int err = a->f == NULL ? open_error : -ENOMEM;
      if (why != NULL)
        snprintf(why, why_size, "listener '%s': access_log: cannot open '%s': %s",
                 cfg->listeners[i].name, path, cynic__file_strerror(err));
      cynic__log_event(CYNIC_LOG_ERROR, "access_log_failed", "cannot open access log",
                       json_pack("{s:s, s:s, s:s}", "listener", cfg->listeners[i].name, "file",
                                 path, "error", cynic__file_strerror(err)));
      if (a->f != NULL)
        fclose(a->f);
      a->f = NULL;
      return err;
    }
    logs.n++;
  }
  return 0;
}

void cynic__accesslog_sweep(const cynic__proxy_t *p) {
  size_t kept = 0;
  for (size_t i = 0; i < logs.n; i++) {
    alog_t a = logs.files[i];
    bool used = false;
    for (size_t k = 0; k < p->listener_count && !used; k++) {
      const cynic__config_listener_t *c = p->listeners[k].cfg; /* NULL: a free slot */
      used = c != NULL && c->access_log != NULL && strcmp(c->access_log, a.path) == 0;
    }
    if (used) {
      logs.files[kept++] = a;
      continue;
    }
    if (a.f != NULL)
      fclose(a.f);
    free(a.path);
  }
  logs.n = kept;
}

void cynic__accesslog_reopen(void) {
  for (size_t i = 0; i < logs.n; i++) {
    FILE *f = open_file(logs.files[i].path);
    if (f == NULL) {
      cynic__log_event(CYNIC_LOG_ERROR, "access_log_failed", "cannot reopen access log",
                       json_pack("{s:s, s:s}", "file", logs.files[i].path, "error",
                                 cynic__file_strerror(open_error)));
      continue; /* keep writing to the old one rather than losing lines */
    }
    if (logs.files[i].f != NULL)
      fclose(logs.files[i].f);
    logs.files[i].f = f;
  }
}

void cynic__accesslog_rotate(uint64_t max_bytes, uint32_t keep) {
  if (max_bytes == 0)
    return;
  for (size_t i = 0; i < logs.n; i++) {
    alog_t *a = &logs.files[i];
    struct stat st;
    if (stat(a->path, &st) != 0 || (uint64_t)st.st_size < max_bytes)
      continue;
    int rc = cynic__file_rotate(a->path, keep, NULL, 0);
    FILE *f = open_file(a->path);
    if (f != NULL) {
      if (a->f != NULL)
        fclose(a->f);
      a->f = f;
    }
    cynic__log_event(rc == 0 && f != NULL ? CYNIC_LOG_INFO : CYNIC_LOG_ERROR, "access_log_rotated",
                     "access log rotated",
                     json_pack("{s:s, s:s, s:i}", "file", a->path, "result",
                               rc != 0     ? cynic__file_strerror(rc)
                               : f == NULL ? cynic__file_strerror(open_error)
                                           : "ok",
                               "keep", (int)keep));
  }
}

void cynic__accesslog_close(void) {
  for (size_t i = 0; i < logs.n; i++) {
    if (logs.files[i].f != NULL)
      fclose(logs.files[i].f);
    free(logs.files[i].path);
  }
  memset(&logs, 0, sizeof logs);
}

/* A phase from `from` to `to` (microseconds, 0 = not reached) in `unit_us`
 * units, rounded down: whole milliseconds for the *_ms fields, microseconds
 * for the *_us ones. */
static json_t *phase(uint64_t from, uint64_t to, uint64_t unit_us) {
  if (from == 0 || to == 0 || to < from)
    return json_null();
  return json_integer((json_int_t)((to - from) / unit_us));
}

void cynic__accesslog_write(const cynic__conn_report_t *r) {
  const char *path = r->listener->cfg->access_log;
  if (path == NULL)
    return;
  alog_t *a = find(path);
  if (a == NULL || a->f == NULL) {
    logs.dropped++;
    return;
  }
  char when[96];
  int64_t ms = cynic__unix_ms();
  time_t s = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&s, &tm);
  snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
           tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec % 60, (int)(ms % 1000));
  /* the client's address without a port: "192.0.2.7" (IPv4 comes mapped),
   * "2001:db8::1" */
  char client[INET6_ADDRSTRLEN];
  cynic__http_client_ip(r->ip, client);
  json_t *o = json_object();
  json_object_set_new(o, "time", json_string(when));
  json_object_set_new(o, "listener", json_string(r->listener->cfg->name));
  json_object_set_new(o, "client", json_string(client));
  json_object_set_new(o, "upstream", json_string(r->upstream->cfg->name));
  json_object_set_new(o, "endpoint",
                      r->endpoint != NULL ? json_string(r->endpoint->addr->text) : json_null());
  json_object_set_new(o, "outcome", json_string(cynic__outcome_name(r->outcome)));
  json_object_set_new(o, "breaker", r->decision != NULL ? json_string(r->decision) : json_null());
  /* *_ms: whole milliseconds, as before microsecond timing existed (kept for
   * the queries already written against them); *_us: the same phases in
   * microseconds. */
  static const struct {
    const char *name;
    uint64_t unit_us;
  } units[] = {{"ms", 1000}, {"us", 1}};
  char key[32];
  for (size_t i = 0; i < 2; i++) {
    uint64_t unit = units[i].unit_us;
    snprintf(key, sizeof key, "queue_%s", units[i].name);
    json_object_set_new(
        o, key, r->connect_us != 0 ? phase(r->accepted_us, r->connect_us, unit) : json_null());
    snprintf(key, sizeof key, "connect_%s", units[i].name);
    json_object_set_new(o, key, phase(r->connect_us, r->connected_us, unit));
    snprintf(key, sizeof key, "first_byte_%s", units[i].name);
    json_object_set_new(o, key, phase(r->connected_us, r->first_byte_us, unit));
    snprintf(key, sizeof key, "duration_%s", units[i].name);
    json_object_set_new(o, key, phase(r->accepted_us, r->end_us, unit));
  }
  if (r->http) { /* HTTP mode: the request and its answer */
    json_object_set_new(o, "method", r->method != NULL ? json_string(r->method) : json_null());
    size_t tl = r->target_len > CYNIC__ACCESSLOG_MAX_TARGET ? CYNIC__ACCESSLOG_MAX_TARGET
                                                            : r->target_len;
    json_object_set_new(o, "path", json_stringn(r->target, tl));
    json_object_set_new(o, "status", r->status != 0 ? json_integer(r->status) : json_null());
    json_object_set_new(o, "upstream_status",
                        r->upstream_status != 0 ? json_integer(r->upstream_status) : json_null());
    json_object_set_new(o, "answer", r->answer != NULL ? json_string(r->answer) : json_null());
    json_object_set_new(o, "fallback",
                        r->fallback != NULL ? json_string(r->fallback) : json_null());
    json_object_set_new(o, "request_id",
                        r->request_id != NULL ? json_string(r->request_id) : json_null());
    json_object_set_new(o, "attempts", json_integer((json_int_t)r->attempts));
    const cynic__upstream_t *tu = r->tried_upstream != NULL ? r->tried_upstream : r->upstream;
    if (r->attempts > 1 && tu != NULL) { /* retried: where each attempt went */
      json_t *tried = json_array();
      for (size_t i = 0; i < r->attempts && tried != NULL; i++)
        if (r->tried[i] < tu->endpoint_count)
          json_array_append_new(tried, json_string(tu->endpoints[r->tried[i]].addr->text));
      json_object_set_new(o, "tried", tried);
    }
  }
  json_object_set_new(o, "bytes_up", json_integer((json_int_t)r->bytes_up));
  json_object_set_new(o, "bytes_down", json_integer((json_int_t)r->bytes_down));
  char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(o);
  if (text == NULL)
    return;
  fprintf(a->f, "%s\n", text);
  free(text);
}
