/* http_check.c: checks over the parts llhttp already parsed (http_msg.h):
 * tokens, Host values, Content-Length. Small validators, not a parser. */
#include <arpa/inet.h>
#include <string.h>

#include "http_msg.h"

/* A table of IS(c) for each of the 256 byte values, filled by the compiler. */
#define ROW4(IS, c) IS(c), IS((c) + 1), IS((c) + 2), IS((c) + 3)
#define ROW16(IS, c) ROW4(IS, c), ROW4(IS, (c) + 4), ROW4(IS, (c) + 8), ROW4(IS, (c) + 12)
#define BYTE_TABLE(IS)                                                                             \
  {                                                                                                \
    ROW16(IS, 0), ROW16(IS, 16), ROW16(IS, 32), ROW16(IS, 48), ROW16(IS, 64), ROW16(IS, 80),       \
        ROW16(IS, 96), ROW16(IS, 112), ROW16(IS, 128), ROW16(IS, 144), ROW16(IS, 160),             \
        ROW16(IS, 176), ROW16(IS, 192), ROW16(IS, 208), ROW16(IS, 224), ROW16(IS, 240)             \
  }

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
static const bool tchars[256] = BYTE_TABLE(TC);

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
static const bool reg_name_chars[256] = BYTE_TABLE(RN);

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
