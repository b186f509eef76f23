/* fuzz/fuzz_deadline_header.c: the deadline header parser takes bytes from
 * the network; it must reject junk without reading past `len`, and what it
 * accepts must format back to the same number of milliseconds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cynic/deadline.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint64_t now = CYNIC_SEC(1000);
  char *s = malloc(size ? size : 1); /* exact size: ASan catches any overread */
  if (s == NULL)
    return 0;
  memcpy(s, data, size);
  cynic_deadline_t d;
  if (cynic_deadline_from_ms_header(s, size, now, &d) == 0) {
    char buf[32];
    size_t n = cynic_deadline_to_ms_header(d, now, buf, sizeof buf);
    if (!cynic_deadline_is_none(d) && n == 0)
      abort();
  }
  free(s);
  return 0;
}
