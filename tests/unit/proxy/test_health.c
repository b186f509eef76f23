/* tests/unit/proxy/test_health.c: src/proxy/health.c's decisions without a
 * socket: the verdicts (unhealthy_after failures in a row hold the breaker
 * open with reason health_check, healthy_after passes close it, an operator's
 * forced state is never changed), the expect.body match across reads, the
 * media type comparison (http_exchange.c's, which the check uses), the carry
 * of a check's status by endpoint address, and the bounds of a check's read
 * (response and head bytes, fed as on_read gets them). health.c is included
 * to reach its statics (the daemon library's copy is then never linked in);
 * the upstream is made by cynic__upstream_init from a parsed config on a
 * loop that never runs a check, its breakers on a fake clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../fake_clock.h"
#include "health.c"

#define MS UINT64_C(1000000)

static const char yaml[] =
    "listeners:\n"
    "  - name: l\n"
    "    listen: 127.0.0.1:0\n"
    "    upstream: u\n"
    "upstreams:\n"
    "  - name: u\n"
    "    endpoints: [127.0.0.1:9001, 127.0.0.1:9002]\n"
    "    health_check: { path: /h, expect: { body: '\"ok\"' }, healthy_after: 2,\n"
    "                    unhealthy_after: 3 }\n";

typedef struct world {
  fake_clock_t clock;
  uv_loop_t loop;
  cynic__proxy_t p;
  cynic__config_t *cfg;
  cynic__upstream_t u;
  cynic__health_t *h; /* made by health_new, never started: no handle */
} world_t;

static int setup(void **state) {
  world_t *w = calloc(1, sizeof *w);
  assert_non_null(w);
  fake_clock_set(&w->clock, 1000 * MS);
  assert_int_equal(uv_loop_init(&w->loop), 0);
  w->p.loop = &w->loop;
  w->p.clock = fake_clock_bind(&w->clock);
  cynic__config_errors_t errs;
  memset(&errs, 0, sizeof errs);
  assert_int_equal(cynic__config_parse("t.yaml", yaml, sizeof yaml - 1, &w->cfg, &errs), 0);
  w->p.cfg = w->cfg;
  assert_int_equal(cynic__upstream_init(&w->p, &w->u, &w->cfg->upstreams[0]), 0);
  w->h = health_new(&w->p, &w->u, NULL);
  assert_non_null(w->h);
  assert_int_equal(w->h->count, 2);
  *state = w;
  return 0;
}

static int teardown(void **state) {
  world_t *w = *state;
  health_free(w->h);
  cynic__upstream_discard(&w->u);
  assert_int_equal(uv_run(&w->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(&w->loop), 0);
  cynic__config_free(w->cfg);
  free(w);
  return 0;
}

static cynic_breaker_snapshot_t snap(const cynic__endpoint_t *e) {
  cynic_breaker_snapshot_t s;
  assert_int_equal(cynic_breaker_snapshot(e->breaker, &s), 0);
  return s;
}

static void check_fails(check_t *c) {
  snprintf(c->st.last_failure, sizeof c->st.last_failure, "status 500 outside 200-299");
  judge(c, false);
}

static void test_verdicts_hold_and_release_the_breaker(void **state) {
  world_t *w = *state;
  check_t *c = &w->h->checks[0];
  cynic__endpoint_t *e = c->e;
  assert_int_equal(c->st.state, CYNIC__HEALTH_UNKNOWN);
  judge(c, true);
  assert_int_equal(c->st.state, CYNIC__HEALTH_HEALTHY); /* one pass: it was in rotation */
  check_fails(c);
  check_fails(c);
  assert_int_equal(c->st.state, CYNIC__HEALTH_HEALTHY); /* 2 of unhealthy_after 3 */
  assert_int_equal(snap(e).state, CYNIC_BREAKER_CLOSED);
  check_fails(c);
  assert_int_equal(c->st.state, CYNIC__HEALTH_UNHEALTHY);
  cynic_breaker_snapshot_t s = snap(e);
  assert_int_equal(s.state, CYNIC_BREAKER_OPEN);
  assert_true(s.held);
  assert_int_equal(s.last_reason, CYNIC_BREAKER_REASON_HEALTH_CHECK);
  assert_true(cynic__upstream_available(&w->u)); /* the other endpoint is there */
  /* the pick skips it: every attempt goes to the other endpoint */
  for (int i = 0; i < 4; i++) {
    cynic__attempt_t a;
    memset(&a, 0, sizeof a);
    assert_int_equal(cynic__attempt_start(&w->u, &a), 0);
    assert_ptr_equal(a.endpoint, &w->u.endpoints[1]);
    cynic__attempt_success(&a);
    cynic__attempt_end(&a);
  }
  /* a long while later it is still held: no user request is its probe */
  fake_clock_advance(&w->clock, 3600000 * MS);
  assert_int_equal(snap(e).state, CYNIC_BREAKER_OPEN);
  judge(c, true);
  assert_int_equal(c->st.state, CYNIC__HEALTH_UNHEALTHY); /* 1 of healthy_after 2 */
  assert_true(snap(e).held);
  judge(c, true);
  assert_int_equal(c->st.state, CYNIC__HEALTH_HEALTHY);
  s = snap(e);
  assert_int_equal(s.state, CYNIC_BREAKER_CLOSED);
  assert_int_equal(s.last_reason, CYNIC_BREAKER_REASON_HEALTH_CHECK);
  assert_int_equal(c->st.checks, 6);
  assert_int_equal(c->st.failures, 3);
  assert_int_equal(e->counters.total[CYNIC__EV_HEALTH_CHECK_FAILED], 3);
  /* a check's verdict is no call for the breaker */
  assert_int_equal(s.failures, 0);
}

static void test_an_operator_wins(void **state) {
  world_t *w = *state;
  check_t *c = &w->h->checks[1];
  cynic__endpoint_t *e = c->e;
  assert_int_equal(cynic_breaker_force_closed(e->breaker), 0);
  for (int i = 0; i < 5; i++)
    check_fails(c);
  assert_int_equal(c->st.state, CYNIC__HEALTH_UNHEALTHY);
  assert_int_equal(snap(e).state, CYNIC_BREAKER_FORCED_CLOSED);
  assert_int_equal(cynic_breaker_trip(e->breaker), 0);
  judge(c, true);
  judge(c, true);
  assert_int_equal(c->st.state, CYNIC__HEALTH_HEALTHY);
  assert_int_equal(snap(e).state, CYNIC_BREAKER_FORCED_OPEN);
  /* back to automatic by hand: the next failures hold it again */
  assert_int_equal(cynic_breaker_reset(e->breaker), 0);
  for (int i = 0; i < 3; i++)
    check_fails(c);
  assert_true(snap(e).held);
  assert_int_equal(cynic_breaker_reset(e->breaker), 0); /* reset while unhealthy... */
  check_fails(c);                                       /* ...and the next failure re-holds */
  assert_true(snap(e).held);
}

/* Feeds `pieces` (NULL-terminated) to the body callback of a fresh check. */
static bool body_has(check_t *c, const char *const *pieces) {
  c->body_found = false;
  c->tail_len = 0;
  for (const char *const *p = pieces; *p != NULL; p++)
    assert_int_equal(on_body(&c->msg, *p, strlen(*p)), 0);
  return c->body_found;
}

static void test_body_text_is_found_across_reads(void **state) {
  world_t *w = *state;
  check_t *c = &w->h->checks[0];
  c->msg.data = c;
  assert_string_equal(w->h->cfg->expect_body, "\"ok\"");
  assert_true(body_has(c, (const char *const[]){"{\"status\": \"ok\"}", NULL}));
  assert_true(body_has(c, (const char *const[]){"{\"status\": \"o", "k\"}", NULL}));
  assert_true(body_has(c, (const char *const[]){"x\"", "o", "k", "\"", NULL}));
  assert_true(body_has(c, (const char *const[]){"\"", "", "ok", "\"y", NULL}));
  assert_false(body_has(c, (const char *const[]){"\"o", "x", "k\"", NULL}));
  assert_false(body_has(c, (const char *const[]){"{\"status\": \"degraded\"}", NULL}));
  assert_false(body_has(c, (const char *const[]){"ok", "\"ok", NULL}));
  /* a long body: the match at its very end, after many reads */
  char big[4096];
  memset(big, 'a', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  assert_true(body_has(c, (const char *const[]){big, big, "\"o", "k\"", NULL}));
}

static void test_media_types(void **state) {
  (void)state;
  static const char *const v[] = {"application/json", "application/json; charset=utf-8",
                                  "Application/JSON", "application/json \t"};
  for (size_t i = 0; i < 4; i++)
    assert_true(cynic__hx_media_type_is(v[i], strlen(v[i]), "application/json"));
  assert_false(cynic__hx_media_type_is("application/jsonx", 17, "application/json"));
  assert_false(cynic__hx_media_type_is("text/html", 9, "application/json"));
  assert_false(cynic__hx_media_type_is("application/jso", 15, "application/json"));
}

static void test_status_carries_by_address(void **state) {
  world_t *w = *state;
  for (int i = 0; i < 3; i++)
    check_fails(&w->h->checks[1]);
  judge(&w->h->checks[0], true);
  cynic__health_t *n = health_new(&w->p, &w->u, w->h);
  assert_non_null(n);
  assert_int_equal(n->checks[1].st.state, CYNIC__HEALTH_UNHEALTHY);
  assert_int_equal(n->checks[1].st.failures, 3);
  assert_string_equal(n->checks[1].st.last_failure, "status 500 outside 200-299");
  assert_int_equal(n->checks[0].st.state, CYNIC__HEALTH_HEALTHY);
  /* the request it will send, made once */
  assert_string_equal(
      n->checks[1].request,
      "GET /h HTTP/1.1\r\nHost: 127.0.0.1:9002\r\nUser-Agent: cynic-health-check\r\n"
      "Accept: */*\r\nConnection: close\r\n\r\n");
  health_free(n);
}

/* The running check c reads `data` as the socket would hand it over, in
 * reads of 3000 bytes (so one read straddles each bound), until it has a
 * verdict or the data ends. */
static void respond(check_t *c, const char *data, size_t len) {
  c->tcp.tcp.data = c;
  for (size_t off = 0; c->in_flight && off < len;) {
    size_t n = len - off < 3000 ? len - off : 3000;
    memcpy(c->buf, data + off, n);
    uv_buf_t b = uv_buf_init(c->buf, (unsigned)n);
    on_read((uv_stream_t *)&c->tcp, (ssize_t)n, &b);
    off += n;
  }
}

/* A 200 whose body never ends (Content-Length far beyond) and holds the
 * expected text "ok" (quotes included) ending at response byte `end`. */
static char *endless_response(size_t end, size_t *len) {
  static const char head[] = "HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n";
  *len = end + 4096;
  char *r = malloc(*len);
  assert_non_null(r);
  memset(r, 'a', *len);
  memcpy(r, head, sizeof head - 1);
  memcpy(r + end - 4, "\"ok\"", 4);
  return r;
}

/* Bounds of a check's read: CYNIC__HEALTH_MAX_RESPONSE bytes of response
 * (head included) at most, the text found in its very last byte passing and
 * one byte further failing; a head over CYNIC__HEALTH_MAX_HEAD refused by the
 * parser. The loop never runs: p->stopping keeps finish from arming the
 * next check. */
static void test_a_check_reads_a_bounded_response(void **state) {
  world_t *w = *state;
  w->p.stopping = true;
  check_t *c = &w->h->checks[0];
  size_t len;
  char *r = endless_response(CYNIC__HEALTH_MAX_RESPONSE, &len);
  begin(c);
  respond(c, r, len);
  free(r);
  assert_false(c->in_flight);
  assert_int_equal(c->st.checks, 1);
  assert_int_equal(c->st.failures, 0);
  assert_int_equal(c->read, CYNIC__HEALTH_MAX_RESPONSE);

  r = endless_response(CYNIC__HEALTH_MAX_RESPONSE + 1, &len);
  begin(c);
  respond(c, r, len);
  free(r);
  assert_false(c->in_flight);
  assert_int_equal(c->st.checks, 2);
  assert_int_equal(c->st.failures, 1);
  assert_string_equal(c->st.last_failure, "no verdict in the first 65536 bytes of the response");
  assert_int_equal(c->read, CYNIC__HEALTH_MAX_RESPONSE);

  /* a head just under its bound is read; one over it is a bad response */
  size_t big = CYNIC__HEALTH_MAX_HEAD - 200;
  char *head = malloc(CYNIC__HEALTH_MAX_HEAD + 256);
  assert_non_null(head);
  for (int over = 0; over <= 1; over++) {
    size_t vlen = big + (size_t)over * 400;
    int n = snprintf(head, 64, "HTTP/1.1 200 OK\r\nX-Big: ");
    memset(head + n, 'b', vlen);
    n += (int)vlen;
    n += snprintf(head + n, 64, "\r\nContent-Length: 4\r\n\r\n\"ok\"");
    begin(c);
    respond(c, head, (size_t)n);
    assert_false(c->in_flight);
    assert_int_equal(c->st.checks, 3 + (uint64_t)over);
    assert_int_equal(c->st.failures, 1 + (uint64_t)over);
    if (over)
      assert_string_equal(c->st.last_failure, "bad response: head too large");
  }
  free(head);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_verdicts_hold_and_release_the_breaker, setup, teardown),
      cmocka_unit_test_setup_teardown(test_an_operator_wins, setup, teardown),
      cmocka_unit_test_setup_teardown(test_body_text_is_found_across_reads, setup, teardown),
      cmocka_unit_test(test_media_types),
      cmocka_unit_test_setup_teardown(test_status_carries_by_address, setup, teardown),
      cmocka_unit_test_setup_teardown(test_a_check_reads_a_bounded_response, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
