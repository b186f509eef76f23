/* tests/unit/test_deadline.c: deadline arithmetic and the ms header. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cynic/deadline.h"
#include "fake_clock.h"

#define MS CYNIC_MS(1)
#define NONE CYNIC_DEADLINE_NONE_NS

static void test_arithmetic(void **state) {
  (void)state;
  cynic_deadline_t d = cynic_deadline_in(CYNIC_SEC(10), CYNIC_MS(250));
  assert_int_equal(d.at_ns, CYNIC_SEC(10) + CYNIC_MS(250));
  assert_false(cynic_deadline_is_none(d));
  assert_int_equal(cynic_deadline_left(d, CYNIC_SEC(10)), CYNIC_MS(250));
  assert_int_equal(cynic_deadline_left(d, CYNIC_SEC(10) + 100 * MS), 150 * MS);
  assert_false(cynic_deadline_expired(d, CYNIC_SEC(10) + 250 * MS - 1));
  assert_int_equal(cynic_deadline_left(d, CYNIC_SEC(10) + 250 * MS - 1), 1);
  /* At the instant itself: expired, nothing left. */
  assert_true(cynic_deadline_expired(d, CYNIC_SEC(10) + 250 * MS));
  assert_int_equal(cynic_deadline_left(d, CYNIC_SEC(10) + 250 * MS), 0);
  /* Long after: still 0, never a wrapped huge number. */
  assert_int_equal(cynic_deadline_left(d, CYNIC_SEC(3600)), 0);
  assert_true(cynic_deadline_expired(d, UINT64_MAX - 1));
  /* A timeout of 0 is already expired. */
  assert_true(cynic_deadline_expired(cynic_deadline_in(5, 0), 5));
}

static void test_none_and_saturation(void **state) {
  (void)state;
  cynic_deadline_t n = cynic_deadline_none();
  assert_int_equal(n.at_ns, NONE);
  assert_true(cynic_deadline_is_none(n));
  assert_false(cynic_deadline_expired(n, UINT64_MAX - 1));
  assert_false(cynic_deadline_expired(n, UINT64_MAX));
  assert_int_equal(cynic_deadline_left(n, 12345), UINT64_MAX);
  /* now + timeout past the end of time is "none", not a wrapped instant. */
  assert_true(cynic_deadline_is_none(cynic_deadline_in(UINT64_MAX - 5, 10)));
  assert_true(cynic_deadline_is_none(cynic_deadline_in(7, UINT64_MAX)));
  assert_int_equal(cynic_deadline_in(UINT64_MAX - 10, 5).at_ns, UINT64_MAX - 5);
}

static void test_clock_variant(void **state) {
  (void)state;
  fake_clock_t fc = {0};
  fake_clock_set(&fc, CYNIC_SEC(42));
  cynic_clock_t c = fake_clock_bind(&fc);
  cynic_deadline_t d = cynic_deadline_in_clock(&c, CYNIC_SEC(2));
  assert_int_equal(d.at_ns, CYNIC_SEC(44));
  fake_clock_advance(&fc, CYNIC_SEC(1));
  assert_int_equal(cynic_deadline_left(d, cynic_clock_now(&c)), CYNIC_SEC(1));
  /* The default clock works too. */
  cynic_deadline_t r = cynic_deadline_in_clock(NULL, CYNIC_SEC(60));
  assert_false(cynic_deadline_expired(r, cynic_clock_now(NULL)));
}

static void test_min(void **state) {
  (void)state;
  cynic_deadline_t a = {100}, b = {200}, n = cynic_deadline_none();
  assert_int_equal(cynic_deadline_min(a, b).at_ns, 100);
  assert_int_equal(cynic_deadline_min(b, a).at_ns, 100);
  assert_int_equal(cynic_deadline_min(n, b).at_ns, 200);
  assert_int_equal(cynic_deadline_min(a, n).at_ns, 100);
  assert_true(cynic_deadline_is_none(cynic_deadline_min(n, n)));
}

static void test_for_hop(void **state) {
  (void)state;
  const uint64_t t0 = CYNIC_SEC(100);
  cynic_deadline_t d = cynic_deadline_in(t0, CYNIC_SEC(1));
  /* Plenty of time: the hop's own timeout wins. */
  assert_int_equal(cynic_deadline_for_hop(d, t0, 250 * MS, 50 * MS), 250 * MS);
  /* 900 ms spent: 100 ms left, 50 kept for our reply -> 50 for the hop. */
  assert_int_equal(cynic_deadline_for_hop(d, t0 + 900 * MS, 250 * MS, 50 * MS), 50 * MS);
  /* Exactly the reserve left: 0, don't start. */
  assert_int_equal(cynic_deadline_for_hop(d, t0 + 950 * MS, 250 * MS, 50 * MS), 0);
  /* Less than the reserve, or past the deadline: still 0, never wrapped. */
  assert_int_equal(cynic_deadline_for_hop(d, t0 + 990 * MS, 250 * MS, 50 * MS), 0);
  assert_int_equal(cynic_deadline_for_hop(d, t0 + CYNIC_SEC(5), 250 * MS, 0), 0);
  /* No hop timeout: the deadline alone decides. */
  assert_int_equal(cynic_deadline_for_hop(d, t0, UINT64_MAX, 100 * MS), 900 * MS);
  /* No deadline: the hop timeout alone decides, the reserve is moot. */
  cynic_deadline_t n = cynic_deadline_none();
  assert_int_equal(cynic_deadline_for_hop(n, t0, 250 * MS, 50 * MS), 250 * MS);
  assert_int_equal(cynic_deadline_for_hop(n, t0, UINT64_MAX, 50 * MS), UINT64_MAX);
  /* Three hops in a row, each keeping 10 ms: the budget shrinks, never grows. */
  uint64_t now = t0;
  cynic_deadline_t hop = d;
  uint64_t prev = UINT64_MAX;
  for (int i = 0; i < 3; i++) {
    uint64_t t = cynic_deadline_for_hop(hop, now, CYNIC_SEC(10), 10 * MS);
    assert_true(t < prev);
    prev = t;
    now += 50 * MS; /* on the wire; the next hop starts its clock here */
    hop = cynic_deadline_in(now, t);
    now += 50 * MS; /* the next hop's own work before it calls onwards */
  }
  /* 1000 - 10 = 990; 990 - 50 - 10 = 930; 930 - 50 - 10 = 870. */
  assert_int_equal(prev, 870 * MS);
}

typedef struct header_case {
  const char *in;
  int want_err;
  uint64_t want_ms; /* when want_err == 0 */
} header_case_t;

static void test_header_parse_table(void **state) {
  (void)state;
  const header_case_t cases[] = {
      {"0", 0, 0},
      {"1", 0, 1},
      {"250", 0, 250},
      {"007", 0, 7},
      {" 250", 0, 250},                                /* leading OWS ignored */
      {"250 ", 0, 250},                                /* trailing OWS ignored */
      {"\t 250 \t", 0, 250},                           /* tabs are OWS too */
      {"18446744073709", 0, UINT64_C(18446744073709)}, /* largest: none */
      {"000000000000000000000000000042", 0, 42},
      {"", CYNIC_EINVAL, 0},
      {"   ", CYNIC_EINVAL, 0},
      {"-1", CYNIC_EINVAL, 0},
      {"+1", CYNIC_EINVAL, 0},
      {"1.5", CYNIC_EINVAL, 0},
      {"1e3", CYNIC_EINVAL, 0},
      {"0x10", CYNIC_EINVAL, 0},
      {"12ms", CYNIC_EINVAL, 0},
      {"abc", CYNIC_EINVAL, 0},
      {"1 2", CYNIC_EINVAL, 0}, /* whitespace inside */
      {"1,2", CYNIC_EINVAL, 0},
      {"\n12", CYNIC_EINVAL, 0}, /* only SP and HTAB are OWS */
      {"12\r", CYNIC_EINVAL, 0},
      {"18446744073710", CYNIC_EINVAL, 0},       /* ms * 1e6 overflows */
      {"18446744073709551615", CYNIC_EINVAL, 0}, /* UINT64_MAX */
      {"18446744073709551616", CYNIC_EINVAL, 0}, /* UINT64_MAX + 1 */
      {"99999999999999999999999999", CYNIC_EINVAL, 0},
  };
  const uint64_t now = CYNIC_SEC(7);
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    cynic_deadline_t d = {12345};
    int err = cynic_deadline_from_ms_header(cases[i].in, strlen(cases[i].in), now, &d);
    if (err != cases[i].want_err)
      fail_msg("case %zu \"%s\": got %d, want %d", i, cases[i].in, err, cases[i].want_err);
    if (cases[i].want_err == 0)
      assert_int_equal(d.at_ns, cynic__sat_add(now, cases[i].want_ms * MS));
    else
      assert_int_equal(d.at_ns, 12345); /* untouched */
  }
}

static void test_header_parse_edges(void **state) {
  (void)state;
  cynic_deadline_t d = {1};
  /* Only len bytes are read: no NUL terminator needed, none honoured. */
  assert_int_equal(cynic_deadline_from_ms_header("123456", 3, 0, &d), 0);
  assert_int_equal(d.at_ns, 123 * MS);
  assert_int_equal(cynic_deadline_from_ms_header("12\0"
                                                 "3",
                                                 4, 0, &d),
                   CYNIC_EINVAL);
  assert_int_equal(cynic_deadline_from_ms_header(NULL, 0, 0, &d), CYNIC_EINVAL);
  assert_int_equal(cynic_deadline_from_ms_header(NULL, 3, 0, &d), CYNIC_EINVAL);
  assert_int_equal(cynic_deadline_from_ms_header("5", 1, 0, NULL), CYNIC_EINVAL);
  /* "0" means the caller has no time left: expired on arrival. */
  assert_int_equal(cynic_deadline_from_ms_header("0", 1, 99, &d), 0);
  assert_true(cynic_deadline_expired(d, 99));
  /* A large budget late in the clock's life saturates to "none". */
  assert_int_equal(cynic_deadline_from_ms_header("18446744073709", 14, CYNIC_SEC(1), &d), 0);
  assert_true(cynic_deadline_is_none(d));
}

static void test_header_format(void **state) {
  (void)state;
  char buf[CYNIC_DEADLINE_MS_HEADER_MAX];
  const uint64_t now = CYNIC_SEC(50);
  cynic_deadline_t d = cynic_deadline_in(now, 1500 * MS);
  assert_int_equal(cynic_deadline_to_ms_header(d, now, buf, sizeof(buf)), 4);
  assert_string_equal(buf, "1500");
  /* Rounded down: 0.999999 ms left is "0", never more than is left. */
  d = cynic_deadline_in(now, MS - 1);
  assert_int_equal(cynic_deadline_to_ms_header(d, now, buf, sizeof(buf)), 1);
  assert_string_equal(buf, "0");
  d = cynic_deadline_in(now, 2 * MS + 999999);
  assert_int_equal(cynic_deadline_to_ms_header(d, now, buf, sizeof(buf)), 1);
  assert_string_equal(buf, "2");
  /* Expired: "0". */
  assert_int_equal(cynic_deadline_to_ms_header(d, now + CYNIC_SEC(9), buf, sizeof(buf)), 1);
  assert_string_equal(buf, "0");
  /* None: nothing to send. */
  memset(buf, 'x', sizeof(buf));
  assert_int_equal(cynic_deadline_to_ms_header(cynic_deadline_none(), now, buf, sizeof(buf)), 0);
  assert_string_equal(buf, "");
  /* The longest value fits the advertised size. */
  d.at_ns = UINT64_MAX - 1;
  assert_int_equal(cynic_deadline_to_ms_header(d, 0, buf, sizeof(buf)), 14);
  assert_string_equal(buf, "18446744073709");
  /* Too small a buffer: 0 and an empty string, never a truncated number. */
  d = cynic_deadline_in(now, 1500 * MS);
  assert_int_equal(cynic_deadline_to_ms_header(d, now, buf, 4), 0);
  assert_string_equal(buf, "");
  assert_int_equal(cynic_deadline_to_ms_header(d, now, buf, 5), 4);
  assert_int_equal(cynic_deadline_to_ms_header(d, now, NULL, 0), 0);
}

static void test_header_round_trip_never_extends(void **state) {
  (void)state;
  /* A deadline that crosses a hop by header never ends later than the
   * original, and loses less than a millisecond per crossing. */
  char buf[CYNIC_DEADLINE_MS_HEADER_MAX];
  const uint64_t left[] = {0, 1, MS - 1, MS, 1234567, CYNIC_SEC(30) + 17};
  for (size_t i = 0; i < sizeof(left) / sizeof(left[0]); i++) {
    uint64_t now = CYNIC_SEC(1000);
    cynic_deadline_t d = cynic_deadline_in(now, left[i]), back;
    size_t n = cynic_deadline_to_ms_header(d, now, buf, sizeof(buf));
    assert_true(n > 0);
    assert_int_equal(cynic_deadline_from_ms_header(buf, n, now, &back), 0);
    assert_true(back.at_ns <= d.at_ns);
    assert_true(d.at_ns - back.at_ns < MS);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_arithmetic),
      cmocka_unit_test(test_none_and_saturation),
      cmocka_unit_test(test_clock_variant),
      cmocka_unit_test(test_min),
      cmocka_unit_test(test_for_hop),
      cmocka_unit_test(test_header_parse_table),
      cmocka_unit_test(test_header_parse_edges),
      cmocka_unit_test(test_header_format),
      cmocka_unit_test(test_header_round_trip_never_extends),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
