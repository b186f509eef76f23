/*
 * src/proxy/config_http.h: the http-only part of cynic's config schema
 * (config_http.c), called by config.c's walk.
 */
#ifndef CYNIC_PROXY_CONFIG_HTTP_H
#define CYNIC_PROXY_CONFIG_HTTP_H

#include "config.h"
#include "config_schema.h"

/* An upstream's retry, expect, limits, fallback and pool sections from mapping
 * `m` into *h, defaults first (m NULL: defaults only). `busy_max` is the
 * upstream's bulkhead.max_connections: pool.max_idle's default, so that every
 * connection the bulkhead lets be busy at once can wait for the next request
 * (CYNIC__POOL_MAX_IDLE_MAX at most). */
void cynic__config_load_upstream_http(cynic__schema_t *rd, const cynic__yaml_node_t *m,
                                      cynic__config_http_t *h, uint32_t busy_max);
#define CYNIC__POOL_MAX_IDLE_MAX 10000u
/* A listener's limits, forwarded and request_id_header keys from mapping `m`
 * into *l, defaults first (m NULL: defaults only). */
void cynic__config_load_listener_http(cynic__schema_t *rd, const cynic__yaml_node_t *m,
                                      cynic__config_listener_t *l);

/* The longest header name the config takes (request_id_header,
 * deadline_header, retry.idempotent_header, rate_limit.key_header). */
#define CYNIC__CONFIG_MAX_HEADER_NAME 64u

/* A header name (an RFC 9110 token, 1..CYNIC__CONFIG_MAX_HEADER_NAME bytes)
 * at m's `key` into *out (the old value freed) when given and valid; else an
 * error at its position with `example` as the fix. The key's node when the
 * name was stored, NULL when absent or refused. */
const cynic__yaml_node_t *cynic__config_get_header_name(cynic__schema_t *rd,
                                                        const cynic__yaml_node_t *m,
                                                        const char *key, const char *example,
                                                        char **out);

/* `content_type` of mapping m (a media type, type/subtype, up to 255 bytes)
 * into *out; errors reported at its position. Shared by expect, fallback and
 * health_check.expect. */
void cynic__config_get_content_type(cynic__schema_t *rd, const cynic__yaml_node_t *m, char **out);
/* `status` of mapping m, a range "200-299" or one status "200" (100..599,
 * min <= max), into *min and *max; errors reported at its position with
 * `example` as the fix. Shared by expect and health_check.expect. */
void cynic__config_get_status_range(cynic__schema_t *rd, const cynic__yaml_node_t *m,
                                    const char *example, uint16_t *min, uint16_t *max);
/* Cross-checks of every upstream's fallback.secondary once all are loaded:
 * another upstream's name, not its own, and one without a secondary of its
 * own (one hop only). */
void cynic__config_check_fallbacks(cynic__schema_t *rd, const cynic__config_t *cfg);

#endif /* CYNIC_PROXY_CONFIG_HTTP_H */
