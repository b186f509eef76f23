/*
 * gate.h: one HTTP/1.1 connection's view of request order, and the gate that
 * keeps the harness's own answers in order with the upstream's responses.
 *
 * A connection whose first client bytes parse as an HTTP request gets a gate
 * (link.c creates it on the first read; for other traffic it costs one failed
 * parse of the first chunk and nothing after). The gate follows three byte
 * streams with llhttp, each from its first byte, independently of the toxics:
 *
 *  - the client's requests as read (before any toxic): their number and which
 *    were HEAD, so every response can be framed exactly;
 *  - the upstream's responses as read: which request each one answers;
 *  - the client's responses as written (after the toxics): how many have gone
 *    out (`delivered`), where each waiting answer is released.
 *
 * Requests are numbered from 0 on the connection (the client's order, which
 * is also the order of its responses). An answering stage (http_status,
 * http_drop_first_n on the upstream stream) claims the number of each request
 * it sees with harness_gate_claim and marks the ones it answers; a stage further down
 * the chain skips them, so any number of answering stages agree on the
 * numbering. An answer to request i waits until i responses are out, then
 * goes between two responses (a written chunk is split at the boundary).
 *
 * Bound: the gate remembers GATE_WINDOW requests ahead of the responses
 * delivered (two bits each). When the client has that many requests
 * outstanding, the gate stops following its requests and link.c stops
 * reading the client (back pressure, harness_gate_full) until responses go out;
 * stages wait at a request beyond the window the same way. Nothing waits
 * for a timer: GATE_FALLBACK_NS only frees answers if the response stream
 * stops parsing in an unexpected way, never in normal operation.
 *
 * If the responses stop parsing as HTTP (or switch protocols), waiting
 * answers go at once: never a deadlock.
 *
 * Where messages begin: on the requests and on the upstream's responses the
 * gate remembers the stream positions (chunk_t.pos) where the last
 * GATE_MARKS messages began, with their numbers. A toxic added to a live
 * connection may first see bytes that were read long before it joined
 * (another toxic held them); harness_gate_find tells it exactly where the first
 * message at or after them begins, or that it cannot know.
 */
#ifndef CYNIC_HARNESS_GATE_H
#define CYNIC_HARNESS_GATE_H

#include <llhttp.h>

#include "http_msg.h"
#include "link.h"

#define GATE_FALLBACK_NS UINT64_C(10000000000) /* 10 s */
#define GATE_WINDOW 256                        /* requests ahead of the responses */
#define GATE_NONE UINT64_MAX                   /* "no request yet" for harness_gate_claim */
/* Message beginnings remembered per stream. A stage joining behind more
 * messages than this still held by other toxics starts at the oldest one
 * remembered (later than it could have, never at a wrong place); 64 keeps
 * the two rings at 1.5 KiB per HTTP connection. */
#define GATE_MARKS 64

enum { GATE_FOUND, GATE_NOT_YET, GATE_NEVER }; /* harness_gate_find */

/* A response parsed by p is interim (1xx but 101): it answers no request on
 * its own and the final response follows. Both the gate and the HTTP toxics
 * number responses with this (the rule lives in src/common/http_msg.h, which
 * the proxy's HTTP mode shares). */
static inline bool gate_interim(const llhttp_t *p) {
  return cynic__http_status_interim(p->status_code);
}

/* For on_headers_complete of a response parsed by p: 1 (no body, whatever
 * the headers say) for a response to HEAD, 1xx, 204 and 304, else 0. */
static inline int gate_skip_body(const llhttp_t *p, bool head) {
  return cynic__http_response_has_body(head ? HTTP_HEAD : HTTP_GET, p->status_code) ? 0 : 1;
}

typedef struct gate gate_t;

/* A gate that does not follow the requests (the connection's first bytes
 * were not HTTP and an answering toxic needs ordering anyway). */
gate_t *harness_gate_new(void);
/* Free the gate and the answers still waiting (their bytes leave d's count). */
void harness_gate_free(gate_t *g, hdir_t *d);

/* link.c (harness_chain_read): bytes read on `stream`, before they enter the chain,
 * the first of them at stream position pos. *gp is the connection's gate (on
 * the downstream direction); `first` says these are the connection's first
 * bytes on the stream, which decide whether a gate is made. Bytes that do not
 * follow on from the last ones seen (read before the gate existed) make it
 * stop following that stream. Keeps a reference to blk while the request
 * window is full. -1 when the first bytes may start a request but the gate
 * cannot be allocated: the connection cannot be followed (its HTTP toxics
 * would step aside), so the caller resets it; else 0. */
int harness_gate_read(gate_t **gp, int stream, bool first, block_t *blk, size_t off, size_t n,
                      uint64_t pos);
/* true while the client must not be read (GATE_WINDOW requests outstanding). */
bool harness_gate_full(const gate_t *g);
/* true once after responses went out while a reader or stage waited on the
 * window: link.c then wakes the upstream direction. */
bool harness_gate_take_moved(gate_t *g);

/* The number of the request after `after` (GATE_NONE: the first one) that
 * has not been answered by the harness: what a stage's next message is. */
uint64_t harness_gate_claim(const gate_t *g, uint64_t after);
/* Whether request i is inside the window (false: wait; the gate remembers
 * to report harness_gate_take_moved when the window moves). */
bool harness_gate_room(gate_t *g, uint64_t i);
/* Request i is answered by the harness (never reaches the upstream). */
void harness_gate_answered(gate_t *g, uint64_t i);
/* Request i was HEAD (false when unknown). */
bool harness_gate_head(const gate_t *g, uint64_t i);
/* For a stage joining a live connection: the first message on `stream` that
 * begins at or after stream position pos.
 *  - GATE_FOUND: it begins at *at; *last is the number (as harness_gate_claim's
 *    `after`) of the message before it, GATE_NONE if none. When messages
 *    between pos and *at are older than the ring holds, this is the oldest
 *    one remembered: still a message's first byte.
 *  - GATE_NOT_YET: no message begins in [pos, *at), where the gate has got
 *    to; one may begin later (ask again for bytes from *at on; the gate
 *    reports harness_gate_take_moved when it goes on after a full window).
 *  - GATE_NEVER: the gate does not follow the stream past what it
 *    remembers, which is all before pos: nothing more will be known. */
int harness_gate_find(gate_t *g, int stream, uint64_t pos, uint64_t *at, uint64_t *last);

/* Queue an answer that may go once `need` responses are out. */
void harness_gate_push(gate_t *g, chunk_t *answer, uint64_t need, uint64_t now);
/* The first waiting answer if it is due now, else NULL. */
chunk_t *harness_gate_pop_due(gate_t *g, uint64_t now);
/* When the first waiting answer falls due at the latest (UINT64_MAX: none). */
uint64_t harness_gate_deadline(const gate_t *g);
/* Account n bytes about to be written to the client. Returns how many of
 * them may be written before a waiting answer is due (n when none falls due
 * inside). */
size_t harness_gate_scan(gate_t *g, const char *p, size_t n);

#endif
