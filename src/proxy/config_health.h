/*
 * src/proxy/config_health.h: an upstream's health_check section
 * (config_health.c), called by config.c's walk.
 */
#ifndef CYNIC_PROXY_CONFIG_HEALTH_H
#define CYNIC_PROXY_CONFIG_HEALTH_H

#include "config.h"
#include "config_schema.h"

/* The health_check section of upstream mapping `m` into *h (m NULL, or no
 * such section: h->enabled false, the defaults filled in anyway). */
void cynic__config_load_upstream_health(cynic__schema_t *rd, const cynic__yaml_node_t *m,
                                        cynic__config_health_t *h);

#endif /* CYNIC_PROXY_CONFIG_HEALTH_H */
