/*
 * src/proxy/reload.h: applying a changed config file to a running daemon
 * (SIGHUP, POST /reload) and reclaiming what a reload retired.
 *
 * reload.c prepares everything that can fail first (a reload is all or
 * nothing: a refused one changes nothing), then asks each module to apply its
 * part. Loop thread only.
 */
#ifndef CYNIC_PROXY_RELOAD_H
#define CYNIC_PROXY_RELOAD_H

#include <jansson.h>

#include "proxy.h"

/* Reloads the config file (SIGHUP, POST /reload). Returns the JSON answer and
 * sets *status: 200 applied, 400 bad config (nothing applied), 409 a change
 * that cannot be applied now (an address in use, a file that does not open;
 * nothing applied). `who` names the cause in the log. The caller owns the
 * answer (json_decref). */
json_t *cynic__reload(cynic__proxy_t *p, const char *who, int *status);
/* Reclaims the slots of retired listeners and upstreams that nothing points
 * to any more (no connection, no queued client, no listener), so that a
 * process reloaded for ever never runs out of them (Steady State). Called
 * once a second and at the start of every reload; O(connections + slots). */
void cynic__reload_sweep(cynic__proxy_t *p);
/* Frees the config copies and pinned configs of retired listeners and
 * upstreams, after the loop has ended. */
void cynic__reload_free(cynic__proxy_t *p);

#endif /* CYNIC_PROXY_RELOAD_H */
