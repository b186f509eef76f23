/*
 * gate.h: keeps the harness's own HTTP answers in order with the upstream's
 * responses on a connection.
 *
 * When an upstream-stream toxic (http_status, http_drop_first_n) answers a
 * request itself, a client that pipelines may still be waiting for responses
 * to earlier requests the upstream is working on. HTTP/1.1 answers in request
 * order, so the canned answer must wait until those responses have gone out.
 * The gate sits on the downstream writer: it counts complete responses
 * written to the client (llhttp in response mode) and releases each waiting
 * answer once `need` responses are out, splitting a chunk at a response
 * boundary when an answer falls due inside it. If the count cannot be trusted
 * (bytes that are not HTTP) or an answer has waited GATE_FALLBACK_NS, the
 * waiting answers go at once: never a deadlock.
 */
#ifndef CYNIC_HARNESS_GATE_H
#define CYNIC_HARNESS_GATE_H

#include "link.h"

#define GATE_FALLBACK_NS UINT64_C(10000000000) /* 10 s */

typedef struct gate gate_t;

gate_t *gate_new(void);
/* Free the gate and the answers still waiting (their bytes leave d's count). */
void gate_free(gate_t *g, hdir_t *d);
/* Request number `index` (counted like responses, from 0) was a HEAD: its
 * response has no body whatever its Content-Length says. Requests more than
 * GATE_HEAD_WINDOW ahead of the responses are not remembered. */
#define GATE_HEAD_WINDOW 256
void gate_note_request(gate_t *g, uint64_t index, bool head);
/* Responses that have gone out so far (where a new answering toxic starts). */
uint64_t gate_delivered(const gate_t *g);
/* Queue an answer that may go once `need` responses are out. */
void gate_push(gate_t *g, chunk_t *answer, uint64_t need, uint64_t now);
/* The first waiting answer if it is due now, else NULL. */
chunk_t *gate_pop_due(gate_t *g, uint64_t now);
/* When the first waiting answer falls due at the latest (UINT64_MAX: none). */
uint64_t gate_deadline(const gate_t *g);
/* Account n bytes about to be written. Returns how many of them may be
 * written before a waiting answer is due (n when none falls due inside). */
size_t gate_scan(gate_t *g, const char *p, size_t n);

#endif
