/* tests/unit/proxy/test_relay.c: the pure parts of src/proxy/relay.c.
 *
 * The ring buffer of one direction (what on_alloc offers, what pending_bufs
 * writes, how consume moves, wrap-around) and the bounded buffer pool. The
 * streams are never opened: the socket behaviour (back pressure, half-close,
 * reset forwarding) is tested black-box in tests/integration/test_proxy_*.py.
 * relay.c is included to reach its statics (H2O's way); the rest of the
 * daemon is linked as it is (cynic_proxy_daemon). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../../../src/proxy/relay.c"

#define CAP 1000u

typedef struct fixture {
  cynic__config_listener_t lcfg;
  cynic__listener_t listener;
  uv_tcp_t client, server; /* never opened: only their addresses and data */
  cynic__relay_t relay;
} fixture_t;

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof *f);
  f->lcfg.buffer_bytes = CAP;
  f->listener.cfg = &f->lcfg;
  f->client.data = f->server.data = &f->relay;
  cynic__relay_init(&f->relay, &f->listener, (uv_stream_t *)&f->client, (uv_stream_t *)&f->server);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  free(f->relay.up.buf);
  while (f->listener.pool_len > 0)
    free(f->listener.pool[--f->listener.pool_len]);
  free(f);
  return 0;
}

/* What on_alloc offers for the client's direction (up). */
static uv_buf_t offer(fixture_t *f) {
  uv_buf_t b;
  on_alloc((uv_handle_t *)&f->client, 65536, &b);
  return b;
}

static void test_empty_ring_offers_everything(void **state) {
  fixture_t *f = *state;
  cynic__relay_dir_t *d = &f->relay.up;
  assert_null(d->buf);
  uv_buf_t b = offer(f);
  assert_non_null(d->buf); /* taken on demand */
  assert_ptr_equal(b.base, d->buf);
  assert_int_equal(b.len, CAP);
}

static void test_ring_wraps(void **state) {
  fixture_t *f = *state;
  cynic__relay_dir_t *d = &f->relay.up;
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
  cynic__relay_dir_t *d = &f->relay.up;
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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_empty_ring_offers_everything, setup, teardown),
      cmocka_unit_test_setup_teardown(test_ring_wraps, setup, teardown),
      cmocka_unit_test_setup_teardown(test_full_ring_offers_nothing, setup, teardown),
      cmocka_unit_test_setup_teardown(test_pool_is_bounded_and_reused, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
