/* httpd.c: libuv glue for the HTTP/1.1 JSON API server. */
#include "httpd.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "cynic/common.h"
#include "json.h"
#include "shed.h"

struct cynic__httpd_conn {
  uv_tcp_t tcp;
  uv_timer_t timer;
  cynic__httpd_t *server;
  cynic__httpd_conn_t *prev, *next;
  cynic__http_parser_t parser;
  size_t pending_write; /* bytes handed to uv_write and not yet written */
  int open_handles;
  bool reading;
  bool closing;
  bool close_after_write;          /* answer sent with Connection: close */
  bool lingering;                  /* answered and shut down: discarding input until EOF */
  bool continue_sent;              /* "100 Continue" already sent for this request */
  cynic__httpd_pending_t *pending; /* the current request's deferred answer */
  cynic__httpd_stream_t *stream;   /* a streamed answer: the connection is its alone */
  char *stash;                     /* bytes read after the request in flight (<= one read) */
  size_t stash_len, stash_off;     /* stash[stash_off..stash_len) not parsed yet */
  bool request_ready;              /* a parsed request waits in the work queue for its answer */
  bool queued;                     /* on the server's work queue */
  cynic__httpd_conn_t *work_next;
  /* A produced body in progress (cynic__httpd_produce_cb). */
  cynic__httpd_produce_cb produce;
  void (*produce_free)(void *arg);
  void *produce_arg;
  bool chunked;     /* slices are framed as chunks (HTTP/1.1) */
  bool keep;        /* keep the connection after the produced body */
  uint64_t last_io; /* uv_now of the last read or write progress (eviction order) */
  uv_shutdown_t shutdown;
  cynic__buf_t *capture; /* a local connection (cynic__httpd_feed): what would be written
                            goes here; its tcp handle has no socket and is never read */
};

struct cynic__httpd_pending {
  cynic__httpd_conn_t *conn; /* NULL once the client is gone */
  cynic__httpd_response_t resp;
};

struct cynic__httpd_stream {
  cynic__httpd_conn_t *conn;
  size_t max_pending;
  cynic__httpd_stream_cb on_close;
  void *arg;
};

/* A handler's response with what cynic__httpd_defer needs to find. */
typedef struct reply {
  cynic__httpd_response_t resp; /* first: a handler's resp pointer is the reply's */
  cynic__httpd_conn_t *conn;
  cynic__httpd_pending_t *pending;
  cynic__httpd_stream_t *stream;
} reply_t;

typedef struct write_req {
  uv_write_t req;
  size_t len;
  char data[];
} write_req_t;

void cynic__httpd_config_default(cynic__httpd_config_t *c) {
  c->limits.max_url = 8192;
  c->limits.max_header_bytes = 16384;
  c->limits.max_body = 1 << 20;
  c->max_conns = 256;
  c->max_response = 64u << 20;
  c->request_timeout_ms = 15000;
  c->idle_timeout_ms = 60000;
  c->slice_bytes = 64u << 10;
  c->work_budget_us = 1000;
}

static void maybe_done(cynic__httpd_t *s) {
  if (s->closing && s->nconns == 0 && !s->listening && !s->work_open && s->on_closed != NULL) {
    void (*cb)(cynic__httpd_t *) = s->on_closed;
    s->on_closed = NULL;
    cb(s);
  }
}

static void conn_handle_closed(uv_handle_t *h) {
  cynic__httpd_conn_t *c = h->data;
  if (--c->open_handles > 0)
    return;
  cynic__httpd_t *s = c->server;
  cynic__http_parser_free(&c->parser);
  free(c->stash);
  free(c);
  s->nconns--;
  maybe_done(s);
}

static void unqueue(cynic__httpd_conn_t *c) {
  cynic__httpd_t *s = c->server;
  if (!c->queued)
    return;
  c->queued = false;
  cynic__httpd_conn_t **pp = &s->work_head, *prev = NULL;
  while (*pp != c) { /* O(queue), only when a queued connection closes */
    prev = *pp;
    pp = &(*pp)->work_next;
  }
  *pp = c->work_next;
  if (s->work_tail == c)
    s->work_tail = prev;
  c->work_next = NULL;
}

static void produce_end(cynic__httpd_conn_t *c) {
  if (c->produce == NULL)
    return;
  void (*fr)(void *) = c->produce_free;
  void *arg = c->produce_arg;
  c->produce = NULL;
  c->produce_free = NULL;
  c->produce_arg = NULL;
  if (fr != NULL)
    fr(arg);
}

static void conn_close(cynic__httpd_conn_t *c) {
  if (c->closing)
    return;
  c->closing = true;
  c->server->nlive--;
  unqueue(c);
  produce_end(c);
  if (c->pending != NULL) { /* its owner still completes it: detach */
    c->pending->conn = NULL;
    c->pending = NULL;
  }
  if (c->stream != NULL) { /* tell its owner, then free it */
    cynic__httpd_stream_t *st = c->stream;
    c->stream = NULL;
    st->conn = NULL;
    st->on_close(st, st->arg);
    free(st);
  }
  cynic__httpd_t *s = c->server;
  if (c->prev)
    c->prev->next = c->next;
  else
    s->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
  uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
}

static void on_timeout(uv_timer_t *t) {
  conn_close(t->data);
}

static void arm_timer(cynic__httpd_conn_t *c, uint64_t ms) {
  if (ms > 0)
    uv_timer_start(&c->timer, on_timeout, ms, 0);
  else
    uv_timer_stop(&c->timer);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  cynic__httpd_conn_t *c = h->data;
  buf->base = c->server->readbuf;
  buf->len = sizeof(c->server->readbuf);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

/* After the last answer: send FIN, then read and discard what the client
 * still sends for a short while (lingering close). Closing at once with
 * unread input would make the kernel answer RST and the client could lose the
 * response we just wrote. */
#define LINGER_MS 2000

static void on_shutdown(uv_shutdown_t *req, int status) {
  (void)req;
  (void)status;
}

static void finish(cynic__httpd_conn_t *c) {
  if (c->closing || c->lingering)
    return;
  c->lingering = true;
  if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
    conn_close(c);
    return;
  }
  uv_timer_start(&c->timer, on_timeout, LINGER_MS, 0);
  if (!c->reading && uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
    c->reading = true;
}

/* The connection has nothing in flight: no request waiting for its answer,
 * no answer or slice being written, no deferred answer, no stream. */
static bool at_rest(const cynic__httpd_conn_t *c) {
  return !c->request_ready && !c->queued && c->produce == NULL && c->pending == NULL &&
         c->stream == NULL && c->pending_write == 0;
}

/* No read-ahead: a connection is read only when it is at rest and every
 * pipelined byte already read has been parsed. */
static void update_reading(cynic__httpd_conn_t *c) {
  if (c->lingering || c->capture != NULL)
    return;
  if (c->stream != NULL) { /* always reading: only to see the client leave */
    if (!c->reading && !c->closing && uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
      c->reading = true;
    return;
  }
  bool want = !c->closing && !c->close_after_write && at_rest(c) && c->stash == NULL;
  if (want && !c->reading) {
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
      c->reading = true;
  } else if (!want && c->reading) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = false;
  }
}

static void on_work(uv_idle_t *h);

static void enqueue(cynic__httpd_conn_t *c) {
  cynic__httpd_t *s = c->server;
  if (c->queued || c->closing)
    return;
  c->queued = true;
  c->work_next = NULL;
  if (s->work_tail != NULL)
    s->work_tail->work_next = c;
  else
    s->work_head = c;
  s->work_tail = c;
  if (s->work_open && !uv_is_active((uv_handle_t *)&s->work))
    uv_idle_start(&s->work, on_work);
}

static bool feed(cynic__httpd_conn_t *c, const char *p, size_t left, char *owned, size_t owned_len);

/* At rest after an answer: parse what was read after it (queueing the next
 * request), or read again. */
static void advance(cynic__httpd_conn_t *c) {
  if (c->closing || c->lingering || c->close_after_write || !at_rest(c)) {
    update_reading(c);
    return;
  }
  if (c->stash != NULL) {
    /* feed keeps what follows the next request (it may move the stash) */
    char *st = c->stash;
    size_t off = c->stash_off, n = c->stash_len;
    c->stash = NULL;
    c->stash_len = c->stash_off = 0;
    if (!feed(c, st + off, n - off, st, n))
      free(st);
  }
  update_reading(c);
}

/* n bytes handed to the socket are written (status 0) or failed. */
static void wrote(cynic__httpd_conn_t *c, size_t n, int status) {
  c->pending_write -= n;
  if (c->closing)
    return;
  if (status < 0) {
    conn_close(c);
    return;
  }
  c->last_io = uv_now(c->server->loop);
  if (c->stream != NULL || c->pending_write > 0)
    return;
  if (c->close_after_write) {
    finish(c);
    return;
  }
  /* A client that reads an answer makes progress: its idle time starts
   * again (not after a "100 Continue": the request timeout runs on). */
  if (c->produce != NULL || !c->parser.started)
    arm_timer(c, c->server->config.idle_timeout_ms);
  if (c->produce != NULL)
    enqueue(c); /* the next slice, now the previous one is written */
  else
    advance(c);
}

static void on_write(uv_write_t *req, int status) {
  write_req_t *w = (write_req_t *)req;
  cynic__httpd_conn_t *c = req->handle->data;
  size_t n = w->len;
  free(w);
  wrote(c, n, status);
}

/* A write request with room for n bytes; NULL (and the connection closed)
 * when out of memory. */
static write_req_t *write_alloc(cynic__httpd_conn_t *c, size_t n) {
  write_req_t *w = malloc(sizeof(*w) + n);
  if (w == NULL)
    conn_close(c);
  return w;
}

static void write_send(cynic__httpd_conn_t *c, write_req_t *w, size_t n) {
  w->len = n;
  if (c->capture != NULL) { /* a local connection: "written" by cynic__httpd_feed */
    int err = cynic__buf_append(c->capture, w->data, n);
    free(w);
    if (err != 0)
      conn_close(c);
    else
      c->pending_write += n;
    return;
  }
  uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
    free(w);
    conn_close(c);
    return;
  }
  c->pending_write += n;
}

static void send_bytes(cynic__httpd_conn_t *c, const char *p, size_t n) {
  write_req_t *w = write_alloc(c, n);
  if (w == NULL)
    return;
  memcpy(w->data, p, n);
  write_send(c, w, n);
}

static const char oom_body[] = "{\"error\":\"out of memory\",\"status\":503}\n";

static void send_error(cynic__httpd_conn_t *c, int status, const char *reason) {
  uint64_t failures = cynic__json_alloc_failures();
  json_t *o = json_object();
  json_object_set_new(o, "error", json_string(reason));
  json_object_set_new(o, "status", json_integer(status));
  cynic__buf_t body, out;
  cynic__buf_init(&body, 4096);
  cynic__buf_init(&out, 8192);
  if (cynic__json_alloc_failures() != failures || cynic__json_dump(o, &body) != 0 ||
      cynic__buf_puts(&body, "\n") != 0) {
    /* out of memory: the error still says what it is, and ends the connection */
    cynic__buf_free(&body);
    status = 503;
    body.data = (char *)oom_body;
    body.len = sizeof(oom_body) - 1;
  }
  json_decref(o);
  if (cynic__http_response(&out, status, "application/json", body.data, body.len, false) == 0) {
    if (c->parser.msg.head_request)
      out.len -= body.len; /* a refused HEAD request: its answer's head, no body */
    send_bytes(c, out.data, out.len);
  }
  if (body.data != oom_body)
    cynic__buf_free(&body);
  cynic__buf_free(&out);
  c->close_after_write = true;
  if (c->pending_write == 0)
    finish(c);
}

void cynic__httpd_reply_json(cynic__httpd_response_t *resp, int status, json_t *body,
                             bool newline) {
  static const char cannot[] = "{\"error\":\"cannot build the response\",\"status\":500}";
  static const char too_large[] = "{\"error\":\"response too large\",\"status\":500}";
  resp->status = status;
  resp->content_type = "application/json";
  cynic__buf_reset(&resp->body);
  int err = body != NULL ? cynic__json_dump(body, &resp->body) : CYNIC_EINVAL;
  json_decref(body);
  if (err != 0) {
    cynic__buf_reset(&resp->body);
    resp->status = 500;
    if (err == CYNIC_ENOMEM ||
        cynic__buf_puts(&resp->body, err == CYNIC_ERANGE ? too_large : cannot) != 0) {
      /* out of memory: an empty 503 is answered with httpd's own body */
      cynic__buf_reset(&resp->body);
      resp->status = 503;
      resp->close = true;
      return;
    }
  }
  if (newline)
    cynic__buf_puts(&resp->body, "\n");
}

void cynic__httpd_reply_error(cynic__httpd_response_t *resp, int status, const char *msg) {
  json_t *o = json_object();
  if (o != NULL) {
    json_object_set_new(o, "error", cynic__json_text0(msg));
    json_object_set_new(o, "status", json_integer(status));
  }
  cynic__httpd_reply_json(resp, status, o, true);
}

static void response_init(cynic__httpd_t *s, cynic__httpd_response_t *resp) {
  memset(resp, 0, sizeof *resp);
  resp->status = 200;
  resp->content_type = "application/json";
  cynic__buf_init(&resp->body, s->config.max_response);
}

/* A handler's answer built while jansson could not allocate may be valid JSON
 * with fields left out: it is replaced by a 503 and the connection closed.
 * (What the handler did stands: a client must read 503 as "unknown".) */
static void out_of_memory(cynic__httpd_response_t *resp) {
  cynic__buf_reset(&resp->body);
  resp->status = 503;
  resp->content_type = "application/json";
  resp->headers = NULL;
  resp->close = true;
  cynic__buf_puts(&resp->body, oom_body); /* if it fails, respond() sends it from static */
}

/* The current request is answered (its last byte handed to uv_write): forget
 * it; the next one is parsed once the answer is written (advance). */
static void request_done(cynic__httpd_conn_t *c, bool keep) {
  cynic__http_parser_next(&c->parser);
  c->continue_sent = false;
  if (!keep) {
    c->close_after_write = true;
    if (c->pending_write == 0)
      finish(c);
    return;
  }
  if (!c->closing && !c->lingering)
    arm_timer(c, c->server->config.idle_timeout_ms);
  if (c->pending_write == 0)
    advance(c);
  else
    update_reading(c);
}

/* Send the answer to the current request; frees resp's body. */
static void respond(cynic__httpd_conn_t *c, cynic__httpd_response_t *r) {
  cynic__httpd_t *s = c->server;
  cynic__httpd_response_t resp = *r;
  bool keep = cynic__http_keep_alive(&c->parser) && !resp.close && !s->closing;
  cynic__buf_t out;
  cynic__buf_init(&out, s->config.max_response + 4096);
  const char *data = resp.body.data;
  size_t len = resp.body.len;
  if (resp.status == 503 && len == 0) {
    /* a handler out of memory even for its error body (see out_of_memory) */
    data = oom_body;
    len = sizeof(oom_body) - 1;
    resp.content_type = "application/json";
    keep = false;
  }
  if (cynic__http_response_headers(&out, resp.status, resp.content_type, resp.headers, data, len,
                                   keep) == 0) {
    /* HEAD: the same head, Content-Length included, and no body. */
    bool has_body = resp.status != 204 && resp.status != 304;
    if (c->parser.msg.head_request && has_body)
      out.len -= len;
    send_bytes(c, out.data, out.len);
  } else {
    keep = false;
  }
  cynic__buf_free(&out);
  cynic__buf_free(&resp.body);
  if (!c->closing)
    request_done(c, keep);
}

/* One slice of a produced body into a single write: the chunk framing
 * (HTTP/1.1) around `n` bytes of `p`, and the last chunk after it when
 * `last`. */
static void send_slice(cynic__httpd_conn_t *c, const char *head, size_t head_len, const char *p,
                       size_t n, bool last) {
  static const char end[] = "0\r\n\r\n";
  write_req_t *w = write_alloc(c, head_len + n + 32 + sizeof end);
  if (w == NULL)
    return;
  size_t k = 0;
  memcpy(w->data, head, head_len);
  k += head_len;
  if (c->chunked && n > 0)
    k += (size_t)sprintf(w->data + k, "%zx\r\n", n);
  if (n > 0) /* (an empty slice's data may be NULL) */
    memcpy(w->data + k, p, n);
  k += n;
  if (c->chunked && n > 0) {
    memcpy(w->data + k, "\r\n", 2);
    k += 2;
  }
  if (c->chunked && last) {
    memcpy(w->data + k, end, sizeof end - 1);
    k += sizeof end - 1;
  }
  if (k == 0) { /* an empty slice: ask for the next one */
    free(w);
    if (!last)
      enqueue(c);
    return;
  }
  write_send(c, w, k);
}

/* The next slice of the body being produced (from the work queue). An error
 * after the head cuts the connection: no terminating chunk is ever sent. */
static void produce_next(cynic__httpd_conn_t *c) {
  cynic__httpd_t *s = c->server;
  cynic__buf_t b;
  cynic__buf_init(&b, s->config.max_response);
  uint64_t failures = cynic__json_alloc_failures();
  int rc = c->produce(c->produce_arg, &b, s->config.slice_bytes);
  if (rc < 0 || cynic__json_alloc_failures() != failures) {
    cynic__buf_free(&b);
    conn_close(c);
    return;
  }
  bool last = rc > 0;
  send_slice(c, "", 0, b.data, b.len, last);
  cynic__buf_free(&b);
  if (c->closing)
    return;
  if (last) {
    produce_end(c);
    request_done(c, c->keep);
  }
}

/* The first slice of a produced body, made before the head so that a
 * failure can still be answered with a status. */
static void produce_first(cynic__httpd_conn_t *c, cynic__httpd_response_t *resp) {
  cynic__httpd_t *s = c->server;
  c->produce = resp->produce;
  c->produce_free = resp->produce_free;
  c->produce_arg = resp->produce_arg;
  uint64_t failures = cynic__json_alloc_failures();
  cynic__buf_reset(&resp->body);
  int rc = c->produce(c->produce_arg, &resp->body, s->config.slice_bytes);
  bool oom = cynic__json_alloc_failures() != failures;
  if (rc < 0 || oom) {
    produce_end(c);
    if (rc == CYNIC_ENOMEM || oom) {
      out_of_memory(resp);
    } else {
      cynic__httpd_reply_json(resp, 500, NULL, true); /* "cannot build the response" */
      resp->headers = NULL;
      resp->close = true;
    }
    respond(c, resp);
    return;
  }
  if (rc > 0) { /* all of it in one slice: sent whole */
    produce_end(c);
    respond(c, resp);
    return;
  }
  int major = c->parser.msg.version_major, minor = c->parser.msg.version_minor;
  c->chunked = major > 1 || (major == 1 && minor >= 1);
  c->keep = c->chunked && cynic__http_keep_alive(&c->parser) && !resp->close && !s->closing;
  cynic__buf_t head;
  cynic__buf_init(&head, s->config.max_response + 4096); /* respond()'s bound */
  int err = cynic__http_response_open(
      &head, resp->status,
      resp->content_type != NULL ? resp->content_type : "application/octet-stream", resp->headers,
      c->chunked, c->keep);
  if (err != 0) {
    produce_end(c);
    cynic__buf_free(&resp->body);
    cynic__buf_free(&head);
    if (err == CYNIC_ENOMEM)
      send_error(c, 503, "out of memory");
    else
      send_error(c, 500, "response head too large");
    return;
  }
  bool head_only = c->parser.msg.head_request;
  if (head_only) { /* the head a GET would get, and no body */
    cynic__buf_free(&resp->body);
    produce_end(c);
    send_bytes(c, head.data, head.len);
  } else {
    send_slice(c, head.data, head.len, resp->body.data, resp->body.len, false);
    cynic__buf_free(&resp->body);
  }
  cynic__buf_free(&head);
  if (head_only && !c->closing)
    request_done(c, c->keep);
  /* the next slice once this one is written (on_write queues it) */
}

cynic__httpd_pending_t *cynic__httpd_defer(cynic__httpd_response_t *resp) {
  reply_t *rp = (reply_t *)resp;
  if (rp->pending != NULL)
    return rp->pending;
  cynic__httpd_pending_t *pd = calloc(1, sizeof(*pd));
  if (pd == NULL)
    return NULL;
  pd->conn = rp->conn;
  response_init(rp->conn->server, &pd->resp);
  rp->pending = pd;
  rp->conn->pending = pd;
  return pd;
}

const cynic__http_parser_t *cynic__httpd_pending_request(const cynic__httpd_pending_t *pd) {
  return pd->conn != NULL ? &pd->conn->parser : NULL;
}

cynic__httpd_response_t *cynic__httpd_pending_response(cynic__httpd_pending_t *pd) {
  return &pd->resp;
}

cynic__httpd_stream_t *cynic__httpd_stream(cynic__httpd_response_t *resp, size_t max_pending,
                                           int sndbuf, cynic__httpd_stream_cb on_close, void *arg) {
  reply_t *rp = (reply_t *)resp;
  cynic__httpd_conn_t *c = rp->conn;
  if (rp->stream != NULL || rp->pending != NULL)
    return NULL;
  cynic__httpd_stream_t *st = calloc(1, sizeof(*st));
  if (st == NULL)
    return NULL;
  char head[1024];
  int n = snprintf(head, sizeof head,
                   "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n%sConnection: close\r\n\r\n",
                   resp->status, cynic__http_reason(resp->status),
                   resp->content_type != NULL ? resp->content_type : "text/event-stream",
                   resp->headers != NULL ? resp->headers : "");
  if (n < 0 || (size_t)n >= sizeof head) {
    free(st);
    return NULL;
  }
  st->conn = c;
  st->max_pending = max_pending;
  st->on_close = on_close;
  st->arg = arg;
  rp->stream = st;
  c->stream = st;
  uv_timer_stop(&c->timer); /* no request or idle timeout on a stream */
  if (sndbuf > 0)
    uv_send_buffer_size((uv_handle_t *)&c->tcp, &sndbuf);
  send_bytes(c, head, (size_t)n); /* on failure the connection closes: on_close runs */
  return st;
}

int cynic__httpd_stream_write(cynic__httpd_stream_t *st, const char *p, size_t n) {
  cynic__httpd_conn_t *c = st->conn;
  if (c == NULL || c->closing)
    return CYNIC_EINVAL;
  if (c->pending_write > st->max_pending) {
    conn_close(c); /* a slow reader: dropped (on_close runs, st is freed) */
    return CYNIC_ERANGE;
  }
  size_t before = c->pending_write;
  send_bytes(c, p, n);
  return c->pending_write == before + n ? 0 : CYNIC_ENOMEM;
}

size_t cynic__httpd_stream_pending(const cynic__httpd_stream_t *st) {
  return st->conn != NULL ? st->conn->pending_write : 0;
}

int cynic__httpd_stream_peer(const cynic__httpd_stream_t *st, char *buf, size_t len) {
  if (st->conn == NULL)
    return CYNIC_EINVAL;
  return cynic__httpd_peer(&st->conn->parser, buf, len);
}

void cynic__httpd_stream_set_max_pending(cynic__httpd_stream_t *st, size_t max_pending) {
  st->max_pending = max_pending;
}

void cynic__httpd_stream_close(cynic__httpd_stream_t *st) {
  if (st->conn != NULL)
    conn_close(st->conn);
}

/* Answer the current request (from the work queue). */
static void answer(cynic__httpd_conn_t *c) {
  c->request_ready = false;
  reply_t rp;
  rp.conn = c;
  rp.pending = NULL;
  rp.stream = NULL;
  response_init(c->server, &rp.resp);
  uint64_t failures = cynic__json_alloc_failures();
  c->server->handler(c->server->arg, &c->parser, &rp.resp);
  bool oom = cynic__json_alloc_failures() != failures;
  if (rp.stream != NULL || rp.pending != NULL) { /* what it wrote into resp is not sent */
    if (rp.resp.produce_free != NULL)
      rp.resp.produce_free(rp.resp.produce_arg);
    cynic__buf_free(&rp.resp.body);
    if (rp.stream != NULL) { /* what follows the request is dropped */
      free(c->stash);
      c->stash = NULL;
      c->stash_len = c->stash_off = 0;
      update_reading(c);
    }
    return;
  }
  if (rp.resp.produce != NULL) {
    if (oom) { /* the handler itself ran short: nothing of it is trusted */
      if (rp.resp.produce_free != NULL)
        rp.resp.produce_free(rp.resp.produce_arg);
      rp.resp.produce = NULL;
      out_of_memory(&rp.resp);
      respond(c, &rp.resp);
      return;
    }
    produce_first(c, &rp.resp);
    return;
  }
  if (oom && !rp.resp.checked && rp.resp.status != 204 && rp.resp.status != 304)
    out_of_memory(&rp.resp); /* (an answer without a body cannot be missing fields) */
  respond(c, &rp.resp);
}

/* A connection's turn on the work queue (taken off it): its request's
 * answer, or the next slice of its produced body once the last is written. */
static void run_queued(cynic__httpd_conn_t *c) {
  if (c->request_ready)
    answer(c);
  else if (c->produce != NULL && c->pending_write == 0)
    produce_next(c);
}

/* The work queue: handlers and slices, round robin between connections, for
 * at most work_budget_us per loop turn (then the loop polls again: the data
 * plane's I/O goes first). An idle handle keeps the poll from blocking while
 * work is left. */
static void on_work(uv_idle_t *h) {
  cynic__httpd_t *s = h->data;
  uint64_t start = uv_hrtime();
  uint64_t budget = s->config.work_budget_us * 1000u;
  while (s->work_head != NULL) {
    cynic__httpd_conn_t *c = s->work_head;
    unqueue(c); /* the head: O(1) */
    run_queued(c);
    if (uv_hrtime() - start >= budget)
      break;
  }
  if (s->work_head == NULL)
    uv_idle_stop(h);
}

void cynic__httpd_complete(cynic__httpd_pending_t *pd) {
  cynic__httpd_conn_t *c = pd->conn;
  if (c == NULL) { /* the client went away */
    cynic__buf_free(&pd->resp.body);
    free(pd);
    return;
  }
  c->pending = NULL;
  respond(c, &pd->resp); /* then the requests that waited behind it (advance) */
  free(pd);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  cynic__httpd_conn_t *c = stream->data;
  if (c->stream != NULL) { /* a streamed answer: input is dropped */
    if (nread < 0)
      conn_close(c);
    return;
  }
  if (c->lingering) {
    if (nread < 0)
      conn_close(c);
    return;
  }
  if (nread < 0) {
    conn_close(c); /* read only at rest: nothing of ours is left to write */
    return;
  }
  if (nread > 0)
    c->last_io = uv_now(c->server->loop);
  feed(c, buf->base, (size_t)nread, NULL, 0);
  update_reading(c);
}

/* Parse what was read up to one complete request, which is queued for its
 * answer; the bytes after it are kept as the stash (the read buffer is
 * shared by all connections) and parsed once the answer is written. When p
 * points into `owned` (the previous stash, owned_len bytes), that buffer is
 * kept rather than copied: true then (the caller must not free it). The
 * caller runs update_reading afterwards. */
static bool feed(cynic__httpd_conn_t *c, const char *p, size_t left, char *owned,
                 size_t owned_len) {
  while (left > 0 && !c->closing && !c->close_after_write) {
    size_t used = 0;
    bool was_started = c->parser.started;
    int r = cynic__http_parser_feed(&c->parser, p, left, &used);
    if (!was_started && c->parser.started)
      arm_timer(c, c->server->config.request_timeout_ms);
    if (r < 0) {
      send_error(c, c->parser.error_status, c->parser.error_reason);
      return false;
    }
    p += used;
    left -= used;
    if (r == CYNIC_HTTP_READY) {
      bool kept = false;
      if (left > 0 && owned != NULL) {
        c->stash = owned;
        c->stash_len = owned_len;
        c->stash_off = (size_t)(p - owned);
        kept = true;
      } else if (left > 0) {
        if ((c->stash = malloc(left)) == NULL) {
          conn_close(c);
          return false;
        }
        memcpy(c->stash, p, left);
        c->stash_len = left;
        c->stash_off = 0;
      }
      c->request_ready = true;
      enqueue(c);
      return kept;
    } else if (c->parser.expect_continue && !c->continue_sent) {
      static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
      send_bytes(c, cont, sizeof(cont) - 1);
      c->continue_sent = true;
    }
  }
  return false;
}

/* At capacity: the connection idle longest (no read or write progress for
 * the longest time) makes room. Streams, connections awaiting a deferred
 * answer (working, not hoarding) and closing ones are not candidates; false
 * when there is none. */
static bool evict_idlest(cynic__httpd_t *s, cynic__httpd_conn_t *except) {
  cynic__httpd_conn_t *victim = NULL;
  for (cynic__httpd_conn_t *c = s->conns; c != NULL; c = c->next) {
    if (c == except || c->closing || c->stream != NULL || c->pending != NULL)
      continue;
    if (victim == NULL || c->last_io <= victim->last_io) /* ties: the older one */
      victim = c;
  }
  if (victim == NULL)
    return false;
  s->evictions++;
  conn_close(victim);
  return true;
}

/* A new connection's handles, parser and place on the server's list. */
static void conn_setup(cynic__httpd_t *s, cynic__httpd_conn_t *c) {
  c->server = s;
  uv_tcp_init(s->loop, &c->tcp);
  uv_timer_init(s->loop, &c->timer);
  c->tcp.data = c;
  c->timer.data = c;
  c->open_handles = 2;
  c->last_io = uv_now(s->loop);
  cynic__http_parser_init(&c->parser, &s->config.limits);
  c->next = s->conns;
  if (s->conns)
    s->conns->prev = c;
  s->conns = c;
  s->nconns++;
  s->nlive++;
}

static void on_connection(uv_stream_t *listener, int status) {
  cynic__httpd_t *s = listener->data;
  if (status < 0)
    return;
  cynic__httpd_conn_t *c = calloc(1, sizeof(*c));
  if (c == NULL) {
    cynic__shed(listener); /* returning without uv_accept would stop the listener */
    return;
  }
  conn_setup(s, c);
  if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0 || s->closing) {
    conn_close(c);
    return;
  }
  if (s->nlive > s->config.max_conns && !evict_idlest(s, c)) {
    conn_close(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  /* a connection that never speaks gets the time of one request */
  arm_timer(c, s->config.request_timeout_ms);
  update_reading(c);
}

int cynic__httpd_start(cynic__httpd_t *s, uv_loop_t *loop, const cynic__httpd_config_t *c,
                       const struct sockaddr *addr, cynic__httpd_handler_t handler, void *arg) {
  memset(s, 0, offsetof(cynic__httpd_t, readbuf));
  s->loop = loop;
  s->config = *c;
  if (s->config.slice_bytes == 0)
    s->config.slice_bytes = 64u << 10;
  s->handler = handler;
  s->arg = arg;
  int err = uv_tcp_init(loop, &s->listener);
  if (err)
    return err;
  s->listener.data = s;
  s->listening = true;
  uv_idle_init(loop, &s->work); /* cannot fail on Unix */
  s->work.data = s;
  s->work_open = true;
  if (addr == NULL) /* no socket: only local connections (cynic__httpd_feed) */
    return 0;
  err = uv_tcp_bind(&s->listener, addr, 0);
  if (!err)
    err = uv_listen((uv_stream_t *)&s->listener, 128, on_connection);
  return err;
}

int cynic__httpd_feed(cynic__httpd_t *s, const char *in, size_t n, cynic__buf_t *out) {
  if (s->closing)
    return CYNIC_EINVAL;
  cynic__httpd_conn_t *c = calloc(1, sizeof(*c));
  if (c == NULL)
    return CYNIC_ENOMEM;
  conn_setup(s, c); /* its tcp handle gets no socket: peer lookups fail, nothing is read */
  c->capture = out;
  feed(c, in, n, NULL, 0);
  /* The loop's part, without the loop: each write completes at once and each
   * queued answer or slice runs at once. Every turn either finishes a write or
   * answers a request (consuming input) or produces a slice (of a body that
   * ends), so this ends. */
  while (!c->closing) {
    if (c->pending_write > 0) {
      wrote(c, c->pending_write, 0);
    } else if (c->queued) {
      unqueue(c);
      run_queued(c);
    } else {
      break;
    }
  }
  conn_close(c); /* the client leaves (a deferred answer is discarded, a stream ends) */
  return 0;
}

int cynic__httpd_address(cynic__httpd_t *s, struct sockaddr_storage *out) {
  int len = sizeof(*out);
  return uv_tcp_getsockname(&s->listener, (struct sockaddr *)out, &len);
}

/* The address of the peer that sent `req` (a parser embedded in its
 * connection). 0 or a libuv error. */
static int peer_address(const cynic__http_parser_t *req, struct sockaddr_storage *ss) {
  const cynic__httpd_conn_t *c =
      (const cynic__httpd_conn_t *)((const char *)req - offsetof(cynic__httpd_conn_t, parser));
  int n = sizeof *ss;
  return uv_tcp_getpeername(&c->tcp, (struct sockaddr *)ss, &n);
}

int cynic__httpd_peer(const cynic__http_parser_t *req, char *buf, size_t len) {
  struct sockaddr_storage ss;
  int err = peer_address(req, &ss);
  if (err == 0)
    err = cynic__addr_format((struct sockaddr *)&ss, buf, len);
  return err;
}

size_t cynic__httpd_peer_key(const cynic__http_parser_t *req, unsigned char key[16]) {
  struct sockaddr_storage ss;
  if (peer_address(req, &ss) != 0)
    return 0;
  if (ss.ss_family == AF_INET) {
    memcpy(key, &((struct sockaddr_in *)&ss)->sin_addr, 4);
    return 4;
  }
  if (ss.ss_family == AF_INET6) {
    memcpy(key, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
    return 16;
  }
  return 0;
}

static void listener_closed(uv_handle_t *h) {
  cynic__httpd_t *s = h->data;
  s->listening = false;
  maybe_done(s);
}

static void work_closed(uv_handle_t *h) {
  cynic__httpd_t *s = h->data;
  s->work_open = false;
  maybe_done(s);
}

void cynic__httpd_close(cynic__httpd_t *s, void (*on_closed)(cynic__httpd_t *)) {
  if (s->closing)
    return;
  s->closing = true;
  s->on_closed = on_closed;
  while (s->conns != NULL)
    conn_close(s->conns);
  if (s->work_open && !uv_is_closing((uv_handle_t *)&s->work))
    uv_close((uv_handle_t *)&s->work, work_closed);
  cynic__shed_forget((uv_stream_t *)&s->listener);
  if (s->listening && !uv_is_closing((uv_handle_t *)&s->listener))
    uv_close((uv_handle_t *)&s->listener, listener_closed);
}
