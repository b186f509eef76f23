/*
 * shed.h: accept and close a connection a listener cannot afford.
 *
 * libuv stops polling a listener whose connection callback returns without
 * calling uv_accept, until something accepts the pending connection; a
 * callback that returns early because an allocation failed would leave the
 * listener deaf for good (found by tests/integration/test_oom.py). Such a
 * callback calls cynic__shed(): the connection is accepted into a handle of
 * static storage and closed at once, so the client sees a close and the
 * listener goes on. Nothing is allocated.
 *
 * One handle serves the process (one event loop). While it is closing, later
 * listeners wait in a small table (16) and are shed in turn from its close
 * callback; a listener shed while the table is full stays paused (only if 16
 * listeners run out of memory in one loop iteration). A listener that is
 * being closed must be forgotten first: cynic__shed_forget().
 */
#ifndef CYNIC_COMMON_SHED_H
#define CYNIC_COMMON_SHED_H

#include <uv.h>

/* Sheds the connection pending on `server`, now or from the next close. */
void cynic__shed(uv_stream_t *server);
/* `server` is about to be closed: drop it from the waiting table. */
void cynic__shed_forget(uv_stream_t *server);

/*
 * libuv keeps a table of watchers indexed by descriptor and grows it with
 * realloc the first time a higher descriptor is watched; when that realloc
 * fails, libuv calls abort() (uv__io_start, libuv 1.44). To keep a memory
 * shortage from killing the process at an accept or a connect, the table is
 * grown once at start-up for descriptors below min(`fds`, RLIMIT_NOFILE)
 * (8 bytes each), by watching one descriptor near the top for a moment.
 * Descriptors above it can still abort under memory shortage. Call right
 * after uv_loop_init; the loop needs one iteration to finish the close.
 */
void cynic__reserve_fd_table(uv_loop_t *loop, int fds);

#endif
