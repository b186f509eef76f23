/*
 * src/proxy/accesslog.h: per-listener access logs (listener `access_log`),
 * one JSON line per client connection; schema in docs/logs.md.
 * Process-wide state, loop thread only.
 */
#ifndef CYNIC_PROXY_ACCESSLOG_H
#define CYNIC_PROXY_ACCESSLOG_H

#include "proxy.h"

/* The request target's bytes an access log line keeps at most (HTTP mode). */
#define CYNIC__ACCESSLOG_MAX_TARGET 1024u

/* Opens every listener's access_log (append) that is not open yet (a reload
 * opens the new listeners' ones). 0 or a negative errno / file.h code,
 * logged as access_log_failed; `why` (when not NULL) says which file and why. */
int cynic__accesslog_open(const cynic__config_t *cfg, char *why, size_t why_size);
/* Closes the files no listener names any more (live, or retired with
 * connections still finishing): reloads that change paths never pile up open
 * files. Called by cynic__reload_sweep. */
void cynic__accesslog_sweep(const cynic__proxy_t *p);
/* Reopens them (SIGUSR1, for logrotate); a file that cannot be reopened keeps
 * the old descriptor. */
void cynic__accesslog_reopen(void);
/* Rotates each file past max_bytes to file.1 .. file.keep (log.rotate); 0 =
 * off. Called once a second. */
void cynic__accesslog_rotate(uint64_t max_bytes, uint32_t keep);
/* Writes the line for a finished connection, if its listener has a log. */
void cynic__accesslog_write(const cynic__conn_report_t *r);
/* Closes every file. */
void cynic__accesslog_close(void);

#endif /* CYNIC_PROXY_ACCESSLOG_H */
