/*
 * toxic.h: toxic types, and toxics to and from the API's JSON.
 *
 * A toxic's JSON is {"attributes":{...},"name","type","stream","toxicity"},
 * the field order Toxiproxy's Go structs marshal in.
 */
#ifndef CYNIC_HARNESS_TOXIC_H
#define CYNIC_HARNESS_TOXIC_H

#include <jansson.h>

#include "harness.h"

enum {
  TOXIC_LATENCY,
  TOXIC_BANDWIDTH,
  TOXIC_SLOW_CLOSE,
  TOXIC_TIMEOUT,
  TOXIC_RESET_PEER,
  TOXIC_SLICER,
  TOXIC_LIMIT_DATA,
  TOXIC_NOOP, /* Toxiproxy's no-op: passes everything */
  /* beyond Toxiproxy */
  TOXIC_REFUSE,
  TOXIC_BLACKHOLE,
  TOXIC_ACCEPT_DELAY,
  TOXIC_GARBAGE,
  TOXIC_FLOOD,
  TOXIC_RESET_AFTER_BYTES,
  TOXIC_HTTP_STATUS,
  TOXIC_HTTP_LATENCY,
  TOXIC_HTTP_CONTENT_TYPE,
  TOXIC_HTTP_DROP_FIRST_N,
};

struct toxic_type {
  int id; /* TOXIC_* */
  const char *name;
  size_t nattrs;
  const char *attr_names[TOXIC_MAX_ATTRS];
  /* Reject attribute values this type cannot act on; NULL = any. cynic's own
   * toxics only: Toxiproxy's accept every integer (as Toxiproxy 2.12 does),
   * and toxics.c gives each value a meaning (docs/harness.md). */
  int (*validate)(const toxic_t *t, char *err, size_t errlen);
  /* With -strict-toxics only (harness_toxic_set_strict): the ranges that make sense
   * for Toxiproxy's toxics (no negative durations, slicer average_size > 0 and
   * size_variation < average_size, bandwidth rate > 0); NULL = none. */
  int (*strict)(const toxic_t *t, char *err, size_t errlen);
  /* 0 or 'i': integer attribute (t->attr); 's': string attribute (t->str) */
  char attr_kinds[TOXIC_MAX_ATTRS];
  int64_t defaults[TOXIC_MAX_ATTRS];         /* integers */
  const char *str_defaults[TOXIC_MAX_ATTRS]; /* strings (NULL = "") */
};

const toxic_type_t *harness_toxic_type_find(const char *name);
/* -strict-toxics: also check Toxiproxy's toxics against `strict` and toxicity
 * against 0..1 (default off: accept what Toxiproxy 2.12 accepts). Set once at
 * start, before the API serves (one harness per process). */
void harness_toxic_set_strict(bool on);

/*
 * Build a toxic from a create request body (defaults: stream downstream,
 * toxicity 1, name "<type>_<stream>", attributes 0). On failure returns -1 with
 * *status (400) and err set; the caller checks name uniqueness (409).
 */
int harness_toxic_from_json(const json_t *body, toxic_t *out, int *status, char *err,
                            size_t errlen);
/* Apply an update body to a copy of `cur`: attributes merged, toxicity kept if
 * absent; name, type and stream never change. -1 with *status and err. */
int harness_toxic_update_json(const json_t *body, const toxic_t *cur, toxic_t *out, int *status,
                              char *err, size_t errlen);
json_t *harness_toxic_to_json(const toxic_t *t);
/* String attribute i ("" when unset). */
const char *harness_toxic_str(const toxic_t *t, size_t i);
/* Free the strings a toxic owns (the toxic itself stays); idempotent. */
void harness_toxic_release(toxic_t *t);
/* harness_toxic_release, then free(t). NULL is fine. */
void harness_toxic_free(toxic_t *t);
/* A deep copy of src into dst (which owns nothing). 0, or -1 out of memory
 * (dst then owns nothing). */
int harness_toxic_copy(toxic_t *dst, const toxic_t *src);
/* Names of proxies and toxics: 1..HARNESS_NAME_MAX bytes of [A-Za-z0-9._~:@+-]
 * (they travel in URL paths unescaped by the common clients). */
bool harness_name_valid(const char *name);

#endif
