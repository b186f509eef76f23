/*
 * src/proxy/config_value.c: strict parsers for durations, sizes and
 * percentages (config_value.h). Whole numbers only, a unit always (bare 0
 * aside), overflow detected before it happens.
 */
#include "config_value.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "cynic/common.h"

#define NS_PER_US UINT64_C(1000)
#define NS_PER_MS UINT64_C(1000000)
#define NS_PER_S UINT64_C(1000000000)
#define KIB UINT64_C(1024)
#define MIB (KIB * 1024)
#define GIB (MIB * 1024)

const char *cynic__config_show(char buf[64], const char *s, size_t len) {
  size_t n = 0;
  for (size_t i = 0; i < len && n < 40; i++)
    buf[n++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
  if (len > 40) {
    memcpy(buf + n, "...", 3);
    n += 3;
  }
  buf[n] = '\0';
  return buf;
}

size_t cynic__config_digits(const char *s, uint64_t *v, bool *overflow) {
  size_t i = 0;
  uint64_t acc = 0;
  *overflow = false;
  for (; s[i] >= '0' && s[i] <= '9'; i++) {
    unsigned d = (unsigned)(s[i] - '0');
    if (acc > (UINT64_MAX - d) / 10)
      *overflow = true;
    else
      acc = acc * 10 + d;
  }
  *v = acc;
  return i;
}

typedef struct unit {
  const char *name;
  uint64_t factor;
} unit_t;

static const unit_t duration_units[] = {{"us", NS_PER_US},      {"ms", NS_PER_MS},
                                        {"s", NS_PER_S},        {"m", 60 * NS_PER_S},
                                        {"h", 3600 * NS_PER_S}, {NULL, 0}};
static const unit_t size_units[] = {{"B", 1},     {"KB", KIB},  {"MB", MIB},  {"GB", GIB},
                                    {"KiB", KIB}, {"MiB", MIB}, {"GiB", GIB}, {NULL, 0}};

/* Shared by durations and sizes: "<digits><unit>", or a bare "0". */
static int parse_with_unit(const char *s, const unit_t *units, const char *what,
                           const char *example, const char *unit_list, uint64_t *out, char *hint,
                           size_t hint_size) {
  char sv[64];
  uint64_t v;
  bool overflow;
  if (s == NULL || s[0] == '\0') {
    snprintf(hint, hint_size, "empty %s; write a whole number and a unit, e.g. %s", what, example);
    return CYNIC_EINVAL;
  }
  cynic__config_show(sv, s, strlen(s));
  if (s[0] == '-') {
    snprintf(hint, hint_size, "'%s' is negative; a %s is 0 or more, e.g. %s", sv, what, example);
    return CYNIC_ERANGE;
  }
  size_t n = cynic__config_digits(s, &v, &overflow);
  if (n == 0) {
    snprintf(hint, hint_size, "'%s' is not a %s; write a whole number and a unit, e.g. %s", sv,
             what, example);
    return CYNIC_EINVAL;
  }
  if (s[n] == '\0') {
    if (v == 0 && !overflow) {
      *out = 0;
      return 0;
    }
    snprintf(hint, hint_size, "'%s' has no unit; add a unit, e.g. %s", sv, example);
    return CYNIC_EINVAL;
  }
  if (s[n] == '.' || s[n] == ',') {
    snprintf(hint, hint_size, "'%s': fractions are not supported; use a smaller unit (%s), e.g. %s",
             sv, unit_list, example);
    return CYNIC_EINVAL;
  }
  const char *u = s + n;
  for (size_t i = 0; units[i].name != NULL; i++) {
    if (strcmp(u, units[i].name) == 0) {
      if (overflow || (units[i].factor > 1 && v > UINT64_MAX / units[i].factor)) {
        snprintf(hint, hint_size, "'%s' is too large", sv);
        return CYNIC_ERANGE;
      }
      *out = v * units[i].factor;
      return 0;
    }
  }
  char uv[64];
  snprintf(hint, hint_size, "'%s': unknown unit '%s'; use %s", sv,
           cynic__config_show(uv, u, strlen(u)), unit_list);
  return CYNIC_EINVAL;
}

int cynic__config_parse_duration(const char *s, uint64_t *ns, char *hint, size_t hint_size) {
  return parse_with_unit(s, duration_units, "duration", "250ms", "us, ms, s, m or h", ns, hint,
                         hint_size);
}

int cynic__config_parse_size(const char *s, uint64_t *bytes, char *hint, size_t hint_size) {
  return parse_with_unit(s, size_units, "size", "64KB", "B, KB, MB or GB (KB = 1024 bytes)", bytes,
                         hint, hint_size);
}

int cynic__config_parse_percent(const char *s, uint32_t *pct, char *hint, size_t hint_size) {
  char sv[64];
  uint64_t v;
  bool overflow;
  if (s == NULL || s[0] == '\0') {
    snprintf(hint, hint_size, "empty percentage; write e.g. 20%%");
    return CYNIC_EINVAL;
  }
  cynic__config_show(sv, s, strlen(s));
  if (s[0] == '-') {
    snprintf(hint, hint_size, "'%s' is negative; use 0%%..100%%", sv);
    return CYNIC_ERANGE;
  }
  size_t n = cynic__config_digits(s, &v, &overflow);
  if (n == 0) {
    snprintf(hint, hint_size, "'%s' is not a percentage; write e.g. 20%%", sv);
    return CYNIC_EINVAL;
  }
  if (s[n] == '.') {
    snprintf(hint, hint_size, "'%s': use a whole percentage, e.g. 20%%", sv);
    return CYNIC_EINVAL;
  }
  if (s[n] != '%' || s[n + 1] != '\0') {
    snprintf(hint, hint_size, "'%s' is not a percentage; add '%%', e.g. 20%%", sv);
    return CYNIC_EINVAL;
  }
  if (overflow || v > 100) {
    snprintf(hint, hint_size, "'%s' is more than 100%%; use 0%%..100%%", sv);
    return CYNIC_ERANGE;
  }
  *pct = (uint32_t)v;
  return 0;
}

/* What is wrong with a number that is not plain decimal digits (shared by
 * counts and numbers, so both refuse the same spellings the same way). */
static void not_decimal(const char *s, const char *sv, const char *what, const char *range,
                        char *hint, size_t hint_size) {
  if (s[0] == '-')
    snprintf(hint, hint_size, "'%s' is negative; use %s", sv, range);
  else if (s[0] == '+')
    snprintf(hint, hint_size, "'%s' has a sign; write the digits alone, in %s", sv, range);
  else if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
    snprintf(hint, hint_size, "'%s' is hexadecimal; write it in decimal, in %s", sv, range);
  else if (s[0] >= '0' && s[0] <= '9' && strpbrk(s, "eE") != NULL)
    snprintf(hint, hint_size, "'%s' has an exponent; write all the digits, in %s", sv, range);
  else
    snprintf(hint, hint_size, "'%s' is not %s; use %s", sv, what, range);
}

int cynic__config_parse_count(const char *s, uint64_t min, uint64_t max, uint64_t *out, char *hint,
                              size_t hint_size) {
  char sv[64], range[64];
  uint64_t v;
  bool overflow;
  snprintf(range, sizeof range, "%llu..%llu", (unsigned long long)min, (unsigned long long)max);
  cynic__config_show(sv, s, strlen(s));
  size_t n = cynic__config_digits(s, &v, &overflow);
  if (n == 0 || s[n] != '\0') {
    not_decimal(s, sv, "a whole number", range, hint, hint_size);
    return CYNIC_EINVAL;
  }
  if (overflow || v < min || v > max) {
    snprintf(hint, hint_size, "%s is out of range; use %s", sv, range);
    return CYNIC_ERANGE;
  }
  *out = v;
  return 0;
}

int cynic__config_parse_number(const char *s, double min, double max, double *out, char *hint,
                               size_t hint_size) {
  char sv[64], range[64];
  snprintf(range, sizeof range, "%g..%g", min, max);
  cynic__config_show(sv, s, strlen(s));
  uint64_t whole, frac = 0;
  bool o1, o2 = false;
  size_t n1 = cynic__config_digits(s, &whole, &o1), n2 = 0;
  if (n1 > 0 && s[n1] == '.')
    n2 = cynic__config_digits(s + n1 + 1, &frac, &o2);
  bool ok = n1 > 0 && (s[n1] == '\0' || (n2 > 0 && s[n1 + 1 + n2] == '\0'));
  if (!ok) {
    not_decimal(s, sv, "a number", range, hint, hint_size);
    return CYNIC_EINVAL;
  }
  if (n2 > 9) {
    snprintf(hint, hint_size, "'%s' has more than 9 digits after the point; use %s", sv, range);
    return CYNIC_EINVAL;
  }
  double scale = 1;
  for (size_t i = 0; i < n2; i++)
    scale *= 10;
  double v = (double)whole + (double)frac / scale;
  if (o1 || !(v >= min && v <= max)) {
    snprintf(hint, hint_size, "%s is out of range; use %s", sv, range);
    return CYNIC_ERANGE;
  }
  *out = v;
  return 0;
}

bool cynic__config_dns_name(const char *s, size_t len, bool underscore) {
  if (len == 0 || len > 253)
    return false;
  size_t label = 0;
  bool alpha = false;
  for (size_t i = 0; i <= len; i++) {
    char c = i < len ? s[i] : '.';
    if (c == '.') {
      if (label == 0 || label > 63 || s[i - 1] == '-')
        return false;
      label = 0;
      continue;
    }
    bool digit = c >= '0' && c <= '9';
    bool ok = digit || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' ||
              (underscore && c == '_');
    if (!ok || (label == 0 && c == '-'))
      return false;
    alpha = alpha || !digit;
    label++;
  }
  return alpha;
}

bool cynic__config_ip_literal(const char *s) {
  unsigned char a[16];
  return inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1;
}
