/*
 * src/common/blocks.c: equal-sized blocks kept for reuse (contract in
 * blocks.h).
 */
#include <stdlib.h>

#include "blocks.h"

void cynic__blocks_init(cynic__blocks_t *b, size_t size, uint32_t max) {
  *b = (cynic__blocks_t){.size = size, .max = max};
}

void *cynic__blocks_take(cynic__blocks_t *b) {
  void *p = b->len > 0 ? b->free[--b->len] : malloc(b->size);
  if (p == NULL)
    return NULL;
  b->out++;
  if (b->out > b->peak)
    b->peak = b->out;
  return p;
}

/* Room for one more kept block: the list doubles up to `max` entries. */
static int grow(cynic__blocks_t *b) {
  if (b->len < b->room)
    return 1;
  if (b->room >= b->max)
    return 0;
  uint32_t room = b->room == 0 ? 16 : b->room * 2;
  if (room > b->max)
    room = b->max;
  void **list = realloc(b->free, room * sizeof *list);
  if (list == NULL)
    return 0;
  b->free = list;
  b->room = room;
  return 1;
}

void cynic__blocks_put(cynic__blocks_t *b, void *p) {
  if (p == NULL)
    return;
  if (b->out > 0)
    b->out--;
  if (grow(b))
    b->free[b->len++] = p;
  else
    free(p);
}

void cynic__blocks_trim(cynic__blocks_t *b) {
  uint32_t keep = b->peak > b->out ? b->peak - b->out : 0;
  while (b->len > keep)
    free(b->free[--b->len]);
  if (b->len == 0 && b->out == 0) {
    free(b->free); /* an idle set holds nothing */
    b->free = NULL;
    b->room = 0;
  }
  b->peak = b->out;
}

void cynic__blocks_free(cynic__blocks_t *b) {
  while (b->len > 0)
    free(b->free[--b->len]);
  free(b->free);
  b->free = NULL;
  b->room = 0;
}
