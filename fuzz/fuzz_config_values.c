/*
 * fuzz/fuzz_config_values.c: libFuzzer target for the config's value parsers
 * (src/proxy/config_value.c): durations, sizes, percentages, counts and
 * numbers, the words an operator types. Build and run: `make fuzz`.
 *
 * The first input byte picks the parser, the rest is the value. Besides the
 * sanitizers it checks the documented rules (docs/configuration.md): a value
 * accepted is made of the characters its grammar allows and lands in its
 * range; a value refused leaves a hint, NUL-terminated within its buffer.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config_value.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool only(const char *s, const char *allowed) {
  return s[0] != '\0' && strspn(s, allowed) == strlen(s);
}

static void check_hint(int rc, const char *hint, size_t cap) {
  if (rc == 0)
    return;
  if (memchr(hint, '\0', cap) == NULL || hint[0] == '\0')
    abort(); /* a refusal must say why */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > 256)
    return 0;
  char s[257];
  memcpy(s, data + 1, size - 1);
  s[size - 1] = '\0';
  char hint[128];
  memset(hint, 'x', sizeof hint);
  int rc;
  switch (data[0] % 5) {
  case 0: {
    uint64_t ns = 0;
    rc = cynic__config_parse_duration(s, &ns, hint, sizeof hint);
    if (rc == 0 && !only(s, "0123456789umsh"))
      abort();
    break;
  }
  case 1: {
    uint64_t bytes = 0;
    rc = cynic__config_parse_size(s, &bytes, hint, sizeof hint);
    if (rc == 0 && !only(s, "0123456789BKMGi"))
      abort();
    break;
  }
  case 2: {
    uint32_t pct = 0;
    rc = cynic__config_parse_percent(s, &pct, hint, sizeof hint);
    if (rc == 0 && (!only(s, "0123456789%") || pct > 100))
      abort();
    break;
  }
  case 3: {
    uint64_t v = 0;
    rc = cynic__config_parse_count(s, 3, 1000000, &v, hint, sizeof hint);
    if (rc == 0 && (!only(s, "0123456789") || v < 3 || v > 1000000))
      abort();
    break;
  }
  default: {
    double v = 0;
    rc = cynic__config_parse_number(s, 1.0, 100.0, &v, hint, sizeof hint);
    if (rc == 0 && (!only(s, "0123456789.") || !(v >= 1.0 && v <= 100.0)))
      abort();
    break;
  }
  }
  check_hint(rc, hint, sizeof hint);
  return 0;
}
