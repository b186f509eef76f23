/*
 * src/proxy/config_limits.h: the keys of Unwanted Users and load shedding
 * (config_limits.c): a listener's rate_limit.key_header and
 * rate_limit.max_clients, and the top-level `limits` section. Called by
 * config.c's walk.
 */
#ifndef CYNIC_PROXY_CONFIG_LIMITS_H
#define CYNIC_PROXY_CONFIG_LIMITS_H

#include "config.h"
#include "config_schema.h"

/* The per-client table's default bound (clients tracked per listener). */
#define CYNIC__RATE_MAX_CLIENTS_DEFAULT 65536u
/* ... and its largest (about 68 bytes a client: 68 MB). */
#define CYNIC__RATE_MAX_CLIENTS_MAX 1000000u
/* The top-level limits.max_pending_requests bound. */
#define CYNIC__MAX_PENDING_REQUESTS_MAX 1000000u

/* A listener's rate_limit mapping `rl` (checked against its keys already):
 * key_header and max_clients into *l. Defaults (rl NULL too): no header,
 * CYNIC__RATE_MAX_CLIENTS_DEFAULT. key_header on a listener that is not in
 * http mode is an error (l->mode must be set first). */
void cynic__config_load_rate_keys(cynic__schema_t *rd, const cynic__yaml_node_t *rl,
                                  cynic__config_listener_t *l);
/* The top-level `limits` section (node `m`, NULL when absent) into *out. */
void cynic__config_load_limits(cynic__schema_t *rd, const cynic__yaml_node_t *m,
                               cynic__config_limits_t *out);

#endif /* CYNIC_PROXY_CONFIG_LIMITS_H */
