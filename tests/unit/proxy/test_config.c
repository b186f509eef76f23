/* tests/unit/proxy/test_config.c: src/proxy/config.c, the YAML config loader.
 *
 * Good configs parse to exact values (every key, and every default); the
 * duration, size and percent parsers are run over tables of good and bad
 * inputs; bad configs give errors at the right line and column. The black-box
 * table of broken files is in tests/integration/test_proxy_config.py.
 * config_copy.c's copies and comparisons are checked member by member from
 * its own field list (which must cover every member of the structs). */
#define _POSIX_C_SOURCE 200809L /* open_memstream, mkdtemp */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "config_value.h"
#include "cynic/common.h"

#define MS UINT64_C(1000000)
#define SEC UINT64_C(1000000000)
#define KB UINT64_C(1024)
#define MB (KB * 1024)
#define GB (MB * 1024)

static cynic__config_errors_t errs;

/* Parse text that must be good; prints the errors if it is not. */
static cynic__config_t *parse_ok(const char *text) {
  cynic__config_t *cfg = NULL;
  int rc = cynic__config_parse("t.yaml", text, strlen(text), &cfg, &errs);
  if (rc != 0)
    cynic__config_errors_print(&errs, stderr);
  assert_int_equal(rc, 0);
  assert_non_null(cfg);
  assert_int_equal(errs.count, 0);
  return cfg;
}

/* Parse text that must be bad; returns error 0 formatted. */
static const char *parse_bad(const char *text) {
  static char line[1024];
  cynic__config_t *cfg = (cynic__config_t *)&errs; /* must be reset to NULL */
  int rc = cynic__config_parse("t.yaml", text, strlen(text), &cfg, &errs);
  assert_int_equal(rc, CYNIC_EINVAL);
  assert_null(cfg);
  assert_true(errs.count > 0);
  cynic__config_error_format(&errs, 0, line, sizeof line);
  return line;
}

static const char *const minimal = "listeners:\n"
                                   "  - name: l\n"
                                   "    listen: 127.0.0.1:8080\n"
                                   "    upstream: u\n"
                                   "upstreams:\n"
                                   "  - name: u\n"
                                   "    endpoints: [127.0.0.1:9000]\n";

static void test_defaults(void **state) {
  (void)state;
  cynic__config_t *cfg = parse_ok(minimal);
  assert_string_equal(cfg->path, "t.yaml");
  /* admin */
  assert_int_equal(cfg->admin.listen.kind, CYNIC__ADDR_IPV4);
  assert_string_equal(cfg->admin.listen.host, "127.0.0.1");
  assert_int_equal(cfg->admin.listen.port, 9901);
  assert_string_equal(cfg->admin.listen.text, "127.0.0.1:9901");
  assert_null(cfg->admin.token_file);
  assert_false(cfg->admin.allow_remote);
  assert_int_equal(cfg->admin.drain_timeout_ns, 30 * SEC);
  /* log */
  assert_string_equal(cfg->log.file, "-");
  assert_int_equal(cfg->log.format, CYNIC__LOG_JSON);
  assert_int_equal(cfg->log.level, CYNIC__LOG_INFO);
  assert_int_equal(cfg->log.rotate_max_bytes, 0);
  assert_int_equal(cfg->log.rotate_keep, 5);
  assert_int_equal(cfg->log.summary_interval_ns, 10 * SEC);
  /* listener */
  assert_int_equal(cfg->listener_count, 1);
  const cynic__config_listener_t *l = &cfg->listeners[0];
  assert_string_equal(l->name, "l");
  assert_int_equal(l->listen.kind, CYNIC__ADDR_IPV4);
  assert_int_equal(l->listen.port, 8080);
  assert_memory_equal(l->listen.ip, "\x7f\x00\x00\x01", 4);
  assert_int_equal(l->mode, CYNIC__MODE_TCP);
  assert_string_equal(l->upstream_name, "u");
  assert_int_equal(l->upstream, 0);
  assert_int_equal(l->max_connections, 10000);
  assert_int_equal(l->max_connections_per_client, 0);
  assert_int_equal(l->header_timeout_ns, 10 * SEC);
  assert_int_equal(l->idle_timeout_ns, 60 * SEC);
  assert_int_equal(l->rate_count, 0);
  assert_int_equal(l->buffer_bytes, 64 * KB);
  assert_int_equal(l->mark.line, 2);
  assert_int_equal(l->mark.column, 5);
  /* upstream */
  assert_int_equal(cfg->upstream_count, 1);
  const cynic__config_upstream_t *u = &cfg->upstreams[0];
  assert_string_equal(u->name, "u");
  assert_int_equal(u->endpoint_count, 1);
  assert_string_equal(u->endpoints[0].host, "127.0.0.1");
  assert_int_equal(u->endpoints[0].port, 9000);
  assert_int_equal(u->balance, CYNIC__BALANCE_ROUND_ROBIN);
  assert_int_equal(u->resolve_interval_ns, 30 * SEC);
  assert_int_equal(u->connect_timeout_ns, 1 * SEC);
  assert_int_equal(u->first_byte_timeout_ns, 30 * SEC);
  assert_int_equal(u->idle_timeout_ns, 60 * SEC);
  assert_int_equal(u->request_timeout_ns, 0);
  assert_int_equal(u->keepalive_idle_ns, 60 * SEC);
  assert_int_equal(u->keepalive_interval_ns, 10 * SEC);
  assert_int_equal(u->keepalive_probes, 3);
  assert_int_equal(u->user_timeout_ns, 0);
  assert_int_equal(u->max_connections, 100);
  assert_int_equal(u->max_pending, 50);
  assert_int_equal(u->queue_timeout_ns, 100 * MS);
  assert_int_equal(u->breaker.faults, 5);
  assert_int_equal(u->breaker.leak_ns, 10 * SEC);
  assert_int_equal(u->breaker.open_for_ns, 30 * SEC);
  assert_int_equal(u->breaker.open_max_ns, 30 * SEC);
  assert_true(u->breaker.open_multiplier == 1.0);
  assert_int_equal(u->breaker.half_open_probes, 1);
  assert_int_equal(u->breaker.window_type, CYNIC__WINDOW_NONE);
  assert_false(u->required);
  assert_false(u->http.has_retry);
  assert_false(u->http.has_expect);
  assert_false(u->http.has_fallback);
  assert_int_equal(u->http.max_response_bytes, 0);
  assert_int_equal(u->http.max_header_bytes, 32 * KB);
  assert_int_equal(u->http.pool_max_idle, 100); /* bulkhead.max_connections */
  assert_int_equal(u->http.pool_idle_timeout_ns, 4 * SEC);
  assert_int_equal(l->max_request_head, 32 * KB);
  assert_int_equal(l->max_request_body, 0);
  assert_int_equal(l->forwarded, CYNIC__FORWARDED_XFF);
  assert_string_equal(l->request_id_header, "X-Request-Id");
  cynic__config_free(cfg);
}

static const char *const full =
    "admin:\n"
    "  listen: '[::1]:9902'\n"
    "  token_file: /etc/cynic/token\n"
    "  allow_remote: true\n"
    "  drain_timeout: 2m\n"
    "log:\n"
    "  file: /var/log/cynic.log\n"
    "  format: json\n"
    "  level: debug\n"
    "  rotate: { max_bytes: 10MB, keep: 3 }\n"
    "  summary_interval: 1m\n"
    "listeners:\n"
    "  - name: payments\n"
    "    listen: 0.0.0.0:0\n"
    "    mode: http\n"
    "    upstream: payments-api\n"
    "    max_connections: 500\n"
    "    max_connections_per_client: 20\n"
    "    timeouts: { header: 5s, idle: 2m }\n"
    "    rate_limit: { per_client: 600/m, burst: 50 }\n"
    "    buffer: 16KB\n"
    "    limits: { max_request_head: 8KB, max_request_body: 10MB }\n"
    "    forwarded: forwarded\n"
    "    request_id_header: X-Correlation-ID\n"
    "  - name: db\n"
    "    listen: '[::]:5432'\n"
    "    upstream: db\n"
    "    rate_limit: { per_client: 10/s }\n"
    "upstreams:\n"
    "  - name: payments-api\n"
    "    endpoints: [127.0.0.1:9000, '[::1]:9001', api.internal:443]\n"
    "    balance: least_connections\n"
    "    resolve_interval: 0\n"
    "    timeouts: { connect: 250ms, first_byte: 2s, idle: 30s, request: 5s }\n"
    "    keepalive: { idle: 30s, interval: 5s, probes: 4, user_timeout: 50s }\n"
    "    bulkhead: { max_connections: 10, max_pending: 0, queue_timeout: 0s }\n"
    "    breaker:\n"
    "      faults: 7\n"
    "      leak: 500ms\n"
    "      open_for: 10s\n"
    "      open_max: 5m\n"
    "      open_multiplier: 1.5\n"
    "      half_open_probes: 3\n"
    "      window: { type: count, size: 50, min_calls: 20, failure_rate: 40%,\n"
    "                slow_rate: 80%, slow_call: 1500ms }\n"
    "    required: true\n"
    "    retry: { attempts: 3, backoff: 20ms..2s, budget: 10% }\n"
    "    expect: { status: 200-399, content_type: application/json }\n"
    "    limits: { max_response_bytes: 1GB, max_header_bytes: 64KB }\n"
    "    fallback: { status: 503, body: '{\"error\":\"down\"}', content_type: "
    "application/json }\n"
    "    pool: { max_idle: 0, idle_timeout: 1500ms }\n"
    "    health_check: { path: /healthz, interval: 2s, timeout: 500ms, host: api.internal,\n"
    "                    expect: { status: 200-204, content_type: application/json, body: ok },\n"
    "                    healthy_after: 4, unhealthy_after: 5 }\n"
    "  - name: db\n"
    "    endpoints: [db.internal:5432]\n"
    "    breaker: { window: { type: time, size: 30s } }\n";

static void test_every_key(void **state) {
  (void)state;
  cynic__config_t *cfg = parse_ok(full);
  assert_int_equal(cfg->admin.listen.kind, CYNIC__ADDR_IPV6);
  assert_string_equal(cfg->admin.listen.host, "::1");
  assert_int_equal(cfg->admin.listen.port, 9902);
  assert_string_equal(cfg->admin.listen.text, "[::1]:9902");
  assert_string_equal(cfg->admin.token_file, "/etc/cynic/token");
  assert_true(cfg->admin.allow_remote);
  assert_int_equal(cfg->admin.drain_timeout_ns, 120 * SEC);
  assert_string_equal(cfg->log.file, "/var/log/cynic.log");
  assert_int_equal(cfg->log.level, CYNIC__LOG_DEBUG);
  assert_int_equal(cfg->log.rotate_max_bytes, 10 * MB);
  assert_int_equal(cfg->log.rotate_keep, 3);
  assert_int_equal(cfg->log.summary_interval_ns, 60 * SEC);

  assert_int_equal(cfg->listener_count, 2);
  const cynic__config_listener_t *l = &cfg->listeners[0];
  assert_string_equal(l->name, "payments");
  assert_int_equal(l->listen.port, 0);
  assert_memory_equal(l->listen.ip, "\0\0\0\0", 4);
  assert_int_equal(l->mode, CYNIC__MODE_HTTP);
  assert_int_equal(l->upstream, 0);
  assert_int_equal(l->max_connections, 500);
  assert_int_equal(l->max_connections_per_client, 20);
  assert_int_equal(l->header_timeout_ns, 5 * SEC);
  assert_int_equal(l->idle_timeout_ns, 120 * SEC);
  assert_int_equal(l->rate_count, 600);
  assert_int_equal(l->rate_period_ns, 60 * SEC);
  assert_int_equal(l->rate_burst, 50);
  assert_int_equal(l->buffer_bytes, 16 * KB);
  assert_int_equal(l->max_request_head, 8 * KB);
  assert_int_equal(l->max_request_body, 10 * MB);
  assert_int_equal(l->forwarded, CYNIC__FORWARDED_RFC7239);
  assert_string_equal(l->request_id_header, "X-Correlation-ID");
  l = &cfg->listeners[1];
  assert_int_equal(l->listen.kind, CYNIC__ADDR_IPV6);
  assert_string_equal(l->listen.host, "::");
  assert_int_equal(l->upstream, 1);
  assert_int_equal(l->rate_count, 10);
  assert_int_equal(l->rate_period_ns, SEC);
  assert_int_equal(l->rate_burst, 10); /* burst defaults to the rate */

  const cynic__config_upstream_t *u = &cfg->upstreams[0];
  assert_int_equal(u->endpoint_count, 3);
  assert_int_equal(u->endpoints[0].kind, CYNIC__ADDR_IPV4);
  assert_int_equal(u->endpoints[1].kind, CYNIC__ADDR_IPV6);
  assert_string_equal(u->endpoints[1].host, "::1");
  assert_int_equal(u->endpoints[1].port, 9001);
  assert_int_equal(u->endpoints[2].kind, CYNIC__ADDR_NAME);
  assert_string_equal(u->endpoints[2].host, "api.internal");
  assert_int_equal(u->endpoints[2].port, 443);
  assert_string_equal(u->endpoints[2].text, "api.internal:443");
  assert_int_equal(u->balance, CYNIC__BALANCE_LEAST_CONNECTIONS);
  assert_int_equal(u->resolve_interval_ns, 0);
  assert_int_equal(u->connect_timeout_ns, 250 * MS);
  assert_int_equal(u->first_byte_timeout_ns, 2 * SEC);
  assert_int_equal(u->idle_timeout_ns, 30 * SEC);
  assert_int_equal(u->request_timeout_ns, 5 * SEC);
  assert_int_equal(u->keepalive_idle_ns, 30 * SEC);
  assert_int_equal(u->keepalive_interval_ns, 5 * SEC);
  assert_int_equal(u->keepalive_probes, 4);
  assert_int_equal(u->user_timeout_ns, 50 * SEC);
  assert_int_equal(u->max_connections, 10);
  assert_int_equal(u->max_pending, 0);
  assert_int_equal(u->queue_timeout_ns, 0);
  assert_int_equal(u->breaker.faults, 7);
  assert_int_equal(u->breaker.leak_ns, 500 * MS);
  assert_int_equal(u->breaker.open_for_ns, 10 * SEC);
  assert_int_equal(u->breaker.open_max_ns, 300 * SEC);
  assert_true(u->breaker.open_multiplier == 1.5);
  assert_int_equal(u->breaker.half_open_probes, 3);
  assert_int_equal(u->breaker.window_type, CYNIC__WINDOW_COUNT);
  assert_int_equal(u->breaker.window_size, 50);
  assert_int_equal(u->breaker.window_min_calls, 20);
  assert_int_equal(u->breaker.failure_rate_pct, 40);
  assert_int_equal(u->breaker.slow_rate_pct, 80);
  assert_int_equal(u->breaker.slow_call_ns, 1500 * MS);
  assert_true(u->required);
  assert_true(u->http.has_retry);
  assert_int_equal(u->http.retry_attempts, 3);
  assert_int_equal(u->http.retry_backoff_min_ns, 20 * MS);
  assert_int_equal(u->http.retry_backoff_max_ns, 2 * SEC);
  assert_int_equal(u->http.retry_budget_pct, 10);
  assert_true(u->http.has_expect);
  assert_int_equal(u->http.expect_status_min, 200);
  assert_int_equal(u->http.expect_status_max, 399);
  assert_string_equal(u->http.expect_content_type, "application/json");
  assert_int_equal(u->http.max_response_bytes, GB);
  assert_int_equal(u->http.max_header_bytes, 64 * KB);
  assert_true(u->http.has_fallback);
  assert_int_equal(u->http.fallback_status, 503);
  assert_string_equal(u->http.fallback_body, "{\"error\":\"down\"}");
  assert_int_equal(u->http.fallback_body_len, 16);
  assert_string_equal(u->http.fallback_content_type, "application/json");
  assert_int_equal(u->http.pool_max_idle, 0);
  assert_int_equal(u->http.pool_idle_timeout_ns, 1500 * MS);
  assert_true(u->health.enabled);
  assert_string_equal(u->health.path, "/healthz");
  assert_string_equal(u->health.host, "api.internal");
  assert_int_equal(u->health.interval_ns, 2 * SEC);
  assert_int_equal(u->health.timeout_ns, 500 * MS);
  assert_int_equal(u->health.expect_status_min, 200);
  assert_int_equal(u->health.expect_status_max, 204);
  assert_string_equal(u->health.expect_content_type, "application/json");
  assert_string_equal(u->health.expect_body, "ok");
  assert_int_equal(u->health.healthy_after, 4);
  assert_int_equal(u->health.unhealthy_after, 5);

  u = &cfg->upstreams[1];
  assert_false(u->health.enabled);
  assert_int_equal(u->breaker.window_type, CYNIC__WINDOW_TIME);
  assert_int_equal(u->breaker.window_size_ns, 30 * SEC);
  assert_int_equal(u->breaker.window_min_calls, 10);
  assert_int_equal(u->breaker.failure_rate_pct, 50);
  assert_int_equal(u->breaker.slow_rate_pct, 100);
  assert_int_equal(u->breaker.slow_call_ns, 2 * SEC);
  assert_int_equal(u->breaker.open_max_ns, 30 * SEC); /* = open_for */
  cynic__config_free(cfg);
}

/* The http-only keys of a listener and an upstream's pool: bounds and names. */
static void test_http_keys_refused(void **state) {
  (void)state;
  static const struct {
    const char *listener, *upstream, *error;
  } cases[] = {
      {"    limits: { max_request_head: 512B }\n", "",
       "t.yaml:5:33: max_request_head: 512B is out of range; use 1KB..1MB"},
      {"    forwarded: x-real-ip\n", "", "t.yaml:5:16: forwarded: unknown value 'x-real-ip'; use one of: x-forwarded-for, "
       "forwarded, none"},
      {"    request_id_header: 'X Request'\n", "",
       "t.yaml:5:24: request_id_header: 'X Request' is not a header name"},
      {"    limits: { max_request_size: 1KB }\n", "",
       "t.yaml:5:15: unknown key 'max_request_size' in limits; valid keys: max_request_head, "
       "max_request_body"},
      {"", "    deadline_header: 'X:D'\n",
       "t.yaml:8:22: deadline_header: 'X:D' is not a header name (letters, digits and "
       "!#$%&'*+-.^_`|~ only), e.g. X-Deadline-Ms"},
      {"", "    retry: { idempotent_header: '' }\n",
       "t.yaml:8:33: idempotent_header: must be 1..64 bytes long, got 0"},
      {"    rate_limit: { per_client: 10/s, key_header: 'X Client' }\n    mode: http\n", "",
       "t.yaml:5:49: key_header: 'X Client' is not a header name (letters, digits and "
       "!#$%&'*+-.^_`|~ only), e.g. X-Forwarded-For"},
      {"    rate_limit: { per_client: 10/s, key_header: X-Client }\n", "",
       "t.yaml:5:49: key_header: 'X-Client' needs mode: http"},
      {"", "    expect: { status: 600 }\n",
       "t.yaml:8:23: status: '600' is not a status range; write e.g. 200-499 or 200"},
      {"", "    expect: { status: 300-200 }\n",
       "t.yaml:8:23: status: '300-200' is not a status range; write e.g. 200-499 or 200"},
      {"", "    expect: { status: 200-30 }\n",
       "t.yaml:8:23: status: '200-30' is not a status range"},
      {"", "    pool: { max_idle: 10001 }\n", "t.yaml:8:23: max_idle: 10001 is out of range; use 0..10000"},
      {"", "    pool: { idle_timeout: 0s }\n", "t.yaml:8:27: idle_timeout: 0s is out of range; use 1ms..1h"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char text[1024];
    snprintf(text, sizeof text,
             "listeners:\n  - name: l\n    listen: 127.0.0.1:8080\n    upstream: u\n%s"
             "upstreams:\n  - name: u\n    endpoints: [127.0.0.1:9000]\n%s",
             cases[i].listener, cases[i].upstream);
    const char *line = parse_bad(text);
    if (strncmp(line, cases[i].error, strlen(cases[i].error)) != 0)
      fail_msg("case %zu: got \"%s\", want it to start with \"%s\"", i, line, cases[i].error);
  }
}

/* health_check: every bound and rule refused with its position and a fix. */
static void test_health_check_refused(void **state) {
  (void)state;
  static const struct {
    const char *upstream, *error;
  } cases[] = {
      {"    health_check: { interval: 50ms }\n",
       "t.yaml:8:31: interval: 50ms is out of range; use 100ms..1h"},
      {"    health_check: { interval: 2h }\n",
       "t.yaml:8:31: interval: 2h is out of range; use 100ms..1h"},
      {"    health_check: { interval: 1s, timeout: 2s }\n",
       "t.yaml:8:44: timeout: longer than interval"},
      {"    health_check: { timeout: 0s }\n",
       "t.yaml:8:30: timeout: 0s is out of range; use 1ms..1h"},
      {"    health_check: { path: healthz }\n",
       "t.yaml:8:27: path: 'healthz' is not a request path"},
      {"    health_check: { path: '/a b' }\n", "t.yaml:8:27: path: '/a b' is not a request path"},
      {"    health_check: { healthy_after: 0 }\n",
       "t.yaml:8:36: healthy_after: 0 is out of range; use 1..100"},
      {"    health_check: { unhealthy_after: 101 }\n",
       "t.yaml:8:38: unhealthy_after: 101 is out of range; use 1..100"},
      {"    health_check: { path: /h, expect: { status: 2xx } }\n",
       "t.yaml:8:49: status: '2xx' is not a status range"},
      {"    health_check: { path: /h, expect: { status: 99-200 } }\n",
       "t.yaml:8:49: status: '99-200' is not a status range; write e.g. 200-299 or 200"},
      {"    health_check: { path: /h, expect: { content_type: json } }\n",
       "t.yaml:8:55: content_type: 'json' is not a media type"},
      {"    health_check: { expect: { status: 200 } }\n",
       "t.yaml:8:29: expect: a check without 'path' is a TCP connect"},
      {"    health_check: { host: 'a b' }\n", "t.yaml:8:27: host: 'a b' is not a Host header"},
      {"    health_check: { paht: /h }\n",
       "t.yaml:8:21: unknown key 'paht' in health_check; valid keys: path, interval"},
      {"    health_check: { path: /h, expect: { body: '' } }\n",
       "t.yaml:8:47: body: must be 1..256 bytes long, got 0"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char text[1024];
    snprintf(text, sizeof text, "%s%s", minimal, cases[i].upstream);
    const char *line = parse_bad(text);
    if (strncmp(line, cases[i].error, strlen(cases[i].error)) != 0)
      fail_msg("case %zu: got \"%s\", want it to start with \"%s\"", i, line, cases[i].error);
  }
}

static void test_health_check_defaults(void **state) {
  (void)state;
  char text[1024];
  snprintf(text, sizeof text, "%s    health_check: {}\n", minimal);
  cynic__config_t *cfg = parse_ok(text);
  const cynic__config_health_t *h = &cfg->upstreams[0].health;
  assert_true(h->enabled);
  assert_null(h->path); /* a TCP connect */
  assert_null(h->host);
  assert_int_equal(h->interval_ns, 5 * SEC);
  assert_int_equal(h->timeout_ns, SEC);
  assert_int_equal(h->expect_status_min, 200);
  assert_int_equal(h->expect_status_max, 299);
  assert_null(h->expect_content_type);
  assert_null(h->expect_body);
  assert_int_equal(h->healthy_after, 2);
  assert_int_equal(h->unhealthy_after, 3);
  cynic__config_free(cfg);
  /* the default timeout never outlasts a shorter interval */
  snprintf(text, sizeof text, "%s    health_check: { path: /h, interval: 200ms }\n", minimal);
  cfg = parse_ok(text);
  assert_int_equal(cfg->upstreams[0].health.timeout_ns, 200 * MS);
  /* the part's own copy and comparison (health.c keeps one) */
  cynic__config_health_t *c = cynic__config_health_copy(&cfg->upstreams[0].health);
  assert_non_null(c);
  assert_ptr_not_equal(c->path, cfg->upstreams[0].health.path);
  assert_int_equal(cynic__config_health_diff(c, &cfg->upstreams[0].health), 0);
  c->interval_ns++;
  assert_int_not_equal(cynic__config_health_diff(c, &cfg->upstreams[0].health), 0);
  cynic__config_health_free(c);
  cynic__config_health_free(NULL);
  cynic__config_free(cfg);
}

/* pool.max_idle defaults to the upstream's bulkhead.max_connections (every
 * connection busy at once may wait for the next request), at most 10000; a
 * value given wins either way. */
static void test_pool_max_idle_follows_the_bulkhead(void **state) {
  (void)state;
  static const struct {
    const char *extra;
    uint32_t want;
  } cases[] = {
      {"", 100},
      {"    bulkhead: { max_connections: 7 }\n", 7},
      {"    bulkhead: { max_connections: 250000 }\n", 10000},
      {"    bulkhead: { max_connections: 7 }\n    pool: { max_idle: 30 }\n", 30},
      {"    pool: { max_idle: 0 }\n    bulkhead: { max_connections: 500 }\n", 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char text[1024];
    snprintf(text, sizeof text, "%s%s", minimal, cases[i].extra);
    cynic__config_t *cfg = parse_ok(text);
    assert_int_equal(cfg->upstreams[0].http.pool_max_idle, cases[i].want);
    cynic__config_free(cfg);
  }
}

static void test_retry_and_fallback_defaults(void **state) {
  (void)state;
  char text[1024];
  snprintf(text, sizeof text, "%s    retry: {}\n    fallback: { status: 502 }\n", minimal);
  cynic__config_t *cfg = parse_ok(text);
  const cynic__config_http_t *h = &cfg->upstreams[0].http;
  assert_true(h->has_retry);
  assert_int_equal(h->retry_attempts, 2);
  assert_int_equal(h->retry_backoff_min_ns, 50 * MS);
  assert_int_equal(h->retry_backoff_max_ns, SEC);
  assert_int_equal(h->retry_budget_pct, 20);
  assert_int_equal(h->fallback_status, 502);
  assert_null(h->fallback_body);
  assert_string_equal(h->fallback_content_type, "text/plain");
  cynic__config_free(cfg);
}

static void test_fallback_kinds_and_their_defaults(void **state) {
  (void)state;
  char text[2048];
  /* the static kind alone: order [static], no stale */
  snprintf(text, sizeof text, "%s    fallback: { status: 503 }\n", minimal);
  cynic__config_t *cfg = parse_ok(text);
  const cynic__config_http_t *h = &cfg->upstreams[0].http;
  assert_true(h->fallback_static);
  assert_false(h->fallback_stale);
  assert_null(h->fallback_headers);
  assert_int_equal(h->fallback_kinds, 1);
  assert_int_equal(h->fallback_order[0], CYNIC__FALLBACK_STATIC);
  cynic__config_free(cfg);
  /* stale with its defaults, headers rendered once, the default order */
  snprintf(text, sizeof text,
           "%s    fallback:\n      status: 200\n      headers: { X-A: one, cache-control: "
           "\"no-store\" }\n      stale:\n",
           minimal);
  cfg = parse_ok(text);
  h = &cfg->upstreams[0].http;
  assert_true(h->fallback_stale);
  assert_int_equal(h->stale_max_entries, 1000);
  assert_int_equal(h->stale_max_bytes, 16u << 20);
  assert_int_equal(h->stale_max_entry_bytes, 1u << 20);
  assert_int_equal(h->stale_max_age_ns, 300 * SEC);
  assert_string_equal(h->fallback_headers, "X-A: one\r\ncache-control: no-store\r\n");
  assert_int_equal(h->fallback_kinds, 2);
  assert_int_equal(h->fallback_order[0], CYNIC__FALLBACK_STALE);
  assert_int_equal(h->fallback_order[1], CYNIC__FALLBACK_STATIC);
  cynic__config_free(cfg);
  /* stale alone needs no status; its bounds; a small cache's entry default */
  snprintf(text, sizeof text,
           "%s    fallback: { stale: { max_entries: 10, max_bytes: 128KB, max_age: 30s } }\n",
           minimal);
  cfg = parse_ok(text);
  h = &cfg->upstreams[0].http;
  assert_false(h->fallback_static);
  assert_int_equal(h->stale_max_entries, 10);
  assert_int_equal(h->stale_max_bytes, 128 * 1024);
  assert_int_equal(h->stale_max_entry_bytes, 64 * 1024); /* half of max_bytes */
  assert_int_equal(h->stale_max_age_ns, 30 * SEC);
  assert_int_equal(h->fallback_kinds, 1);
  cynic__config_free(cfg);
}

typedef struct duration_case {
  const char *in;
  int rc;
  uint64_t ns;
} duration_case_t;

/* The static answer's bounds, each at its limit and one past it: headers
 * (CYNIC__CONFIG_MAX_FALLBACK_HEADERS of them), one header's name and value
 * (CYNIC__CONFIG_MAX_FALLBACK_HEADER bytes), the body (CYNIC__CONFIG_MAX_BODY). */
static void test_fallback_bounds(void **state) {
  (void)state;
  size_t cap = 4 * CYNIC__CONFIG_MAX_BODY;
  char *text = malloc(cap), *big = malloc(CYNIC__CONFIG_MAX_BODY + 2);
  assert_non_null(text);
  assert_non_null(big);
  for (int over = 0; over <= 1; over++) {
    /* headers: { X-0: v, X-1: v, ... } */
    int n = snprintf(text, cap, "%s    fallback:\n      status: 503\n      headers: {", minimal);
    for (int i = 0; i < CYNIC__CONFIG_MAX_FALLBACK_HEADERS + over; i++)
      n += snprintf(text + n, cap - (size_t)n, "%sX-%d: v", i > 0 ? ", " : " ", i);
    snprintf(text + n, cap - (size_t)n, " }\n");
    if (over) {
      assert_string_equal(parse_bad(text), "t.yaml:10:16: headers: 33 headers; the limit is 32");
    } else {
      cynic__config_t *cfg = parse_ok(text);
      assert_int_equal(strlen(cfg->upstreams[0].http.fallback_headers), 10 * 8 + 22 * 9);
      cynic__config_free(cfg);
    }
    /* one header whose name, then value, is at the limit or one byte past it
     * (a long name as an explicit key: YAML's implicit ones stop at 1024) */
    memset(big, 'n', CYNIC__CONFIG_MAX_FALLBACK_HEADER + 1);
    big[CYNIC__CONFIG_MAX_FALLBACK_HEADER + (size_t)over] = '\0';
    snprintf(text, cap,
             "%s    fallback:\n      status: 503\n      headers:\n        ? %s\n        : v\n",
             minimal, big);
    if (over)
      assert_memory_equal(parse_bad(text), "t.yaml:11:11: headers: 'nnn", 27);
    else
      cynic__config_free(parse_ok(text));
    snprintf(text, cap, "%s    fallback: { status: 503, headers: { X-A: %s } }\n", minimal, big);
    if (over)
      assert_string_equal(parse_bad(text), "t.yaml:8:46: headers: the value of 'X-A' must be at "
                                           "most 1024 bytes without control characters (CR, LF) "
                                           "or spaces at either end");
    else
      cynic__config_free(parse_ok(text));
    /* the body */
    memset(big, 'b', CYNIC__CONFIG_MAX_BODY + 1);
    big[CYNIC__CONFIG_MAX_BODY + (size_t)over] = '\0';
    snprintf(text, cap, "%s    fallback: { status: 503, body: %s }\n", minimal, big);
    if (over) {
      assert_string_equal(parse_bad(text), "t.yaml:8:36: body: 65537 bytes; the limit is 65536");
    } else {
      cynic__config_t *cfg = parse_ok(text);
      assert_int_equal(cfg->upstreams[0].http.fallback_body_len, CYNIC__CONFIG_MAX_BODY);
      cynic__config_free(cfg);
    }
  }
  free(big);
  free(text);
}

static void test_parse_duration(void **state) {
  (void)state;
  static const duration_case_t cases[] = {
      {"0", 0, 0},
      {"0s", 0, 0},
      {"1us", 0, 1000},
      {"250ms", 0, 250 * MS},
      {"10s", 0, 10 * SEC},
      {"2m", 0, 120 * SEC},
      {"1h", 0, 3600 * SEC},
      {"007s", 0, 7 * SEC},
      {"18446744073us", 0, UINT64_C(18446744073000)},
      {"5124095h", 0, UINT64_C(5124095) * 3600 * SEC}, /* the largest whole hour that fits */
      {"5124096h", CYNIC_ERANGE, 0},
      {"18446744073709551615us", CYNIC_ERANGE, 0},
      {"99999999999999999999ms", CYNIC_ERANGE, 0},
      {"-1s", CYNIC_ERANGE, 0},
      {"", CYNIC_EINVAL, 0},
      {"250", CYNIC_EINVAL, 0},
      {"1.5s", CYNIC_EINVAL, 0},
      {"ms", CYNIC_EINVAL, 0},
      {"10 s", CYNIC_EINVAL, 0},
      {"10S", CYNIC_EINVAL, 0},
      {"10sec", CYNIC_EINVAL, 0},
      {"10ns", CYNIC_EINVAL, 0},
      {"1d", CYNIC_EINVAL, 0},
      {"+5s", CYNIC_EINVAL, 0},
      {"1m30s", CYNIC_EINVAL, 0},
      {"0x10s", CYNIC_EINVAL, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint64_t ns = 12345;
    char hint[192] = "";
    int rc = cynic__config_parse_duration(cases[i].in, &ns, hint, sizeof hint);
    if (rc != cases[i].rc)
      fail_msg("duration '%s': rc %d, want %d (%s)", cases[i].in, rc, cases[i].rc, hint);
    if (rc == 0)
      assert_int_equal(ns, cases[i].ns);
    else
      assert_true(hint[0] != '\0');
  }
  char hint[192];
  uint64_t ns;
  cynic__config_parse_duration("250", &ns, hint, sizeof hint);
  assert_string_equal(hint, "'250' has no unit; add a unit, e.g. 250ms");
  cynic__config_parse_duration("10sec", &ns, hint, sizeof hint);
  assert_string_equal(hint, "'10sec': unknown unit 'sec'; use us, ms, s, m or h");
}

typedef struct size_case {
  const char *in;
  int rc;
  uint64_t bytes;
} size_case_t;

static void test_parse_size(void **state) {
  (void)state;
  static const size_case_t cases[] = {
      {"0", 0, 0},
      {"512B", 0, 512},
      {"64KB", 0, 64 * KB},
      {"10MB", 0, 10 * MB},
      {"1GB", 0, GB},
      {"64KiB", 0, 64 * KB},
      {"3MiB", 0, 3 * MB},
      {"2GiB", 0, 2 * GB},
      {"17179869183GB", 0, UINT64_C(17179869183) * GB},
      {"17179869184GB", CYNIC_ERANGE, 0},
      {"18446744073709551616B", CYNIC_ERANGE, 0},
      {"-1KB", CYNIC_ERANGE, 0},
      {"", CYNIC_EINVAL, 0},
      {"1024", CYNIC_EINVAL, 0},
      {"64kb", CYNIC_EINVAL, 0},
      {"64K", CYNIC_EINVAL, 0},
      {"1.5MB", CYNIC_EINVAL, 0},
      {"1TB", CYNIC_EINVAL, 0},
      {"MB", CYNIC_EINVAL, 0},
      {"64 KB", CYNIC_EINVAL, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint64_t bytes = 12345;
    char hint[192] = "";
    int rc = cynic__config_parse_size(cases[i].in, &bytes, hint, sizeof hint);
    if (rc != cases[i].rc)
      fail_msg("size '%s': rc %d, want %d (%s)", cases[i].in, rc, cases[i].rc, hint);
    if (rc == 0)
      assert_int_equal(bytes, cases[i].bytes);
  }
}

typedef struct percent_case {
  const char *in;
  int rc;
  uint32_t pct;
} percent_case_t;

static void test_parse_percent(void **state) {
  (void)state;
  static const percent_case_t cases[] = {
      {"0%", 0, 0},
      {"20%", 0, 20},
      {"100%", 0, 100},
      {"101%", CYNIC_ERANGE, 0},
      {"99999999999999999999%", CYNIC_ERANGE, 0},
      {"-5%", CYNIC_ERANGE, 0},
      {"20", CYNIC_EINVAL, 0},
      {"12.5%", CYNIC_EINVAL, 0},
      {"%", CYNIC_EINVAL, 0},
      {"", CYNIC_EINVAL, 0},
      {"20%%", CYNIC_EINVAL, 0},
      {"0.2", CYNIC_EINVAL, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint32_t pct = 12345;
    char hint[192] = "";
    int rc = cynic__config_parse_percent(cases[i].in, &pct, hint, sizeof hint);
    if (rc != cases[i].rc)
      fail_msg("percent '%s': rc %d, want %d (%s)", cases[i].in, rc, cases[i].rc, hint);
    if (rc == 0)
      assert_int_equal(pct, cases[i].pct);
  }
}

/* Errors name the file, line and column of the value at fault. */
static void test_error_positions(void **state) {
  (void)state;
  assert_string_equal(parse_bad("listeners:\n"
                                "  - name: l\n"
                                "    listen: 127.0.0.1:8080\n"
                                "    upstream: u\n"
                                "    buffer: 64\n"
                                "upstreams:\n"
                                "  - name: u\n"
                                "    endpoints: [127.0.0.1:9000]\n"),
                      "t.yaml:5:13: buffer: '64' has no unit; add a unit, e.g. 64KB");
  assert_string_equal(parse_bad(""), "t.yaml: the config is empty; it needs at least 'listeners' "
                                     "and 'upstreams' (see examples/quickstart.yaml)");
  assert_string_equal(parse_bad("a: &x 1\n"),
                      "t.yaml:1:4: YAML anchors (&x) are not supported; write values out in full");
  assert_string_equal(parse_bad("- 1\n"),
                      "t.yaml:1:1: the config must be a mapping of keys to values, got a list");
}

/* Every error is collected, sorted by position, and capped. */
static void test_errors_collected_and_capped(void **state) {
  (void)state;
  char text[8192];
  size_t n = (size_t)snprintf(text, sizeof text, "%s", minimal);
  for (int i = 0; i < 30; i++)
    n += (size_t)snprintf(text + n, sizeof text - n, "    bogus%d: 1\n", i);
  parse_bad(text);
  assert_int_equal(errs.count, CYNIC__CONFIG_MAX_ERRORS);
  assert_true(errs.truncated);
  for (size_t i = 1; i < errs.count; i++)
    assert_true(errs.list[i - 1].mark.line <= errs.list[i].mark.line);
  assert_int_equal(errs.list[0].mark.line, 8);
}

static void test_bounds_on_input(void **state) {
  (void)state;
  /* larger than 1 MiB: refused before parsing */
  size_t big = CYNIC__CONFIG_MAX_FILE_BYTES + 1;
  char *text = malloc(big);
  assert_non_null(text);
  memset(text, '#', big);
  cynic__config_t *cfg = NULL;
  assert_int_equal(cynic__config_parse("t.yaml", text, big, &cfg, &errs), CYNIC_EINVAL);
  assert_null(cfg);
  assert_non_null(strstr(errs.list[0].message, "larger than 1 MiB"));
  /* too deep */
  size_t n = 0;
  for (int i = 0; i < 100; i++)
    text[n++] = '[';
  for (int i = 0; i < 100; i++)
    text[n++] = ']';
  assert_int_equal(cynic__config_parse("t.yaml", text, n, &cfg, &errs), CYNIC_EINVAL);
  assert_non_null(strstr(errs.list[0].message, "nested more than 32 levels"));
  /* too many nodes */
  n = 0;
  text[n++] = '[';
  for (int i = 0; i < 200000; i++) {
    text[n++] = '1';
    text[n++] = ',';
  }
  text[n++] = ']';
  assert_int_equal(cynic__config_parse("t.yaml", text, n, &cfg, &errs), CYNIC_EINVAL);
  assert_non_null(strstr(errs.list[0].message, "too many YAML nodes"));
  free(text);
}

static void test_load_missing_file(void **state) {
  (void)state;
  cynic__config_t *cfg = NULL;
  assert_int_equal(cynic__config_load("/nonexistent/cynic.yaml", &cfg, &errs), CYNIC_EINVAL);
  assert_null(cfg);
  char line[512];
  cynic__config_error_format(&errs, 0, line, sizeof line);
  assert_string_equal(line, "/nonexistent/cynic.yaml: cannot open: No such file or directory");
}

/* One parser for every count and one for every number: the documented
 * rules (no sign, no exponent, no hex) hold for each key alike. */
static void test_parse_count_and_number(void **state) {
  (void)state;
  static const struct {
    const char *in;
    int rc;
  } counts[] = {{"0", 0},
                {"100", 0},
                {"1000000", 0},
                {"0x10", CYNIC_EINVAL},
                {"1e2", CYNIC_EINVAL},
                {"+3", CYNIC_EINVAL},
                {"-3", CYNIC_EINVAL},
                {"1.5", CYNIC_EINVAL},
                {"", CYNIC_EINVAL},
                {"3 ", CYNIC_EINVAL},
                {"1000001", CYNIC_ERANGE},
                {"99999999999999999999999", CYNIC_ERANGE}};
  for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
    uint64_t v = 0;
    char hint[192] = "";
    int rc = cynic__config_parse_count(counts[i].in, 0, 1000000, &v, hint, sizeof hint);
    if (rc != counts[i].rc)
      fail_msg("count '%s': rc %d, want %d (%s)", counts[i].in, rc, counts[i].rc, hint);
  }
  static const struct {
    const char *in;
    int rc;
    double v;
  } numbers[] = {{"1", 0, 1.0},
                 {"1.5", 0, 1.5},
                 {"100", 0, 100.0},
                 {"2.25", 0, 2.25},
                 {"0x10", CYNIC_EINVAL, 0},
                 {"1e2", CYNIC_EINVAL, 0},
                 {"1E2", CYNIC_EINVAL, 0},
                 {"+3", CYNIC_EINVAL, 0},
                 {"-3", CYNIC_EINVAL, 0},
                 {"inf", CYNIC_EINVAL, 0},
                 {"nan", CYNIC_EINVAL, 0},
                 {".5", CYNIC_EINVAL, 0},
                 {"2.", CYNIC_EINVAL, 0},
                 {"1,5", CYNIC_EINVAL, 0},
                 {"1.0000000001", CYNIC_EINVAL, 0},
                 {"0.5", CYNIC_ERANGE, 0},
                 {"100.5", CYNIC_ERANGE, 0},
                 {"99999999999999999999999", CYNIC_ERANGE, 0}};
  for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++) {
    double v = -1;
    char hint[192] = "";
    int rc = cynic__config_parse_number(numbers[i].in, 1, 100, &v, hint, sizeof hint);
    if (rc != numbers[i].rc)
      fail_msg("number '%s': rc %d, want %d (%s)", numbers[i].in, rc, numbers[i].rc, hint);
    if (rc == 0)
      assert_true(v == numbers[i].v);
  }
  char text[1024];
  snprintf(text, sizeof text, "%s    breaker: { open_multiplier: 0x10 }\n", minimal);
  assert_string_equal(parse_bad(text),
                      "t.yaml:8:33: open_multiplier: '0x10' is hexadecimal; write it in decimal, "
                      "in 1..100; e.g. 2 doubles the open period after each failed probe");
  snprintf(text, sizeof text, "%s    breaker: { open_multiplier: 1e2 }\n", minimal);
  assert_string_equal(parse_bad(text),
                      "t.yaml:8:33: open_multiplier: '1e2' has an exponent; write all the digits, "
                      "in 1..100; e.g. 2 doubles the open period after each failed probe");
  /* A percentage outside the key's range names the range (get_percent). */
  snprintf(text, sizeof text, "%s    breaker: { window: { type: count, failure_rate: 0%% } }\n",
           minimal);
  assert_string_equal(parse_bad(text),
                      "t.yaml:8:53: failure_rate: 0% is out of range; use 1%..100%");
  snprintf(text, sizeof text, "%s    breaker: { faults: +3 }\n", minimal);
  assert_string_equal(
      parse_bad(text),
      "t.yaml:8:24: faults: '+3' has a sign; write the digits alone, in 1..1000000");
}

/* A config is UTF-8: a UTF-16/32 byte order mark or a NUL byte is refused
 * with a position (libyaml would decode UTF-16 itself). */
static void test_config_must_be_utf8(void **state) {
  (void)state;
  cynic__config_t *cfg = NULL;
  char u16[256];
  size_t n = 0;
  u16[n++] = '\xff';
  u16[n++] = '\xfe';
  for (const char *p = "listeners: []\n"; *p; p++) {
    u16[n++] = *p;
    u16[n++] = '\0';
  }
  assert_int_equal(cynic__config_parse("t.yaml", u16, n, &cfg, &errs), CYNIC_EINVAL);
  char line[512];
  cynic__config_error_format(&errs, 0, line, sizeof line);
  assert_string_equal(line, "t.yaml:1:1: the file is UTF-16 (it starts with a UTF-16 byte order "
                            "mark); a config must be UTF-8: convert it with iconv -f UTF-16 -t "
                            "UTF-8");
  static const char u32[] = "\xff\xfe\0\0l\0\0\0";
  assert_int_equal(cynic__config_parse("t.yaml", u32, sizeof u32 - 1, &cfg, &errs), CYNIC_EINVAL);
  cynic__config_error_format(&errs, 0, line, sizeof line);
  assert_non_null(strstr(line, "t.yaml:1:1: the file is UTF-32"));
  static const char nul[] = "# \xc3\xa9\nlisteners: [\0]\n";
  assert_int_equal(cynic__config_parse("t.yaml", nul, sizeof nul - 1, &cfg, &errs), CYNIC_EINVAL);
  cynic__config_error_format(&errs, 0, line, sizeof line);
  assert_string_equal(line, "t.yaml:2:13: a NUL byte; a config must be UTF-8 text without NUL "
                            "bytes (UTF-16 or UTF-32 has them: convert it with iconv -t UTF-8)");
  assert_null(cfg);
}

/* Loading reads regular files only, never waits on a FIFO, never reads a
 * device: /dev/zero would otherwise be read to the cap. */
static void test_load_refuses_what_is_not_a_regular_file(void **state) {
  (void)state;
  char dir[] = "/tmp/cynic-test-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char fifo[64];
  snprintf(fifo, sizeof fifo, "%s/fifo.yaml", dir);
  assert_int_equal(mkfifo(fifo, 0600), 0);
  static const struct {
    const char *path;
    const char *words;
  } cases[] = {{NULL, "is a FIFO (named pipe), not a regular file"},
               {"/dev/zero", "is a device, not a regular file"},
               {"/tmp", "is a directory, not a regular file"}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *path = cases[i].path ? cases[i].path : fifo;
    cynic__config_t *cfg = NULL;
    assert_int_equal(cynic__config_load(path, &cfg, &errs), CYNIC_EINVAL);
    assert_null(cfg);
    char line[512], want[512];
    cynic__config_error_format(&errs, 0, line, sizeof line);
    snprintf(want, sizeof want, "%s: %s; give the path of a regular file", path, cases[i].words);
    assert_string_equal(line, want);
  }
  unlink(fifo);
  rmdir(dir);
}

typedef struct addr_case {
  const char *listen;   /* the listener's listen value, YAML-quoted */
  const char *endpoint; /* the upstream's endpoint, YAML-quoted */
  const char *error;    /* NULL: good; else a substring of the first error */
} addr_case_t;

static void test_addresses(void **state) {
  (void)state;
  static const addr_case_t cases[] = {
      {"'127.0.0.1:8080'", "'127.0.0.1:9000'", NULL},
      {"'0.0.0.0:8080'", "'10.0.0.1:1'", NULL},
      {"'[::1]:8080'", "'[2001:db8::1]:65535'", NULL},
      {"'[::]:0'", "'db-1.internal:5432'", NULL},
      {"'127.0.0.1:8080'", "'Db_2:5432'", NULL},
      {"'8080'", "'127.0.0.1:9000'", "has no address"},
      {"':8080'", "'127.0.0.1:9000'", "has no address"},
      {"'127.0.0.1'", "'127.0.0.1:9000'", "has no port"},
      {"'127.0.0.1:'", "'127.0.0.1:9000'", "has no valid port"},
      {"'127.0.0.1:80x'", "'127.0.0.1:9000'", "has no valid port"},
      {"'127.0.0.1:99999999999999999999'", "'127.0.0.1:9000'", "out of range"},
      {"'127.0.0.1:65536'", "'127.0.0.1:9000'", "out of range"},
      /* addr.c's form: at most 5 port digits, as everywhere else */
      {"'127.0.0.1:000080'", "'127.0.0.1:9000'", "has no valid port"},
      {"'localhost:8080'", "'127.0.0.1:9000'", "is a host name"},
      {"'1.2.3:8080'", "'127.0.0.1:9000'", "not a valid IPv4 address"},
      {"'256.0.0.1:8080'", "'127.0.0.1:9000'", "not a valid IPv4 address"},
      {"'::1:8080'", "'127.0.0.1:9000'", "needs brackets"},
      {"'[::1]8080'", "'127.0.0.1:9000'", "has no port"},
      {"'[::1:8080'", "'127.0.0.1:9000'", "no closing ']'"},
      {"'[fe80::1%eth0]:80'", "'127.0.0.1:9000'", "not a valid IPv6 address"},
      {"'127.0.0.1:8080'", "'127.0.0.1:0'", "use 1..65535"},
      {"'127.0.0.1:8080'", "'-bad.example:80'", "not a valid IPv4 address or host name"},
      {"'127.0.0.1:8080'", "'a..b:80'", "not a valid IPv4 address or host name"},
      {"'127.0.0.1:8080'", "'300.1.1.1:80'", "not a valid IPv4 address or host name"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char text[512];
    snprintf(text, sizeof text,
             "listeners: [{name: l, listen: %s, upstream: u}]\n"
             "upstreams: [{name: u, endpoints: [%s]}]\n",
             cases[i].listen, cases[i].endpoint);
    cynic__config_t *cfg = NULL;
    int rc = cynic__config_parse("t.yaml", text, strlen(text), &cfg, &errs);
    if (cases[i].error == NULL) {
      if (rc != 0)
        fail_msg("%s / %s: %s", cases[i].listen, cases[i].endpoint, errs.list[0].message);
      cynic__config_free(cfg);
    } else {
      if (rc == 0)
        fail_msg("%s / %s: accepted, want '%s'", cases[i].listen, cases[i].endpoint,
                 cases[i].error);
      if (strstr(errs.list[0].message, cases[i].error) == NULL)
        fail_msg("%s / %s: '%s' lacks '%s'", cases[i].listen, cases[i].endpoint,
                 errs.list[0].message, cases[i].error);
    }
  }
}

static void test_print_errors(void **state) {
  (void)state;
  parse_bad("listeners: 1\nupstreams: 2\n");
  char *buf = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&buf, &len);
  assert_non_null(out);
  cynic__config_errors_print(&errs, out);
  fclose(out);
  assert_string_equal(buf, "t.yaml:1:12: listeners: expected a list (lines starting with '- '), "
                           "got a single value\n"
                           "t.yaml:2:12: upstreams: expected a list (lines starting with '- '), "
                           "got a single value\n");
  free(buf);
}

/* tcp_keepalive, and `keepalive`, its old name: still loaded, with where it
 * was used, for the daemon's deprecation warning; both at once is an error. */
static void test_tcp_keepalive_and_its_old_name(void **state) {
  (void)state;
  static const char base[] = "listeners:\n"
                             "  - name: l\n"
                             "    listen: 127.0.0.1:8080\n"
                             "    upstream: u\n"
                             "upstreams:\n"
                             "  - name: u\n"
                             "    endpoints: [127.0.0.1:9000]\n";
  char text[512];
  snprintf(text, sizeof text, "%s    tcp_keepalive: { idle: 17s, probes: 4 }\n", base);
  cynic__config_t *cfg = parse_ok(text);
  assert_int_equal(cfg->upstreams[0].keepalive_idle_ns, 17 * SEC);
  assert_int_equal(cfg->upstreams[0].keepalive_probes, 4);
  assert_int_equal(cfg->upstreams[0].keepalive_old_name.line, 0);
  cynic__config_free(cfg);

  snprintf(text, sizeof text, "%s    keepalive: { idle: 17s, probes: 4 }\n", base);
  cfg = parse_ok(text);
  assert_int_equal(cfg->upstreams[0].keepalive_idle_ns, 17 * SEC);
  assert_int_equal(cfg->upstreams[0].keepalive_probes, 4);
  assert_int_equal(cfg->upstreams[0].keepalive_old_name.line, 8);
  assert_int_equal(cfg->upstreams[0].keepalive_old_name.column, 5);
  cynic__config_free(cfg);

  snprintf(text, sizeof text, "%s    tcp_keepalive: { idle: 17s }\n    keepalive: { idle: 9s }\n",
           base);
  assert_string_equal(parse_bad(text), "t.yaml:9:5: keepalive: the old name of tcp_keepalive; "
                                       "give only tcp_keepalive");
  snprintf(text, sizeof text, "%s    tcp_keepalive: { idle: 1500ms }\n", base);
  assert_string_equal(parse_bad(text),
                      "t.yaml:8:28: idle: TCP_KEEPIDLE counts whole seconds; write e.g. 60s");
}

/* ---- copy and compare (config_copy.c) ---------------------------------------- */

/* Every member of each struct is in config_copy.c's list: walked in order, the
 * listed members tile the struct with nothing between them but the padding
 * their alignment needs, and nothing after the last but the struct's own. A
 * member added to config.h and not to the list leaves a gap (or moves the
 * end) and fails here. (A bool that falls into existing padding would not
 * show; sizeof would not change either. Rare, and the gap check catches every
 * other case.) */
static void test_field_lists_cover_their_structs(void **state) {
  (void)state;
  static const char *const names[] = {"addr", "listener", "breaker", "http",
                                      "upstream", "log", "admin", "health", "tls"};
  for (int part = 0; part < CYNIC__PART_COUNT; part++) {
    size_t count, size, end = 0, max_align = 1;
    const cynic__config_field_t *f = cynic__config_fields(part, &count, &size);
    assert_true(count > 0);
    for (size_t i = 0; i < count; i++) {
      size_t at = (end + f[i].align - 1) / f[i].align * f[i].align;
      if (f[i].offset != at)
        fail_msg("%s.%s is at %zu, expected %zu: a member before it is not listed in "
                 "config_copy.c",
                 names[part], f[i].name, f[i].offset, at);
      end = f[i].offset + f[i].size;
      if (f[i].align > max_align)
        max_align = f[i].align;
    }
    size_t total = (end + max_align - 1) / max_align * max_align;
    if (total != size)
      fail_msg("%s: members listed end at %zu, the struct is %zu bytes: a member after '%s' "
               "is not listed in config_copy.c",
               names[part], total, size, f[count - 1].name);
  }
}

static const cynic__config_field_t *part_fields(cynic__config_kind_t kind, size_t *count) {
  size_t size;
  cynic__config_part_t part = kind == CYNIC__FIELD_BREAKER ? CYNIC__PART_BREAKER
                              : kind == CYNIC__FIELD_HTTP  ? CYNIC__PART_HTTP
                              : kind == CYNIC__FIELD_HEALTH ? CYNIC__PART_HEALTH
                              : kind == CYNIC__FIELD_TLS    ? CYNIC__PART_TLS
                                                           : CYNIC__PART_ADDR;
  return cynic__config_fields(part, count, &size);
}

/* `b` is a deep copy of `a` per the field list: equal values and strings,
 * and no pointer shared. */
static void assert_deep_copy(const cynic__config_field_t *f, size_t count, const void *a,
                             const void *b, const char *where) {
  for (size_t i = 0; i < count; i++) {
    const char *x = (const char *)a + f[i].offset, *y = (const char *)b + f[i].offset;
    switch (f[i].kind) {
    case CYNIC__FIELD_VALUE:
      if (memcmp(x, y, f[i].size) != 0)
        fail_msg("%s.%s: copy differs", where, f[i].name);
      break;
    case CYNIC__FIELD_STR: {
      const char *sx = *(char *const *)x, *sy = *(char *const *)y;
      if (sx == NULL) {
        assert_null(sy);
        break;
      }
      if (sy == NULL || sx == sy || strcmp(sx, sy) != 0)
        fail_msg("%s.%s: not a copy of its own ('%s')", where, f[i].name, sx);
      break;
    }
    case CYNIC__FIELD_ENDPOINTS: {
      const cynic__config_addr_t *lx = *(cynic__config_addr_t *const *)x;
      const cynic__config_addr_t *ly = *(cynic__config_addr_t *const *)y;
      size_t n = *(const size_t *)(x + sizeof lx), nf;
      assert_int_equal(n, *(const size_t *)(y + sizeof ly));
      assert_true(n > 0);
      assert_ptr_not_equal(lx, ly);
      const cynic__config_field_t *af = part_fields(f[i].kind, &nf);
      for (size_t k = 0; k < n; k++)
        assert_deep_copy(af, nf, &lx[k], &ly[k], f[i].name);
      break;
    }
    default: {
      size_t nf;
      const cynic__config_field_t *nfs = part_fields(f[i].kind, &nf);
      assert_deep_copy(nfs, nf, x, y, f[i].name);
      break;
    }
    }
  }
}

/* Changes one member (a different value or string) in place. Strings of a
 * deep copy are replaced (freed); `owned` false: the old one is left alone
 * (a shallow copy of a part embedded in a config) and the new one is leaked
 * into `keep` for the caller to free. */
static void change_member(const cynic__config_field_t *f, void *s, bool owned, char **keep) {
  char *at = (char *)s + f->offset;
  if (f->kind == CYNIC__FIELD_STR) {
    char **str = (char **)at;
    char *n = malloc(strlen(*str ? *str : "") + 2);
    assert_non_null(n);
    strcpy(n, *str ? *str : "");
    strcat(n, "x");
    if (owned)
      free(*str);
    else
      *keep = n;
    *str = n;
  } else {
    at[0] ^= 1; /* a different number, enum, bool, position or byte */
  }
}

typedef struct expected_change {
  const char *member; /* "listen", or "breaker.faults" for a nested one */
  unsigned change;
} expected_change_t;

/* Copies of `orig` with one member changed each (nested ones too) must
 * compare as that member's class; the copy itself compares equal (0). */
static void check_every_change(const cynic__config_field_t *f, size_t count, const void *orig,
                               void *(*copy)(const void *), void (*release)(void *),
                               unsigned (*diff)(const void *, const void *), size_t struct_size,
                               const expected_change_t *expect) {
  int seen = 0;
  for (size_t i = 0; i < count; i++) {
    size_t nf = 0;
    const cynic__config_field_t *nfs = NULL;
    if (f[i].kind != CYNIC__FIELD_VALUE && f[i].kind != CYNIC__FIELD_STR)
      nfs = part_fields(f[i].kind, &nf);
    for (size_t j = 0; j < (nfs ? nf : 1); j++) {
      char *keep = NULL;
      void *c = NULL;
      char shallow[1024];
      if (copy != NULL) {
        c = copy(orig);
        assert_non_null(c);
      } else {
        assert_true(struct_size <= sizeof shallow);
        memcpy(shallow, orig, struct_size);
        c = shallow;
      }
      assert_int_equal(diff(orig, c), 0);
      char name[128];
      unsigned want = f[i].change;
      if (nfs == NULL) {
        change_member(&f[i], c, copy != NULL, &keep);
        snprintf(name, sizeof name, "%s", f[i].name);
      } else {
        char *inner = (char *)c + f[i].offset;
        if (f[i].kind == CYNIC__FIELD_ENDPOINTS) /* the last endpoint */
          inner =
              (char *)(*(cynic__config_addr_t **)inner + (*(size_t *)(inner + sizeof(void *)) - 1));
        change_member(&nfs[j], inner, copy != NULL, &keep);
        if (nfs[j].change == CYNIC__CHANGE_NONE)
          want = CYNIC__CHANGE_NONE;
        snprintf(name, sizeof name, "%s.%s", f[i].name, nfs[j].name);
      }
      unsigned got = diff(orig, c);
      if (got != want)
        fail_msg("changing %s: diff %#x, expected %#x", name, got, want);
      if (want == CYNIC__CHANGE_NONE && strcmp(f[i].name, "mark") != 0 &&
          strcmp(f[i].name, "upstream") != 0 && strcmp(f[i].name, "keepalive_old_name") != 0 &&
          strstr(name, ".mark") == NULL && strstr(name, "_mark") == NULL)
        fail_msg("%s: only positions and derived indexes may go unnoticed", name);
      for (const expected_change_t *e = expect; e->member != NULL; e++)
        if (strcmp(e->member, name) == 0) {
          if (got != e->change)
            fail_msg("changing %s: diff %#x, reload needs %#x", name, got, e->change);
          seen++;
        }
      /* a value back as it was: a changed endpoint_count would free too few */
      if (nfs == NULL && f[i].kind == CYNIC__FIELD_VALUE)
        change_member(&f[i], c, true, &keep);
      if (copy != NULL)
        release(c);
      free(keep);
    }
  }
  int listed = 0;
  for (const expected_change_t *e = expect; e->member != NULL; e++)
    listed++;
  assert_int_equal(seen, listed); /* every expectation named a real member */
}

static void *listener_copy(const void *c) {
  return cynic__config_listener_copy(c);
}
static void listener_release(void *c) {
  cynic__config_listener_free(c);
}
static unsigned listener_diff(const void *a, const void *b) {
  return cynic__config_listener_diff(a, b);
}
static void *upstream_copy(const void *c) {
  return cynic__config_upstream_copy(c);
}
static void upstream_release(void *c) {
  cynic__config_upstream_free(c);
}
static unsigned upstream_diff(const void *a, const void *b) {
  return cynic__config_upstream_diff(a, b);
}
static unsigned log_diff(const void *a, const void *b) {
  return cynic__config_log_diff(a, b);
}
static unsigned admin_diff(const void *a, const void *b) {
  return cynic__config_admin_diff(a, b);
}

static void test_copies_are_deep_and_equal(void **state) {
  (void)state;
  cynic__config_t *cfg = parse_ok(full);
  cfg->listeners[0].access_log = strdup("/var/log/payments.log"); /* every string set */
  assert_non_null(cfg->listeners[0].access_log);
  size_t count, size;
  const cynic__config_field_t *f = cynic__config_fields(CYNIC__PART_LISTENER, &count, &size);
  for (size_t i = 0; i < cfg->listener_count; i++) {
    cynic__config_listener_t *c = cynic__config_listener_copy(&cfg->listeners[i]);
    assert_non_null(c);
    assert_deep_copy(f, count, &cfg->listeners[i], c, "listener");
    assert_int_equal(cynic__config_listener_diff(&cfg->listeners[i], c), 0);
    cynic__config_listener_free(c);
  }
  f = cynic__config_fields(CYNIC__PART_UPSTREAM, &count, &size);
  for (size_t i = 0; i < cfg->upstream_count; i++) {
    cynic__config_upstream_t *c = cynic__config_upstream_copy(&cfg->upstreams[i]);
    assert_non_null(c);
    assert_deep_copy(f, count, &cfg->upstreams[i], c, "upstream");
    assert_int_equal(cynic__config_upstream_diff(&cfg->upstreams[i], c), 0);
    cynic__config_upstream_free(c);
  }
  cynic__config_listener_free(NULL);
  cynic__config_upstream_free(NULL);
  cynic__config_free(cfg);
}

/* What reload.c does with each class is tested by test_admin_reload.py; here,
 * that each member reports the class reload acts on. The table below pins the
 * classes reload's decisions rest on. */
static void test_every_change_is_detected(void **state) {
  (void)state;
  cynic__config_t *cfg = parse_ok(full);
  cfg->listeners[0].access_log = strdup("/var/log/payments.log");
  assert_non_null(cfg->listeners[0].access_log);
  static const expected_change_t listener[] = {
      {"listen.text", CYNIC__CHANGE_ADDRESS},
      {"listen.port", CYNIC__CHANGE_ADDRESS},
      {"mode", CYNIC__CHANGE_REBUILD},
      {"buffer_bytes", CYNIC__CHANGE_REBUILD},
      {"upstream_name", CYNIC__CHANGE_ROUTE},
      {"max_connections", CYNIC__CHANGE_READ},
      {"max_connections_per_client", CYNIC__CHANGE_CLIENTS},
      {"idle_timeout_ns", CYNIC__CHANGE_READ},
      {"rate_count", CYNIC__CHANGE_RATE},
      {"rate_period_ns", CYNIC__CHANGE_RATE},
      {"rate_burst", CYNIC__CHANGE_RATE},
      {"access_log", CYNIC__CHANGE_ACCESSLOG},
      {"tls.enabled", CYNIC__CHANGE_READ}, /* tls.c: a new context at reload */
      {"tls.cert_file", CYNIC__CHANGE_READ},
      {"tls.ca_file", CYNIC__CHANGE_READ},
      {"tls.handshake_timeout_ns", CYNIC__CHANGE_READ},
      {"tls.mark", CYNIC__CHANGE_NONE},
      {"listen.mark", CYNIC__CHANGE_NONE},
      {"mark", CYNIC__CHANGE_NONE},
      {NULL, 0},
  };
  static const expected_change_t upstream[] = {
      {"endpoints.text", CYNIC__CHANGE_REBUILD},
      {"endpoint_count", CYNIC__CHANGE_REBUILD},
      {"breaker.faults", CYNIC__CHANGE_REBUILD},
      {"breaker.open_multiplier", CYNIC__CHANGE_REBUILD},
      {"breaker.slow_call_ns", CYNIC__CHANGE_REBUILD},
      {"max_connections", CYNIC__CHANGE_REBUILD},
      {"max_pending", CYNIC__CHANGE_REBUILD},
      {"resolve_interval_ns", CYNIC__CHANGE_REBUILD},
      {"queue_timeout_ns", CYNIC__CHANGE_READ},
      {"connect_timeout_ns", CYNIC__CHANGE_READ},
      {"balance", CYNIC__CHANGE_READ},
      {"required", CYNIC__CHANGE_READ},
      {"keepalive_probes", CYNIC__CHANGE_SOCKET},
      {"user_timeout_ns", CYNIC__CHANGE_SOCKET},
      {"http.fallback_body", CYNIC__CHANGE_READ},
      {"tls.server_name", CYNIC__CHANGE_READ},
      {"tls.insecure_skip_verify", CYNIC__CHANGE_READ},
      {"tls.min_version", CYNIC__CHANGE_READ},
      {"tls.key_file", CYNIC__CHANGE_READ},
      {"tls.mark", CYNIC__CHANGE_NONE},
      {"keepalive_old_name", CYNIC__CHANGE_NONE},
      {NULL, 0},
  };
  static const expected_change_t log[] = {
      {"file", CYNIC__CHANGE_LOG_FILE},
      {"level", CYNIC__CHANGE_LOG_LEVEL},
      {"rotate_max_bytes", CYNIC__CHANGE_LOG_ROTATE},
      {"rotate_keep", CYNIC__CHANGE_LOG_ROTATE},
      {"summary_interval_ns", CYNIC__CHANGE_READ},
      {NULL, 0},
  };
  static const expected_change_t admin[] = {
      {"listen.text", CYNIC__CHANGE_ADMIN_LISTEN},
      {"token_file", CYNIC__CHANGE_TOKEN},
      {"drain_timeout_ns", CYNIC__CHANGE_READ},
      {NULL, 0},
  };
  size_t count, size;
  const cynic__config_field_t *f = cynic__config_fields(CYNIC__PART_LISTENER, &count, &size);
  check_every_change(f, count, &cfg->listeners[0], listener_copy, listener_release, listener_diff,
                     size, listener);
  f = cynic__config_fields(CYNIC__PART_UPSTREAM, &count, &size);
  check_every_change(f, count, &cfg->upstreams[0], upstream_copy, upstream_release, upstream_diff,
                     size, upstream);
  f = cynic__config_fields(CYNIC__PART_LOG, &count, &size);
  check_every_change(f, count, &cfg->log, NULL, NULL, log_diff, size, log);
  f = cynic__config_fields(CYNIC__PART_ADMIN, &count, &size);
  check_every_change(f, count, &cfg->admin, NULL, NULL, admin_diff, size, admin);
  cynic__config_free(cfg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_every_key),
      cmocka_unit_test(test_retry_and_fallback_defaults),
      cmocka_unit_test(test_pool_max_idle_follows_the_bulkhead),
      cmocka_unit_test(test_fallback_kinds_and_their_defaults),
      cmocka_unit_test(test_http_keys_refused),
      cmocka_unit_test(test_fallback_bounds),
      cmocka_unit_test(test_parse_duration),
      cmocka_unit_test(test_parse_size),
      cmocka_unit_test(test_parse_percent),
      cmocka_unit_test(test_error_positions),
      cmocka_unit_test(test_errors_collected_and_capped),
      cmocka_unit_test(test_bounds_on_input),
      cmocka_unit_test(test_load_missing_file),
      cmocka_unit_test(test_parse_count_and_number),
      cmocka_unit_test(test_config_must_be_utf8),
      cmocka_unit_test(test_load_refuses_what_is_not_a_regular_file),
      cmocka_unit_test(test_addresses),
      cmocka_unit_test(test_print_errors),
      cmocka_unit_test(test_tcp_keepalive_and_its_old_name),
      cmocka_unit_test(test_field_lists_cover_their_structs),
      cmocka_unit_test(test_copies_are_deep_and_equal),
      cmocka_unit_test(test_every_change_is_detected),
      cmocka_unit_test(test_health_check_refused),
      cmocka_unit_test(test_health_check_defaults),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
