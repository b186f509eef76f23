/* shed.c: accept and close a connection a listener cannot afford (shed.h). */
#include "shed.h"

#include <stdbool.h>
#include <string.h>

#define SHED_WAITING_MAX 16

static uv_tcp_t shed_tcp;  /* accepts a connection to shed, then closes */
static bool shed_busy;     /* shed_tcp is closing */
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
