/*
 * bench/tcp_peer.c: the backend and the clients of the TCP benchmark
 * (bench/tcp.sh). The same binary drives every target (direct, cynic,
 * HAProxy), so the ratios compare the proxies, not the load generators.
 *
 *   tcp_peer serve PORTFILE          backend on 127.0.0.1:0 (port written to
 *                                    PORTFILE): a connection that sends 'B'
 *                                    first is a bulk sink (read to EOF, then
 *                                    answer the byte count); anything else is
 *                                    request/response: 64 bytes in, 64 out
 *   tcp_peer bulk PORT MB            send MB megabytes, print MB/s
 *   tcp_peer rr PORT SECONDS THREADS new connection per 64-byte exchange,
 *                                    print connections/s
 *   tcp_peer idle PORT N             open N connections, one exchange each,
 *                                    print "ready", hold them until stdin closes
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MSG 64
#define CHUNK (256 * 1024)

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int read_full(int fd, char *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, buf + got, n - got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return -1;
    got += (size_t)r;
  }
  return 0;
}

static int write_full(int fd, const char *buf, size_t n) {
  size_t put = 0;
  while (put < n) {
    ssize_t w = write(fd, buf + put, n - put);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return -1;
    put += (size_t)w;
  }
  return 0;
}

static int dial(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static void *serve_conn(void *arg) {
  int fd = (int)(intptr_t)arg;
  char *buf = malloc(CHUNK);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  ssize_t r = read(fd, buf, MSG);
  if (r > 0 && buf[0] == 'B') {
    uint64_t total = (uint64_t)r;
    while ((r = read(fd, buf, CHUNK)) > 0)
      total += (uint64_t)r;
    dprintf(fd, "%llu\n", (unsigned long long)total);
  } else if (r > 0) {
    size_t have = (size_t)r;
    for (;;) {
      if (have < MSG && read_full(fd, buf + have, MSG - have) != 0)
        break;
      if (write_full(fd, buf, MSG) != 0)
        break;
      have = 0;
    }
  }
  free(buf);
  close(fd);
  return NULL;
}

static int serve(const char *portfile) {
  int lfd = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in sa = {.sin_family = AF_INET};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sa;
  if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(lfd, 4096) != 0 ||
      getsockname(lfd, (struct sockaddr *)&sa, &len) != 0) {
    perror("tcp_peer serve");
    return 1;
  }
  FILE *f = fopen(portfile, "w");
  fprintf(f, "%d\n", ntohs(sa.sin_port));
  fclose(f);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  for (;;) {
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0)
      continue;
    pthread_t t;
    if (pthread_create(&t, &attr, serve_conn, (void *)(intptr_t)fd) != 0)
      close(fd);
  }
}

static int bulk(int port, long mb) {
  int fd = dial(port);
  if (fd < 0) {
    perror("tcp_peer bulk: connect");
    return 1;
  }
  char *buf = malloc(CHUNK);
  memset(buf, 'x', CHUNK);
  buf[0] = 'B';
  uint64_t total = (uint64_t)mb * 1024 * 1024;
  double t0 = now_s();
  for (uint64_t sent = 0; sent < total; sent += CHUNK)
    if (write_full(fd, buf, CHUNK) != 0) {
      perror("tcp_peer bulk: write");
      return 1;
    }
  shutdown(fd, SHUT_WR);
  char ack[32] = {0};
  ssize_t r = read(fd, ack, sizeof ack - 1);
  double t1 = now_s();
  if (r <= 0 || strtoull(ack, NULL, 10) != total) {
    fprintf(stderr, "tcp_peer bulk: backend got %s bytes, expected %llu\n", ack,
            (unsigned long long)total);
    return 1;
  }
  printf("%.1f\n", (double)total / (1024 * 1024) / (t1 - t0));
  free(buf);
  close(fd);
  return 0;
}

static int rr_port;
static double rr_until;
static _Atomic uint64_t rr_done, rr_failed;

static void *rr_worker(void *arg) {
  (void)arg;
  char msg[MSG], back[MSG];
  memset(msg, 'r', sizeof msg);
  while (now_s() < rr_until) {
    int fd = dial(rr_port);
    if (fd < 0 || write_full(fd, msg, MSG) != 0 || read_full(fd, back, MSG) != 0) {
      atomic_fetch_add(&rr_failed, 1);
    } else {
      atomic_fetch_add(&rr_done, 1);
    }
    if (fd >= 0) {
      struct linger lg = {1, 0}; /* RST: no TIME_WAIT pile-up on the client side */
      setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
      close(fd);
    }
  }
  return NULL;
}

static int rr(int port, double seconds, int threads) {
  rr_port = port;
  double t0 = now_s();
  rr_until = t0 + seconds;
  pthread_t th[64];
  if (threads < 1 || threads > 64)
    threads = 1;
  for (int i = 0; i < threads; i++)
    pthread_create(&th[i], NULL, rr_worker, NULL);
  for (int i = 0; i < threads; i++)
    pthread_join(th[i], NULL);
  double t1 = now_s();
  if (atomic_load(&rr_failed) * 100 > atomic_load(&rr_done)) {
    fprintf(stderr, "tcp_peer rr: %llu of %llu exchanges failed\n",
            (unsigned long long)atomic_load(&rr_failed), (unsigned long long)atomic_load(&rr_done));
    return 1;
  }
  printf("%.0f\n", (double)atomic_load(&rr_done) / (t1 - t0));
  return 0;
}

static int idle(int port, int n) {
  char msg[MSG], back[MSG];
  memset(msg, 'i', sizeof msg);
  for (int i = 0; i < n; i++) {
    int fd = dial(port);
    if (fd < 0 || write_full(fd, msg, MSG) != 0 || read_full(fd, back, MSG) != 0) {
      fprintf(stderr, "tcp_peer idle: connection %d failed\n", i);
      return 1;
    }
  }
  printf("ready\n");
  fflush(stdout);
  char c;
  while (read(0, &c, 1) > 0)
    ;
  return 0;
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  if (argc >= 3 && strcmp(argv[1], "serve") == 0)
    return serve(argv[2]);
  if (argc >= 4 && strcmp(argv[1], "bulk") == 0)
    return bulk(atoi(argv[2]), atol(argv[3]));
  if (argc >= 5 && strcmp(argv[1], "rr") == 0)
    return rr(atoi(argv[2]), atof(argv[3]), atoi(argv[4]));
  if (argc >= 4 && strcmp(argv[1], "idle") == 0)
    return idle(atoi(argv[2]), atoi(argv[3]));
  fprintf(stderr, "usage: tcp_peer serve PORTFILE | bulk PORT MB | rr PORT SECONDS THREADS | "
                  "idle PORT N\n");
  return 2;
}
