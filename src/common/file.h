/*
 * file.h: opening the files a user names (configs, tokens, logs) without
 * ever blocking the event loop on them.
 *
 * open(2) of a FIFO blocks until the other end opens it, so a named pipe at a
 * config, token or log path would freeze the whole process (and /dev/zero as
 * a config would be read for ever). Every path a user names is opened here:
 * with O_NONBLOCK (the open itself never waits), O_CLOEXEC and O_NOCTTY, then
 * fstat(2) on the descriptor decides what the file is.
 *
 * Symbolic links are followed (no O_NOFOLLOW): Kubernetes mounts secrets and
 * config maps as links (`token -> ..data/token`) and `/dev/stdout` is one;
 * the path comes from the operator's own config or command line, so a link
 * there is theirs to make.
 *
 * Errors are negative errno values, plus the two below; cynic__file_strerror
 * says each in words an operator can act on.
 */
#ifndef CYNIC_COMMON_FILE_H
#define CYNIC_COMMON_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Not a regular file where one is required: a FIFO, a device, a socket (a
 * directory is -EISDIR); and larger than the caller's cap. Distinct from
 * every errno value. */
#define CYNIC__FILE_EFIFO (-2001)
#define CYNIC__FILE_EDEVICE (-2002)
#define CYNIC__FILE_ESOCKET (-2003)
#define CYNIC__FILE_ETOOBIG (-2004)

/* Reads the whole of the regular file at `path`, at most `max` bytes, into a
 * malloc'd buffer NUL-terminated at data[len] (the caller frees it). Anything
 * but a regular file is refused without a byte read (-EISDIR,
 * CYNIC__FILE_EFIFO, _EDEVICE, _ESOCKET); a file
 * longer than `max` is CYNIC__FILE_ETOOBIG after reading max + 1 bytes, never
 * more. 0, or a negative error (-ENOENT, -EACCES, -ENOMEM, ...). */
int cynic__file_read(const char *path, size_t max, char **data, size_t *len);

/* Opens `path` to append log lines to (created 0666 & ~umask if missing),
 * line-buffered. Accepted: a regular file; a character device (/dev/null, a
 * terminal, /dev/stderr when it is one); and a pipe or socket that already
 * has a reader (/dev/stdout in a container is the log collector's pipe). A
 * FIFO nobody reads is refused at once (-ENXIO) instead of waiting for a
 * reader; a directory is -EISDIR, a block device CYNIC__FILE_EDEVICE. The
 * descriptor is switched back to blocking once open, so no line is half
 * written. *err (when not NULL) gets the error when NULL is returned. */
FILE *cynic__file_open_log(const char *path, int *err);

/* Rotates a log file the logrotate way: path.(keep-1) -> path.keep, ...,
 * path.1 -> path.2, then path -> path.1 (a missing path.N is skipped; what
 * was path.keep is replaced). `keep` >= 1. The caller reopens `path`
 * afterwards. The name path now has (path.1) is written to rotated[len]
 * when it is not NULL. 0, -ENAMETOOLONG for a path over 4,096 bytes, or
 * -errno of the last rename (path -> path.1). Used by the process log and
 * the access logs alike. */
int cynic__file_rotate(const char *path, uint32_t keep, char *rotated, size_t len);

/* Words for an error from the functions above ("is a FIFO (named pipe), not
 * a regular file"; strerror for an errno). Static storage. */
const char *cynic__file_strerror(int err);

#endif
