/*
 * src/proxy/reload.c: SIGHUP and POST /reload: read the config file again and
 * apply it without dropping a connection.
 *
 * The new file is loaded and checked first; a bad one is refused whole (every
 * error in the answer and the log) and the old config keeps serving.
 *
 * Listeners and upstreams that the new file adds are created in free slots
 * (the arrays have room for the most a config may hold, so nothing moves;
 * vacant slots are reused first), all or nothing: a listener that cannot
 * bind undoes the whole reload (409). A listener the new file no longer has
 * is retired: it stops accepting at once, its open connections finish with
 * it, and it keeps its slot and a copy of its part of the config while
 * anything points to it; /status lists it as retired, /metrics leaves it
 * out (its name may come back). cynic__reload_sweep() (every reload and
 * once a second) then frees the slot and the copy: the slot is vacant
 * (retired, cfg NULL) until a reload reuses it (Steady State: a process may
 * be reloaded any number of times).
 *
 * What changed, and so what each object needs, comes from config_copy.c:
 * every field of a listener, upstream, log and admin part has a class there
 * (cynic__config_change_t) and cynic__config_*_diff() returns the classes of
 * what differs, so a new field cannot be missed here. This file prepares a
 * reload and decides which objects are kept, rebuilt, added or retired; each
 * module applies its own part: listener.c the kept listeners' rate and
 * per-client tables, their upstream and socket options
 * (cynic__listeners_reload_*), upstream.c the breakers a rebuilt upstream
 * carries over and a kept one's config (cynic__upstream_carry, _cfg_set),
 * accesslog.c the new files, daemon.c the log file, level and rotation
 * (cynic__proxy_log_*), admin.c the token and the admin address. Everything
 * that can fail is prepared first, in that order, and undone on the first
 * failure; only then is anything applied.
 *
 * What a reload applies in place, today: every value read per connection or
 * per decision - timeouts, keepalive, listener max_connections and
 * max_connections_per_client limits, balance, `required`, admin
 * drain_timeout and token_file (the token is read again), log level. The
 * listeners keep their sockets and open connections; the upstreams keep their
 * breakers (state, bucket, counters) and bulkheads.
 *
 * Upstreams removed, or rebuilt because their endpoints, breaker, bulkhead
 * or resolve_interval changed, are retired the same way: a rebuilt one gets a
 * new object (new breakers and bulkhead) that its listeners send new clients
 * to; the old one's connections and queued clients finish with it. The new
 * breakers of endpoints the old object had start where the old ones stand
 * (cynic_breaker_carry: manual overrides with who/why/since, open ones open).
 *
 * A kept listener's access_log and rate_limit change in place (a new file
 * opened, a new rate table made, before anything changes).
 *
 * The log file may change too (checked that it opens first; a line in the old
 * file says where the log went), and so may log.rotate (the check timer is
 * started, stopped or restarted; it reads the config in use).
 *
 * A listener whose mode or buffer changed at the same address is rebuilt:
 * a new object takes over the old one's listening socket (a second
 * descriptor for it, cynic__listener_adopt), then the old one closes its
 * descriptor and is retired like a removed one (its connections and their
 * buffers finish with it). The socket never closes: no client is refused.
 *
 * A new admin address is bound before anything changes (failure refuses the
 * whole reload, 409 with the error); the old admin listener answers the
 * request that asked for the reload and closes a moment after.
 *
 * Nothing needs a restart any more; a reload is refused with 409 (nothing
 * applied) when something it needs cannot be had: an address in use, a file
 * that does not open, memory.
 *
 * While cynic is still starting (first host-name resolutions pending, no
 * listener bound yet) a reload applies too: upstreams are added, rebuilt and
 * retired as at any time, the retired ones' pending first resolutions are no
 * longer waited for, and the listeners are bound by serve() from the new
 * config when nothing is left to wait for (at once, when the new endpoints
 * are addresses).
 *
 * Ownership: the config the process started with belongs to main.c; a
 * reloaded one belongs to the proxy (p->reloaded_cfg) and is freed when the
 * next reload replaces it or after the loop ends. Nothing keeps a pointer into
 * a replaced config: every cfg pointer is swapped in one loop tick, and the
 * transition ring and logs copy what they need.
 */
#include <stdio.h>
#include <string.h>

#include "accesslog.h"
#include "admin.h"
#include "err.h"
#include "health.h"
#include "log.h"
#include "reload.h"
#include "token.h"

#define WHY_MAX 512

/* True when listener `nl` is at another address than `ol`. */
static bool moved(const cynic__config_listener_t *ol, const cynic__config_listener_t *nl) {
  return (cynic__config_listener_diff(ol, nl) & CYNIC__CHANGE_ADDRESS) != 0;
}

/* True when upstream `nu` needs a new object: `o` does not have it, or a
 * field whose objects cannot change in place did (endpoints, breaker,
 * bulkhead, resolve_interval: CYNIC__CHANGE_REBUILD in config_copy.c). */
static bool upstream_rebuilt(const cynic__config_t *o, const cynic__config_upstream_t *nu) {
  const cynic__config_upstream_t *ou = cynic__config_upstream_find(o, nu->name);
  return ou == NULL || (cynic__config_upstream_diff(ou, nu) & CYNIC__CHANGE_REBUILD) != 0;
}

/* True when a listener made from `ol` stays the object for `nl` (NULL: the new
 * file does not have it): same address, mode and buffer (its buffer pool and
 * its connections are sized by it). */
static bool listener_kept(const cynic__config_listener_t *ol, const cynic__config_listener_t *nl) {
  return nl != NULL && (cynic__config_listener_diff(ol, nl) &
                        (CYNIC__CHANGE_ADDRESS | CYNIC__CHANGE_REBUILD)) == 0;
}

/* True when `n` has listener `lc` at another address than `o` has it (or `o`
 * does not have it), or with another mode or buffer: it gets a new listener
 * object of its own (at the same address, on the old one's socket). */
static bool is_new_listener(const cynic__config_t *o, const cynic__config_listener_t *lc) {
  const cynic__config_listener_t *ol = cynic__config_listener_find(o, lc->name);
  return ol == NULL || !listener_kept(ol, lc);
}

/* The proxy's listener in use named `name` among the first `count` slots. */
static cynic__listener_t *listener_named(cynic__proxy_t *p, size_t count, const char *name) {
  for (size_t i = 0; i < count; i++)
    if (!p->listeners[i].retired && !p->listeners[i].fresh &&
        strcmp(p->listeners[i].cfg->name, name) == 0)
      return &p->listeners[i];
  return NULL;
}

/* A free upstream slot for a reload's new object: a vacant one whose timer
 * libuv has let go of, else the next unused one; NULL when all
 * CYNIC__CONFIG_MAX_UPSTREAMS are taken (by objects in use or retired ones
 * still finishing connections). Marked fresh. */
static cynic__upstream_t *take_upstream_slot(cynic__proxy_t *p) {
  cynic__upstream_t *u = NULL;
  for (size_t i = 0; i < p->upstream_count && u == NULL; i++)
    if (p->upstreams[i].cfg == NULL && !p->upstreams[i].timer_open)
      u = &p->upstreams[i];
  if (u == NULL && p->upstream_count < CYNIC__CONFIG_MAX_UPSTREAMS)
    u = &p->upstreams[p->upstream_count++];
  if (u != NULL) {
    memset(u, 0, sizeof *u);
    u->fresh = true;
  }
  return u;
}

static cynic__listener_t *take_listener_slot(cynic__proxy_t *p) {
  cynic__listener_t *l = NULL;
  for (size_t i = 0; i < p->listener_count && l == NULL; i++)
    if (p->listeners[i].cfg == NULL && !p->listeners[i].handle_open)
      l = &p->listeners[i];
  if (l == NULL && p->listener_count < CYNIC__CONFIG_MAX_LISTENERS)
    l = &p->listeners[p->listener_count++];
  if (l != NULL) {
    memset(l, 0, sizeof *l);
    l->fresh = true;
  }
  return l;
}

/* The upstream a new listener forwards to: one this reload makes, else the
 * one in use. */
static cynic__upstream_t *upstream_for(cynic__proxy_t *p, const char *name) {
  cynic__upstream_t *found = NULL;
  for (size_t i = 0; i < p->upstream_count; i++) {
    cynic__upstream_t *u = &p->upstreams[i];
    if (!u->retired && strcmp(u->cfg->name, name) == 0 && (found == NULL || u->fresh))
      found = u;
  }
  return found;
}

/* Creates the upstreams and binds the listeners that `n` adds, in free slots
 * (vacant ones first), all or nothing: on the first failure what was made
 * is undone (its slots left vacant), *why says what failed, and the proxy
 * serves as before. On success their host names are being resolved. */
static int add_new(cynic__proxy_t *p, const cynic__config_t *o, const cynic__config_t *n, char *why,
                   size_t len, json_t *added, bool starting) {
  cynic__upstream_t *made_u[CYNIC__CONFIG_MAX_UPSTREAMS];
  cynic__listener_t *made_l[CYNIC__CONFIG_MAX_LISTENERS];
  size_t nu = 0, nl = 0;
  int rc = 0;
  for (size_t i = 0; i < n->upstream_count && rc == 0; i++) {
    if (!upstream_rebuilt(o, &n->upstreams[i]))
      continue;
    /* the one it replaces, before the new one is among the candidates */
    const cynic__upstream_t *old = cynic__upstream_named(p, n->upstreams[i].name);
    cynic__upstream_t *u = take_upstream_slot(p);
    if (u == NULL) {
      snprintf(why, len,
               "no room for upstream '%s': all %u places are taken (a retired upstream frees "
               "its place once its connections have finished)",
               n->upstreams[i].name, (unsigned)CYNIC__CONFIG_MAX_UPSTREAMS);
      rc = CYNIC_EFULL;
      break;
    }
    made_u[nu++] = u;
    if ((rc = cynic__upstream_init(p, u, &n->upstreams[i])) != 0)
      snprintf(why, len, "upstream '%s': %s", n->upstreams[i].name, cynic__strerror(rc));
    else
      cynic__upstream_carry(u, old);
  }
  /* While starting no listener exists yet: serve() binds those of the config
   * in use once the first resolutions are done. */
  for (size_t i = 0; i < n->listener_count && rc == 0 && !starting; i++) {
    const cynic__config_listener_t *lc = &n->listeners[i];
    if (!is_new_listener(o, lc))
      continue;
    /* the same address: the new object takes over the old one's socket */
    const cynic__config_listener_t *ol = cynic__config_listener_find(o, lc->name);
    cynic__listener_t *from =
        ol != NULL && !moved(ol, lc) ? listener_named(p, p->listener_count, lc->name) : NULL;
    cynic__listener_t *l = take_listener_slot(p);
    if (l == NULL) {
      snprintf(why, len,
               "no room for listener '%s': all %u places are taken (a retired listener frees "
               "its place once its connections have finished)",
               lc->name, (unsigned)CYNIC__CONFIG_MAX_LISTENERS);
      rc = CYNIC_EFULL;
      break;
    }
    made_l[nl++] = l;
    rc = cynic__listener_setup(p, l, lc, upstream_for(p, lc->upstream_name));
    if (rc != 0) {
      snprintf(why, len, "listener '%s': %s", lc->name, cynic__strerror(rc));
    } else if (from != NULL) {
      if ((rc = cynic__listener_adopt(p, l, from)) != 0)
        snprintf(why, len, "listener '%s' cannot take over the socket on %s: %s", lc->name,
                 from->address, cynic__strerror(rc));
    } else if ((rc = cynic__listener_bind(p, l)) != 0) {
      snprintf(why, len, "listener '%s' cannot listen on %s: %s", lc->name, lc->listen.text,
               cynic__strerror(rc));
    }
  }
  if (rc != 0) {
    /* vacant again; reused once libuv has closed their handles */
    for (size_t i = 0; i < nl; i++) {
      cynic__listener_discard(made_l[i]);
      made_l[i]->cfg = NULL, made_l[i]->upstream = NULL;
      made_l[i]->fresh = false, made_l[i]->retired = true;
    }
    for (size_t i = 0; i < nu; i++) {
      cynic__upstream_discard(made_u[i]);
      made_u[i]->cfg = NULL;
      made_u[i]->fresh = false, made_u[i]->retired = true;
    }
    return rc;
  }
  json_t *us = json_array(), *ls = json_array();
  /* still fresh: retire() and swap() tell them from the ones they replace;
   * cynic__reload clears the flag after */
  for (size_t i = 0; i < nu; i++) {
    cynic__upstream_resolve_start(p, made_u[i]);
    json_array_append_new(us, json_string(made_u[i]->cfg->name));
  }
  for (size_t i = 0; i < nl; i++)
    json_array_append_new(ls, json_string(made_l[i]->cfg->name));
  json_object_set_new(added, "upstreams", us);
  json_object_set_new(added, "listeners", ls);
  return 0;
}

/* Frees the copy a retired object had, if it is one (otherwise it pointed
 * into a pinned config, freed at exit). */
static void release_listener_cfg(cynic__proxy_t *p, const cynic__config_listener_t *c) {
  for (size_t i = 0; i < p->retired_listener_cfg_count; i++)
    if (p->retired_listener_cfgs[i] == c) {
      cynic__config_listener_free(p->retired_listener_cfgs[i]);
      p->retired_listener_cfgs[i] = p->retired_listener_cfgs[--p->retired_listener_cfg_count];
      return;
    }
}

static void release_upstream_cfg(cynic__proxy_t *p, const cynic__config_upstream_t *c) {
  for (size_t i = 0; i < p->retired_upstream_cfg_count; i++)
    if (p->retired_upstream_cfgs[i] == c) {
      cynic__config_upstream_free(p->retired_upstream_cfgs[i]);
      p->retired_upstream_cfgs[i] = p->retired_upstream_cfgs[--p->retired_upstream_cfg_count];
      return;
    }
}

void cynic__reload_sweep(cynic__proxy_t *p) {
  if (p->stopping || p->listeners == NULL || p->upstreams == NULL)
    return;
  bool lused[CYNIC__CONFIG_MAX_LISTENERS] = {false};
  bool uused[CYNIC__CONFIG_MAX_UPSTREAMS] = {false};
  cynic__sessions_mark_in_use(p, lused, uused);
  for (size_t i = 0; i < p->listener_count; i++) {
    cynic__listener_t *l = &p->listeners[i];
    if (!l->retired || l->cfg == NULL || l->open > 0 || lused[i])
      continue;
    const cynic__config_listener_t *c = l->cfg;
    char name[CYNIC__CONFIG_MAX_NAME + 1];
    snprintf(name, sizeof name, "%s", c->name);
    if (!cynic__listener_reclaim(l))
      continue; /* its handle is still closing: the next sweep */
    release_listener_cfg(p, c);
    cynic__log_event(CYNIC_LOG_INFO, "listener_reclaimed", "retired listener's place freed",
                     json_pack("{s:s}", "listener", name));
  }
  for (size_t i = 0; i < p->listener_count; i++)
    if (p->listeners[i].cfg != NULL && p->listeners[i].upstream != NULL)
      uused[p->listeners[i].upstream - p->upstreams] = true; /* a retired one's, too */
  for (size_t i = 0; i < p->upstream_count; i++) {
    cynic__upstream_t *u = &p->upstreams[i];
    if (!u->retired || u->cfg == NULL || uused[i] || !cynic__list_empty(&u->waiters) ||
        u->borrowed > 0)
      continue;
    const cynic__config_upstream_t *c = u->cfg;
    char name[CYNIC__CONFIG_MAX_NAME + 1];
    snprintf(name, sizeof name, "%s", c->name);
    if (!cynic__upstream_reclaim(u))
      continue; /* its timer or a resolution is still closing: the next sweep */
    release_upstream_cfg(p, c);
    cynic__log_event(CYNIC_LOG_INFO, "upstream_reclaimed", "retired upstream's place freed",
                     json_pack("{s:s}", "upstream", name));
  }
  cynic__accesslog_sweep(p); /* after the reclaims: a freed listener's file may go */
}

void cynic__reload_free(cynic__proxy_t *p) {
  for (size_t i = 0; i < p->retired_listener_cfg_count; i++)
    cynic__config_listener_free(p->retired_listener_cfgs[i]);
  for (size_t i = 0; i < p->retired_upstream_cfg_count; i++)
    cynic__config_upstream_free(p->retired_upstream_cfgs[i]);
  for (size_t i = 0; i < p->pinned_count; i++)
    cynic__config_free(p->pinned_cfgs[i]);
  p->retired_listener_cfg_count = p->retired_upstream_cfg_count = p->pinned_count = 0;
}

/* Listeners of the first `nl` that `n` no longer has: they stop accepting at
 * once and are left to their open connections (which keep their listener and
 * its config); their names go into `removed`. Returns how many retired
 * objects still point into the config being replaced (a copy could not be
 * made): then it must be kept. */
static size_t retire(cynic__proxy_t *p, const cynic__config_t *n, size_t nl, json_t *removed) {
  size_t count = 0;
  for (size_t i = 0; i < nl; i++) {
    cynic__listener_t *l = &p->listeners[i];
    if (l->retired || l->fresh)
      continue;
    const cynic__config_listener_t *lc = cynic__config_listener_find(n, l->cfg->name);
    if (listener_kept(l->cfg, lc))
      continue; /* kept; one that moved or was rebuilt is replaced by its new listener */
    cynic__listener_close(l);
    l->retired = true;
    json_array_append_new(removed, json_string(l->cfg->name));
    json_t *f = json_pack("{s:s, s:s, s:i}", "listener", l->cfg->name, "address", l->address,
                          "connections", (int)l->open);
    if (f != NULL && lc != NULL && moved(l->cfg, lc))
      json_object_set_new(f, "moved_to", json_string(lc->listen.text));
    else if (f != NULL && lc != NULL) /* its socket goes on in the new object */
      json_object_set_new(f, "rebuilt", json_true());
    cynic__log_event(CYNIC_LOG_INFO, "listener_removed", "listener removed", f);
    /* a slot is used at most once, so the copies fit their array */
    cynic__config_listener_t *copy = cynic__config_listener_copy(l->cfg);
    if (copy != NULL && p->retired_listener_cfg_count < CYNIC__CONFIG_MAX_LISTENERS) {
      l->cfg = copy;
      p->retired_listener_cfgs[p->retired_listener_cfg_count++] = copy;
    } else {
      if (copy != NULL)
        cynic__config_listener_free(copy);
      count++; /* still points into the old config */
    }
  }
  return count;
}

static bool removes_listeners(const cynic__proxy_t *p, const cynic__config_t *n) {
  for (size_t i = 0; i < p->listener_count; i++) {
    const cynic__listener_t *l = &p->listeners[i];
    if (!l->retired && !listener_kept(l->cfg, cynic__config_listener_find(n, l->cfg->name)))
      return true;
  }
  return false;
}

static bool adds_anything(const cynic__config_t *o, const cynic__config_t *n) {
  for (size_t i = 0; i < n->listener_count; i++)
    if (is_new_listener(o, &n->listeners[i]))
      return true;
  for (size_t i = 0; i < n->upstream_count; i++)
    if (upstream_rebuilt(o, &n->upstreams[i]))
      return true;
  return false;
}

static bool removes_upstreams(const cynic__proxy_t *p, const cynic__config_t *n) {
  for (size_t i = 0; i < p->upstream_count; i++) {
    const cynic__upstream_t *u = &p->upstreams[i];
    if (u->retired)
      continue;
    const cynic__config_upstream_t *uc = cynic__config_upstream_find(n, u->cfg->name);
    if (uc == NULL || upstream_rebuilt(p->cfg, uc))
      return true;
  }
  return false;
}

/* Upstreams of the first `nu` that `n` no longer has, or has rebuilt: their
 * listeners move to the new object (if any), their open connections and
 * queued clients finish with the old one. Returns how many; names go into
 * `removed`. */
static size_t retire_upstreams(cynic__proxy_t *p, const cynic__config_t *o,
                               const cynic__config_t *n, size_t nu, json_t *removed) {
  size_t count = 0;
  for (size_t i = 0; i < nu; i++) {
    cynic__upstream_t *u = &p->upstreams[i];
    if (u->retired || u->fresh)
      continue;
    const cynic__config_upstream_t *uc = cynic__config_upstream_find(n, u->cfg->name);
    if (uc != NULL && !upstream_rebuilt(o, uc))
      continue;
    uv_timer_stop(&u->resolve_timer); /* an old object needs no fresh addresses */
    u->retired = true;
    json_array_append_new(removed, json_string(u->cfg->name));
    cynic__log_event(CYNIC_LOG_INFO, uc != NULL ? "upstream_rebuilt" : "upstream_removed",
                     uc != NULL ? "upstream rebuilt" : "upstream removed",
                     json_pack("{s:s, s:b}", "upstream", u->cfg->name, "replaced", uc != NULL));
    cynic__config_upstream_t *copy = cynic__config_upstream_copy(u->cfg);
    if (copy != NULL && p->retired_upstream_cfg_count < CYNIC__CONFIG_MAX_UPSTREAMS) {
      cynic__upstream_cfg_set(u, copy);
      p->retired_upstream_cfgs[p->retired_upstream_cfg_count++] = copy;
    } else {
      if (copy != NULL)
        cynic__config_upstream_free(copy);
      count++; /* still points into the old config */
    }
  }
  return count;
}

/* Points every object made before this reload at its part of `n` (the first
 * `nl` listeners and `nu` upstreams). Only objects kept by this reload are
 * left to point at: a kept upstream has the same name and endpoints in the
 * same order (upstream_rebuilt() said so), so endpoint k stays endpoint k. */
static void swap(cynic__proxy_t *p, const cynic__config_t *n, size_t nl, size_t nu) {
  for (size_t i = 0; i < nl; i++) {
    cynic__listener_t *l = &p->listeners[i];
    if (!l->retired && !l->fresh) /* a retired one keeps its own copy */
      l->cfg = cynic__config_listener_find(n, l->cfg->name);
  }
  for (size_t i = 0; i < nu; i++) {
    cynic__upstream_t *u = &p->upstreams[i];
    if (u->retired || u->fresh)
      continue; /* keeps its own copy; a fresh one is made from n */
    cynic__upstream_cfg_set(u, cynic__config_upstream_find(n, u->cfg->name));
  }
  p->cfg = n;
}

/* While starting, serve() waits for the first resolution of every endpoint's
 * host name. A retired upstream's endpoints are no longer waited for: a name
 * that never resolves (a typo the reload fixes) must not hold the start up
 * until its lookup times out. Its lookup still completes (or times out) in
 * libuv's thread pool; the sweep reclaims the slot after. */
static void release_first_resolutions(cynic__proxy_t *p) {
  for (size_t i = 0; i < p->upstream_count; i++) {
    cynic__upstream_t *u = &p->upstreams[i];
    if (!u->retired || u->cfg == NULL)
      continue;
    for (size_t k = 0; k < u->endpoint_count; k++) {
      cynic__endpoint_t *e = &u->endpoints[k];
      if (e->first) {
        e->first = false;
        if (p->first_resolutions > 0)
          p->first_resolutions--;
      }
    }
  }
}

/* Every refusal after the config parsed goes through here, so each one is
 * logged as reload_refused with its reason, however the reload was asked for
 * (POST /reload answers the same reason; SIGHUP has only the log). */
static json_t *refuse(const cynic__proxy_t *p, const char *who, int *status, int code,
                      const char *msg, const char *reason) {
  cynic__log_event(CYNIC_LOG_ERROR, "reload_refused", msg,
                   json_pack("{s:s, s:s, s:s}", "by", who, "file", p->cfg->path, "reason", reason));
  *status = code;
  char text[WHY_MAX + 64];
  snprintf(text, sizeof text, "%s; nothing was applied", reason);
  return json_pack("{s:s, s:i}", "error", text, "status", code);
}

json_t *cynic__reload(cynic__proxy_t *p, const char *who, int *status) {
  static cynic__config_errors_t errs; /* ~10 KB: off the stack */
  cynic__config_t *n = NULL;
  char why[WHY_MAX];
  cynic__reload_sweep(p); /* drained retired objects give their places back first */
  int rc = cynic__config_load(p->cfg->path, &n, &errs);
  if (rc != 0) {
    json_t *list = json_array();
    for (size_t i = 0; i < errs.count; i++) {
      char line[CYNIC__CONFIG_MAX_PATH + CYNIC__CONFIG_MAX_MESSAGE + 32];
      cynic__config_error_format(&errs, i, line, sizeof line);
      json_array_append_new(list, json_string(line));
    }
    if (errs.count == 0)
      json_array_append_new(list, json_string(cynic__strerror(rc)));
    cynic__log_event(CYNIC_LOG_ERROR, "reload_refused",
                     "reload refused: bad config; the old one keeps serving",
                     json_pack("{s:s, s:s, s:O}", "by", who, "file", p->cfg->path, "errors", list));
    *status = 400;
    return json_pack("{s:s, s:i, s:o}", "error", "config refused; the old one keeps serving",
                     "status", 400, "errors", list);
  }
  /* The TLS files first (tls.c): a certificate that does not load, or a key
   * that is not its certificate's, refuses the reload whole; the contexts in
   * use keep serving. */
  static cynic__tls_reload_t tr; /* ~2.5 KB: off the stack; loop thread only */
  if (cynic__tls_prepare(n, &tr, why, sizeof why) != 0) {
    cynic__config_free(n);
    return refuse(p, who, status, 400, "reload refused: a TLS file does not load", why);
  }
  /* Everything that can fail, before anything changes, module by module:
   * the log file (daemon.c), the new access logs (accesslog.c), the kept
   * listeners' new tables (listener.c), the token and a new admin address
   * (admin.c), then the additions. */
  if (cynic__proxy_log_prepare(p, n, why, sizeof why) != 0) {
    cynic__tls_undo(&tr);
    cynic__config_free(n);
    return refuse(p, who, status, 409, "reload refused: cannot open log.file", why);
  }
  if ((rc = cynic__accesslog_open(n, why, sizeof why)) != 0) {
    cynic__tls_undo(&tr);
    cynic__config_free(n);
    return refuse(p, who, status, 409, "reload refused: cannot open an access log", why);
  }
  static cynic__listeners_reload_t lr; /* ~3 KB: off the stack; loop thread only */
  const char *msg = NULL;
  if (cynic__listeners_reload_prepare(p, n, &lr, &msg, why, sizeof why) != 0) {
    cynic__tls_undo(&tr);
    cynic__config_free(n);
    return refuse(p, who, status, 409, msg, why);
  }
  char *token = NULL;
  size_t token_len = 0;
  /* The loader checked the file with the same function; read again here, as
   * it may have changed since (then refused the same way). */
  char twhy[256];
  if (n->admin.token_file != NULL &&
      cynic__token_read(n->admin.token_file, &token, &token_len, twhy, sizeof twhy) != 0) {
    cynic__listeners_reload_undo(&lr);
    snprintf(why, sizeof why, "admin.token_file: '%s' %s", n->admin.token_file, twhy);
    cynic__tls_undo(&tr);
    cynic__config_free(n);
    return refuse(p, who, status, 400, "reload refused: cannot read admin.token_file", why);
  }
  /* A new admin address is bound first (the loader checked the
   * loopback/token rule on it); the old one answers this request and closes
   * after. */
  cynic__httpd_t *new_admin = NULL;
  if ((cynic__config_admin_diff(&p->cfg->admin, &n->admin) & CYNIC__CHANGE_ADMIN_LISTEN) != 0 &&
      cynic__admin_listen_new(p, n, &new_admin, why, sizeof why) != 0) {
    cynic__token_free(token, token_len);
    cynic__listeners_reload_undo(&lr);
    cynic__tls_undo(&tr);
    cynic__config_free(n);
    return refuse(p, who, status, 409, "reload refused: cannot move the admin listener", why);
  }
  /* Additions: made before anything else changes, so a failure (an address
   * in use) leaves everything as it was. */
  json_t *added = json_object();
  bool adds = adds_anything(p->cfg, n);
  bool removes = removes_listeners(p, n) || removes_upstreams(p, n);
  /* Still starting: no listener is bound yet (serve() binds them from the
   * config in use once every first resolution is done), so only upstreams
   * are added and retired here. */
  bool starting = p->listeners == NULL;
  if (adds || removes) {
    char why2[WHY_MAX];
    rc = 0;
    if (adds)
      rc = add_new(p, p->cfg, n, why2, sizeof why2, added, starting);
    if (rc != 0) {
      json_decref(added);
      cynic__admin_listen_undo(new_admin);
      cynic__token_free(token, token_len);
      cynic__listeners_reload_undo(&lr);
      cynic__tls_undo(&tr);
    cynic__config_free(n);
      return refuse(p, who, status, 409, "reload refused: cannot add or remove what it says", why2);
    }
  }
  cynic__admin_token_set(p, token, token_len);
  if (new_admin != NULL)
    cynic__admin_listen_swap(p, new_admin);
  /* Nothing can fail from here on: each module applies its part. */
  cynic__proxy_log_apply(p, n); /* the lines below go to the new log.file */
  json_t *removed = json_array(), *removed_ups = json_array();
  size_t retired = retire(p, n, p->listener_count, removed);
  retired += retire_upstreams(p, p->cfg, n, p->upstream_count, removed_ups);
  if (starting)
    release_first_resolutions(p);
  swap(p, n, p->listener_count, p->upstream_count);
  for (size_t i = 0; i < p->listener_count; i++)
    p->listeners[i].fresh = false;
  for (size_t i = 0; i < p->upstream_count; i++)
    p->upstreams[i].fresh = false;
  cynic__listeners_reload_apply(p, &lr); /* tables, upstreams, socket options */
  cynic__tls_apply(p, n, &tr); /* new certificates for new connections */
  cynic__health_sync(p); /* checks made, restarted (state carried) or stopped */
  /* Retired objects own copies of their config; only when a copy could not
   * be made (no memory) do they point into the config being replaced: keep it
   * then (main.c's first one lives to the end anyway). */
  if (retired > 0 && p->reloaded_cfg != NULL &&
      p->pinned_count < sizeof p->pinned_cfgs / sizeof p->pinned_cfgs[0])
    p->pinned_cfgs[p->pinned_count++] = p->reloaded_cfg;
  else if (retired == 0)
    cynic__config_free(p->reloaded_cfg);
  /* else: out of memory and out of pins: leak it rather than free what is used */
  p->reloaded_cfg = n;
  p->config_unix_ms = cynic__proxy_unix_ms(p);
  p->reloads++;
  cynic__proxy_config_warnings(n); /* deprecated names, in the log in use now */
  cynic__log_event(
      CYNIC_LOG_INFO, "reloaded", "config reloaded",
      json_pack("{s:s, s:s, s:I}", "by", who, "file", n->path, "reloads", (json_int_t)p->reloads));
  *status = 200;
  json_t *answer = json_pack("{s:b, s:s, s:I, s:o, s:{s:o, s:o}}", "reloaded", 1, "file", n->path,
                             "reloads", (json_int_t)p->reloads, "added", added, "removed",
                             "listeners", removed, "upstreams", removed_ups);
  if (answer != NULL && new_admin != NULL) /* where to ask next (port 0 resolved) */
    json_object_set_new(answer, "admin", json_string(p->admin->address));
  if (starting) {
    if (answer != NULL)
      json_object_set_new(answer, "starting", json_true());
    cynic__proxy_serve_if_resolved(p); /* nothing left to wait for: bind now */
  }
  return answer;
}
