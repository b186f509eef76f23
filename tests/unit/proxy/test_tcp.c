/* tests/unit/proxy/test_tcp.c: the pure parts of src/proxy/tcp.c.
 *
 * The ring buffer of one direction (what on_alloc offers, what pending_bufs
 * writes, how consume moves, wrap-around), the bounded buffer pool, the
 * ns -> ms rounding of timeouts (the socket options are pool.c's:
 * test_pool.c). The socket behaviour is tested black-box in
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
  direction_init(&f->conn, &f->conn.up, &f->conn.client, &f->conn.server.handle, CAP);
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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_empty_ring_offers_everything, setup, teardown),
      cmocka_unit_test_setup_teardown(test_ring_wraps, setup, teardown),
      cmocka_unit_test_setup_teardown(test_full_ring_offers_nothing, setup, teardown),
      cmocka_unit_test_setup_teardown(test_pool_is_bounded_and_reused, setup, teardown),
      cmocka_unit_test(test_timeouts_round_up_to_ms),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
