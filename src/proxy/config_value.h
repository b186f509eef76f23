/*
 * src/proxy/config_value.h: strict parsers for the values a config holds.
 *
 * Text in, number out, or a message for the user saying what would be valid.
 * No YAML here, no positions: config.c adds the file, line and column.
 */
#ifndef CYNIC_PROXY_CONFIG_VALUE_H
#define CYNIC_PROXY_CONFIG_VALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Each returns 0, or CYNIC_EINVAL / CYNIC_ERANGE with what is wrong and how
 * to write it in hint[hint_size]. */

/* "250ms", "10s", "2m", "1h", "500us", or "0"; whole numbers only, no "ns". */
int cynic__config_parse_duration(const char *s, uint64_t *ns, char *hint, size_t hint_size);
/* "512B", "64KB", "10MB", "1GB", or "0"; KB = 1024 bytes (KiB, MiB, GiB too). */
int cynic__config_parse_size(const char *s, uint64_t *bytes, char *hint, size_t hint_size);
/* "20%": a whole number 0..100 followed by '%'. */
int cynic__config_parse_percent(const char *s, uint32_t *pct, char *hint, size_t hint_size);

/* A count: a whole decimal number in min..max ("100"). No sign, no unit, no
 * fraction, no exponent ("1e3"), no hex ("0x10"): docs/configuration.md. */
int cynic__config_parse_count(const char *s, uint64_t min, uint64_t max, uint64_t *out, char *hint,
                              size_t hint_size);
/* A number: decimal digits with an optional fraction ("2", "1.5") in
 * min..max. No sign, exponent, hex, "inf" or "nan" (strtod would take them
 * all). At most 9 digits after the point. */
int cynic__config_parse_number(const char *s, double min, double max, double *out, char *hint,
                               size_t hint_size);

/* Leading decimal digits of s into *v; returns how many, 0 if none. On
 * overflow sets *overflow (and *v is meaningless) but still counts them. */
size_t cynic__config_digits(const char *s, uint64_t *v, bool *overflow);

/* A user's value fit for a message: at most 40 bytes of s[len] (then "..."),
 * non-printable bytes as '?'. Writes and returns buf. */
const char *cynic__config_show(char buf[64], const char *s, size_t len);

/* A DNS host name by the LDH rule: at most 253 bytes, labels of 1..63
 * letters, digits and '-' (not first or last; '_' too when `underscore`:
 * endpoint names, which are looked up but never verified against a
 * certificate), not all digits and dots (that is a broken IPv4 address). */
bool cynic__config_dns_name(const char *s, size_t len, bool underscore);
/* An IPv4 or IPv6 address as text (IPv6 without brackets). */
bool cynic__config_ip_literal(const char *s);

#endif /* CYNIC_PROXY_CONFIG_VALUE_H */
