/* toxic.c: the toxic type table, attribute validation, JSON. */
#include "toxic.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "json.h"

static int validate_nonneg(const toxic_t *t, char *err, size_t errlen) {
  for (size_t i = 0; i < t->type->nattrs; i++)
    if (t->attr[i] < 0) {
      snprintf(err, errlen, "attribute %s must not be negative", t->type->attr_names[i]);
      return -1;
    }
  return 0;
}

static int validate_bandwidth(const toxic_t *t, char *err, size_t errlen) {
  if (t->attr[0] <= 0) {
    snprintf(err, errlen,
             "attribute rate must be > 0 KB/s (a rate of 0 would stall the connection "
             "forever; use a timeout toxic for that)");
    return -1;
  }
  if (t->attr[0] > INT64_MAX / 1000000) {
    snprintf(err, errlen, "attribute rate is too large");
    return -1;
  }
  return 0;
}

static int validate_slicer(const toxic_t *t, char *err, size_t errlen) {
  if (validate_nonneg(t, err, errlen))
    return -1;
  if (t->attr[0] <= 0) {
    snprintf(err, errlen, "attribute average_size must be > 0 (0 would slice forever)");
    return -1;
  }
  if (t->attr[1] >= t->attr[0]) {
    snprintf(err, errlen, "attribute size_variation must be less than average_size");
    return -1;
  }
  return 0;
}

static int validate_latency(const toxic_t *t, char *err, size_t errlen) {
  if (validate_nonneg(t, err, errlen))
    return -1;
  if (t->attr[0] > 3600000 || (t->type->nattrs > 1 && t->attr[1] > 3600000)) {
    snprintf(err, errlen, "durations must be at most 3600000 ms");
    return -1;
  }
  return 0;
}

static int validate_bytes_cap(const toxic_t *t, char *err, size_t errlen) {
  if (validate_nonneg(t, err, errlen))
    return -1;
  if (t->attr[0] > (INT64_C(1) << 40)) {
    snprintf(err, errlen, "attribute bytes must be at most 2^40");
    return -1;
  }
  return 0;
}

static const toxic_type_t types[] = {
    {TOXIC_LATENCY, "latency", 2, {"latency", "jitter"}, validate_latency},
    {TOXIC_BANDWIDTH, "bandwidth", 1, {"rate"}, validate_bandwidth},
    {TOXIC_SLOW_CLOSE, "slow_close", 1, {"delay"}, validate_nonneg},
    {TOXIC_TIMEOUT, "timeout", 1, {"timeout"}, validate_nonneg},
    {TOXIC_RESET_PEER, "reset_peer", 1, {"timeout"}, validate_nonneg},
    {TOXIC_SLICER, "slicer", 3, {"average_size", "size_variation", "delay"}, validate_slicer},
    {TOXIC_LIMIT_DATA, "limit_data", 1, {"bytes"}, validate_nonneg},
    {TOXIC_REFUSE, "refuse", 0, {NULL}, NULL},
    {TOXIC_BLACKHOLE, "blackhole", 0, {NULL}, NULL},
    {TOXIC_ACCEPT_DELAY, "accept_delay", 1, {"delay"}, validate_latency},
    {TOXIC_GARBAGE, "garbage", 1, {"bytes"}, validate_bytes_cap},
    {TOXIC_FLOOD, "flood", 1, {"bytes"}, validate_bytes_cap},
    {TOXIC_RESET_AFTER_BYTES, "reset_after_bytes", 1, {"bytes"}, validate_nonneg},
};

const toxic_type_t *toxic_type_find(const char *name) {
  for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
    if (strcmp(types[i].name, name) == 0)
      return &types[i];
  return NULL;
}

bool harness_name_valid(const char *name) {
  size_t n = strlen(name);
  if (n == 0 || n > HARNESS_NAME_MAX || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
    return false;
  for (size_t i = 0; i < n; i++) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("._~:@+-", c) != NULL;
    if (!ok)
      return false;
  }
  return true;
}

static int bad(int *status, int code, char *err, size_t errlen, const char *prefix,
               const char *detail) {
  *status = code;
  if (detail != NULL)
    snprintf(err, errlen, "%s: %s", prefix, detail);
  else
    snprintf(err, errlen, "%s", prefix);
  return -1;
}

static int read_attributes(const json_t *body, toxic_t *t, int *status, char *err,
                           size_t errlen) {
  const json_t *attrs = json_object_get(body, "attributes");
  if (attrs == NULL || json_is_null(attrs))
    return 0;
  if (!json_is_object(attrs))
    return bad(status, 400, err, errlen, "bad request body",
               "field \"attributes\": expected object");
  char detail[256];
  for (size_t i = 0; i < t->type->nattrs; i++) {
    int64_t v;
    int r = cynic__json_get_int64(attrs, t->type->attr_names[i], &v, detail, sizeof(detail));
    if (r < 0)
      return bad(status, 400, err, errlen, "bad request body", detail);
    if (r == 1)
      t->attr[i] = v;
  }
  if (t->type->validate != NULL && t->type->validate(t, detail, sizeof(detail)) != 0)
    return bad(status, 400, err, errlen, "bad request body", detail);
  return 0;
}

static int read_toxicity(const json_t *body, toxic_t *t, int *status, char *err,
                         size_t errlen) {
  char detail[256];
  double tox;
  int r = cynic__json_get_number(body, "toxicity", &tox, detail, sizeof(detail));
  if (r < 0)
    return bad(status, 400, err, errlen, "bad request body", detail);
  if (r == 1) {
    if (!(tox >= 0.0 && tox <= 1.0))
      return bad(status, 400, err, errlen, "bad request body",
                 "field \"toxicity\": must be between 0 and 1");
    t->toxicity = tox;
  }
  return 0;
}

int toxic_from_json(const json_t *body, toxic_t *out, int *status, char *err, size_t errlen) {
  char detail[256];
  if (!json_is_object(body))
    return bad(status, 400, err, errlen, "bad request body", "expected a JSON object");
  memset(out, 0, sizeof(*out));
  out->stream = STREAM_DOWNSTREAM;
  out->toxicity = 1.0;
  const char *name = NULL, *type = NULL, *stream = NULL;
  if (cynic__json_get_string(body, "name", &name, detail, sizeof(detail)) < 0 ||
      cynic__json_get_string(body, "type", &type, detail, sizeof(detail)) < 0 ||
      cynic__json_get_string(body, "stream", &stream, detail, sizeof(detail)) < 0)
    return bad(status, 400, err, errlen, "bad request body", detail);
  if (read_toxicity(body, out, status, err, errlen))
    return -1;
  if (stream != NULL) {
    if (strcasecmp(stream, "upstream") == 0)
      out->stream = STREAM_UPSTREAM;
    else if (strcasecmp(stream, "downstream") == 0)
      out->stream = STREAM_DOWNSTREAM;
    else
      return bad(status, 400, err, errlen,
                 "stream was invalid, can be either upstream or downstream", NULL);
  }
  out->type = type ? toxic_type_find(type) : NULL;
  if (out->type == NULL)
    return bad(status, 400, err, errlen, "invalid toxic type", NULL);
  if (name == NULL || name[0] == '\0')
    snprintf(out->name, sizeof(out->name), "%s_%s", out->type->name,
             out->stream == STREAM_UPSTREAM ? "upstream" : "downstream");
  else if (!harness_name_valid(name))
    return bad(status, 400, err, errlen, "bad request body",
               "field \"name\": 1-128 characters of A-Z a-z 0-9 . _ ~ : @ + -");
  else
    snprintf(out->name, sizeof(out->name), "%s", name);
  return read_attributes(body, out, status, err, errlen);
}

int toxic_update_json(const json_t *body, const toxic_t *cur, toxic_t *out, int *status,
                      char *err, size_t errlen) {
  if (!json_is_object(body))
    return bad(status, 400, err, errlen, "bad request body", "expected a JSON object");
  *out = *cur;
  if (read_toxicity(body, out, status, err, errlen))
    return -1;
  return read_attributes(body, out, status, err, errlen);
}

json_t *toxic_to_json(const toxic_t *t) {
  json_t *o = json_object();
  json_t *a = json_object();
  for (size_t i = 0; i < t->type->nattrs; i++)
    json_object_set_new(a, t->type->attr_names[i], json_integer(t->attr[i]));
  json_object_set_new(o, "attributes", a);
  json_object_set_new(o, "name", json_string(t->name));
  json_object_set_new(o, "type", json_string(t->type->name));
  json_object_set_new(o, "stream",
                      json_string(t->stream == STREAM_UPSTREAM ? "upstream" : "downstream"));
  json_object_set_new(o, "toxicity", cynic__json_float(t->toxicity));
  return o;
}
