/*
 * src/common/blocks.h: equal-sized blocks kept for reuse, and given back to
 * malloc when the load that needed them has passed.
 *
 * The request path takes and returns a few large blocks per request (a
 * connection's read ring, the head stores). Handing them back to malloc at
 * every request makes glibc trim the top of the heap and grow it again:
 * brk, page faults and zeroed pages per request, which at 64 requests in
 * flight was most of the proxy's extra CPU over 16. A fixed cache has the
 * same cliff one step further. A cynic__blocks_t keeps as many free blocks
 * as the recent peak needs instead:
 *
 *   - take pops the newest free block (warm in the cache) or mallocs one;
 *   - put pushes it back, or frees it when `max` are kept already;
 *   - trim, called about once a second, keeps at most what the peak since the
 *     last trim needed on top of the blocks out now, then starts a new peak.
 *
 * So a steady load of N blocks in use mallocs nothing once warm, and the
 * blocks a burst needed go back to malloc at the second trim after it.
 *
 * Bounds: at most `max` free blocks (and never more than the peak in use in
 * the last two trim periods); the free list's own array grows by doubling
 * to at most `max` pointers. Not thread-safe: one loop thread per set.
 */
#ifndef CYNIC_COMMON_BLOCKS_H
#define CYNIC_COMMON_BLOCKS_H

#include <stddef.h>
#include <stdint.h>

typedef struct cynic__blocks {
  size_t size;   /* bytes per block */
  void **free;   /* kept blocks, newest last */
  uint32_t len;  /* blocks kept now */
  uint32_t room; /* entries `free` has room for (grows to max) */
  uint32_t max;  /* bound on blocks kept */
  uint32_t out;  /* blocks taken and not yet put back */
  uint32_t peak; /* the most out at once since the last trim */
} cynic__blocks_t;

/* Empty, for blocks of `size` bytes, keeping at most `max` (0 keeps none). */
void cynic__blocks_init(cynic__blocks_t *b, size_t size, uint32_t max);

/* A block of b->size bytes (contents undefined), or NULL when out of memory. */
void *cynic__blocks_take(cynic__blocks_t *b);

/* Gives back a block taken from `b` (NULL is ignored). */
void cynic__blocks_put(cynic__blocks_t *b, void *p);

/* Frees the kept blocks the peak since the last trim did not need, and
 * starts the next peak from the blocks out now. */
void cynic__blocks_trim(cynic__blocks_t *b);

/* Frees every kept block and the list. Blocks still out are the caller's to
 * free (with free()); putting them back after this is not allowed. */
void cynic__blocks_free(cynic__blocks_t *b);

#endif
