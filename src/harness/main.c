/*
 * cynic-harness: a fault-injection proxy, a drop-in for Toxiproxy's server.
 * Flags follow Toxiproxy's (Go flag syntax: -name value, -name=value, --name).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "err.h"
#include "addr.h"
#include "file.h"
#include "harness.h"
#include "json.h"
#include "log.h"
#include "shed.h"
#include "toxic.h"
#include "version.h"

#define CONFIG_MAX (16u << 20)

typedef struct options {
  const char *host;
  const char *port;
  const char *config;
  const char *log_file;
  const char *log_level;
  uint64_t seed;
  bool have_seed;
  bool proxy_metrics;
  bool runtime_metrics;
  bool strict_toxics;
  bool version;
} options_t;

static void usage(FILE *f) {
  fprintf(f, "usage: cynic-harness [flags]\n"
             "       cynic-harness ctl [-host URL] COMMAND   (the CLI; `ctl -h` lists commands)\n"
             "  -host HOST        API address (default localhost)\n"
             "  -port PORT        API port (default 8474; 0 picks a free one)\n"
             "  -config FILE      JSON array of proxies (with optional toxics) to create at start\n"
             "  -seed N           seed for every random choice (default: from the clock)\n"
             "  -proxy-metrics    serve Prometheus byte counters at GET /metrics\n"
             "  -runtime-metrics  serve process metrics (CPU, memory, fds) at GET /metrics\n"
             "  -strict-toxics    refuse toxic attributes outside their sensible ranges\n"
             "                    (Toxiproxy, and the default, accept any integer)\n"
             "  -log-file FILE    JSON-lines log file, reopened on SIGUSR1 (default stderr)\n"
             "  -log-level LEVEL  debug | info | warn | error (default info)\n"
             "  -version          print the version and exit\n");
}

static bool parse_bool(const char *v, bool *out) {
  if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0 || strcmp(v, "t") == 0 ||
      strcmp(v, "TRUE") == 0 || strcmp(v, "True") == 0) {
    *out = true;
    return true;
  }
  if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0 || strcmp(v, "f") == 0 ||
      strcmp(v, "FALSE") == 0 || strcmp(v, "False") == 0) {
    *out = false;
    return true;
  }
  return false;
}

static int parse_flags(int argc, char **argv, options_t *o) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (a[0] != '-' || a[1] == '\0') {
      fprintf(stderr, "cynic-harness: unexpected argument %s\n", a);
      return -1;
    }
    a += (a[1] == '-') ? 2 : 1;
    char name[64];
    const char *eq = strchr(a, '=');
    const char *val = NULL;
    size_t n = eq ? (size_t)(eq - a) : strlen(a);
    if (n == 0 || n >= sizeof(name)) {
      fprintf(stderr, "cynic-harness: bad flag %s\n", argv[i]);
      return -1;
    }
    memcpy(name, a, n);
    name[n] = '\0';
    if (eq)
      val = eq + 1;
    bool *flag = NULL;
    if (strcmp(name, "proxy-metrics") == 0)
      flag = &o->proxy_metrics;
    else if (strcmp(name, "version") == 0)
      flag = &o->version;
    else if (strcmp(name, "runtime-metrics") == 0)
      flag = &o->runtime_metrics;
    else if (strcmp(name, "strict-toxics") == 0)
      flag = &o->strict_toxics;
    else if (strcmp(name, "h") == 0 || strcmp(name, "help") == 0) {
      usage(stdout);
      exit(0);
    }
    if (flag != NULL) {
      if (val != NULL && !parse_bool(val, flag)) {
        fprintf(stderr, "cynic-harness: invalid boolean value %s for -%s\n", val, name);
        return -1;
      }
      if (val == NULL)
        *flag = true;
      continue;
    }
    if (val == NULL) {
      if (i + 1 >= argc) {
        fprintf(stderr, "cynic-harness: flag needs an argument: -%s\n", name);
        return -1;
      }
      val = argv[++i];
    }
    if (strcmp(name, "host") == 0)
      o->host = val;
    else if (strcmp(name, "port") == 0)
      o->port = val;
    else if (strcmp(name, "config") == 0)
      o->config = val;
    else if (strcmp(name, "log-file") == 0)
      o->log_file = val;
    else if (strcmp(name, "log-level") == 0)
      o->log_level = val;
    else if (strcmp(name, "seed") == 0) {
      char *end;
      errno = 0;
      long long s = strtoll(val, &end, 10);
      if (errno || *end || end == val) {
        fprintf(stderr, "cynic-harness: invalid value %s for -seed\n", val);
        return -1;
      }
      o->seed = (uint64_t)s;
      o->have_seed = true;
    } else {
      fprintf(stderr, "cynic-harness: flag provided but not defined: -%s\n", name);
      usage(stderr);
      return -1;
    }
  }
  return 0;
}

typedef struct app {
  harness_t h;
  uv_signal_t sigint, sigterm, sigusr1;
  bool signals_started;
  bool stopping;
  int exit_code;
} app_t;

static void api_closed(cynic__httpd_t *s) {
  (void)s;
}

/* Close everything so the loop runs dry and uv_loop_close succeeds. */
static void shutdown_all(app_t *app) {
  if (app->stopping)
    return;
  app->stopping = true;
  while (app->h.nproxies > 0)
    harness_proxy_delete(app->h.proxies[app->h.nproxies - 1]);
  cynic__httpd_close(&app->h.api, api_closed);
  if (app->signals_started) {
    uv_close((uv_handle_t *)&app->sigint, NULL);
    uv_close((uv_handle_t *)&app->sigterm, NULL);
    uv_close((uv_handle_t *)&app->sigusr1, NULL);
  }
}

static int finish(app_t *app, uv_loop_t *loop, int code) {
  shutdown_all(app);
  uv_run(loop, UV_RUN_DEFAULT);
  int rc = uv_loop_close(loop);
  harness_events_free(&app->h.events);
  harness_link_global_free();
  cynic__log(CYNIC_LOG_INFO, "stopped", NULL);
  cynic__log_close();
  return rc == 0 ? code : 1;
}

static void on_signal(uv_signal_t *sig, int signum) {
  app_t *app = sig->data;
  if (signum == SIGUSR1) {
    int rc = cynic__log_reopen(); /* on failure the old file stays in use */
    if (rc != 0)
      cynic__log(CYNIC_LOG_ERROR, "cannot reopen log file; still writing to the old one",
                 json_pack("{s:s}", "error", cynic__file_strerror(rc)));
    return;
  }
  if (!app->stopping)
    cynic__log(CYNIC_LOG_INFO, "shutting down", json_pack("{s:i}", "signal", signum));
  shutdown_all(app);
}

int harness_ctl_main(int argc, char **argv); /* ctl.c */

int main(int argc, char **argv) {
  cynic__json_init();
  if (argc > 1 && strcmp(argv[1], "ctl") == 0)
    return harness_ctl_main(argc - 2, argv + 2);
  /* Installed (or linked) as cynic-harness-cli, the binary is the CLI. */
  const char *base = strrchr(argv[0], '/');
  base = base ? base + 1 : argv[0];
  if (strcmp(base, "cynic-harness-cli") == 0)
    return harness_ctl_main(argc - 1, argv + 1);
  options_t o = {.host = "localhost", .port = "8474"};
  if (parse_flags(argc, argv, &o) != 0)
    return 2;
  if (o.version) {
    printf("cynic-harness version %s (toxiproxy-server %s compatible)\n", CYNIC_VERSION_STRING,
           HARNESS_TOXIPROXY_VERSION);
    return 0;
  }
  int level = o.log_level ? cynic__log_level_parse(o.log_level) : CYNIC_LOG_INFO;
  if (level < 0) {
    fprintf(stderr, "cynic-harness: invalid -log-level %s\n", o.log_level);
    return 2;
  }
  int lrc = cynic__log_open(o.log_file, (cynic_log_level_t)level);
  if (lrc != 0) {
    fprintf(stderr, "cynic-harness: cannot open log file %s: %s\n", o.log_file,
            cynic__file_strerror(lrc));
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  /* Two descriptors per proxied connection and one per proxy: lift the soft
   * descriptor limit to the hard one so the caps, not EMFILE, are the bound. */
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  static app_t app; /* large (the proxy table); zeroed */
  harness_t *h = &app.h;
  uv_loop_t loop;
  uv_loop_init(&loop);
  /* every proxied connection takes two descriptors, plus proxies and API */
  cynic__reserve_fd_table(&loop, 2 * HARNESS_MAX_CONNS + HARNESS_MAX_PROXIES + 512);
  h->loop = &loop;
  harness_events_init(&h->events);
  h->proxy_metrics = o.proxy_metrics;
  harness_toxic_set_strict(o.strict_toxics);
  h->runtime_metrics = o.runtime_metrics;
  h->seed = o.have_seed ? o.seed : (uv_hrtime() ^ ((uint64_t)getpid() << 32));
  cynic__log(CYNIC_LOG_INFO, "seed", json_pack("{s:I}", "seed", (json_int_t)h->seed));

  char hostport[CYNIC_ADDR_STR_MAX];
  snprintf(hostport, sizeof(hostport), strchr(o.host, ':') ? "[%s]:%s" : "%s:%s", o.host, o.port);
  char host[CYNIC_ADDR_HOST_MAX];
  uint16_t port;
  struct sockaddr_storage ss;
  if (cynic__addr_split(hostport, host, sizeof(host), &port) != 0) {
    fprintf(stderr, "cynic-harness: invalid -host/-port %s\n", hostport);
    return 2;
  }
  if (strcmp(host, "localhost") == 0)
    snprintf(host, sizeof(host), "127.0.0.1");
  if (!cynic__addr_numeric(host, port, false, &ss)) {
    fprintf(stderr, "cynic-harness: -host must be an IP address or localhost: %s\n", host);
    return 2;
  }
  cynic__httpd_config_t cfg;
  cynic__httpd_config_default(&cfg);
  int rc = cynic__httpd_start(&h->api, &loop, &cfg, (struct sockaddr *)&ss, harness_api_handle, h);
  if (rc != 0) {
    cynic__log(CYNIC_LOG_ERROR, "cannot listen",
               json_pack("{s:s,s:s}", "address", hostport, "error", cynic__strerror(rc)));
    return finish(&app, &loop, 1);
  }
  struct sockaddr_storage bound;
  char addr[CYNIC_ADDR_STR_MAX] = "";
  if (cynic__httpd_address(&h->api, &bound) == 0)
    cynic__addr_format((struct sockaddr *)&bound, addr, sizeof(addr));

  if (o.config != NULL) {
    size_t len;
    char *text = NULL;
    /* Never waits on a FIFO; anything but a regular file is refused. */
    int frc = cynic__file_read(o.config, CONFIG_MAX, &text, &len);
    char err[512];
    if (frc != 0) {
      cynic__log(CYNIC_LOG_ERROR, "cannot read config",
                 json_pack("{s:o,s:s}", "config", cynic__json_text0(o.config), "error",
                            cynic__file_strerror(frc)));
      return finish(&app, &loop, 2);
    }
    rc = harness_api_load_config(h, text, len, err, sizeof(err));
    free(text);
    if (rc != 0) {
      cynic__log(CYNIC_LOG_ERROR, "bad config",
                 json_pack("{s:o,s:o}", "config", cynic__json_text0(o.config), "error",
                           cynic__json_text0(err)));
      return finish(&app, &loop, 2);
    }
    cynic__log(
        CYNIC_LOG_INFO, "populated proxies from config",
        json_pack("{s:o,s:i}", "config", cynic__json_text0(o.config), "proxies", (int)h->nproxies));
  }

  uv_signal_init(&loop, &app.sigint);
  uv_signal_init(&loop, &app.sigterm);
  uv_signal_init(&loop, &app.sigusr1);
  app.sigint.data = app.sigterm.data = app.sigusr1.data = &app;
  uv_signal_start(&app.sigint, on_signal, SIGINT);
  uv_signal_start(&app.sigterm, on_signal, SIGTERM);
  uv_signal_start(&app.sigusr1, on_signal, SIGUSR1);
  app.signals_started = true;

  cynic__log(CYNIC_LOG_INFO, "API listening",
             json_pack("{s:s,s:s}", "address", addr, "version", CYNIC_VERSION_STRING));
  uv_run(&loop, UV_RUN_DEFAULT);
  return finish(&app, &loop, 0);
}
