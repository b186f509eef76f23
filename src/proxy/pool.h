/*
 * src/proxy/pool.h: upstream connections, the per-endpoint idle pool, and
 * the socket options of every proxied socket (the transport).
 *
 * A cynic__upconn_t is one connection to one endpoint: its transport handle
 * (plain TCP today; a TLS layer will sit behind this object, so nothing
 * outside pool.c touches the socket's options or its connect), the connect in
 * flight and its deadline. It is embedded in its user (TCP mode: in the
 * client connection, no allocation of its own) or, for HTTP later, allocated
 * so that it can outlive one exchange in its endpoint's idle pool.
 *
 * The idle pool of an endpoint keeps connections done with an exchange for
 * the next one (HTTP keep-alive), at most `pool.max_idle` of them, none older
 * than `pool.idle_timeout`, and never one the upstream closed (Steady State).
 * TCP mode never reuses a connection: it never gives one to the pool.
 *
 * Socket options (Integration Points: find the connection a firewall dropped
 * without a word): TCP keepalive and TCP_USER_TIMEOUT from the upstream's
 * config, and TCP_NODELAY, on upstream sockets once connected and on client
 * sockets, inherited from the listening socket where the kernel copies them
 * (checked on a listener's first accept, not assumed); SO_LINGER 0 to forward
 * a reset as a reset.
 */
#ifndef CYNIC_PROXY_POOL_H
#define CYNIC_PROXY_POOL_H

#include "proxy.h"
#include "tls.h"

typedef struct cynic__upconn cynic__upconn_t;

/* The connect is over: status 0 (connected, options set) or a libuv error. */
typedef void (*cynic__upconn_cb)(cynic__upconn_t *uc, int status);
/* (status may also be CYNIC__TLS_EVERIFY or CYNIC__TLS_EPROTOCOL: the
 * handshake failed; cynic__tls_last_error() says why. And, before the final
 * call, CYNIC__UPCONN_HANDSHAKING once: connected, the TLS handshake starts,
 * uc->deadline_ms is now its deadline (the user re-arms its timer).) */
#define CYNIC__UPCONN_HANDSHAKING 1

struct cynic__upconn {
  cynic__stream_t handle; /* the transport (TLS when the upstream says so);
                             handle.tcp.data is the user's (the pool's while idle) */
  union {
    uv_connect_t connect_req; /* while connecting; data: this upconn */
    struct {
      cynic__link_t link; /* its endpoint's idle list, newest last */
      uint64_t since_ms;  /* loop time it went idle */
    } idle;               /* while in its endpoint's idle pool (never connecting) */
  };
  cynic__endpoint_t *endpoint; /* connected (or connecting) to */
  cynic__upconn_cb on_connect;
  uint64_t deadline_ms; /* the connect timeout on the loop clock, then (TLS) the
                           handshake's; 0 once connected */
  bool open;            /* handle initialised and not yet closed */
  bool handshaking;     /* TLS: connected, the handshake runs (deadline_ms is its) */
  bool http;            /* HTTP mode's (ALPN http/1.1); set before the connect */
  bool reading;         /* HTTP mode: the handle is being read, by the pool's
                           callbacks or its user's (cynic__io_read_switch) */
};

/* Starts connecting `uc` (zeroed, or closed) to `e` on `loop`, the connect
 * timeout taken from e's upstream, then, when the upstream has `tls`, the
 * TLS handshake within timeouts.tls_handshake (uc->handshaking meanwhile); `data` goes into uc->handle.data for the
 * user's own callbacks. 0: `cb` will be called once. Otherwise a libuv error
 * (UV_EMFILE, UV_ENOMEM...: a local shortage; others: the endpoint's) and no
 * callback. Either way, when uc->open the user must close it with
 * cynic__upconn_close. */
int cynic__upconn_connect(cynic__upconn_t *uc, uv_loop_t *loop, cynic__endpoint_t *e, void *data,
                          cynic__upconn_cb cb);
/* True when the connect is in flight and its deadline (ms, loop clock) has
 * passed: the user's timer asks (one timer per session, not one more here). */
static inline bool cynic__upconn_connect_expired(const cynic__upconn_t *uc, uint64_t now_ms) {
  return uc->deadline_ms != 0 && now_ms >= uc->deadline_ms;
}
/* The stream to read and write (the transport's). */
static inline uv_stream_t *cynic__upconn_stream(cynic__upconn_t *uc) {
  return (uv_stream_t *)&uc->handle.tcp;
}
/* Closes uc's handle if open; `reset` sends RST instead of FIN (the peer
 * reset us, or the other side did and we forward it). `cb` runs once the
 * handle is closed (not at all when it was not open): only then may uc's
 * memory go. */
void cynic__upconn_close(cynic__upconn_t *uc, bool reset, uv_close_cb cb);

/* ---- the idle pool (HTTP mode; TCP mode never gives) ----
 *
 * Only connections from cynic__upconn_new may be given: the pool frees the
 * ones it closes. While idle a connection is read by the pool: any byte or EOF
 * from the upstream (it closed, or says something nobody asked for) closes it
 * at once. Bounds: `pool.max_idle` per endpoint (the oldest is closed to make
 * room), `pool.idle_timeout` of age (checked at every take, swept every
 * second), both read from the upstream's config at each call so a reload
 * applies at once. */

/* A zeroed upstream connection on the heap, or NULL without memory. Free it
 * with cynic__upconn_free once closed (or never opened). */
cynic__upconn_t *cynic__upconn_new(void);
/* A close callback (for cynic__upconn_close) that frees the cynic__upconn_new
 * connection whose handle `h` is. */
void cynic__upconn_free_cb(uv_handle_t *h);

/* An idle connection to `e` that is still good for a new exchange, or NULL.
 * Newest first; each one older than the idle timeout, or (`check`: a
 * MSG_PEEK, one system call) closed by the peer or holding unsolicited bytes
 * the loop has not read yet, is closed on the way (counted in
 * e->pool_discarded); the one returned is counted in e->pool_reused and its
 * handle.data is the caller's to set. It is still being read (uc->reading)
 * with the pool's callbacks: before the loop runs again the caller switches
 * them to its own (cynic__io_read_switch) or stops reading. */
cynic__upconn_t *cynic__pool_take(cynic__endpoint_t *e, uint64_t now_ms, bool check);
/* Offers `uc` (from cynic__upconn_new; connected, no write in flight; read
 * or not as uc->reading says: the pool switches the callbacks to its own),
 * done with an exchange that ended cleanly, to its endpoint's pool:
 * true when the pool owns it now (kept, the oldest closed if the pool was
 * full), false when it keeps none (max_idle 0, a retired upstream, or the
 * connection cannot be watched): then the caller closes it. */
bool cynic__pool_give(cynic__upconn_t *uc, uint64_t now_ms);
/* Closes e's idle connections older than the idle timeout. Every second. */
void cynic__pool_sweep(cynic__endpoint_t *e, uint64_t now_ms);
/* Closes every idle connection of `e` (the endpoint goes away, an operator
 * trips it with close_connections, the daemon stops). */
void cynic__pool_close_all(cynic__endpoint_t *e);

/* Sets the upstream's TCP options (keepalive, user timeout, nodelay) on
 * socket `fd`: false when one of them could not be set. */
bool cynic__sock_options_set(uv_os_fd_t fd, const cynic__config_upstream_t *u);
/* True when socket `fd` already carries every option cynic__sock_options_set
 * would set. */
bool cynic__sock_options_match(uv_os_fd_t fd, const cynic__config_upstream_t *u);
/* Makes close() of `h` send RST instead of FIN. */
void cynic__sock_linger_zero(uv_tcp_t *h);
/* Sets the client sockets' options on l's listening socket, so that accepted
 * sockets inherit them, and marks the listener to check that on its next
 * accept (l->options). At bind, at adoption, and after every reload. */
void cynic__listener_options(cynic__listener_t *l);
/* After a reload (l's upstream or its options may have changed): when the
 * listening socket's options differ from what l's upstream asks now, sets the
 * new ones there as cynic__listener_options does, so new client sockets carry
 * them. Open connections keep what they were given. */
void cynic__listener_options_refresh(cynic__listener_t *l);
/* The options of an accepted client socket of `l`: nothing when the
 * listener's accepted sockets are known to inherit them; otherwise checked
 * (once, after cynic__listener_options) or set (every accept). */
void cynic__client_options(cynic__listener_t *l, uv_tcp_t *client);

#endif /* CYNIC_PROXY_POOL_H */
