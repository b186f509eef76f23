/*
 * src/proxy/http_session.h: HTTP mode's entry points, for the mode table only
 * (session.c), as tcp.h is TCP mode's.
 */
#ifndef CYNIC_PROXY_HTTP_SESSION_H
#define CYNIC_PROXY_HTTP_SESSION_H

#include "session.h"

/* HTTP/1.1 mode: requests parsed, one exchange with the upstream per request
 * (docs/design-http.md). */
extern const cynic__mode_t cynic__http_mode;

/* Frees the buffers HTTP mode keeps for reuse (head stores, the head
 * scratch buffer), at exit. */
void cynic__http_free_caches(void);
/* How many exchanges and head stores are kept for reuse now (the tests of
 * their bounds). */
void cynic__http_caches_kept(size_t *exchanges, size_t *stores);
/* Gives back to malloc what the last second's peak of requests in flight
 * did not need (blocks.h); every second, from the proxy's tick. */
void cynic__http_caches_trim(void);

#endif /* CYNIC_PROXY_HTTP_SESSION_H */
