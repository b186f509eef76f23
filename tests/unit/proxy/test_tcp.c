/* tests/unit/proxy/test_tcp.c: the pure parts of src/proxy/tcp.c.
 *
 * The ring buffer of one direction (what on_alloc offers, what pending_bufs
 * writes, how consume moves, wrap-around), the bounded buffer pool, the
 * ns -> ms rounding of timeouts, and the check that lets accepted sockets
 * inherit their TCP options from the listening socket. The socket behaviour is tested black-box in
 * tests/integration/test_proxy_*.py. tcp.c is included to reach its statics
 * (H2O's way); the rest of the daemon is linked as it is (cynic_proxy_daemon),
 * nothing is stubbed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../../src/proxy/tcp.c"

#define CAP 1000u

typedef struct fixture {
  cynic__config_listener_t lcfg;
  cynic__listener_t listener;
  cynic__conn_t conn;
} fixture_t;

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof *f);
  f->lcfg.buffer_bytes = CAP;
  f->listener.cfg = &f->lcfg;
  f->conn.base.listener = &f->listener;
  f->conn.client.data = &f->conn;
  direction_init(&f->conn, &f->conn.up, &f->conn.client, &f->conn.server, CAP);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  free(f->conn.up.buf);
  while (f->listener.pool_len > 0)
    free(f->listener.pool[--f->listener.pool_len]);
  free(f);
  return 0;
}

/* What on_alloc offers for the client's direction (up). */
static uv_buf_t offer(fixture_t *f) {
  uv_buf_t b;
  on_alloc((uv_handle_t *)&f->conn.client, 65536, &b);
  return b;
}

static void test_empty_ring_offers_everything(void **state) {
  fixture_t *f = *state;
  direction_t *d = &f->conn.up;
  assert_null(d->buf);
  uv_buf_t b = offer(f);
  assert_non_null(d->buf); /* taken on demand */
  assert_ptr_equal(b.base, d->buf);
  assert_int_equal(b.len, CAP);
}

static void test_ring_wraps(void **state) {
  fixture_t *f = *state;
  direction_t *d = &f->conn.up;
  uv_buf_t b = offer(f);
  memset(b.base, 'a', 900);
  d->len = 900;    /* read 900 */
  consume(d, 600); /* wrote 600: [600, 900) pending */
  assert_int_equal(d->head, 600);
  assert_int_equal(d->len, 300);
  b = offer(f); /* the tail up to the end */
  assert_ptr_equal(b.base, d->buf + 900);
  assert_int_equal(b.len, 100);
  d->len += 100; /* read 100: [600, 1000) */
  b = offer(f);  /* wrapped: the free space before head */
  assert_ptr_equal(b.base, d->buf);
  assert_int_equal(b.len, 600);
  d->len += 250; /* read 250: [600, 1000) + [0, 250) */
  uv_buf_t bufs[2];
  assert_int_equal(pending_bufs(d, bufs), 2);
  assert_ptr_equal(bufs[0].base, d->buf + 600);
  assert_int_equal(bufs[0].len, 400);
  assert_ptr_equal(bufs[1].base, d->buf);
  assert_int_equal(bufs[1].len, 250);
  consume(d, 450); /* across the wrap */
  assert_int_equal(d->head, 50);
  assert_int_equal(d->len, 200);
  assert_int_equal(pending_bufs(d, bufs), 1);
  assert_ptr_equal(bufs[0].base, d->buf + 50);
  assert_int_equal(bufs[0].len, 200);
  consume(d, 200);
  assert_int_equal(d->len, 0);
  assert_int_equal(d->head, 0); /* empty: contiguous again */
  assert_int_equal(d->bytes, 600 + 450 + 200);
}

static void test_full_ring_offers_nothing(void **state) {
  fixture_t *f = *state;
  direction_t *d = &f->conn.up;
  offer(f);
  d->head = 300;
  d->len = CAP;
  uv_buf_t b = offer(f);
  assert_null(b.base);
  assert_int_equal(b.len, 0);
  uv_buf_t bufs[2];
  assert_int_equal(pending_bufs(d, bufs), 2);
  assert_int_equal(bufs[0].len + bufs[1].len, CAP);
}

static void test_pool_is_bounded_and_reused(void **state) {
  fixture_t *f = *state;
  cynic__listener_t *l = &f->listener;
  char *bufs[CYNIC__BUFFER_POOL_MAX + 6];
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
    bufs[i] = buffer_get(l);
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
    buffer_put(l, bufs[i]); /* past the cap they are freed (ASan checks) */
  assert_int_equal(l->pool_len, CYNIC__BUFFER_POOL_MAX);
  char *again = buffer_get(l);
  assert_ptr_equal(again, bufs[CYNIC__BUFFER_POOL_MAX - 1]); /* LIFO: still warm */
  buffer_put(l, again);
  buffer_put(l, NULL); /* a direction without a buffer */
  assert_int_equal(l->pool_len, CYNIC__BUFFER_POOL_MAX);
}

static void test_timeouts_round_up_to_ms(void **state) {
  (void)state;
  assert_int_equal(to_ms(0), 0);
  assert_int_equal(to_ms(1), 1);
  assert_int_equal(to_ms(1000000), 1);
  assert_int_equal(to_ms(1000001), 2);
  assert_int_equal(to_ms(UINT64_C(250000000)), 250);
}

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
  assert_true(set_fd_options(lfd, &u));
  assert_int_equal(listen_and_accept(lfd, &client, &accepted), 0);
  /* Linux copies them into the accepted socket; cynic checks, not assumes. */
  assert_true(options_inherited(accepted, &u));
  assert_false(options_inherited(client, &u)); /* a socket nobody set */
  u.keepalive_probes = 5;
  assert_false(options_inherited(accepted, &u)); /* any difference counts */
  u.keepalive_probes = 4;

  /* The listener's state: checked on the first connection, then trusted. */
  uv_loop_t loop;
  uv_tcp_t h;
  cynic__upstream_t up = {.cfg = &u};
  cynic__listener_t l = {.upstream = &up, .options = CYNIC__OPTIONS_UNKNOWN};
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_int_equal(uv_tcp_init(&loop, &h), 0);
  assert_int_equal(uv_tcp_open(&h, accepted), 0);
  set_client_options(&l, &h);
  assert_int_equal(l.options, CYNIC__OPTIONS_INHERITED);
  uv_close((uv_handle_t *)&h, NULL);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);

  /* Not inherited (here: the client socket, which has none): set each time. */
  cynic__listener_t l2 = {.upstream = &up, .options = CYNIC__OPTIONS_UNKNOWN};
  assert_int_equal(uv_tcp_init(&loop, &h), 0);
  assert_int_equal(uv_tcp_open(&h, client), 0);
  set_client_options(&l2, &h);
  assert_int_equal(l2.options, CYNIC__OPTIONS_PER_CONNECTION);
  assert_true(options_inherited(client, &u)); /* ... and set they were */
  uv_close((uv_handle_t *)&h, NULL);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(&loop), 0);
  close(lfd);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_empty_ring_offers_everything, setup, teardown),
      cmocka_unit_test_setup_teardown(test_ring_wraps, setup, teardown),
      cmocka_unit_test_setup_teardown(test_full_ring_offers_nothing, setup, teardown),
      cmocka_unit_test_setup_teardown(test_pool_is_bounded_and_reused, setup, teardown),
      cmocka_unit_test(test_timeouts_round_up_to_ms),
      cmocka_unit_test(test_client_options_inherited_from_listener),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
