/*
 * json.h: small jansson helpers for JSON APIs: typed field access that
 * reports the wrong type instead of asserting, and dumping into a bounded
 * buffer. Event-loop agnostic.
 *
 * Field getters return 1 when the field is present with the expected type, 0
 * when it is absent or JSON null (Go's decoder, which Toxiproxy clients are
 * written against, treats null as "leave unchanged"), and CYNIC_EINVAL when it
 * has another type; then `err` holds a message naming the field.
 */
#ifndef CYNIC_COMMON_JSON_H
#define CYNIC_COMMON_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "buf.h"

int cynic__json_get_string(const json_t *obj, const char *key, const char **out, char *err,
                           size_t errlen);
int cynic__json_get_bool(const json_t *obj, const char *key, bool *out, char *err, size_t errlen);
/* Integers only: 1.5 and 1.0 are type errors, as in Go's int64 fields. */
int cynic__json_get_int64(const json_t *obj, const char *key, int64_t *out, char *err,
                          size_t errlen);
/* Any JSON number. */
int cynic__json_get_number(const json_t *obj, const char *key, double *out, char *err,
                           size_t errlen);
/* The JSON type's name as Go's decoder says it: "string", "number", "bool",
 * "object", "array", "null". */
const char *cynic__json_type_name(const json_t *v);
/* Append the compact encoding of `v` (object keys in insertion order) to `b`.
 * 0, CYNIC_ERANGE (buffer cap) or CYNIC_ENOMEM; on error `b` is as before. */
int cynic__json_dump(const json_t *v, cynic__buf_t *b);
/* A JSON number for `x` as Go prints a float: integral values without ".0",
 * others with up to 15 significant digits (so 0.1 stays 0.1). */
json_t *cynic__json_float(double x);

/*
 * A JSON string holding the bytes s[0..n) with every invalid UTF-8 sequence
 * replaced by U+FFFD (one per maximal ill-formed subpart, as Unicode 15
 * section 3.9 and the WHATWG decoder do, and as Go's encoding/json does when
 * Toxiproxy echoes bytes). For text that came from a client: jansson's
 * json_string() answers NULL for invalid UTF-8, and json_stringn_nocheck()
 * would make a document that is not JSON. Bytes that are valid (NUL
 * included: it is written as \u0000) pass unchanged. NULL only out of
 * memory. `s` may be NULL when n is 0.
 */
json_t *cynic__json_text(const char *s, size_t n);
/* The same for a NUL-terminated string; NULL `s` is "". */
json_t *cynic__json_text0(const char *s);
/* The length of the valid UTF-8 sequence at s[0..n), or 0 when the bytes there
 * are not one (then the caller skips the maximal ill-formed subpart, whose
 * length cynic__utf8_bad_len() gives). */
size_t cynic__utf8_seq_len(const unsigned char *s, size_t n);
size_t cynic__utf8_bad_len(const unsigned char *s, size_t n);
/* Whether s[0..n) is all valid UTF-8. */
bool cynic__utf8_valid(const char *s, size_t n);

/* Makes jansson allocate through a wrapper that retries a failed allocation
 * after releasing a reserve (json.c) and counts the allocations it could not
 * make even so. Called once, first thing in main(), before any JSON value
 * exists (the allocator must not change under live values). jansson
 * mishandles a failed allocation: it leaves the value out (json_object_set_new
 * with a NULL value sets nothing), drops characters while parsing, and can
 * even write past a buffer. A caller compares the count before and after
 * building or parsing a document and refuses the document when it moved. The
 * count covers the whole process (one event loop thread; the resolver threads
 * make no JSON). */
void cynic__json_init(void);
uint64_t cynic__json_alloc_failures(void);

#endif
