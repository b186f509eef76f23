/* buf.c: bounded growable byte buffer. */
#include "buf.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cynic/common.h"

void cynic__buf_init(cynic__buf_t *b, size_t max) {
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
  b->max = max;
}

void cynic__buf_free(cynic__buf_t *b) {
  free(b->data);
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
}

void cynic__buf_reset(cynic__buf_t *b) {
  b->len = 0;
  if (b->data != NULL)
    b->data[0] = '\0';
}

static int reserve(cynic__buf_t *b, size_t n) {
  if (n > b->max || b->len > b->max - n)
    return CYNIC_ERANGE;
  size_t need = b->len + n;
  if (need <= b->cap && b->data != NULL)
    return 0;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < need)
    cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  if (cap > b->max)
    cap = b->max;
  char *p = realloc(b->data, cap + 1);
  if (p == NULL)
    return CYNIC_ENOMEM;
  b->data = p;
  b->cap = cap;
  return 0;
}

int cynic__buf_append(cynic__buf_t *b, const void *p, size_t n) {
  /* p may point into b itself (a part of it appended again): then it moves
   * with the data should reserve() reallocate it */
  uintptr_t at = (uintptr_t)p, base = (uintptr_t)b->data;
  bool inside = b->data != NULL && at >= base && at < base + b->len;
  int err = reserve(b, n);
  if (err)
    return err;
  if (inside)
    p = b->data + (at - base);
  if (n > 0)
    memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

int cynic__buf_puts(cynic__buf_t *b, const char *s) {
  return cynic__buf_append(b, s, strlen(s));
}

int cynic__buf_vprintf(cynic__buf_t *b, const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  if (n < 0)
    return CYNIC_EINVAL;
  int err = reserve(b, (size_t)n);
  if (err)
    return err;
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  b->len += (size_t)n;
  return 0;
}

int cynic__buf_printf(cynic__buf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int err = cynic__buf_vprintf(b, fmt, ap);
  va_end(ap);
  return err;
}

void cynic__buf_consume(cynic__buf_t *b, size_t n) {
  if (n >= b->len) {
    cynic__buf_reset(b);
    return;
  }
  memmove(b->data, b->data + n, b->len - n);
  b->len -= n;
  b->data[b->len] = '\0';
}

char *cynic__buf_detach(cynic__buf_t *b, size_t *len) {
  char *p = b->data;
  if (len != NULL)
    *len = b->len;
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
  return p;
}
