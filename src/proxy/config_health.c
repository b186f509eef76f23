/*
 * src/proxy/config_health.c: an upstream's health_check section, the
 * settings of its active checks (health.c runs them): what to ask (a path,
 * or a TCP connect without one), how often, how long to wait, what a good
 * answer looks like and how many in a row change an endpoint's verdict.
 * The same strictness as the rest of the schema: every value bounded, every
 * error at its file:line:column with a fix.
 */
#define _POSIX_C_SOURCE 200809L
#include "config_health.h"

#include <stdlib.h>
#include <string.h>

#include "config_http.h"
#include "config_value.h"

typedef cynic__yaml_node_t node_t;

static const char *const health_keys[] = {"path",          "interval",        "timeout", "expect",
                                          "healthy_after", "unhealthy_after", "host",    NULL};
static const char *const expect_keys[] = {"status", "content_type", "body", NULL};

/* Bytes a request line or a header value may carry as they are: visible
 * ASCII, no space (so no CR, LF or NUL can reach the request). */
static bool visible(const char *s) {
  for (; *s; s++)
    if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
      return false;
  return true;
}

static void get_path(cynic__schema_t *rd, const node_t *m, cynic__config_health_t *h) {
  const node_t *v = cynic__schema_get_string(rd, m, "path", CYNIC__HEALTH_MAX_PATH, &h->path);
  if (v == NULL || h->path == NULL)
    return;
  if (h->path[0] != '/' || !visible(h->path) || strchr(h->path, '#') != NULL) {
    char sv[64];
    cynic__schema_error_at(rd, v,
                           "path: '%s' is not a request path; write one starting with '/', "
                           "without spaces or '#', e.g. /healthz",
                           cynic__config_show(sv, h->path, strlen(h->path)));
    free(h->path);
    h->path = NULL;
  }
}

static void get_host(cynic__schema_t *rd, const node_t *m, cynic__config_health_t *h) {
  const node_t *v = cynic__schema_get_string(rd, m, "host", 255, &h->host);
  if (v == NULL || h->host == NULL)
    return;
  if (!visible(h->host) || strpbrk(h->host, "/@?#,") != NULL) {
    char sv[64];
    cynic__schema_error_at(rd, v,
                           "host: '%s' is not a Host header value; write host[:port], "
                           "e.g. api.internal or 10.0.0.1:8080",
                           cynic__config_show(sv, h->host, strlen(h->host)));
    free(h->host);
    h->host = NULL;
  }
}

void cynic__config_load_upstream_health(cynic__schema_t *rd, const node_t *m,
                                        cynic__config_health_t *h) {
  h->enabled = false;
  h->interval_ns = 5 * NS_PER_S;
  h->timeout_ns = NS_PER_S;
  h->expect_status_min = 200;
  h->expect_status_max = 299;
  h->healthy_after = 2;
  h->unhealthy_after = 3;
  if (m == NULL)
    return;
  const node_t *hc = cynic__schema_section(rd, m, "health_check", health_keys);
  if (hc == NULL)
    return;
  h->enabled = true;
  get_path(rd, hc, h);
  get_host(rd, hc, h);
  cynic__schema_get_duration(rd, hc, "interval", 100 * NS_PER_MS, 3600 * NS_PER_S, "100ms..1h",
                             &h->interval_ns);
  const node_t *t = cynic__schema_get(hc, "timeout");
  if (t == NULL) {
    if (h->timeout_ns > h->interval_ns)
      h->timeout_ns = h->interval_ns; /* the default, 1s, never outlasts a shorter interval */
  } else if (cynic__schema_get_duration(rd, hc, "timeout", NS_PER_MS, 3600 * NS_PER_S, "1ms..1h",
                                        &h->timeout_ns) != NULL &&
             h->timeout_ns > h->interval_ns) {
    cynic__schema_error_at(rd, t,
                           "timeout: longer than interval; a check must end before the next one "
                           "is due, so make it at most the interval");
  }
  cynic__schema_get_u32(rd, hc, "healthy_after", 1, 100, &h->healthy_after);
  cynic__schema_get_u32(rd, hc, "unhealthy_after", 1, 100, &h->unhealthy_after);
  const node_t *e = cynic__schema_section(rd, hc, "expect", expect_keys);
  if (e == NULL)
    return;
  if (h->path == NULL && cynic__schema_get(hc, "path") == NULL) {
    cynic__schema_error_at(rd, cynic__schema_get(hc, "expect"),
                           "expect: a check without 'path' is a TCP connect and reads no "
                           "response; add path: /healthz or remove expect");
    return;
  }
  cynic__config_get_status_range(rd, e, "200-299", &h->expect_status_min, &h->expect_status_max);
  cynic__config_get_content_type(rd, e, &h->expect_content_type);
  cynic__schema_get_string(rd, e, "body", CYNIC__HEALTH_MAX_BODY, &h->expect_body);
}
