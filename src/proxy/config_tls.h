/*
 * src/proxy/config_tls.h: the `tls` section of a listener and of an upstream
 * and their `timeouts.tls_handshake` (config_tls.c), called by config.c's
 * walk. tls.c builds its contexts from what these fill in.
 */
#ifndef CYNIC_PROXY_CONFIG_TLS_H
#define CYNIC_PROXY_CONFIG_TLS_H

#include "config.h"
#include "config_schema.h"

/* Defaults and bounds of timeouts.tls_handshake. */
#define CYNIC__TLS_HANDSHAKE_LISTENER_DEFAULT_NS (5 * NS_PER_S)
#define CYNIC__TLS_HANDSHAKE_UPSTREAM_DEFAULT_NS (2 * NS_PER_S)
#define CYNIC__TLS_HANDSHAKE_MIN_NS NS_PER_MS
#define CYNIC__TLS_HANDSHAKE_MAX_NS (60 * NS_PER_S)

/* The tls section of listener mapping `m` into *t (termination), and its
 * timeouts.tls_handshake (the `timeouts` mapping is checked against its
 * keys by the caller). m NULL, or no tls section: t->enabled false, the
 * defaults filled in anyway (handshake_timeout_ns included). Every problem
 * is reported through rd; t keeps what could be read. No file is opened:
 * tls.c reads them, at start and at each reload. */
void cynic__config_load_listener_tls(cynic__schema_t *rd, const cynic__yaml_node_t *m,
                                     cynic__config_tls_t *t);
/* The same for upstream mapping `m` (origination). */
void cynic__config_load_upstream_tls(cynic__schema_t *rd, const cynic__yaml_node_t *m,
                                     cynic__config_tls_t *t);

/* Is s (len bytes) a name cynic can send as SNI and verify: a DNS name of
 * letters, digits and '-' in labels of 1..63 bytes (none starting or ending
 * with '-'), not all digits, at most CYNIC__TLS_MAX_NAME bytes; or an IPv4
 * or (unbracketed) IPv6 literal. */
bool cynic__config_tls_server_name_valid(const char *s, size_t len);

#endif /* CYNIC_PROXY_CONFIG_TLS_H */
