/* gate.c: ordering of the harness's answers with the upstream's responses. */
#include "gate.h"

#include <llhttp.h>
#include <stdlib.h>

struct gate {
  llhttp_t parser;
  llhttp_settings_t settings;
  bool lost;                              /* the stream stopped parsing as HTTP: no more waiting */
  uint64_t delivered;                     /* complete responses written to the client */
  chunk_t *head, *tail;                   /* waiting answers; chunk->t holds the fallback time */
  uint8_t head_req[GATE_HEAD_WINDOW / 8]; /* bit i % WINDOW: request i was HEAD */
};

static bool bit(const gate_t *g, uint64_t i) {
  return (g->head_req[(i % GATE_HEAD_WINDOW) / 8] >> (i % 8)) & 1;
}

static void set_bit(gate_t *g, uint64_t i, bool on) {
  uint8_t m = (uint8_t)(1u << (i % 8));
  uint8_t *b = &g->head_req[(i % GATE_HEAD_WINDOW) / 8];
  *b = on ? (uint8_t)(*b | m) : (uint8_t)(*b & ~m);
}

void gate_note_request(gate_t *g, uint64_t index, bool head) {
  if (index >= g->delivered && index - g->delivered < GATE_HEAD_WINDOW)
    set_bit(g, index, head);
}

/* A response to a HEAD request has a head only. */
static int on_headers_complete(llhttp_t *p) {
  gate_t *g = p->data;
  return bit(g, g->delivered) ? 1 : 0;
}

static int on_complete(llhttp_t *p) {
  gate_t *g = p->data;
  /* An interim response (100 Continue) answers no request on its own. */
  if (p->status_code >= 100 && p->status_code < 200 && p->status_code != 101)
    return 0;
  set_bit(g, g->delivered, false);
  g->delivered++;
  return HPE_PAUSED;
}

gate_t *gate_new(void) {
  gate_t *g = calloc(1, sizeof(*g));
  if (g == NULL)
    return NULL;
  llhttp_settings_init(&g->settings);
  g->settings.on_message_complete = on_complete;
  g->settings.on_headers_complete = on_headers_complete;
  llhttp_init(&g->parser, HTTP_RESPONSE, &g->settings);
  g->parser.data = g;
  return g;
}

void gate_free(gate_t *g, hdir_t *d) {
  if (g == NULL)
    return;
  while (g->head != NULL) {
    chunk_t *c = g->head;
    g->head = c->next;
    d->buffered -= c->len;
    if (c->blk != NULL && --c->blk->refs == 0)
      free(c->blk);
    free(c);
  }
  free(g);
}

uint64_t gate_delivered(const gate_t *g) {
  return g->delivered;
}

void gate_push(gate_t *g, chunk_t *answer, uint64_t need, uint64_t now) {
  answer->next = NULL;
  answer->need = need;
  answer->t = now + GATE_FALLBACK_NS;
  if (g->tail)
    g->tail->next = answer;
  else
    g->head = answer;
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
    llhttp_errno_t e = llhttp_execute(&g->parser, p + off, n - off);
    if (e == HPE_OK)
      return n;
    if (e != HPE_PAUSED) {
      g->lost = true; /* not HTTP: stop counting, let the answers go */
      return n;
    }
    size_t at = (size_t)(llhttp_get_error_pos(&g->parser) - p);
    llhttp_resume(&g->parser);
    off = at;
    if (g->head != NULL && g->head->need <= g->delivered && at < n)
      return at; /* an answer goes here, between two responses */
  }
  return n;
}
