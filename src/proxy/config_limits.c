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

#include "config_http.h"
#include "config_value.h"

typedef cynic__yaml_node_t node_t;

static const char *const limits_keys[] = {"max_pending_requests", NULL};

void cynic__config_load_rate_keys(cynic__schema_t *rd, const node_t *rl,
                                  cynic__config_listener_t *l) {
  l->rate_max_clients = CYNIC__RATE_MAX_CLIENTS_DEFAULT;
  if (rl == NULL)
    return;
  cynic__schema_get_u32(rd, rl, "max_clients", 1, CYNIC__RATE_MAX_CLIENTS_MAX,
                        &l->rate_max_clients);
  const node_t *kh =
      cynic__config_get_header_name(rd, rl, "key_header", "X-Forwarded-For", &l->rate_key_header);
  if (kh != NULL && l->mode != CYNIC__MODE_HTTP) {
    /* A tcp listener reads no header: the key would silently be the address. */
    char sv[64];
    cynic__schema_error_at(rd, kh,
                           "key_header: '%s' needs mode: http (a tcp listener reads no headers "
                           "and limits new connections per client address); remove it or set "
                           "mode: http",
                           cynic__config_show(sv, l->rate_key_header, strlen(l->rate_key_header)));
    free(l->rate_key_header);
    l->rate_key_header = NULL;
  }
}

void cynic__config_load_limits(cynic__schema_t *rd, const node_t *m, cynic__config_limits_t *out) {
  out->max_pending_requests = 0;
  if (m == NULL || !cynic__schema_check_map(rd, m, "limits", limits_keys))
    return;
  cynic__schema_get_u32(rd, m, "max_pending_requests", 0, CYNIC__MAX_PENDING_REQUESTS_MAX,
                        &out->max_pending_requests);
}
