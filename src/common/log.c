/* log.c: JSON-lines logger with reopen. */
#include "log.h"
#include "json.h"

#include "file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static struct {
  FILE *file; /* NULL = stderr */
  char *path; /* for reopen; NULL = stderr */
  cynic_log_level_t min;
} logger = {NULL, NULL, CYNIC_LOG_INFO};

static const char *level_names[] = {"debug", "info", "warn", "error"};

int cynic__log_open(const char *path, cynic_log_level_t min) {
  cynic__log_close();
  logger.min = min;
  if (path == NULL || strcmp(path, "-") == 0)
    return 0;
  logger.path = strdup(path);
  if (logger.path == NULL)
    return -ENOMEM;
  return cynic__log_reopen();
}

int cynic__log_reopen(void) {
  if (logger.path == NULL)
    return 0;
  int err;
  FILE *f = cynic__file_open_log(logger.path, &err); /* never waits on a FIFO */
  if (f == NULL)
    return err;
  if (logger.file != NULL)
    fclose(logger.file);
  logger.file = f;
  return 0;
}

void cynic__log_set_level(cynic_log_level_t min) {
  logger.min = min;
}

void cynic__log_close(void) {
  if (logger.file != NULL)
    fclose(logger.file);
  logger.file = NULL;
  free(logger.path);
  logger.path = NULL;
}

int cynic__log_level_parse(const char *s) {
  for (int i = 0; i < 4; i++)
    if (strcmp(s, level_names[i]) == 0)
      return i;
  return -1;
}

bool cynic__log_enabled(cynic_log_level_t level) {
  return level >= logger.min && level <= CYNIC_LOG_ERROR;
}

static void emit(cynic_log_level_t level, const char *event, const char *msg, json_t *fields) {
  if (level < logger.min || level > CYNIC_LOG_ERROR) {
    json_decref(fields);
    return;
  }
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char when[96];
  snprintf(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
           tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
  json_t *line = json_object();
  if (line == NULL) {
    json_decref(fields);
    return;
  }
  json_object_set_new(line, "time", json_string(when));
  json_object_set_new(line, "level", json_string(level_names[level]));
  if (event != NULL)
    json_object_set_new(line, "event", json_string(event));
  /* the message may quote a client's bytes: never lose the line to them */
  json_object_set_new(line, "msg", cynic__json_text0(msg));
  if (json_is_object(fields))
    json_object_update(line, fields);
  json_decref(fields);
  char *text = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(line);
  if (text == NULL)
    return;
  FILE *f = logger.file ? logger.file : stderr;
  fprintf(f, "%s\n", text);
  fflush(f);
  free(text);
}

void cynic__log(cynic_log_level_t level, const char *msg, json_t *fields) {
  emit(level, NULL, msg, fields);
}

void cynic__log_event(cynic_log_level_t level, const char *event, const char *msg, json_t *fields) {
  emit(level, event, msg, fields);
}
