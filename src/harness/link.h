/*
 * link.h: one direction of a proxied connection (its chain of stages, see
 * chain.h, plus the sockets and the timer link.c drives it with).
 *
 * Bounds: a direction holds at most LINK_BUFFER_MAX bytes (counted from read
 * to write completion) and each queue at most LINK_QUEUE_MAX chunks; past
 * either, the source is not read (back pressure) and stages stop emitting.
 */
#ifndef CYNIC_HARNESS_LINK_H
#define CYNIC_HARNESS_LINK_H

#include "chain.h"

typedef struct hdir {
  hconn_t *conn;
  int stream; /* STREAM_UPSTREAM: client -> upstream */
  uv_tcp_t *src, *dst;
  stage_t *stages[HARNESS_MAX_TOXICS];
  size_t nstages;
  queue_t out;
  size_t buffered; /* bytes read and not yet written or dropped */
  int writes;      /* uv_write requests in flight */
  bool reading;
  bool src_eof;                       /* the source sent FIN */
  bool dst_shut;                      /* shutdown of dst requested */
  bool eof_done;                      /* shutdown of dst completed */
  bool close_when_flushed;            /* a CLOSE or RESET marker reached the writer */
  bool reset_when_flushed;            /* ... and it was a RESET */
  uint64_t flush_deadline;            /* ns: stop waiting for the kernel to send (RESET) */
  uint64_t bytes_read, bytes_written; /* this connection, this direction */
  struct gate *gate; /* orders the harness's answers with the upstream's responses */
  struct hdir *peer; /* the connection's other direction */
  bool woken;        /* the peer's step queued an answer here: pump soon */
  uv_timer_t timer;
  uint64_t timer_at; /* ns the timer is armed for, 0 = idle */
  uv_shutdown_t shut;
} hdir_t;

#endif
