/*
 * src/proxy/config_limits.c: the config keys of Unwanted Users and load
 * shedding (Nygard, *Release It!*): which client a request's token comes
 * from (rate_limit.key_header), how many clients a listener remembers
 * (rate_limit.max_clients), and the process-wide ceiling on requests in
 * flight (limits.max_pending_requests). The same strictness as config.c:
 * every value bounded, every error at its file:line:column with a fix.
 */
#define _POSIX_C_SOURCE 200809L
#include "config_limits.h"

#include <stdlib.h>
#include <string.h>

#include "config_value.h"

typedef cynic__yaml_node_t node_t;

static const char *const limits_keys[] = {"max_pending_requests", NULL};

/* An RFC 9110 token character (header names). */
static bool tchar(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

void cynic__config_load_rate_keys(cynic__schema_t *rd, const node_t *rl,
                                  cynic__config_listener_t *l) {
  l->rate_max_clients = CYNIC__RATE_MAX_CLIENTS_DEFAULT;
  if (rl == NULL)
    return;
  cynic__schema_get_u32(rd, rl, "max_clients", 1, CYNIC__RATE_MAX_CLIENTS_MAX,
                        &l->rate_max_clients);
  char *name = NULL;
  const node_t *kh =
      cynic__schema_get_string(rd, rl, "key_header", CYNIC__RATE_KEY_HEADER_MAX, &name);
  if (kh == NULL || name == NULL)
    return;
  bool ok = name[0] != '\0';
  for (const char *p = name; *p; p++)
    ok = ok && tchar((unsigned char)*p);
  char sv[64];
  if (!ok) {
    cynic__schema_error_at(rd, kh,
                           "key_header: '%s' is not a header name (letters, digits and "
                           "!#$%%&'*+-.^_`|~ only), e.g. X-Forwarded-For",
                           cynic__config_show(sv, name, strlen(name)));
    free(name);
    return;
  }
  if (l->mode != CYNIC__MODE_HTTP) {
    /* A tcp listener reads no header: the key would silently be the address. */
    cynic__schema_error_at(rd, kh,
                           "key_header: '%s' needs mode: http (a tcp listener reads no headers "
                           "and limits new connections per client address); remove it or set "
                           "mode: http",
                           cynic__config_show(sv, name, strlen(name)));
    free(name);
    return;
  }
  free(l->rate_key_header);
  l->rate_key_header = name;
}

void cynic__config_load_limits(cynic__schema_t *rd, const node_t *m, cynic__config_limits_t *out) {
  out->max_pending_requests = 0;
  if (m == NULL || !cynic__schema_check_map(rd, m, "limits", limits_keys))
    return;
  cynic__schema_get_u32(rd, m, "max_pending_requests", 0, CYNIC__MAX_PENDING_REQUESTS_MAX,
                        &out->max_pending_requests);
}
