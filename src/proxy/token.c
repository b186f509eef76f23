/* token.c: the admin bearer token file (token.h). */
#define _DEFAULT_SOURCE /* explicit_bzero; POSIX 2008 too */

#include "token.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "file.h"

#define RULE "the token is 1..4096 visible ASCII characters on one line"

/* What the byte at `c` is, for an error message. */
static const char *describe(unsigned char c, char buf[32]) {
  switch (c) {
  case '\0':
    return "a NUL byte";
  case '\n':
    return "a second line";
  case '\r':
    return "a carriage return";
  case ' ':
    return "a space";
  case '\t':
    return "a tab";
  default:
    snprintf(buf, 32, c < 0x80 ? "control character 0x%02x" : "non-ASCII byte 0x%02x", c);
    return buf;
  }
}

int cynic__token_read(const char *path, char **token, size_t *len, char *why, size_t why_size) {
  char scratch[8];
  if (why == NULL) {
    why = scratch;
    why_size = sizeof scratch;
  }
  *token = NULL;
  *len = 0;
  char *t = NULL;
  size_t n = 0;
  /* Room for the longest token and "\r\n": one byte more is too long. */
  int rc = cynic__file_read(path, CYNIC__TOKEN_MAX + 2, &t, &n);
  if (rc == CYNIC__FILE_ETOOBIG) {
    snprintf(why, why_size, "is longer than 4096 bytes; " RULE);
    return rc;
  }
  if (rc != 0) {
    if (rc == -EISDIR || rc <= CYNIC__FILE_EFIFO)
      snprintf(why, why_size, "%s; put the token in a regular file", cynic__file_strerror(rc));
    else
      snprintf(why, why_size,
               "cannot be read: %s; create it (the token on one line) or fix the path",
               cynic__file_strerror(rc));
    return rc;
  }
  size_t end = n; /* one trailing newline may end the line */
  if (end > 0 && t[end - 1] == '\n') {
    end--;
    if (end > 0 && t[end - 1] == '\r')
      end--;
  }
  rc = -EINVAL;
  if (end == 0) {
    snprintf(why, why_size, "%s; write the token in it: " RULE,
             n == 0 ? "is empty" : "holds only a newline");
    goto out_wipe;
  }
  if (end > CYNIC__TOKEN_MAX) {
    snprintf(why, why_size, "holds %zu bytes; " RULE, end);
    goto out_wipe;
  }
  for (size_t i = 0; i < end; i++) {
    unsigned char c = (unsigned char)t[i];
    if (c < 0x21 || c > 0x7e) {
      char buf[32];
      snprintf(why, why_size, "has %s at byte %zu; " RULE, describe(c, buf), i + 1);
      goto out_wipe;
    }
  }
  t[end] = '\0';
  *token = t;
  *len = end;
  return 0;
out_wipe:
  cynic__token_free(t, n);
  return rc;
}

void cynic__token_free(char *token, size_t len) {
  if (token == NULL)
    return;
  explicit_bzero(token, len); /* not optimised away before free, as memset may be */
  free(token);
}
