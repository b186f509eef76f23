/*
 * src/proxy/reload.c: SIGHUP and POST /reload: read the config file again and
 * apply it without dropping a connection.
 *
 * The new file is loaded and checked first; a bad one is refused whole (every
 * error in the answer and the log) and the old config keeps serving.
 *
 * What a reload applies in place, today: every value read per connection or
 * per decision - timeouts, keepalive, listener max_connections and
 * max_connections_per_client limits, balance, `required`, admin
 * drain_timeout and token_file (the token is read again), log level. The
 * listeners keep their sockets and open connections; the upstreams keep their
 * breakers (state, bucket, counters) and bulkheads.
 *
 * What needs a restart, and is refused with 409 naming it (nothing applied):
 * listeners or upstreams added, removed or renamed; a listener's address,
 * mode, upstream, buffer or rate_limit; an upstream's endpoints, breaker,
 * bulkhead or resolve_interval; the admin address; the log file. Applying
 * those means rebuilding objects that open connections point to (refcounted
 * listeners and upstreams), which is the next step (docs/status/admin.md).
 *
 * Ownership: the config the process started with belongs to main.c; a
 * reloaded one belongs to the proxy (p->reloaded_cfg) and is freed when the
 * next reload replaces it or after the loop ends. Nothing keeps a pointer into
 * a replaced config: every cfg pointer is swapped in one loop tick, and the
 * transition ring and logs copy what they need.
 */
#include <stdio.h>
#include <string.h>

#include "admin.h"
#include "log.h"

#define WHY_MAX 512

static bool same_str(const char *a, const char *b) {
  if (a == NULL || b == NULL)
    return a == b;
  return strcmp(a, b) == 0;
}

static bool same_breaker(const cynic__config_breaker_t *a, const cynic__config_breaker_t *b) {
  return a->faults == b->faults && a->leak_ns == b->leak_ns && a->open_for_ns == b->open_for_ns &&
         a->open_max_ns == b->open_max_ns && a->open_multiplier == b->open_multiplier &&
         a->half_open_probes == b->half_open_probes && a->window_type == b->window_type &&
         a->window_size == b->window_size && a->window_size_ns == b->window_size_ns &&
         a->window_min_calls == b->window_min_calls && a->failure_rate_pct == b->failure_rate_pct &&
         a->slow_rate_pct == b->slow_rate_pct && a->slow_call_ns == b->slow_call_ns;
}

static const cynic__config_listener_t *find_listener(const cynic__config_t *c, const char *name) {
  for (size_t i = 0; i < c->listener_count; i++)
    if (strcmp(c->listeners[i].name, name) == 0)
      return &c->listeners[i];
  return NULL;
}

static const cynic__config_upstream_t *find_upstream(const cynic__config_t *c, const char *name) {
  for (size_t i = 0; i < c->upstream_count; i++)
    if (strcmp(c->upstreams[i].name, name) == 0)
      return &c->upstreams[i];
  return NULL;
}

/* Fills `why` with the first change a reload cannot apply; false if none. */
static bool needs_restart(const cynic__config_t *o, const cynic__config_t *n, char *why,
                          size_t len) {
#define RESTART(...) return snprintf(why, len, __VA_ARGS__), true
  if (!same_str(o->admin.listen.text, n->admin.listen.text))
    RESTART("admin.listen changed (%s -> %s)", o->admin.listen.text, n->admin.listen.text);
  if (!same_str(o->log.file, n->log.file))
    RESTART("log.file changed");
  if (o->log.rotate_max_bytes != n->log.rotate_max_bytes ||
      o->log.rotate_keep != n->log.rotate_keep)
    RESTART("log.rotate changed");
  for (size_t i = 0; i < o->listener_count; i++)
    if (find_listener(n, o->listeners[i].name) == NULL)
      RESTART("listener '%s' removed", o->listeners[i].name);
  for (size_t i = 0; i < n->listener_count; i++) {
    const cynic__config_listener_t *nl = &n->listeners[i];
    const cynic__config_listener_t *ol = find_listener(o, nl->name);
    if (ol == NULL)
      RESTART("listener '%s' added", nl->name);
    if (!same_str(ol->listen.text, nl->listen.text))
      RESTART("listener '%s': listen changed", nl->name);
    if (ol->mode != nl->mode)
      RESTART("listener '%s': mode changed", nl->name);
    if (!same_str(ol->upstream_name, nl->upstream_name))
      RESTART("listener '%s': upstream changed", nl->name);
    if (!same_str(ol->access_log, nl->access_log))
      RESTART("listener '%s': access_log changed", nl->name);
    if (ol->buffer_bytes != nl->buffer_bytes)
      RESTART("listener '%s': buffer changed", nl->name);
    if (ol->rate_count != nl->rate_count || ol->rate_period_ns != nl->rate_period_ns ||
        ol->rate_burst != nl->rate_burst)
      RESTART("listener '%s': rate_limit changed", nl->name);
    if ((ol->max_connections_per_client == 0) != (nl->max_connections_per_client == 0))
      RESTART("listener '%s': max_connections_per_client turned on or off", nl->name);
  }
  for (size_t i = 0; i < o->upstream_count; i++)
    if (find_upstream(n, o->upstreams[i].name) == NULL)
      RESTART("upstream '%s' removed", o->upstreams[i].name);
  for (size_t i = 0; i < n->upstream_count; i++) {
    const cynic__config_upstream_t *nu = &n->upstreams[i];
    const cynic__config_upstream_t *ou = find_upstream(o, nu->name);
    if (ou == NULL)
      RESTART("upstream '%s' added", nu->name);
    if (ou->endpoint_count != nu->endpoint_count)
      RESTART("upstream '%s': endpoints changed", nu->name);
    for (size_t k = 0; k < nu->endpoint_count; k++)
      if (!same_str(ou->endpoints[k].text, nu->endpoints[k].text))
        RESTART("upstream '%s': endpoints changed", nu->name);
    if (!same_breaker(&ou->breaker, &nu->breaker))
      RESTART("upstream '%s': breaker changed", nu->name);
    if (ou->max_connections != nu->max_connections || ou->max_pending != nu->max_pending)
      RESTART("upstream '%s': bulkhead changed", nu->name);
    if (ou->resolve_interval_ns != nu->resolve_interval_ns)
      RESTART("upstream '%s': resolve_interval changed", nu->name);
  }
  return false;
#undef RESTART
}

/* Points every object at its part of `n`. Same names, same endpoint order:
 * needs_restart() said so. */
static void swap(cynic__proxy_t *p, const cynic__config_t *n) {
  for (size_t i = 0; i < p->listener_count; i++) {
    cynic__listener_t *l = &p->listeners[i];
    l->cfg = find_listener(n, l->cfg->name);
  }
  for (size_t i = 0; i < p->upstream_count; i++) {
    cynic__upstream_t *u = &p->upstreams[i];
    u->cfg = find_upstream(n, u->cfg->name);
    for (size_t k = 0; k < u->endpoint_count; k++)
      u->endpoints[k].addr = &u->cfg->endpoints[k];
  }
  p->cfg = n;
}

json_t *cynic__reload(cynic__proxy_t *p, const char *who, int *status) {
  static cynic__config_errors_t errs; /* ~10 KB: off the stack */
  cynic__config_t *n = NULL;
  char why[WHY_MAX];
  int rc = cynic__config_load(p->cfg->path, &n, &errs);
  if (rc != 0) {
    json_t *list = json_array();
    for (size_t i = 0; i < errs.count; i++) {
      char line[CYNIC__CONFIG_MAX_PATH + CYNIC__CONFIG_MAX_MESSAGE + 32];
      cynic__config_error_format(&errs, i, line, sizeof line);
      json_array_append_new(list, json_string(line));
    }
    if (errs.count == 0)
      json_array_append_new(list, json_string(cynic_strerror(rc)));
    cynic__log(CYNIC_LOG_ERROR, "reload refused: bad config; the old one keeps serving",
               json_pack("{s:s, s:s, s:s, s:O}", "event", "reload_refused", "by", who, "file",
                         p->cfg->path, "errors", list));
    *status = 400;
    return json_pack("{s:s, s:i, s:o}", "error", "config refused; the old one keeps serving",
                     "status", 400, "errors", list);
  }
  if (needs_restart(p->cfg, n, why, sizeof why)) {
    cynic__config_free(n);
    cynic__log(CYNIC_LOG_ERROR, "reload refused: this change needs a restart",
               json_pack("{s:s, s:s, s:s}", "event", "reload_refused", "by", who, "reason", why));
    *status = 409;
    char msg[WHY_MAX + 64];
    snprintf(msg, sizeof msg, "this change needs a restart: %s; nothing was applied", why);
    return json_pack("{s:s, s:i}", "error", msg, "status", 409);
  }
  if (cynic__admin_reload_token(p, n) != 0) {
    cynic__config_free(n);
    *status = 400;
    return json_pack("{s:s, s:i}", "error", "admin.token_file cannot be read; nothing was applied",
                     "status", 400);
  }
  static const cynic_log_level_t levels[] = {
      [CYNIC__LOG_DEBUG] = CYNIC_LOG_DEBUG,
      [CYNIC__LOG_INFO] = CYNIC_LOG_INFO,
      [CYNIC__LOG_WARN] = CYNIC_LOG_WARN,
      [CYNIC__LOG_ERROR] = CYNIC_LOG_ERROR,
  };
  if (n->log.level != p->cfg->log.level)
    cynic__log_set_level(levels[n->log.level]);
  swap(p, n);
  cynic__config_free(p->reloaded_cfg);
  p->reloaded_cfg = n;
  p->config_unix_ms = cynic__unix_ms();
  p->reloads++;
  cynic__log(CYNIC_LOG_INFO, "config reloaded",
             json_pack("{s:s, s:s, s:s, s:I}", "event", "reloaded", "by", who, "file", n->path,
                       "reloads", (json_int_t)p->reloads));
  *status = 200;
  return json_pack("{s:b, s:s, s:I}", "reloaded", 1, "file", n->path, "reloads",
                   (json_int_t)p->reloads);
}
