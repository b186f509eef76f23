/* tests/unit/proxy/test_listener.c: the accept budget of src/proxy/listener.c.
 *
 * 150 connections wait in a real listener's backlog (127.0.0.1, port 0); one
 * turn of the loop must take at most CYNIC__ACCEPT_BUDGET of them (plus the
 * one deferred connection it takes after the poll phase), so other sockets get
 * their turn during a storm; later turns take the rest, none lost. The
 * listener hands accepted sockets to a counting mode (the mode table is the
 * listener's injection point); the daemon's modules are linked as they are. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "proxy.h"
#include "session.h"

#define CLIENTS 150

static size_t started;

static uv_tcp_t *count_new(cynic__proxy_t *p) {
  uv_tcp_t *t = calloc(1, sizeof *t);
  if (t != NULL)
    uv_tcp_init(p->loop, t);
  return t;
}

static void freed(uv_handle_t *h) {
  free(h);
}

static void count_discard(uv_tcp_t *client) {
  uv_close((uv_handle_t *)client, freed);
}

static void count_start(cynic__listener_t *l, uv_tcp_t *client, const uint8_t ip[16],
                        uint16_t port) {
  (void)port;
  started++;
  cynic__listener_release(l, ip);
  uv_close((uv_handle_t *)client, freed);
}

static const cynic__mode_t counting = {"counting", count_new, count_discard, count_start};

static const char *const text = "listeners:\n"
                                "  - name: app\n"
                                "    listen: 127.0.0.1:0\n"
                                "    upstream: u\n"
                                "upstreams:\n"
                                "  - name: u\n"
                                "    endpoints: [127.0.0.1:9]\n";

static void test_one_turn_accepts_at_most_the_budget(void **state) {
  (void)state;
  cynic__config_errors_t errs;
  cynic__config_t *cfg = NULL;
  assert_int_equal(cynic__config_parse("t.yaml", text, strlen(text), &cfg, &errs), 0);
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  static cynic__proxy_t p;
  memset(&p, 0, sizeof p);
  p.loop = &loop;
  p.cfg = cfg;
  cynic__list_init(&p.sessions);
  cynic__upstream_t up;
  memset(&up, 0, sizeof up);
  up.cfg = &cfg->upstreams[0];
  p.upstreams = &up;
  p.upstream_count = 1;
  assert_int_equal(cynic__listeners_start(&p), 0);
  cynic__listener_t *l = &p.listeners[0];
  if (l->reserve != NULL) { /* the tcp mode's, made at bind: its own discard */
    l->mode->client_discard(l->reserve);
    l->reserve = NULL;
  }
  l->mode = &counting;

  struct sockaddr_storage ss;
  int len = sizeof ss;
  assert_int_equal(uv_tcp_getsockname(&l->handle, (struct sockaddr *)&ss, &len), 0);
  int fds[CLIENTS];
  for (int i = 0; i < CLIENTS; i++) { /* each completes into the backlog */
    fds[i] = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fds[i] >= 0);
    assert_int_equal(connect(fds[i], (struct sockaddr *)&ss, sizeof(struct sockaddr_in)), 0);
  }
  started = 0;
  uv_run(&loop, UV_RUN_ONCE); /* one turn: poll (the budget), then the check */
  assert_true(started >= 1);
  assert_true(started <= CYNIC__ACCEPT_BUDGET + 1); /* without the budget: all 150 */
  for (int turns = 0; started < CLIENTS && turns < 1000; turns++) {
    size_t before = started;
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_true(started - before <= CYNIC__ACCEPT_BUDGET + 1);
  }
  assert_int_equal(started, CLIENTS); /* deferred, never lost */
  assert_int_equal(l->open, 0);

  for (int i = 0; i < CLIENTS; i++)
    close(fds[i]);
  cynic__listeners_stop(&p);
  uv_run(&loop, UV_RUN_DEFAULT);
  cynic__listeners_free(&p);
  assert_int_equal(uv_loop_close(&loop), 0);
  cynic__config_free(cfg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_one_turn_accepts_at_most_the_budget),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
