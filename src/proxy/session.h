/*
 * src/proxy/session.h: the protocol-neutral base of a client session, and the
 * table through which a listener hands its accepted sockets to its mode.
 *
 * Every client session (a TCP-mode connection today, an HTTP session
 * tomorrow) embeds a cynic__session_t and recovers itself from it with
 * cynic__container_of. The base is what the rest of the daemon may know of a
 * session: the proxy's list it is on, its listener, the client's address and
 * the upstream it forwards to; everything else goes through its ops, which
 * are only for rare events (drain, an operator's trip, a reload's sweep) and
 * never on the per-byte path.
 *
 *   daemon.c  cynic__sessions_close_all        (drain deadline, exit)
 *   admin.c   cynic__sessions_close_endpoint   (trip with close_connections)
 *   reload.c  cynic__sessions_mark_in_use      (what a retired slot still serves)
 *
 * Nothing outside tcp.c (and http_*.c later) knows which mode a session is in.
 *
 * Ownership: a session is owned by its mode's file (tcp.c allocates and frees
 * a cynic__conn_t). It is on p->sessions from the mode's start() until it is
 * freed; while it is on the list, the ops may be called at any time on the
 * loop's thread, including while it is closing.
 */
#ifndef CYNIC_PROXY_SESSION_H
#define CYNIC_PROXY_SESSION_H

#include "proxy.h"

typedef struct cynic__session cynic__session_t;

typedef struct cynic__session_ops {
  /* Ends the session now, counted as closed by cynic (CYNIC__OUT_CLOSED),
   * `why` (a static string) for the debug log. A session already closing
   * ignores it. The session is freed later, by its own file, never here. */
  void (*close)(cynic__session_t *s, const char *why);
  /* True when the session is not closing and has something going on with
   * endpoint `e` (a connection, or an attempt in flight). */
  bool (*uses_endpoint)(const cynic__session_t *s, const cynic__endpoint_t *e);
  /* Optional (NULL: the base's listener and upstream are all it holds):
   * sets listeners[i] / upstreams[i] for every other slot it points to. */
  void (*mark_in_use)(const cynic__session_t *s, bool *listeners, bool *upstreams);
  /* Optional (NULL: nothing to do): the proxy starts draining. HTTP mode
   * closes an idle keep-alive connection now and the others after their
   * current response; TCP mode's connections finish on their own. */
  void (*drain)(cynic__session_t *s);
} cynic__session_ops_t;

struct cynic__session {
  cynic__link_t link; /* cynic__proxy_t.sessions, from start until freed */
  const cynic__session_ops_t *ops;
  cynic__listener_t *listener; /* set by start(); NULL before. Its proxy is the
                                  session's (no copy of the pointer here) */
  cynic__upstream_t *upstream; /* the listener's upstream at accept */
  uint8_t ip[16];              /* the client's address (IPv4 mapped) */
  uint16_t port;               /* the client's port */
};

/* Adds `s` (base fields set by the caller) to p's session list and counts it
 * in p->conn_count. */
static inline void cynic__session_add(cynic__proxy_t *p, cynic__session_t *s) {
  cynic__list_push(&p->sessions, &s->link);
  p->conn_count++;
}

/* Takes `s` off p's list (when it is freed). */
static inline void cynic__session_remove(cynic__proxy_t *p, cynic__session_t *s) {
  cynic__list_remove(&s->link);
  p->conn_count--;
}

/* What a listener needs from its mode, one table per mode (tcp.c's
 * cynic__tcp_mode). Each runs once per accepted connection, never per
 * byte. Client socket options are the same in every mode (pool.c). */
struct cynic__mode {
  const char *name; /* "tcp", for logs */
  /* A session with its client handle initialised on p's loop, ready for
   * uv_accept: the handle, or NULL without memory. */
  uv_tcp_t *(*client_new)(cynic__proxy_t *p);
  /* Closes and frees a client_new() handle that was never started. */
  void (*client_discard)(uv_tcp_t *client);
  /* Takes over an accepted client (counted in l->open already) from `ip`
   * (16 bytes, IPv4 mapped) and `port`. On any failure the session closes
   * and frees itself. */
  void (*start)(cynic__listener_t *l, uv_tcp_t *client, const uint8_t ip[16], uint16_t port);
};

/* The table for a listener's configured mode (tcp.c's or http_session.c's).
 * Never NULL. */
const cynic__mode_t *cynic__mode_for(cynic__config_mode_t mode);

#endif /* CYNIC_PROXY_SESSION_H */
