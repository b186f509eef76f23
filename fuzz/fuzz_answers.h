/*
 * fuzz/fuzz_answers.h: the oracle the control-API fuzz targets share
 * (fuzz_admin_api.c, fuzz_harness_api.c): what a server wrote on one
 * connection must parse, with llhttp, as a sequence of HTTP/1.1 responses,
 * at most one final response per request, each with a status from the API's
 * documented set, HEAD answers framed without a body; and fuzz_serve, which
 * feeds one connection's bytes to a socket-free server (cynic__httpd_feed)
 * and checks its answers so. Header-only (static functions): each target
 * includes it once.
 */
#ifndef CYNIC_FUZZ_ANSWERS_H
#define CYNIC_FUZZ_ANSWERS_H

#include <llhttp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "httpd.h"

#define FUZZ_MAX_REQUESTS 512     /* requests followed per input (4 KiB inputs make fewer) */
#define FUZZ_BODY_MAX (16u << 20) /* one answer's body, decoded */
#define FUZZ_OUT_MAX (16u << 20)  /* what one connection's answers may add up to */

/* ---- the requests' methods (so HEAD answers are framed as such) ---------- */

typedef struct fuzz_methods {
  bool head[FUZZ_MAX_REQUESTS];
  size_t count;
} fuzz_methods_t;

/* A request counts (and its HEAD-ness is known) once its request line is
 * complete: at its first header field, or at the end of a head without any.
 * The servers answer every such request, refusals of the rest of its head
 * included, and answer a HEAD request in HTTP/1.x without a body. */
static bool fuzz_line_seen;

static int fuzz_on_request_line_done(llhttp_t *p) {
  fuzz_methods_t *m = p->data;
  if (fuzz_line_seen)
    return 0;
  fuzz_line_seen = true;
  bool http1 = p->http_major == 1 && p->http_minor <= 1;
  if (m->count < FUZZ_MAX_REQUESTS)
    m->head[m->count++] = http1 && llhttp_get_method(p) == HTTP_HEAD;
  return 0;
}

static int fuzz_on_request_field(llhttp_t *p, const char *at, size_t n) {
  (void)at;
  (void)n;
  return fuzz_on_request_line_done(p);
}

static int fuzz_on_request_begin(llhttp_t *p) {
  (void)p;
  fuzz_line_seen = false;
  return 0;
}

/* The methods of the requests in p[0..n) as llhttp reads them, up to its
 * first error (the server answers that one with an error and closes). */
static void fuzz_read_methods(const char *p, size_t n, fuzz_methods_t *m) {
  llhttp_settings_t s;
  llhttp_settings_init(&s);
  s.on_message_begin = fuzz_on_request_begin;
  s.on_header_field = fuzz_on_request_field;
  s.on_headers_complete = fuzz_on_request_line_done;
  llhttp_t parser;
  llhttp_init(&parser, HTTP_REQUEST, &s);
  parser.data = m;
  m->count = 0;
  llhttp_execute(&parser, p, n);
}

/* ---- the answers -------------------------------------------------------- */

typedef struct fuzz_answers {
  const char *who;  /* the target, for messages */
  const int *known; /* the documented statuses */
  size_t nknown;
  const fuzz_methods_t *m;
  size_t finals;     /* final (non-1xx) responses seen */
  int status;        /* of the last response */
  int bad_status;    /* an undocumented one seen (0: none) */
  cynic__buf_t body; /* the last response's body, chunks decoded; the caller frees it */
} fuzz_answers_t;

static int fuzz_on_response_head(llhttp_t *p) {
  fuzz_answers_t *a = p->data;
  a->status = p->status_code;
  bool known = false;
  for (size_t i = 0; i < a->nknown; i++)
    known = known || a->known[i] == p->status_code;
  if (!known)
    a->bad_status = p->status_code;
  if (p->status_code >= 100 && p->status_code < 200)
    return 0; /* interim: answers nothing, has no body */
  size_t i = a->finals++;
  /* llhttp: 1 from on_headers_complete means "no body" (a HEAD answer) */
  return i < a->m->count && a->m->head[i] ? 1 : 0;
}

static int fuzz_on_response_begin(llhttp_t *p) {
  fuzz_answers_t *a = p->data;
  cynic__buf_reset(&a->body);
  return 0;
}

static int fuzz_on_response_body(llhttp_t *p, const char *at, size_t n) {
  fuzz_answers_t *a = p->data;
  return cynic__buf_append(&a->body, at, n) == 0 ? 0 : -1;
}

static void fuzz_answers_fail(const fuzz_answers_t *a, const cynic__buf_t *out, const char *why) {
  fprintf(stderr, "%s: %s\n--- answers:\n%.*s\n", a->who, why, (int)out->len,
          out->data ? out->data : "");
  abort();
}

/* Parses `out` (all a connection got, up to its close) as the answers to the
 * requests in `m`; aborts when they are not well-formed HTTP/1.1 with
 * documented statuses, one final answer per request at most. */
static void fuzz_check_answers(const cynic__buf_t *out, const fuzz_methods_t *m,
                               fuzz_answers_t *a) {
  a->m = m;
  a->finals = 0;
  a->status = 0;
  a->bad_status = 0;
  cynic__buf_init(&a->body, FUZZ_BODY_MAX);
  llhttp_settings_t s;
  llhttp_settings_init(&s);
  s.on_message_begin = fuzz_on_response_begin;
  s.on_headers_complete = fuzz_on_response_head;
  s.on_body = fuzz_on_response_body;
  llhttp_t parser;
  llhttp_init(&parser, HTTP_RESPONSE, &s);
  parser.data = a;
  llhttp_errno_t err = llhttp_execute(&parser, out->data ? out->data : "", out->len);
  if (err == HPE_OK)
    err = llhttp_finish(&parser); /* the connection ended: a body read to EOF ends here */
  if (err != HPE_OK) {
    char why[256];
    snprintf(why, sizeof why, "the answers are not HTTP: %s (%s)", llhttp_errno_name(err),
             llhttp_get_error_reason(&parser));
    fuzz_answers_fail(a, out, why);
  }
  if (a->bad_status != 0) {
    char why[64];
    snprintf(why, sizeof why, "an undocumented status: %d", a->bad_status);
    fuzz_answers_fail(a, out, why);
  }
  /* llhttp stops at its first bad request, which the server answers too
   * (and then closes): one more answer than requests counted, at most. */
  if (m->count < FUZZ_MAX_REQUESTS && a->finals > m->count + 1)
    fuzz_answers_fail(a, out, "more answers than requests");
}

/* Feeds in[0..n) to `server` as one client connection's bytes (pipelined
 * requests, answered in order) and checks the answers (fuzz_check_answers,
 * with the caller's a->who, a->known and a->nknown); the last answer's
 * status and body are left in *a (the caller frees a->body). FUZZ_VERBOSE=1
 * in the environment prints the answers (replaying one input by hand). */
static void fuzz_serve(cynic__httpd_t *server, const char *in, size_t n, fuzz_answers_t *a) {
  fuzz_methods_t m;
  fuzz_read_methods(in, n, &m);
  cynic__buf_t out;
  cynic__buf_init(&out, FUZZ_OUT_MAX);
  if (cynic__httpd_feed(server, in, n, &out) != 0) {
    fprintf(stderr, "%s: cannot feed the server\n", a->who);
    abort();
  }
  if (getenv("FUZZ_VERBOSE") != NULL)
    fprintf(stderr, "--- %zu requests, answers:\n%.*s\n", m.count, (int)out.len,
            out.data ? out.data : "");
  fuzz_check_answers(&out, &m, a);
  cynic__buf_free(&out);
}

#endif
