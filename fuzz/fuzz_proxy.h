/*
 * fuzz/fuzz_proxy.h: the fixture the fuzz targets that run a whole proxy
 * share (fuzz_admin_api.c, fuzz_http_proxy.c): its config read by the real
 * loader, and its teardown down to uv_loop_close() == 0. Header-only (static
 * functions): each target includes it once.
 */
#ifndef CYNIC_FUZZ_PROXY_H
#define CYNIC_FUZZ_PROXY_H

#include <stdio.h>
#include <stdlib.h>

#include "proxy.h"

#include "config.h"
#include "json.h"
#include "log.h"

/* The config at `path` by cynic__config_load, with JSON and the log (to
 * /dev/null, at debug so every log call runs) set up as the daemon sets them
 * up. A config that does not load is the fixture's bug: its errors are
 * printed and the target aborts, named by `who`. */
static cynic__config_t *fuzz_proxy_config(const char *who, const char *path) {
  static cynic__config_errors_t errs;
  cynic__config_t *config;
  if (cynic__config_load(path, &config, &errs) != 0) {
    for (size_t k = 0; k < errs.count; k++) {
      char line[512];
      cynic__config_error_format(&errs, k, line, sizeof line);
      fprintf(stderr, "%s\n", line);
    }
    fprintf(stderr, "%s: the fixture config does not load\n", who);
    abort();
  }
  cynic__json_init();
  if (cynic__log_open("/dev/null", CYNIC_LOG_DEBUG) != 0) {
    fprintf(stderr, "%s: cannot open /dev/null for the log\n", who);
    abort();
  }
  return config;
}

/* After cynic__proxy_stop and the turns the caller's peers need: nothing may
 * be left open; then the proxy is freed and the loop closed (aborts, with
 * the handles printed, otherwise). */
static void fuzz_proxy_close(const char *who, uv_loop_t *loop, cynic__proxy_t *p) {
  if (uv_loop_alive(loop)) {
    uv_print_all_handles(loop, stderr);
    fprintf(stderr, "%s: handles left open after the proxy stopped\n", who);
    abort();
  }
  cynic__proxy_free(p);
  if (uv_loop_close(loop) != 0) {
    uv_print_all_handles(loop, stderr);
    fprintf(stderr, "%s: the loop does not close\n", who);
    abort();
  }
}

#endif /* CYNIC_FUZZ_PROXY_H */
