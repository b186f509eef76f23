/*
 * tests/unit/proxy/test_metrics.c: metrics.c's histograms (bucket edges,
 * quantiles), outcome names and classes, the per-second history ring, and the
 * Prometheus text of a hand-built proxy. metrics.c is included to reach its
 * statics (H2O's way); the rest of the daemon is linked as it is
 * (cynic_proxy_daemon), nothing is stubbed: the wall clock the history is
 * stamped with is the proxy's own injection point (p->wall_ms), set here to
 * a fake one the test moves.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../../src/proxy/metrics.c"

static int64_t fake_unix_ms = 1000000;
static int64_t fake_wall(void *arg) {
  (void)arg;
  return fake_unix_ms;
}
static uint64_t fake_now_ns;
static uint64_t fake_clock(void *arg) {
  (void)arg;
  return fake_now_ns;
}

static void test_bucket_edges_are_inclusive(void **state) {
  (void)state;
  cynic__hist_t h;
  memset(&h, 0, sizeof h);
  cynic__hist_observe(&h, 0.001);    /* le="0.001" */
  cynic__hist_observe(&h, 0.0011);   /* le="0.0025" */
  cynic__hist_observe(&h, 0);        /* le="0.0001" */
  cynic__hist_observe(&h, 0.000101); /* le="0.00025" (101 µs) */
  cynic__hist_observe(&h, 0.0003);   /* le="0.0005" */
  cynic__hist_observe(&h, 61);       /* +Inf */
  assert_int_equal(h.bucket[0], 1);
  assert_int_equal(h.bucket[1], 1);
  assert_int_equal(h.bucket[2], 1);
  assert_int_equal(h.bucket[3], 1);
  assert_int_equal(h.bucket[4], 1);
  assert_int_equal(h.bucket[CYNIC__HIST_BUCKETS], 1);
  assert_int_equal(h.count, 6);
  assert_true(h.sum > 61.0024 && h.sum < 61.0026);
}

static void test_quantiles(void **state) {
  (void)state;
  cynic__hist_t h;
  memset(&h, 0, sizeof h);
  assert_true(cynic__hist_quantile(&h, 0.99) < 0); /* empty */
  for (int i = 0; i < 99; i++)
    cynic__hist_observe(&h, 0.002); /* le 0.0025 */
  cynic__hist_observe(&h, 0.3);     /* le 0.5 */
  assert_true(cynic__hist_quantile(&h, 0.5) == 0.0025);
  assert_true(cynic__hist_quantile(&h, 0.99) == 0.0025); /* 99 of 100 */
  cynic__hist_observe(&h, 0.3);
  assert_true(cynic__hist_quantile(&h, 0.99) == 0.5); /* 99 of 101 is not enough */
  cynic__hist_observe(&h, 1000);
  assert_true(cynic__hist_quantile(&h, 1.0) == 60); /* +Inf reads as the largest bound */
}

static void test_outcomes(void **state) {
  (void)state;
  assert_string_equal(cynic__outcome_name(CYNIC__EV_CONNECT_REFUSED), "connect_refused");
  assert_string_equal(cynic__outcome_name(CYNIC__OUT_OK), "ok");
  assert_string_equal(cynic__outcome_name(CYNIC__OUT_RESET), "reset");
  assert_string_equal(cynic__outcome_name(CYNIC__OUT_CLOSED), "closed");
  assert_string_equal(cynic__outcome_name(CYNIC__OUT_COUNT), "unknown");
  assert_true(cynic__outcome_is_error(CYNIC__EV_BREAKER_OPEN));
  assert_true(cynic__outcome_is_error(CYNIC__EV_FIRST_BYTE_TIMEOUT));
  assert_false(cynic__outcome_is_error(CYNIC__EV_IDLE_TIMEOUT));
  assert_false(cynic__outcome_is_error(CYNIC__OUT_OK));
  assert_false(cynic__outcome_is_error(CYNIC__OUT_RESET));
  assert_false(cynic__outcome_is_error(CYNIC__OUT_CLOSED));
}

static void test_label_escaping(void **state) {
  (void)state;
  char out[32];
  assert_string_equal(esc("a\"b\\c\nd", out, sizeof out), "a\\\"b\\\\c\\nd");
  assert_string_equal(esc("0123456789", out, 6), "0123"); /* bounded, room for an escape */
}

/* A proxy of one listener, one upstream, one endpoint, built by hand. */
typedef struct world {
  cynic__config_t cfg;
  cynic__config_listener_t lcfg;
  cynic__config_upstream_t ucfg;
  cynic__config_addr_t addr;
  cynic__proxy_t p;
  cynic__listener_t l;
  cynic__upstream_t u;
  cynic__endpoint_t e;
} world_t;

static world_t *world_new(void) {
  world_t *w = calloc(1, sizeof *w);
  w->lcfg.name = "web";
  w->lcfg.max_connections = 10;
  w->ucfg.name = "api";
  w->ucfg.max_connections = 4;
  w->ucfg.max_pending = 2;
  w->addr.text = "127.0.0.1:9000";
  w->cfg.path = "test.yaml";
  w->p.cfg = &w->cfg;
  w->p.wall_ms = fake_wall;
  w->p.listeners = &w->l;
  w->p.listener_count = 1;
  w->p.upstreams = &w->u;
  w->p.upstream_count = 1;
  w->l.cfg = &w->lcfg;
  w->l.upstream = &w->u;
  w->u.cfg = &w->ucfg;
  w->u.proxy = &w->p;
  w->u.endpoints = &w->e;
  w->u.endpoint_count = 1;
  w->e.upstream = &w->u;
  w->e.addr = &w->addr;
  cynic_breaker_config_t bc;
  cynic_breaker_config_default(&bc);
  bc.window.kind = CYNIC_BREAKER_WINDOW_NONE; /* as the proxy builds them */
  bc.clock.now = fake_clock;
  assert_int_equal(cynic_breaker_new(&bc, &w->e.breaker), 0);
  cynic_bulkhead_config_t kc;
  cynic_bulkhead_config_default(&kc);
  kc.max_concurrent = 4;
  kc.max_pending = 2;
  assert_int_equal(cynic_bulkhead_new(&kc, &w->u.bulkhead), 0);
  return w;
}

static void world_free(world_t *w) {
  cynic_breaker_free(w->e.breaker);
  cynic_bulkhead_free(w->u.bulkhead);
  free(w);
}

static void test_history_ring_is_bounded_and_ordered(void **state) {
  (void)state;
  world_t *w = world_new();
  for (int s = 0; s < CYNIC__HISTORY_SECONDS + 5; s++) {
    fake_unix_ms = 1000000 + s * 1000;
    cynic__metrics_conn_started(&w->u);
    if (s % 2 == 0)
      cynic__metrics_first_byte(&w->u, 7000); /* 7 ms in µs */
    cynic__metrics_sample(&w->p);
  }
  assert_int_equal(w->u.stats.history_count, CYNIC__HISTORY_SECONDS);
  json_t *h = cynic__metrics_history(&w->u);
  assert_int_equal(json_array_size(h), CYNIC__HISTORY_SECONDS);
  json_t *first = json_array_get(h, 0), *last = json_array_get(h, CYNIC__HISTORY_SECONDS - 1);
  assert_int_equal(json_integer_value(json_object_get(first, "t")), 1000 + 5);
  assert_int_equal(json_integer_value(json_object_get(last, "t")),
                   1000 + CYNIC__HISTORY_SECONDS + 4);
  assert_int_equal(json_integer_value(json_object_get(last, "conns")), 1);
  /* the last second (s = 304) saw a 7 ms first byte: p99 bound 10 ms */
  assert_true(json_real_value(json_object_get(last, "p99_ms")) == 10.0);
  assert_true(
      json_is_null(json_object_get(json_array_get(h, CYNIC__HISTORY_SECONDS - 2), "p99_ms")));
  json_decref(h);
  world_free(w);
}

static void test_prometheus_text(void **state) {
  (void)state;
  world_t *w = world_new();
  w->l.open = 3;
  w->l.stats.bytes_up = 100;
  w->l.stats.bytes_down = 200;
  w->l.counters.total[CYNIC__EV_MAX_CONNECTIONS] = 2; /* listener rejections */
  cynic__conn_report_t r = {.listener = &w->l,
                            .upstream = &w->u,
                            .outcome = CYNIC__OUT_OK,
                            .accepted_us = 10000,
                            .end_us = 1510000};
  cynic__metrics_conn_done(&r);
  r.outcome = CYNIC__EV_CONNECT_REFUSED;
  cynic__metrics_conn_done(&r);
  cynic_breaker_trip(w->e.breaker);
  cynic__metrics_transition(&w->e, CYNIC_BREAKER_CLOSED, CYNIC_BREAKER_FORCED_OPEN,
                            CYNIC_BREAKER_REASON_MANUAL_TRIP);
  cynic__buf_t b;
  cynic__buf_init(&b, 1 << 20);
  assert_int_equal(cynic__metrics_render(&w->p, &b), 0);
  const char *t = b.data;
  assert_non_null(strstr(t, "# TYPE cynic_connections_total counter\n"));
  assert_non_null(
      strstr(t, "cynic_connections_total{listener=\"web\",upstream=\"api\",outcome=\"ok\"} 1\n"));
  assert_non_null(strstr(t, "outcome=\"connect_refused\"} 1\n"));
  assert_non_null(strstr(t, "outcome=\"max_connections\"} 2\n"));
  assert_non_null(strstr(t, "cynic_listener_connections_open{listener=\"web\"} 3\n"));
  assert_non_null(strstr(t, "direction=\"to_upstream\"} 100\n"));
  assert_non_null(strstr(t, "direction=\"to_client\"} 200\n"));
  assert_non_null(strstr(t, "# TYPE cynic_connection_duration_seconds histogram\n"));
  /* both connections lasted 1.5 s: le=1 has 0, le=2.5 has 2 (cumulative) */
  assert_non_null(
      strstr(t, "cynic_connection_duration_seconds_bucket{upstream=\"api\",le=\"1\"} 0\n"));
  assert_non_null(
      strstr(t, "cynic_connection_duration_seconds_bucket{upstream=\"api\",le=\"2.5\"} 2\n"));
  assert_non_null(
      strstr(t, "cynic_connection_duration_seconds_bucket{upstream=\"api\",le=\"+Inf\"} 2\n"));
  assert_non_null(strstr(t, "cynic_connection_duration_seconds_sum{upstream=\"api\"} 3\n"));
  assert_non_null(strstr(t, "cynic_connection_duration_seconds_count{upstream=\"api\"} 2\n"));
  assert_non_null(strstr(t, "cynic_breaker_state{upstream=\"api\",endpoint=\"127.0.0.1:9000\","
                            "state=\"forced_open\"} 1\n"));
  assert_non_null(strstr(
      t, "cynic_breaker_state{upstream=\"api\",endpoint=\"127.0.0.1:9000\",state=\"closed\"} 0\n"));
  assert_non_null(strstr(t, "to=\"forced_open\"} 1\n"));
  assert_non_null(strstr(t, "cynic_bulkhead_limit{upstream=\"api\"} 4\n"));
  assert_non_null(strstr(t, "cynic_bulkhead_pending_limit{upstream=\"api\"} 2\n"));
  assert_non_null(strstr(t, "cynic_ready 1\n")); /* admin_views.c, the real one */
  assert_int_equal(w->u.stats.errors, 1);
  assert_int_equal(w->u.stats.done, 2);
  cynic__buf_free(&b);
  world_free(w);
}

/* /metrics is streamed in slices (cynic__metrics_render_next, admin_views.c):
 * resumed from its cursor a byte's worth at a time, the exposition is the
 * whole one byte for byte, every call but the last says more follows, and
 * none comes back empty-handed before the end (a step that writes nothing,
 * such as moving to the next family, never ends a slice). */
static void test_prometheus_text_in_slices_is_the_whole_text(void **state) {
  (void)state;
  world_t *w = world_new();
  w->l.counters.total[CYNIC__EV_MAX_CONNECTIONS] = 2;
  w->u.counters.total[CYNIC__EV_BULKHEAD_FULL] = 1;
  cynic__buf_t whole, sliced, slice;
  cynic__buf_init(&whole, 1 << 20);
  cynic__buf_init(&sliced, 1 << 20);
  cynic__buf_init(&slice, 1 << 20);
  assert_int_equal(cynic__metrics_render(&w->p, &whole), 0);
  cynic__metrics_cursor_t cur;
  memset(&cur, 0, sizeof cur);
  int rc = 0;
  size_t calls = 0;
  while (rc == 0) {
    assert_true(++calls < 10000); /* bounded: the text is a few KB */
    cynic__buf_reset(&slice);
    rc = cynic__metrics_render_next(&w->p, &slice, &cur, 1);
    assert_true(rc == 0 || rc == 1);
    if (rc == 0)
      assert_true(slice.len > 0);
    assert_int_equal(cynic__buf_append(&sliced, slice.data, slice.len), 0);
  }
  assert_true(calls > 10); /* it was sliced, not made in one go */
  assert_int_equal(sliced.len, whole.len);
  assert_memory_equal(sliced.data, whole.data, whole.len);
  /* the end is sticky: a call after it appends nothing and says so again */
  cynic__buf_reset(&slice);
  assert_int_equal(cynic__metrics_render_next(&w->p, &slice, &cur, 1), 1);
  assert_int_equal(slice.len, 0);
  cynic__buf_free(&whole);
  cynic__buf_free(&sliced);
  cynic__buf_free(&slice);
  world_free(w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bucket_edges_are_inclusive),
      cmocka_unit_test(test_quantiles),
      cmocka_unit_test(test_outcomes),
      cmocka_unit_test(test_label_escaping),
      cmocka_unit_test(test_history_ring_is_bounded_and_ordered),
      cmocka_unit_test(test_prometheus_text),
      cmocka_unit_test(test_prometheus_text_in_slices_is_the_whole_text),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
