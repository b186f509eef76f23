/* tests/unit/proxy/test_pool.c: the socket options of src/proxy/pool.c.
 *
 * The check that lets accepted sockets inherit their TCP options from the
 * listening socket (Linux copies them; cynic checks on a listener's first
 * accept rather than assume), and the fallback of setting them on every
 * socket; and the idle pool of upstream connections (HTTP keep-alive): its
 * cap, its age limit, and that a connection the upstream closed is never
 * handed out. Real sockets on 127.0.0.1; the daemon's modules are linked as
 * they are (cynic_proxy_daemon). */
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

/* ---- the idle pool, over real loopback connections ---- */

typedef struct pool_fixture {
  uv_loop_t loop;
  int lfd; /* the "upstream": a listening socket the test accepts from by hand */
  cynic__config_upstream_t cfg;
  cynic__upstream_t up;
  cynic__endpoint_t e;
  int connected;
} pool_fixture_t;

static void on_test_connect(cynic__upconn_t *uc, int status) {
  assert_int_equal(status, 0);
  ((pool_fixture_t *)uc->handle.tcp.data)->connected++;
}

/* A connected upstream connection from cynic__upconn_new; *server is the
 * upstream's side of it. */
static cynic__upconn_t *connect_one(pool_fixture_t *f, int *server) {
  cynic__upconn_t *uc = cynic__upconn_new();
  assert_non_null(uc);
  int before = f->connected;
  assert_int_equal(cynic__upconn_connect(uc, &f->loop, &f->e, f, on_test_connect), 0);
  while (f->connected == before)
    uv_run(&f->loop, UV_RUN_ONCE);
  *server = accept(f->lfd, NULL, NULL);
  assert_true(*server >= 0);
  return uc;
}

/* Runs the loop until nothing is pending (closes done, reads seen). */
static void settle(pool_fixture_t *f) {
  for (int i = 0; i < 20; i++) {
    usleep(2000);
    uv_run(&f->loop, UV_RUN_NOWAIT);
  }
}

/* True when the peer of server fd `fd` has closed (EOF waiting). */
static bool peer_closed(int fd) {
  char c;
  return recv(fd, &c, 1, MSG_DONTWAIT) == 0;
}

static void pool_setup(pool_fixture_t *f) {
  memset(f, 0, sizeof *f);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  f->cfg.connect_timeout_ns = UINT64_C(1000000000);
  f->cfg.keepalive_idle_ns = UINT64_C(60000000000);
  f->cfg.keepalive_interval_ns = UINT64_C(10000000000);
  f->cfg.keepalive_probes = 3;
  f->cfg.http.pool_max_idle = 2;
  f->cfg.http.pool_idle_timeout_ns = UINT64_C(1000000000); /* 1,000 ms */
  f->up.cfg = &f->cfg;
  f->e.upstream = &f->up;
  cynic__list_init(&f->e.idle);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  f->lfd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(f->lfd >= 0);
  assert_int_equal(bind(f->lfd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(listen(f->lfd, 16), 0);
  assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&a, &len), 0);
  memcpy(&f->e.sa, &a, sizeof a);
  f->e.resolved = true;
}

static void pool_teardown(pool_fixture_t *f) {
  cynic__pool_close_all(&f->e);
  settle(f);
  close(f->lfd);
  assert_int_equal(uv_loop_close(&f->loop), 0); /* no handle left behind */
}

/* Bounds: at most max_idle (the oldest closed to make room), newest first,
 * max_idle 0 or a retired upstream keeps nothing. */
static void test_pool_cap_evicts_the_oldest(void **state) {
  (void)state;
  pool_fixture_t f;
  pool_setup(&f);
  int sa, sb, sc;
  cynic__upconn_t *a = connect_one(&f, &sa), *b = connect_one(&f, &sb), *c = connect_one(&f, &sc);
  assert_true(cynic__pool_give(a, 0));
  assert_true(cynic__pool_give(b, 10));
  assert_true(cynic__pool_give(c, 20)); /* full: a, the oldest, is closed */
  assert_int_equal(f.e.idle_count, 2);
  assert_int_equal(f.e.pool_discarded, 1);
  settle(&f);
  assert_true(peer_closed(sa));
  assert_false(peer_closed(sb));
  assert_ptr_equal(cynic__pool_take(&f.e, 30, true), c); /* newest first */
  assert_int_equal(f.e.pool_reused, 1);
  assert_null(c->handle.tcp.data); /* the caller's to set */

  f.cfg.http.pool_max_idle = 0; /* a reload that turns reuse off: read at each give */
  assert_false(cynic__pool_give(c, 40));
  f.cfg.http.pool_max_idle = 2;
  f.up.retired = true; /* a retired upstream keeps nothing */
  assert_false(cynic__pool_give(c, 40));
  f.up.retired = false;
  cynic__upconn_close(c, false, cynic__upconn_free_cb);
  pool_teardown(&f);
  assert_true(peer_closed(sb)); /* close_all closed b */
  close(sa), close(sb), close(sc);
}

/* An idle connection the upstream closed, or that received bytes nobody
 * asked for, is never handed out: the loop notices (the pool reads idle
 * connections) and, before the loop has run, the check at take does. */
static void test_pool_never_hands_out_a_closed_connection(void **state) {
  (void)state;
  pool_fixture_t f;
  pool_setup(&f);
  int sa, sb;
  cynic__upconn_t *a = connect_one(&f, &sa), *b = connect_one(&f, &sb);
  assert_true(cynic__pool_give(a, 0));
  assert_true(cynic__pool_give(b, 10));
  close(sb); /* the upstream closes b, the newest; the loop has not run */
  usleep(20000);
  assert_ptr_equal(cynic__pool_take(&f.e, 20, true), a); /* b failed the check at take */
  assert_int_equal(f.e.pool_discarded, 1);
  assert_int_equal(f.e.idle_count, 0);
  /* a goes back; the upstream then sends bytes on it unasked: closed by the
   * pool's read, without any take. */
  assert_true(cynic__pool_give(a, 30));
  assert_int_equal(write(sa, "HTTP/1.1 408 Request Timeout\r\n\r\n", 32), 32);
  settle(&f);
  assert_int_equal(f.e.idle_count, 0);
  assert_int_equal(f.e.pool_discarded, 2);
  assert_null(cynic__pool_take(&f.e, 40, true));
  assert_true(peer_closed(sa));
  pool_teardown(&f);
  close(sa);
}

/* The check at take costs a system call, so it runs only when the caller asks
 * (a request with a body, which cannot go twice) and not for a connection
 * given back in this very millisecond: otherwise a connection whose peer
 * closed before the loop read it is handed out (a bodiless request goes
 * again). Both peers have closed here; no take discards. */
static void test_pool_checks_only_when_asked(void **state) {
  (void)state;
  pool_fixture_t f;
  pool_setup(&f);
  int sa, sb;
  cynic__upconn_t *a = connect_one(&f, &sa), *b = connect_one(&f, &sb);
  assert_true(cynic__pool_give(a, 10));
  assert_true(cynic__pool_give(b, 20));
  close(sa); /* the upstream closes both; the loop has not run */
  close(sb);
  usleep(20000);
  assert_ptr_equal(cynic__pool_take(&f.e, 20, true), b);  /* given back this millisecond */
  assert_ptr_equal(cynic__pool_take(&f.e, 30, false), a); /* not asked */
  assert_int_equal(f.e.pool_discarded, 0);
  assert_int_equal(f.e.pool_reused, 2);
  cynic__upconn_close(a, false, cynic__upconn_free_cb);
  cynic__upconn_close(b, false, cynic__upconn_free_cb);
  pool_teardown(&f);
}

/* Age: the sweep closes connections idle for idle_timeout, and take never
 * returns one that old even before the sweep. */
static void test_pool_idle_timeout(void **state) {
  (void)state;
  pool_fixture_t f;
  pool_setup(&f);
  int sa, sb;
  cynic__upconn_t *a = connect_one(&f, &sa), *b = connect_one(&f, &sb);
  assert_true(cynic__pool_give(a, 100));
  assert_true(cynic__pool_give(b, 600));
  cynic__pool_sweep(&f.e, 1099); /* a is 999 ms idle: kept */
  assert_int_equal(f.e.idle_count, 2);
  cynic__pool_sweep(&f.e, 1100); /* 1,000 ms: closed; b stays */
  assert_int_equal(f.e.idle_count, 1);
  assert_null(cynic__pool_take(&f.e, 1600, true)); /* b is 1,000 ms idle: closed, not given */
  assert_int_equal(f.e.idle_count, 0);
  assert_int_equal(f.e.pool_discarded, 2);
  assert_int_equal(f.e.pool_reused, 0);
  settle(&f);
  assert_true(peer_closed(sa));
  assert_true(peer_closed(sb));
  pool_teardown(&f);
  close(sa), close(sb);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_client_options_inherited_from_listener),
      cmocka_unit_test(test_inheritance_check_has_a_budget),
      cmocka_unit_test(test_pool_cap_evicts_the_oldest),
      cmocka_unit_test(test_pool_never_hands_out_a_closed_connection),
      cmocka_unit_test(test_pool_checks_only_when_asked),
      cmocka_unit_test(test_pool_idle_timeout),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
