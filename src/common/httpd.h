/*
 * httpd.h: a small HTTP/1.1 server on a libuv loop for JSON control APIs (the
 * harness API, the proxy's admin listener). Keep-alive and pipelining,
 * answered in order; every limit explicit:
 *   - max_conns connections (further ones are accepted and closed at once),
 *   - the request limits of cynic__http_limits_t (answered 413/414/431),
 *   - request_timeout_ms from a request's first byte to its last (slowloris),
 *   - idle_timeout_ms between requests on a kept-alive connection,
 *   - max_pending_write bytes of unsent responses per connection, past which
 *     the connection stops being read (back pressure).
 * Handlers run on the loop thread and must not block.
 */
#ifndef CYNIC_COMMON_HTTPD_H
#define CYNIC_COMMON_HTTPD_H

#include <stdbool.h>
#include <uv.h>

#include "buf.h"
#include "http.h"

typedef struct cynic__httpd_response {
  int status;               /* default 200 */
  const char *content_type; /* static string or NULL; default application/json */
  cynic__buf_t body;        /* capped at the server's max_response */
  bool close;               /* close the connection after this response */
  const char *headers;      /* NULL or extra header lines, each ending in CRLF ("Allow:
                               GET\r\n"); must outlive the handler call (static text) */
  bool checked;             /* the handler vouches for its body although jansson ran out of
                               memory during the call (it checked the body it built); else
                               such an answer is replaced by a 503 (cynic__json_init) */
} cynic__httpd_response_t;

/* Answer `req` by filling `resp`. `arg` is the one given to start. */
typedef void (*cynic__httpd_handler_t)(void *arg, const cynic__http_parser_t *req,
                                       cynic__httpd_response_t *resp);

typedef struct cynic__httpd_config {
  cynic__http_limits_t limits;
  size_t max_conns;
  size_t max_response;      /* response body cap (a handler past it gets ERANGE) */
  size_t max_pending_write; /* per connection */
  uint64_t request_timeout_ms;
  uint64_t idle_timeout_ms;
} cynic__httpd_config_t;

typedef struct cynic__httpd_conn cynic__httpd_conn_t;

typedef struct cynic__httpd {
  uv_loop_t *loop;
  uv_tcp_t listener;
  cynic__httpd_config_t config;
  cynic__httpd_handler_t handler;
  void *arg;
  cynic__httpd_conn_t *conns; /* doubly linked */
  size_t nconns;
  bool listening;
  bool closing;
  void (*on_closed)(struct cynic__httpd *);
  char readbuf[65536]; /* shared: libuv reads into it and we parse at once */
} cynic__httpd_t;

/*
 * Deferred answers. A handler that cannot answer at once (it waits for a name
 * to resolve, say) calls cynic__httpd_defer from inside the handler; what it
 * wrote into `resp` is then ignored. The connection stops reading and keeps
 * the bytes after the request (pipelined requests wait, so answers stay in
 * request order) until cynic__httpd_complete sends the pending answer.
 *
 * The pending handle belongs to the caller until it calls complete, exactly
 * once, also when the client went away meanwhile (the answer is then
 * discarded) or the server closed. The request stays readable until then
 * through cynic__httpd_pending_request, which is NULL once the client is
 * gone. The request timeout keeps running while an answer is pending.
 */
typedef struct cynic__httpd_pending cynic__httpd_pending_t;
/* From a handler: defer the answer to `resp`'s request. NULL if out of memory
 * (then answer now). Calling it twice in one handler returns the same handle. */
cynic__httpd_pending_t *cynic__httpd_defer(cynic__httpd_response_t *resp);
/* The request of a pending answer; NULL if its client disconnected. */
const cynic__http_parser_t *cynic__httpd_pending_request(const cynic__httpd_pending_t *pd);
/* The response to fill (defaults as for a handler: 200, JSON, empty body). */
cynic__httpd_response_t *cynic__httpd_pending_response(cynic__httpd_pending_t *pd);
/* Send the pending answer (if the client is still there), carry on with the
 * requests that were waiting behind it, and free `pd`. */
void cynic__httpd_complete(cynic__httpd_pending_t *pd);

/*
 * Streamed answers (server-sent events and the like). A handler that answers
 * with an open-ended body calls cynic__httpd_stream after setting `resp`'s
 * status, content_type and headers: the head goes out at once (no
 * Content-Length, `Connection: close`), the request and idle timeouts stop,
 * and the connection carries only what cynic__httpd_stream_write sends until
 * it closes. Bytes the client sends after the request are read and dropped
 * (reading goes on only to see it leave). Bounds: a write finding more than
 * `max_pending` bytes handed to the socket and not yet written closes the
 * stream instead (a slow reader is dropped, memory never grows); a client
 * that keeps up gets every message whole, however large, so what is pending
 * stays under max_pending + the largest single write. The socket's send
 * buffer is set to `sndbuf` bytes (0: the kernel's default).
 *
 * `on_close` runs exactly once, when the stream ends for any reason (the
 * client left, a write failed or overflowed, cynic__httpd_stream_close, the
 * server closed); the handle is freed right after it returns, so the owner
 * forgets it there. It may run inside cynic__httpd_stream_write or _close.
 */
typedef struct cynic__httpd_stream cynic__httpd_stream_t;
typedef void (*cynic__httpd_stream_cb)(cynic__httpd_stream_t *st, void *arg);
/* From a handler: NULL if out of memory (then answer normally). */
cynic__httpd_stream_t *cynic__httpd_stream(cynic__httpd_response_t *resp, size_t max_pending,
                                           int sndbuf, cynic__httpd_stream_cb on_close, void *arg);
/* Queue `n` bytes. 0, or CYNIC_ERANGE when more than max_pending bytes were
 * already pending (the stream is closed: on_close has run), or a libuv /
 * CYNIC_ENOMEM error (the same). */
int cynic__httpd_stream_write(cynic__httpd_stream_t *st, const char *p, size_t n);
/* Bytes queued and not yet written. */
size_t cynic__httpd_stream_pending(const cynic__httpd_stream_t *st);
/* The client's address as "ip:port" (as cynic__httpd_peer). */
int cynic__httpd_stream_peer(const cynic__httpd_stream_t *st, char *buf, size_t len);
/* Ends the stream now (on_close runs). */
void cynic__httpd_stream_close(cynic__httpd_stream_t *st);

/* Sensible defaults for a local control API. */
void cynic__httpd_config_default(cynic__httpd_config_t *c);
/*
 * Bind `addr` and listen. 0 or a libuv error code (UV_EADDRINUSE, ...); on
 * error the server must still be closed with cynic__httpd_close.
 */
int cynic__httpd_start(cynic__httpd_t *s, uv_loop_t *loop, const cynic__httpd_config_t *c,
                       const struct sockaddr *addr, cynic__httpd_handler_t handler, void *arg);
/* The bound address (for port 0). 0 or a libuv error. */
int cynic__httpd_address(cynic__httpd_t *s, struct sockaddr_storage *out);
/* The address of the peer that sent `req` (a parser handed to the handler) as
 * "ip:port" into buf. 0 or a libuv error. */
int cynic__httpd_peer(const cynic__http_parser_t *req, char *buf, size_t len);
/* Close the listener and every connection; `on_closed` runs once all handles
 * are closed (then `s` may be freed). */
void cynic__httpd_close(cynic__httpd_t *s, void (*on_closed)(cynic__httpd_t *));

#endif
