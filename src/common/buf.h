/*
 * buf.h: a growable byte buffer with a hard cap (Steady State: nothing grows
 * without limit). Like curl's dynbuf, every buffer is given its `max` at init;
 * an append that would pass it fails with CYNIC_ERANGE and leaves the buffer
 * unchanged, so the caller can answer "too large" instead of running the
 * process out of memory.
 *
 * Event-loop agnostic; not thread safe (one owner at a time).
 */
#ifndef CYNIC_COMMON_BUF_H
#define CYNIC_COMMON_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct cynic__buf {
  char *data; /* NUL-terminated after every successful append (not counted in len) */
  size_t len; /* bytes in use */
  size_t cap; /* bytes allocated (excluding the terminator) */
  size_t max; /* hard cap on len */
} cynic__buf_t;

/* Start empty; no allocation until the first append. `max` must be > 0. */
void cynic__buf_init(cynic__buf_t *b, size_t max);
/* Release the memory; the buffer is empty and reusable afterwards. */
void cynic__buf_free(cynic__buf_t *b);
/* Forget the contents but keep the allocation. */
void cynic__buf_reset(cynic__buf_t *b);
/* Append n bytes; p may point into b itself (a part of its contents).
 * 0, CYNIC_ERANGE past max, CYNIC_ENOMEM. */
int cynic__buf_append(cynic__buf_t *b, const void *p, size_t n);
/* Append a NUL-terminated string. */
int cynic__buf_puts(cynic__buf_t *b, const char *s);
/* Append printf-formatted text; same errors as append. */
int cynic__buf_printf(cynic__buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int cynic__buf_vprintf(cynic__buf_t *b, const char *fmt, va_list ap);
/* Drop the first n bytes (n > len drops everything). */
void cynic__buf_consume(cynic__buf_t *b, size_t n);
/* Hand the allocation to the caller (who frees it with free()); the buffer is
 * left empty. Returns NULL if nothing was ever appended. */
char *cynic__buf_detach(cynic__buf_t *b, size_t *len);

#endif
