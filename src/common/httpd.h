/*
 * httpd.h: a small HTTP/1.1 server on a libuv loop for JSON control APIs (the
 * harness API, the proxy's admin listener). Keep-alive and pipelining,
 * answered in order; every limit explicit:
 *   - max_conns connections (past it a new one evicts the connection idle
 *     longest, or is closed at once when none can go),
 *   - the request limits of cynic__http_limits_t (answered 413/414/431),
 *   - request_timeout_ms from a request's first byte to its last (slowloris),
 *   - idle_timeout_ms between requests on a kept-alive connection,
 *   - one request in flight per connection and no read-ahead: unsent bytes
 *     are at most one answer (max_response) or one slice of a produced body,
 *     and a connection is not read until they are written (back pressure).
 * Handlers run on the loop thread and must not block.
 */
#ifndef CYNIC_COMMON_HTTPD_H
#define CYNIC_COMMON_HTTPD_H

#include <jansson.h>
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
  /* A produced (streamed) body instead of `body`: see cynic__httpd_produce_cb. */
  int (*produce)(void *arg, cynic__buf_t *out, size_t want);
  void (*produce_free)(void *arg); /* runs exactly once for a set produce; may be NULL */
  void *produce_arg;
} cynic__httpd_response_t;

/*
 * Produced bodies (large answers without building them whole). A handler sets
 * resp->produce, produce_arg and produce_free (and status, content_type,
 * headers) and leaves `body` empty. httpd calls produce(arg, out, want) to
 * append about `want` bytes to `out` (more when one unit cannot be cut, at
 * most max_response; fewer is fine) and return 1 when that was the end of the
 * body, 0 when more follows, or a negative CYNIC_E* error. jansson running
 * out of memory during a call counts as an error.
 *
 * The first call is made before the head is sent: an error there is answered
 * 503 (out of memory) or 500 with a JSON error body; a body complete in the
 * first call is sent whole with Content-Length. Otherwise the head goes out
 * with Transfer-Encoding: chunked (HTTP/1.0: no length, Connection: close)
 * and each further slice is asked for only once the previous one has been
 * written to the socket (back pressure: a client that does not read gets
 * nothing more produced), from the server's work queue (work_budget_us). An
 * error after the head aborts the connection without the terminating chunk,
 * so no HTTP/1.1 client can take a cut body for a complete one (an HTTP/1.0
 * client, which reads to the close, cannot tell: send HTTP/1.1).
 *
 * produce_free(arg) runs exactly once: when the body is complete, failed, or
 * abandoned (client gone, server closed). produce runs between loop turns,
 * so it must read its data afresh each call (objects may be gone since).
 */
typedef int (*cynic__httpd_produce_cb)(void *arg, cynic__buf_t *out, size_t want);

/* Answer `req` by filling `resp`. `arg` is the one given to start. */
typedef void (*cynic__httpd_handler_t)(void *arg, const cynic__http_parser_t *req,
                                       cynic__httpd_response_t *resp);

typedef struct cynic__httpd_config {
  cynic__http_limits_t limits;
  size_t max_conns;
  size_t max_response;      /* response body cap (a handler past it gets ERANGE) */
  uint64_t request_timeout_ms;
  uint64_t idle_timeout_ms;
  size_t slice_bytes;      /* a produced body's slice, about (default 64 KiB) */
  uint64_t work_budget_us; /* queued handler/slice work per loop turn (default 1000) */
} cynic__httpd_config_t;

typedef struct cynic__httpd_conn cynic__httpd_conn_t;

typedef struct cynic__httpd {
  uv_loop_t *loop;
  uv_tcp_t listener;
  cynic__httpd_config_t config;
  cynic__httpd_handler_t handler;
  void *arg;
  cynic__httpd_conn_t *conns; /* doubly linked */
  size_t nconns; /* until libuv lets go of them, closing ones included */
  size_t nlive;  /* not closing: what max_conns bounds */
  cynic__httpd_conn_t *work_head, *work_tail; /* connections with a handler or slice to run */
  uv_idle_t work;                             /* runs the queue while it is not empty */
  bool work_open;                             /* `work` initialised and not closed yet */
  uint64_t evictions;                         /* idle connections evicted at capacity */
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
/* Changes the stream's max_pending (an owner whose messages grew). */
void cynic__httpd_stream_set_max_pending(cynic__httpd_stream_t *st, size_t max_pending);
/* Ends the stream now (on_close runs). */
void cynic__httpd_stream_close(cynic__httpd_stream_t *st);

/*
 * JSON answers, one way for every control API on this server (the proxy's
 * admin listener, the harness API), so a failure to render one looks the
 * same everywhere. cynic__httpd_reply_json makes `resp` a `status` answer
 * whose body is `body` (its reference consumed) dumped compact, then "\n"
 * when `newline`. When the body cannot be made: NULL (a json_pack that
 * failed) is answered 500 {"error":"cannot build the response","status":500};
 * a body past max_response (CYNIC_ERANGE) 500 {"error":"response too
 * large","status":500}; out of memory an empty 503 that closes the
 * connection (httpd sends its own out-of-memory body). The 500 bodies end
 * with "\n" too when `newline`.
 */
void cynic__httpd_reply_json(cynic__httpd_response_t *resp, int status, json_t *body, bool newline);
/*
 * Answers {"error": msg, "status": status} and a "\n" (as Go's http.Error,
 * which the harness API mimics). `msg` may quote a client's bytes, which need
 * not be UTF-8: cynic__json_text replaces what is not, so the answer is
 * always JSON. Failures as cynic__httpd_reply_json's.
 */
void cynic__httpd_reply_error(cynic__httpd_response_t *resp, int status, const char *msg);

/* Sensible defaults for a local control API. */
void cynic__httpd_config_default(cynic__httpd_config_t *c);
/*
 * Bind `addr` and listen. 0 or a libuv error code (UV_EADDRINUSE, ...); on
 * error the server must still be closed with cynic__httpd_close. `addr` NULL
 * makes a server without a socket, served only by cynic__httpd_feed.
 */
int cynic__httpd_start(cynic__httpd_t *s, uv_loop_t *loop, const cynic__httpd_config_t *c,
                       const struct sockaddr *addr, cynic__httpd_handler_t handler, void *arg);
/*
 * Socket-free serving, for the fuzz targets (fuzz/fuzz_admin_api.c,
 * fuzz_harness_api.c) and tests: one client connection on `s` that sends
 * `in` (n bytes) and then leaves. Its requests go through the same parser,
 * limits, handler, produced bodies and response writer as a socket's, in
 * order, and every byte the server would write is appended to `out`
 * (bounded by out's cap: past it the connection closes, as after a write
 * error). It returns once nothing more can happen without the loop: the
 * connection is then closed, so a deferred answer is discarded and a stream
 * ends (its on_close runs). The peer address of its requests is unknown
 * (cynic__httpd_peer fails). Its handles close on the loop's next turn, as
 * any connection's. 0, CYNIC_EINVAL (the server is closing) or CYNIC_ENOMEM.
 */
int cynic__httpd_feed(cynic__httpd_t *s, const char *in, size_t n, cynic__buf_t *out);
/* The bound address (for port 0). 0 or a libuv error. */
int cynic__httpd_address(cynic__httpd_t *s, struct sockaddr_storage *out);
/* The address of the peer that sent `req` (a parser handed to the handler) as
 * "ip:port" into buf. 0 or a libuv error. */
int cynic__httpd_peer(const cynic__http_parser_t *req, char *buf, size_t len);
/* The peer's address bytes (4 for IPv4, 16 for IPv6) into key[16]; their
 * count, or 0 when unknown. A key for per-client tables. */
size_t cynic__httpd_peer_key(const cynic__http_parser_t *req, unsigned char key[16]);
/* Close the listener and every connection; `on_closed` runs once all handles
 * are closed (then `s` may be freed). */
void cynic__httpd_close(cynic__httpd_t *s, void (*on_closed)(cynic__httpd_t *));

#endif
