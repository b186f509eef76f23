/*
 * link.c: one proxied connection: accept, dial the upstream (resolved per
 * connection, asynchronously, so a slow dial never stalls other accepts), two
 * directions of toxic chains, half-close propagation, back pressure.
 */
#include "err.h"
#include "link.h"

#include <linux/sockios.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "addr.h"
#include "gate.h"
#include "shed.h"
#include "sock.h"
#include "toxic.h"

struct hconn {
  harness_t *h;
  hproxy_t *proxy;      /* NULL once closing */
  hconn_t *prev, *next; /* in proxy->conns */
  uint64_t id;          /* harness-wide */
  uint64_t key;         /* RNG key: (seed, proxy name, per-proxy sequence) */
  uv_tcp_t client, upstream;
  hdir_t dir[2]; /* indexed by stream */
  uv_getaddrinfo_t gai;
  uv_connect_t connect;
  uv_timer_t dial_timer; /* accept_delay's wait, later the linger deadline */
  uint16_t port;         /* upstream port while resolving */
  int open_handles;
  bool gai_pending;
  bool connected;
  bool closing;
  bool sockets_closed; /* close_all ran */
  int linger_eofs;     /* sockets that sent FIN while lingering */
};

/*
 * Reads land in `spare`, a 64 KiB block: a large read keeps the block as its
 * chunk (no copy) and the next read gets a fresh one; a small read is copied
 * into a block of its own size and the spare is reused. One loop thread, so
 * one spare for the whole process. A kept block is at least a quarter full,
 * so a direction's 256 KiB byte cap pins at most 1 MiB of blocks.
 */
#define READ_BLOCK 65536
#define READ_KEEP_MIN (READ_BLOCK / 4)
static block_t *spare;

void harness_link_global_free(void) {
  free(spare);
  spare = NULL;
}

static void pump(hdir_t *d);
static void unlink_retired(hdir_t *d);

hconn_t *harness_link_next(hconn_t *c) {
  return c->next;
}

/* ---- closing ------------------------------------------------------------- */

static void maybe_free(hconn_t *c) {
  if (c->open_handles == 0 && !c->gai_pending && c->dir[0].writes == 0 && c->dir[1].writes == 0)
    free(c);
}

static void handle_closed(uv_handle_t *h) {
  hconn_t *c = h->data;
  c->open_handles--;
  maybe_free(c);
}

static void timer_closed(uv_handle_t *h) {
  hdir_t *d = h->data;
  hconn_t *c = d->conn;
  c->open_handles--;
  maybe_free(c);
}

static void free_stages(hdir_t *d) {
  for (size_t i = 0; i < d->nstages; i++) {
    harness_queue_clear(d, &d->stages[i]->in);
    harness_toxic_stage_free(d->stages[i]);
    free(d->stages[i]);
  }
  d->nstages = 0;
  harness_queue_clear(d, &d->out);
  harness_gate_free(d->gate, d);
  d->gate = NULL;
}

static void close_socket(uv_tcp_t *t, bool reset) {
  if (uv_is_closing((uv_handle_t *)t))
    return;
  if (reset && uv_tcp_close_reset(t, handle_closed) == 0)
    return;
  uv_close((uv_handle_t *)t, handle_closed);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_shutdown(uv_shutdown_t *req, int status);

static void close_all(hconn_t *c, bool reset) {
  if (c->sockets_closed)
    return;
  c->sockets_closed = true;
  close_socket(&c->client, reset);
  close_socket(&c->upstream, reset && c->connected);
  uv_close((uv_handle_t *)&c->dial_timer, handle_closed);
}

#define LINGER_MS 1000

static void on_linger_timeout(uv_timer_t *t) {
  close_all(t->data, false);
}

static void on_linger_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  (void)buf;
  hconn_t *c = s->data;
  if (nread >= 0)
    return; /* discarded */
  uv_read_stop(s);
  if (++c->linger_eofs == 2)
    close_all(c, false);
}

/*
 * A graceful close: FIN both ways once queued writes are out, then read and
 * discard until both peers close or LINGER_MS passes. Closing a socket with
 * unread input would make the kernel send RST, and the peer could lose the
 * bytes we let through (limit_data's exact count, garbage, flood).
 */
static void begin_linger(hconn_t *c) {
  uv_timer_stop(&c->dial_timer);
  uv_tcp_t *socks[2] = {&c->client, &c->upstream};
  for (int i = 0; i < 2; i++) {
    hdir_t *in = i == 0 ? &c->dir[STREAM_UPSTREAM] : &c->dir[STREAM_DOWNSTREAM];
    hdir_t *out = i == 0 ? &c->dir[STREAM_DOWNSTREAM] : &c->dir[STREAM_UPSTREAM];
    if (!out->dst_shut) {
      out->dst_shut = true;
      out->shut.data = out;
      uv_shutdown(&out->shut, (uv_stream_t *)socks[i], on_shutdown);
    }
    uv_read_stop((uv_stream_t *)socks[i]);
    in->reading = false;
    if (in->src_eof || uv_read_start((uv_stream_t *)socks[i], on_alloc, on_linger_read) != 0)
      c->linger_eofs++;
  }
  if (c->linger_eofs == 2) {
    close_all(c, false);
    return;
  }
  uv_timer_start(&c->dial_timer, on_linger_timeout, LINGER_MS, 0);
}

void harness_link_close(hconn_t *c, bool reset) {
  if (c->closing)
    return;
  c->closing = true;
  hproxy_t *p = c->proxy;
  if (p != NULL) {
    hdir_t *u = &c->dir[STREAM_UPSTREAM], *dn = &c->dir[STREAM_DOWNSTREAM];
    harness_events_add(&c->h->events, "connection_closed",
                       json_pack("{s:s,s:I,s:b,s:{s:I,s:I},s:{s:I,s:I}}", "proxy", p->name, "conn",
                                 (json_int_t)c->id, "reset", reset, "upstream", "read",
                                 (json_int_t)u->bytes_read, "written", (json_int_t)u->bytes_written,
                                 "downstream", "read", (json_int_t)dn->bytes_read, "written",
                                 (json_int_t)dn->bytes_written));
    if (c->prev)
      c->prev->next = c->next;
    else
      p->conns = c->next;
    if (c->next)
      c->next->prev = c->prev;
    p->nconns--;
    c->proxy = NULL;
  }
  c->h->nconns--;
  for (int i = 0; i < 2; i++) {
    free_stages(&c->dir[i]);
    uv_close((uv_handle_t *)&c->dir[i].timer, timer_closed);
  }
  if (c->gai_pending)
    uv_cancel((uv_req_t *)&c->gai);
  if (!reset && c->connected) {
    begin_linger(c);
    return;
  }
  close_all(c, reset);
}

/* ---- writing ------------------------------------------------------------- */

/* n bytes of d were taken by its sink's socket. */
static void count_written(hdir_t *d, size_t n) {
  d->bytes_written += n;
  if (d->conn->proxy != NULL)
    d->conn->proxy->bytes_out[d->stream] += n;
}

static void on_write(uv_write_t *req, int status) {
  chunk_t *ch = req->data;
  hdir_t *d = ch->dir;
  hconn_t *c = d->conn;
  d->writes--;
  d->buffered -= ch->len;
  if (status == 0)
    count_written(d, ch->len);
  harness_chunk_free(ch);
  if (c->closing) {
    maybe_free(c);
    return;
  }
  if (status < 0) {
    harness_link_close(c, true);
    return;
  }
  pump(d);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  hdir_t *d = req->data;
  hconn_t *c = d->conn;
  if (c->closing)
    return;
  d->eof_done = true;
  if (status < 0 || (c->dir[0].eof_done && c->dir[1].eof_done))
    harness_link_close(c, false);
}

/* Bytes the kernel still holds in the socket's send queue (Linux). */
static int unsent(uv_tcp_t *t) {
  uv_os_fd_t fd;
  int n = 0;
  if (uv_fileno((uv_handle_t *)t, &fd) != 0 || ioctl(fd, SIOCOUTQ, &n) != 0)
    return 0;
  return n;
}

/* Hand the output queue to the socket. true if anything moved. */
static bool flush(hdir_t *d, step_ctx_t *ctx) {
  bool progress = false;
  for (;;) {
    if (d->writes >= LINK_WRITES_MAX || d->close_when_flushed)
      break;
    chunk_t *ch = harness_chain_next_out(d, ctx->now); /* due answers first (chain.h) */
    if (ch == NULL)
      break;
    progress = true;
    if (ch->kind == CHUNK_DATA && !d->dst_shut) {
      if (d->writes == 0) {
        /* Nothing queued in libuv: try the socket at once and skip the
         * request (and its callback a loop turn later) when it all fits. */
        uv_buf_t b = uv_buf_init(ch->blk->data + ch->off, (unsigned)ch->len);
        int n = uv_try_write((uv_stream_t *)d->dst, &b, 1);
        if (n > 0) {
          d->buffered -= (size_t)n;
          count_written(d, (size_t)n);
          if ((size_t)n == ch->len) {
            harness_chunk_free(ch);
            continue;
          }
          harness_chunk_skip(ch, (size_t)n);
        } else if (n != UV_EAGAIN && n != UV_ENOSYS) {
          d->buffered -= ch->len;
          harness_chunk_free(ch);
          harness_link_close(d->conn, true);
          return true;
        }
      }
      uv_buf_t b = uv_buf_init(ch->blk->data + ch->off, (unsigned)ch->len);
      ch->wreq.data = ch;
      if (uv_write(&ch->wreq, (uv_stream_t *)d->dst, &b, 1, on_write) == 0) {
        d->writes++;
        continue;
      }
      d->buffered -= ch->len;
      harness_chunk_free(ch);
      harness_link_close(d->conn, true);
      return true;
    }
    if (ch->kind == CHUNK_DATA)
      d->buffered -= ch->len;
    else if (ch->kind == CHUNK_EOF && !d->dst_shut) {
      d->dst_shut = true;
      d->shut.data = d;
      if (uv_shutdown(&d->shut, (uv_stream_t *)d->dst, on_shutdown) != 0)
        d->eof_done = true;
    } else if (ch->kind == CHUNK_CLOSE || ch->kind == CHUNK_RESET) {
      harness_chain_end_when_flushed(d, ch->kind == CHUNK_RESET, ctx->now);
    }
    harness_chunk_free(ch);
  }
  if (d->gate != NULL) {
    harness_step_wake_at(ctx, harness_gate_deadline(d->gate));
    if (harness_gate_take_moved(d->gate)) /* the request window moved: the client's side goes on */
      d->peer->woken = true;
  }
  if (d->close_when_flushed && d->writes == 0) {
    /* A reset discards what the kernel has not sent yet: wait (bounded) for
     * the bytes the toxic let through to leave first. */
    if (d->reset_when_flushed && ctx->now < d->flush_deadline && unsent(d->dst) > 0) {
      harness_step_wake_at(ctx, ctx->now + UINT64_C(1000000));
      return false;
    }
    harness_link_close(d->conn, d->reset_when_flushed);
    return false;
  }
  return progress;
}

/* ---- reading ------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  (void)suggested;
  if (spare == NULL)
    spare = malloc(sizeof(block_t) + READ_BLOCK);
  buf->base = spare ? spare->data : NULL;
  buf->len = spare ? READ_BLOCK : 0; /* 0: libuv reports UV_ENOBUFS */
}

static hdir_t *dir_of_source(hconn_t *c, uv_stream_t *s) {
  return s == (uv_stream_t *)&c->client ? &c->dir[STREAM_UPSTREAM] : &c->dir[STREAM_DOWNSTREAM];
}

/*
 * Whether bytes just read may go straight to the sink from the read callback:
 * no stage to pass, nothing queued or in flight before them, no gate, no
 * shutdown or close pending. This is the no-toxic path of every small
 * request; it skips the chunk, its block, the copy and the clock reads.
 */
static bool direct_ok(const hdir_t *d) {
  return d->nstages == 0 && d->out.head == NULL && d->writes == 0 && d->gate == NULL &&
         !d->dst_shut && !d->close_when_flushed && d->conn->connected;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  hconn_t *c = s->data;
  hdir_t *d = dir_of_source(c, s);
  if (nread == 0 || c->closing)
    return;
  size_t sent = 0; /* bytes the direct path already handed to the sink */
  bool first = d->bytes_read == 0;
  uint64_t pos = d->bytes_read; /* stream position of buf->base[0] */
  if (nread > 0) {
    d->bytes_read += (size_t)nread;
    if (c->proxy != NULL)
      c->proxy->bytes_in[d->stream] += (size_t)nread;
    /* Not a connection's first request bytes, nor an HTTP one's: the gate
     * must see those to follow the framing. */
    if (direct_ok(d) && !(first && d->stream == STREAM_UPSTREAM) &&
        c->dir[STREAM_DOWNSTREAM].gate == NULL) {
      uv_buf_t b = uv_buf_init(buf->base, (unsigned)nread);
      int n = uv_try_write((uv_stream_t *)d->dst, &b, 1);
      if (n < 0 && n != UV_EAGAIN && n != UV_ENOSYS) {
        harness_link_close(c, true);
        return;
      }
      if (n > 0) {
        sent = (size_t)n;
        count_written(d, sent);
      }
      if (sent == (size_t)nread)
        return; /* nothing held: reading goes on, no chain to pump */
    }
  }
  chunk_t *ch = harness_chunk_new(CHUNK_DATA, d, uv_hrtime());
  if (ch == NULL) {
    harness_link_close(c, true);
    return;
  }
  if (nread < 0) {
    /* A reset right behind the last bytes reaches us as UV_EOF (sock.h). */
    if (nread == UV_EOF && cynic__sock_pending_error(s) == UV_ECONNRESET)
      nread = UV_ECONNRESET;
    if (nread != UV_EOF) {
      free(ch);
      harness_link_close(c, true); /* a reset on one side resets the other */
      return;
    }
    uv_read_stop(s);
    d->reading = false;
    d->src_eof = true;
    ch->kind = CHUNK_EOF;
  } else {
    /* What the socket did not take now (all of it unless the direct path ran). */
    size_t left = (size_t)nread - sent;
    if (left >= READ_KEEP_MIN && spare != NULL && buf->base == spare->data) {
      ch->blk = spare;
      spare = NULL;
      ch->off = sent;
    } else {
      ch->blk = malloc(sizeof(block_t) + left);
      if (ch->blk == NULL) {
        free(ch);
        harness_link_close(c, true);
        return;
      }
      memcpy(ch->blk->data, buf->base + sent, left);
    }
    ch->blk->refs = 1;
    ch->len = left;
    ch->pos = pos + sent;
  }
  if (harness_chain_read(d, ch, first) != 0) { /* the gate follows the framing (gate.h) */
    harness_chunk_free(ch); /* out of memory: unfollowed, its HTTP toxics would step aside */
    harness_link_close(c, true);
    return;
  }
  pump(d);
}

static bool blackholed(const hconn_t *c) {
  for (int i = 0; i < 2; i++)
    for (size_t k = 0; k < c->dir[i].nstages; k++)
      if (harness_toxic_stage_blocks_reading(c->dir[i].stages[k]))
        return true;
  return false;
}

static void update_reading(hdir_t *d) {
  hconn_t *c = d->conn;
  bool want = c->connected && !c->closing && !d->src_eof && d->buffered < LINK_BUFFER_MAX &&
              harness_chain_in(d)->count < LINK_QUEUE_MAX && !blackholed(c) &&
              !(d->stream == STREAM_UPSTREAM && harness_gate_full(c->dir[STREAM_DOWNSTREAM].gate));
  if (want && !d->reading) {
    if (uv_read_start((uv_stream_t *)d->src, on_alloc, on_read) == 0)
      d->reading = true;
  } else if (!want && d->reading) {
    uv_read_stop((uv_stream_t *)d->src);
    d->reading = false;
  }
}

/* ---- the chain ----------------------------------------------------------- */

static void on_timer(uv_timer_t *t) {
  hdir_t *d = t->data;
  d->timer_at = 0;
  pump(d);
}

static void pump(hdir_t *d) {
  hconn_t *c = d->conn;
  if (c->closing)
    return;
  step_ctx_t ctx;
  ctx.dir = d;
  for (int rounds = 0; rounds < 100000; rounds++) {
    bool progress = false;
    ctx.now = uv_hrtime();
    ctx.wake = UINT64_MAX;
    int r = harness_chain_step(d, &ctx);
    if (r == STEP_CLOSE || r == STEP_RESET) {
      harness_link_close(c, r == STEP_RESET);
      return;
    }
    if (r == STEP_PROGRESS)
      progress = true;
    if (c->connected && flush(d, &ctx))
      progress = true;
    unlink_retired(d);
    if (c->closing)
      return;
    if (!progress)
      break;
  }
  if (d->peer->woken) {
    /* A step answered back on the other direction: wake it on the next loop
     * turn rather than pump it from inside this one. */
    d->peer->woken = false;
    d->peer->timer_at = ctx.now;
    uv_timer_start(&d->peer->timer, on_timer, 0, 0);
  }
  if (ctx.wake != UINT64_MAX) {
    if (d->timer_at == 0 || ctx.wake < d->timer_at || d->timer_at <= ctx.now) {
      uint64_t ms = ctx.wake > ctx.now ? (ctx.wake - ctx.now + 999999) / 1000000 : 0;
      d->timer_at = ctx.wake;
      /* Timers count from the loop's cached time, which may lag; refresh it so
       * a toxic never releases bytes before its delay (a vDSO clock read). */
      uv_update_time(d->timer.loop);
      uv_timer_start(&d->timer, on_timer, ms, 0);
    }
  }
  update_reading(d);
}

/* ---- toxics on live connections ----------------------------------------- */

static uint64_t stage_key(hconn_t *c, const toxic_t *t) {
  return rng_mix(c->key + t->version * UINT64_C(0x9E3779B97F4A7C15), t->name);
}

static void roll(hconn_t *c, stage_t *st) {
  uint64_t k = stage_key(c, st->toxic);
  st->rng = k;
  uint64_t r = k ^ UINT64_C(0x5851F42D4C957F2D);
  st->active = rng_unit(&r) < st->toxic->toxicity;
  if (c->proxy != NULL)
    harness_events_add(&c->h->events, st->active ? "toxic_applied" : "toxic_skipped",
                       json_pack("{s:s,s:I,s:s,s:s,s:s}", "proxy", c->proxy->name, "conn",
                                 (json_int_t)c->id, "toxic", st->toxic->name, "type",
                                 st->toxic->type->name, "stream",
                                 st->toxic->stream == STREAM_UPSTREAM ? "upstream" : "downstream"));
}

void harness_link_add_toxic(hconn_t *c, toxic_t *t) {
  hdir_t *d = &c->dir[t->stream];
  if (c->closing || d->nstages == HARNESS_MAX_TOXICS)
    return;
  stage_t *st = calloc(1, sizeof(*st));
  if (st == NULL) { /* out of memory: closed, never let through unpoisoned */
    harness_link_close(c, false);
    return;
  }
  st->toxic = t;
  st->joined_live = d->bytes_read > 0;
  roll(c, st);
  harness_toxic_stage_init(st, uv_hrtime());
  d->stages[d->nstages++] = st;
  pump(d);
  if (!c->closing)
    pump(&c->dir[!t->stream]);
}

/* Take stage k out of its chain: what it held back goes on, behind what it
 * already let through. */
static void unlink_stage(hdir_t *d, size_t k) {
  stage_t *st = d->stages[k];
  queue_t *next = k + 1 < d->nstages ? &d->stages[k + 1]->in : &d->out;
  harness_queue_splice(next, &st->in);
  memmove(&d->stages[k], &d->stages[k + 1], (d->nstages - k - 1) * sizeof(stage_t *));
  d->nstages--;
  harness_toxic_stage_free(st);
  free(st);
}

/* Retired HTTP stages leave once the message they were altering is over. */
static void unlink_retired(hdir_t *d) {
  for (size_t k = 0; k < d->nstages;) {
    stage_t *st = d->stages[k];
    if (st->retired != NULL && !harness_http_toxic_mid_message(st))
      unlink_stage(d, k);
    else
      k++;
  }
}

void harness_link_remove_toxic(hconn_t *c, toxic_t *t) {
  hdir_t *d = &c->dir[t->stream];
  for (size_t k = 0; k < d->nstages; k++) {
    stage_t *st = d->stages[k];
    if (st->toxic != t)
      continue;
    if (st->active && harness_http_toxic_mid_message(st)) {
      /* Cutting an HTTP toxic out mid-message would leak the rest of a
       * replaced response (or half a rewritten head) to the client: the stage
       * keeps a copy of the toxic and leaves at the message's end. */
      st->retired = malloc(sizeof(*st->retired));
      if (st->retired != NULL && harness_toxic_copy(st->retired, t) == 0) {
        st->toxic = st->retired;
        return;
      }
      free(st->retired);
      st->retired = NULL;
    }
    unlink_stage(d, k);
    pump(d);
    if (!c->closing)
      pump(&c->dir[!t->stream]); /* a blackhole stalls both directions */
    return;
  }
}

void harness_link_update_toxic(hconn_t *c, toxic_t *t) {
  hdir_t *d = &c->dir[t->stream];
  for (size_t k = 0; k < d->nstages; k++)
    if (d->stages[k]->toxic == t) {
      d->stages[k]->deadline = 0;
      if (!d->stages[k]->done)
        d->stages[k]->action_at = 0; /* a new timeout counts from now */
      roll(c, d->stages[k]);
    }
  pump(d);
}

/* ---- accept and dial ----------------------------------------------------- */

static void start_forwarding(hconn_t *c) {
  c->connected = true;
  uv_tcp_nodelay(&c->client, 1);
  uv_tcp_nodelay(&c->upstream, 1);
  pump(&c->dir[STREAM_UPSTREAM]);
  pump(&c->dir[STREAM_DOWNSTREAM]);
}

static void on_connect(uv_connect_t *req, int status) {
  hconn_t *c = req->data;
  if (c->closing)
    return;
  if (c->proxy != NULL)
    harness_events_add(&c->h->events, status < 0 ? "upstream_failed" : "upstream_connected",
                       json_pack("{s:s,s:I,s:s,s:s}", "proxy", c->proxy->name, "conn",
                                 (json_int_t)c->id, "upstream", c->proxy->upstream, "result",
                                 status < 0 ? cynic__strerror(status) : "ok"));
  if (status < 0) {
    harness_link_close(c, false);
    return;
  }
  start_forwarding(c);
}

static void dial(hconn_t *c, const struct sockaddr *sa) {
  c->connect.data = c;
  if (uv_tcp_connect(&c->connect, &c->upstream, sa, on_connect) != 0)
    harness_link_close(c, false);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  hconn_t *c = req->data;
  c->gai_pending = false;
  if (c->closing || status < 0 || res == NULL) {
    if (res)
      uv_freeaddrinfo(res);
    if (!c->closing)
      harness_link_close(c, false);
    else
      maybe_free(c);
    return;
  }
  const struct addrinfo *ai = res;
  for (const struct addrinfo *a = res; a; a = a->ai_next)
    if (a->ai_family == AF_INET) {
      ai = a;
      break;
    }
  struct sockaddr_storage ss;
  memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
  uv_freeaddrinfo(res);
  ((struct sockaddr_in *)&ss)->sin_port = htons(c->port); /* same offset for v6 */
  dial(c, (struct sockaddr *)&ss);
}

static void dir_init(hconn_t *c, int stream) {
  hdir_t *d = &c->dir[stream];
  d->conn = c;
  d->stream = stream;
  d->src = stream == STREAM_UPSTREAM ? &c->client : &c->upstream;
  d->dst = stream == STREAM_UPSTREAM ? &c->upstream : &c->client;
  d->peer = &c->dir[!stream];
  uv_timer_init(c->h->loop, &d->timer);
  d->timer.data = d;
}

static void start_dial(hconn_t *c);

static void on_dial_timer(uv_timer_t *t) {
  start_dial(t->data);
}

void harness_link_accept(hproxy_t *p, uv_stream_t *listener) {
  harness_t *h = p->h;
  hconn_t *c = calloc(1, sizeof(*c));
  if (c == NULL) {
    cynic__shed(listener); /* returning without uv_accept would stop the listener */
    return;
  }
  c->h = h;
  uv_tcp_init(h->loop, &c->client);
  uv_tcp_init(h->loop, &c->upstream);
  uv_timer_init(h->loop, &c->dial_timer);
  c->client.data = c;
  c->upstream.data = c;
  c->dial_timer.data = c;
  dir_init(c, STREAM_UPSTREAM);
  dir_init(c, STREAM_DOWNSTREAM);
  c->open_handles = 5;
  c->id = ++h->next_conn_id;
  c->key = rng_mix(h->seed ^ (++p->conn_seq * UINT64_C(0xD1B54A32D192ED03)), p->name);
  c->proxy = p;
  c->next = p->conns;
  if (p->conns)
    p->conns->prev = c;
  p->conns = c;
  p->nconns++;
  h->nconns++;
  if (uv_accept(listener, (uv_stream_t *)&c->client) != 0 || h->nconns > HARNESS_MAX_CONNS) {
    harness_link_close(c, false);
    return;
  }
  struct sockaddr_storage peer;
  int plen = sizeof(peer);
  char client[CYNIC_ADDR_STR_MAX] = "";
  if (uv_tcp_getpeername(&c->client, (struct sockaddr *)&peer, &plen) == 0)
    cynic__addr_format((struct sockaddr *)&peer, client, sizeof(client));
  harness_events_add(
      &h->events, "connection_opened",
      json_pack("{s:s,s:I,s:s}", "proxy", p->name, "conn", (json_int_t)c->id, "client", client));
  for (size_t i = 0; i < p->ntoxics; i++)
    harness_link_add_toxic(c, p->toxics[i]);
  if (c->closing)
    return;
  int64_t delay = 0;
  for (int i = 0; i < 2; i++)
    for (size_t k = 0; k < c->dir[i].nstages; k++) {
      int64_t ms = harness_toxic_stage_accept_delay(c->dir[i].stages[k]);
      if (ms > delay)
        delay = ms;
    }
  if (delay > 0) {
    uv_update_time(c->dial_timer.loop); /* the delay counts from now, not the tick */
    uv_timer_start(&c->dial_timer, on_dial_timer, (uint64_t)delay, 0);
    return;
  }
  start_dial(c);
}

static void start_dial(hconn_t *c) {
  char host[CYNIC_ADDR_HOST_MAX];
  struct sockaddr_storage ss;
  if (c->closing || c->proxy == NULL ||
      cynic__addr_split(c->proxy->upstream, host, sizeof(host), &c->port) != 0) {
    harness_link_close(c, false);
    return;
  }
  if (cynic__addr_numeric(host, c->port, false, &ss)) {
    dial(c, (struct sockaddr *)&ss);
    return;
  }
  struct addrinfo hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  c->gai.data = c;
  if (uv_getaddrinfo(c->h->loop, &c->gai, on_resolved, host, NULL, &hints) != 0) {
    harness_link_close(c, false);
    return;
  }
  c->gai_pending = true;
}
