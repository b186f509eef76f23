/*
 * api.c: the Toxiproxy-compatible HTTP API (server 2.12): routes, status
 * codes, error bodies {"error": "...", "status": N}.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "addr.h"
#include "cynic/common.h"
#include "harness.h"
#include "http_msg.h"
#include "json.h"
#include "log.h"
#include "toxic.h"
#include "version.h"

#define ERRLEN 512

typedef struct req_ctx {
  harness_t *h;
  const cynic__http_parser_t *req;
  cynic__httpd_response_t *resp;
  const char *method;
} req_ctx_t;

/* ---- responses ----------------------------------------------------------- */

/* JSON answers as every control API's (httpd.h): a success's body without a
 * trailing newline (Toxiproxy's encoder writes none), an error's with one
 * (Go's http.Error). */
static void reply_json(req_ctx_t *r, int status, json_t *body) {
  cynic__httpd_reply_json(r->resp, status, body, false);
}

static void reply_error(req_ctx_t *r, int status, const char *msg) {
  cynic__httpd_reply_error(r->resp, status, msg);
}

static void reply_empty(req_ctx_t *r, int status) {
  r->resp->status = status;
  r->resp->content_type = NULL;
  cynic__buf_reset(&r->resp->body);
}

/* ---- JSON views ---------------------------------------------------------- */

static json_t *proxy_to_json(const hproxy_t *p) {
  json_t *o = json_object();
  json_object_set_new(o, "name", json_string(p->name));
  json_object_set_new(o, "listen", json_string(p->listen));
  json_object_set_new(o, "upstream", json_string(p->upstream));
  json_object_set_new(o, "enabled", json_boolean(p->enabled));
  json_t *a = json_array();
  /* Toxiproxy lists the upstream chain, then the downstream one. */
  for (int s = 0; s < 2; s++)
    for (size_t i = 0; i < p->ntoxics; i++)
      if (p->toxics[i]->stream == s)
        json_array_append_new(a, harness_toxic_to_json(p->toxics[i]));
  json_object_set_new(o, "toxics", a);
  return o;
}

static int by_name(const void *a, const void *b) {
  return strcmp((*(hproxy_t *const *)a)->name, (*(hproxy_t *const *)b)->name);
}

/* ---- request parsing ----------------------------------------------------- */

static json_t *parse_body(req_ctx_t *r) {
  json_error_t e;
  const cynic__buf_t *b = &r->req->body;
  uint64_t failures = cynic__json_alloc_failures();
  json_t *v = json_loadb(b->data ? b->data : "", b->len, JSON_DECODE_ANY, &e);
  if (cynic__json_alloc_failures() != failures) {
    /* jansson 2.14's lexer drops the characters it cannot store and goes on:
     * "127.0.0.1:46353" could come out "127.0.0.1:4635" (found by
     * tests/integration/test_oom.py). Nothing parsed short of memory is used. */
    json_decref(v);
    reply_error(r, 503, "out of memory");
    return NULL;
  }
  if (v == NULL) {
    char msg[ERRLEN];
    snprintf(msg, sizeof(msg), "bad request body: %s", e.text);
    reply_error(r, 400, msg);
  }
  return v;
}

static bool addr_valid(const char *s) {
  char host[CYNIC_ADDR_HOST_MAX];
  uint16_t port;
  return strlen(s) < HARNESS_ADDR_MAX && cynic__addr_split(s, host, sizeof(host), &port) == 0;
}

typedef struct proxy_input {
  const char *name, *listen, *upstream;
  bool enabled;
  toxic_t *toxics[HARNESS_MAX_TOXICS];
  size_t ntoxics;
} proxy_input_t;

static void input_free(proxy_input_t *in) {
  for (size_t i = 0; i < in->ntoxics; i++)
    harness_toxic_free(in->toxics[i]);
  in->ntoxics = 0;
}

/*
 * Read a proxy object of a create or populate request. `where` names the
 * element in populate errors (" at proxy 3"). -1 with *status and err set.
 */
static int read_proxy(const json_t *o, const char *where, proxy_input_t *in, int *status, char *err,
                      size_t errlen) {
  char detail[256];
  memset(in, 0, sizeof(*in));
  in->enabled = true;
  in->listen = "";
  if (!json_is_object(o)) {
    *status = 400;
    snprintf(err, errlen, "bad request body: expected a JSON object%s", where);
    return -1;
  }
  if (cynic__json_get_string(o, "name", &in->name, detail, sizeof(detail)) < 0 ||
      cynic__json_get_string(o, "listen", &in->listen, detail, sizeof(detail)) < 0 ||
      cynic__json_get_string(o, "upstream", &in->upstream, detail, sizeof(detail)) < 0 ||
      cynic__json_get_bool(o, "enabled", &in->enabled, detail, sizeof(detail)) < 0) {
    *status = 400;
    snprintf(err, errlen, "bad request body: %s%s", detail, where);
    return -1;
  }
  *status = 400;
  if (in->name == NULL || in->name[0] == '\0') {
    snprintf(err, errlen, "missing required field: name%s", where);
    return -1;
  }
  if (in->upstream == NULL || in->upstream[0] == '\0') {
    snprintf(err, errlen, "missing required field: upstream%s", where);
    return -1;
  }
  if (!harness_name_valid(in->name)) {
    snprintf(err, errlen,
             "bad request body: field \"name\": 1-128 characters of A-Z a-z 0-9 . _ ~ : @ + -%s",
             where);
    return -1;
  }
  if (in->listen[0] == '\0')
    in->listen = "127.0.0.1:0";
  if (!addr_valid(in->listen)) {
    snprintf(err, errlen, "bad request body: field \"listen\": not host:port%s", where);
    return -1;
  }
  if (!addr_valid(in->upstream)) {
    snprintf(err, errlen, "bad request body: field \"upstream\": not host:port%s", where);
    return -1;
  }
  const json_t *toxics = json_object_get(o, "toxics");
  if (toxics != NULL && !json_is_null(toxics)) {
    if (!json_is_array(toxics)) {
      snprintf(err, errlen, "bad request body: field \"toxics\": expected array%s", where);
      return -1;
    }
    if (json_array_size(toxics) > HARNESS_MAX_TOXICS) {
      *status = 507;
      snprintf(err, errlen, "too many toxics (at most %d per proxy)%s", HARNESS_MAX_TOXICS, where);
      return -1;
    }
    size_t i;
    const json_t *tj;
    json_array_foreach(toxics, i, tj) {
      toxic_t *t = malloc(sizeof(*t));
      char terr[ERRLEN];
      if (t == NULL) {
        *status = 500;
        snprintf(terr, sizeof(terr), "out of memory");
      }
      if (t == NULL || harness_toxic_from_json(tj, t, status, terr, sizeof(terr)) != 0) {
        free(t); /* harness_toxic_from_json released what it had allocated */
        snprintf(err, errlen, "%s%s", terr, where);
        input_free(in);
        return -1;
      }
      for (size_t k = 0; k < in->ntoxics; k++)
        if (strcmp(in->toxics[k]->name, t->name) == 0) {
          harness_toxic_free(t);
          input_free(in);
          *status = 409;
          snprintf(err, errlen, "toxic already exists%s", where);
          return -1;
        }
      in->toxics[in->ntoxics++] = t;
    }
  }
  return 0;
}

/* Create a proxy from validated input, its toxics in place before it
 * listens (so no connection slips through unpoisoned). NULL with *status/err. */
static hproxy_t *create_proxy(harness_t *h, proxy_input_t *in, int *status, char *err,
                              size_t errlen) {
  if (h->nproxies == HARNESS_MAX_PROXIES) {
    *status = 507;
    snprintf(err, errlen, "too many proxies (at most %d)", HARNESS_MAX_PROXIES);
    return NULL;
  }
  hproxy_t *p = harness_proxy_new(h, in->name, in->listen, in->upstream);
  if (p == NULL) {
    *status = 503;
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  for (size_t i = 0; i < in->ntoxics; i++)
    harness_proxy_add_toxic(p, in->toxics[i]);
  in->ntoxics = 0; /* now owned by the proxy */
  if (in->enabled && harness_proxy_start(p, err, errlen) != 0) {
    harness_proxy_delete(p);
    *status = 500;
    return NULL;
  }
  return p;
}

/* ---- handlers ------------------------------------------------------------ */

static void proxy_index(req_ctx_t *r) {
  harness_t *h = r->h;
  hproxy_t **sorted = malloc((h->nproxies + 1) * sizeof(*sorted));
  if (sorted == NULL) {
    reply_error(r, 503, "out of memory");
    return;
  }
  memcpy(sorted, h->proxies, h->nproxies * sizeof(*sorted));
  qsort(sorted, h->nproxies, sizeof(*sorted), by_name);
  json_t *o = json_object();
  for (size_t i = 0; i < h->nproxies; i++)
    json_object_set_new(o, sorted[i]->name, proxy_to_json(sorted[i]));
  free(sorted);
  reply_json(r, 200, o);
}

static void proxy_create(req_ctx_t *r) {
  json_t *body = parse_body(r);
  if (body == NULL)
    return;
  proxy_input_t in;
  int status;
  char err[ERRLEN];
  if (read_proxy(body, "", &in, &status, err, sizeof(err)) != 0) {
    reply_error(r, status, err);
    json_decref(body);
    return;
  }
  if (harness_find(r->h, in.name) != NULL) {
    reply_error(r, 409, "proxy already exists");
  } else {
    hproxy_t *p = create_proxy(r->h, &in, &status, err, sizeof(err));
    if (p == NULL) {
      reply_error(r, status, err);
    } else {
      uint64_t failures = cynic__json_alloc_failures();
      reply_json(r, 201, proxy_to_json(p));
      if (r->resp->status != 201 || cynic__json_alloc_failures() != failures) {
        /* The answer could not be built whole: undo, so that a 503 means
         * nothing changed (found by tests/integration/test_oom.py). */
        harness_proxy_delete(p);
        reply_error(r, 503, "out of memory");
      } else {
        r->resp->checked = true;
      }
    }
  }
  input_free(&in);
  json_decref(body);
}

/* ---- listen names, resolved off the loop --------------------------------- */

/*
 * A request that may start a proxy on a listen host that is not a literal
 * ("localhost:0") first resolves the names it could need with
 * uv_getaddrinfo (libuv's threads), its answer deferred (httpd), and then
 * runs from the start with the results in h->names. The loop never waits for
 * a resolver, and a request runs all at once on the loop, so its checks and
 * effects (populate's all-or-nothing) are as they were. At most
 * API_NAMES_MAX names per request; further ones are "not resolved".
 */
#define API_NAMES_MAX (HARNESS_MAX_PROXIES + 16)

typedef struct resolve_job {
  harness_t *h;
  cynic__httpd_pending_t *pending; /* the deferred answer; NULL for -config */
  bool orphan;                     /* no answer to complete (out of memory) */
  size_t n, left;                  /* names, lookups in flight */
  hname_t *names;
  uv_getaddrinfo_t *reqs;
} resolve_job_t;

static void add_name(resolve_job_t *job, const char *listen) {
  char host[CYNIC_ADDR_HOST_MAX];
  uint16_t port;
  struct sockaddr_storage ss;
  if (listen == NULL || cynic__addr_split(listen, host, sizeof(host), &port) != 0 ||
      host[0] == '\0' || cynic__addr_numeric(host, port, true, &ss))
    return;
  for (size_t i = 0; i < job->n; i++)
    if (strcmp(job->names[i].host, host) == 0)
      return;
  if (job->n == API_NAMES_MAX)
    return;
  snprintf(job->names[job->n].host, sizeof(job->names[job->n].host), "%s", host);
  job->names[job->n].status = UV_EAI_AGAIN;
  job->n++;
}

static void add_names_of(resolve_job_t *job, const json_t *o) {
  const json_t *l = json_is_object(o) ? json_object_get(o, "listen") : NULL;
  if (json_is_string(l))
    add_name(job, json_string_value(l));
}

static void job_free(resolve_job_t *job) {
  if (job == NULL)
    return;
  free(job->names);
  free(job->reqs);
  free(job);
}

/* The names a request with this body could bind: its "listen" fields and
 * those of proxies not listening now (re-enable, reset, refuse removed).
 * NULL when there is none (or out of memory: then they are "not resolved"). */
static resolve_job_t *job_new(harness_t *h, const json_t *body) {
  resolve_job_t *job = calloc(1, sizeof(*job));
  if (job == NULL)
    return NULL;
  job->h = h;
  job->names = calloc(API_NAMES_MAX, sizeof(*job->names));
  if (job->names == NULL)
    goto out_free;
  if (json_is_array(body)) {
    size_t i;
    const json_t *o;
    json_array_foreach(body, i, o) add_names_of(job, o);
  } else {
    add_names_of(job, body);
  }
  for (size_t i = 0; i < h->nproxies; i++)
    if (h->proxies[i]->listener == NULL)
      add_name(job, h->proxies[i]->listen);
  if (job->n == 0)
    goto out_free;
  job->reqs = calloc(job->n, sizeof(*job->reqs));
  if (job->reqs != NULL)
    return job;
out_free:
  job_free(job);
  return NULL;
}

/* Make job's names the ones harness_proxy_listen_address sees while a request runs
 * (h->names), or none (job NULL) once it has run. */
static void use_names(harness_t *h, const resolve_job_t *job) {
  h->names = job != NULL ? job->names : NULL;
  h->nnames = job != NULL ? job->n : 0;
}

static void run_route(harness_t *h, const cynic__http_parser_t *req, cynic__httpd_response_t *resp);

static void job_done(resolve_job_t *job) {
  harness_t *h = job->h;
  if (job->pending != NULL) {
    const cynic__http_parser_t *req = cynic__httpd_pending_request(job->pending);
    if (req != NULL) { /* a client that went away gets nothing applied */
      use_names(h, job);
      run_route(h, req, cynic__httpd_pending_response(job->pending));
      use_names(h, NULL);
    }
    cynic__httpd_complete(job->pending);
  }
  job_free(job);
}

static void on_name(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  resolve_job_t *job = req->data;
  hname_t *n = &job->names[req - job->reqs];
  n->status = status < 0 ? status : UV_EAI_NONAME;
  if (status == 0 && res != NULL) {
    const struct addrinfo *ai = res;
    for (const struct addrinfo *a = res; a; a = a->ai_next)
      if (a->ai_family == AF_INET) { /* as Go's listener prefers, and our tests expect */
        ai = a;
        break;
      }
    if (ai->ai_addrlen <= sizeof(n->ss)) {
      memcpy(&n->ss, ai->ai_addr, ai->ai_addrlen);
      n->status = 0;
    }
  }
  if (res != NULL)
    uv_freeaddrinfo(res);
  if (--job->left == 0 && job->pending != NULL)
    job_done(job);
  else if (job->left == 0 && job->orphan)
    job_free(job);
}

/* Start the lookups on `loop`. Returns how many are in flight (0: all failed
 * at once, their status set; the job is then the caller's). */
static size_t job_start(resolve_job_t *job, uv_loop_t *loop) {
  struct addrinfo hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  for (size_t i = 0; i < job->n; i++) {
    job->reqs[i].data = job;
    int rc = uv_getaddrinfo(loop, &job->reqs[i], on_name, job->names[i].host, NULL, &hints);
    if (rc == 0)
      job->left++;
    else
      job->names[i].status = rc;
  }
  return job->left;
}

/* Shared by POST /populate and -config. Returns the status; `out` gets the
 * proxies applied (in input order). */
static int populate(harness_t *h, const json_t *arr, json_t *out, char *err, size_t errlen) {
  if (!json_is_array(arr)) {
    snprintf(err, errlen, "bad request body: expected a JSON array of proxies");
    return 400;
  }
  size_t n = json_array_size(arr);
  if (n > HARNESS_MAX_PROXIES) {
    snprintf(err, errlen, "too many proxies (at most %d)", HARNESS_MAX_PROXIES);
    return 507;
  }
  proxy_input_t *ins = calloc(n + 1, sizeof(*ins));
  if (ins == NULL) {
    snprintf(err, errlen, "out of memory");
    return 500;
  }
  int status = 0;
  size_t parsed = 0, fresh = 0;
  /* Phase 1: validate everything before changing anything. */
  for (size_t i = 0; i < n; i++) {
    char where[64];
    snprintf(where, sizeof(where), " at proxy %zu", i + 1);
    if (read_proxy(json_array_get(arr, i), where, &ins[i], &status, err, errlen) != 0)
      goto out_free_inputs;
    parsed++;
    for (size_t k = 0; k < i; k++)
      if (strcmp(ins[k].name, ins[i].name) == 0) {
        status = 400;
        snprintf(err, errlen, "duplicate proxy name \"%s\"%s", ins[i].name, where);
        goto out_free_inputs;
      }
    if (harness_find(h, ins[i].name) == NULL)
      fresh++;
  }
  if (h->nproxies + fresh > HARNESS_MAX_PROXIES) {
    status = 507;
    snprintf(err, errlen, "too many proxies (at most %d)", HARNESS_MAX_PROXIES);
    goto out_free_inputs;
  }
  /* A listen name that did not resolve fails the whole request up front
   * (all or nothing), as a bind failure would. */
  for (size_t i = 0; i < n; i++) {
    struct sockaddr_storage ss;
    char lerr[ERRLEN];
    if (ins[i].enabled &&
        harness_proxy_listen_address(h, ins[i].listen, &ss, lerr, sizeof(lerr)) != 0) {
      status = 500;
      snprintf(err, errlen, "%s at proxy %zu", lerr, i + 1);
      goto out_free_inputs;
    }
  }
  /* Phase 2: apply. An identical existing proxy is kept as it is. */
  for (size_t i = 0; i < n; i++) {
    hproxy_t *old = harness_find(h, ins[i].name);
    if (old != NULL && strcmp(old->listen, ins[i].listen) == 0 &&
        strcmp(old->upstream, ins[i].upstream) == 0) {
      json_array_append_new(out, proxy_to_json(old));
      continue;
    }
    if (old != NULL)
      harness_proxy_delete(old);
    hproxy_t *p = create_proxy(h, &ins[i], &status, err, errlen);
    if (p == NULL)
      goto out_free_inputs;
    json_array_append_new(out, proxy_to_json(p));
  }
  status = 201;
out_free_inputs:
  for (size_t i = 0; i < parsed; i++)
    input_free(&ins[i]);
  free(ins);
  return status;
}

static void populate_handler(req_ctx_t *r) {
  json_t *body = parse_body(r);
  if (body == NULL)
    return;
  json_t *list = json_array();
  char err[ERRLEN];
  int status = populate(r->h, body, list, err, sizeof(err));
  json_decref(body);
  json_t *o = json_object();
  if (status != 201) {
    json_object_set_new(o, "error", cynic__json_text0(err));
    json_object_set_new(o, "status", json_integer(status));
  }
  json_object_set_new(o, "proxies", list);
  reply_json(r, status, o);
}

int harness_api_load_config(harness_t *h, const char *text, size_t len, char *err, size_t errlen) {
  json_error_t e;
  json_t *v = json_loadb(text, len, 0, &e);
  if (v == NULL) {
    snprintf(err, errlen, "line %d, column %d: %s", e.line, e.column, e.text);
    return -1;
  }
  /* Startup, before the loop serves anything: the names resolve on libuv's
   * threads, all at once, driven by a private loop. */
  uv_loop_t tmp;
  resolve_job_t *job = NULL;
  if (uv_loop_init(&tmp) == 0) {
    job = job_new(h, v);
    if (job != NULL && job_start(job, &tmp) > 0)
      uv_run(&tmp, UV_RUN_DEFAULT);
    uv_loop_close(&tmp);
  }
  use_names(h, job);
  json_t *list = json_array();
  int status = populate(h, v, list, err, errlen);
  use_names(h, NULL);
  job_free(job);
  json_decref(list);
  json_decref(v);
  return status == 201 ? 0 : -1;
}

static void reset_handler(req_ctx_t *r) {
  harness_t *h = r->h;
  for (size_t i = 0; i < h->nproxies; i++) {
    hproxy_t *p = h->proxies[i];
    char err[ERRLEN];
    if (!p->enabled && harness_proxy_start(p, err, sizeof(err)) != 0) {
      reply_error(r, 500, err);
      return;
    }
    while (p->ntoxics > 0)
      harness_proxy_remove_toxic(p, p->toxics[p->ntoxics - 1]);
  }
  reply_empty(r, 204);
}

static void proxy_update(req_ctx_t *r, hproxy_t *p) {
  json_t *body = parse_body(r);
  if (body == NULL)
    return;
  char detail[256], err[ERRLEN];
  const char *listen = p->listen, *upstream = p->upstream;
  bool enabled = p->enabled;
  if (!json_is_object(body)) {
    reply_error(r, 400, "bad request body: expected a JSON object");
    goto out;
  }
  if (cynic__json_get_string(body, "listen", &listen, detail, sizeof(detail)) < 0 ||
      cynic__json_get_string(body, "upstream", &upstream, detail, sizeof(detail)) < 0 ||
      cynic__json_get_bool(body, "enabled", &enabled, detail, sizeof(detail)) < 0) {
    snprintf(err, sizeof(err), "bad request body: %s", detail);
    reply_error(r, 400, err);
    goto out;
  }
  if (!addr_valid(listen) || !addr_valid(upstream)) {
    reply_error(r, 400, "bad request body: listen and upstream must be host:port");
    goto out;
  }
  if (strcmp(listen, p->listen) != 0 || strcmp(upstream, p->upstream) != 0) {
    char l[HARNESS_ADDR_MAX], u[HARNESS_ADDR_MAX];
    snprintf(l, sizeof(l), "%s", listen); /* may point into p */
    snprintf(u, sizeof(u), "%s", upstream);
    harness_proxy_stop(p);
    memcpy(p->listen, l, sizeof(l));
    memcpy(p->upstream, u, sizeof(u));
  }
  if (enabled && p->listener == NULL) {
    if (harness_proxy_start(p, err, sizeof(err)) != 0) {
      reply_error(r, 500, err);
      goto out;
    }
  } else if (!enabled && p->enabled) {
    harness_proxy_stop(p);
  }
  reply_json(r, 200, proxy_to_json(p));
out:
  json_decref(body);
}

static void toxic_index(req_ctx_t *r, hproxy_t *p) {
  json_t *o = proxy_to_json(p);
  json_t *a = json_incref(json_object_get(o, "toxics"));
  json_decref(o);
  reply_json(r, 200, a);
}

static void toxic_create(req_ctx_t *r, hproxy_t *p) {
  json_t *body = parse_body(r);
  if (body == NULL)
    return;
  char err[ERRLEN];
  int status;
  toxic_t *t = malloc(sizeof(*t));
  if (t == NULL) {
    reply_error(r, 503, "out of memory");
  } else if (harness_toxic_from_json(body, t, &status, err, sizeof(err)) != 0) {
    reply_error(r, status, err);
  } else if (harness_proxy_find_toxic(p, t->name) != NULL) {
    reply_error(r, 409, "toxic already exists");
  } else if (p->ntoxics == HARNESS_MAX_TOXICS) {
    snprintf(err, sizeof(err), "too many toxics (at most %d per proxy)", HARNESS_MAX_TOXICS);
    reply_error(r, 507, err);
  } else {
    /* The answer first: a toxic is added only when it can be told whole. */
    uint64_t failures = cynic__json_alloc_failures();
    reply_json(r, 200, harness_toxic_to_json(t));
    if (r->resp->status == 200 && cynic__json_alloc_failures() == failures) {
      harness_proxy_add_toxic(p, t);
      t = NULL;
      r->resp->checked = true;
    } else {
      reply_error(r, 503, "out of memory");
    }
  }
  harness_toxic_free(t); /* released already when parsing failed */
  json_decref(body);
}

static void toxic_update(req_ctx_t *r, hproxy_t *p, toxic_t *t) {
  json_t *body = parse_body(r);
  if (body == NULL)
    return;
  toxic_t next;
  int status;
  char err[ERRLEN];
  if (harness_toxic_update_json(body, t, &next, &status, err, sizeof(err)) != 0) {
    reply_error(r, status, err);
  } else {
    harness_toxic_release(t);
    *t = next; /* the toxic now owns next's strings */
    harness_proxy_update_toxic(p, t);
    reply_json(r, 200, harness_toxic_to_json(t));
  }
  json_decref(body);
}

static void version_handler(req_ctx_t *r) {
  r->resp->status = 200;
  r->resp->content_type = "application/json;charset=utf-8";
  cynic__buf_printf(&r->resp->body, "{\"version\": \"%s+cynic.%s\"}\n", HARNESS_TOXIPROXY_VERSION,
                    CYNIC_VERSION_STRING);
}

/*
 * -runtime-metrics: Toxiproxy adds the Go client's runtime collectors there.
 * A C program has no Go runtime; the honest equivalent is the Prometheus
 * process collector's families (same names, types and HELP as client_golang's
 * collectors.NewProcessCollector), read from /proc/self on each scrape.
 * A family whose source cannot be read is left out, as the Go collector does.
 * Blocking reads of procfs on the loop: a few microseconds, scrape-rate only.
 */
static bool read_small_file(const char *path, char *buf, size_t cap) {
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return false;
  size_t n = fread(buf, 1, cap - 1, f);
  fclose(f);
  buf[n] = '\0';
  return n > 0;
}

/* Seconds since the epoch at boot ("btime" in /proc/stat); 0 if unknown.
 * /proc/stat has no fixed size: "btime" comes after a line per CPU and the
 * "intr" line (a count per interrupt, tens of KiB on a large machine), so it
 * is read a line at a time through a small buffer rather than whole into a
 * fixed one, which would cut it off there. Found once, then remembered (it
 * cannot change while the system runs; one loop thread). */
static unsigned long long boot_time(void) {
  static unsigned long long btime;
  if (btime != 0)
    return btime;
  FILE *f = fopen("/proc/stat", "r");
  if (f == NULL)
    return 0;
  char line[256];
  bool line_start = true; /* line[] begins a line (a long one comes in pieces) */
  while (fgets(line, sizeof(line), f) != NULL) {
    if (line_start && strncmp(line, "btime ", 6) == 0) {
      btime = strtoull(line + 6, NULL, 10);
      break;
    }
    line_start = strchr(line, '\n') != NULL;
  }
  fclose(f);
  return btime;
}

static void family(cynic__buf_t *b, const char *name, const char *type, const char *help) {
  cynic__buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void process_metrics(cynic__buf_t *b) {
  char stat[1024];
  long ticks = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
  const char *rp =
      read_small_file("/proc/self/stat", stat, sizeof(stat)) ? strrchr(stat, ')') : NULL;
  /* Fields after "pid (comm)": 3 state ... 14 utime 15 stime ... 22 starttime
   * 23 vsize 24 rss (proc(5)); comm may hold spaces, so count from its ')'. */
  unsigned long long f[25] = {0};
  int nf = 0;
  if (rp != NULL && ticks > 0 && page > 0) {
    char *end = (char *)rp + 1;
    for (int i = 3; i <= 24; i++) {
      while (*end == ' ')
        end++;
      if (*end == '\0')
        break;
      f[i] = i == 3 ? 0 : strtoull(end, &end, 10);
      if (i == 3)
        end++; /* the state letter */
      nf = i;
    }
  }
  if (nf == 24) {
    family(b, "process_cpu_seconds_total", "counter",
           "Total user and system CPU time spent in seconds.");
    cynic__buf_printf(b, "process_cpu_seconds_total %.2f\n", (double)(f[14] + f[15]) / ticks);
  }
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    family(b, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
    cynic__buf_printf(b, "process_max_fds %llu\n", (unsigned long long)rl.rlim_cur);
  }
  DIR *fds = opendir("/proc/self/fd");
  if (fds != NULL) {
    unsigned long long open = 0;
    for (struct dirent *e; (e = readdir(fds)) != NULL;)
      if (e->d_name[0] != '.')
        open++;
    closedir(fds);
    family(b, "process_open_fds", "gauge", "Number of open file descriptors.");
    cynic__buf_printf(b, "process_open_fds %llu\n", open);
  }
  if (nf == 24) {
    family(b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    cynic__buf_printf(b, "process_resident_memory_bytes %llu\n", f[24] * (unsigned long long)page);
  }
  unsigned long long btime = nf == 24 ? boot_time() : 0;
  if (btime != 0) {
    family(b, "process_start_time_seconds", "gauge",
           "Start time of the process since unix epoch in seconds.");
    cynic__buf_printf(b, "process_start_time_seconds %.2f\n",
                      (double)btime + (double)f[22] / (double)ticks);
  }
  if (nf == 24) {
    family(b, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
    cynic__buf_printf(b, "process_virtual_memory_bytes %llu\n", f[23]);
  }
  if (getrlimit(RLIMIT_AS, &rl) == 0) {
    family(b, "process_virtual_memory_max_bytes", "gauge",
           "Maximum amount of virtual memory available in bytes.");
    /* RLIM_INFINITY is the largest uint64, printed as the Go client prints it. */
    if (rl.rlim_cur == RLIM_INFINITY)
      cynic__buf_puts(b, "process_virtual_memory_max_bytes 1.8446744073709552e+19\n");
    else
      cynic__buf_printf(b, "process_virtual_memory_max_bytes %llu\n",
                        (unsigned long long)rl.rlim_cur);
  }
}

/* GET /metrics: Toxiproxy's proxy families with -proxy-metrics, the process
 * families with -runtime-metrics (the route exists when either is on). */
static void metrics_handler(req_ctx_t *r) {
  harness_t *h = r->h;
  r->resp->status = 200;
  r->resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
  cynic__buf_t *b = &r->resp->body;
  if (h->runtime_metrics)
    process_metrics(b);
  if (!h->proxy_metrics)
    return;
  static const char *dirs[2] = {"upstream", "downstream"};
  cynic__buf_puts(b, "# HELP toxiproxy_proxy_received_bytes_total The total bytes received "
                     "from the source, per proxy and direction.\n"
                     "# TYPE toxiproxy_proxy_received_bytes_total counter\n");
  for (size_t i = 0; i < h->nproxies; i++)
    for (int d = 0; d < 2; d++)
      cynic__buf_printf(b,
                        "toxiproxy_proxy_received_bytes_total{direction=\"%s\",listener=\"%s\","
                        "proxy=\"%s\",upstream=\"%s\"} %llu\n",
                        dirs[d], h->proxies[i]->listen, h->proxies[i]->name,
                        h->proxies[i]->upstream, (unsigned long long)h->proxies[i]->bytes_in[d]);
  cynic__buf_puts(b, "# HELP toxiproxy_proxy_sent_bytes_total The total bytes sent to the "
                     "destination, per proxy and direction.\n"
                     "# TYPE toxiproxy_proxy_sent_bytes_total counter\n");
  for (size_t i = 0; i < h->nproxies; i++)
    for (int d = 0; d < 2; d++)
      cynic__buf_printf(b,
                        "toxiproxy_proxy_sent_bytes_total{direction=\"%s\",listener=\"%s\","
                        "proxy=\"%s\",upstream=\"%s\"} %llu\n",
                        dirs[d], h->proxies[i]->listen, h->proxies[i]->name,
                        h->proxies[i]->upstream, (unsigned long long)h->proxies[i]->bytes_out[d]);
  /* cynic's own: connections per proxy. */
  cynic__buf_puts(b, "# HELP cynic_harness_connections_active Proxied connections open now.\n"
                     "# TYPE cynic_harness_connections_active gauge\n");
  for (size_t i = 0; i < h->nproxies; i++)
    cynic__buf_printf(b, "cynic_harness_connections_active{proxy=\"%s\"} %zu\n",
                      h->proxies[i]->name, h->proxies[i]->nconns);
  cynic__buf_puts(b, "# HELP cynic_harness_connections_total Connections accepted.\n"
                     "# TYPE cynic_harness_connections_total counter\n");
  for (size_t i = 0; i < h->nproxies; i++)
    cynic__buf_printf(b, "cynic_harness_connections_total{proxy=\"%s\"} %llu\n",
                      h->proxies[i]->name, (unsigned long long)h->proxies[i]->conn_seq);
}

/* A query value of decimal digits only (no sign, no space, no exponent: what
 * strtoull would take beyond that, "-1" or " 3", is not a number here), at
 * most `max`; the value ends at '&', '#' or the string's end. Leading zeros
 * are dropped first, so any number of them is fine. */
static bool query_uint(const char *v, uint64_t max, uint64_t *out) {
  size_t n = strcspn(v, "&#");
  while (n > 1 && v[0] == '0') {
    v++;
    n--;
  }
  uint64_t x;
  if (!cynic__http_parse_length(v, n, &x) || x > max)
    return false; /* more than 19 digits is above any max: never wraps */
  *out = x;
  return true;
}

static void events_handler(req_ctx_t *r) {
  const char *url = r->req->url.data ? r->req->url.data : "";
  const char *q = strchr(url, '?');
  uint64_t since = 0, limit = 1000;
  char proxy[HARNESS_NAME_MAX + 1];
  bool by_proxy = false;
  for (const char *p = q; p != NULL && *p; p = strchr(p + 1, '&')) {
    const char *kv = p + 1;
    if (strncmp(kv, "since=", 6) == 0) {
      /* ids are JSON int64s (and harness_events_dump adds 1 to since) */
      if (!query_uint(kv + 6, EVENTS_ID_MAX, &since)) {
        reply_error(r, 400, "since must be an event id: 0..9223372036854775807");
        return;
      }
    } else if (strncmp(kv, "proxy=", 6) == 0) {
      size_t n = strcspn(kv + 6, "&");
      if (cynic__http_pct_decode(kv + 6, n, proxy, sizeof(proxy)) != 0 ||
          !harness_name_valid(proxy)) {
        reply_error(r, 400, "proxy must be a proxy name");
        return;
      }
      by_proxy = true;
    } else if (strncmp(kv, "limit=", 6) == 0) {
      if (!query_uint(kv + 6, EVENTS_PAGE_MAX, &limit) || limit == 0) {
        reply_error(r, 400, "limit must be 1..10000");
        return;
      }
    }
  }
  r->resp->status = 200;
  r->resp->content_type = "application/x-ndjson";
  if (harness_events_dump(&r->h->events, since, (size_t)limit, by_proxy ? proxy : NULL,
                          &r->resp->body) != 0) {
    cynic__buf_reset(&r->resp->body);
    reply_error(r, 500, "response too large");
  }
}

/* ---- routing ------------------------------------------------------------- */

#define MAX_SEGS 4
#define SEG_MAX (HARNESS_NAME_MAX * 3 + 1)

static bool is(const req_ctx_t *r, const char *m) {
  return strcmp(r->method, m) == 0;
}

static void not_allowed(req_ctx_t *r) {
  reply_error(r, 405, "method not allowed");
}

static void route(req_ctx_t *r);

static void run_route(harness_t *h, const cynic__http_parser_t *req,
                      cynic__httpd_response_t *resp) {
  req_ctx_t r = {h, req, resp, cynic__http_method(req)};
  route(&r);
  if (cynic__log_enabled(CYNIC_LOG_DEBUG))
    /* the URL is the client's bytes: cynic__json_text keeps the line JSON */
    cynic__log(CYNIC_LOG_DEBUG, "api request",
               json_pack("{s:s,s:o,s:i,s:i}", "method", r.method, "url",
                         cynic__json_text0(req->url.data), "status", resp->status, "bytes",
                         (int)resp->body.len));
}

void harness_api_handle(void *arg, const cynic__http_parser_t *req, cynic__httpd_response_t *resp) {
  harness_t *h = arg;
  const char *m = cynic__http_method(req);
  if (strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0) {
    /* A request that may bind a listen name waits for it off the loop. */
    json_error_t e;
    const cynic__buf_t *b = &req->body;
    json_t *body = json_loadb(b->data ? b->data : "", b->len, JSON_DECODE_ANY, &e);
    resolve_job_t *job = job_new(h, body);
    json_decref(body);
    if (job != NULL) {
      if (job_start(job, h->loop) == 0) { /* nothing in flight: run now */
        use_names(h, job);
        run_route(h, req, resp);
        use_names(h, NULL);
        job_free(job);
        return;
      }
      /* Answered from job_done; without memory to defer, the job is freed
       * when its lookups end. */
      job->pending = cynic__httpd_defer(resp);
      if (job->pending != NULL)
        return;
      job->orphan = true;
      req_ctx_t r = {h, req, resp, m};
      reply_error(&r, 503, "out of memory");
      return;
    }
  }
  run_route(h, req, resp);
}

static void route(req_ctx_t *rp) {
  req_ctx_t r = *rp; /* the response is reached through r.resp */
  const cynic__http_parser_t *req = r.req;
  size_t ualen = 0;
  const char *ua = cynic__http_header(req, "User-Agent", &ualen);
  if (ua != NULL && ualen >= 8 && strncmp(ua, "Mozilla/", 8) == 0) {
    /* Toxiproxy refuses browsers: a web page must not drive the harness. */
    reply_error(&r, 403, "User agent not allowed");
    return;
  }
  const char *url = req->url.data ? req->url.data : "";
  size_t pathlen = strcspn(url, "?#");
  char segs[MAX_SEGS][SEG_MAX];
  size_t nsegs = 0;
  if (pathlen == 0 || url[0] != '/') {
    reply_error(&r, 404, "not found");
    return;
  }
  const char *p = url + 1, *end = url + pathlen;
  while (p <= end) {
    const char *slash = memchr(p, '/', (size_t)(end - p));
    const char *stop = slash ? slash : end;
    if (nsegs == MAX_SEGS || stop == p ||
        cynic__http_pct_decode(p, (size_t)(stop - p), segs[nsegs], SEG_MAX) != 0) {
      reply_error(&r, 404, "not found");
      return;
    }
    nsegs++;
    if (slash == NULL)
      break;
    p = slash + 1;
  }
  harness_t *h = r.h;
  if (nsegs == 1 && strcmp(segs[0], "proxies") == 0) {
    if (is(&r, "GET"))
      proxy_index(&r);
    else if (is(&r, "POST"))
      proxy_create(&r);
    else
      not_allowed(&r);
    return;
  }
  if (nsegs == 1 && strcmp(segs[0], "reset") == 0) {
    is(&r, "POST") ? reset_handler(&r) : not_allowed(&r);
    return;
  }
  if (nsegs == 1 && strcmp(segs[0], "populate") == 0) {
    is(&r, "POST") ? populate_handler(&r) : not_allowed(&r);
    return;
  }
  if (nsegs == 1 && strcmp(segs[0], "version") == 0) {
    is(&r, "GET") ? version_handler(&r) : not_allowed(&r);
    return;
  }
  if (nsegs == 1 && strcmp(segs[0], "events") == 0) {
    is(&r, "GET") ? events_handler(&r) : not_allowed(&r);
    return;
  }
  if (nsegs == 1 && strcmp(segs[0], "metrics") == 0 && (h->proxy_metrics || h->runtime_metrics)) {
    is(&r, "GET") ? metrics_handler(&r) : not_allowed(&r);
    return;
  }
  if (nsegs >= 2 && nsegs <= 4 && strcmp(segs[0], "proxies") == 0 &&
      (nsegs == 2 || strcmp(segs[2], "toxics") == 0)) {
    bool known_method = is(&r, "GET") || is(&r, "POST") || is(&r, "PATCH") || is(&r, "DELETE");
    if (nsegs == 3 && !(is(&r, "GET") || is(&r, "POST"))) {
      not_allowed(&r);
      return;
    }
    if (!known_method) {
      not_allowed(&r);
      return;
    }
    hproxy_t *px = harness_find(h, segs[1]);
    if (px == NULL) {
      reply_error(&r, 404, "proxy not found");
      return;
    }
    if (nsegs == 2) {
      if (is(&r, "GET"))
        reply_json(&r, 200, proxy_to_json(px));
      else if (is(&r, "DELETE")) {
        harness_proxy_delete(px);
        reply_empty(&r, 204);
      } else
        proxy_update(&r, px);
      return;
    }
    if (nsegs == 3) {
      is(&r, "GET") ? toxic_index(&r, px) : toxic_create(&r, px);
      return;
    }
    toxic_t *t = harness_proxy_find_toxic(px, segs[3]);
    if (t == NULL) {
      reply_error(&r, 404, "toxic not found");
      return;
    }
    if (is(&r, "GET"))
      reply_json(&r, 200, harness_toxic_to_json(t));
    else if (is(&r, "DELETE")) {
      harness_proxy_remove_toxic(px, t);
      reply_empty(&r, 204);
    } else
      toxic_update(&r, px, t);
    return;
  }
  reply_error(&r, 404, "not found");
}
