/*
 * src/proxy/log_shim.h: TEMPORARY stand-in for src/common/log.h, which the
 * harness work is landing on main. Same declarations (cynic__log_open,
 * cynic__log_reopen, cynic__log_close, cynic__log with a jansson object), so
 * replacing it is: delete this file, include "log.h", link cynic_common.
 *
 * One JSON object a line: {"time":"...Z","level":"info","msg":"...",...}.
 * Loop thread only. daemon.c defines CYNIC_LOG_SHIM_IMPL before including it.
 */
#ifndef CYNIC_PROXY_LOG_SHIM_H
#define CYNIC_PROXY_LOG_SHIM_H

#include <jansson.h>

typedef enum cynic_log_level {
  CYNIC_LOG_DEBUG = 0,
  CYNIC_LOG_INFO = 1,
  CYNIC_LOG_WARN = 2,
  CYNIC_LOG_ERROR = 3,
} cynic_log_level_t;

int cynic__log_open(const char *path, cynic_log_level_t min);
int cynic__log_reopen(void);
void cynic__log_close(void);
void cynic__log(cynic_log_level_t level, const char *msg, json_t *fields);

#ifdef CYNIC_LOG_SHIM_IMPL
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static FILE *log_out;
static char *log_path;
static cynic_log_level_t log_min = CYNIC_LOG_INFO;

int cynic__log_open(const char *path, cynic_log_level_t min) {
  log_min = min;
  if (path == NULL || strcmp(path, "-") == 0)
    return 0;
  log_path = strdup(path);
  if (log_path == NULL)
    return -ENOMEM;
  return cynic__log_reopen();
}

int cynic__log_reopen(void) {
  if (log_path == NULL)
    return 0;
  FILE *f = fopen(log_path, "a");
  if (f == NULL)
    return -errno;
  setvbuf(f, NULL, _IOLBF, 0);
  if (log_out != NULL)
    fclose(log_out);
  log_out = f;
  return 0;
}

void cynic__log_close(void) {
  if (log_out != NULL)
    fclose(log_out);
  log_out = NULL;
  free(log_path);
  log_path = NULL;
}

void cynic__log(cynic_log_level_t level, const char *msg, json_t *fields) {
  static const char *const names[] = {"debug", "info", "warn", "error"};
  if (level < log_min) {
    json_decref(fields);
    return;
  }
  struct timespec ts;
  struct tm tm;
  char when[48], secs[32];
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  strftime(secs, sizeof secs, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(when, sizeof when, "%s.%03dZ", secs, (int)(ts.tv_nsec / 1000000));
  json_t *line = json_pack("{s:s, s:s, s:s}", "time", when, "level", names[level], "msg", msg);
  if (line != NULL && fields != NULL)
    json_object_update(line, fields);
  json_decref(fields);
  char *text = line != NULL ? json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
  FILE *out = log_out != NULL ? log_out : stderr;
  if (text != NULL) {
    fprintf(out, "%s\n", text);
    fflush(out);
  }
  free(text);
  json_decref(line);
}
#endif /* CYNIC_LOG_SHIM_IMPL */
#endif /* CYNIC_PROXY_LOG_SHIM_H */
