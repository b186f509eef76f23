/*
 * src/common/sock.c: what libuv's stream API hides about a TCP socket
 * (contract in sock.h).
 */
#include <errno.h>
#include <sys/socket.h>

#include "sock.h"

int cynic__sock_pending_error(const uv_stream_t *s) {
  uv_os_fd_t fd;
  if (uv_fileno((const uv_handle_t *)s, &fd) != 0)
    return 0;
  int err = 0;
  socklen_t len = sizeof(err);
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
    return 0;
  return err == 0 ? 0 : uv_translate_sys_error(err);
}
