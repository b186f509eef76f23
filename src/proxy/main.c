/*
 * src/proxy/main.c: the cynic command line.
 *
 * `cynic -c FILE` loads the config and runs the proxy (daemon.c) in the
 * foreground until SIGTERM or SIGINT drains it: exit 0 after a drain, 1 when
 * it cannot start (a listener address in use, say), 2 on a bad config, before
 * anything is bound. `cynic --check -c FILE` only checks the config: 0 or 2.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "err.h"
#include "config.h"
#include "cynic/common.h"
#include "json.h"
#include "proxy.h"

#define EXIT_BAD_CONFIG 2
#define EXIT_USAGE 2

static void usage(FILE *out) {
  fprintf(out, "usage: cynic -c FILE            run the proxy with the config in FILE\n"
               "       cynic --check -c FILE    check the config and exit: 0 ok, 2 bad\n"
               "       cynic --version | --help\n"
               "\n"
               "options:\n"
               "  -c, --config FILE   the YAML config (see docs/configuration.md)\n"
               "  -t, --check         load and check the config, print a summary, exit\n"
               "  -V, --version       print the version and exit\n"
               "  -h, --help          print this help and exit\n"
               "\n"
               "signals: SIGTERM, SIGINT drain (a second one closes what is left);\n"
               "         SIGUSR1 reopens the log files; SIGHUP reloads the config\n"
               "         (docs/admin.md). Exit 0 after a drain, 1 when the\n"
               "         proxy cannot start, 2 on a bad config. See docs/proxy.md.\n");
}

static void print_summary(const cynic__config_t *cfg) {
  size_t endpoints = 0;
  for (size_t i = 0; i < cfg->upstream_count; i++)
    endpoints += cfg->upstreams[i].endpoint_count;
  printf("%zu listener%s, %zu upstream%s, %zu endpoint%s; admin on %s\n", cfg->listener_count,
         cfg->listener_count == 1 ? "" : "s", cfg->upstream_count,
         cfg->upstream_count == 1 ? "" : "s", endpoints, endpoints == 1 ? "" : "s",
         cfg->admin.listen.text);
}

/* Valid but deprecated names: say so, so nobody is surprised when they go. */
static void print_notes(const cynic__config_t *cfg) {
  for (size_t i = 0; i < cfg->upstream_count; i++) {
    const cynic__config_upstream_t *u = &cfg->upstreams[i];
    if (u->keepalive_old_name.line != 0)
      fprintf(stderr,
              "%s:%u:%u: warning: upstream '%s': 'keepalive' is deprecated; rename it to "
              "'tcp_keepalive'\n",
              cfg->path, (unsigned)u->keepalive_old_name.line,
              (unsigned)u->keepalive_old_name.column, u->name);
    if (u->tls.enabled && u->tls.insecure_skip_verify)
      fprintf(stderr, "%s:%u:%u: warning: upstream '%s': %s\n", cfg->path,
              (unsigned)u->tls.mark.line, (unsigned)u->tls.mark.column, u->name,
              CYNIC__TLS_INSECURE_TEXT);
  }
}

int main(int argc, char **argv) {
  cynic__json_init();
  const char *path = NULL;
  bool check = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
      printf("cynic %s\n", cynic_version());
      return 0;
    } else if (strcmp(a, "-t") == 0 || strcmp(a, "--check") == 0) {
      check = true;
    } else if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
      if (i + 1 >= argc) {
        fprintf(stderr, "cynic: %s needs a file name\n", a);
        usage(stderr);
        return EXIT_USAGE;
      }
      path = argv[++i];
    } else if (strncmp(a, "--config=", 9) == 0) {
      path = a + 9;
    } else {
      fprintf(stderr, "cynic: unknown option '%s'\n", a);
      usage(stderr);
      return EXIT_USAGE;
    }
  }
  if (path == NULL) {
    fprintf(stderr, "cynic: no config file; give one with -c FILE\n");
    usage(stderr);
    return EXIT_USAGE;
  }

  static cynic__config_errors_t errs; /* ~10 KB: keep it off the stack */
  cynic__config_t *cfg = NULL;
  int rc = cynic__config_load(path, &cfg, &errs);
  if (rc != 0) {
    if (errs.count == 0)
      fprintf(stderr, "%s: %s\n", path, cynic__strerror(rc));
    cynic__config_errors_print(&errs, stderr);
    return EXIT_BAD_CONFIG;
  }
  /* The TLS files (certificates, keys, CAs) are part of the config: read
   * them now, so a bad one stops the start (and --check) with its reason. */
  static cynic__tls_reload_t tls; /* ~2.5 KB of pointers: off the stack */
  char why[512];
  if (cynic__tls_prepare(cfg, &tls, why, sizeof why) != 0) {
    fprintf(stderr, "%s: %s\n", path, why);
    cynic__config_free(cfg);
    return EXIT_BAD_CONFIG;
  }
  cynic__tls_undo(&tls); /* the daemon builds its own once it serves */
  if (check) {
    printf("%s: ok\n", path);
    print_summary(cfg);
    print_notes(cfg);
    cynic__config_free(cfg);
    return 0;
  }
  int status = cynic__proxy_run(cfg);
  cynic__config_free(cfg);
  return status;
}
