/*
 * Unit tests of src/common/http_msg.c (and http_check.c): the strict,
 * streaming HTTP/1.1 parser, against the real llhttp.
 *
 * A table of raw requests and responses: each smuggling vector refused with
 * the exact rule, each valid message with its exact head fields and the exact
 * counts of raw head and body bytes. Every case is fed whole, byte by byte and
 * in random splits, and must give the same outcome every time. A signature
 * string records the outcome: per message "HEAD fields h=<head bytes>" and
 * " b=<body bytes>|" at DONE; "ERR <status> <reason>" on refusal.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cynic/common.h"
#include "http_msg.h"

#define Q CYNIC__HTTP_REQUEST
#define R CYNIC__HTTP_RESPONSE

typedef struct msg_case {
  int kind;
  llhttp_method_t expect; /* responses: the request's method */
  const char *in;
  size_t len; /* 0: strlen(in) */
  bool eof;   /* the peer closes after the bytes */
  const char *want;
} msg_case_t;

/* clang-format off */
static const msg_case_t cases[] = {
  /* ---- valid requests ---- */
  {Q, 0, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0, false,
   "GET / 1.1 none ka h=27 b=0|"},
  {Q, 0, "POST /p?x=1 HTTP/1.1\r\nHost: a:8080\r\nContent-Length: 5\r\n\r\nhello", 0, false,
   "POST /p?x=1 1.1 len=5 ka h=57 b=5|"},
  {Q, 0, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
         "3;flag;ext=v\r\nabc\r\n0\r\nTrailer-A: x\r\n\r\n", 0, false,
   "POST / 1.1 chunked ka h=56 b=38|"},
  {Q, 0, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED\r\n\r\n0\r\n\r\n", 0, false,
   "POST / 1.1 chunked ka h=56 b=5|"},
  {Q, 0, "GET / HTTP/1.0\r\n\r\n", 0, false, "GET / 1.0 none h=18 b=0|"},
  {Q, 0, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 0, false,
   "GET / 1.0 none ka h=42 b=0|"},
  {Q, 0, "GET http://Example.COM:81/x HTTP/1.1\r\nHost: example.com:81\r\n\r\n", 0, false,
   "GET http://Example.COM:81/x 1.1 none ka h=62 b=0|"},
  {Q, 0, "GET / HTTP/1.1\r\nHost: [::1]:80\r\nX: a\tb \xff\r\n\r\n", 0, false,
   "GET / 1.1 none ka h=44 b=0|"},
  {Q, 0, "GET / HTTP/1.1\r\nHost: 10.0.0.1\r\nConnection: close\r\n\r\n", 0, false,
   "GET / 1.1 none h=53 b=0|"},
  {Q, 0, "PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}", 0,
   false, "PUT / 1.1 len=2 ka 100c h=68 b=2|"},
  {Q, 0, "GET /a HTTP/1.1\r\nHost: a\r\n\r\nPOST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\n"
         "xGET /c HTTP/1.1\r\nHost: a\r\n\r\n", 0, false,
   "GET /a 1.1 none ka h=28 b=0|POST /b 1.1 len=1 ka h=48 b=1|GET /c 1.1 none ka h=28 b=0|"},
  {Q, 0, "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", 0, false,
   "GET / 1.1 none up h=68"},
  {Q, 0, "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nbinary", 0,
   false, "GET / 1.1 none up h=68ERR 400 protocol switched: no more HTTP"},
  {Q, 0, "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 0, false, "CONNECT a:443 1.1 none up h=39"},
  {Q, 0, "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 0, false, "OPTIONS * 1.1 none ka h=31 b=0|"},
  {Q, 0, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", 0, false,
   "POST / 1.1 none ka h=47 b=0|"},
  {Q, 0, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab", 0, true,
   "POST / 1.1 len=5 ka h=47ERR 400 message cut short by EOF"},
  {Q, 0, "GET / HTTP/1.1\r\nHost: a\r\n", 0, true, "ERR 400 message cut short by EOF"},
  {Q, 0, "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 0, false, "GET / 1.1 none ka h=29 b=0|"},
  {Q, 0, "GET / HTTP/1.1\r\nHost: a\r\n\r\n\r\n", 0, true, "GET / 1.1 none ka h=27 b=0|"},
  /* ---- requests refused: framing ---- */
  {Q, 0, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 0,
   false, "ERR 400 Content-Length can't be present with Transfer-Encoding"},
  {Q, 0, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 0,
   false, "ERR 400 Content-Length can't be present with Transfer-Encoding"},
  {Q, 0, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", 0, false,
   "ERR 400 Duplicate Content-Length"},
  {Q, 0, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy", 0, false,
   "ERR 400 Duplicate Content-Length"},
  {Q, 0, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\nx", 0, false,
   "ERR 400 Invalid character in Content-Length"},
  {Q, 0, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\nx", 0, false,
   "ERR 400 Invalid character in Content-Length"},
  {Q, 0, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\nx", 0, false,
   "ERR 400 Invalid character in Content-Length"},
  {Q, 0, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", 0, false,
   "ERR 400 Empty Content-Length"},
  {Q, 0, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1,1\r\n\r\nx", 0, false,
   "ERR 400 Invalid character in Content-Length"},
  {Q, 0, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n", 0, false,
   "ERR 400 Content-Length overflow"},
  {Q, 0, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n", 0,
   false, "ERR 400 Transfer-Encoding other than chunked"},
  {Q, 0, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,chunked\r\n\r\n0\r\n\r\n", 0, false,
   "ERR 400 Transfer-Encoding other than chunked"},
  {Q, 0, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 0,
   false, "ERR 400 Invalid `Transfer-Encoding` header value"},
  {Q, 0, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 0,
   false, "ERR 400 Transfer-Encoding other than chunked"},
  {Q, 0, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"
         "\r\n0\r\n\r\n", 0, false, "ERR 400 Invalid `Transfer-Encoding` header value"},
  {Q, 0, "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0, false,
   "ERR 400 Transfer-Encoding in HTTP/1.0"},
  /* ---- requests refused: header syntax ---- */
  {Q, 0, "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 0, false, "ERR 400 obs-fold"},
  {Q, 0, "POST / HTTP/1.1\r\nHost: a\r\nX: a\r\n Content-Length: 5\r\n\r\nhello", 0, false,
   "ERR 400 obs-fold"},
  {Q, 0, "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n", 0, false, "ERR 400 obs-fold"},
  {Q, 0, "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 0, false, "ERR 400 Invalid header token"},
  {Q, 0, "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", 0, false, "ERR 400 Invalid header token"},
  {Q, 0, "GET / HTTP/1.1\nHost: a\n\n", 0, false, "ERR 400 bare LF"},
  {Q, 0, "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", 0, false, "ERR 400 bare LF"},
  {Q, 0, "GET / HTTP/1.1\r\nHost: a\r\n\n", 0, false, "ERR 400 bare LF"},
  {Q, 0, "GET / HTTP/1.1\r\nHost: a\r\n\rX: a\r\n\r\n", 0, false, "ERR 400 bare CR"},
  {Q, 0, "GET / HTTP/1.1\r\nHost: a\r\nX:\rb\r\n\r\n", 0, false, "ERR 400 bare CR"},
  {Q, 0, "GET / HTTP/1.1\rHost: a\r\n\r\n", 0, false, "ERR 400 bare CR"},
  {Q, 0, "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", 38, false,
   "ERR 400 control byte in the head"},
  {Q, 0, "GET / HTTP/1.1\r\nHost: a\r\nX: a\x01" "b\r\n\r\n", 0, false,
   "ERR 400 control byte in the head"},
  {Q, 0, "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n", 0, false,
   "ERR 400 control byte in the head"},
  {Q, 0, "GET / HTTP/1.1\r\nHost: a\r\nX\0: a\r\n\r\n", 35, false,
   "ERR 400 control byte in the head"},
  {Q, 0, "GET / HTTP/1.1\r\nHost: a\r\nX\xff: a\r\n\r\n", 0, false,
   "ERR 400 Invalid header token"},
  {Q, 0, "GET / HTTP/1.1\r\nHost: a\r\n: a\r\n\r\n", 0, false, "ERR 400 empty header name"},
  {Q, 0, "GET / HTTP/1.1\r\nHost: a\r\nX(y: a\r\n\r\n", 0, false, "ERR 400 Invalid header token"},
  {Q, 0, "GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n", 0, false,
   "ERR 400 Invalid characters in url (strict mode)"},
  {Q, 0, "GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n", 0, false, "ERR 400 Invalid char in url path"},
  {Q, 0, "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 0, false, "ERR 400 unsupported HTTP version"},
  {Q, 0, "GET / HTTP/1.2\r\nHost: a\r\n\r\n", 0, false, "ERR 400 Invalid HTTP version"},
  {Q, 0, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
   0, false, "GET / 1.1 none h=46 b=0|ERR 400 Data after `Connection: close`"},
  /* ---- requests refused: chunked framing ---- */
  {Q, 0, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 0, false,
   "POST / 1.1 chunked ka h=56ERR 400 Invalid character in chunk size"},
  {Q, 0, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3 \r\nabc\r\n0\r\n\r\n", 0,
   false, "POST / 1.1 chunked ka h=56ERR 400 Invalid character in chunk size"},
  {Q, 0, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n", 0,
   false, "POST / 1.1 chunked ka h=56ERR 400 Invalid character in chunk size"},
  {Q, 0, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
         "fffffffffffffffff\r\n", 0, false, "POST / 1.1 chunked ka h=56ERR 400 Chunk size overflow"},
  {Q, 0, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;a=\"b\"\r\nabc\r\n0\r\n\r\n",
   0, false, "POST / 1.1 chunked ka h=56ERR 400 chunk extension value is not a token"},
  {Q, 0, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;a=\r\nabc\r\n0\r\n\r\n",
   0, false, "POST / 1.1 chunked ka h=56ERR 400 empty chunk extension value"},
  {Q, 0, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;=b\r\nabc\r\n0\r\n\r\n",
   0, false, "POST / 1.1 chunked ka h=56ERR 400 empty chunk extension name"},
  {Q, 0, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n", 0,
   false, "POST / 1.1 chunked ka h=56ERR 400 Expected CRLF after chunk"},
  {Q, 0, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: a\r\n b\r\n\r\n",
   0, false, "POST / 1.1 chunked ka h=56ERR 400 obs-fold"},
  {Q, 0, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: a\x01\r\n\r\n", 0,
   false, "POST / 1.1 chunked ka h=56ERR 400 control byte in the head"},
  /* ---- requests refused: Host and target ---- */
  {Q, 0, "GET / HTTP/1.1\r\n\r\n", 0, false, "ERR 400 missing Host"},
  {Q, 0, "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 0, false, "ERR 400 duplicate Host"},
  {Q, 0, "GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", 0, false, "ERR 400 duplicate Host"},
  {Q, 0, "GET / HTTP/1.1\r\nHost: \r\n\r\n", 0, false, "ERR 400 empty Host"},
  {Q, 0, "GET / HTTP/1.0\r\nHost:\r\n\r\n", 0, false, "ERR 400 empty Host"},
  {Q, 0, "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 0, false, "ERR 400 Host with userinfo"},
  {Q, 0, "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 0, false, "ERR 400 Host is not host[:port]"},
  {Q, 0, "GET / HTTP/1.1\r\nHost: a:x\r\n\r\n", 0, false, "ERR 400 Host is not host[:port]"},
  {Q, 0, "GET / HTTP/1.1\r\nHost: a:99999\r\n\r\n", 0, false, "ERR 400 Host is not host[:port]"},
  {Q, 0, "GET / HTTP/1.1\r\nHost: a:\r\n\r\n", 0, false, "ERR 400 Host is not host[:port]"},
  {Q, 0, "GET / HTTP/1.1\r\nHost: [::g]\r\n\r\n", 0, false, "ERR 400 Host is not host[:port]"},
  {Q, 0, "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 0, false, "ERR 400 Host is not host[:port]"},
  {Q, 0, "GET http://b/x HTTP/1.1\r\nHost: a\r\n\r\n", 0, false,
   "ERR 400 absolute-form target authority is not Host"},
  {Q, 0, "GET http://u@a/x HTTP/1.1\r\nHost: a\r\n\r\n", 0, false,
   "ERR 400 absolute-form target with userinfo"},
  {Q, 0, "GET http://a:80/x HTTP/1.1\r\nHost: a\r\n\r\n", 0, false,
   "ERR 400 absolute-form target authority is not Host"},
  /* ---- valid responses ---- */
  {R, HTTP_GET, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 0, false,
   "200 OK 1.1 len=5 ka h=38 b=5|"},
  {R, HTTP_GET, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n0\r\n"
                "Server-Timing: a\r\n\r\n", 0, false, "200 OK 1.1 chunked ka h=47 b=37|"},
  {R, HTTP_GET, "HTTP/1.1 200 OK\r\nServer: s\r\n\r\nuntil the end", 0, true,
   "200 OK 1.1 eof h=30 b=13|"},
  {R, HTTP_GET, "HTTP/1.0 200 OK\r\n\r\nold", 0, true, "200 OK 1.0 eof h=19 b=3|"},
  {R, HTTP_GET, "HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n", 0, false,
   "204 No Content 1.1 none ka h=46 b=0|"},
  {R, HTTP_GET, "HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\nabc", 0, false,
   "204 No Content 1.1 none ka h=46 b=0|ERR 502 Expected HTTP/"},
  {R, HTTP_GET, "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", 0, false,
   "304 Not Modified 1.1 none ka h=49 b=0|"},
  {R, HTTP_HEAD, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", 0, false,
   "200 OK 1.1 none ka h=39 b=0|"},
  {R, HTTP_HEAD, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 0, false,
   "200 OK 1.1 none ka h=47 b=0|"},
  {R, HTTP_POST, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
   0, false, "100 Continue 1.1 none ka int h=25 b=0|201 Created 1.1 len=2 ka h=43 b=2|"},
  {R, HTTP_HEAD, "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\n"
                 "Content-Length: 4\r\n\r\n", 0, false,
   "103 Early Hints 1.1 none ka int h=40 b=0|200 OK 1.1 none ka h=38 b=0|"},
  {R, HTTP_GET, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
   0, false, "101 Switching Protocols 1.1 none up h=77"},
  {R, HTTP_CONNECT, "HTTP/1.1 200 Connection Established\r\n\r\n", 0, false,
   "200 Connection Established 1.1 none up h=39"},
  {R, HTTP_GET, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0, false,
   "200 OK 1.1 none ka h=38 b=0|"},
  {R, HTTP_GET, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx", 0, false,
   "200 OK 1.1 len=1 h=57 b=1|"},
  {R, HTTP_GET, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 404 Not Found\r\n"
                "Content-Length: 2\r\n\r\nno", 0, false,
   "200 OK 1.1 len=1 ka h=38 b=1|404 Not Found 1.1 len=2 ka h=45 b=2|"},
  /* ---- responses refused (the proxy's 502) ---- */
  {R, HTTP_GET, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 0, false,
   "ERR 502 Content-Length can't be present with Transfer-Encoding"},
  {R, HTTP_GET, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxyz", 0, true,
   "ERR 502 Transfer-Encoding other than chunked"},
  {R, HTTP_GET, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"
                "\r\n0\r\n\r\n", 0, false, "ERR 502 more than one Transfer-Encoding"},
  {R, HTTP_GET, "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0, false,
   "ERR 502 Transfer-Encoding in HTTP/1.0"},
  {R, HTTP_GET, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab", 0, false,
   "ERR 502 Duplicate Content-Length"},
  {R, HTTP_GET, "HTTP/1.1 200 OK\r\nX: a\r\n Content-Length: 2\r\n\r\nab", 0, false,
   "ERR 502 obs-fold"},
  {R, HTTP_GET, "HTTP/1.1 200 OK\nContent-Length: 2\n\nab", 0, false, "ERR 502 bare LF"},
  {R, HTTP_GET, "HTTP/1.1 200 O\x01K\r\n\r\n", 0, false, "ERR 502 control byte in the head"},
  {R, HTTP_GET, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", 0, true,
   "200 OK 1.1 len=5 ka h=38ERR 502 message cut short by EOF"},
  {R, HTTP_GET, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", 0, true,
   "200 OK 1.1 chunked ka h=47ERR 502 message cut short by EOF"},
  {R, HTTP_GET, "HTTP/1.1 200 OK\r\n: x\r\n\r\n", 0, false, "ERR 502 empty header name"},
  {R, HTTP_GET, "HTTP/2.0 200 OK\r\n\r\n", 0, false, "ERR 502 unsupported HTTP version"},
};
/* clang-format on */

static const cynic__http_msg_limits_t table_limits = {.max_head = 1024, .max_fields = 100};
/* The field index at the start of every head store (table_limits' 100 fields) */
#define IDX (CYNIC__HTTP_MSG_MAX_FIELDS * sizeof(cynic__http_field_spans_t))

static uint64_t next_rand(uint64_t *x) {
  uint64_t z = (*x += UINT64_C(0x9E3779B97F4A7C15));
  z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
  return z ^ (z >> 31);
}

static void sig_printf(char *sig, size_t cap, const char *fmt, ...) {
  size_t n = strlen(sig);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(sig + n, cap - n, fmt, ap);
  va_end(ap);
}

static const char *framing(const cynic__http_msg_t *m, char *buf, size_t n) {
  switch (m->body) {
  case CYNIC__HTTP_BODY_LENGTH:
    snprintf(buf, n, "len=%llu", (unsigned long long)m->content_length);
    return buf;
  case CYNIC__HTTP_BODY_CHUNKED:
    return "chunked";
  case CYNIC__HTTP_BODY_UNTIL_EOF:
    return "eof";
  default:
    return "none";
  }
}

static void sig_head(const cynic__http_msg_t *m, size_t head, char *sig, size_t cap) {
  char fb[32];
  if (m->kind == Q)
    sig_printf(sig, cap, "%s %.*s", cynic__http_msg_method(m), (int)m->target.len,
               cynic__http_msg_at(m, m->target));
  else
    sig_printf(sig, cap, "%d %.*s", m->status, (int)m->reason.len,
               cynic__http_msg_at(m, m->reason));
  sig_printf(sig, cap, " %d.%d %s%s%s%s%s h=%zu", m->version_major, m->version_minor,
             framing(m, fb, sizeof fb), m->keep_alive ? " ka" : "", m->upgrade ? " up" : "",
             m->expect_continue ? " 100c" : "", m->interim ? " int" : "", head);
}

/* Parse in pieces: mode 0 whole, 1 byte by byte, else random pieces from
 * the seed. The signature of what was parsed goes to sig. */
static void run(const msg_case_t *c, int mode, uint64_t seed, char *sig, size_t cap) {
  cynic__http_msg_t m;
  _Alignas(16) char store[IDX + 1024];
  cynic__http_msg_init(&m, c->kind, &table_limits);
  assert_int_equal(cynic__http_msg_begin(&m, store, sizeof store), 0);
  if (c->kind == R)
    cynic__http_msg_expect(&m, c->expect);
  sig[0] = '\0';
  const char *p = c->in;
  size_t n = c->len ? c->len : strlen(c->in), off = 0, head = 0, body = 0;
  bool pending = false; /* HEAD just returned: the next feed may say DONE with no bytes */
  while (off < n || pending) {
    size_t piece = n - off;
    if (mode == 1 && piece > 1)
      piece = 1;
    else if (mode > 1 && piece > 1)
      piece = 1 + next_rand(&seed) % piece;
    size_t used = 99;
    int r = cynic__http_msg_feed(&m, p + off, piece, &used);
    assert_true(used <= piece);
    pending = false;
    off += used;
    if (r < 0) {
      assert_non_null(m.error_reason);
      assert_int_equal(used, 0);
      sig_printf(sig, cap, "ERR %d %s", m.error_status, m.error_reason);
      return;
    }
    switch (r) {
    case CYNIC__HTTP_MORE:
      assert_int_equal(used, piece);
      head += used;
      break;
    case CYNIC__HTTP_HEAD:
      head += used;
      sig_head(&m, head, sig, cap);
      pending = !m.upgrade; /* an upgrade stops at the head */
      break;
    case CYNIC__HTTP_BODY:
      assert_int_equal(used, piece);
      body += used;
      break;
    case CYNIC__HTTP_DONE: {
      body += used;
      sig_printf(sig, cap, " b=%zu|", body);
      bool interim = m.interim;
      cynic__http_msg_next(&m);
      assert_int_equal(cynic__http_msg_begin(&m, store, sizeof store), 0);
      if (c->kind == R && !interim)
        cynic__http_msg_expect(&m, c->expect);
      head = body = 0;
      break;
    }
    default:
      fail_msg("feed returned %d", r);
    }
  }
  if (c->eof) {
    int r = cynic__http_msg_eof(&m);
    if (r == CYNIC__HTTP_DONE)
      sig_printf(sig, cap, " b=%zu|", body);
    else if (r < 0)
      sig_printf(sig, cap, "ERR %d %s", m.error_status, m.error_reason);
  }
}

static void table(void **state) {
  (void)state;
  size_t ncases = sizeof(cases) / sizeof(cases[0]);
  assert_true(ncases >= 50);
  int bad = 0;
  for (size_t i = 0; i < ncases; i++) {
    char sig[512];
    for (int mode = 0; mode < 10; mode++) {
      run(&cases[i], mode, UINT64_C(0x5EED) * (i + 1) + (uint64_t)mode, sig, sizeof sig);
      if (strcmp(sig, cases[i].want) != 0) {
        print_error("case %zu mode %d:\n  got  %s\n  want %s\n", i, mode, sig, cases[i].want);
        bad++;
        break;
      }
    }
  }
  assert_int_equal(bad, 0);
}

/* The iterator, find and count over a parsed head; trailing whitespace off. */
static void iterator(void **state) {
  (void)state;
  cynic__http_msg_t m;
  _Alignas(16) char store[IDX + 256];
  cynic__http_msg_init(&m, Q, &table_limits);
  cynic__http_msg_begin(&m, store, sizeof store);
  const char *in = "GET /x HTTP/1.1\r\nHost: h\r\nX-A: 1 \t\r\nx-a:2\r\nEmpty:\r\n\r\n";
  size_t used;
  assert_int_equal(cynic__http_msg_feed(&m, in, strlen(in), &used), CYNIC__HTTP_HEAD);
  assert_int_equal(used, strlen(in));
  assert_int_equal(cynic__http_msg_nfields(&m), 4);
  const char *name, *value;
  size_t nlen, vlen;
  cynic__http_msg_field(&m, 1, &name, &nlen, &value, &vlen);
  assert_memory_equal(name, "X-A", 3);
  assert_int_equal(nlen, 3);
  assert_int_equal(vlen, 1);
  assert_memory_equal(value, "1", 1);
  cynic__http_msg_field(&m, 3, &name, &nlen, &value, &vlen);
  assert_int_equal(nlen, 5);
  assert_int_equal(vlen, 0);
  assert_int_equal(cynic__http_msg_count(&m, "x-a"), 2);
  assert_int_equal(cynic__http_msg_count(&m, "nope"), 0);
  const char *v = cynic__http_msg_find(&m, "X-a", &vlen);
  assert_non_null(v);
  assert_memory_equal(v, "1", 1);
  assert_null(cynic__http_msg_find(&m, "nope", &vlen));
  assert_int_equal(cynic__http_msg_feed(&m, "", 0, &used), CYNIC__HTTP_DONE);
  assert_int_equal(used, 0);
}

/* Bounds: max_head (431; the trailers' too), max_fields (431; the trailers'
 * too), max_target (414), a small store (431), and a response over a bound
 * is 502. */
static void limits(void **state) {
  (void)state;
  struct {
    int kind;
    cynic__http_msg_limits_t lim;
    size_t store;
    const char *in;
    int status;
    const char *reason;
  } lc[] = {
      {Q,
       {.max_head = 40, .max_fields = 10},
       256,
       "GET / HTTP/1.1\r\nHost: a\r\nX: 0123456789abcdef\r\n\r\n",
       431,
       "head too large"},
      {Q,
       {.max_head = 40, .max_fields = 10},
       256,
       "GET / HTTP/1.1\r\nHost: a\r\nX:                 a\r\n\r\n",
       431,
       "head too large"},
      {Q,
       {.max_head = 256, .max_fields = 2},
       256,
       "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n",
       431,
       "too many header fields"},
      {Q,
       {.max_head = 256, .max_fields = 10, .max_target = 4},
       256,
       "GET /abcdef HTTP/1.1\r\n",
       414,
       "request target too long"},
      {Q,
       {.max_head = 256, .max_fields = 10},
       8,
       "GET / HTTP/1.1\r\nHost: abcdefgh\r\n\r\n",
       431,
       "head too large"},
      {R,
       {.max_head = 30, .max_fields = 10},
       256,
       "HTTP/1.1 200 OK\r\nServer: abcdefghijklmnop\r\n\r\n",
       502,
       "head too large"},
      {Q,
       {.max_head = 64, .max_fields = 2},
       256,
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: 1\r\nB: 2\r\nC: "
       "3\r\n\r\n",
       431,
       "too many trailer fields"},
      {Q, /* the trailer section's bytes have max_head as their bound too */
       {.max_head = 64, .max_fields = 10},
       256,
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: "
       "0123456789012345678901234567890123456789012345678901234567890123\r\n\r\n",
       431,
       "trailers too large"},
  };
  for (size_t i = 0; i < sizeof(lc) / sizeof(lc[0]); i++) {
    for (int mode = 0; mode < 2; mode++) {
      cynic__http_msg_t m;
      _Alignas(16) char store[IDX + 256];
      cynic__http_msg_init(&m, lc[i].kind, &lc[i].lim);
      cynic__http_msg_begin(&m, store, lc[i].lim.max_fields * sizeof(cynic__http_field_spans_t) + lc[i].store);
      size_t n = strlen(lc[i].in), off = 0, used;
      int r = 0;
      while (off < n) {
        size_t piece = mode == 0 ? n - off : 1;
        r = cynic__http_msg_feed(&m, lc[i].in + off, piece, &used);
        if (r < 0)
          break;
        off += used;
        if (r == CYNIC__HTTP_HEAD && m.body == CYNIC__HTTP_BODY_NONE)
          break;
      }
      if (r >= 0)
        fail_msg("limits case %zu mode %d accepted", i, mode);
      if (m.error_status != lc[i].status || strcmp(m.error_reason, lc[i].reason) != 0)
        fail_msg("limits case %zu mode %d: %d %s", i, mode, m.error_status, m.error_reason);
      /* refused stays refused */
      assert_int_equal(cynic__http_msg_feed(&m, "x", 1, &used), CYNIC_EINVAL);
    }
  }
}

/* The store is the caller's: begin is required, next hands it back, and a
 * second message may go to another store. */
static void store_handoff(void **state) {
  (void)state;
  cynic__http_msg_t m;
  _Alignas(16) char s1[IDX + 128], s2[IDX + 128];
  size_t used;
  cynic__http_msg_init(&m, Q, &table_limits);
  assert_int_equal(cynic__http_msg_begin(&m, NULL, 10), CYNIC_EINVAL);
  assert_int_equal(cynic__http_msg_begin(&m, s1, IDX), CYNIC_EINVAL); /* no room past the index */
  assert_int_equal(cynic__http_msg_begin(&m, s1 + 1, IDX + 64), CYNIC_EINVAL); /* misaligned */
  assert_int_equal(cynic__http_msg_store_size(&table_limits), IDX + 1024);
  assert_int_equal(cynic__http_msg_eof(&m), 0); /* idle: nothing cut */
  cynic__http_msg_init(&m, Q, &table_limits);
  assert_int_equal(cynic__http_msg_feed(&m, "G", 1, &used), CYNIC_EINVAL); /* no store */
  cynic__http_msg_init(&m, Q, &table_limits);
  cynic__http_msg_begin(&m, s1, sizeof s1);
  const char *two = "GET /one HTTP/1.1\r\nHost: a\r\n\r\nGET /two HTTP/1.1\r\nHost: b\r\n\r\n";
  assert_int_equal(cynic__http_msg_feed(&m, two, strlen(two), &used), CYNIC__HTTP_HEAD);
  assert_int_equal(used, 30);
  assert_ptr_equal(cynic__http_msg_at(&m, m.target), s1 + m.target.off);
  assert_int_equal(cynic__http_msg_feed(&m, two + used, strlen(two) - used, &used),
                   CYNIC__HTTP_DONE);
  assert_int_equal(used, 0);
  cynic__http_msg_next(&m);
  memset(s1, 'Z', sizeof s1); /* the caller's again */
  assert_int_equal(cynic__http_msg_feed(&m, two + 30, 1, &used), CYNIC_EINVAL);
  cynic__http_msg_init(&m, Q, &table_limits);
  cynic__http_msg_begin(&m, s1, sizeof s1);
  assert_int_equal(cynic__http_msg_feed(&m, two, strlen(two), &used), CYNIC__HTTP_HEAD);
  cynic__http_msg_feed(&m, two + 30, 0, &used);
  cynic__http_msg_next(&m);
  cynic__http_msg_begin(&m, s2, sizeof s2);
  assert_int_equal(cynic__http_msg_feed(&m, two + 30, strlen(two) - 30, &used), CYNIC__HTTP_HEAD);
  assert_memory_equal(cynic__http_msg_at(&m, m.target), "/two", 4);
  assert_ptr_equal(cynic__http_msg_at(&m, m.target), s2 + m.target.off);
}

/* Body bytes reach the body hook decoded; the raw bytes fed are framing. */
static size_t hook_bytes;
static int hook(cynic__http_msg_t *m, const char *at, size_t n) {
  (void)m;
  (void)at;
  hook_bytes += n;
  return 0;
}

static void body_hook(void **state) {
  (void)state;
  cynic__http_msg_t m;
  _Alignas(16) char store[IDX + 128];
  cynic__http_msg_init(&m, Q, &table_limits);
  m.on_body = hook;
  cynic__http_msg_begin(&m, store, sizeof store);
  const char *in = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n";
  size_t n = strlen(in), off = 0, used;
  hook_bytes = 0;
  int r;
  while ((r = cynic__http_msg_feed(&m, in + off, n - off, &used)) != CYNIC__HTTP_DONE) {
    assert_true(r >= 0);
    off += used;
  }
  off += used;
  assert_int_equal(off, n);
  assert_int_equal(hook_bytes, 7);
}

/* The shared no-body rule and the checkers. */
static void rules(void **state) {
  (void)state;
  assert_false(cynic__http_response_has_body(HTTP_HEAD, 200));
  assert_false(cynic__http_response_has_body(HTTP_GET, 100));
  assert_false(cynic__http_response_has_body(HTTP_GET, 204));
  assert_false(cynic__http_response_has_body(HTTP_GET, 304));
  assert_true(cynic__http_response_has_body(HTTP_GET, 200));
  assert_true(cynic__http_response_has_body(HTTP_POST, 404));
  assert_true(cynic__http_status_interim(100));
  assert_true(cynic__http_status_interim(103));
  assert_false(cynic__http_status_interim(101));
  assert_false(cynic__http_status_interim(200));
  assert_null(cynic__http_check_host("a.b-c_d~", 8));
  assert_null(cynic__http_check_host("[fe80::1]:8080", 14));
  assert_null(cynic__http_check_host("a%20b", 5));
  assert_non_null(cynic__http_check_host("a%2", 3));
  assert_non_null(cynic__http_check_host("[::1]x", 6));
  assert_non_null(cynic__http_check_host("[::1", 4));
  assert_non_null(cynic__http_check_host("a:123456", 8));
  uint64_t v;
  assert_true(cynic__http_parse_length("0", 1, &v));
  assert_true(cynic__http_parse_length("1234567890123456789", 19, &v));
  assert_int_equal(v, UINT64_C(1234567890123456789));
  assert_false(cynic__http_parse_length("12345678901234567890", 20, &v));
  assert_false(cynic__http_parse_length("", 0, &v));
  assert_false(cynic__http_parse_length("1a", 2, &v));
  assert_true(cynic__http_is_token("X-Y_z!", 6));
  assert_false(cynic__http_is_token("a b", 3));
  assert_false(cynic__http_is_token("", 0));
}

/* The raw check looks at sixteen (SSE2) or eight head bytes at a time: every
 * byte value at every position of a long value, name and trailer value (so
 * at every offset within a block, and across the feed's splits) is judged as the
 * byte-by-byte rules say: a value takes HTAB, SP, VCHAR and obs-text; a name
 * takes tchars only (RFC 9110 5.6.2, spelt out here apart from the code). */
static bool oracle_tchar(unsigned c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c != 0 && strchr("!#$%&'*+-.^_`|~", (int)c) != NULL);
}

static void one_byte_case(int where, unsigned c, size_t pos, bool want_ok, const char *why) {
  char in[256], piece[41];
  memset(piece, 'v', 40);
  piece[40] = '\0';
  piece[pos] = (char)c; /* may be NUL: lengths are explicit below */
  size_t n = 0;
  if (where == 0) { /* a request header value */
    n = (size_t)snprintf(in, sizeof in, "GET / HTTP/1.1\r\nHost: a\r\nX: ");
    memcpy(in + n, piece, 40);
    n += 40;
    n += (size_t)snprintf(in + n, sizeof in - n, "\r\n\r\n");
  } else if (where == 1) { /* a request header name */
    n = (size_t)snprintf(in, sizeof in, "GET / HTTP/1.1\r\nHost: a\r\n");
    memcpy(in + n, piece, 40);
    n += 40;
    n += (size_t)snprintf(in + n, sizeof in - n, ": v\r\n\r\n");
  } else { /* a trailer value */
    n = (size_t)snprintf(in, sizeof in,
                         "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "0\r\nT: ");
    memcpy(in + n, piece, 40);
    n += 40;
    n += (size_t)snprintf(in + n, sizeof in - n, "\r\n\r\n");
  }
  msg_case_t mc = {Q, 0, in, n, false, NULL};
  for (int mode = 0; mode < 3; mode++) {
    char sig[512];
    run(&mc, mode, UINT64_C(0xB17E) * (c + 1) + pos, sig, sizeof sig);
    bool ok = strstr(sig, "ERR") == NULL && sig[strlen(sig) - 1] == '|';
    const char *err = strstr(sig, "ERR 400 ");
    if (ok != want_ok || (!ok && (err == NULL || (why != NULL && strcmp(err + 8, why) != 0))))
      fail_msg("where %d byte 0x%02x at %zu mode %d: got %s, want %s", where, c, pos, mode, sig,
               want_ok       ? "accepted"
               : why != NULL ? why
                             : "ERR 400");
  }
}

static void every_byte(void **state) {
  (void)state;
  for (unsigned c = 0; c < 256; c++) {
    assert_int_equal(cynic__http_is_token((const char *)&(char){(char)c}, 1), oracle_tchar(c));
    /* a Host's reg-name: unreserved and sub-delims (RFC 3986), '%' only as %XX */
    char host[3] = {'a', (char)c, 'b'};
    bool rn = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c != 0 && strchr("-._~!$&'()*+,;=", (int)c) != NULL);
    assert_int_equal(cynic__http_check_host(host, 3) == NULL, rn);
    if (c == '\r' || c == '\n')
      continue; /* line ends: the table's bare CR / bare LF cases */
    bool value_ok = c == '\t' || (c >= 0x20 && c != 0x7f);
    for (size_t pos = 0; pos < 40; pos++) {
      /* cynic's raw check names the rule, whatever llhttp found first */
      one_byte_case(0, c, pos, value_ok, "control byte in the head");
      /* A name's bytes are llhttp's to refuse (cynic has no check of its
       * own): any byte outside tchar, named as llhttp names it, or by the raw
       * check for a control byte and a folded line. A colon ends the name:
       * "v: vv...: v" is a fine field. */
      const char *name_why = (c < 0x20 && c != '\t') || c == 0x7f ? "control byte in the head"
                             : pos == 0 && (c == ' ' || c == '\t') ? "obs-fold"
                                                                    : "Invalid header token";
      if (c != ':')
        one_byte_case(1, c, pos, oracle_tchar(c), name_why);
      one_byte_case(2, c, pos, value_ok, "control byte in the head");
    }
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(table),         cmocka_unit_test(iterator),  cmocka_unit_test(limits),
      cmocka_unit_test(store_handoff), cmocka_unit_test(body_hook), cmocka_unit_test(rules),
      cmocka_unit_test(every_byte),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
