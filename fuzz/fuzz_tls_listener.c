/*
 * fuzz/fuzz_tls_listener.c: the bytes a client sends to a terminating
 * listener, through the proxy's own TLS engine (src/proxy/tls.c) on a real
 * loop and a real loopback socket: ClientHellos, records cut anywhere,
 * alerts, garbage. The engine must answer each with a handshake, an error or
 * its timeout, never a crash, a hang or a leak; what it decrypts is written
 * back through the engine (its write path).
 *
 *   build-fuzz/fuzz_tls_listener -max_total_time=60 -max_len=4096 fuzz/corpus/fuzz_tls_listener
 *
 * The input is sent in up to 8 pieces (its first byte says how many), the
 * loop running between them, then the client shuts its sending side.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "tls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uv_loop_t loop;
static cynic__tls_ctx_t *ctx;
static int listen_fd = -1;
static struct sockaddr_in listen_addr;

/* A throwaway key and self-signed certificate, written where the context
 * reads them. */
static void make_cert(const char *cert_path, const char *key_path) {
  EVP_PKEY *key = EVP_EC_gen("P-256");
  X509 *x = X509_new();
  if (key == NULL || x == NULL)
    abort();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), 0);
  X509_gmtime_adj(X509_getm_notAfter(x), 86400);
  X509_set_pubkey(x, key);
  X509_NAME *n = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1, 0);
  X509_set_issuer_name(x, n);
  if (X509_sign(x, key, EVP_sha256()) == 0)
    abort();
  FILE *f = fopen(cert_path, "w");
  FILE *k = fopen(key_path, "w");
  if (f == NULL || k == NULL)
    abort();
  PEM_write_X509(f, x);
  PEM_write_PrivateKey(k, key, NULL, NULL, 0, NULL, NULL);
  fclose(f);
  fclose(k);
  X509_free(x);
  EVP_PKEY_free(key);
}

static void init(void) {
  if (uv_loop_init(&loop) != 0)
    abort();
  char dir[] = "/tmp/cynic-fuzz-tls-XXXXXX";
  if (mkdtemp(dir) == NULL)
    abort();
  char cert[64], key[64];
  snprintf(cert, sizeof cert, "%s/cert.pem", dir);
  snprintf(key, sizeof key, "%s/key.pem", dir);
  make_cert(cert, key);
  cynic__config_tls_t cfg = {.enabled = true, .cert_file = cert, .key_file = key};
  char err[256];
  ctx = cynic__tls_ctx_new(&cfg, true, true, err, sizeof err);
  if (ctx == NULL) {
    fprintf(stderr, "fuzz_tls_listener: %s\n", err);
    abort();
  }
  unlink(cert);
  unlink(key);
  rmdir(dir);
  listen_fd = socket(AF_INET, SOCK_STREAM, 0);
  memset(&listen_addr, 0, sizeof listen_addr);
  listen_addr.sin_family = AF_INET;
  listen_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof listen_addr;
  if (bind(listen_fd, (struct sockaddr *)&listen_addr, sizeof listen_addr) != 0 ||
      listen(listen_fd, 16) != 0 ||
      getsockname(listen_fd, (struct sockaddr *)&listen_addr, &len) != 0)
    abort();
}

typedef struct run {
  cynic__stream_t s;
  uv_timer_t guard; /* the input's time bound */
  int handles;
  bool over; /* the engine said EOF or an error, or the guard fired */
} run_t;

static char plain[16 * 1024];

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  (void)suggested;
  *buf = uv_buf_init(plain, sizeof plain);
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
  run_t *r = st->data;
  if (n < 0) {
    r->over = true;
    return;
  }
  if (n > 0) { /* plaintext: back through the engine's write path */
    uv_buf_t b = uv_buf_init(buf->base, (unsigned int)n);
    (void)cynic__io_try_write(st, &b, 1);
  }
}

static void on_guard(uv_timer_t *t) {
  ((run_t *)t->data)->over = true;
}

static void on_closed(uv_handle_t *h) {
  ((run_t *)h->data)->handles--;
}

/* Reads and drops what the engine wrote to the client (so its writes never
 * stall on a full socket). */
static void drain(int fd) {
  char sink[4096];
  while (recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0) {
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (listen_fd < 0)
    init();
  int cfd = socket(AF_INET, SOCK_STREAM, 0);
  int rc;
  do
    rc = connect(cfd, (struct sockaddr *)&listen_addr, sizeof listen_addr);
  while (rc != 0 && errno == EINTR);
  int sfd = accept(listen_fd, NULL, NULL);
  if (rc != 0 || sfd < 0)
    abort();
  fcntl(cfd, F_SETFL, fcntl(cfd, F_GETFL) | O_NONBLOCK);

  static run_t r;
  memset(&r, 0, sizeof r);
  uv_tcp_init(&loop, &r.s.tcp);
  uv_tcp_open(&r.s.tcp, sfd);
  r.s.tcp.data = &r;
  uv_timer_init(&loop, &r.guard);
  r.guard.data = &r;
  r.handles = 2;
  uv_timer_start(&r.guard, on_guard, 2000, 0);
  if (cynic__tls_accept(&r.s, ctx, NULL, 1000, NULL, NULL) != 0)
    abort();
  cynic__io_read_start((uv_stream_t *)&r.s.tcp, on_alloc, on_read);

  size_t pieces = size > 0 ? (size_t)(data[0] % 8) + 1 : 1;
  size_t off = size > 0 ? 1 : 0, left = size - off;
  for (size_t i = 0; i < pieces && !r.over; i++) {
    size_t n = i + 1 == pieces ? left : left / (pieces - i);
    size_t sent = 0;
    while (sent < n) {
      ssize_t w = send(cfd, data + off + sent, n - sent, MSG_NOSIGNAL);
      if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
        uv_run(&loop, UV_RUN_NOWAIT);
        drain(cfd);
        continue;
      }
      if (w <= 0)
        break;
      sent += (size_t)w;
    }
    off += n;
    left -= n;
    for (int k = 0; k < 4; k++)
      uv_run(&loop, UV_RUN_NOWAIT);
    drain(cfd);
  }
  shutdown(cfd, SHUT_WR);
  while (!r.over) {
    uv_run(&loop, UV_RUN_ONCE);
    drain(cfd);
  }
  uv_close((uv_handle_t *)&r.guard, on_closed);
  cynic__io_close(&r.s, false, on_closed);
  while (r.handles > 0)
    uv_run(&loop, UV_RUN_ONCE);
  close(cfd);
  return 0;
}
