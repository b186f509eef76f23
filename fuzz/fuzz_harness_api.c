/*
 * fuzz/fuzz_harness_api.c: libFuzzer target for cynic-harness's
 * Toxiproxy-compatible API (src/harness/api.c: create, update and delete
 * proxies and toxics, populate, reset, events, metrics) through its real
 * handler and src/common/httpd.c's socket-free connection (cynic__httpd_feed),
 * on a harness state built afresh for every input (so a crash replays from
 * its input alone) and torn down to uv_loop_close() == 0.
 *
 * Input: the first byte's bits set -strict-toxics (bit 0), -proxy-metrics
 * (bit 1) and -runtime-metrics (bit 2); the rest is one client connection's
 * bytes (pipelined requests, answered in order).
 *
 * Sockets: an enabled proxy listens, as in production, but on loopback port
 * 0 whatever its `listen` says: this target wraps uv_tcp_bind (linked with
 * -Wl,--wrap, fuzz/CMakeLists.txt) to bind 127.0.0.1:0 (or [::1]:0 for an
 * IPv6 address), so the real start, stop and reset paths run, nothing binds
 * outside loopback or on a fixed port, and a fuzzed address cannot collide
 * with another program's. (The cost: two proxies never conflict on an
 * address, so that 409 is not reached here; test_harness_api.py covers it.)
 * Nothing connects to them. uv_getaddrinfo is wrapped too: every listen host
 * name fails to resolve (UV_EAI_NONAME) at once, so no lookup leaves the
 * process and a request never waits for one.
 *
 * Oracles, besides ASan/UBSan and the leak check (every input frees all):
 *  - what the server wrote parses as HTTP/1.1 responses with statuses the
 *    API documents (fuzz_answers.h);
 *  - after the input, GET /proxies answers 200 with a JSON object holding
 *    one entry per proxy in the registry, each with its toxics as an array
 *    of the same length as the proxy's, and the registry within its cap.
 */
#include <jansson.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_answers.h"
#include "harness.h"
#include "httpd.h"
#include "json.h"
#include "log.h"
#include "toxic.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- the wrapped libuv calls (-Wl,--wrap=...) ----------------------------- */

int __real_uv_tcp_bind(uv_tcp_t *handle, const struct sockaddr *addr, unsigned int flags);
int __wrap_uv_tcp_bind(uv_tcp_t *handle, const struct sockaddr *addr, unsigned int flags);
int __wrap_uv_getaddrinfo(uv_loop_t *loop, uv_getaddrinfo_t *req, uv_getaddrinfo_cb cb,
                          const char *node, const char *service, const struct addrinfo *hints);

int __wrap_uv_tcp_bind(uv_tcp_t *handle, const struct sockaddr *addr, unsigned int flags) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  if (addr != NULL && addr->sa_family == AF_INET6) {
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    a6->sin6_family = AF_INET6;
    a6->sin6_addr = in6addr_loopback;
  } else {
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    a4->sin_family = AF_INET;
    a4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  }
  return __real_uv_tcp_bind(handle, (struct sockaddr *)&ss, flags);
}

int __wrap_uv_getaddrinfo(uv_loop_t *loop, uv_getaddrinfo_t *req, uv_getaddrinfo_cb cb,
                          const char *node, const char *service, const struct addrinfo *hints) {
  (void)loop, (void)req, (void)cb, (void)node, (void)service, (void)hints;
  return UV_EAI_NONAME;
}

/* ---- the harness ------------------------------------------------------------ */

/* Toxiproxy's statuses as the harness answers them (docs/harness.md), and
 * httpd's own (100 Continue, 413/414/431 past the request limits). */
static const int documented[] = {100, 200, 201, 204, 400, 403, 404, 405,
                                 409, 413, 414, 431, 500, 503, 507};

static harness_t h; /* large (the proxy table): static, zeroed for every input */

static void die(const char *what) {
  fprintf(stderr, "fuzz_harness_api: %s\n", what);
  abort();
}

static void at_exit(void) {
  harness_link_global_free();
}

static void api_closed(cynic__httpd_t *s) {
  (void)s;
}

/* Lets the loop run what is pending (close callbacks), without blocking. */
static void settle(uv_loop_t *l) {
  for (int i = 0; i < 16 && uv_run(l, UV_RUN_NOWAIT) != 0; i++) {
  }
}

/* Feeds `in` to the API on one connection and checks the answers; the last
 * answer's status, its body in *body when body is not NULL (caller frees). */
static int serve(const char *in, size_t n, cynic__buf_t *body) {
  fuzz_answers_t a = {.who = "fuzz_harness_api",
                      .known = documented,
                      .nknown = sizeof documented / sizeof documented[0]};
  fuzz_serve(&h.api, in, n, &a);
  if (body != NULL)
    *body = a.body;
  else
    cynic__buf_free(&a.body);
  return a.status;
}

/* GET /proxies lists the registry exactly, as JSON. */
static void check_registry(void) {
  static const char req[] = "GET /proxies HTTP/1.1\r\nHost: fuzz\r\n\r\n";
  cynic__buf_t body;
  int status = serve(req, sizeof req - 1, &body);
  json_error_t e;
  json_t *v = json_loadb(body.data ? body.data : "", body.len, 0, &e);
  if (status != 200 || !json_is_object(v) || json_object_size(v) != h.nproxies ||
      h.nproxies > HARNESS_MAX_PROXIES) {
    fprintf(stderr, "fuzz_harness_api: GET /proxies: %d, %zu proxies, %s\n%.*s\n", status,
            h.nproxies, v == NULL ? e.text : "", (int)body.len, body.data ? body.data : "");
    abort();
  }
  for (size_t i = 0; i < h.nproxies; i++) {
    const hproxy_t *p = h.proxies[i];
    json_t *o = json_object_get(v, p->name);
    json_t *toxics = json_object_get(o, "toxics");
    if (!json_is_object(o) || !json_is_array(toxics) || json_array_size(toxics) != p->ntoxics ||
        !json_is_string(json_object_get(o, "listen")) ||
        json_is_true(json_object_get(o, "enabled")) != p->enabled) {
      fprintf(stderr, "fuzz_harness_api: GET /proxies does not show proxy %zu as it is\n%.*s\n", i,
              (int)body.len, body.data ? body.data : "");
      abort();
    }
  }
  json_decref(v);
  cynic__buf_free(&body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static bool once;
  if (!once) {
    once = true;
    cynic__json_init();
    if (cynic__log_open("/dev/null", CYNIC_LOG_DEBUG) != 0)
      die("cannot open /dev/null for the log");
    atexit(at_exit);
  }
  if (size < 1)
    return 0;
  uv_loop_t loop;
  if (uv_loop_init(&loop) != 0)
    die("uv_loop_init");
  memset(&h, 0, sizeof h);
  h.loop = &loop;
  h.seed = 42;
  h.proxy_metrics = (data[0] & 2) != 0;
  h.runtime_metrics = (data[0] & 4) != 0;
  harness_toxic_set_strict((data[0] & 1) != 0);
  harness_events_init(&h.events);
  cynic__httpd_config_t cfg;
  cynic__httpd_config_default(&cfg); /* as main.c's */
  if (cynic__httpd_start(&h.api, &loop, &cfg, NULL, harness_api_handle, &h) != 0)
    die("cannot start the API server");

  serve((const char *)data + 1, size - 1, NULL);
  settle(&loop);
  check_registry();

  /* As main.c's shutdown: every proxy deleted, the API closed. */
  while (h.nproxies > 0)
    harness_proxy_delete(h.proxies[h.nproxies - 1]);
  cynic__httpd_close(&h.api, api_closed);
  settle(&loop);
  if (uv_loop_close(&loop) != 0) {
    uv_print_all_handles(&loop, stderr);
    die("handles left open after every proxy was deleted");
  }
  harness_events_free(&h.events);
  return 0;
}
