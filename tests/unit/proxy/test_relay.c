/* tests/unit/proxy/test_relay.c: the pure parts of src/proxy/relay.c.
 *
 * The ring buffer of one direction (what on_alloc offers, what pending_bufs
 * writes, how consume moves, wrap-around) and the bounded buffer pool, with
 * streams never opened; and hold mode (HTTP's: skip, release, back pressure,
 * EOF left to the owner) over unix socketpairs. TCP mode's socket behaviour
 * (back pressure, half-close, reset forwarding) is tested black-box in
 * tests/integration/test_proxy_*.py.
 * relay.c is included to reach its statics (H2O's way); the rest of the
 * daemon is linked as it is (cynic_proxy_daemon). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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
  cynic__blocks_free(&f->listener.buffers);
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

/* 200 connections' buffers at once (past the old fixed cache of 64): all
 * kept while that peak is recent, reused newest first, bounded by
 * CYNIC__BUFFERS_KEPT_MAX, and back to malloc two trims after it. */
static void test_pool_is_bounded_and_reused(void **state) {
  fixture_t *f = *state;
  cynic__listener_t *l = &f->listener;
  enum { N = 200 };
  char *bufs[N];
  for (size_t i = 0; i < N; i++)
    bufs[i] = buffer_get(l);
  assert_int_equal(l->buffers.size, CAP); /* set up at the first take, at the listener's size */
  assert_int_equal(l->buffers.max, CYNIC__BUFFERS_KEPT_MAX);
  for (size_t i = 0; i < N; i++)
    buffer_put(l, bufs[i]);
  assert_int_equal(l->buffers.len, N);
  char *again = buffer_get(l);
  assert_ptr_equal(again, bufs[N - 1]); /* newest first: still warm */
  buffer_put(l, again);
  buffer_put(l, NULL); /* a direction without a buffer */
  assert_int_equal(l->buffers.len, N);
  cynic__blocks_trim(&l->buffers);
  assert_int_equal(l->buffers.len, N); /* the peak was this second's */
  cynic__blocks_trim(&l->buffers);
  assert_int_equal(l->buffers.len, 0); /* freed (LeakSanitizer checks) */
}

/* ---- hold mode over real sockets (unix socketpairs as libuv pipes) ---- */

typedef struct hold_world {
  uv_loop_t loop;
  int client_end, upstream_end; /* the test's ends */
  uv_pipe_t client, server;     /* the relay's ends */
  cynic__config_listener_t lcfg;
  cynic__listener_t listener;
  cynic__relay_t relay;
  int data_calls, eof_calls, failed_calls;
} hold_world_t;

static void h_first(cynic__relay_t *r, cynic__relay_dir_t *d) {
  (void)r;
  (void)d;
}
static void h_eof(cynic__relay_t *r, cynic__relay_dir_t *d) {
  (void)d;
  hold_world_t *w = cynic__container_of(r, hold_world_t, relay);
  w->eof_calls++;
}
static void h_failed(cynic__relay_t *r, cynic__relay_dir_t *d, int err, bool writing) {
  (void)d;
  (void)err;
  (void)writing;
  hold_world_t *w = cynic__container_of(r, hold_world_t, relay);
  w->failed_calls++;
}
static void h_done(cynic__relay_t *r) {
  (void)r;
}
static void h_data(cynic__relay_t *r, cynic__relay_dir_t *d) {
  (void)d;
  hold_world_t *w = cynic__container_of(r, hold_world_t, relay);
  w->data_calls++; /* the test decides outside, between loop turns */
}
static const cynic__relay_ops_t hold_ops = {h_first, h_eof, h_failed, h_done, h_data, NULL};

static void turns(hold_world_t *w, int n) {
  for (int i = 0; i < n; i++) {
    usleep(1000);
    uv_run(&w->loop, UV_RUN_NOWAIT);
  }
}

/* What the upstream's end has received, without waiting (NUL-terminated). */
static size_t upstream_got(hold_world_t *w, char *out, size_t cap) {
  size_t n = 0;
  ssize_t k;
  while (n + 1 < cap && (k = recv(w->upstream_end, out + n, cap - 1 - n, MSG_DONTWAIT)) > 0)
    n += (size_t)k;
  out[n] = '\0';
  return n;
}

static void held_text(const cynic__relay_dir_t *d, char *out) {
  uv_buf_t spans[2];
  unsigned int n = cynic__relay_held(d, spans);
  size_t k = 0;
  for (unsigned int i = 0; i < n; i++) {
    memcpy(out + k, spans[i].base, spans[i].len);
    k += spans[i].len;
  }
  out[k] = '\0';
}

static void hold_setup(hold_world_t *w) {
  memset(w, 0, sizeof *w);
  int a[2], b[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, a), 0);
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, b), 0);
  w->client_end = a[0];
  w->upstream_end = b[1];
  assert_int_equal(uv_loop_init(&w->loop), 0);
  uv_pipe_init(&w->loop, &w->client, 0);
  uv_pipe_init(&w->loop, &w->server, 0);
  assert_int_equal(uv_pipe_open(&w->client, a[1]), 0);
  assert_int_equal(uv_pipe_open(&w->server, b[0]), 0);
  w->client.data = w->server.data = &w->relay;
  w->lcfg.buffer_bytes = CAP;
  w->listener.cfg = &w->lcfg;
  cynic__relay_init(&w->relay, &w->listener, (uv_stream_t *)&w->client,
                    (uv_stream_t *)&w->server);
  cynic__relay_hold(&w->relay.up, true);
  cynic__relay_start(&w->relay, &hold_ops);
}

static void hold_teardown(hold_world_t *w) {
  cynic__relay_stop(&w->relay);
  uv_close((uv_handle_t *)&w->client, NULL);
  uv_close((uv_handle_t *)&w->server, NULL);
  uv_run(&w->loop, UV_RUN_DEFAULT);
  cynic__relay_free(&w->relay);
  cynic__blocks_free(&w->listener.buffers);
  assert_int_equal(uv_loop_close(&w->loop), 0);
  close(w->client_end);
  close(w->upstream_end);
}

/* The owner decides what passes: a head skipped, a body released, the next
 * message held until released; nothing moves on its own. */
static void test_hold_skip_release(void **state) {
  (void)state;
  static hold_world_t w;
  hold_setup(&w);
  char got[4096], held[4096];
  assert_int_equal(write(w.client_end, "HEADbodyNEXT", 12), 12);
  for (int i = 0; i < 200 && w.relay.up.held < 12; i++)
    turns(&w, 1);
  assert_true(w.data_calls >= 1);
  held_text(&w.relay.up, held);
  assert_string_equal(held, "HEADbodyNEXT");
  assert_int_equal(upstream_got(&w, got, sizeof got), 0); /* held: nothing forwarded */

  assert_int_equal(cynic__relay_skip(&w.relay.up, 4), 0); /* the head: dropped */
  cynic__relay_release(&w.relay.up, 4);                   /* the body: forwarded */
  turns(&w, 20);
  assert_int_equal(upstream_got(&w, got, sizeof got), 4);
  assert_string_equal(got, "body");
  held_text(&w.relay.up, held);
  assert_string_equal(held, "NEXT"); /* the next message waits */
  assert_int_equal(w.relay.up.bytes, 4); /* skipped bytes are not forwarded bytes */

  cynic__relay_release(&w.relay.up, 4);
  turns(&w, 20);
  assert_int_equal(upstream_got(&w, got, sizeof got), 4);
  assert_string_equal(got, "NEXT");
  assert_int_equal(w.relay.up.held, 0);
  assert_int_equal(w.relay.up.len, 0);

  /* EOF in hold mode: the owner hears it, the relay does not pass it on */
  shutdown(w.client_end, SHUT_WR);
  turns(&w, 20);
  assert_int_equal(w.eof_calls, 1);
  char c;
  assert_int_equal(recv(w.upstream_end, &c, 1, MSG_DONTWAIT), -1); /* no FIN: EAGAIN */
  assert_int_equal(errno, EAGAIN);
  assert_int_equal(w.failed_calls, 0);
  hold_teardown(&w);
}

/* Held bytes count against the ring: a peer sending ahead is stopped by back
 * pressure (reading stops at `buffer`), and resumes once the owner lets them
 * go. A skip behind released, unwritten bytes is refused. */
static void test_hold_back_pressure(void **state) {
  (void)state;
  static hold_world_t w;
  hold_setup(&w);
  static char big[3 * CAP];
  memset(big, 'x', sizeof big);
  assert_int_equal(write(w.client_end, big, sizeof big), (ssize_t)sizeof big);
  turns(&w, 50);
  assert_int_equal(w.relay.up.len, CAP); /* full of held bytes */
  assert_int_equal(w.relay.up.held, CAP);
  assert_false(w.relay.up.reading); /* back pressure */
  char got[8192];
  assert_int_equal(upstream_got(&w, got, sizeof got), 0);
  size_t total = 0;
  for (int i = 0; i < 200 && total < sizeof big; i++) {
    cynic__relay_release(&w.relay.up, w.relay.up.held);
    turns(&w, 2);
    total += upstream_got(&w, got, sizeof got);
  }
  assert_int_equal(total, sizeof big); /* all of it, once released */

  /* the ring cannot drop bytes behind released ones still to be written */
  cynic__relay_dir_t *d = &w.relay.up;
  cynic__relay_hold(d, false);
  d->len = 10, d->held = 4, d->head = 0;
  assert_int_equal(cynic__relay_skip(d, 2), CYNIC_EINVAL);
  d->len = 4;
  assert_int_equal(cynic__relay_skip(d, 5), CYNIC_EINVAL); /* more than held */
  d->len = 0, d->held = 0;
  hold_teardown(&w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_empty_ring_offers_everything, setup, teardown),
      cmocka_unit_test_setup_teardown(test_ring_wraps, setup, teardown),
      cmocka_unit_test_setup_teardown(test_full_ring_offers_nothing, setup, teardown),
      cmocka_unit_test_setup_teardown(test_pool_is_bounded_and_reused, setup, teardown),
      cmocka_unit_test(test_hold_skip_release),
      cmocka_unit_test(test_hold_back_pressure),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
