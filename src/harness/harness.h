/*
 * harness.h: cynic-harness's shared state and the objects the modules pass
 * around. The harness is the book's Test Harness pattern: a TCP proxy that
 * misbehaves on purpose, driven over a Toxiproxy-compatible HTTP API.
 *
 * Threading: everything runs on one libuv loop. The control API and the data
 * plane share that loop but the API never waits for data: adding or removing a
 * toxic edits every live connection's chain in place, O(connections), with no
 * locks and no hand-off (Toxiproxy's API blocks until every link goroutine
 * acknowledges the change, which is how it stalls under traffic).
 *
 * Ownership: harness_t owns the proxies; a proxy owns its toxics and its
 * listener; a connection owns its chunks and stages. A connection unlinks
 * itself from its proxy the moment it starts closing and never touches the
 * proxy again, so a proxy can be freed while its connections finish closing.
 *
 * Naming (STYLE.md): every non-static function of the harness carries the
 * harness_ prefix (harness_gate_push, harness_link_close, ...); static ones
 * carry none; shared code from src/common is cynic__.
 */
#ifndef CYNIC_HARNESS_H
#define CYNIC_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "addr.h"
#include "buf.h"
#include "events.h"
#include "httpd.h"

/* Hard caps (Steady State). */
#define HARNESS_MAX_PROXIES 1000     /* proxies in the registry */
#define HARNESS_MAX_TOXICS 32        /* toxics per proxy, both streams */
#define HARNESS_MAX_CONNS 4096       /* live proxied connections, all proxies */
#define HARNESS_NAME_MAX 128         /* bytes in a proxy or toxic name */
#define HARNESS_ADDR_MAX 300         /* bytes in a listen/upstream string */
#define LINK_BUFFER_MAX (256u << 10) /* bytes held per direction before reading stops */
#define LINK_QUEUE_MAX 64            /* chunks per stage queue */
#define LINK_WRITES_MAX 16           /* uv_write requests in flight per direction */
#define TOXIC_MAX_ATTRS 4
#define TOXIC_STR_MAX 1024 /* bytes in a string attribute */

#define HARNESS_TOXIPROXY_VERSION "2.12.0"

typedef struct harness harness_t;
typedef struct hproxy hproxy_t;
typedef struct hconn hconn_t;
typedef struct toxic toxic_t;
typedef struct toxic_type toxic_type_t;

enum { STREAM_UPSTREAM = 0, STREAM_DOWNSTREAM = 1 };

/* A toxic as the API sees it; stages on live connections point at it. */
struct toxic {
  char name[HARNESS_NAME_MAX + 1];
  const toxic_type_t *type;
  int stream;      /* STREAM_UPSTREAM (client->server) or STREAM_DOWNSTREAM */
  double toxicity; /* share of connections affected (<= 0 never, >= 1 always), rolled once each */
  int64_t attr[TOXIC_MAX_ATTRS]; /* in the order of type->attr_names */
  char *str[TOXIC_MAX_ATTRS];    /* string attributes, same order; heap, NULL = "" */
  uint32_t version;              /* bumped by every update; part of the toxicity roll's key */
};

struct hproxy {
  harness_t *h;
  char name[HARNESS_NAME_MAX + 1];
  char listen[HARNESS_ADDR_MAX];   /* as bound once started ("127.0.0.1:PORT") */
  char upstream[HARNESS_ADDR_MAX]; /* resolved per connection */
  bool enabled;
  toxic_t *toxics[HARNESS_MAX_TOXICS]; /* creation order */
  size_t ntoxics;
  uv_tcp_t *listener; /* NULL when not listening; freed in its close callback */
  hconn_t *conns;     /* live connections, doubly linked */
  size_t nconns;
  uint64_t conn_seq;                  /* connections accepted so far: keys the seeded RNG */
  uint64_t bytes_in[2], bytes_out[2]; /* per stream: read from source, written to sink */
};

/* A listen host name resolved off the loop (api.c) for the request being run. */
typedef struct hname {
  char host[CYNIC_ADDR_HOST_MAX];
  int status;                 /* 0, or a libuv error (UV_EAI_NONAME, ...) */
  struct sockaddr_storage ss; /* the address, port 0 */
} hname_t;

struct harness {
  uv_loop_t *loop;
  /* Names resolved for the API request now running: the loop never waits
   * for a resolver, so a request that needs a name waits for it first (api.c)
   * and harness_proxy_start only looks names up here. NULL outside such a run. */
  const hname_t *names;
  size_t nnames;
  uint64_t seed;
  bool proxy_metrics;
  bool runtime_metrics;                   /* GET /metrics also serves the process families */
  hproxy_t *proxies[HARNESS_MAX_PROXIES]; /* unordered; the API sorts by name */
  size_t nproxies;
  size_t nconns;
  uint64_t next_conn_id;
  cynic__httpd_t api;
  events_t events;
};

/* ---- proxy.c: registry, listeners, accept, dial -------------------------- */
hproxy_t *harness_find(harness_t *h, const char *name);
/* Create (not started) and register; NULL if out of memory. Caller checks caps. */
hproxy_t *harness_proxy_new(harness_t *h, const char *name, const char *listen,
                            const char *upstream);
/* Start listening. 0 or a libuv error; `err` gets a message like Toxiproxy's.
 * A listen host that is not a literal must be in h->names (else an error). */
int harness_proxy_start(hproxy_t *p, char *err, size_t errlen);
/* The address `listen` (host:port) binds: a literal, or a name from h->names.
 * 0, or a libuv error with `err` filled ("listen tcp ...: lookup ...: ..."). */
int harness_proxy_listen_address(const harness_t *h, const char *listen,
                                 struct sockaddr_storage *ss, char *err, size_t errlen);
/* Stop listening and close every live connection. */
void harness_proxy_stop(hproxy_t *p);
/* Stop, unregister and free the proxy and its toxics. */
void harness_proxy_delete(hproxy_t *p);
/* Add a toxic (already validated, unique name) to the proxy and every live
 * connection. The proxy takes ownership. */
void harness_proxy_add_toxic(hproxy_t *p, toxic_t *t);
/* Remove and free a toxic; live connections deliver what it held back. */
void harness_proxy_remove_toxic(hproxy_t *p, toxic_t *t);
/* The toxic's attributes or toxicity changed: live connections re-roll. */
void harness_proxy_update_toxic(hproxy_t *p, toxic_t *t);
toxic_t *harness_proxy_find_toxic(hproxy_t *p, const char *name);

/* ---- link.c: a proxied connection's data plane --------------------------- */
/* Take an accepted client socket and dial the upstream. */
void harness_link_accept(hproxy_t *p, uv_stream_t *listener);
/* Close a connection (graceful FIN, or RST when `reset`). */
void harness_link_close(hconn_t *c, bool reset);
void harness_link_add_toxic(hconn_t *c, toxic_t *t);
void harness_link_remove_toxic(hconn_t *c, toxic_t *t);
void harness_link_update_toxic(hconn_t *c, toxic_t *t);
/* Free the process-wide read block (at exit). */
void harness_link_global_free(void);
/* Next connection in a proxy's list (for iteration that may close). */
hconn_t *harness_link_next(hconn_t *c);

/* ---- api.c --------------------------------------------------------------- */
void harness_api_handle(void *arg, const cynic__http_parser_t *req, cynic__httpd_response_t *resp);
/* Load a JSON array of proxies (with optional toxics), as POST /populate. 0 or
 * -1 with `err` filled. */
int harness_api_load_config(harness_t *h, const char *text, size_t len, char *err, size_t errlen);

/* ---- rng ----------------------------------------------------------------- */
/* splitmix64: a tiny, well-mixed generator; every random choice of the data
 * plane draws from a stream keyed by (seed, proxy, connection, toxic) so runs
 * with the same -seed and the same traffic decide the same way regardless of
 * timing. */
static inline uint64_t rng_next(uint64_t *state) {
  uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));
  z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
  return z ^ (z >> 31);
}
/* Uniform in [0, 1). */
static inline double rng_unit(uint64_t *state) {
  return (double)(rng_next(state) >> 11) * (1.0 / 9007199254740992.0);
}
/* Uniform in [lo, hi] (lo <= hi). */
static inline int64_t rng_range(uint64_t *state, int64_t lo, int64_t hi) {
  uint64_t span = (uint64_t)(hi - lo) + 1;
  return span == 0 ? (int64_t)rng_next(state) : lo + (int64_t)(rng_next(state) % span);
}
/* FNV-1a over a string, folded into a key. */
static inline uint64_t rng_mix(uint64_t key, const char *s) {
  uint64_t hsh = UINT64_C(0xcbf29ce484222325) ^ key;
  for (; *s; s++)
    hsh = (hsh ^ (unsigned char)*s) * UINT64_C(0x100000001b3);
  uint64_t st = hsh;
  return rng_next(&st);
}

#endif
