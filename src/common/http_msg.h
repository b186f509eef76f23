/*
 * http_msg.h: one direction of an HTTP/1.1 connection, parsed strictly and
 * streamed: llhttp (compiled with LLHTTP_STRICT_MODE=1, no lenient flag) finds
 * the framing, and cynic's own checks refuse what llhttp still tolerates and
 * what a proxy must not pass on (request smuggling, response splitting). This
 * is the one llhttp integration of src/common: the API parser (http.h) and
 * the proxy's HTTP mode both sit on it. It is a wrapper, never a hand-written
 * parser: every byte is first accepted by llhttp.
 *
 * Contract
 *  - One cynic__http_msg_t per connection direction (requests from a client,
 *    responses from an upstream). No allocation: the caller hands a head store
 *    to cynic__http_msg_begin before each message and gets it back (untouched
 *    by the parser) once it called cynic__http_msg_next or gave up; the store
 *    holds the field index (max_fields entries, at its start) and receives the
 *    target, the reason phrase and the header names and values, which the
 *    message indexes by offset. A store of cynic__http_msg_store_size(limits)
 *    bytes never fills up before the head is too large anyway.
 *  - cynic__http_msg_feed parses bytes in the order they arrived, any split:
 *      CYNIC__HTTP_HEAD  the head is complete after *consumed bytes (those are
 *                        head bytes); inspect the message. Feed the rest.
 *      CYNIC__HTTP_BODY  all *consumed bytes (== len) are body bytes or body
 *                        framing (chunk sizes and extensions, CRLFs,
 *                        trailers), validated by llhttp and cynic: forward them
 *                        raw. Need more.
 *      CYNIC__HTTP_DONE  the message ended after *consumed bytes (the last of
 *                        its body, 0 for a message without a body). Call
 *                        cynic__http_msg_next before the next message.
 *      CYNIC_EINVAL      refused: m->error_status (400, 414, 431 for a
 *                        request; 502 for a response, which the proxy answers
 *                        as "bad framing") and m->error_reason say why: static
 *                        text naming the rule, cynic's ("obs-fold", "duplicate
 *                        Host") or llhttp's where llhttp refuses first
 *                        ("Duplicate Content-Length"). Nothing is consumed;
 *                        the connection must close; every later feed fails.
 *      CYNIC__HTTP_MORE  the head is incomplete: all len bytes consumed (they
 *                        are head bytes, copied as needed). Need more.
 *    Body bytes are never
 *    copied; an optional body callback sees the decoded body (the API parser
 *    buffers it; the proxy forwards raw bytes and sets none).
 *  - Upgrade and CONNECT requests (and 101 responses, 2xx to CONNECT) stop at
 *    the end of the head: HEAD, with m->upgrade set; what follows is not
 *    HTTP and every later feed fails ("protocol switched").
 *  - Responses: call cynic__http_msg_expect with the request's method before
 *    each response: a response to HEAD, 1xx, 204 and 304 has no body
 *    (cynic__http_response_has_body). A 1xx other than 101 is a message of its
 *    own (HEAD, then DONE with 0 bytes); the final response of the same
 *    request follows after cynic__http_msg_next, which keeps the expectation.
 *    A response with neither Content-Length nor chunked ends at the peer's
 *    EOF (CYNIC__HTTP_BODY_UNTIL_EOF): cynic__http_msg_eof says DONE.
 *
 * What is refused, beyond llhttp's strict mode (the table in
 * tests/unit/common/test_http_msg.c probes each against the real llhttp):
 * Content-Length with Transfer-Encoding; a duplicate or malformed
 * Content-Length; any Transfer-Encoding but one final "chunked" (one field,
 * one element), and any in HTTP/1.0; HTTP versions other than 1.0 and 1.1;
 * obs-fold, bare CR, bare LF and control bytes other than HTAB anywhere in the
 * head (HTAB and obs-text only in values); empty header names (llhttp's
 * strict mode refuses every other name that is not a token, whitespace
 * before the colon included); chunk extensions whose name or
 * value is not a token (llhttp itself refuses quoted-string values, so they
 * are refused); on requests, a missing Host in HTTP/1.1, two Host fields, an
 * empty Host, a Host with userinfo or not host[:port], and an absolute-form
 * target whose authority is not the Host (case-insensitive).
 *
 * Not thread safe.
 */
#ifndef CYNIC_COMMON_HTTP_MSG_H
#define CYNIC_COMMON_HTTP_MSG_H

#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CYNIC__HTTP_MSG_MAX_FIELDS 100 /* header fields per head, hard cap */

enum { CYNIC__HTTP_REQUEST = 1, CYNIC__HTTP_RESPONSE = 2 };

/* cynic__http_msg_feed's answers (CYNIC_EINVAL, negative, on refusal). */
enum {
  CYNIC__HTTP_MORE = 0, /* head incomplete, all bytes consumed */
  CYNIC__HTTP_HEAD = 1,
  CYNIC__HTTP_BODY = 2,
  CYNIC__HTTP_DONE = 3,
};

/* How the body of the message is framed (known after HEAD). */
enum {
  CYNIC__HTTP_BODY_NONE = 0,
  CYNIC__HTTP_BODY_LENGTH = 1,    /* content_length bytes (> 0) */
  CYNIC__HTTP_BODY_CHUNKED = 2,   /* Transfer-Encoding: chunked */
  CYNIC__HTTP_BODY_UNTIL_EOF = 3, /* responses only: until the peer closes */
};

typedef struct cynic__http_msg_limits {
  size_t max_head;   /* start line + header lines, CRLFs included (431/502 past it);
                      * also bounds the trailer section of a chunked body */
  size_t max_fields; /* header fields, <= CYNIC__HTTP_MSG_MAX_FIELDS; and trailers */
  size_t max_target; /* request-target bytes (414 past it); 0: max_head only */
} cynic__http_msg_limits_t;

typedef struct cynic__http_span {
  uint32_t off, len; /* into the head store */
} cynic__http_span_t;

/* One header field's name and value. */
typedef struct cynic__http_field_spans {
  cynic__http_span_t name, value;
} cynic__http_field_spans_t;

typedef struct cynic__http_msg cynic__http_msg_t;

/* Sees the decoded body bytes (no chunk framing) of the current message as
 * llhttp validates them. Non-zero refuses the message: set the reason with
 * cynic__http_msg_fail first. */
typedef int (*cynic__http_body_cb)(cynic__http_msg_t *m, const char *at, size_t n);

struct cynic__http_msg {
  llhttp_t llhttp;
  int kind; /* CYNIC__HTTP_REQUEST or _RESPONSE */
  cynic__http_msg_limits_t limits;
  cynic__http_body_cb on_body; /* NULL: none */
  void *data;                  /* the caller's, for on_body */
  /* The head store (the caller's) and how much of it holds parts. */
  char *store;
  size_t cap, used;
  /* Parsing state. */
  int phase;            /* internal: where the message is (http_msg.c) */
  bool started;         /* a byte of this message was parsed */
  size_t head_bytes;    /* raw head bytes parsed before this feed */
  const char *feed_at;  /* the current feed's first byte */
  char last_byte;       /* the head's last byte so far (CR, LF checks across feeds) */
  bool in_name;         /* a header name is under way (a data callback came) */
  bool in_trailers;     /* header callbacks now are trailers */
  size_t trailer_bytes; /* trailer names and values so far */
  size_t ntrailers;
  size_t trailer_name_len;        /* the current trailer's name so far */
  const char *trailers_from;      /* the trailer section began: raw check from here in this feed */
  size_t ext_piece;               /* the current chunk extension name or value so far */
  size_t ext_len;                 /* all extension bytes of the current chunk header */
  llhttp_method_t request_method; /* responses: what the request was */
  bool expect_kept;               /* responses: expectation set for this message */
  /* After HEAD. */
  llhttp_method_t method; /* requests */
  int status;             /* responses */
  int version_major, version_minor;
  cynic__http_span_t target; /* requests */
  cynic__http_span_t reason; /* responses */
  bool keep_alive;           /* llhttp_should_keep_alive after the head */
  int body;                  /* CYNIC__HTTP_BODY_* */
  uint64_t content_length;   /* for CYNIC__HTTP_BODY_LENGTH */
  bool expect_continue;      /* request: Expect: 100-continue */
  bool upgrade;              /* upgrade or CONNECT (request), 101 or CONNECT 2xx (response) */
  bool interim;              /* a 1xx other than 101 */
  bool head_request;         /* request: its request line (complete: a header or the end
                                of the head follows) says HEAD in HTTP/1.x, so a refusal
                                of the rest of the head can leave out the answer's body */
  size_t nfields;
  /* The field index: max_fields entries at the start of the head store
   * (cynic__http_msg_begin), not here, so that a connection between messages
   * holds neither the parts nor their index. */
  cynic__http_field_spans_t *fields;
  /* On refusal. */
  int error_status;
  const char *error_reason;
};

/*
 * Ready m for a connection direction (kind: CYNIC__HTTP_REQUEST or
 * _RESPONSE). limits->max_fields above the hard cap is clamped to it. Owns
 * nothing: no _free.
 */
void cynic__http_msg_init(cynic__http_msg_t *m, int kind, const cynic__http_msg_limits_t *limits);
/* The head store a message needs: room for the field index and for every
 * part of a head of limits->max_head bytes. */
size_t cynic__http_msg_store_size(const cynic__http_msg_limits_t *limits);
/*
 * Hand the store for the next message (before its first byte is fed; and
 * after every cynic__http_msg_next). The store stays the caller's; the parser
 * writes into it until cynic__http_msg_next. CYNIC_EINVAL if store is NULL,
 * not aligned for a uint32_t, or too small for the field index (a smaller
 * store than cynic__http_msg_store_size may refuse a head as too large).
 */
int cynic__http_msg_begin(cynic__http_msg_t *m, char *store, size_t cap);
/* Parse up to len bytes; see the contract above. */
int cynic__http_msg_feed(cynic__http_msg_t *m, const char *data, size_t len, size_t *consumed);
/*
 * The peer closed its side. CYNIC__HTTP_DONE if that ends an UNTIL_EOF body;
 * 0 if no byte of a message had come; CYNIC_EINVAL when it cut a message
 * short (error_reason says so).
 */
int cynic__http_msg_eof(cynic__http_msg_t *m);
/* Get ready for the next message on the connection (after DONE). The store
 * goes back to the caller; hand one again with cynic__http_msg_begin. */
void cynic__http_msg_next(cynic__http_msg_t *m);
/* Responses: the next response answers a request with this method. */
void cynic__http_msg_expect(cynic__http_msg_t *m, llhttp_method_t request_method);
/* Refuse the message with status and a static reason (for a body callback).
 * Returns -1 for the callback to return. */
int cynic__http_msg_fail(cynic__http_msg_t *m, int status, const char *reason);

/* "GET", ...: the request's method. */
const char *cynic__http_msg_method(const cynic__http_msg_t *m);
/* The store bytes of a span (not NUL-terminated). */
static inline const char *cynic__http_msg_at(const cynic__http_msg_t *m, cynic__http_span_t s) {
  return m->store + s.off;
}

/* The header iterator: fields in order, names as sent (no trailers). */
static inline size_t cynic__http_msg_nfields(const cynic__http_msg_t *m) {
  return m->nfields;
}
static inline void cynic__http_msg_field(const cynic__http_msg_t *m, size_t i, const char **name,
                                         size_t *nlen, const char **value, size_t *vlen) {
  *name = m->store + m->fields[i].name.off;
  *nlen = m->fields[i].name.len;
  *value = m->store + m->fields[i].value.off;
  *vlen = m->fields[i].value.len;
}
/* The first field named `name` (case-insensitive): its value (not
 * NUL-terminated, trailing whitespace removed) and length; NULL if none. */
const char *cynic__http_msg_find(const cynic__http_msg_t *m, const char *name, size_t *vlen);
/* How many fields are named `name` (case-insensitive). */
size_t cynic__http_msg_count(const cynic__http_msg_t *m, const char *name);

/* The no-body rule shared with the harness's gate: a response to HEAD, any
 * 1xx, 204 and 304 have no body whatever their headers say (RFC 9112 6.3). */
bool cynic__http_response_has_body(llhttp_method_t request_method, int status);
/* A 1xx but 101: it answers no request on its own; the final one follows. */
static inline bool cynic__http_status_interim(int status) {
  return status >= 100 && status < 200 && status != 101;
}

/* Checks over parsed parts (http_check.c; exposed for the unit tests). */
bool cynic__http_is_token(const char *s, size_t n);
/* host[:port]: reg-name, IPv4 or [IPv6], port 1..5 digits <= 65535. NULL if
 * fine, else the rule it breaks. */
const char *cynic__http_check_host(const char *s, size_t n);
/* Content-Length: 1*DIGIT, no sign, space or list, no overflow. */
bool cynic__http_parse_length(const char *s, size_t n, uint64_t *out);

#endif
