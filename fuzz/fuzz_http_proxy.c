/*
 * fuzz/fuzz_http_proxy.c: libFuzzer target for HTTP mode through cynic's own
 * path (src/proxy/http_session.c, http_exchange.c, http_head.c, relay.c,
 * pool.c, upstream.c over src/common/http_msg.c): a real proxy on a real
 * libuv loop, two `mode: http` listeners on 127.0.0.1:0, a client socket that
 * sends the input's bytes to it, and an upstream the target itself plays on
 * a loopback socket, answering each request head the proxy forwards with the
 * input's scripted response bytes. Everything runs in one thread: the target
 * turns the loop with uv_run(UV_RUN_NOWAIT) between its own non-blocking
 * socket calls.
 *
 * Input: byte 0 is flags, the rest a script cut by three-byte markers:
 *   flags bit 0   the "strict" listener (upstream with expect.status 200-299,
 *                 expect.content_type application/json, 1KB max_response_bytes,
 *                 a breaker that trips on 2 faults, and a second endpoint that
 *                 refuses connections, one bulkhead slot and no queue) instead
 *                 of "app" (no expectations, a breaker that never trips, one
 *                 bulkhead slot and one queue place);
 *         bit 1   the client ends with a reset (SO_LINGER 0) instead of close;
 *         bit 2   a twin: a second client connection sends the same chunks
 *                 alongside (it skips the waits), so the bulkhead queues or
 *                 refuses one of them.
 *   ~~c  a client chunk follows (the bytes before the first marker are one
 *        too): sent with one send(), the loop turned after each chunk;
 *   ~~n  a new scripted response starts, its first chunk follows; response k
 *        answers the k-th request head the upstream receives, on the
 *        connection that received it, a chunk per loop turn;
 *   ~~u  another chunk of the current response follows;
 *   ~~x  the upstream closes that connection once the current response is
 *        out (~~r: resets it); a client chunk follows;
 *   ~~w  the client waits 12 ms of loop time, so a timeout fires (header,
 *        connect, first byte and queue are 10 ms, the strict request 15 ms;
 *        at most 2 waits count); a client chunk follows;
 *   ~~e  the client half-closes (later client chunks are dropped).
 * At most 64 ops; a response or a chunk past the caps is dropped.
 *
 * After the script, the loop turns until nothing moves for a few turns (at
 * most 400 turns); then the clients close (or reset) and the upstream
 * connections close, and the proxy must let go of everything: no session,
 * no pooled connection left within a bounded settle (LeakSanitizer then
 * sees every allocation of the input freed).
 *
 * Oracles, besides ASan/UBSan and the leak check:
 *  - what the client received parses with llhttp (strict) as a prefix of
 *    a stream of HTTP/1.1 responses (1xx, 204, 304 and answers to HEAD
 *    without a body; a body after a refused HEAD is tolerated when the
 *    connection closes after it, since cynic cannot know the method of a
 *    head it could not parse), at most one final response per request the
 *    client sent plus one (a refusal), none with Transfer-Encoding to an HTTP/1.0
 *    request; a stream that ended with a clean close (not a reset) is
 *    complete;
 *  - what each upstream connection received parses with llhttp as a prefix
 *    of a stream of HTTP/1.x requests, and the upstream never sees more
 *    requests than the client sent (llhttp's count): no smuggling;
 *  - both peers gone, the proxy closes the session and empties its idle
 *    pool within SETTLE_MS;
 *  - at a rebuild, uv_loop_close() == 0.
 *
 * A proxy is built once and serves REBUILD_EVERY inputs (~3 MB of zeroed
 * tables and a config load per build); FUZZ_FRESH=1 builds one per input
 * (replaying a crash), FUZZ_VERBOSE=1 prints what each side got.
 */
#include <errno.h>
#include <fcntl.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz_proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_OPS 64          /* script ops kept per input */
#define MAX_RESPONSES 16    /* scripted responses per input */
#define MAX_UP 4            /* upstream connections kept per input (more: reset at once) */
#define OUT_MAX (64u << 10) /* bytes kept per peer (the rest is read and counted) */
#define MAX_TURNS 400       /* loop turns for the script */
#define QUIET_TURNS 3       /* turns without any byte moving: the script is over */
#define WAIT_MS 12          /* ~~w: past the 10 ms timeouts */
#define MAX_WAITS 2         /* ~~w honoured per input (24 ms at most) */
#define SETTLE_MS 200       /* both peers gone: the proxy lets go within this */
#define REBUILD_EVERY 256

static void die(const char *what) {
  fprintf(stderr, "fuzz_http_proxy: %s\n", what);
  abort();
}

/* ---- the script -------------------------------------------------------------- */

typedef struct op {
  char kind; /* 'c' client chunk, 'w' wait, 'e' half-close */
  const uint8_t *p;
  size_t n;
} op_t;

typedef struct response {
  const uint8_t *chunk[MAX_OPS];
  size_t len[MAX_OPS];
  size_t nchunks;
  char end; /* 0: keep the connection, 'x' close it, 'r' reset it */
} response_t;

typedef struct script {
  bool strict, client_reset;
  bool twin; /* a second client connection runs the same client ops */
  op_t client[MAX_OPS];
  size_t nclient;
  response_t resp[MAX_RESPONSES];
  size_t nresp;
} script_t;

static bool is_op(uint8_t c) {
  return c == 'c' || c == 'n' || c == 'u' || c == 'x' || c == 'r' || c == 'w' || c == 'e';
}

/* Adds the span [p, p+n) as a `kind` ('c' client, 'u' upstream chunk). */
static void add_span(script_t *s, char kind, const uint8_t *p, size_t n, size_t *ops) {
  if (n == 0 || kind == 'd' || *ops >= MAX_OPS)
    return;
  if (kind == 'c') {
    s->client[s->nclient++] = (op_t){'c', p, n};
    (*ops)++;
  } else if (s->nresp > 0) {
    response_t *r = &s->resp[s->nresp - 1];
    if (r->nchunks < MAX_OPS && r->end == 0) {
      r->chunk[r->nchunks] = p;
      r->len[r->nchunks++] = n;
      (*ops)++;
    }
  }
}

static void parse_script(const uint8_t *data, size_t size, script_t *s) {
  memset(s, 0, sizeof *s);
  s->strict = (data[0] & 1) != 0;
  s->client_reset = (data[0] & 2) != 0;
  s->twin = (data[0] & 4) != 0;
  size_t ops = 0;
  char kind = 'c';
  size_t start = 1;
  size_t i = 1;
  while (i < size) {
    if (i + 2 < size && data[i] == '~' && data[i + 1] == '~' && is_op(data[i + 2])) {
      add_span(s, kind, data + start, i - start, &ops);
      char op = (char)data[i + 2];
      i += 3;
      start = i;
      switch (op) {
      case 'n':
        if (s->nresp < MAX_RESPONSES)
          s->resp[s->nresp++].end = 0;
        else
          s->nresp = MAX_RESPONSES + 1; /* past the cap: later chunks dropped */
        kind = s->nresp <= MAX_RESPONSES ? 'u' : 'd';
        break;
      case 'u':
        kind = s->nresp <= MAX_RESPONSES ? 'u' : 'd';
        break;
      case 'x':
      case 'r':
        if (s->nresp > 0 && s->nresp <= MAX_RESPONSES)
          s->resp[s->nresp - 1].end = op;
        kind = 'c';
        break;
      case 'w':
      case 'e':
        if (ops < MAX_OPS && s->nclient < MAX_OPS) {
          s->client[s->nclient++] = (op_t){op, NULL, 0};
          ops++;
        }
        kind = 'c';
        break;
      default:
        kind = 'c';
      }
      continue;
    }
    i++;
  }
  if (kind != 'd')
    add_span(s, kind, data + start, size - start, &ops);
  if (s->nresp > MAX_RESPONSES)
    s->nresp = MAX_RESPONSES;
}

/* ---- a byte sink, bounded ------------------------------------------------------ */

typedef struct sink {
  char *data;
  size_t len;   /* kept (at most OUT_MAX) */
  size_t total; /* received */
} sink_t;

static void sink_add(sink_t *k, const char *p, size_t n) {
  k->total += n;
  if (k->data == NULL && (k->data = malloc(OUT_MAX)) == NULL)
    die("malloc");
  size_t room = OUT_MAX - k->len;
  size_t take = n < room ? n : room;
  memcpy(k->data + k->len, p, take);
  k->len += take;
}

static void sink_free(sink_t *k) {
  free(k->data);
  k->data = NULL;
  k->len = k->total = 0;
}

/* ---- the upstream the target plays ----------------------------------------------- */

typedef struct up {
  int fd; /* -1: closed */
  llhttp_t parser;
  llhttp_errno_t err; /* the first parse error of what it received */
  sink_t got;
  size_t requests; /* messages begun */
  /* responses owed on this connection, in order: indices into script.resp */
  size_t queue[MAX_RESPONSES];
  size_t qhead, qlen;
  size_t chunk; /* of queue[qhead]: the next one to send */
  size_t sent;  /* bytes of that chunk already sent */
} up_t;

typedef struct client {
  int fd; /* -1: closed */
  bool eof, reset_seen, dead;
  sink_t got;
  sink_t sent;
  size_t op, off; /* the next op, and how much of its chunk went out */
} client_t;

typedef struct run {
  const script_t *s;
  up_t up[MAX_UP];
  size_t nup;
  size_t heads;       /* request heads the upstream received (all connections) */
  size_t next_resp;   /* the next scripted response to hand out */
  size_t extra_conns; /* connections past MAX_UP, reset at once */
  client_t cl[2];     /* the client, and its twin (flags bit 2) */
  size_t ncl;
  int waits;
} run_t;

static int up_on_begin(llhttp_t *p) {
  up_t *u = p->data;
  u->requests++;
  return 0;
}

static run_t *current;

static int up_on_head(llhttp_t *p) {
  up_t *u = p->data;
  run_t *r = current;
  r->heads++;
  if (r->next_resp < r->s->nresp && u->qlen < MAX_RESPONSES)
    u->queue[(u->qhead + u->qlen++) % MAX_RESPONSES] = r->next_resp++;
  return 0;
}

static llhttp_settings_t up_settings;

static void up_add(run_t *r, int fd) {
  if (r->nup >= MAX_UP) {
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
    r->extra_conns++;
    return;
  }
  up_t *u = &r->up[r->nup++];
  memset(u, 0, sizeof *u);
  u->fd = fd;
  llhttp_init(&u->parser, HTTP_REQUEST, &up_settings);
  /* an HTTP/1.0 request without keep-alive, answered in HTTP/1.1 without
   * close, leaves the connection persistent for cynic (RFC 9112 9.3: the
   * latest message received decides); llhttp, reading as the server, would
   * call the next request data after close */
  llhttp_set_lenient_keep_alive(&u->parser, 1);
  u->parser.data = u;
  u->err = HPE_OK;
}

static void up_close(up_t *u, bool reset) {
  if (u->fd < 0)
    return;
  if (reset) {
    struct linger lg = {1, 0};
    setsockopt(u->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  }
  close(u->fd);
  u->fd = -1;
}

/* The target's upstream: a listening socket on 127.0.0.1:0 (made once; the
 * proxy's endpoints name its port), and a bound socket that never listens
 * (the strict upstream's second endpoint: connections to it are refused). */
static int up_listen_fd = -1, refuse_fd = -1;
static uint16_t up_port, refuse_port;

static int loopback_socket(uint16_t *port, bool do_listen) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    die("socket");
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t alen = sizeof a;
  if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || (do_listen && listen(fd, 64) != 0) ||
      getsockname(fd, (struct sockaddr *)&a, &alen) != 0)
    die("cannot bind a loopback socket");
  *port = ntohs(a.sin_port);
  return fd;
}

static void up_accept(run_t *r) {
  for (;;) {
    int fd = accept4(up_listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
      return;
    if (r == NULL) { /* between inputs: nobody plays the upstream */
      close(fd);
      continue;
    }
    up_add(r, fd);
  }
}

/* Reads what is there; returns bytes read. */
static size_t up_read(up_t *u) {
  size_t moved = 0;
  char buf[8192];
  while (u->fd >= 0) {
    ssize_t n = recv(u->fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      moved += (size_t)n;
      sink_add(&u->got, buf, (size_t)n);
      if (u->err == HPE_OK) {
        u->err = llhttp_execute(&u->parser, buf, (size_t)n);
        if (u->err == HPE_PAUSED_UPGRADE) /* cynic refuses Upgrade (501): never here */
          u->err = HPE_USER;
      }
      continue;
    }
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
      up_close(u, false); /* the proxy closed it: so does the upstream */
    if (n < 0 && errno == EINTR)
      continue;
    break;
  }
  return moved;
}

/* Sends the next chunk of the response at the head of u's queue; applies
 * the response's end once its last chunk is out. True when a byte moved. */
static bool up_write(run_t *r, up_t *u) {
  if (u->fd < 0 || u->qlen == 0)
    return false;
  const response_t *resp = &r->s->resp[u->queue[u->qhead]];
  if (u->chunk < resp->nchunks) {
    const uint8_t *p = resp->chunk[u->chunk] + u->sent;
    size_t n = resp->len[u->chunk] - u->sent;
    ssize_t w = send(u->fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return false;
      up_close(u, false);
      return false;
    }
    u->sent += (size_t)w;
    if (u->sent == resp->len[u->chunk]) {
      u->chunk++;
      u->sent = 0;
    }
    return true;
  }
  /* every chunk out: the end */
  if (resp->end != 0)
    up_close(u, resp->end == 'r');
  u->qhead = (u->qhead + 1) % MAX_RESPONSES;
  u->qlen--;
  u->chunk = 0;
  u->sent = 0;
  return true;
}

/* ---- the client the target plays --------------------------------------------------- */

static size_t client_read(client_t *c) {
  size_t moved = 0;
  char buf[8192];
  while (c->fd >= 0 && !c->eof && !c->reset_seen) {
    ssize_t n = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      moved += (size_t)n;
      sink_add(&c->got, buf, (size_t)n);
      continue;
    }
    if (n == 0)
      c->eof = true;
    else if (errno == EINTR)
      continue;
    else if (errno != EAGAIN && errno != EWOULDBLOCK)
      c->reset_seen = true;
    break;
  }
  return moved;
}

static void settle_wait(uv_loop_t *l, uint64_t ms);

/* Runs client c's next op; true when it did something. Only the first
 * client waits (the twin passes over ~~w). */
static bool client_step(run_t *r, client_t *c, uv_loop_t *l) {
  const script_t *s = r->s;
  if (c->op >= s->nclient)
    return false;
  const op_t *o = &s->client[c->op];
  if (o->kind == 'w') {
    if (c == &r->cl[0] && r->waits++ < MAX_WAITS)
      settle_wait(l, WAIT_MS);
    c->op++;
    return true;
  }
  if (o->kind == 'e') {
    if (!c->dead)
      shutdown(c->fd, SHUT_WR);
    c->dead = true; /* nothing more is sent */
    c->op++;
    return true;
  }
  if (c->dead) {
    c->op++;
    return true;
  }
  ssize_t w = send(c->fd, o->p + c->off, o->n - c->off, MSG_DONTWAIT | MSG_NOSIGNAL);
  if (w < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
      return false;
    c->dead = true; /* the proxy closed it */
    return true;
  }
  sink_add(&c->sent, (const char *)o->p + c->off, (size_t)w);
  c->off += (size_t)w;
  if (c->off == o->n) {
    c->op++;
    c->off = 0;
  }
  return true;
}

/* ---- the proxy ------------------------------------------------------------------------ */

static cynic__config_t *config;
static uv_loop_t loop;
static cynic__proxy_t proxy;
static bool built;
static unsigned served;
static uint16_t app_port, strict_port;

static void turn(uv_loop_t *l) {
  uv_run(l, UV_RUN_NOWAIT);
}

static void on_wait_timer(uv_timer_t *t) {
  *(bool *)t->data = true;
}

static void on_wait_closed(uv_handle_t *h) {
  (void)h;
}

/* Runs the loop for `ms` of loop time (blocking in epoll between events). */
static void settle_wait(uv_loop_t *l, uint64_t ms) {
  uv_timer_t t;
  bool fired = false;
  uv_timer_init(l, &t);
  t.data = &fired;
  uv_timer_start(&t, on_wait_timer, ms, 0);
  for (int i = 0; i < 10000 && !fired; i++)
    uv_run(l, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&t, on_wait_closed);
  turn(l);
}

static uint16_t listener_port(cynic__listener_t *lst) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  if (uv_tcp_getsockname(&lst->handle, (struct sockaddr *)&ss, &len) != 0)
    die("getsockname on a listener");
  return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void build(void) {
  if (uv_loop_init(&loop) != 0)
    die("uv_loop_init");
  cynic__proxy_init(&proxy, &loop, config);
  if (cynic__upstreams_start(&proxy) != 0)
    die("the upstreams do not start");
  cynic__proxy_serve_if_resolved(&proxy);
  if (proxy.listeners == NULL || proxy.listener_count != 2 || proxy.stopping)
    die("the proxy does not serve");
  app_port = listener_port(&proxy.listeners[0]);
  strict_port = listener_port(&proxy.listeners[1]);
  built = true;
  served = 0;
}

static void teardown(void) {
  if (!built)
    return;
  built = false;
  cynic__proxy_stop(&proxy);
  for (int i = 0; i < 64 && uv_run(&loop, UV_RUN_NOWAIT) != 0; i++)
    up_accept(NULL);
  fuzz_proxy_close("fuzz_http_proxy", &loop, &proxy);
}

/* Idle upstream connections in every endpoint's pool. */
static size_t pooled(const cynic__proxy_t *p) {
  size_t n = 0;
  for (size_t i = 0; i < p->upstream_count; i++)
    for (size_t j = 0; p->upstreams[i].cfg != NULL && j < p->upstreams[i].endpoint_count; j++)
      n += p->upstreams[i].endpoints[j].idle_count;
  return n;
}

/* ---- the config ------------------------------------------------------------------------ */

static char dir[] = "/tmp/cynic-fuzz-http-XXXXXX";
static char path[256];

static void remove_files(void) {
  teardown();
  cynic__config_free(config);
  unlink(path);
  rmdir(dir);
  if (up_listen_fd >= 0)
    close(up_listen_fd);
  if (refuse_fd >= 0)
    close(refuse_fd);
}

/* Small timeouts so nothing waits long: the header, connect, first-byte and
 * request timeouts fire within an input's ~~w waits. The idle timeouts have
 * a 1 s floor (docs/configuration.md) and never fire within an input. */
static void setup(void) {
  /* as cynic__proxy_run does: a write to a peer that reset is an error
   * (EPIPE), not the end of the process */
  signal(SIGPIPE, SIG_IGN);
  up_listen_fd = loopback_socket(&up_port, true);
  refuse_fd = loopback_socket(&refuse_port, false);
  up_settings.on_message_begin = up_on_begin;
  up_settings.on_headers_complete = up_on_head;
  if (mkdtemp(dir) == NULL)
    die("mkdtemp");
  atexit(remove_files);
  snprintf(path, sizeof path, "%s/cynic.yaml", dir);
  FILE *f = fopen(path, "w");
  if (f == NULL)
    die("cannot write the config");
  fprintf(f,
          "log:\n  file: /dev/null\n  level: debug\n"
          "listeners:\n"
          "  - name: app\n    listen: 127.0.0.1:0\n    upstream: backend\n    mode: http\n"
          "    buffer: 4KB\n    access_log: /dev/null\n"
          "    timeouts:\n      header: 10ms\n      idle: 1s\n"
          "    limits:\n      max_request_head: 1KB\n"
          "  - name: strict\n    listen: 127.0.0.1:0\n    upstream: fragile\n    mode: http\n"
          "    buffer: 4KB\n    access_log: /dev/null\n    forwarded: forwarded\n"
          "    timeouts:\n      header: 10ms\n      idle: 1s\n"
          "    limits:\n      max_request_body: 64B\n"
          "upstreams:\n"
          "  - name: backend\n    endpoints: [127.0.0.1:%u]\n"
          "    timeouts:\n      connect: 10ms\n      first_byte: 10ms\n      idle: 1s\n"
          "    breaker:\n      faults: 1000000\n      leak: 1ms\n"
          "    bulkhead:\n      max_connections: 1\n      max_pending: 1\n"
          "      queue_timeout: 10ms\n"
          "    pool:\n      max_idle: 2\n      idle_timeout: 5ms\n"
          "  - name: fragile\n    endpoints: [127.0.0.1:%u, 127.0.0.1:%u]\n"
          "    timeouts:\n      connect: 10ms\n      first_byte: 10ms\n      idle: 1s\n"
          "      request: 15ms\n"
          "    breaker:\n      faults: 2\n      leak: 1s\n      open_for: 2ms\n"
          "    bulkhead:\n      max_connections: 1\n      max_pending: 0\n"
          "      queue_timeout: 0\n"
          "    expect:\n      status: 200-299\n      content_type: application/json\n"
          "    limits:\n      max_response_bytes: 1KB\n      max_header_bytes: 1KB\n"
          "    fallback:\n      status: 503\n      body: down\n      headers: { X-Fb: '1' }\n"
          "      stale: { max_entries: 4, max_bytes: 64KB, max_entry_bytes: 1KB, max_age: 1s }\n"
          "    pool:\n      max_idle: 1\n      idle_timeout: 5ms\n",
          up_port, up_port, refuse_port);
  if (fclose(f) != 0)
    die("cannot write the config");
  config = fuzz_proxy_config("fuzz_http_proxy", path);
}

/* ---- the oracles ------------------------------------------------------------------------ */

#define MAX_REQUESTS 512

typedef struct methods {
  bool head[MAX_REQUESTS];
  bool http10[MAX_REQUESTS]; /* HTTP/1.0: its response must not be chunked */
  size_t count;              /* requests whose line llhttp read */
  bool line_seen;
} methods_t;

static int req_line_done(llhttp_t *p) {
  methods_t *m = p->data;
  if (m->line_seen)
    return 0;
  m->line_seen = true;
  if (m->count < MAX_REQUESTS) {
    m->head[m->count] = llhttp_get_method(p) == HTTP_HEAD;
    m->http10[m->count] = p->http_major == 1 && p->http_minor == 0;
  }
  m->count++;
  return 0;
}

static int req_field(llhttp_t *p, const char *at, size_t n) {
  (void)at;
  (void)n;
  return req_line_done(p);
}

static int req_begin(llhttp_t *p) {
  ((methods_t *)p->data)->line_seen = false;
  return 0;
}

/* The requests in what the client sent, as llhttp reads them up to its
 * first error (cynic, stricter, refuses that one or an earlier one). */
static void read_methods(const sink_t *sent, methods_t *m) {
  llhttp_settings_t s;
  llhttp_settings_init(&s);
  s.on_message_begin = req_begin;
  s.on_header_field = req_field;
  s.on_headers_complete = req_line_done;
  llhttp_t parser;
  llhttp_init(&parser, HTTP_REQUEST, &s);
  parser.data = m;
  memset(m, 0, sizeof *m);
  llhttp_execute(&parser, sent->data != NULL ? sent->data : "", sent->len);
}

typedef struct answers {
  const methods_t *m;
  size_t finals;
  int bad_version;      /* a response that is not HTTP/1.1 (its minor + 1) */
  size_t chunked_to_10; /* 1 + the index of a Transfer-Encoding response to HTTP/1.0 */
  bool last_head;       /* the last final response answered a HEAD request */
} answers_t;

static int res_head(llhttp_t *p) {
  answers_t *a = p->data;
  if (p->http_major != 1 || p->http_minor != 1)
    a->bad_version = 1 + p->http_major * 10 + p->http_minor;
  if (p->status_code >= 100 && p->status_code < 200)
    return 1; /* interim: ends at its head whatever Content-Length says (RFC 9112 6.3) */
  size_t i = a->finals++;
  /* RFC 9112 6.1: no Transfer-Encoding in a response to HTTP/1.0; cynic
   * forwards the body decoded instead (docs/design-http.md) */
  if (i < a->m->count && i < MAX_REQUESTS && a->m->http10[i] &&
      (p->flags & (F_CHUNKED | F_TRANSFER_ENCODING)) != 0 && a->chunked_to_10 == 0)
    a->chunked_to_10 = i + 1;
  a->last_head = i < a->m->count && i < MAX_REQUESTS && a->m->head[i];
  /* llhttp leaves "no body" to the caller for HEAD answers and for 204 and
   * 304 (which end at their head whatever Content-Length says, RFC 9112
   * 6.3), as Node's http client does */
  return a->last_head || p->status_code == 204 || p->status_code == 304 ? 1 : 0;
}

static void dump(const run_t *r) {
  for (size_t k = 0; k < r->ncl; k++) {
    const client_t *c = &r->cl[k];
    fprintf(stderr, "--- client %zu sent (%zu):\n%.*s\n--- client %zu got (%zu%s):\n%.*s\n", k,
            c->sent.total, (int)c->sent.len, c->sent.data ? c->sent.data : "", k, c->got.total,
            c->reset_seen ? ", reset"
            : c->eof      ? ", closed"
                          : "",
            (int)c->got.len, c->got.data ? c->got.data : "");
  }
  for (size_t i = 0; i < r->nup; i++)
    fprintf(stderr, "--- upstream connection %zu got (%zu):\n%.*s\n", i, r->up[i].got.total,
            (int)r->up[i].got.len, r->up[i].got.data ? r->up[i].got.data : "");
}

static void fail_with(const run_t *r, const char *why) {
  fprintf(stderr, "fuzz_http_proxy: %s\n", why);
  dump(r);
  abort();
}

/* Checks what client c got against what it sent; returns the number of
 * requests it sent (llhttp's count). */
static size_t check_client(const run_t *r, const client_t *c) {
  methods_t m;
  read_methods(&c->sent, &m);
  llhttp_settings_t s;
  llhttp_settings_init(&s);
  s.on_headers_complete = res_head;
  answers_t a = {.m = &m};
  llhttp_t parser;
  llhttp_init(&parser, HTTP_RESPONSE, &s);
  parser.data = &a;
  char why[256];
  if (c->got.total == c->got.len && c->sent.total == c->sent.len) { /* all of it kept */
    llhttp_errno_t err = llhttp_execute(&parser, c->got.data ? c->got.data : "", c->got.len);
    /* cynic refuses a malformed HEAD request before it knows the method
     * (the head is not complete), so its answer has a body; the connection
     * closes after it, so no client misreads a later response: tolerated. */
    if (err == HPE_CLOSED_CONNECTION && a.last_head)
      err = HPE_OK;
    else if (err == HPE_OK && c->eof && !c->reset_seen)
      err = llhttp_finish(&parser); /* a clean close ends a complete stream */
    if (err != HPE_OK) {
      snprintf(why, sizeof why, "the client got bytes that are not HTTP/1.1 responses: %s (%s)%s",
               llhttp_errno_name(err), llhttp_get_error_reason(&parser),
               c->eof ? " before a clean close" : "");
      fail_with(r, why);
    }
    if (a.bad_version != 0) {
      snprintf(why, sizeof why, "a response not in HTTP/1.1: HTTP/%d.%d", (a.bad_version - 1) / 10,
               (a.bad_version - 1) % 10);
      fail_with(r, why);
    }
    if (a.chunked_to_10 != 0) {
      snprintf(why, sizeof why, "response %zu, to an HTTP/1.0 request, has Transfer-Encoding",
               a.chunked_to_10);
      fail_with(r, why);
    }
    if (m.count < MAX_REQUESTS && a.finals > m.count + 1) {
      snprintf(why, sizeof why, "%zu responses to %zu requests", a.finals, m.count);
      fail_with(r, why);
    }
  }
  return m.count;
}

static void check(const run_t *r) {
  char why[256];
  size_t sent = 0; /* requests the clients sent */
  for (size_t k = 0; k < r->ncl; k++)
    sent += check_client(r, &r->cl[k]);
  /* the upstream's side */
  size_t upstream_requests = 0;
  for (size_t i = 0; i < r->nup; i++) {
    const up_t *u = &r->up[i];
    upstream_requests += u->requests;
    if (u->err != HPE_OK && u->got.total == u->got.len) {
      snprintf(why, sizeof why,
               "upstream connection %zu got bytes that are not HTTP requests: %s (%s)", i,
               llhttp_errno_name(u->err), llhttp_get_error_reason(&u->parser));
      fail_with(r, why);
    }
  }
  if (sent < MAX_REQUESTS && upstream_requests > sent) {
    snprintf(why, sizeof why, "the upstream got %zu requests, the clients sent %zu",
             upstream_requests, sent);
    fail_with(r, why);
  }
}

/* ---- one input ---------------------------------------------------------------------------- */

/* A client connection to the proxy on `port`, or -1 when the machine is
 * out of ports. Each input leaves a few connections in TIME_WAIT (600
 * inputs a second outrun the 28,000 ephemeral ports of one source address
 * in a minute), so clients take their source address in turn from
 * 127.0.0.2..127.0.0.201 (loopback, each with its own ports). */
static int client_connect(uint16_t port) {
  static unsigned next;
  for (int attempt = 0; attempt < 4; attempt++) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
      die("socket");
    struct sockaddr_in src = {.sin_family = AF_INET,
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK + 1 + next++ % 200)};
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = htons(port)};
    /* blocking: on loopback the kernel completes the handshake into the
     * listener's backlog at once */
    if (bind(fd, (struct sockaddr *)&src, sizeof src) == 0 &&
        connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      if (fcntl(fd, F_SETFL, O_NONBLOCK) != 0)
        die("fcntl");
      return fd;
    }
    int err = errno;
    close(fd);
    /* EINTR: libFuzzer's timeout timer (SIGALRM) landed in the blocking
     * connect; a new socket tries again */
    if (err != EADDRNOTAVAIL && err != EADDRINUSE && err != EAGAIN && err != EINTR) {
      fprintf(stderr, "fuzz_http_proxy: cannot connect to the proxy: %s\n", strerror(err));
      abort();
    }
  }
  return -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (config == NULL)
    setup();
  if (size < 1)
    return 0;
  if (built && (served >= REBUILD_EVERY || getenv("FUZZ_FRESH") != NULL))
    teardown();
  if (!built)
    build();
  served++;

  static script_t s;
  parse_script(data, size, &s);
  static run_t r;
  memset(&r, 0, sizeof r);
  r.s = &s;
  current = &r;
  r.ncl = s.twin ? 2 : 1;
  for (size_t k = 0; k < r.ncl; k++)
    r.cl[k].fd = client_connect(s.strict ? strict_port : app_port);
  if (r.cl[0].fd < 0 || (r.ncl == 2 && r.cl[1].fd < 0)) { /* out of ports: skip it */
    for (size_t k = 0; k < r.ncl; k++)
      if (r.cl[k].fd >= 0)
        close(r.cl[k].fd);
    for (int i = 0; i < 64 && proxy.conn_count > 0; i++)
      settle_wait(&loop, 1);
    return 0;
  }

  /* the script */
  int quiet = 0, t = 0;
  uint64_t began = uv_hrtime();
  for (; t < MAX_TURNS && quiet < QUIET_TURNS; t++) {
    bool moved = false;
    for (size_t k = 0; k < r.ncl; k++)
      moved = client_step(&r, &r.cl[k], &loop) || moved;
    turn(&loop);
    up_accept(&r);
    for (size_t k = 0; k < r.ncl; k++)
      moved = client_read(&r.cl[k]) > 0 || moved;
    for (size_t i = 0; i < r.nup; i++) {
      moved = up_read(&r.up[i]) > 0 || moved;
      moved = up_write(&r, &r.up[i]) || moved;
    }
    quiet = moved ? 0 : quiet + 1;
  }
  for (size_t k = 0; k < r.ncl; k++)
    client_read(&r.cl[k]);
  for (size_t i = 0; i < r.nup; i++)
    up_read(&r.up[i]);
  if (getenv("FUZZ_VERBOSE") != NULL) {
    fprintf(stderr, "--- %d turns, %.3f ms\n", t, (double)(uv_hrtime() - began) / 1e6);
    dump(&r);
  }
  check(&r);

  /* both peers leave; the proxy must let go of everything */
  for (size_t k = 0; k < r.ncl; k++) {
    if (s.client_reset) {
      struct linger lg = {1, 0};
      setsockopt(r.cl[k].fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    close(r.cl[k].fd);
    r.cl[k].fd = -1;
  }
  for (size_t i = 0; i < r.nup; i++)
    up_close(&r.up[i], false);
  uint64_t start = uv_hrtime();
  current = NULL;
  for (int i = 0;; i++) {
    if (i < 32)
      turn(&loop);
    else
      settle_wait(&loop, 1);
    up_accept(NULL);
    if (proxy.conn_count == 0 && pooled(&proxy) == 0)
      break;
    if (uv_hrtime() - start > (uint64_t)SETTLE_MS * 1000000u) {
      char why[128];
      snprintf(why, sizeof why,
               "%zu sessions and %zu pooled connections left %d ms after both peers left",
               proxy.conn_count, pooled(&proxy), SETTLE_MS);
      fail_with(&r, why);
    }
  }
  for (size_t k = 0; k < r.ncl; k++) {
    sink_free(&r.cl[k].got);
    sink_free(&r.cl[k].sent);
  }
  for (size_t i = 0; i < r.nup; i++)
    sink_free(&r.up[i].got);
  return 0;
}
