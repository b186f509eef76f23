/* http.c: llhttp wrapper with limits, and a response writer. */
#include "http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cynic/common.h"

static int fail(cynic__http_parser_t *p, int status, const char *reason) {
  p->error_status = status;
  p->error_reason = reason;
  return CYNIC_EINVAL;
}

/* The decoded body, as llhttp validates it (cynic__http_msg's body hook). */
static int on_body(cynic__http_msg_t *m, const char *at, size_t n) {
  cynic__http_parser_t *p = m->data;
  if (p->body.len + n > p->limits.max_body)
    return cynic__http_msg_fail(m, 413, "request body too large");
  int err = cynic__buf_append(&p->body, at, n);
  if (err == CYNIC_ENOMEM) /* the server is short, not the request wrong: retry */
    return cynic__http_msg_fail(m, 503, "out of memory");
  return err != 0 ? cynic__http_msg_fail(m, 413, "request body too large") : 0;
}

void cynic__http_parser_init(cynic__http_parser_t *p, const cynic__http_limits_t *limits) {
  memset(p, 0, sizeof(*p));
  p->limits = *limits;
  cynic__buf_init(&p->url, limits->max_url + 1);
  cynic__buf_init(&p->body, limits->max_body + 1);
  /* The store holds the target and the field names and values; the raw head
   * adds the request line's words, ": ", CRLFs and optional whitespace, which
   * max_head allows for generously: the precise bounds are max_url (414) and
   * max_header_bytes (431), checked on the parts. */
  size_t parts = limits->max_url + limits->max_header_bytes;
  cynic__http_msg_limits_t ml = {
      .max_head = parts + limits->max_header_bytes + 8 * CYNIC_HTTP_MAX_FIELDS + 64,
      .max_fields = CYNIC_HTTP_MAX_FIELDS,
      .max_target = limits->max_url,
  };
  cynic__http_msg_init(&p->msg, CYNIC__HTTP_REQUEST, &ml);
  /* the field index, then room for the parts (the raw head's own bound is
   * max_head, checked by the parser) */
  p->store_cap = ml.max_fields * sizeof(cynic__http_field_spans_t) + parts;
  p->msg.on_body = on_body;
  p->msg.data = p;
}

void cynic__http_parser_free(cynic__http_parser_t *p) {
  cynic__buf_free(&p->url);
  cynic__buf_free(&p->body);
  free(p->store);
  p->store = NULL;
}

/* The head is complete: the API's own limits and refusals. */
static int head_done(cynic__http_parser_t *p) {
  cynic__http_msg_t *m = &p->msg;
  if (m->upgrade)
    return fail(p, 400, "protocol upgrade not supported");
  if (m->body == CYNIC__HTTP_BODY_LENGTH && m->content_length > p->limits.max_body)
    return fail(p, 413, "request body too large"); /* before reading any of it */
  size_t index = m->limits.max_fields * sizeof(cynic__http_field_spans_t);
  if (m->used - index - m->target.len > p->limits.max_header_bytes)
    return fail(p, 431, "request header fields too large");
  cynic__buf_reset(&p->url);
  if (cynic__buf_append(&p->url, cynic__http_msg_at(m, m->target), m->target.len) != 0)
    return fail(p, 503, "out of memory");
  p->expect_continue = m->expect_continue;
  return 0;
}

int cynic__http_parser_feed(cynic__http_parser_t *p, const char *data, size_t len,
                            size_t *consumed) {
  *consumed = 0;
  if (p->error_status)
    return CYNIC_EINVAL;
  if (p->complete)
    return CYNIC_HTTP_READY;
  if (len == 0)
    return CYNIC_HTTP_INCOMPLETE;
  if (p->store == NULL) {
    if ((p->store = malloc(p->store_cap)) == NULL)
      return fail(p, 503, "out of memory");
    cynic__http_msg_begin(&p->msg, p->store, p->store_cap);
  }
  size_t off = 0;
  for (;;) {
    size_t used = 0;
    int r = cynic__http_msg_feed(&p->msg, data + off, len - off, &used);
    off += used;
    p->started = p->started || p->msg.started;
    if (r < 0) {
      const char *why = p->msg.error_reason;
      if (p->msg.error_status == 431 && strcmp(why, "head too large") == 0)
        why = "request header fields too large";
      return fail(p, p->msg.error_status, why);
    }
    if (r == CYNIC__HTTP_HEAD) {
      if (head_done(p))
        return CYNIC_EINVAL;
      continue; /* a message without a body is DONE at once */
    }
    if (r == CYNIC__HTTP_DONE) {
      p->complete = true;
      *consumed = off;
      return CYNIC_HTTP_READY;
    }
    *consumed = off; /* MORE or BODY: all of it taken */
    return CYNIC_HTTP_INCOMPLETE;
  }
}

void cynic__http_parser_next(cynic__http_parser_t *p) {
  cynic__buf_reset(&p->url);
  cynic__buf_reset(&p->body);
  p->started = false;
  p->complete = false;
  p->expect_continue = false;
  cynic__http_msg_next(&p->msg);
  /* An idle keep-alive connection holds no head store: the next request's
   * first byte takes one again (a malloc per request; API traffic is light). */
  free(p->store);
  p->store = NULL;
}

int cynic__http_parser_finish(cynic__http_parser_t *p) {
  if (!p->started || p->complete)
    return 0;
  return cynic__http_msg_eof(&p->msg) == CYNIC__HTTP_DONE ? 0 : CYNIC_EINVAL;
}

const char *cynic__http_method(const cynic__http_parser_t *p) {
  return cynic__http_msg_method(&p->msg);
}

bool cynic__http_keep_alive(const cynic__http_parser_t *p) {
  return p->msg.keep_alive;
}

const char *cynic__http_header(const cynic__http_parser_t *p, const char *name, size_t *len) {
  return cynic__http_msg_find(&p->msg, name, len);
}

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

int cynic__http_pct_decode(const char *src, size_t n, char *dst, size_t dstlen) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    char c = src[i];
    if (c == '%') {
      if (i + 2 >= n)
        return CYNIC_EINVAL;
      int hi = hexval(src[i + 1]), lo = hexval(src[i + 2]);
      if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
        return CYNIC_EINVAL;
      c = (char)(hi * 16 + lo);
      i += 2;
    }
    if (o + 1 >= dstlen)
      return CYNIC_EINVAL;
    dst[o++] = c;
  }
  if (dstlen == 0)
    return CYNIC_EINVAL;
  dst[o] = '\0';
  return 0;
}

const char *cynic__http_reason(int status) {
  switch (status) {
  case 200:
    return "OK";
  case 201:
    return "Created";
  case 202:
    return "Accepted";
  case 204:
    return "No Content";
  case 400:
    return "Bad Request";
  case 401:
    return "Unauthorized";
  case 403:
    return "Forbidden";
  case 404:
    return "Not Found";
  case 405:
    return "Method Not Allowed";
  case 408:
    return "Request Timeout";
  case 409:
    return "Conflict";
  case 413:
    return "Payload Too Large";
  case 414:
    return "URI Too Long";
  case 429:
    return "Too Many Requests";
  case 431:
    return "Request Header Fields Too Large";
  case 500:
    return "Internal Server Error";
  case 501:
    return "Not Implemented";
  case 502:
    return "Bad Gateway";
  case 503:
    return "Service Unavailable";
  case 504:
    return "Gateway Timeout";
  case 507:
    return "Insufficient Storage";
  default:
    return "Unknown";
  }
}

int cynic__http_response(cynic__buf_t *out, int status, const char *content_type, const char *body,
                         size_t len, bool keep_alive) {
  return cynic__http_response_headers(out, status, content_type, NULL, body, len, keep_alive);
}

/* The status line, Content-Type (omitted if NULL) and the handler's own
 * header lines: the start every head shares. */
static int head_start(cynic__buf_t *out, int status, const char *content_type,
                      const char *headers) {
  int err = cynic__buf_printf(out, "HTTP/1.1 %d %s\r\n", status, cynic__http_reason(status));
  if (!err && content_type != NULL)
    err = cynic__buf_printf(out, "Content-Type: %s\r\n", content_type);
  if (!err && headers != NULL)
    err = cynic__buf_puts(out, headers);
  return err;
}

/* Connection: close when !keep_alive, and the blank line. */
static int head_end(cynic__buf_t *out, bool keep_alive) {
  int err = keep_alive ? 0 : cynic__buf_puts(out, "Connection: close\r\n");
  return err ? err : cynic__buf_puts(out, "\r\n");
}

/* On failure nothing of the answer stays in `out`. */
static int undo(cynic__buf_t *out, size_t before, int err) {
  if (err) {
    out->len = before;
    if (out->data)
      out->data[before] = '\0';
  }
  return err;
}

int cynic__http_response_headers(cynic__buf_t *out, int status, const char *content_type,
                                 const char *headers, const char *body, size_t len,
                                 bool keep_alive) {
  size_t before = out->len;
  int err = head_start(out, status, content_type, headers);
  bool no_body = status == 204 || status == 304;
  if (!err && !no_body)
    err = cynic__buf_printf(out, "Content-Length: %zu\r\n", len);
  if (!err)
    err = head_end(out, keep_alive);
  if (!err && !no_body && len > 0)
    err = cynic__buf_append(out, body, len);
  return undo(out, before, err);
}

int cynic__http_response_open(cynic__buf_t *out, int status, const char *content_type,
                              const char *headers, bool chunked, bool keep_alive) {
  size_t before = out->len;
  int err = head_start(out, status, content_type, headers);
  if (!err && chunked)
    err = cynic__buf_puts(out, "Transfer-Encoding: chunked\r\n");
  if (!err)
    err = head_end(out, keep_alive && chunked);
  return undo(out, before, err);
}
