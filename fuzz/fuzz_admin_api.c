/*
 * fuzz/fuzz_admin_api.c: libFuzzer target for the proxy's admin API
 * (src/proxy/admin*.c) through its real code paths, without sockets: the
 * bytes a client sends, answered by src/common/httpd.c's socket-free
 * connection (cynic__httpd_feed) on an admin started without a listening
 * socket (cynic__admin_start_local), on a proxy built for every input by the
 * daemon's own init from a small fixed config read by the real loader.
 *
 * Input: the first byte's bit 0 sets a bearer token (so Authorization and
 * the stream's ?token= are in play; a POST /reload goes back to the file's
 * config, which has none); the rest is one client connection's bytes
 * (pipelined requests, answered in order).
 *
 * The proxy is in its serving state: its two listeners are bound on
 * 127.0.0.1:0 (loopback; nothing connects to them), so POST /reload, /drain
 * and the breaker overrides meet the state they meet in production. A proxy
 * costs ~3 MB of zeroed tables (256 upstream slots), ~10 ms under ASan, so
 * it serves REBUILD_EVERY inputs (or until one drains it) and is then torn
 * down to uv_loop_close() == 0 and built afresh: state is bounded, and what
 * an input finds (breakers tripped, a reloaded config) is what inputs can
 * make themselves, so a crash replays from one input that does both.
 * FUZZ_FRESH=1 in the environment builds a proxy for every input.

 * Oracles, besides ASan/UBSan and the leak check:
 *  - what the server wrote parses as a sequence of HTTP/1.1 responses
 *    (llhttp, HEAD answers framed as such), one per request at most, each
 *    with a status the admin API documents (docs/admin.md);
 *  - after the input, unless it drained the proxy: GET /status answers 200
 *    with a body jansson parses as a JSON object, and GET /health 200;
 *  - a drained proxy has stopped everything: the loop ends, nothing left open.
 */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxy.h" /* before admin.h: it and metrics.h need the event list */

#include "admin.h"
#include "buf.h"
#include "config.h"
#include "fuzz_answers.h"
#include "fuzz_proxy.h"
#include "httpd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define TOKEN "fuzz-admin-token-4f1c2a9e"

/* What docs/admin.md says the admin answers (100: Expect: 100-continue). */
static const int documented[] = {100, 200, 202, 204, 400, 401, 404, 405,
                                 409, 413, 414, 429, 431, 500, 503};

/* The oracle's settings for this target (fuzz_answers.h). */
static fuzz_answers_t answers(void) {
  return (fuzz_answers_t){.who = "fuzz_admin_api",
                          .known = documented,
                          .nknown = sizeof documented / sizeof documented[0]};
}

static cynic__config_t *config;
#define REBUILD_EVERY 64

static void die(const char *what) {
  fprintf(stderr, "fuzz_admin_api: %s\n", what);
  abort();
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0)
    die("cannot write the fixture files");
}

static const char config_text[] = "admin:\n"
                                  "  listen: 127.0.0.1:0\n"
                                  "  drain_timeout: 1s\n"
                                  "log:\n"
                                  "  file: /dev/null\n"
                                  "  level: debug\n"
                                  "listeners:\n"
                                  "  - name: app\n"
                                  "    listen: 127.0.0.1:0\n"
                                  "    upstream: backend\n"
                                  "  - name: other\n"
                                  "    listen: 127.0.0.1:0\n"
                                  "    upstream: spare\n"
                                  "upstreams:\n"
                                  "  - name: backend\n"
                                  "    endpoints: [127.0.0.1:9, \"[::1]:9\"]\n"
                                  "    breaker:\n"
                                  "      faults: 2\n"
                                  "      leak: 10s\n"
                                  "      open_for: 30s\n"
                                  "  - name: spare\n"
                                  "    endpoints: [127.0.0.2:9]\n";

static char dir[] = "/tmp/cynic-fuzz-admin-XXXXXX";
static char path[256];

static void teardown(void);

static void remove_files(void) {
  teardown();
  cynic__config_free(config);
  unlink(path);
  rmdir(dir);
}

/* The config, from a file (POST /reload reads it again). */
static void setup(void) {
  if (mkdtemp(dir) == NULL)
    die("mkdtemp");
  atexit(remove_files);
  snprintf(path, sizeof path, "%s/cynic.yaml", dir);
  write_file(path, config_text);
  config = fuzz_proxy_config("fuzz_admin_api", path);
}

/* GET `what` on the admin (with the token when there is one): its status,
 * and its body in *body (the caller frees it). */
static int get(cynic__proxy_t *p, const char *what, cynic__buf_t *body) {
  char req[256];
  snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: fuzz\r\n%s\r\n", what,
           p->admin->token != NULL ? "Authorization: Bearer " TOKEN "\r\n" : "");
  fuzz_answers_t a = answers();
  fuzz_serve(p->admin->httpd, req, strlen(req), &a);
  if (a.finals != 1)
    die("no answer to a GET");
  *body = a.body;
  return a.status;
}

/* Lets the loop run what the requests started (a drain's 0 ms timer, close
 * callbacks): at most `turns` non-blocking turns, fewer once nothing is
 * active (the listeners keep it active while the proxy serves). */
static void settle(uv_loop_t *l, int turns) {
  for (int i = 0; i < turns && uv_run(l, UV_RUN_NOWAIT) != 0; i++) {
  }
}

/* ---- the proxy ---------------------------------------------------------- */

static uv_loop_t loop;
static cynic__proxy_t proxy;
static bool built;
static unsigned served; /* inputs since it was built */

static void build(void) {
  if (uv_loop_init(&loop) != 0)
    die("uv_loop_init");
  cynic__proxy_init(&proxy, &loop, config);
  if (cynic__upstreams_start(&proxy) != 0 || cynic__admin_start_local(&proxy) != 0)
    die("the proxy does not start");
  cynic__proxy_serve_if_resolved(&proxy); /* the listeners, on 127.0.0.1:0 */
  if (proxy.listeners == NULL || proxy.stopping)
    die("the proxy does not serve");
  built = true;
  served = 0;
}

/* Stops the proxy (unless a drain did) and checks that nothing is left. */
static void teardown(void) {
  if (!built)
    return;
  built = false;
  cynic__proxy_stop(&proxy);
  settle(&loop, 16);
  fuzz_proxy_close("fuzz_admin_api", &loop, &proxy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (config == NULL)
    setup();
  if (size < 1)
    return 0;
  if (built && (served >= REBUILD_EVERY || getenv("FUZZ_FRESH") != NULL))
    teardown();
  if (!built)
    build();
  served++;
  cynic__proxy_t *p = &proxy;
  char *token = NULL;
  if ((data[0] & 1) != 0 && (token = strdup(TOKEN)) == NULL)
    die("strdup");
  cynic__admin_token_set(p, token, token != NULL ? strlen(token) : 0);
  const char *in = (const char *)data + 1;
  size_t n = size - 1;

  fuzz_answers_t a = answers();
  fuzz_serve(p->admin->httpd, in, n, &a);
  cynic__buf_free(&a.body);
  settle(&loop, 2); /* POST /drain's timer runs here */

  if (p->stopping) { /* drained: everything must have stopped */
    teardown();
    return 0;
  }
  /* Whatever the input did (trips, resets, reloads), the proxy still renders
   * its state, and that state is JSON. */
  cynic__buf_t body;
  int status = get(p, "/status", &body);
  json_error_t e;
  json_t *v = json_loadb(body.data ? body.data : "", body.len, 0, &e);
  if (status != 200 || !json_is_object(v)) {
    fprintf(stderr, "fuzz_admin_api: GET /status: %d, %s\n%.*s\n", status, e.text, (int)body.len,
            body.data ? body.data : "");
    abort();
  }
  json_decref(v);
  cynic__buf_free(&body);
  if (get(p, "/health", &body) != 200)
    die("GET /health is not 200");
  cynic__buf_free(&body);
  settle(&loop, 1); /* the connections' close callbacks */
  return 0;
}
