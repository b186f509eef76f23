/*
 * src/proxy/tcp.h: TCP mode's entry points, for the mode table only
 * (session.c). Nothing else calls into tcp.c: the listener goes through
 * cynic__mode_for(), the rest of the daemon through the session ops.
 */
#ifndef CYNIC_PROXY_TCP_H
#define CYNIC_PROXY_TCP_H

#include "session.h"

/* TCP mode: one attempt per client connection, then the byte relay. */
extern const cynic__mode_t cynic__tcp_mode;

#endif /* CYNIC_PROXY_TCP_H */
