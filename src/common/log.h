/*
 * log.h: structured logging, one JSON object a line, to stderr or a file.
 *
 * A line looks like
 *   {"time":"2026-11-27T17:20:01.123Z","level":"info","msg":"proxy created","proxy":"db"}
 * Fields come from a jansson object the caller builds (the logger takes the
 * reference). The file is reopened by cynic__log_reopen(), which programs call
 * on SIGUSR1 so logrotate can move it away (Steady State: logs rotate).
 *
 * Process-wide and single-threaded: call from the event-loop thread only.
 */
#ifndef CYNIC_COMMON_LOG_H
#define CYNIC_COMMON_LOG_H

#include <jansson.h>
#include <stdbool.h>

typedef enum cynic_log_level {
  CYNIC_LOG_DEBUG = 0,
  CYNIC_LOG_INFO = 1,
  CYNIC_LOG_WARN = 2,
  CYNIC_LOG_ERROR = 3,
} cynic_log_level_t;

/* Log to `path` ("-" or NULL = stderr) from `min` up. 0 or a negative errno if
 * the file cannot be opened (the logger then stays on stderr). */
int cynic__log_open(const char *path, cynic_log_level_t min);
/* Reopen the file given to cynic__log_open; no-op on stderr. */
int cynic__log_reopen(void);
/* Change the least severe level written (a config reload). */
void cynic__log_set_level(cynic_log_level_t min);
/* Close the file (back to stderr). */
void cynic__log_close(void);
/* Parse "debug" | "info" | "warn" | "error"; -1 if none. */
int cynic__log_level_parse(const char *s);
/* Whether a line at `level` would be written (skip building costly fields). */
bool cynic__log_enabled(cynic_log_level_t level);
/* Emit one line. `fields` may be NULL; its reference is always consumed. */
void cynic__log(cynic_log_level_t level, const char *msg, json_t *fields);
/* The same with a stable machine name for what happened, written as the
 * `event` field right after `level` (programs match on it, people read `msg`).
 * The proxy logs every line this way (docs/logs.md lists the names). */
void cynic__log_event(cynic_log_level_t level, const char *event, const char *msg, json_t *fields);

#endif
