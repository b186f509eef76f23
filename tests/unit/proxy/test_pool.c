/* tests/unit/proxy/test_pool.c: the socket options of src/proxy/pool.c.
 *
 * The check that lets accepted sockets inherit their TCP options from the
 * listening socket (Linux copies them; cynic checks on a listener's first
 * accept rather than assume), and the fallback of setting them on every
 * socket. Real sockets on 127.0.0.1; the daemon's modules are linked as they
 * are (cynic_proxy_daemon). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "pool.h"

/* A listening socket on 127.0.0.1, port 0; one connection to it accepted
 * into *accepted (the connecting socket in *client). */
static int listen_and_accept(int listener, int *client, int *accepted) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  if (bind(listener, (struct sockaddr *)&a, sizeof a) != 0 || listen(listener, 4) != 0 ||
      getsockname(listener, (struct sockaddr *)&a, &len) != 0)
    return -1;
  *client = socket(AF_INET, SOCK_STREAM, 0);
  if (*client < 0 || connect(*client, (struct sockaddr *)&a, sizeof a) != 0)
    return -1;
  *accepted = accept(listener, NULL, NULL);
  return *accepted < 0 ? -1 : 0;
}

static void test_client_options_inherited_from_listener(void **state) {
  (void)state;
  cynic__config_upstream_t u = {.keepalive_idle_ns = UINT64_C(17000000000),
                                .keepalive_interval_ns = UINT64_C(7000000000),
                                .keepalive_probes = 4,
                                .user_timeout_ns = UINT64_C(3500000000)};
  int lfd = socket(AF_INET, SOCK_STREAM, 0), client = -1, accepted = -1;
  assert_true(lfd >= 0);
  assert_true(cynic__sock_options_set(lfd, &u));
  assert_int_equal(listen_and_accept(lfd, &client, &accepted), 0);
  /* Linux copies them into the accepted socket; cynic checks, not assumes. */
  assert_true(cynic__sock_options_match(accepted, &u));
  assert_false(cynic__sock_options_match(client, &u)); /* a socket nobody set */
  u.keepalive_probes = 5;
  assert_false(cynic__sock_options_match(accepted, &u)); /* any difference counts */
  u.keepalive_probes = 4;

  /* The listener's state: checked on the first connection, then trusted. */
  uv_loop_t loop;
  uv_tcp_t h;
  cynic__upstream_t up = {.cfg = &u};
  cynic__listener_t l = {.upstream = &up, .options = CYNIC__OPTIONS_UNKNOWN};
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_int_equal(uv_tcp_init(&loop, &h), 0);
  assert_int_equal(uv_tcp_open(&h, accepted), 0);
  cynic__client_options(&l, &h);
  assert_int_equal(l.options, CYNIC__OPTIONS_INHERITED);
  uv_close((uv_handle_t *)&h, NULL);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);

  /* Not inherited (here: the client socket, which has none): set each time. */
  cynic__listener_t l2 = {.upstream = &up, .options = CYNIC__OPTIONS_UNKNOWN};
  assert_int_equal(uv_tcp_init(&loop, &h), 0);
  assert_int_equal(uv_tcp_open(&h, client), 0);
  cynic__client_options(&l2, &h);
  assert_int_equal(l2.options, CYNIC__OPTIONS_PER_CONNECTION);
  assert_true(cynic__sock_options_match(client, &u)); /* ... and set they were */
  uv_close((uv_handle_t *)&h, NULL);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(&loop), 0);
  close(lfd);
}

/* A socket accepted before a reload refreshed the listening socket carries
 * the old values: one mismatch is not taken as "this kernel does not copy
 * them"; a listener checks up to its budget, setting the options on each
 * socket meanwhile, and only then sets them on every socket. */
static void test_inheritance_check_has_a_budget(void **state) {
  (void)state;
  cynic__config_upstream_t u = {.keepalive_idle_ns = UINT64_C(23000000000),
                                .keepalive_interval_ns = UINT64_C(7000000000),
                                .keepalive_probes = 6};
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  cynic__upstream_t up = {.cfg = &u};
  cynic__listener_t l = {.upstream = &up, .options = CYNIC__OPTIONS_UNKNOWN, .options_checks = 2};
  for (int i = 0; i < 2; i++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0); /* carries none of them */
    assert_true(fd >= 0);
    uv_tcp_t h;
    assert_int_equal(uv_tcp_init(&loop, &h), 0);
    assert_int_equal(uv_tcp_open(&h, fd), 0);
    cynic__client_options(&l, &h);
    assert_true(cynic__sock_options_match(fd, &u)); /* set on this one */
    assert_int_equal(l.options, i == 0 ? CYNIC__OPTIONS_UNKNOWN : CYNIC__OPTIONS_PER_CONNECTION);
    uv_close((uv_handle_t *)&h, NULL);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  }
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* The idle pool: capacity 0 (TCP mode) keeps nothing; otherwise at most
 * `capacity`, oldest taken first. Never connected: the pool only links. */
static void test_idle_pool_is_capped(void **state) {
  (void)state;
  cynic__endpoint_t e;
  memset(&e, 0, sizeof e);
  cynic__list_init(&e.idle);
  cynic__upconn_t a, b, c;
  memset(&a, 0, sizeof a), memset(&b, 0, sizeof b), memset(&c, 0, sizeof c);
  a.endpoint = b.endpoint = c.endpoint = &e;
  assert_false(cynic__pool_give(&a)); /* capacity 0: never reused */
  assert_null(cynic__pool_take(&e));
  e.idle_capacity = 2;
  assert_true(cynic__pool_give(&a));
  assert_true(cynic__pool_give(&b));
  assert_false(cynic__pool_give(&c)); /* full: the caller closes it */
  assert_int_equal(e.idle_count, 2);
  assert_ptr_equal(cynic__pool_take(&e), &a);
  assert_ptr_equal(cynic__pool_take(&e), &b);
  assert_null(cynic__pool_take(&e));
  assert_int_equal(e.idle_count, 0);
  assert_true(cynic__list_empty(&e.idle));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_client_options_inherited_from_listener),
      cmocka_unit_test(test_inheritance_check_has_a_budget),
      cmocka_unit_test(test_idle_pool_is_capped),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
