/*
 * token.h: the admin bearer token file, read and checked by one function
 * that `cynic --check`, start and every reload share, so the three cannot
 * disagree about a file (docs/admin.md, "Bearer token").
 */
#ifndef CYNIC_PROXY_TOKEN_H
#define CYNIC_PROXY_TOKEN_H

#include <stddef.h>

/* The longest token, in bytes. */
#define CYNIC__TOKEN_MAX 4096

/*
 * Reads the token in `path`: a regular file holding 1..CYNIC__TOKEN_MAX
 * visible ASCII characters (0x21..0x7e) on one line, optionally ended by one
 * newline ("\n" or "\r\n"). Opened without blocking (a FIFO or device there
 * is refused at once, never waited on) and read to at most a few bytes past
 * the limit.
 *
 * 0 with *token (malloc'd, NUL-terminated; the caller wipes and frees it) and
 * *len set; or a negative errno / file.h code with `why` (when not NULL) set
 * to what is wrong with the file, in words that start after its name
 * ("is empty; write the token ..."); *token is then NULL.
 */
int cynic__token_read(const char *path, char **token, size_t *len, char *why, size_t why_size);

/* Wipes the `len` bytes of `token` (from cynic__token_read; NULL is fine) and
 * frees it: every holder of a token lets go of it through here. */
void cynic__token_free(char *token, size_t len);

#endif
