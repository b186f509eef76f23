/* Unit tests of src/common/buf.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "cynic/common.h"

static void append_respects_cap(void **state) {
  (void)state;
  cynic__buf_t b;
  cynic__buf_init(&b, 10);
  assert_int_equal(cynic__buf_append(&b, "hello", 5), 0);
  assert_int_equal(cynic__buf_append(&b, "world", 5), 0);
  assert_int_equal(b.len, 10);
  assert_string_equal(b.data, "helloworld");
  assert_int_equal(cynic__buf_append(&b, "!", 1), CYNIC_ERANGE);
  assert_int_equal(b.len, 10); /* unchanged on failure */
  assert_string_equal(b.data, "helloworld");
  cynic__buf_free(&b);
}

/* A part of the buffer appended to itself, when that makes it grow (the
 * status stream repeats its status this way): the source moves with the data
 * (under ASan the old code read freed memory here). */
static void append_from_itself_while_growing(void **state) {
  (void)state;
  cynic__buf_t b;
  cynic__buf_init(&b, 1 << 20);
  for (int i = 0; i < 64; i++) /* exactly the first allocation (64): full */
    assert_int_equal(cynic__buf_append(&b, i % 2 ? "b" : "a", 1), 0);
  assert_int_equal(b.len, b.cap);
  assert_int_equal(cynic__buf_append(&b, b.data + 2, 60), 0); /* grows */
  assert_int_equal(b.len, 124);
  for (size_t i = 0; i < b.len; i++)
    assert_int_equal(b.data[i], i % 2 ? 'b' : 'a');
  cynic__buf_free(&b);
}

static void printf_and_consume(void **state) {
  (void)state;
  cynic__buf_t b;
  cynic__buf_init(&b, 64);
  assert_int_equal(cynic__buf_printf(&b, "%d-%s", 42, "x"), 0);
  assert_string_equal(b.data, "42-x");
  assert_int_equal(cynic__buf_printf(&b, "%0100d", 1), CYNIC_ERANGE);
  assert_string_equal(b.data, "42-x");
  cynic__buf_consume(&b, 3);
  assert_string_equal(b.data, "x");
  cynic__buf_consume(&b, 100);
  assert_int_equal(b.len, 0);
  assert_string_equal(b.data, "");
  cynic__buf_free(&b);
}

static void grows_and_detaches(void **state) {
  (void)state;
  cynic__buf_t b;
  cynic__buf_init(&b, 1 << 20);
  char chunk[1000];
  memset(chunk, 'a', sizeof(chunk));
  for (int i = 0; i < 1000; i++)
    assert_int_equal(cynic__buf_append(&b, chunk, sizeof(chunk)), 0);
  assert_int_equal(b.len, 1000000);
  assert_true(b.cap <= (1 << 20));
  size_t len;
  char *p = cynic__buf_detach(&b, &len);
  assert_int_equal(len, 1000000);
  assert_null(b.data);
  assert_int_equal(b.len, 0);
  free(p);
  cynic__buf_free(&b);
}

static void overflow_sizes_rejected(void **state) {
  (void)state;
  cynic__buf_t b;
  cynic__buf_init(&b, 16);
  assert_int_equal(cynic__buf_append(&b, "a", SIZE_MAX), CYNIC_ERANGE);
  assert_int_equal(cynic__buf_append(&b, "ab", 2), 0);
  assert_int_equal(cynic__buf_append(&b, "a", SIZE_MAX - 1), CYNIC_ERANGE);
  cynic__buf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(append_respects_cap),
      cmocka_unit_test(append_from_itself_while_growing),
      cmocka_unit_test(printf_and_consume),
      cmocka_unit_test(grows_and_detaches),
      cmocka_unit_test(overflow_sizes_rejected),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
