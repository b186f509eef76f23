/*
 * src/proxy/summary_text.c: numbers in the daemon's summary lines, written
 * for people (summary_text.h). Apart from daemon.c so the unit test calls
 * them as the daemon does, without the daemon.
 */
#include "summary_text.h"

#include <stdio.h>

void cynic__thousands(uint32_t n, char *out, size_t size) {
  char digits[16];
  int len = snprintf(digits, sizeof digits, "%u", n);
  size_t o = 0;
  for (int i = 0; i < len && o + 1 < size; i++) {
    if (i > 0 && (len - i) % 3 == 0 && o + 2 < size)
      out[o++] = ',';
    out[o++] = digits[i];
  }
  out[o] = '\0';
}

void cynic__window_text(uint64_t ms, char *out, size_t size) {
  if (ms % 60000u == 0)
    snprintf(out, size, "%llum", (unsigned long long)(ms / 60000u));
  else if (ms % 1000u == 0)
    snprintf(out, size, "%llus", (unsigned long long)(ms / 1000u));
  else
    snprintf(out, size, "%llums", (unsigned long long)ms);
}
