/* shed.c: accept and close a connection a listener cannot afford (shed.h). */
#include "shed.h"

#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define SHED_WAITING_MAX 16

static uv_tcp_t shed_tcp;                      /* accepts a connection to shed, then closes */
static bool shed_busy;                         /* shed_tcp is closing */
static uv_stream_t *waiting[SHED_WAITING_MAX]; /* listeners paused until shed_tcp is free */
static size_t nwaiting;

static void take(uv_stream_t *server);

static void on_shed_closed(uv_handle_t *h) {
  (void)h;
  shed_busy = false;
  if (nwaiting > 0) {
    uv_stream_t *server = waiting[0];
    memmove(waiting, waiting + 1, --nwaiting * sizeof(*waiting));
    take(server);
  }
}

static void take(uv_stream_t *server) {
  if (uv_tcp_init(server->loop, &shed_tcp) != 0)
    return;
  /* Accepting (even in vain) makes libuv poll the listener again. */
  uv_accept(server, (uv_stream_t *)&shed_tcp);
  shed_busy = true;
  uv_close((uv_handle_t *)&shed_tcp, on_shed_closed);
}

void cynic__shed(uv_stream_t *server) {
  if (!shed_busy) {
    take(server);
    return;
  }
  for (size_t i = 0; i < nwaiting; i++)
    if (waiting[i] == server)
      return;
  if (nwaiting < SHED_WAITING_MAX)
    waiting[nwaiting++] = server;
}

void cynic__shed_forget(uv_stream_t *server) {
  for (size_t i = 0; i < nwaiting; i++)
    if (waiting[i] == server) {
      memmove(waiting + i, waiting + i + 1, (nwaiting - i - 1) * sizeof(*waiting));
      nwaiting--;
      return;
    }
}

static void on_poll(uv_poll_t *p, int status, int events) {
  (void)p;
  (void)status;
  (void)events;
}

void cynic__reserve_fd_table(uv_loop_t *loop, int fds) {
  static uv_poll_t poll; /* closed at once; static so it outlives this call */
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
      (rlim_t)fds > rl.rlim_cur)
    fds = (int)rl.rlim_cur;
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0 || fds < 2)
    goto out_close;
  /* the lowest free descriptor from fds - 1 (one in use is left alone) */
  int fd = s < fds - 1 ? fcntl(s, F_DUPFD_CLOEXEC, fds - 1) : s;
  if (fd < 0)
    goto out_close;
  if (uv_poll_init(loop, &poll, fd) == 0) {
    uv_poll_start(&poll, UV_READABLE, on_poll); /* the table grows here */
    uv_poll_stop(&poll);
    uv_close((uv_handle_t *)&poll, NULL);
  }
  if (fd != s)
    close(fd);
out_close:
  if (s >= 0)
    close(s);
}
