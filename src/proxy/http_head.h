/*
 * src/proxy/http_head.h: the heads HTTP mode writes, without I/O.
 *
 * cynic never forwards a head byte for byte: it writes a new one from the
 * parsed parts (src/common/http_msg.c has validated every byte of them), so
 * what the next hop reads is exactly what cynic judged. On the way:
 *
 *   - hop-by-hop headers stay behind, both ways: Connection and every header
 *     it names, Keep-Alive, TE, Trailer, Upgrade, Proxy-Connection; and
 *     Proxy-Authorization toward the upstream (it was for cynic, if anyone);
 *   - Via: 1.1 cynic is added, both ways;
 *   - the client's address is appended to X-Forwarded-For or Forwarded (the
 *     listener's `forwarded`), earlier values kept in order;
 *   - the request id header is passed through when valid, otherwise made;
 *   - the framing headers (Content-Length, Transfer-Encoding: chunked) pass
 *     as they are: the body that follows is forwarded raw.
 *
 * And the answers cynic makes itself (fail fast, timeouts, bad requests):
 * a status, `Cynic-Answer: <reason>` so that nobody mistakes it for the
 * upstream's, and a small JSON body naming the upstream and the request id.
 *
 * Heads are written into a caller's fixed buffer (a pooled one): nothing here
 * allocates. A head that does not fit is an error (CYNIC_ERANGE), never
 * truncated.
 */
#ifndef CYNIC_PROXY_HTTP_HEAD_H
#define CYNIC_PROXY_HTTP_HEAD_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* One header line as parsed: name and value, neither NUL-terminated. */
typedef struct cynic__http_hfield {
  const char *name, *value;
  size_t nlen, vlen;
} cynic__http_hfield_t;

/* A parsed head. Requests set method and target, responses status and
 * reason; both set minor (0 for HTTP/1.0, 1 for HTTP/1.1) and the fields. */
typedef struct cynic__http_head {
  const char *method, *target, *reason;
  size_t method_len, target_len, reason_len;
  int status;
  int minor;
  const cynic__http_hfield_t *fields;
  size_t nfields;
} cynic__http_head_t;

/* The most Connection options one head may name; more is a bad request (a
 * header list built to make the proxy work, not a real client). */
#define CYNIC__HTTP_MAX_CONN_OPTIONS 16

/* What the Connection headers of a head say. */
typedef struct cynic__http_conn_opts {
  bool close;      /* "close" */
  bool keep_alive; /* "keep-alive" */
  size_t count;    /* names of further hop-by-hop headers */
  struct {
    const char *name;
    size_t len;
  } names[CYNIC__HTTP_MAX_CONN_OPTIONS];
} cynic__http_conn_opts_t;

/* Reads every Connection header of `h` into *o: 0, or CYNIC_EINVAL when it
 * names more than CYNIC__HTTP_MAX_CONN_OPTIONS headers or an option is not a
 * token. */
int cynic__http_conn_opts(const cynic__http_head_t *h, cynic__http_conn_opts_t *o);

/* True when header `name` goes no further than this hop: the fixed set (plus
 * Proxy-Authorization when `to_upstream`) and what `o` names. */
bool cynic__http_hop_by_hop(const char *name, size_t nlen, const cynic__http_conn_opts_t *o,
                            bool to_upstream);

/* A fixed output buffer. */
typedef struct cynic__http_out {
  char *p;
  size_t len, cap;
} cynic__http_out_t;

/* How a request goes to the upstream. */
typedef struct cynic__http_fwd {
  cynic__config_forwarded_t forwarded; /* which header gets the client's address */
  const char *client_ip;               /* text: "192.0.2.1" or "2001:db8::1" */
  const char *request_id_header;       /* its name (the listener's) */
  const char *request_id;              /* the id made for this request when the client's
                                          was absent or invalid; NULL: passed through */
  const cynic__http_conn_opts_t *opts; /* the request's Connection options, read already
                                          (cynic__http_conn_opts); NULL: read here */
} cynic__http_fwd_t;

/* The request head for the upstream, in the client's version (an HTTP/1.0
 * client's request goes on as 1.0, as nginx's proxy does by default, so the
 * upstream never answers it chunked: cynic forwards bodies raw and a 1.0
 * client could not read chunks), from the client's parsed head `h`,
 * appended to `o`. 0, CYNIC_EINVAL (bad Connection header), or CYNIC_ERANGE (no room). */
int cynic__http_write_request(cynic__http_out_t *o, const cynic__http_head_t *h,
                              const cynic__http_fwd_t *f);

/* The response head for the client from the upstream's head `h`. `close`:
 * cynic closes the client connection after this response (adds
 * `Connection: close`); otherwise an HTTP/1.0 client that asked for
 * keep-alive gets `Connection: keep-alive`. 0, CYNIC_EINVAL, CYNIC_ERANGE. */
int cynic__http_write_response(cynic__http_out_t *o, const cynic__http_head_t *h, bool close,
                               int client_minor);

/* A whole answer cynic makes itself: status line, Content-Type JSON,
 * Content-Length, `Cynic-Answer: <reason>`, `Retry-After` when
 * retry_after_s > 0, `Connection: close` when `close`, the request id header
 * when known, and the body {"error": reason, "upstream": ..., "request_id":
 * ...} (upstream and request id omitted when NULL). 0 or CYNIC_ERANGE. */
typedef struct cynic__http_answer {
  int status;
  const char *reason;            /* snake_case, static: "breaker_open" */
  const char *upstream;          /* NULL: before an upstream is known */
  const char *request_id_header; /* NULL with request_id NULL */
  const char *request_id;
  uint64_t retry_after_s; /* 0: none */
  bool close;
  bool head_only; /* the answer to a HEAD request: the head alone (Content-Length
                     says what the body would be, RFC 9110 9.3.2) */
} cynic__http_answer_t;
int cynic__http_write_answer(cynic__http_out_t *o, const cynic__http_answer_t *a);

/* A request id from the client is kept when it is 1..128 visible ASCII
 * characters (no space, no control, no byte above 0x7e). */
bool cynic__http_request_id_valid(const char *v, size_t len);

/* A new request id, 32 lowercase hex digits and a NUL into out[33]: a
 * per-process random prefix (read once) and a counter, so unique within and
 * across processes without a system call per request. */
void cynic__http_request_id_make(char out[33]);

/* The client's address `ip` (IPv6, IPv4 v4-mapped) as the text forwarded
 * headers carry, as inet_ntop writes it: "192.0.2.7" for a v4-mapped one,
 * "2001:db8::1" otherwise. out is NUL-terminated. */
void cynic__http_client_ip(const uint8_t ip[16], char out[INET6_ADDRSTRLEN]);

#endif /* CYNIC_PROXY_HTTP_HEAD_H */
