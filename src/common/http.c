/* http.c: llhttp wrapper with limits, and a response writer. */
#include "http.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cynic/common.h"

static cynic__http_parser_t *owner(llhttp_t *h) {
  return (cynic__http_parser_t *)((char *)h - offsetof(cynic__http_parser_t, llhttp));
}

static int fail(cynic__http_parser_t *p, int status, const char *reason) {
  p->error_status = status;
  p->error_reason = reason;
  return -1;
}

/* Appends a piece of the request: an over-limit piece fails with `status`
 * and `reason`, a failed allocation with 503 (the request may be fine: it is
 * the server that is short, and the client may retry). */
static int take(cynic__http_parser_t *p, cynic__buf_t *b, size_t limit, const char *at, size_t n,
                int status, const char *reason) {
  if (b->len + n > limit)
    return fail(p, status, reason);
  int err = cynic__buf_append(b, at, n);
  if (err == CYNIC_ENOMEM)
    return fail(p, 503, "out of memory");
  return err != 0 ? fail(p, status, reason) : 0;
}

static int on_message_begin(llhttp_t *h) {
  owner(h)->started = true;
  return 0;
}

static int on_url(llhttp_t *h, const char *at, size_t n) {
  cynic__http_parser_t *p = owner(h);
  return take(p, &p->url, p->limits.max_url, at, n, 414, "request target too long");
}

static int header_bytes(cynic__http_parser_t *p, const char *at, size_t n) {
  size_t limit = p->limits.max_header_bytes < UINT32_MAX ? p->limits.max_header_bytes : UINT32_MAX;
  return take(p, &p->hdrs, limit, at, n, 431, "request header fields too large");
}

static int on_header_field(llhttp_t *h, const char *at, size_t n) {
  cynic__http_parser_t *p = owner(h);
  if (p->nfields == 0 || p->in_value) {
    if (p->nfields == CYNIC_HTTP_MAX_FIELDS)
      return fail(p, 431, "too many header fields");
    cynic__http_field_t *f = &p->fields[p->nfields++];
    f->name_off = (uint32_t)p->hdrs.len;
    f->name_len = 0;
    f->value_off = (uint32_t)p->hdrs.len;
    f->value_len = 0;
    p->in_value = false;
  }
  if (header_bytes(p, at, n))
    return -1;
  p->fields[p->nfields - 1].name_len += (uint32_t)n;
  p->fields[p->nfields - 1].value_off = (uint32_t)p->hdrs.len;
  return 0;
}

static int on_header_value(llhttp_t *h, const char *at, size_t n) {
  cynic__http_parser_t *p = owner(h);
  if (p->nfields == 0)
    return fail(p, 400, "header value without a name");
  p->in_value = true;
  if (header_bytes(p, at, n))
    return -1;
  p->fields[p->nfields - 1].value_len += (uint32_t)n;
  return 0;
}

static int on_headers_complete(llhttp_t *h) {
  cynic__http_parser_t *p = owner(h);
  if (h->upgrade)
    return fail(p, 400, "protocol upgrade not supported");
  /* Refuse an announced oversized body before reading any of it. */
  if ((h->flags & F_CONTENT_LENGTH) && h->content_length > p->limits.max_body)
    return fail(p, 413, "request body too large");
  size_t n;
  const char *expect = cynic__http_header(p, "Expect", &n);
  if (expect != NULL && n == 12 && strncasecmp(expect, "100-continue", 12) == 0)
    p->expect_continue = true;
  return 0;
}

static int on_body(llhttp_t *h, const char *at, size_t n) {
  cynic__http_parser_t *p = owner(h);
  return take(p, &p->body, p->limits.max_body, at, n, 413, "request body too large");
}

static int on_message_complete(llhttp_t *h) {
  cynic__http_parser_t *p = owner(h);
  p->complete = true;
  return HPE_PAUSED;
}

void cynic__http_parser_init(cynic__http_parser_t *p, const cynic__http_limits_t *limits) {
  memset(p, 0, sizeof(*p));
  p->limits = *limits;
  cynic__buf_init(&p->url, limits->max_url + 1);
  cynic__buf_init(&p->hdrs, limits->max_header_bytes + 1);
  cynic__buf_init(&p->body, limits->max_body + 1);
  llhttp_settings_init(&p->settings);
  p->settings.on_message_begin = on_message_begin;
  p->settings.on_url = on_url;
  p->settings.on_header_field = on_header_field;
  p->settings.on_header_value = on_header_value;
  p->settings.on_headers_complete = on_headers_complete;
  p->settings.on_body = on_body;
  p->settings.on_message_complete = on_message_complete;
  llhttp_init(&p->llhttp, HTTP_REQUEST, &p->settings);
}

void cynic__http_parser_free(cynic__http_parser_t *p) {
  cynic__buf_free(&p->url);
  cynic__buf_free(&p->hdrs);
  cynic__buf_free(&p->body);
}

int cynic__http_parser_feed(cynic__http_parser_t *p, const char *data, size_t len,
                            size_t *consumed) {
  *consumed = 0;
  if (p->error_status)
    return CYNIC_EINVAL;
  if (len == 0)
    return CYNIC_HTTP_INCOMPLETE;
  llhttp_errno_t e = llhttp_execute(&p->llhttp, data, len);
  if (e == HPE_OK) {
    *consumed = len;
    return CYNIC_HTTP_INCOMPLETE;
  }
  if (e == HPE_PAUSED && p->complete) {
    const char *pos = llhttp_get_error_pos(&p->llhttp);
    *consumed = pos != NULL && pos >= data && pos <= data + len ? (size_t)(pos - data) : len;
    return CYNIC_HTTP_READY;
  }
  if (!p->error_status) {
    p->error_status = 400;
    p->error_reason = "malformed HTTP request";
  }
  return CYNIC_EINVAL;
}

void cynic__http_parser_next(cynic__http_parser_t *p) {
  cynic__buf_reset(&p->url);
  cynic__buf_reset(&p->hdrs);
  cynic__buf_reset(&p->body);
  p->nfields = 0;
  p->in_value = false;
  p->started = false;
  p->complete = false;
  p->expect_continue = false;
  llhttp_resume(&p->llhttp);
}

int cynic__http_parser_finish(cynic__http_parser_t *p) {
  if (!p->started || p->complete)
    return 0;
  if (llhttp_finish(&p->llhttp) != HPE_OK && !p->complete)
    return CYNIC_EINVAL;
  return p->complete ? 0 : CYNIC_EINVAL;
}

const char *cynic__http_method(const cynic__http_parser_t *p) {
  return llhttp_method_name((llhttp_method_t)p->llhttp.method);
}

bool cynic__http_keep_alive(const cynic__http_parser_t *p) {
  return llhttp_should_keep_alive(&p->llhttp) != 0;
}

const char *cynic__http_header(const cynic__http_parser_t *p, const char *name, size_t *len) {
  size_t n = strlen(name);
  for (size_t i = 0; i < p->nfields; i++) {
    const cynic__http_field_t *f = &p->fields[i];
    if (f->name_len == n && strncasecmp(p->hdrs.data + f->name_off, name, n) == 0) {
      *len = f->value_len;
      return p->hdrs.data + f->value_off;
    }
  }
  return NULL;
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
  case 431:
    return "Request Header Fields Too Large";
  case 500:
    return "Internal Server Error";
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

int cynic__http_response_headers(cynic__buf_t *out, int status, const char *content_type,
                                 const char *headers, const char *body, size_t len,
                                 bool keep_alive) {
  size_t before = out->len;
  int err = cynic__buf_printf(out, "HTTP/1.1 %d %s\r\n", status, cynic__http_reason(status));
  if (!err && content_type != NULL)
    err = cynic__buf_printf(out, "Content-Type: %s\r\n", content_type);
  if (!err && headers != NULL)
    err = cynic__buf_puts(out, headers);
  bool no_body = status == 204 || status == 304;
  if (!err && !no_body)
    err = cynic__buf_printf(out, "Content-Length: %zu\r\n", len);
  if (!err && !keep_alive)
    err = cynic__buf_puts(out, "Connection: close\r\n");
  if (!err)
    err = cynic__buf_puts(out, "\r\n");
  if (!err && !no_body && len > 0)
    err = cynic__buf_append(out, body, len);
  if (err) {
    out->len = before;
    if (out->data)
      out->data[before] = '\0';
  }
  return err;
}
