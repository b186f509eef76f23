/* gate.c: request order on an HTTP/1.1 connection, and the ordering of the
 * harness's answers with the upstream's responses (see gate.h). */
#include "gate.h"

#include <stdlib.h>

struct gate {
  /* The client's requests as read, before any toxic. */
  llhttp_t req;
  bool req_on;       /* following them (off: not HTTP, upgraded, or a gate_new gate) */
  bool req_paused;   /* GATE_WINDOW requests outstanding: stopped at `pend` */
  uint64_t requests; /* requests begun */
  block_t *pend;     /* bytes read while paused and not yet followed (a reference) */
  size_t pend_off, pend_len;
  /* The upstream's responses as read. */
  llhttp_t up;
  bool up_on;
  uint64_t up_last; /* request the current (or last) upstream response answers */
  /* The client's responses as written. */
  llhttp_t out;
  bool lost;            /* they stopped parsing as HTTP: no more waiting */
  uint64_t delivered;   /* complete responses written to the client */
  bool waiting;         /* a reader or a stage waits for the window to move */
  bool moved;           /* ... and it moved (gate_take_moved) */
  chunk_t *head, *tail; /* waiting answers; chunk->t holds the fallback time */
  /* Bit i % GATE_WINDOW describes request i, for delivered <= i < delivered + WINDOW. */
  uint8_t head_bits[GATE_WINDOW / 8];     /* request i was HEAD */
  uint8_t answered_bits[GATE_WINDOW / 8]; /* request i is answered by the harness */
};

static bool in_window(const gate_t *g, uint64_t i) {
  return i >= g->delivered && i - g->delivered < GATE_WINDOW;
}

static bool get_bit(const gate_t *g, const uint8_t *bits, uint64_t i) {
  return in_window(g, i) && ((bits[(i % GATE_WINDOW) / 8] >> (i % 8)) & 1);
}

static void put_bit(uint8_t *bits, uint64_t i, bool on) {
  uint8_t m = (uint8_t)(1u << (i % 8));
  uint8_t *b = &bits[(i % GATE_WINDOW) / 8];
  *b = on ? (uint8_t)(*b | m) : (uint8_t)(*b & ~m);
}

static void block_unref(block_t *b) {
  if (b != NULL && --b->refs == 0)
    free(b);
}

/* ---- the client's requests ----------------------------------------------- */

static int req_begin(llhttp_t *p) {
  ((gate_t *)p->data)->requests++;
  return 0;
}

static int req_headers(llhttp_t *p) {
  gate_t *g = p->data;
  if (p->method == HTTP_HEAD && in_window(g, g->requests - 1))
    put_bit(g->head_bits, g->requests - 1, true);
  return 0;
}

/* Past the window the gate stops here (and link.c stops reading). */
static int req_complete(llhttp_t *p) {
  gate_t *g = p->data;
  return g->requests >= g->delivered + GATE_WINDOW ? HPE_PAUSED : 0;
}

static void follow_requests(gate_t *g, block_t *blk, size_t off, size_t n) {
  const char *p = blk->data + off;
  llhttp_errno_t e = llhttp_execute(&g->req, p, n);
  if (e == HPE_OK)
    return;
  if (e != HPE_PAUSED) {
    g->req_on = false; /* not HTTP (or switched protocols): stop following */
    return;
  }
  size_t at = (size_t)(llhttp_get_error_pos(&g->req) - p);
  g->req_paused = true;
  g->waiting = true;
  if (at < n) {
    blk->refs++;
    g->pend = blk;
    g->pend_off = off + at;
    g->pend_len = n - at;
  }
}

static void resume_requests(gate_t *g) {
  llhttp_resume(&g->req);
  g->req_paused = false;
  block_t *b = g->pend;
  g->pend = NULL;
  if (b != NULL) {
    follow_requests(g, b, g->pend_off, g->pend_len);
    block_unref(b);
  }
}

/* ---- the upstream's responses --------------------------------------------- */

static bool interim(const llhttp_t *p) {
  return p->status_code >= 100 && p->status_code < 200 && p->status_code != 101;
}

static int up_headers(llhttp_t *p) {
  gate_t *g = p->data;
  if (interim(p))
    return 0;
  g->up_last = gate_claim(g, g->up_last);
  return gate_head(g, g->up_last) ? 1 : 0; /* a HEAD's response has no body */
}

/* ---- the client's responses ----------------------------------------------- */

static int out_headers(llhttp_t *p) {
  gate_t *g = p->data;
  return gate_head(g, g->delivered) ? 1 : 0;
}

static int out_complete(llhttp_t *p) {
  gate_t *g = p->data;
  if (interim(p)) /* a 100 Continue answers no request on its own */
    return 0;
  put_bit(g->head_bits, g->delivered, false);
  put_bit(g->answered_bits, g->delivered, false);
  g->delivered++;
  if (g->waiting) {
    g->waiting = false;
    g->moved = true;
  }
  return HPE_PAUSED;
}

/* ---- life ----------------------------------------------------------------- */

static llhttp_settings_t req_settings, up_settings, out_settings;
static bool settings_ready; /* one loop thread */

gate_t *gate_new(void) {
  if (!settings_ready) {
    llhttp_settings_init(&req_settings);
    req_settings.on_message_begin = req_begin;
    req_settings.on_headers_complete = req_headers;
    req_settings.on_message_complete = req_complete;
    llhttp_settings_init(&up_settings);
    up_settings.on_headers_complete = up_headers;
    llhttp_settings_init(&out_settings);
    out_settings.on_headers_complete = out_headers;
    out_settings.on_message_complete = out_complete;
    settings_ready = true;
  }
  gate_t *g = calloc(1, sizeof(*g));
  if (g == NULL)
    return NULL;
  llhttp_init(&g->req, HTTP_REQUEST, &req_settings);
  llhttp_init(&g->up, HTTP_RESPONSE, &up_settings);
  llhttp_init(&g->out, HTTP_RESPONSE, &out_settings);
  g->req.data = g->up.data = g->out.data = g;
  g->up_last = GATE_NONE;
  return g;
}

void gate_free(gate_t *g, hdir_t *d) {
  if (g == NULL)
    return;
  while (g->head != NULL) {
    chunk_t *c = g->head;
    g->head = c->next;
    d->buffered -= c->len;
    block_unref(c->blk);
    free(c);
  }
  block_unref(g->pend);
  free(g);
}

/* Could this be the start of a request? (A method is upper-case letters;
 * binary protocols fail here without a parser or an allocation.) */
static bool may_be_request(const char *p, size_t n) {
  return n > 0 && p[0] >= 'A' && p[0] <= 'Z';
}

int gate_read(gate_t **gp, int stream, bool first, block_t *blk, size_t off, size_t n) {
  gate_t *g = *gp;
  if (stream == STREAM_UPSTREAM) {
    if (first) {
      bool fresh = g == NULL;
      if (!may_be_request(blk->data + off, n))
        return 0;
      if (fresh && (g = gate_new()) == NULL)
        return -1;
      g->req_on = g->up_on = true;
      follow_requests(g, blk, off, n);
      if (fresh && !g->req_on) { /* not HTTP: no gate, no further cost */
        gate_free(g, NULL);
        return 0;
      }
      *gp = g;
      return 0;
    }
    if (g == NULL || !g->req_on)
      return 0;
    if (g->req_paused) {
      /* Read while the window was full (link.c stops reading, so at most a
       * read already under way): stop following rather than buffer more. */
      g->req_on = false;
      block_unref(g->pend);
      g->pend = NULL;
      return 0;
    }
    follow_requests(g, blk, off, n);
    return 0;
  }
  if (g == NULL || !g->up_on)
    return 0;
  llhttp_errno_t e = llhttp_execute(&g->up, blk->data + off, n);
  if (e != HPE_OK)
    g->up_on = false;
  return 0;
}

bool gate_full(const gate_t *g) {
  return g != NULL && g->req_on && g->req_paused;
}

bool gate_take_moved(gate_t *g) {
  bool m = g->moved;
  g->moved = false;
  return m;
}

/* ---- for stages ----------------------------------------------------------- */

uint64_t gate_claim(const gate_t *g, uint64_t after) {
  uint64_t i = after + 1; /* GATE_NONE + 1 == 0 */
  /* Requests already answered to the client were all passed on by every
   * stage; one a stage has not seen was answered by the harness. */
  if (i < g->delivered)
    i = g->delivered;
  while (get_bit(g, g->answered_bits, i))
    i++;
  return i;
}

bool gate_room(gate_t *g, uint64_t i) {
  if (i < g->delivered + GATE_WINDOW)
    return true;
  g->waiting = true;
  return false;
}

void gate_answered(gate_t *g, uint64_t i) {
  if (in_window(g, i))
    put_bit(g->answered_bits, i, true);
}

bool gate_head(const gate_t *g, uint64_t i) {
  return get_bit(g, g->head_bits, i);
}

bool gate_footing(const gate_t *g, int stream, llhttp_t *parser, uint64_t *last) {
  const llhttp_t *src;
  if (stream == STREAM_UPSTREAM) {
    *last = g->requests > 0 ? g->requests - 1 : GATE_NONE;
    if (!g->req_on || g->req_paused)
      return false;
    src = &g->req;
  } else {
    *last = g->up_last;
    if (!g->up_on)
      return false;
    src = &g->up;
  }
  void *data = parser->data, *settings = parser->settings;
  *parser = *src; /* llhttp's state is the struct: a copy parses on from here */
  parser->data = data;
  parser->settings = settings;
  return true;
}

/* ---- the gate ------------------------------------------------------------- */

void gate_note_request(gate_t *g, uint64_t index, bool head) {
  if (!g->req_on && in_window(g, index))
    put_bit(g->head_bits, index, head);
}

uint64_t gate_delivered(const gate_t *g) {
  return g->delivered;
}

void gate_push(gate_t *g, chunk_t *answer, uint64_t need, uint64_t now) {
  answer->next = NULL;
  answer->need = need;
  answer->t = now + GATE_FALLBACK_NS;
  /* Kept in request order: stages further down the chain answer earlier
   * requests after a stage before them answered later ones. O(waiting), at
   * most GATE_WINDOW answers since stages wait past the window. */
  chunk_t **at = &g->head;
  while (*at != NULL && (*at)->need <= need) {
    at = &(*at)->next;
  }
  answer->next = *at;
  *at = answer;
  if (answer->next == NULL)
    g->tail = answer;
}

chunk_t *gate_pop_due(gate_t *g, uint64_t now) {
  chunk_t *c = g->head;
  if (c == NULL || !(g->lost || c->need <= g->delivered || now >= c->t))
    return NULL;
  g->head = c->next;
  if (g->head == NULL)
    g->tail = NULL;
  c->next = NULL;
  return c;
}

uint64_t gate_deadline(const gate_t *g) {
  return g->head != NULL ? g->head->t : UINT64_MAX;
}

size_t gate_scan(gate_t *g, const char *p, size_t n) {
  size_t off = 0;
  while (!g->lost && off < n) {
    llhttp_errno_t e = llhttp_execute(&g->out, p + off, n - off);
    if (e == HPE_OK)
      return n;
    if (e != HPE_PAUSED) {
      g->lost = true; /* not HTTP: stop counting, let the answers go */
      return n;
    }
    size_t at = (size_t)(llhttp_get_error_pos(&g->out) - p);
    llhttp_resume(&g->out);
    off = at;
    /* A response went out: the window moved. */
    if (g->req_paused && g->requests < g->delivered + GATE_WINDOW)
      resume_requests(g);
    if (g->head != NULL && g->head->need <= g->delivered && at < n)
      return at; /* an answer goes here, between two responses */
  }
  return n;
}
