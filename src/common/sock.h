/*
 * src/common/sock.h: what libuv's stream API hides about a TCP socket.
 */
#ifndef CYNIC_COMMON_SOCK_H
#define CYNIC_COMMON_SOCK_H

#include <uv.h>

/*
 * The socket's pending error (SO_ERROR) as a libuv error code (UV_ECONNRESET,
 * ...), or 0 when there is none or it cannot be read. Reading it clears it.
 *
 * Why: libuv reports UV_EOF, not the error, when epoll flags a hang-up
 * together with the last bytes of a read (uv__stream_io short-cuts POLLHUP
 * after a partial read without reading again), so a reset that arrives
 * right behind data looks exactly like a FIN. A proxy that forwards resets
 * as resets asks this on UV_EOF to tell the two apart: one getsockopt per
 * EOF, nothing on the per-byte path.
 */
int cynic__sock_pending_error(const uv_stream_t *s);

#endif
