/*
 * fuzz/fuzz_addr.c: libFuzzer target for src/common's address parsing
 * (cynic__addr_split), which reads every listen and upstream string a user or
 * an API client sends.
 *
 * Oracle: no sanitizer report; an accepted address has a host that fits and
 * holds only the documented characters; formatting the split parts back
 * ("host:port" or "[v6]:port") splits to the same parts (round trip); and a
 * numeric host survives cynic__addr_numeric -> cynic__addr_format -> split
 * with the same port and the same socket address.
 */
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool host_chars_ok(const char *h) {
  for (; *h; h++)
    if (strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._:%", *h) == NULL)
      return false;
  return true;
}

static bool same_sockaddr(const struct sockaddr_storage *a, const struct sockaddr_storage *b) {
  if (a->ss_family != b->ss_family)
    return false;
  size_t n = a->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
  return memcmp(a, b, n) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char in[600];
  if (size >= sizeof(in))
    return 0;
  memcpy(in, data, size);
  in[size] = '\0'; /* an embedded NUL just ends the string early, as in C callers */
  char host[CYNIC_ADDR_HOST_MAX];
  uint16_t port = 0;
  if (cynic__addr_split(in, host, sizeof(host), &port) != 0)
    return 0;
  if (strlen(host) >= sizeof(host) || !host_chars_ok(host))
    abort();

  char again[CYNIC_ADDR_STR_MAX + 8];
  snprintf(again, sizeof(again), strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, (unsigned)port);
  char host2[CYNIC_ADDR_HOST_MAX];
  uint16_t port2 = 0;
  if (cynic__addr_split(again, host2, sizeof(host2), &port2) != 0 || strcmp(host, host2) != 0 ||
      port != port2)
    abort();

  /* A too-small host buffer is refused, never overrun. */
  char tiny[4];
  uint16_t port3 = 0;
  if (cynic__addr_split(in, tiny, sizeof(tiny), &port3) == 0 && strlen(host) >= sizeof(tiny))
    abort();

  struct sockaddr_storage ss, ss2;
  if (host[0] != '\0' && cynic__addr_numeric(host, port, false, &ss)) {
    char text[CYNIC_ADDR_STR_MAX];
    if (cynic__addr_format((const struct sockaddr *)&ss, text, sizeof(text)) != 0)
      abort();
    char host4[CYNIC_ADDR_HOST_MAX];
    uint16_t port4 = 0;
    if (cynic__addr_split(text, host4, sizeof(host4), &port4) != 0 || port4 != port)
      abort();
    if (!cynic__addr_numeric(host4, port4, false, &ss2) || !same_sockaddr(&ss, &ss2))
      abort();
  }
  return 0;
}
