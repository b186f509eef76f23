/*
 * src/proxy/config_http.h: the http-only part of cynic's config schema
 * (config_http.c), called by config.c's walk.
 */
#ifndef CYNIC_PROXY_CONFIG_HTTP_H
#define CYNIC_PROXY_CONFIG_HTTP_H

#include "config.h"
#include "config_schema.h"

/* An upstream's retry, expect, limits, fallback and pool sections from mapping
 * `m` into *h, defaults first (m NULL: defaults only). */
void cynic__config_load_upstream_http(cynic__schema_t *rd, const cynic__yaml_node_t *m,
                                      cynic__config_http_t *h);
/* A listener's limits, forwarded and request_id_header keys from mapping `m`
 * into *l, defaults first (m NULL: defaults only). */
void cynic__config_load_listener_http(cynic__schema_t *rd, const cynic__yaml_node_t *m,
                                      cynic__config_listener_t *l);

/* `content_type` of mapping m (a media type, type/subtype, up to 255 bytes)
 * into *out; errors reported at its position. Shared by expect, fallback and
 * health_check.expect. */
void cynic__config_get_content_type(cynic__schema_t *rd, const cynic__yaml_node_t *m, char **out);
/* Cross-checks of every upstream's fallback.secondary once all are loaded:
 * another upstream's name, not its own, and one without a secondary of its
 * own (one hop only). */
void cynic__config_check_fallbacks(cynic__schema_t *rd, const cynic__config_t *cfg);

#endif /* CYNIC_PROXY_CONFIG_HTTP_H */
