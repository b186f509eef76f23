/* lib/deadline.c: deadline arithmetic and the millisecond wire format. */
#include "cynic/deadline.h"

#define NS_PER_MS UINT64_C(1000000)

cynic_deadline_t cynic_deadline_none(void) {
  cynic_deadline_t d = {CYNIC_DEADLINE_NONE_NS};
  return d;
}

bool cynic_deadline_is_none(cynic_deadline_t d) {
  return d.at_ns == CYNIC_DEADLINE_NONE_NS;
}

cynic_deadline_t cynic_deadline_in(uint64_t now, uint64_t timeout_ns) {
  cynic_deadline_t d = {cynic__sat_add(now, timeout_ns)};
  return d;
}

cynic_deadline_t cynic_deadline_in_clock(const cynic_clock_t *clock, uint64_t timeout_ns) {
  return cynic_deadline_in(cynic_clock_now(clock), timeout_ns);
}

uint64_t cynic_deadline_left(cynic_deadline_t d, uint64_t now) {
  if (cynic_deadline_is_none(d))
    return UINT64_MAX;
  return cynic__sat_sub(d.at_ns, now);
}

bool cynic_deadline_expired(cynic_deadline_t d, uint64_t now) {
  return !cynic_deadline_is_none(d) && now >= d.at_ns;
}

cynic_deadline_t cynic_deadline_min(cynic_deadline_t a, cynic_deadline_t b) {
  return a.at_ns <= b.at_ns ? a : b; /* "none" is UINT64_MAX: loses */
}

uint64_t cynic_deadline_for_hop(cynic_deadline_t d, uint64_t now, uint64_t hop_timeout_ns,
                                uint64_t reserve_ns) {
  if (cynic_deadline_is_none(d))
    return hop_timeout_ns;
  uint64_t usable = cynic__sat_sub(cynic_deadline_left(d, now), reserve_ns);
  return usable < hop_timeout_ns ? usable : hop_timeout_ns;
}

static bool is_ows(char c) {
  return c == ' ' || c == '\t';
}

int cynic_deadline_from_ms_header(const char *s, size_t len, uint64_t now, cynic_deadline_t *out) {
  if (out == NULL || (s == NULL && len > 0))
    return CYNIC_EINVAL;
  size_t i = 0, end = len;
  while (i < end && is_ows(s[i]))
    i++;
  while (end > i && is_ows(s[end - 1]))
    end--;
  if (i == end)
    return CYNIC_EINVAL; /* empty, or only whitespace */

  const uint64_t max_ms = UINT64_MAX / NS_PER_MS;
  uint64_t ms = 0;
  for (; i < end; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < '0' || c > '9')
      return CYNIC_EINVAL;
    unsigned digit = c - '0';
    if (ms > (max_ms - digit) / 10)
      return CYNIC_EINVAL; /* ms * 10 + digit would exceed max_ms */
    ms = ms * 10 + digit;
  }
  *out = cynic_deadline_in(now, ms * NS_PER_MS);
  return 0;
}

size_t cynic_deadline_to_ms_header(cynic_deadline_t d, uint64_t now, char *buf, size_t cap) {
  if (buf == NULL || cap == 0)
    return 0;
  buf[0] = '\0';
  if (cynic_deadline_is_none(d))
    return 0;
  uint64_t ms = cynic_deadline_left(d, now) / NS_PER_MS; /* round down */

  char digits[20];
  size_t n = 0;
  do {
    digits[n++] = (char)('0' + ms % 10);
    ms /= 10;
  } while (ms != 0);
  if (n + 1 > cap)
    return 0;
  for (size_t k = 0; k < n; k++)
    buf[k] = digits[n - 1 - k];
  buf[n] = '\0';
  return n;
}
