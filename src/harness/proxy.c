/* proxy.c: the proxy registry, listeners and toxic bookkeeping. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "addr.h"
#include "harness.h"
#include "log.h"
#include "shed.h"
#include "toxic.h"

hproxy_t *harness_find(harness_t *h, const char *name) {
  for (size_t i = 0; i < h->nproxies; i++)
    if (strcmp(h->proxies[i]->name, name) == 0)
      return h->proxies[i];
  return NULL;
}

hproxy_t *harness_proxy_new(harness_t *h, const char *name, const char *listen,
                            const char *upstream) {
  if (h->nproxies == HARNESS_MAX_PROXIES)
    return NULL;
  hproxy_t *p = calloc(1, sizeof(*p));
  if (p == NULL)
    return NULL;
  p->h = h;
  snprintf(p->name, sizeof(p->name), "%s", name);
  snprintf(p->listen, sizeof(p->listen), "%s", listen);
  snprintf(p->upstream, sizeof(p->upstream), "%s", upstream);
  h->proxies[h->nproxies++] = p;
  return p;
}

static void listener_closed(uv_handle_t *handle) {
  free(handle);
}

static void on_connection(uv_stream_t *listener, int status) {
  hproxy_t *p = listener->data;
  if (status < 0 || p == NULL)
    return;
  harness_link_accept(p, listener);
}

int harness_proxy_listen_address(const harness_t *h, const char *listen,
                                 struct sockaddr_storage *ss, char *err, size_t errlen) {
  char host[CYNIC_ADDR_HOST_MAX];
  uint16_t port;
  if (cynic__addr_split(listen, host, sizeof(host), &port) != 0) {
    snprintf(err, errlen, "listen tcp %s: invalid address", listen);
    return UV_EINVAL;
  }
  if (cynic__addr_numeric(host, port, true, ss))
    return 0;
  /* Never getaddrinfo here: on the loop a slow resolver would stall every
   * proxy. api.c resolved the names this request needs beforehand. */
  for (size_t i = 0; i < h->nnames; i++) {
    const hname_t *n = &h->names[i];
    if (strcmp(n->host, host) != 0)
      continue;
    if (n->status != 0) {
      snprintf(err, errlen, "listen tcp %s: lookup %s: %s", listen, host,
               n->status == UV_EAI_NONAME ? "no such host" : cynic__strerror(n->status));
      return n->status;
    }
    *ss = n->ss;
    ((struct sockaddr_in *)ss)->sin_port = htons(port); /* same offset for v6 */
    return 0;
  }
  snprintf(err, errlen, "listen tcp %s: lookup %s: not resolved", listen, host);
  return UV_EAI_AGAIN;
}

/* A refuse toxic keeps the listener closed while it exists. */
static bool refusing(const hproxy_t *p) {
  for (size_t i = 0; i < p->ntoxics; i++)
    if (p->toxics[i]->type->id == TOXIC_REFUSE)
      return true;
  return false;
}

static void close_listener(hproxy_t *p) {
  if (p->listener != NULL) {
    p->listener->data = NULL;
    cynic__shed_forget((uv_stream_t *)p->listener);
    uv_close((uv_handle_t *)p->listener, listener_closed);
    p->listener = NULL;
  }
}

int harness_proxy_start(hproxy_t *p, char *err, size_t errlen) {
  if (p->listener != NULL || refusing(p)) {
    p->enabled = true;
    return 0;
  }
  struct sockaddr_storage ss;
  int rc = harness_proxy_listen_address(p->h, p->listen, &ss, err, errlen);
  if (rc != 0)
    return rc;
  uv_tcp_t *l = malloc(sizeof(*l));
  if (l == NULL) {
    snprintf(err, errlen, "out of memory");
    return UV_ENOMEM;
  }
  uv_tcp_init(p->h->loop, l);
  l->data = p;
  rc = uv_tcp_bind(l, (struct sockaddr *)&ss, 0);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)l, 511, on_connection);
  if (rc != 0) {
    snprintf(err, errlen, "listen tcp %s: bind: %s", p->listen, cynic__strerror(rc));
    uv_close((uv_handle_t *)l, listener_closed);
    return rc;
  }
  struct sockaddr_storage bound;
  int len = sizeof(bound);
  if (uv_tcp_getsockname(l, (struct sockaddr *)&bound, &len) == 0)
    cynic__addr_format((struct sockaddr *)&bound, p->listen, sizeof(p->listen));
  p->listener = l;
  p->enabled = true;
  json_t *f =
      json_pack("{s:s,s:s,s:s}", "name", p->name, "listen", p->listen, "upstream", p->upstream);
  cynic__log(CYNIC_LOG_INFO, "started proxy", f);
  return 0;
}

void harness_proxy_stop(hproxy_t *p) {
  if (p->listener != NULL) {
    close_listener(p);
    json_t *f = json_pack("{s:s,s:s}", "name", p->name, "listen", p->listen);
    cynic__log(CYNIC_LOG_INFO, "stopped proxy", f);
  }
  p->enabled = false;
  while (p->conns != NULL)
    harness_link_close(p->conns, false);
}

void harness_proxy_delete(hproxy_t *p) {
  harness_t *h = p->h;
  harness_proxy_stop(p);
  for (size_t i = 0; i < p->ntoxics; i++)
    harness_toxic_free(p->toxics[i]);
  for (size_t i = 0; i < h->nproxies; i++)
    if (h->proxies[i] == p) {
      h->proxies[i] = h->proxies[--h->nproxies];
      break;
    }
  free(p);
}

toxic_t *harness_proxy_find_toxic(hproxy_t *p, const char *name) {
  for (size_t i = 0; i < p->ntoxics; i++)
    if (strcmp(p->toxics[i]->name, name) == 0)
      return p->toxics[i];
  return NULL;
}

void harness_proxy_add_toxic(hproxy_t *p, toxic_t *t) {
  p->toxics[p->ntoxics++] = t;
  if (t->type->id == TOXIC_REFUSE)
    close_listener(p);
  for (hconn_t *c = p->conns; c != NULL;) {
    hconn_t *next = harness_link_next(c); /* the toxic may close c at once */
    harness_link_add_toxic(c, t);
    c = next;
  }
}

void harness_proxy_remove_toxic(hproxy_t *p, toxic_t *t) {
  for (hconn_t *c = p->conns; c != NULL;) {
    hconn_t *next = harness_link_next(c);
    harness_link_remove_toxic(c, t);
    c = next;
  }
  for (size_t i = 0; i < p->ntoxics; i++)
    if (p->toxics[i] == t) {
      memmove(&p->toxics[i], &p->toxics[i + 1], (p->ntoxics - i - 1) * sizeof(toxic_t *));
      p->ntoxics--;
      break;
    }
  bool was_refuse = t->type->id == TOXIC_REFUSE;
  harness_toxic_free(t);
  if (was_refuse && p->enabled && !refusing(p)) {
    char err[256];
    if (harness_proxy_start(p, err, sizeof(err)) != 0)
      cynic__log(CYNIC_LOG_ERROR, "cannot listen again after refuse",
                 json_pack("{s:s,s:s}", "name", p->name, "error", err));
  }
}

void harness_proxy_update_toxic(hproxy_t *p, toxic_t *t) {
  t->version++;
  for (hconn_t *c = p->conns; c != NULL;) {
    hconn_t *next = harness_link_next(c);
    harness_link_update_toxic(c, t);
    c = next;
  }
}
