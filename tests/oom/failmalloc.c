/* failmalloc: an LD_PRELOAD shim that makes allocations fail on purpose.
 *
 * Test-only (tests/integration/test_oom.py). It wraps malloc, calloc,
 * realloc, aligned_alloc, posix_memalign and memalign (glibc's strdup and
 * friends call malloc, so they fail with it) and, while armed, fails some of
 * them with ENOMEM:
 *
 *   CYNIC_FAILMALLOC="seed=1,rate=0.02"     each call fails with probability
 *                                           0.02, rolled from the seed and the
 *                                           call's number (reproducible for one
 *                                           sequence of calls)
 *   CYNIC_FAILMALLOC="every=50"             every 50th call fails
 *   ...,after=K                             armed by itself after K calls
 *   ...,min=B                               only requests of B bytes or more
 *
 * Without `after`, the shim starts disarmed (so the program can start) and is
 * armed by SIGUSR2, which it handles itself. With CYNIC_FAILMALLOC_CTL=PATH,
 * SIGUSR2 instead reads a new spec from PATH ("off" or an empty file disarms;
 * a `gen=G` key is echoed back) and then writes PATH.ack, atomically (rename):
 *
 *   gen=G armed=0|1 calls=N failed=F
 *
 * where calls counts the calls made while armed and failed the calls failed,
 * both since the shim was loaded. The test waits for its gen in the ack before
 * it relies on the new state. Without CTL, SIGUSR2 toggles between disarmed and
 * the spec.
 *
 * The handler does only async-signal-safe work (open, read, write, rename,
 * plain parsing) and publishes the spec through atomics, so a signal landing
 * in the middle of an allocation is harmless (a call racing with the switch
 * may see the old or the new spec).
 *
 * dlsym may itself call calloc before the real one is known: those first
 * calls are served from a static buffer, and free() ignores its pointers.
 * It cannot be used with AddressSanitizer (which owns malloc): CMake does not
 * build it in a sanitizer build and the test skips there.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void *memalign(size_t align, size_t size);

static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void (*real_free)(void *);
static void *(*real_aligned_alloc)(size_t, size_t);
static int (*real_posix_memalign)(void **, size_t, size_t);
static void *(*real_memalign)(size_t, size_t);

/* Bootstrap arena for dlsym's own allocations, before the real ones are known.
 * Each block is preceded by 16 bytes holding its size, so realloc can copy. */
static _Alignas(16) unsigned char boot[16384];
static size_t boot_used;
static atomic_flag boot_lock = ATOMIC_FLAG_INIT;
static atomic_int resolved;

static bool in_boot(const void *p) {
  return (const unsigned char *)p >= boot && (const unsigned char *)p < boot + sizeof(boot);
}

static void *boot_alloc(size_t size) {
  size_t need = 16 + ((size + 15) & ~(size_t)15);
  void *p = NULL;
  while (atomic_flag_test_and_set(&boot_lock)) {
  }
  if (need <= sizeof(boot) - boot_used) {
    memcpy(boot + boot_used, &size, sizeof(size));
    p = boot + boot_used + 16;
    boot_used += need;
  }
  atomic_flag_clear(&boot_lock);
  if (p == NULL)
    errno = ENOMEM;
  return p;
}

static size_t boot_size(const void *p) {
  size_t size;
  memcpy(&size, (const unsigned char *)p - 16, sizeof(size));
  return size;
}

/* The spec in force. `mode` 0: disarmed, 1: rate, 2: every. */
static atomic_int mode;
static atomic_uint_fast64_t seed;
static atomic_uint_fast64_t threshold; /* rate scaled to 2^64 - 1 */
static atomic_uint_fast64_t every;
static atomic_uint_fast64_t min_size;
static atomic_uint_fast64_t calls;  /* calls while armed */
static atomic_uint_fast64_t failed; /* calls failed */
static atomic_uint_fast64_t before; /* calls before arming by itself (after=) */
static atomic_uint_fast64_t boot_count;

/* The env spec, kept for SIGUSR2's toggle when there is no control file. */
static int env_mode;
static uint64_t env_seed, env_threshold, env_every, env_min;
static char ctl_path[1024];
static uint64_t gen;

static uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

static bool should_fail(size_t size) {
  int m = atomic_load_explicit(&mode, memory_order_relaxed);
  if (m == 0) {
    uint64_t b = atomic_load_explicit(&before, memory_order_relaxed);
    if (b == 0)
      return false;
    if (atomic_fetch_add(&boot_count, 1) + 1 < b)
      return false;
    atomic_store(&before, 0);
    atomic_store(&mode, env_mode);
    m = env_mode;
    if (m == 0)
      return false;
  }
  if (size < atomic_load_explicit(&min_size, memory_order_relaxed))
    return false;
  uint64_t n = atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed) + 1;
  bool fail;
  if (m == 2) {
    uint64_t e = atomic_load_explicit(&every, memory_order_relaxed);
    fail = e != 0 && n % e == 0;
  } else {
    uint64_t s = atomic_load_explicit(&seed, memory_order_relaxed);
    fail = splitmix64(s * 0x100000001b3ull ^ n) <
           atomic_load_explicit(&threshold, memory_order_relaxed);
  }
  if (fail) {
    atomic_fetch_add_explicit(&failed, 1, memory_order_relaxed);
    errno = ENOMEM;
  }
  return fail;
}

/* ---- spec parsing: plain code, async-signal-safe --------------------------- */

static uint64_t parse_uint(const char *s, const char *end) {
  uint64_t v = 0;
  for (; s < end && *s >= '0' && *s <= '9'; s++)
    v = v * 10 + (uint64_t)(*s - '0');
  return v;
}

/* "0.02" or "1" or "2e-2" is not needed: a decimal fraction up to 1. */
static uint64_t parse_rate(const char *s, const char *end) {
  uint64_t whole = 0, frac = 0, scale = 1;
  for (; s < end && *s >= '0' && *s <= '9'; s++)
    whole = whole * 10 + (uint64_t)(*s - '0');
  if (s < end && *s == '.') {
    for (s++; s < end && *s >= '0' && *s <= '9' && scale < 1000000000ull; s++) {
      frac = frac * 10 + (uint64_t)(*s - '0');
      scale *= 10;
    }
  }
  if (whole >= 1)
    return UINT64_MAX;
  /* frac / scale of 2^64, without floating point */
  return (uint64_t)(((unsigned __int128)frac << 64) / scale);
}

static bool key_is(const char *k, const char *kend, const char *name) {
  size_t n = strlen(name);
  return (size_t)(kend - k) == n && memcmp(k, name, n) == 0;
}

/* Parses a spec into the env_* variables (and gen, after); false when the
 * spec disarms ("off", empty). */
static void parse_spec(const char *s, size_t len, uint64_t *after) {
  const char *end = s + len;
  env_mode = 0;
  env_seed = 1;
  env_threshold = 0;
  env_every = 0;
  env_min = 0;
  *after = 0;
  while (s < end) {
    const char *item = s;
    while (s < end && *s != ',' && *s != ' ' && *s != '\n')
      s++;
    const char *iend = s;
    if (s < end)
      s++;
    const char *eq = item;
    while (eq < iend && *eq != '=')
      eq++;
    if (eq == iend)
      continue;
    const char *v = eq + 1;
    if (key_is(item, eq, "seed")) {
      env_seed = parse_uint(v, iend);
    } else if (key_is(item, eq, "rate")) {
      env_threshold = parse_rate(v, iend);
      env_mode = 1;
    } else if (key_is(item, eq, "every")) {
      env_every = parse_uint(v, iend);
      env_mode = env_every ? 2 : 0;
    } else if (key_is(item, eq, "after")) {
      *after = parse_uint(v, iend);
    } else if (key_is(item, eq, "min")) {
      env_min = parse_uint(v, iend);
    } else if (key_is(item, eq, "gen")) {
      gen = parse_uint(v, iend);
    }
  }
}

static void publish(int m) {
  atomic_store(&mode, 0);
  atomic_store(&seed, env_seed);
  atomic_store(&threshold, env_threshold);
  atomic_store(&every, env_every);
  atomic_store(&min_size, env_min);
  atomic_store(&mode, m);
}

static char *put_str(char *o, const char *s) {
  while (*s)
    *o++ = *s++;
  return o;
}

static char *put_uint(char *o, uint64_t v) {
  char tmp[24];
  int n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  while (n)
    *o++ = tmp[--n];
  return o;
}

static void write_ack(void) {
  char tmp[1100], dst[1100], line[160];
  size_t n = strlen(ctl_path);
  memcpy(dst, ctl_path, n);
  memcpy(dst + n, ".ack", 5);
  memcpy(tmp, ctl_path, n);
  memcpy(tmp + n, ".ack.tmp", 9);
  char *o = line;
  o = put_str(o, "gen=");
  o = put_uint(o, gen);
  o = put_str(o, " armed=");
  o = put_uint(o, atomic_load(&mode) != 0);
  o = put_str(o, " calls=");
  o = put_uint(o, atomic_load(&calls));
  o = put_str(o, " failed=");
  o = put_uint(o, atomic_load(&failed));
  *o++ = '\n';
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return;
  ssize_t w = write(fd, line, (size_t)(o - line));
  close(fd);
  if (w == o - line)
    rename(tmp, dst);
}

static void on_sigusr2(int sig) {
  (void)sig;
  int saved = errno;
  if (ctl_path[0] == '\0') {
    publish(atomic_load(&mode) ? 0 : env_mode);
    errno = saved;
    return;
  }
  static char buf[4096];
  size_t len = 0;
  int fd = open(ctl_path, O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ssize_t r;
    while (len < sizeof(buf) && (r = read(fd, buf + len, sizeof(buf) - len)) > 0)
      len += (size_t)r;
    close(fd);
  }
  uint64_t after;
  parse_spec(buf, len, &after);
  atomic_store(&before, 0);
  publish(env_mode);
  write_ack();
  errno = saved;
}

static void resolve(void) {
  real_malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
  real_calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
  real_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
  real_free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
  real_aligned_alloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "aligned_alloc");
  real_posix_memalign = (int (*)(void **, size_t, size_t))dlsym(RTLD_NEXT, "posix_memalign");
  real_memalign = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "memalign");
  atomic_store(&resolved, 1);
}

/* Called by the first allocation (or the constructor, whichever is first):
 * until the real functions are known, allocations come from `boot`. */
static bool ready(void) {
  static atomic_int started;
  if (atomic_load_explicit(&resolved, memory_order_acquire))
    return true;
  if (atomic_exchange(&started, 1) == 0) {
    resolve();
    return true;
  }
  return atomic_load(&resolved) != 0;
}

__attribute__((constructor)) static void failmalloc_init(void) {
  ready();
  const char *spec = getenv("CYNIC_FAILMALLOC");
  const char *ctl = getenv("CYNIC_FAILMALLOC_CTL");
  if (ctl != NULL && strlen(ctl) < sizeof(ctl_path) - 16)
    memcpy(ctl_path, ctl, strlen(ctl) + 1);
  uint64_t after = 0;
  if (spec != NULL)
    parse_spec(spec, strlen(spec), &after);
  if (after != 0 && env_mode != 0) {
    publish(0);
    atomic_store(&before, after);
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_sigusr2;
  sa.sa_flags = SA_RESTART;
  sigfillset(&sa.sa_mask);
  sigaction(SIGUSR2, &sa, NULL);
}

void *malloc(size_t size) {
  if (!ready())
    return boot_alloc(size);
  if (should_fail(size))
    return NULL;
  return real_malloc(size);
}

void *calloc(size_t n, size_t size) {
  if (!ready()) {
    if (size != 0 && n > SIZE_MAX / size)
      return NULL;
    return boot_alloc(n * size); /* static: already zero */
  }
  if (should_fail(n * size))
    return NULL;
  return real_calloc(n, size);
}

void *realloc(void *p, size_t size) {
  if (p != NULL && in_boot(p)) {
    void *q = malloc(size);
    if (q != NULL) {
      size_t old = boot_size(p);
      memcpy(q, p, old < size ? old : size);
    }
    return q;
  }
  if (!ready())
    return p == NULL ? boot_alloc(size) : NULL;
  /* realloc(p, 0) frees; a shrink cannot fail in practice: only growth and
   * fresh allocations are failed. */
  if (size != 0 && should_fail(size))
    return NULL;
  return real_realloc(p, size);
}

void free(void *p) {
  if (p == NULL || in_boot(p))
    return;
  if (!ready())
    return; /* cannot happen: a pointer not from boot needs real malloc */
  real_free(p);
}

void *aligned_alloc(size_t align, size_t size) {
  if (!ready())
    return boot_alloc(size);
  if (should_fail(size))
    return NULL;
  return real_aligned_alloc(align, size);
}

int posix_memalign(void **out, size_t align, size_t size) {
  if (!ready())
    return ENOMEM;
  if (should_fail(size))
    return ENOMEM;
  return real_posix_memalign(out, align, size);
}

void *memalign(size_t align, size_t size) {
  if (!ready())
    return boot_alloc(size);
  if (should_fail(size))
    return NULL;
  return real_memalign(align, size);
}
