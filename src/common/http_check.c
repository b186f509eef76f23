/* http_check.c: checks over the parts llhttp already parsed (http_msg.h):
 * tokens, Host values, Content-Length. Small validators, not a parser. */
#include <arpa/inet.h>
#include <string.h>

#include "http_msg.h"

/* tchar (RFC 9110 5.6.2) by table: the Connection options of every head
 * (http_head.c) and chunk extensions are looked up here (header names are
 * llhttp's: its strict mode refuses a non-token before a callback sees it). */
#define TC_ALNUM(c)                                                                                \
  (((c) >= '0' && (c) <= '9') || ((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z'))
#define TC_MARK(c)                                                                                 \
  ((c) == '!' || (c) == '#' || (c) == '$' || (c) == '%' || (c) == '&' || (c) == '\'' ||            \
   (c) == '*' || (c) == '+' || (c) == '-' || (c) == '.' || (c) == '^' || (c) == '_' ||             \
   (c) == '`' || (c) == '|' || (c) == '~')
#define TC(c) (TC_ALNUM(c) || TC_MARK(c))
#define TC4(c) TC(c), TC((c) + 1), TC((c) + 2), TC((c) + 3)
#define TC16(c) TC4(c), TC4((c) + 4), TC4((c) + 8), TC4((c) + 12)
static const bool tchars[256] = {TC16(0),   TC16(16),  TC16(32),  TC16(48),  TC16(64),  TC16(80),
                                 TC16(96),  TC16(112), TC16(128), TC16(144), TC16(160), TC16(176),
                                 TC16(192), TC16(208), TC16(224), TC16(240)};

bool cynic__http_is_token(const char *s, size_t n) {
  if (n == 0)
    return false;
  for (size_t i = 0; i < n; i++)
    if (!tchars[(unsigned char)s[i]])
      return false;
  return true;
}

static bool hex(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* reg-name bytes but '%' (RFC 3986: unreserved, sub-delims), by table: the
 * Host of every request is checked. */
#define RN_MARK(c)                                                                                 \
  ((c) == '-' || (c) == '.' || (c) == '_' || (c) == '~' || (c) == '!' || (c) == '$' ||             \
   (c) == '&' || (c) == '\'' || (c) == '(' || (c) == ')' || (c) == '*' || (c) == '+' ||            \
   (c) == ',' || (c) == ';' || (c) == '=')
#define RN(c) (TC_ALNUM(c) || RN_MARK(c))
#define RN4(c) RN(c), RN((c) + 1), RN((c) + 2), RN((c) + 3)
#define RN16(c) RN4(c), RN4((c) + 4), RN4((c) + 8), RN4((c) + 12)
static const bool reg_name_chars[256] = {
    RN16(0),   RN16(16),  RN16(32),  RN16(48),  RN16(64),  RN16(80),  RN16(96),  RN16(112),
    RN16(128), RN16(144), RN16(160), RN16(176), RN16(192), RN16(208), RN16(224), RN16(240)};

/* reg-name = *( unreserved / pct-encoded / sub-delims ), RFC 3986; IPv4 is a
 * reg-name too. Non-empty here. */
static bool reg_name(const char *s, size_t n) {
  if (n == 0)
    return false;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (reg_name_chars[c])
      continue;
    if (c == '%') {
      if (i + 2 >= n || !hex((unsigned char)s[i + 1]) || !hex((unsigned char)s[i + 2]))
        return false;
      i += 2;
      continue;
    }
    return false;
  }
  return true;
}

const char *cynic__http_check_host(const char *s, size_t n) {
  if (n == 0)
    return "empty Host";
  if (memchr(s, '@', n) != NULL)
    return "Host with userinfo";
  size_t host_len = n;
  const char *port = NULL;
  size_t port_len = 0;
  if (s[0] == '[') {
    const char *close = memchr(s, ']', n);
    if (close == NULL)
      return "Host is not host[:port]";
    size_t in = (size_t)(close - s) - 1;
    char v6[64];
    if (in == 0 || in >= sizeof(v6))
      return "Host is not host[:port]";
    memcpy(v6, s + 1, in);
    v6[in] = '\0';
    unsigned char bin[16];
    if (inet_pton(AF_INET6, v6, bin) != 1)
      return "Host is not host[:port]";
    host_len = in + 2;
    if (host_len < n) {
      if (s[host_len] != ':')
        return "Host is not host[:port]";
      port = s + host_len + 1;
      port_len = n - host_len - 1;
    }
  } else {
    const char *colon = memchr(s, ':', n);
    if (colon != NULL) {
      host_len = (size_t)(colon - s);
      port = colon + 1;
      port_len = n - host_len - 1;
    }
    if (!reg_name(s, host_len))
      return "Host is not host[:port]";
  }
  if (port != NULL) {
    if (port_len == 0 || port_len > 5)
      return "Host is not host[:port]";
    unsigned long v = 0;
    for (size_t i = 0; i < port_len; i++) {
      if (port[i] < '0' || port[i] > '9')
        return "Host is not host[:port]";
      v = v * 10 + (unsigned long)(port[i] - '0');
    }
    if (v > 65535)
      return "Host is not host[:port]";
  }
  return NULL;
}

bool cynic__http_parse_length(const char *s, size_t n, uint64_t *out) {
  if (n == 0 || n > 19) /* 19 digits always fit in uint64_t */
    return false;
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return false;
    v = v * 10 + (uint64_t)(s[i] - '0');
  }
  *out = v;
  return true;
}

bool cynic__http_response_has_body(llhttp_method_t request_method, int status) {
  if (request_method == HTTP_HEAD)
    return false;
  return !(status / 100 == 1 || status == 204 || status == 304);
}
