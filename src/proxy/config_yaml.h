/*
 * src/proxy/config_yaml.h: a bounded YAML tree for the config loader.
 *
 * libyaml's event parser feeds a small tree of our own: scalars, sequences
 * and mappings with their positions. Loading refuses, at the first sight,
 * anything that could make the tree large or surprising: anchors and aliases
 * (the "billion laughs"), tags, a second document, more than
 * CYNIC__CONFIG_MAX_NODES nodes, nesting deeper than CYNIC__CONFIG_MAX_DEPTH.
 * The caller bounds the input size before calling.
 */
#ifndef CYNIC_PROXY_CONFIG_YAML_H
#define CYNIC_PROXY_CONFIG_YAML_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

typedef enum cynic__yaml_type {
  CYNIC__YAML_SCALAR,
  CYNIC__YAML_SEQ,
  CYNIC__YAML_MAP
} cynic__yaml_type_t;

typedef struct cynic__yaml_node {
  cynic__yaml_type_t type;
  cynic__config_mark_t mark; /* where the node starts, 1-based */
  bool plain;                /* scalar written without quotes */
  bool has_nul;              /* scalar holds a NUL byte (from a "\0" escape) */
  char *str;                 /* scalar bytes, NUL-terminated; NULL otherwise */
  size_t len;
  struct cynic__yaml_node **kids; /* sequence items; mapping keys and values interleaved */
  size_t count;
  size_t cap;
} cynic__yaml_node_t;

/*
 * Parse `len` bytes of YAML into a tree. Returns 0 and sets *root (NULL for an
 * empty stream; the caller frees it with cynic__yaml_free) or returns
 * CYNIC_EINVAL with the first problem's position in *mark and its text in
 * msg[msg_size], or CYNIC_ENOMEM.
 */
int cynic__yaml_load(const char *data, size_t len, cynic__yaml_node_t **root,
                     cynic__config_mark_t *mark, char *msg, size_t msg_size);

/* Free a tree from cynic__yaml_load; NULL is fine. */
void cynic__yaml_free(cynic__yaml_node_t *n);

#endif /* CYNIC_PROXY_CONFIG_YAML_H */
