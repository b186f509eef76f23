/* tests/unit/proxy/test_upstream.c: admission and attempts of
 * src/proxy/upstream.c, without a socket.
 *
 * Admission (Bulkheads): enter, full, queue, promotion in arrival order, the
 * queue timeout, cancel and leave. Attempts (Circuit Breaker): a pick skips an
 * endpoint whose breaker is open, a fault opens it, success, release. The
 * upstream is built by cynic__upstream_init from a parsed config, on a libuv
 * loop that never runs a timer: the proxy's clock (p->clock) is a fake one the
 * test moves by hand, and the queue timeout is driven through
 * cynic__admission_expire, exactly as the upstream's timer drives it. The
 * daemon's modules are linked as they are (cynic_proxy_daemon). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../fake_clock.h"
#include "proxy.h"

#define MS UINT64_C(1000000)

/* Two endpoints; 2 slots, 2 places in the queue, a 100ms queue timeout; a
 * breaker that opens at the first fault and stays open for a minute. */
static const char yaml[] =
    "listeners:\n"
    "  - name: l\n"
    "    listen: 127.0.0.1:0\n"
    "    upstream: u\n"
    "upstreams:\n"
    "  - name: u\n"
    "    endpoints: [127.0.0.1:9001, 127.0.0.1:9002]\n"
    "    bulkhead: { max_connections: 2, max_pending: 2, queue_timeout: 100ms }\n"
    "    breaker: { faults: 1, leak: 60s, open_for: 60s }\n";

typedef struct world {
  fake_clock_t clock;
  uv_loop_t loop;
  cynic__proxy_t p;
  cynic__config_t *cfg;
  cynic__upstream_t u;
} world_t;

/* A waiter as a session would embed it, recording how its wait ended. */
typedef struct client {
  cynic__waiter_t waiter;
  int calls;  /* callbacks so far: exactly one, or none if cancelled */
  int status; /* the last callback's status */
  int order;  /* when it was admitted (1, 2, ...) */
} client_t;

static int admitted_so_far;

static void on_admit(cynic__waiter_t *w, int status) {
  client_t *c = cynic__container_of(w, client_t, waiter);
  c->calls++;
  c->status = status;
  if (status == 0)
    c->order = ++admitted_so_far;
}

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
  admitted_so_far = 0;
  *state = w;
  return 0;
}

static int teardown(void **state) {
  world_t *w = *state;
  cynic__upstream_discard(&w->u); /* closes its timers */
  assert_int_equal(uv_run(&w->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(w->u.timer_open, 0);
  assert_int_equal(uv_loop_close(&w->loop), 0); /* nothing left open */
  cynic__config_free(w->cfg);
  free(w);
  return 0;
}

static cynic_bulkhead_stats_t stats(const world_t *w) {
  cynic_bulkhead_stats_t s;
  cynic_bulkhead_stats(w->u.bulkhead, &s);
  return s;
}

/* The last `n` slot holders leave: the bulkhead ends empty and was never
 * misused (every test's closing check). */
static void leave_all(world_t *w, int n) {
  for (int i = 0; i < n; i++)
    cynic__admission_leave(&w->u);
  assert_int_equal(stats(w).in_use, 0);
  assert_int_equal(stats(w).misuse, 0);
}

static void test_enter_queue_full_promote_in_order(void **state) {
  world_t *w = *state;
  client_t c[5];
  memset(c, 0, sizeof c);
  bool queued = true;
  /* two slots: taken at once, no callback */
  assert_int_equal(cynic__admission_enter(&w->u, &c[0].waiter, on_admit, &queued), 0);
  assert_false(queued);
  assert_int_equal(cynic__admission_enter(&w->u, &c[1].waiter, on_admit, &queued), 0);
  assert_false(queued);
  /* two places in the queue */
  assert_int_equal(cynic__admission_enter(&w->u, &c[2].waiter, on_admit, &queued), 0);
  assert_true(queued);
  fake_clock_advance(&w->clock, 10 * MS);
  assert_int_equal(cynic__admission_enter(&w->u, &c[3].waiter, on_admit, &queued), 0);
  assert_true(queued);
  assert_int_equal(c[2].waiter.deadline_ns, 1100 * MS);
  assert_int_equal(c[3].waiter.deadline_ns, 1110 * MS);
  /* then full: fail fast */
  assert_int_equal(cynic__admission_enter(&w->u, &c[4].waiter, on_admit, &queued), CYNIC_EFULL);
  assert_int_equal(stats(w).in_use, 2);
  assert_int_equal(stats(w).pending, 2);
  for (int i = 0; i < 5; i++)
    assert_int_equal(c[i].calls, 0);

  /* a slot freed goes to the oldest waiter, before leave() returns */
  cynic__admission_leave(&w->u);
  assert_int_equal(c[2].calls, 1);
  assert_int_equal(c[2].status, 0);
  assert_int_equal(c[2].order, 1);
  assert_int_equal(c[3].calls, 0);
  cynic__admission_leave(&w->u);
  assert_int_equal(c[3].calls, 1);
  assert_int_equal(c[3].order, 2);
  assert_true(cynic__list_empty(&w->u.waiters));
  assert_int_equal(stats(w).in_use, 2);
  assert_int_equal(stats(w).pending, 0);
  /* the two promoted leave; nothing waits */
  leave_all(w, 2);
}

static void test_queue_timeout_on_the_hand_moved_clock(void **state) {
  world_t *w = *state;
  client_t c[4];
  memset(c, 0, sizeof c);
  bool queued;
  assert_int_equal(cynic__admission_enter(&w->u, &c[0].waiter, on_admit, &queued), 0);
  assert_int_equal(cynic__admission_enter(&w->u, &c[1].waiter, on_admit, &queued), 0);
  assert_int_equal(cynic__admission_enter(&w->u, &c[2].waiter, on_admit, &queued), 0);
  assert_true(queued); /* deadline 1100ms */
  fake_clock_advance(&w->clock, 30 * MS);
  assert_int_equal(cynic__admission_enter(&w->u, &c[3].waiter, on_admit, &queued), 0);
  assert_true(queued);                                         /* deadline 1130ms */
  assert_true(uv_is_active((uv_handle_t *)&w->u.queue_timer)); /* armed for the oldest */

  /* 1ms before the first deadline: nothing ends */
  cynic__admission_expire(&w->u, 1099 * MS);
  assert_int_equal(c[2].calls, 0);
  /* at it: the oldest gives up, the next one waits on */
  fake_clock_set(&w->clock, 1100 * MS);
  cynic__admission_expire(&w->u, 1100 * MS);
  assert_int_equal(c[2].calls, 1);
  assert_int_equal(c[2].status, CYNIC_EDEADLINE);
  assert_int_equal(c[3].calls, 0);
  assert_int_equal(stats(w).pending, 1);
  assert_true(uv_is_active((uv_handle_t *)&w->u.queue_timer)); /* re-armed for 1130ms */
  /* long after: the second one too */
  cynic__admission_expire(&w->u, 5000 * MS);
  assert_int_equal(c[3].calls, 1);
  assert_int_equal(c[3].status, CYNIC_EDEADLINE);
  assert_int_equal(stats(w).pending, 0);
  assert_int_equal(stats(w).in_use, 2);
  /* a slot freed now finds nobody waiting; a callback never runs twice */
  cynic__admission_leave(&w->u);
  assert_int_equal(c[2].calls + c[3].calls, 2);
  cynic__admission_leave(&w->u);
  assert_int_equal(stats(w).in_use, 0);
  assert_int_equal(stats(w).misuse, 0);
}

static void test_cancel_leaves_the_queue_without_a_callback(void **state) {
  world_t *w = *state;
  client_t c[4];
  memset(c, 0, sizeof c);
  bool queued;
  assert_int_equal(cynic__admission_enter(&w->u, &c[0].waiter, on_admit, &queued), 0);
  assert_int_equal(cynic__admission_enter(&w->u, &c[1].waiter, on_admit, &queued), 0);
  assert_int_equal(cynic__admission_enter(&w->u, &c[2].waiter, on_admit, &queued), 0);
  assert_int_equal(cynic__admission_enter(&w->u, &c[3].waiter, on_admit, &queued), 0);
  cynic__admission_cancel(&w->u, &c[2].waiter); /* its client left */
  cynic__admission_cancel(&w->u, &c[2].waiter); /* twice is harmless */
  assert_int_equal(stats(w).pending, 1);
  cynic__admission_leave(&w->u); /* skips the one that left */
  assert_int_equal(c[2].calls, 0);
  assert_int_equal(c[3].calls, 1);
  assert_int_equal(c[3].status, 0);
  cynic__admission_expire(&w->u, 10000 * MS); /* nothing left to time out */
  assert_int_equal(c[2].calls, 0);
  leave_all(w, 2);
}

static void test_attempts_pick_fault_success_release(void **state) {
  world_t *w = *state;
  cynic__endpoint_t *e1 = &w->u.endpoints[0], *e2 = &w->u.endpoints[1];
  cynic__attempt_t a, b;

  /* round robin: the first endpoint, then the second */
  memset(&a, 0, sizeof a);
  assert_int_equal(cynic__attempt_start(&w->u, &a), 0);
  assert_ptr_equal(a.endpoint, e1);
  assert_true(a.has_permit);
  assert_int_equal(e1->active, 1);
  /* success: recorded once; the breaker stays closed */
  cynic__attempt_success(&a);
  assert_false(a.has_permit);
  cynic__attempt_success(&a);
  cynic__attempt_end(&a);
  assert_int_equal(e1->active, 0);
  assert_int_equal(e1->state, CYNIC_BREAKER_CLOSED);

  memset(&b, 0, sizeof b);
  assert_int_equal(cynic__attempt_start(&w->u, &b), 0);
  assert_ptr_equal(b.endpoint, e2);
  /* a fault opens e2's breaker (faults: 1) and is counted for e2 */
  cynic__attempt_fault(&b, CYNIC__EV_CONNECT_REFUSED, "refused");
  assert_false(b.has_permit);
  assert_int_equal(e2->state, CYNIC_BREAKER_OPEN);
  assert_int_equal(e2->counters.total[CYNIC__EV_CONNECT_REFUSED], 1);
  cynic__attempt_end(&b);
  assert_int_equal(e2->active, 0);

  /* picks skip the open breaker: e1 every time */
  for (int i = 0; i < 3; i++) {
    memset(&a, 0, sizeof a);
    assert_int_equal(cynic__attempt_start(&w->u, &a), 0);
    assert_ptr_equal(a.endpoint, e1);
    /* release: no outcome, the permit goes back; idempotent */
    cynic__attempt_release(&a);
    assert_false(a.has_permit);
    cynic__attempt_release(&a);
    cynic__attempt_end(&a);
    assert_ptr_equal(a.endpoint, e1); /* kept for the caller's report */
  }
  assert_int_equal(e1->state, CYNIC_BREAKER_CLOSED);
  assert_int_equal(e1->active, 0);

  /* e1 fails too: every breaker open, fail fast */
  memset(&a, 0, sizeof a);
  assert_int_equal(cynic__attempt_start(&w->u, &a), 0);
  cynic__attempt_fault(&a, CYNIC__EV_FIRST_BYTE_TIMEOUT, NULL);
  cynic__attempt_end(&a);
  assert_false(cynic__upstream_available(&w->u));
  memset(&a, 0, sizeof a);
  assert_int_equal(cynic__attempt_start(&w->u, &a), CYNIC_EOPEN);
  assert_null(a.endpoint);

  /* a minute later on the hand-moved clock, e1's open interval is over: the
   * next pick is its half-open probe; success closes it */
  fake_clock_advance(&w->clock, 60000 * MS);
  assert_true(cynic__upstream_available(&w->u));
  assert_int_equal(cynic__attempt_start(&w->u, &a), 0);
  assert_int_equal(a.permit.state, CYNIC_BREAKER_HALF_OPEN);
  cynic__attempt_success(&a);
  cynic__attempt_end(&a);
  assert_int_equal(a.endpoint->state, CYNIC_BREAKER_CLOSED);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_enter_queue_full_promote_in_order, setup, teardown),
      cmocka_unit_test_setup_teardown(test_queue_timeout_on_the_hand_moved_clock, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cancel_leaves_the_queue_without_a_callback, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_attempts_pick_fault_success_release, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
