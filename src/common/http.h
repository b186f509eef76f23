/*
 * http.h: HTTP/1.1 server side, without I/O: a request parser for small JSON
 * APIs (the admin listener, the harness API) with hard limits on every part of
 * a request, and a response writer. It sits on cynic__http_msg (http_msg.h),
 * the one llhttp integration: the same strict checks (duplicate or missing
 * Host, obs-fold, Content-Length with Transfer-Encoding, ... all 400), plus
 * the buffering of the target, the header fields and the whole body.
 *
 * Feed bytes as they arrive; the parser stops after each complete request so
 * pipelined requests are answered one at a time, in order.
 *
 * Not thread safe; one parser per connection.
 */
#ifndef CYNIC_COMMON_HTTP_H
#define CYNIC_COMMON_HTTP_H

#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "http_msg.h"

#define CYNIC_HTTP_MAX_FIELDS 64 /* header lines per request, hard */

typedef struct cynic__http_limits {
  size_t max_url;          /* request-target bytes (414 past it) */
  size_t max_header_bytes; /* all header names + values (431 past it) */
  size_t max_body;         /* body bytes (413 past it) */
} cynic__http_limits_t;

typedef struct cynic__http_parser {
  cynic__http_msg_t msg; /* the strict parser; its fields are valid once READY */
  cynic__http_limits_t limits;
  char *store; /* msg's head store (max_url + max_header_bytes): taken at a request's
                * first byte, freed when it is answered (cynic__http_parser_next) */
  size_t store_cap;
  cynic__buf_t url; /* the request target, NUL-terminated */
  cynic__buf_t body;
  bool started;             /* a request has begun (bytes seen since the last one) */
  bool complete;            /* a whole request is parsed and waiting to be answered */
  bool expect_continue;     /* the head asked for "100 Continue" before the body */
  int error_status;         /* set when feed fails: 400, 413, 414, 431, 503 */
  const char *error_reason; /* static text for that failure */
} cynic__http_parser_t;

enum {
  CYNIC_HTTP_INCOMPLETE = 0, /* all bytes consumed, need more */
  CYNIC_HTTP_READY = 1,      /* a request is complete; see *consumed */
};

/* Initialise; the parser owns no memory until bytes arrive. */
void cynic__http_parser_init(cynic__http_parser_t *p, const cynic__http_limits_t *limits);
/* Free the buffers. */
void cynic__http_parser_free(cynic__http_parser_t *p);
/*
 * Parse up to len bytes. Returns CYNIC_HTTP_INCOMPLETE, CYNIC_HTTP_READY (a
 * request is complete after *consumed bytes: answer it, call
 * cynic__http_parser_next, feed the rest), or CYNIC_EINVAL when the input is
 * not acceptable HTTP (p->error_status and p->error_reason say why; the
 * connection must be answered and closed).
 */
int cynic__http_parser_feed(cynic__http_parser_t *p, const char *data, size_t len,
                            size_t *consumed);
/* Forget the answered request and get ready for the next one. */
void cynic__http_parser_next(cynic__http_parser_t *p);
/* Tell the parser the peer closed; CYNIC_EINVAL if that cut a request short. */
int cynic__http_parser_finish(cynic__http_parser_t *p);

/* Accessors for a READY request. */
const char *cynic__http_method(const cynic__http_parser_t *p); /* "GET", ... */
bool cynic__http_keep_alive(const cynic__http_parser_t *p);
/* The first header named `name` (case-insensitive); NULL if absent. The
 * value is not NUL-terminated: *len is its length. */
const char *cynic__http_header(const cynic__http_parser_t *p, const char *name, size_t *len);

/* Percent-decode src[0..n) into dst (NUL-terminated). CYNIC_EINVAL on a bad
 * escape, an encoded NUL, or if dst is too small. */
int cynic__http_pct_decode(const char *src, size_t n, char *dst, size_t dstlen);

/* The standard reason phrase ("Not Found"); "Unknown" if none. */
const char *cynic__http_reason(int status);
/*
 * Append a complete response to `out`: status line, Content-Type (omitted if
 * NULL), Content-Length (omitted for 204 and 304), Connection: close when
 * !keep_alive, then the body. 0, CYNIC_ERANGE or CYNIC_ENOMEM.
 */
int cynic__http_response(cynic__buf_t *out, int status, const char *content_type, const char *body,
                         size_t len, bool keep_alive);
/* As cynic__http_response, with `headers` (NULL, or complete header lines, each
 * ending in CRLF: "Allow: GET\r\n") written after Content-Type. */
int cynic__http_response_headers(cynic__buf_t *out, int status, const char *content_type,
                                 const char *headers, const char *body, size_t len,
                                 bool keep_alive);
/*
 * Append only the head of an answer whose body follows it, as written by
 * cynic__http_response_headers but without Content-Length: framed with
 * "Transfer-Encoding: chunked" when `chunked`, else delimited by the close
 * (HTTP/1.0; Connection: close whatever keep_alive says). 0, CYNIC_ERANGE or
 * CYNIC_ENOMEM, and nothing appended then.
 */
int cynic__http_response_open(cynic__buf_t *out, int status, const char *content_type,
                              const char *headers, bool chunked, bool keep_alive);

#endif
