/*
 * Unit test of http_msg.c's raw head check (scan_head), which skips runs of
 * plain bytes sixteen (SSE2) or eight at a time: against the rules applied
 * a byte at a time (the check as it was first written, kept here as the
 * oracle), on random heads made of the bytes that matter (CR, LF, SP, HTAB,
 * a control byte, DEL, obs-text, plain text) in random splits, from every
 * state a feed can start in. Includes the .c to reach the static function (H2O's way).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "http_msg.c"

/* The rules a byte at a time: every CR is followed by LF, every LF follows a
 * CR, no line starts with whitespace, no control byte but HTAB outside line
 * ends. */
static const char *oracle(char *last, const char *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i], prev = (unsigned char)*last;
    if (prev == '\r' && c != '\n')
      return "bare CR";
    if (c == '\n' && prev != '\r')
      return "bare LF";
    if (prev == '\n' && (c == ' ' || c == '\t'))
      return "obs-fold";
    if ((c < 0x20 && c != '\r' && c != '\n' && c != '\t') || c == 0x7f)
      return "control byte in the head";
    *last = (char)c;
  }
  return NULL;
}

static uint64_t next_rand(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static void random_heads(void **state) {
  (void)state;
  /* weighted towards plain text so that long runs and whole words occur */
  static const char alphabet[] = "\r\n\r\n \t\x01\x7f\x80\xff"
                                 "abcdefghijklmnopqrstuvwxyz:/.-0123456789ABCDEFGHIJ";
  static const char starts[] = {0, 'a', '\r', '\n', '\t', ' '};
  uint64_t seed = 0x5CA7;
  size_t refusals = 0, passes = 0;
  for (int k = 0; k < 300000; k++) {
    char buf[96];
    size_t n = next_rand(&seed) % sizeof buf;
    /* mostly well-formed lines: "text\r\n" pieces, with a random byte now and then */
    for (size_t i = 0; i < n; i++) {
      uint64_t r = next_rand(&seed);
      buf[i] = r % 16 == 0 ? alphabet[(r >> 8) % (sizeof alphabet - 1)]
                           : alphabet[10 + (r >> 8) % (sizeof alphabet - 11)];
      if (r % 13 == 1 && i + 1 < n) {
        buf[i++] = '\r';
        buf[i] = '\n';
      }
    }
    char start = starts[next_rand(&seed) % sizeof starts];
    /* the same bytes in up to three feeds: the state carries across */
    size_t cut1 = n ? next_rand(&seed) % (n + 1) : 0,
           cut2 = cut1 + (n - cut1 ? next_rand(&seed) % (n - cut1 + 1) : 0);
    cynic__http_msg_t m;
    memset(&m, 0, sizeof m);
    m.last_byte = start;
    char last = start;
    const char *want = oracle(&last, buf, n);
    const char *got = scan_head(&m, buf, cut1);
    if (got == NULL)
      got = scan_head(&m, buf + cut1, cut2 - cut1);
    if (got == NULL)
      got = scan_head(&m, buf + cut2, n - cut2);
    if ((want == NULL) != (got == NULL) || (want != NULL && strcmp(want, got) != 0) ||
        (want == NULL && m.last_byte != last))
      fail_msg("case %d (n %zu, start 0x%02x, cuts %zu %zu): got %s (last 0x%02x), want %s (last "
               "0x%02x)",
               k, n, (unsigned char)start, cut1, cut2, got ? got : "ok", (unsigned char)m.last_byte,
               want ? want : "ok", (unsigned char)last);
    if (want == NULL)
      passes++;
    else
      refusals++;
  }
  /* both outcomes well represented, or the test proves little */
  assert_true(passes > 30000);
  assert_true(refusals > 30000);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(random_heads),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
