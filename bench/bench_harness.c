/*
 * bench_harness: cynic-harness against a plain proxy, on loopback, in one run.
 *
 *   bench_harness --harness PATH [--haproxy PATH] [--gib N] [--requests N] [--runs N]
 *                 [--pin none|split|one]
 *
 * For each path (direct, through cynic-harness with no toxics, through HAProxy
 * in mode tcp) it measures the throughput of an N GiB one-way transfer and
 * the round-trip latency of small requests (64-byte echo, p50/p99), then
 * prints the ratios. Paths are measured in turn, `runs` rounds (default 3),
 * and the median of each figure is reported, so a burst of load on a shared
 * machine skews one round rather than the result. Never part of the pass/fail
 * suite.
 *
 * Fairness: both proxies get one thread (the harness is one libuv loop;
 * HAProxy gets `nbthread 1`, as in bench/tcp.sh) and, with --pin, the same
 * CPU placement: `split` puts this process (the client and both servers) on
 * CPU 0 and the proxy under test, whichever it is, on CPU 1; `one` puts
 * everything on CPU 0. The direct path runs under the same placement of the
 * client and servers. The load average before and after is printed, since
 * on a shared machine it decides how much the figures mean.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int listen_any(uint16_t *port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof(a);
  if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 64) != 0) {
    perror("bind");
    exit(1);
  }
  getsockname(fd, (struct sockaddr *)&a, &len);
  *port = ntohs(a.sin_port);
  return fd;
}

static int dial(uint16_t port) {
  for (int i = 0; i < 200; i++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      return fd;
    }
    close(fd);
    struct timespec ts = {0, 10000000};
    nanosleep(&ts, NULL);
  }
  fprintf(stderr, "cannot connect to port %u\n", port);
  exit(1);
}

/* Servers: sink (read and count until EOF, then close) and echo. */
static void *serve(void *arg) {
  intptr_t mode = ((intptr_t *)arg)[0];
  int lfd = (int)((intptr_t *)arg)[1];
  static char buf[1 << 18];
  for (;;) {
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0)
      return NULL;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    ssize_t n;
    while ((n = recv(fd, buf, sizeof(buf), 0)) > 0)
      if (mode == 1 && send(fd, buf, (size_t)n, MSG_NOSIGNAL) != n)
        break;
    close(fd);
  }
}

static double throughput(uint16_t port, uint64_t total) {
  int fd = dial(port);
  static char buf[1 << 18];
  memset(buf, 'x', sizeof(buf));
  double t0 = now_s();
  uint64_t sent = 0;
  while (sent < total) {
    size_t n = total - sent < sizeof(buf) ? (size_t)(total - sent) : sizeof(buf);
    ssize_t w = send(fd, buf, n, MSG_NOSIGNAL);
    if (w <= 0) {
      perror("send");
      exit(1);
    }
    sent += (uint64_t)w;
  }
  shutdown(fd, SHUT_WR);
  char c;
  while (recv(fd, &c, 1, 0) > 0) /* the sink closes after the last byte */
    ;
  double took = now_s() - t0;
  close(fd);
  return (double)total / took;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void latency(uint16_t port, int n, double *p50, double *p99) {
  int fd = dial(port);
  char req[64], resp[64];
  memset(req, 'r', sizeof(req));
  double *s = malloc(sizeof(double) * (size_t)n);
  for (int i = -1000; i < n; i++) {
    double t0 = now_s();
    if (send(fd, req, sizeof(req), MSG_NOSIGNAL) != (ssize_t)sizeof(req)) {
      perror("send");
      exit(1);
    }
    size_t got = 0;
    while (got < sizeof(resp)) {
      ssize_t r = recv(fd, resp + got, sizeof(resp) - got, 0);
      if (r <= 0) {
        perror("recv");
        exit(1);
      }
      got += (size_t)r;
    }
    if (i >= 0)
      s[i] = (now_s() - t0) * 1e6;
  }
  qsort(s, (size_t)n, sizeof(double), cmp);
  *p50 = s[n / 2];
  *p99 = s[(n * 99) / 100];
  free(s);
  close(fd);
}

/* Pin the calling process (and what it forks or starts later) to one CPU;
 * -1 leaves it alone. */
static void pin_to(int cpu) {
  if (cpu < 0)
    return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof(set), &set) != 0) {
    perror("sched_setaffinity");
    exit(1);
  }
}

static int proxy_cpu = -1; /* where spawned proxies run (--pin) */

static pid_t spawn(char *const argv[], int *err_pipe) {
  int p[2];
  if (err_pipe && pipe(p) != 0)
    exit(1);
  pid_t pid = fork();
  if (pid == 0) {
    pin_to(proxy_cpu);
    if (err_pipe) {
      dup2(p[1], 2);
      close(p[0]);
    }
    execv(argv[0], argv);
    perror(argv[0]);
    _exit(127);
  }
  if (err_pipe) {
    close(p[1]);
    *err_pipe = p[0];
  }
  return pid;
}

/* Read the harness's log until "API listening"; return its port. */
static uint16_t harness_port(int fd) {
  static char buf[65536];
  size_t len = 0;
  while (len < sizeof(buf) - 1) {
    ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
    if (n <= 0)
      break;
    len += (size_t)n;
    buf[len] = '\0';
    char *m = strstr(buf, "\"API listening\"");
    char *a = m ? strstr(m, "\"address\":\"127.0.0.1:") : NULL;
    if (a != NULL)
      return (uint16_t)atoi(a + strlen("\"address\":\"127.0.0.1:"));
  }
  fprintf(stderr, "cynic-harness did not start\n");
  exit(1);
}

static uint16_t create_proxy(uint16_t api, const char *name, uint16_t upstream) {
  char body[256], req[512], resp[4096];
  int bl = snprintf(body, sizeof(body),
                    "{\"name\":\"%s\",\"listen\":\"127.0.0.1:0\",\"upstream\":\"127.0.0.1:%u\"}",
                    name, upstream);
  int rl = snprintf(req, sizeof(req),
                    "POST /proxies HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                    "Content-Length: %d\r\n\r\n%s",
                    bl, body);
  int fd = dial(api);
  if (send(fd, req, (size_t)rl, 0) != rl)
    exit(1);
  size_t len = 0;
  ssize_t n;
  while (len < sizeof(resp) - 1 && (n = recv(fd, resp + len, sizeof(resp) - 1 - len, 0)) > 0)
    len += (size_t)n;
  resp[len] = '\0';
  close(fd);
  char *l = strstr(resp, "\"listen\":\"127.0.0.1:");
  if (l == NULL) {
    fprintf(stderr, "create proxy failed: %s\n", resp);
    exit(1);
  }
  return (uint16_t)atoi(l + strlen("\"listen\":\"127.0.0.1:"));
}

static uint16_t free_port(void) {
  uint16_t p;
  int fd = listen_any(&p);
  close(fd);
  return p;
}

int main(int argc, char **argv) {
  const char *harness = NULL, *haproxy = "/usr/sbin/haproxy";
  double gib = 2;
  int requests = 20000;
  int runs = 3;
  const char *pin = "none";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--harness") == 0)
      harness = argv[i + 1];
    else if (strcmp(argv[i], "--haproxy") == 0)
      haproxy = argv[i + 1];
    else if (strcmp(argv[i], "--gib") == 0)
      gib = atof(argv[i + 1]);
    else if (strcmp(argv[i], "--requests") == 0)
      requests = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--runs") == 0)
      runs = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--pin") == 0)
      pin = argv[i + 1];
  }
  int bench_cpu = -1;
  if (strcmp(pin, "split") == 0) {
    bench_cpu = 0;
    proxy_cpu = 1;
  } else if (strcmp(pin, "one") == 0) {
    bench_cpu = proxy_cpu = 0;
  } else if (strcmp(pin, "none") != 0) {
    fprintf(stderr, "--pin takes none, split or one\n");
    return 2;
  }
  pin_to(bench_cpu); /* before the server threads start: they inherit it */
  double load0[3] = {0, 0, 0};
  getloadavg(load0, 3);
  if (runs < 1 || runs > 15)
    runs = 3;
  if (harness == NULL || requests < 100) {
    fprintf(stderr, "usage: bench_harness --harness PATH [--haproxy PATH] [--gib N] "
                    "[--requests N>=100] [--runs N] [--pin none|split|one]\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  uint64_t total = (uint64_t)(gib * 1073741824.0);
  uint16_t sink_port, echo_port;
  intptr_t sink_arg[2] = {0, listen_any(&sink_port)};
  intptr_t echo_arg[2] = {1, listen_any(&echo_port)};
  pthread_t t1, t2;
  pthread_create(&t1, NULL, serve, sink_arg);
  pthread_create(&t2, NULL, serve, echo_arg);

  int errfd;
  char *hargv[] = {(char *)harness, "-host", "127.0.0.1", "-port", "0", NULL};
  pid_t hpid = spawn(hargv, &errfd);
  uint16_t api = harness_port(errfd);
  uint16_t h_sink = create_proxy(api, "sink", sink_port);
  uint16_t h_echo = create_proxy(api, "echo", echo_port);

  char cfg[] = "/tmp/bench_harness_haproxy_XXXXXX";
  int cfd = mkstemp(cfg);
  uint16_t x_sink = free_port(), x_echo = free_port();
  dprintf(cfd,
          "global\n  maxconn 1000\n  nbthread 1\ndefaults\n  mode tcp\n  timeout connect 5s\n"
          "  timeout client 60s\n  timeout server 60s\n"
          "listen sink\n  bind 127.0.0.1:%u\n  server s 127.0.0.1:%u\n"
          "listen echo\n  bind 127.0.0.1:%u\n  server e 127.0.0.1:%u\n",
          x_sink, sink_port, x_echo, echo_port);
  close(cfd);
  char *xargv[] = {(char *)haproxy, "-db", "-f", cfg, NULL};
  pid_t xpid = access(haproxy, X_OK) == 0 ? spawn(xargv, NULL) : -1;

  struct {
    const char *name;
    uint16_t sink, echo;
    double bps, p50, p99;
  } rows[3] = {{"direct", sink_port, echo_port, 0, 0, 0},
               {"cynic-harness", h_sink, h_echo, 0, 0, 0},
               {"haproxy (tcp)", x_sink, x_echo, 0, 0, 0}};
  int nrows = xpid > 0 ? 3 : 2;
  double bps[3][15], p50[3][15], p99[3][15];
  for (int k = 0; k < runs; k++)
    for (int r = 0; r < nrows; r++) {
      bps[r][k] = throughput(rows[r].sink, total);
      latency(rows[r].echo, requests, &p50[r][k], &p99[r][k]);
    }
  for (int r = 0; r < nrows; r++) {
    qsort(bps[r], (size_t)runs, sizeof(double), cmp);
    qsort(p50[r], (size_t)runs, sizeof(double), cmp);
    qsort(p99[r], (size_t)runs, sizeof(double), cmp);
    rows[r].bps = bps[r][runs / 2];
    rows[r].p50 = p50[r][runs / 2];
    rows[r].p99 = p99[r][runs / 2];
  }
  double load1[3] = {0, 0, 0};
  getloadavg(load1, 3);
  printf("median of %d rounds, %.1f GiB per transfer, %d requests per latency run, pin %s\n",
         runs, gib, requests, pin);
  printf("load average (1 min) %.2f before, %.2f after\n", load0[0], load1[0]);
  printf("%-16s %12s %10s %10s\n", "path", "MB/s", "p50 us", "p99 us");
  for (int r = 0; r < nrows; r++)
    printf("%-16s %12.0f %10.1f %10.1f\n", rows[r].name, rows[r].bps / 1e6, rows[r].p50,
           rows[r].p99);
  printf("harness/direct throughput %.2f, added p50 %.1f us, p99 %.1f us\n",
         rows[1].bps / rows[0].bps, rows[1].p50 - rows[0].p50, rows[1].p99 - rows[0].p99);
  if (nrows == 3)
    printf("harness/haproxy throughput %.2f, p99 harness-haproxy %.1f us\n",
           rows[1].bps / rows[2].bps, rows[1].p99 - rows[2].p99);
  kill(hpid, SIGTERM);
  waitpid(hpid, NULL, 0);
  if (xpid > 0) {
    kill(xpid, SIGTERM);
    waitpid(xpid, NULL, 0);
  }
  unlink(cfg);
  return 0;
}
