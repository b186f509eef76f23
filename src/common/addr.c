/* addr.c: host:port parsing and formatting. */
#include "addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "cynic/common.h"

int cynic__addr_split(const char *s, char *host, size_t hostlen, uint16_t *port) {
  if (s == NULL || hostlen == 0)
    return CYNIC_EINVAL;
  const char *colon;
  const char *hbeg = s;
  size_t hlen;
  if (s[0] == '[') {
    const char *close = strchr(s, ']');
    if (close == NULL || close[1] != ':')
      return CYNIC_EINVAL;
    hbeg = s + 1;
    hlen = (size_t)(close - hbeg);
    colon = close + 1;
    if (hlen == 0 || memchr(hbeg, ':', hlen) == NULL)
      return CYNIC_EINVAL; /* brackets are for IPv6 literals only */
  } else {
    colon = strrchr(s, ':');
    if (colon == NULL)
      return CYNIC_EINVAL;
    hlen = (size_t)(colon - s);
    if (memchr(s, ':', hlen) != NULL)
      return CYNIC_EINVAL; /* an IPv6 literal must be bracketed */
  }
  if (hlen >= hostlen)
    return CYNIC_EINVAL;
  for (size_t i = 0; i < hlen; i++) {
    /* Host names, IPv4 and IPv6 literals (with a %zone): nothing that could
     * smuggle into a log line, a metric label or a header. */
    unsigned char c = (unsigned char)hbeg[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_' || c == ':' || c == '%';
    if (!ok)
      return CYNIC_EINVAL;
  }
  const char *p = colon + 1;
  if (*p == '\0' || strlen(p) > 5)
    return CYNIC_EINVAL;
  unsigned long v = 0;
  for (; *p; p++) {
    if (*p < '0' || *p > '9')
      return CYNIC_EINVAL;
    v = v * 10 + (unsigned long)(*p - '0');
  }
  if (v > 65535)
    return CYNIC_EINVAL;
  memcpy(host, hbeg, hlen);
  host[hlen] = '\0';
  *port = (uint16_t)v;
  return 0;
}

bool cynic__addr_numeric(const char *host, uint16_t port, bool wildcard6,
                         struct sockaddr_storage *out) {
  memset(out, 0, sizeof(*out));
  struct sockaddr_in *in4 = (struct sockaddr_in *)out;
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)out;
  if (host[0] == '\0') {
    if (wildcard6) {
      in6->sin6_family = AF_INET6;
      in6->sin6_addr = in6addr_any;
      in6->sin6_port = htons(port);
    } else {
      in4->sin_family = AF_INET;
      in4->sin_addr.s_addr = htonl(INADDR_ANY);
      in4->sin_port = htons(port);
    }
    return true;
  }
  if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons(port);
    return true;
  }
  memset(out, 0, sizeof(*out));
  if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    return true;
  }
  return false;
}

int cynic__addr_format(const struct sockaddr *sa, char *out, size_t outlen) {
  char ip[INET6_ADDRSTRLEN];
  int n;
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in4 = (const struct sockaddr_in *)sa;
    if (inet_ntop(AF_INET, &in4->sin_addr, ip, sizeof(ip)) == NULL)
      return CYNIC_EINVAL;
    n = snprintf(out, outlen, "%s:%u", ip, (unsigned)ntohs(in4->sin_port));
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    if (inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip)) == NULL)
      return CYNIC_EINVAL;
    n = snprintf(out, outlen, "[%s]:%u", ip, (unsigned)ntohs(in6->sin6_port));
  } else {
    return CYNIC_EINVAL;
  }
  return (n < 0 || (size_t)n >= outlen) ? CYNIC_EINVAL : 0;
}
