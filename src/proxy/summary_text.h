/*
 * src/proxy/summary_text.h: how the daemon's rate-limited summary lines
 * write numbers for people: counts with thousands separators ("1,234") and
 * the summary window as it is written in the config ("10s", "1m", "250ms").
 * Pure functions: no state, no allocation.
 */
#ifndef CYNIC_PROXY_SUMMARY_TEXT_H
#define CYNIC_PROXY_SUMMARY_TEXT_H

#include <stddef.h>
#include <stdint.h>

/* Writes n as "1,234,567" into out (size bytes, > 0). A too-small buffer
 * gets the leading digits that fit, always NUL-terminated. */
void cynic__thousands(uint32_t n, char *out, size_t size);

/* Writes ms as "1m" (whole minutes), "10s" (whole seconds) or "250ms" into
 * out (size bytes, > 0; snprintf's truncation). */
void cynic__window_text(uint64_t ms, char *out, size_t size);

#endif /* CYNIC_PROXY_SUMMARY_TEXT_H */
