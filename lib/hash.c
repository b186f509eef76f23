/*
 * lib/hash.c: SipHash-1-3 and its keys (contract in cynic/hash.h). Shared by
 * the rate table (lib/ratelimit.c) and the proxy's stale cache.
 */
#define _DEFAULT_SOURCE /* getrandom */
#include "cynic/hash.h"

#include <sys/random.h>

static uint64_t rotl(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

#define SIPROUND                                                               \
  do {                                                                         \
    v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32);                 \
    v2 += v3; v3 = rotl(v3, 16); v3 ^= v2;                                     \
    v0 += v3; v3 = rotl(v3, 21); v3 ^= v0;                                     \
    v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32);                  \
  } while (0)

static uint64_t load_le64(const uint8_t *p, size_t len) {
  uint64_t v = 0;
  for (size_t i = 0; i < len; i++)
    v |= (uint64_t)p[i] << (8 * i);
  return v;
}

uint64_t cynic_siphash13(uint64_t k0, uint64_t k1, const void *data, size_t len) {
  const uint8_t *in = data;
  uint64_t v0 = k0 ^ UINT64_C(0x736f6d6570736575);
  uint64_t v1 = k1 ^ UINT64_C(0x646f72616e646f6d);
  uint64_t v2 = k0 ^ UINT64_C(0x6c7967656e657261);
  uint64_t v3 = k1 ^ UINT64_C(0x7465646279746573);
  size_t whole = len & ~(size_t)7;
  for (size_t i = 0; i < whole; i += 8) {
    uint64_t m = load_le64(in + i, 8);
    v3 ^= m;
    SIPROUND;
    v0 ^= m;
  }
  uint64_t last = ((uint64_t)len << 56) | (len > whole ? load_le64(in + whole, len - whole) : 0);
  v3 ^= last;
  SIPROUND;
  v0 ^= last;
  v2 ^= 0xff;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  return v0 ^ v1 ^ v2 ^ v3;
}

uint64_t cynic_splitmix64(uint64_t x) {
  x += UINT64_C(0x9e3779b97f4a7c15);
  x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
  return x ^ (x >> 31);
}

void cynic_hash_key(uint64_t key[2], uint64_t salt) {
  if (getrandom(key, 2 * sizeof key[0], GRND_NONBLOCK) == (ssize_t)(2 * sizeof key[0]))
    return;
  key[0] = cynic_splitmix64(cynic_clock_monotonic(NULL) ^ salt);
  key[1] = cynic_splitmix64(key[0] ^ (uint64_t)(uintptr_t)key);
}
