/*
 * cynic/hash.h: keyed hashing for tables whose keys come from outside.
 *
 * A table keyed by what clients send (addresses, URLs) is a target: with a
 * known hash function an attacker picks keys that land in one chain and turns
 * every lookup into a walk (hash flooding). SipHash-1-3 under a per-table
 * random key makes the chains unpredictable at a few ns per short key; it is
 * what Rust's HashMap and Python's dict use for the same reason.
 *
 * Thread safety: pure functions, any thread.
 */
#ifndef CYNIC_HASH_H
#define CYNIC_HASH_H

#include <stddef.h>
#include <stdint.h>

#include "cynic/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* SipHash-1-3 (Aumasson & Bernstein) of `len` bytes at `in` (any length; NULL
 * with len 0 is fine) under the 128-bit key k0, k1. */
CYNIC_API uint64_t cynic_siphash13(uint64_t k0, uint64_t k1, const void *in, size_t len);

/* A 128-bit key for cynic_siphash13 from the kernel's random source
 * (getrandom, non-blocking); without entropy yet (early boot) one mixed from
 * the monotonic clock and `salt` (e.g. the table's address): weaker, never a
 * fixed key. */
CYNIC_API void cynic_hash_key(uint64_t key[2], uint64_t salt);

/* SplitMix64's finaliser: a bijective mixer (derives keys from a seed). */
CYNIC_API uint64_t cynic_splitmix64(uint64_t x);

#ifdef __cplusplus
}
#endif

#endif /* CYNIC_HASH_H */
