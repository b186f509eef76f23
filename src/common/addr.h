/*
 * addr.h: "host:port" addresses as users write them, and socket addresses as
 * we report them. Event-loop agnostic, no DNS (resolution is the caller's
 * business, done asynchronously on the data path).
 *
 * Accepted forms: "host:port", "1.2.3.4:port", "[v6addr]:port", ":port" (empty
 * host = every interface). The port is 0..65535, decimal digits only. Host
 * characters are limited to A-Z a-z 0-9 - . _ : % (names, literals, zones).
 */
#ifndef CYNIC_COMMON_ADDR_H
#define CYNIC_COMMON_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define CYNIC_ADDR_HOST_MAX 256 /* bytes, including the NUL */
#define CYNIC_ADDR_STR_MAX 272  /* "[" host "]:" port NUL */

/* Split `s` into host (brackets removed) and port. 0 or CYNIC_EINVAL. */
int cynic__addr_split(const char *s, char *host, size_t hostlen, uint16_t *port);
/* If `host` is a numeric IPv4/IPv6 address (or empty: the IPv4 wildcard when
 * `wildcard6` is false, else the IPv6 wildcard), fill `out` and return true. */
bool cynic__addr_numeric(const char *host, uint16_t port, bool wildcard6,
                         struct sockaddr_storage *out);
/* Format as "1.2.3.4:80" or "[::1]:80". 0 or CYNIC_EINVAL. */
int cynic__addr_format(const struct sockaddr *sa, char *out, size_t outlen);

#endif
