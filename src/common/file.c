/* file.c: user-named files opened without blocking and checked for type
 * (file.h). */
#include "file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int kind_error(mode_t mode) {
  if (S_ISDIR(mode))
    return -EISDIR;
  if (S_ISFIFO(mode))
    return CYNIC__FILE_EFIFO;
  if (S_ISSOCK(mode))
    return CYNIC__FILE_ESOCKET;
  return CYNIC__FILE_EDEVICE; /* character or block device */
}

int cynic__file_read(const char *path, size_t max, char **data, size_t *len) {
  *data = NULL;
  *len = 0;
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0)
    return -errno;
  int rc = 0;
  struct stat st;
  if (fstat(fd, &st) != 0) {
    rc = -errno;
    goto out_close;
  }
  if (!S_ISREG(st.st_mode)) {
    rc = kind_error(st.st_mode);
    goto out_close;
  }
  /* st_size only sizes the buffer: the file may grow while it is read, so
   * the loop still stops at max + 1. */
  size_t cap = (st.st_size >= 0 && (uint64_t)st.st_size < max ? (size_t)st.st_size : max) + 2;
  char *buf = malloc(cap);
  if (buf == NULL) {
    rc = -ENOMEM;
    goto out_close;
  }
  size_t n = 0;
  while (n <= max) {
    if (n + 1 == cap) { /* grew since fstat: room up to max + 1 and the NUL */
      size_t ncap = max + 2;
      char *nbuf = realloc(buf, ncap);
      if (nbuf == NULL) {
        rc = -ENOMEM;
        goto out_free;
      }
      buf = nbuf;
      cap = ncap;
    }
    ssize_t got = read(fd, buf + n, cap - 1 - n);
    if (got < 0 && errno == EINTR)
      continue;
    if (got < 0) {
      rc = -errno;
      goto out_free;
    }
    if (got == 0)
      break;
    n += (size_t)got;
  }
  if (n > max) {
    rc = CYNIC__FILE_ETOOBIG;
    goto out_free;
  }
  buf[n] = '\0';
  *data = buf;
  *len = n;
  close(fd);
  return 0;
out_free:
  free(buf);
out_close:
  close(fd);
  return rc;
}

FILE *cynic__file_open_log(const char *path, int *err) {
  int rc = 0;
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NONBLOCK | O_CLOEXEC | O_NOCTTY, 0666);
  if (fd < 0) {
    rc = -errno; /* a FIFO with no reader: ENXIO, at once */
    goto out;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    rc = -errno;
    goto out_close;
  }
  if (!S_ISREG(st.st_mode) && !S_ISCHR(st.st_mode) && !S_ISFIFO(st.st_mode) &&
      !S_ISSOCK(st.st_mode)) {
    rc = kind_error(st.st_mode);
    goto out_close;
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
    rc = -errno;
    goto out_close;
  }
  FILE *f = fdopen(fd, "a");
  if (f == NULL) {
    rc = -errno;
    goto out_close;
  }
  setvbuf(f, NULL, _IOLBF, 0);
  return f;
out_close:
  close(fd);
out:
  if (err != NULL)
    *err = rc;
  errno = -rc > 0 && -rc < 2000 ? -rc : EINVAL;
  return NULL;
}

int cynic__file_rotate(const char *path, uint32_t keep, char *rotated, size_t len) {
  size_t n = strlen(path);
  if (n > 4096)
    return -ENAMETOOLONG;
  char from[4096 + 16], to[4096 + 16];
  for (uint32_t i = keep; i > 1; i--) {
    snprintf(from, sizeof from, "%s.%u", path, i - 1);
    snprintf(to, sizeof to, "%s.%u", path, i);
    rename(from, to); /* a missing path.N-1 is fine */
  }
  snprintf(to, sizeof to, "%s.1", path);
  if (rotated != NULL && len > 0)
    snprintf(rotated, len, "%s", to);
  return rename(path, to) == 0 ? 0 : -errno;
}

const char *cynic__file_strerror(int err) {
  switch (err) {
  case -EISDIR:
    return "is a directory, not a regular file";
  case CYNIC__FILE_EFIFO:
    return "is a FIFO (named pipe), not a regular file";
  case CYNIC__FILE_EDEVICE:
    return "is a device, not a regular file";
  case CYNIC__FILE_ESOCKET:
    return "is a socket, not a regular file";
  case CYNIC__FILE_ETOOBIG:
    return "is too large";
  case -ENXIO:
    return "has no reader (a FIFO nobody has open for reading?): No such device or address";
  default:
    return strerror(-err);
  }
}
