/*
 * src/proxy/session.c: what the daemon does to every client session whatever
 * its mode, through the session ops (drain, an operator's trip, a reload's
 * sweep), and the table of modes a listener dispatches on.
 *
 * Each walk is O(sessions) and runs on a rare event only; closing does not
 * unlink a session (freeing does, in a later close callback), so the walks
 * may close as they go.
 */
#include "session.h"
#include "http_session.h"
#include "tcp.h"

const cynic__mode_t *cynic__mode_for(cynic__config_mode_t mode) {
  switch (mode) {
  case CYNIC__MODE_HTTP:
    return &cynic__http_mode;
  case CYNIC__MODE_TCP:
  default:
    return &cynic__tcp_mode;
  }
}

void cynic__sessions_close_all(cynic__proxy_t *p, const char *why) {
  cynic__link_t *l = p->sessions.next;
  while (l != &p->sessions) {
    cynic__link_t *next = l->next;
    cynic__session_t *s = cynic__container_of(l, cynic__session_t, link);
    s->ops->close(s, why);
    l = next;
  }
}

void cynic__sessions_drain(cynic__proxy_t *p) {
  cynic__link_t *l = p->sessions.next;
  while (l != &p->sessions) {
    cynic__link_t *next = l->next;
    cynic__session_t *s = cynic__container_of(l, cynic__session_t, link);
    if (s->ops->drain != NULL)
      s->ops->drain(s);
    l = next;
  }
}

size_t cynic__sessions_close_endpoint(cynic__proxy_t *p, const cynic__endpoint_t *e,
                                      const char *why) {
  size_t n = 0;
  cynic__link_t *l = p->sessions.next;
  while (l != &p->sessions) {
    cynic__link_t *next = l->next;
    cynic__session_t *s = cynic__container_of(l, cynic__session_t, link);
    if (s->ops->uses_endpoint(s, e)) {
      s->ops->close(s, why);
      n++;
    }
    l = next;
  }
  return n;
}

void cynic__sessions_mark_in_use(const cynic__proxy_t *p, bool *listeners, bool *upstreams) {
  for (const cynic__link_t *l = p->sessions.next; l != &p->sessions; l = l->next) {
    const cynic__session_t *s = cynic__container_of(l, cynic__session_t, link);
    if (s->listener != NULL)
      listeners[s->listener - p->listeners] = true;
    if (s->upstream != NULL)
      upstreams[s->upstream - p->upstreams] = true;
    if (s->ops->mark_in_use != NULL)
      s->ops->mark_in_use(s, listeners, upstreams);
  }
}
