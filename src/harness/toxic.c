/* toxic.c: the toxic type table, attribute validation, JSON. */
#include "toxic.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "json.h"

static int validate_nonneg(const toxic_t *t, char *err, size_t errlen) {
  for (size_t i = 0; i < t->type->nattrs; i++)
    if (t->type->attr_kinds[i] != 's' && t->attr[i] < 0) {
      snprintf(err, errlen, "attribute %s must not be negative", t->type->attr_names[i]);
      return -1;
    }
  return 0;
}

static int validate_bandwidth(const toxic_t *t, char *err, size_t errlen) {
  if (t->attr[0] <= 0) {
    snprintf(err, errlen,
             "attribute rate must be > 0 KB/s (by default, as in Toxiproxy, a rate <= 0 "
             "means no limit)");
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
    snprintf(err, errlen,
             "attribute average_size must be > 0 (by default it is taken, as "
             "pieces of at least 1 byte)");
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

static bool header_safe(const char *s) {
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 || *s == 0x7f)
      return false;
  return true;
}

static int validate_status(int64_t status, char *err, size_t errlen) {
  if (status < 100 || status > 599) {
    snprintf(err, errlen, "attribute status must be 100..599");
    return -1;
  }
  return 0;
}

/* http_status: status, percent, body, content_type */
static int validate_http_status(const toxic_t *t, char *err, size_t errlen) {
  if (validate_status(t->attr[0], err, errlen))
    return -1;
  if (t->attr[1] < 0 || t->attr[1] > 100) {
    snprintf(err, errlen, "attribute percent must be 0..100");
    return -1;
  }
  if (!header_safe(harness_toxic_str(t, 3))) {
    snprintf(err, errlen, "attribute content_type must not contain control characters");
    return -1;
  }
  return 0;
}

static int validate_http_content_type(const toxic_t *t, char *err, size_t errlen) {
  if (harness_toxic_str(t, 0)[0] == '\0' || !header_safe(harness_toxic_str(t, 0))) {
    snprintf(err, errlen, "attribute content_type must be a non-empty header value");
    return -1;
  }
  if (t->stream != STREAM_DOWNSTREAM) {
    snprintf(err, errlen, "http_content_type rewrites responses: use the downstream stream");
    return -1;
  }
  return 0;
}

/* http_drop_first_n: n, status */
static int validate_http_drop(const toxic_t *t, char *err, size_t errlen) {
  if (t->attr[0] < 0) {
    snprintf(err, errlen, "attribute n must not be negative");
    return -1;
  }
  return validate_status(t->attr[1], err, errlen);
}

static const toxic_type_t types[] = {
    {.id = TOXIC_LATENCY,
     .name = "latency",
     .nattrs = 2,
     .attr_names = {"latency", "jitter"},
     .strict = validate_latency},
    {.id = TOXIC_BANDWIDTH,
     .name = "bandwidth",
     .nattrs = 1,
     .attr_names = {"rate"},
     .strict = validate_bandwidth},
    {.id = TOXIC_SLOW_CLOSE,
     .name = "slow_close",
     .nattrs = 1,
     .attr_names = {"delay"},
     .strict = validate_nonneg},
    {.id = TOXIC_TIMEOUT,
     .name = "timeout",
     .nattrs = 1,
     .attr_names = {"timeout"},
     .strict = validate_nonneg},
    {.id = TOXIC_RESET_PEER,
     .name = "reset_peer",
     .nattrs = 1,
     .attr_names = {"timeout"},
     .strict = validate_nonneg},
    {.id = TOXIC_SLICER,
     .name = "slicer",
     .nattrs = 3,
     .attr_names = {"average_size", "size_variation", "delay"},
     .strict = validate_slicer},
    {.id = TOXIC_LIMIT_DATA,
     .name = "limit_data",
     .nattrs = 1,
     .attr_names = {"bytes"},
     .strict = validate_nonneg},
    {.id = TOXIC_NOOP, .name = "noop"},
    {.id = TOXIC_REFUSE, .name = "refuse"},
    {.id = TOXIC_BLACKHOLE, .name = "blackhole"},
    {.id = TOXIC_ACCEPT_DELAY,
     .name = "accept_delay",
     .nattrs = 1,
     .attr_names = {"delay"},
     .validate = validate_latency},
    {.id = TOXIC_GARBAGE,
     .name = "garbage",
     .nattrs = 1,
     .attr_names = {"bytes"},
     .validate = validate_bytes_cap},
    {.id = TOXIC_FLOOD,
     .name = "flood",
     .nattrs = 1,
     .attr_names = {"bytes"},
     .validate = validate_bytes_cap},
    {.id = TOXIC_RESET_AFTER_BYTES,
     .name = "reset_after_bytes",
     .nattrs = 1,
     .attr_names = {"bytes"},
     .validate = validate_nonneg},
    {.id = TOXIC_HTTP_STATUS,
     .name = "http_status",
     .nattrs = 4,
     .attr_names = {"status", "percent", "body", "content_type"},
     .validate = validate_http_status,
     .attr_kinds = {'i', 'i', 's', 's'},
     .defaults = {503, 100},
     .str_defaults = {NULL, NULL, "", "text/plain"}},
    {.id = TOXIC_HTTP_LATENCY,
     .name = "http_latency",
     .nattrs = 2,
     .attr_names = {"latency", "jitter"},
     .validate = validate_latency},
    {.id = TOXIC_HTTP_CONTENT_TYPE,
     .name = "http_content_type",
     .nattrs = 1,
     .attr_names = {"content_type"},
     .validate = validate_http_content_type,
     .attr_kinds = {'s'},
     .str_defaults = {"text/html"}},
    {.id = TOXIC_HTTP_DROP_FIRST_N,
     .name = "http_drop_first_n",
     .nattrs = 2,
     .attr_names = {"n", "status"},
     .validate = validate_http_drop,
     .defaults = {1, 503}},
};

static bool strict; /* -strict-toxics */

void harness_toxic_set_strict(bool on) {
  strict = on;
}

const toxic_type_t *harness_toxic_type_find(const char *name) {
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

static int set_str(toxic_t *t, size_t i, const char *v) {
  char *copy = strdup(v);
  if (copy == NULL)
    return -1;
  free(t->str[i]);
  t->str[i] = copy;
  return 0;
}

static int read_attributes(const json_t *body, toxic_t *t, int *status, char *err, size_t errlen) {
  const json_t *attrs = json_object_get(body, "attributes");
  char detail[256];
  if (attrs != NULL && !json_is_null(attrs) && !json_is_object(attrs))
    return bad(status, 400, err, errlen, "bad request body",
               "field \"attributes\": expected object");
  for (size_t i = 0; attrs != NULL && json_is_object(attrs) && i < t->type->nattrs; i++) {
    const char *name = t->type->attr_names[i];
    if (t->type->attr_kinds[i] == 's') {
      const char *v;
      int r = cynic__json_get_string(attrs, name, &v, detail, sizeof(detail));
      if (r < 0)
        return bad(status, 400, err, errlen, "bad request body", detail);
      if (r == 1) {
        if (strlen(v) > TOXIC_STR_MAX) {
          snprintf(detail, sizeof(detail), "attribute %s is longer than %d bytes", name,
                   TOXIC_STR_MAX);
          return bad(status, 400, err, errlen, "bad request body", detail);
        }
        if (set_str(t, i, v) != 0)
          return bad(status, 500, err, errlen, "out of memory", NULL);
      }
      continue;
    }
    int64_t v;
    int r = cynic__json_get_int64(attrs, name, &v, detail, sizeof(detail));
    if (r < 0)
      return bad(status, 400, err, errlen, "bad request body", detail);
    if (r == 1)
      t->attr[i] = v;
  }
  if (t->type->validate != NULL && t->type->validate(t, detail, sizeof(detail)) != 0)
    return bad(status, 400, err, errlen, "bad request body", detail);
  if (strict && t->type->strict != NULL && t->type->strict(t, detail, sizeof(detail)) != 0)
    return bad(status, 400, err, errlen, "bad request body (-strict-toxics)", detail);
  return 0;
}

static int read_toxicity(const json_t *body, toxic_t *t, int *status, char *err, size_t errlen) {
  char detail[256];
  double tox;
  int r = cynic__json_get_number(body, "toxicity", &tox, detail, sizeof(detail));
  if (r < 0)
    return bad(status, 400, err, errlen, "bad request body", detail);
  if (r == 1) {
    /* Toxiproxy decodes toxicity into a float32 and takes any value: at or
     * below 0 the toxic never applies, at or above 1 always. Only a number
     * a float32 cannot hold is a decoding error there, and here. */
    if (!(fabs(tox) <= FLT_MAX))
      return bad(status, 400, err, errlen, "bad request body",
                 "field \"toxicity\": out of range for a float32");
    if (strict && !(tox >= 0.0 && tox <= 1.0))
      return bad(status, 400, err, errlen, "bad request body (-strict-toxics)",
                 "field \"toxicity\": must be between 0 and 1");
    t->toxicity = tox;
  }
  return 0;
}

static int from_json(const json_t *body, toxic_t *out, int *status, char *err, size_t errlen);

int harness_toxic_from_json(const json_t *body, toxic_t *out, int *status, char *err,
                            size_t errlen) {
  memset(out, 0, sizeof(*out));
  int rc = from_json(body, out, status, err, errlen);
  if (rc != 0)
    harness_toxic_release(out);
  return rc;
}

static int from_json(const json_t *body, toxic_t *out, int *status, char *err, size_t errlen) {
  char detail[256];
  if (!json_is_object(body))
    return bad(status, 400, err, errlen, "bad request body", "expected a JSON object");
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
  out->type = type ? harness_toxic_type_find(type) : NULL;
  if (out->type == NULL)
    return bad(status, 400, err, errlen, "invalid toxic type", NULL);
  for (size_t i = 0; i < out->type->nattrs; i++) {
    out->attr[i] = out->type->defaults[i];
    if (out->type->str_defaults[i] != NULL && set_str(out, i, out->type->str_defaults[i]) != 0)
      return bad(status, 500, err, errlen, "out of memory", NULL);
  }
  if (name == NULL || name[0] == '\0')
    /* as Toxiproxy names it: the stream as the client spelt it (a valid
     * stream is letters only, so the name is valid too) */
    snprintf(out->name, sizeof(out->name), "%s_%s", out->type->name,
             stream != NULL ? stream : "downstream");
  else if (!harness_name_valid(name))
    return bad(status, 400, err, errlen, "bad request body",
               "field \"name\": 1-128 characters of A-Z a-z 0-9 . _ ~ : @ + -");
  else
    snprintf(out->name, sizeof(out->name), "%s", name);
  return read_attributes(body, out, status, err, errlen);
}

int harness_toxic_update_json(const json_t *body, const toxic_t *cur, toxic_t *out, int *status,
                              char *err, size_t errlen) {
  if (!json_is_object(body))
    return bad(status, 400, err, errlen, "bad request body", "expected a JSON object");
  if (harness_toxic_copy(out, cur) != 0)
    return bad(status, 500, err, errlen, "out of memory", NULL);
  if (read_toxicity(body, out, status, err, errlen) == 0 &&
      read_attributes(body, out, status, err, errlen) == 0)
    return 0;
  harness_toxic_release(out);
  return -1;
}

const char *harness_toxic_str(const toxic_t *t, size_t i) {
  return i < TOXIC_MAX_ATTRS && t->str[i] != NULL ? t->str[i] : "";
}

void harness_toxic_release(toxic_t *t) {
  for (size_t i = 0; i < TOXIC_MAX_ATTRS; i++) {
    free(t->str[i]);
    t->str[i] = NULL;
  }
}

void harness_toxic_free(toxic_t *t) {
  if (t == NULL)
    return;
  harness_toxic_release(t);
  free(t);
}

int harness_toxic_copy(toxic_t *dst, const toxic_t *src) {
  *dst = *src;
  for (size_t i = 0; i < TOXIC_MAX_ATTRS; i++) {
    dst->str[i] = NULL;
    if (src->str[i] != NULL && (dst->str[i] = strdup(src->str[i])) == NULL) {
      harness_toxic_release(dst);
      return -1;
    }
  }
  return 0;
}

json_t *harness_toxic_to_json(const toxic_t *t) {
  json_t *o = json_object();
  json_t *a = json_object();
  for (size_t i = 0; i < t->type->nattrs; i++)
    json_object_set_new(a, t->type->attr_names[i],
                        t->type->attr_kinds[i] == 's' ? json_string(harness_toxic_str(t, i))
                                                      : json_integer(t->attr[i]));
  json_object_set_new(o, "attributes", a);
  json_object_set_new(o, "name", json_string(t->name));
  json_object_set_new(o, "type", json_string(t->type->name));
  json_object_set_new(o, "stream",
                      json_string(t->stream == STREAM_UPSTREAM ? "upstream" : "downstream"));
  json_object_set_new(o, "toxicity", cynic__json_float(t->toxicity));
  return o;
}
