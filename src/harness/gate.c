/* gate.c: request order on an HTTP/1.1 connection, and the ordering of the
 * harness's answers with the upstream's responses (see gate.h). */
#include "gate.h"

#include <stdlib.h>

struct gate {
  /* The client's requests as read, before any toxic. */
  llhttp_t req;
  bool req_on;       /* following them (off: not HTTP, upgraded, or a harness_gate_new gate) */
  bool req_paused;   /* GATE_WINDOW requests outstanding: stopped at `pend` */
  bool req_began;    /* req_begin paused the parser at a request's first byte */
  uint64_t requests; /* requests begun */
  uint64_t req_at;   /* stream position of the next byte to follow (`pend`'s) */
  block_t *pend;     /* bytes read while paused and not yet followed (a reference) */
  size_t pend_off, pend_len;
  /* Request i began at stream position req_marks[i % GATE_MARKS] (the last
   * GATE_MARKS requests; requests are numbered in order, so i is implicit). */
  uint64_t req_marks[GATE_MARKS];
  /* The upstream's responses as read. */
  llhttp_t up;
  bool up_on;
  bool up_began;     /* up_begin paused the parser at a response's first byte */
  uint64_t up_last;  /* request the current (or last) upstream response answers */
  uint64_t up_at;    /* stream position of the next byte to follow */
  uint64_t up_count; /* responses (interim ones too) begun */
  /* Response j (counting from 0, interim ones too) began at up_marks[j %
   * GATE_MARKS].pos; `last` is up_last then: the request the response before
   * it answered (GATE_NONE: none). */
  struct {
    uint64_t pos, last;
  } up_marks[GATE_MARKS];
  /* The client's responses as written. */
  llhttp_t out;
  bool lost;          /* they stopped parsing as HTTP: no more waiting */
  uint64_t delivered; /* complete responses written to the client */
  bool waiting;       /* a reader or a stage waits for the window to move */
  bool moved;         /* ... and it moved (harness_gate_take_moved) */
  chunk_t *head;      /* waiting answers; chunk->t holds the fallback time */
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

/* ---- the client's requests ----------------------------------------------- */

/* Paused so that follow_requests learns where the request begins. */
static int req_begin(llhttp_t *p) {
  gate_t *g = p->data;
  g->requests++;
  g->req_began = true;
  return HPE_PAUSED;
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

/* Follow n bytes at blk->data[off], the first at stream position g->req_at. */
static void follow_requests(gate_t *g, block_t *blk, size_t off, size_t n) {
  const char *p = blk->data + off;
  uint64_t pos = g->req_at;
  size_t done = 0;
  for (;;) {
    llhttp_errno_t e = llhttp_execute(&g->req, p + done, n - done);
    if (e == HPE_OK) {
      g->req_at = pos + n;
      return;
    }
    if (e != HPE_PAUSED) {
      g->req_on = false; /* not HTTP (or switched protocols): stop following */
      return;
    }
    done = (size_t)(llhttp_get_error_pos(&g->req) - p);
    if (!g->req_began)
      break; /* the window is full */
    g->req_began = false;
    g->req_marks[(g->requests - 1) % GATE_MARKS] = pos + done;
    llhttp_resume(&g->req);
  }
  g->req_at = pos + done;
  g->req_paused = true;
  g->waiting = true;
  if (done < n) {
    blk->refs++;
    g->pend = blk;
    g->pend_off = off + done;
    g->pend_len = n - done;
  }
}

static void resume_requests(gate_t *g) {
  llhttp_resume(&g->req);
  g->req_paused = false;
  block_t *b = g->pend;
  g->pend = NULL;
  if (b != NULL) {
    follow_requests(g, b, g->pend_off, g->pend_len);
    harness_block_unref(b);
  }
}

/* ---- the upstream's responses --------------------------------------------- */

/* Paused so that follow_responses learns where the response begins. */
static int up_begin(llhttp_t *p) {
  gate_t *g = p->data;
  g->up_began = true;
  return HPE_PAUSED;
}

static int up_headers(llhttp_t *p) {
  gate_t *g = p->data;
  if (gate_interim(p))
    return 1; /* ends at its head whatever Content-Length says (RFC 9112 6.3), as
                 out_headers frames it on the client's side */
  g->up_last = harness_gate_claim(g, g->up_last);
  return gate_skip_body(p, harness_gate_head(g, g->up_last));
}

/* Follow n response bytes at p, the first at stream position g->up_at. */
static void follow_responses(gate_t *g, const char *p, size_t n) {
  size_t done = 0;
  for (;;) {
    llhttp_errno_t e = llhttp_execute(&g->up, p + done, n - done);
    if (e == HPE_OK)
      break;
    if (e != HPE_PAUSED || !g->up_began) {
      g->up_on = false;
      return;
    }
    done = (size_t)(llhttp_get_error_pos(&g->up) - p);
    g->up_began = false;
    g->up_marks[g->up_count % GATE_MARKS].pos = g->up_at + done;
    g->up_marks[g->up_count % GATE_MARKS].last = g->up_last;
    g->up_count++;
    llhttp_resume(&g->up);
  }
  g->up_at += n;
}

/* ---- the client's responses ----------------------------------------------- */

static int out_headers(llhttp_t *p) {
  gate_t *g = p->data;
  return gate_skip_body(p, harness_gate_head(g, g->delivered));
}

static int out_complete(llhttp_t *p) {
  gate_t *g = p->data;
  if (gate_interim(p)) /* a 100 Continue answers no request on its own */
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

gate_t *harness_gate_new(void) {
  if (!settings_ready) {
    llhttp_settings_init(&req_settings);
    req_settings.on_message_begin = req_begin;
    req_settings.on_headers_complete = req_headers;
    req_settings.on_message_complete = req_complete;
    llhttp_settings_init(&up_settings);
    up_settings.on_message_begin = up_begin;
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

void harness_gate_free(gate_t *g, hdir_t *d) {
  if (g == NULL)
    return;
  while (g->head != NULL) {
    chunk_t *c = g->head;
    g->head = c->next;
    d->buffered -= c->len;
    harness_block_unref(c->blk);
    free(c);
  }
  harness_block_unref(g->pend);
  free(g);
}

/* Could this be the start of a request? (A method is upper-case letters;
 * binary protocols fail here without a parser or an allocation.) */
static bool may_be_request(const char *p, size_t n) {
  return n > 0 && p[0] >= 'A' && p[0] <= 'Z';
}

int harness_gate_read(gate_t **gp, int stream, bool first, block_t *blk, size_t off, size_t n,
                      uint64_t pos) {
  gate_t *g = *gp;
  if (stream == STREAM_UPSTREAM) {
    if (first) {
      bool fresh = g == NULL;
      if (!may_be_request(blk->data + off, n))
        return 0;
      if (fresh && (g = harness_gate_new()) == NULL)
        return -1;
      g->req_on = g->up_on = true;
      g->req_at = pos;
      follow_requests(g, blk, off, n);
      if (fresh && !g->req_on) { /* not HTTP: no gate, no further cost */
        harness_gate_free(g, NULL);
        return 0;
      }
      *gp = g;
      return 0;
    }
    if (g == NULL || !g->req_on)
      return 0;
    if (pos != g->req_at && !g->req_paused) {
      g->req_on = false; /* bytes went by unseen: the framing is unknown from here */
      return 0;
    }
    if (g->req_paused) {
      /* Read while the window was full (link.c stops reading, so at most a
       * read already under way): stop following rather than buffer more. */
      g->req_on = false;
      harness_block_unref(g->pend);
      g->pend = NULL;
      return 0;
    }
    follow_requests(g, blk, off, n);
    return 0;
  }
  if (g == NULL || !g->up_on)
    return 0;
  if (pos != g->up_at) {
    /* Bytes went by unseen (the upstream spoke before the gate was made):
     * which response is which is unknown. */
    g->up_on = false;
    return 0;
  }
  follow_responses(g, blk->data + off, n);
  return 0;
}

bool harness_gate_full(const gate_t *g) {
  return g != NULL && g->req_on && g->req_paused;
}

bool harness_gate_take_moved(gate_t *g) {
  bool m = g->moved;
  g->moved = false;
  return m;
}

/* ---- for stages ----------------------------------------------------------- */

uint64_t harness_gate_claim(const gate_t *g, uint64_t after) {
  uint64_t i = after + 1; /* GATE_NONE + 1 == 0 */
  /* Requests already answered to the client were all passed on by every
   * stage; one a stage has not seen was answered by the harness. */
  if (i < g->delivered)
    i = g->delivered;
  while (get_bit(g, g->answered_bits, i))
    i++;
  return i;
}

bool harness_gate_room(gate_t *g, uint64_t i) {
  if (i < g->delivered + GATE_WINDOW)
    return true;
  g->waiting = true;
  return false;
}

void harness_gate_answered(gate_t *g, uint64_t i) {
  if (in_window(g, i))
    put_bit(g->answered_bits, i, true);
}

bool harness_gate_head(const gate_t *g, uint64_t i) {
  return get_bit(g, g->head_bits, i);
}

int harness_gate_find(gate_t *g, int stream, uint64_t pos, uint64_t *at, uint64_t *last) {
  /* The marks are in stream order and every message the gate followed has
   * one (older ones fell out of the ring): the first mark at or after pos
   * is a message's first byte, and the first there is if none older was
   * forgotten. O(GATE_MARKS), once per chunk a joining stage sees before it
   * finds its footing. */
  if (stream == STREAM_UPSTREAM) {
    uint64_t from = g->requests > GATE_MARKS ? g->requests - GATE_MARKS : 0;
    for (uint64_t i = from; i < g->requests; i++)
      if (g->req_marks[i % GATE_MARKS] >= pos) {
        *at = g->req_marks[i % GATE_MARKS];
        *last = i == 0 ? GATE_NONE : i - 1;
        return GATE_FOUND;
      }
    if (!g->req_on)
      return GATE_NEVER;
    *at = g->req_at;
    if (g->req_paused)
      g->waiting = true; /* report when the window moves (harness_gate_take_moved) */
    return GATE_NOT_YET;
  }
  uint64_t from = g->up_count > GATE_MARKS ? g->up_count - GATE_MARKS : 0;
  for (uint64_t j = from; j < g->up_count; j++)
    if (g->up_marks[j % GATE_MARKS].pos >= pos) {
      *at = g->up_marks[j % GATE_MARKS].pos;
      *last = g->up_marks[j % GATE_MARKS].last;
      return GATE_FOUND;
    }
  if (!g->up_on)
    return GATE_NEVER;
  *at = g->up_at;
  return GATE_NOT_YET;
}

/* ---- the gate ------------------------------------------------------------- */

void harness_gate_push(gate_t *g, chunk_t *answer, uint64_t need, uint64_t now) {
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
}

chunk_t *harness_gate_pop_due(gate_t *g, uint64_t now) {
  chunk_t *c = g->head;
  if (c == NULL || !(g->lost || c->need <= g->delivered || now >= c->t))
    return NULL;
  g->head = c->next;
  c->next = NULL;
  return c;
}

uint64_t harness_gate_deadline(const gate_t *g) {
  return g->head != NULL ? g->head->t : UINT64_MAX;
}

size_t harness_gate_scan(gate_t *g, const char *p, size_t n) {
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
