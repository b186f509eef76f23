/* Unit tests of src/common/blocks.c: reuse newest first, the bound on kept
 * blocks, and the trim to the recent peak (LeakSanitizer checks the frees). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "blocks.h"

static void reuses_newest_first(void **state) {
  (void)state;
  cynic__blocks_t b;
  cynic__blocks_init(&b, 100, 8);
  char *p = cynic__blocks_take(&b), *q = cynic__blocks_take(&b);
  assert_non_null(p);
  assert_non_null(q);
  memset(p, 1, 100); /* the whole size is usable (ASan checks) */
  memset(q, 2, 100);
  assert_int_equal(b.out, 2);
  cynic__blocks_put(&b, p);
  cynic__blocks_put(&b, q);
  cynic__blocks_put(&b, NULL); /* ignored */
  assert_int_equal(b.out, 0);
  assert_int_equal(b.len, 2);
  assert_ptr_equal(cynic__blocks_take(&b), q);
  assert_ptr_equal(cynic__blocks_take(&b), p);
  assert_int_equal(b.len, 0);
  cynic__blocks_put(&b, p);
  cynic__blocks_put(&b, q);
  cynic__blocks_free(&b);
}

/* Past `max` kept, a block put back is freed; max 0 keeps none. */
static void keeps_at_most_max(void **state) {
  (void)state;
  cynic__blocks_t b;
  cynic__blocks_init(&b, 64, 40); /* the list grows 16, 32, then 40 */
  void *p[50];
  for (int i = 0; i < 50; i++)
    p[i] = cynic__blocks_take(&b);
  for (int i = 0; i < 50; i++)
    cynic__blocks_put(&b, p[i]);
  assert_int_equal(b.len, 40);
  assert_int_equal(b.room, 40);
  cynic__blocks_free(&b);

  cynic__blocks_init(&b, 64, 0);
  void *one = cynic__blocks_take(&b);
  cynic__blocks_put(&b, one);
  assert_int_equal(b.len, 0);
  assert_null(b.free);
  cynic__blocks_free(&b);
}

/* The trim keeps what the peak since the last trim needed beyond the blocks
 * out now, then starts a new peak; an idle set ends up holding nothing. */
static void trims_to_the_recent_peak(void **state) {
  (void)state;
  cynic__blocks_t b;
  cynic__blocks_init(&b, 32, 1000);
  void *p[30];
  for (int i = 0; i < 30; i++)
    p[i] = cynic__blocks_take(&b); /* peak 30 */
  for (int i = 10; i < 30; i++)
    cynic__blocks_put(&b, p[i]); /* 10 out, 20 kept */
  cynic__blocks_trim(&b);
  assert_int_equal(b.len, 20); /* peak 30 - 10 out */
  assert_int_equal(b.peak, 10);
  for (int i = 10; i < 15; i++)
    p[i] = cynic__blocks_take(&b); /* 15 out: peak 15 */
  for (int i = 10; i < 15; i++)
    cynic__blocks_put(&b, p[i]); /* 10 out, 20 kept */
  cynic__blocks_trim(&b);
  assert_int_equal(b.len, 5); /* peak 15 - 10 out */
  for (int i = 0; i < 10; i++)
    cynic__blocks_put(&b, p[i]);
  cynic__blocks_trim(&b);
  assert_int_equal(b.len, 10); /* the 10 were out at the peak */
  cynic__blocks_trim(&b);
  assert_int_equal(b.len, 0);
  assert_null(b.free); /* idle: not even the list */
  void *again = cynic__blocks_take(&b); /* and it works again after */
  assert_non_null(again);
  cynic__blocks_put(&b, again);
  cynic__blocks_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(reuses_newest_first),
      cmocka_unit_test(keeps_at_most_max),
      cmocka_unit_test(trims_to_the_recent_peak),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
