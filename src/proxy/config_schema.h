/*
 * src/proxy/config_schema.h: reading a YAML tree against a schema.
 *
 * The generic half of the config loader: nothing here knows cynic's keys.
 * A caller walks its tree (config_yaml.h) mapping by mapping: check_map()
 * holds a mapping against its NULL-terminated list of keys (an unknown key
 * is reported with the closest valid one, "did you mean", or the list; a
 * duplicate with the line of the first), and the typed getters read one
 * key's value with the strict parsers of config_value.h. Every problem
 * becomes one entry of the caller's cynic__config_errors_t, at the file,
 * line and column of the node it is about, up to CYNIC__CONFIG_MAX_ERRORS
 * (then `truncated`). A getter that finds a bad value reports it and leaves
 * *out as it was (the caller's default), so a walk goes on to the next error.
 *
 * Getters return the value node of `key` (also when it was bad: for the
 * caller's own cross-checks' positions) or NULL when the key is absent.
 * No allocation except the strings get_string() copies (the caller owns them).
 */
#ifndef CYNIC_PROXY_CONFIG_SCHEMA_H
#define CYNIC_PROXY_CONFIG_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "config_yaml.h"

typedef struct cynic__schema {
  cynic__config_errors_t *errs; /* where problems go; the caller's */
  bool nomem;                   /* out of memory was reported (once) */
  /* Old names that still load but are never listed or suggested: true when
   * `key` is one in mapping `what`. NULL: none. */
  bool (*deprecated)(const char *what, const char *key);
} cynic__schema_t;

#define CYNIC__SCHEMA_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* Report a problem at `mark` ({0, 0}: the file as a whole) / at node `n`
 * (NULL: the file). Past CYNIC__CONFIG_MAX_ERRORS only `truncated` is set. */
CYNIC__SCHEMA_PRINTF(3, 4)
void cynic__schema_error_at_mark(cynic__schema_t *sc, cynic__config_mark_t mark, const char *fmt,
                                 ...);
CYNIC__SCHEMA_PRINTF(3, 4)
void cynic__schema_error_at(cynic__schema_t *sc, const cynic__yaml_node_t *n, const char *fmt, ...);
/* Report running out of memory, once per load; sets sc->nomem. */
void cynic__schema_out_of_memory(cynic__schema_t *sc);
/* "a list", "a mapping", "no value" or "a single value": what a node is, for messages. */
const char *cynic__schema_describe(const cynic__yaml_node_t *n);
/* Sort errors by position, stably (at most CYNIC__CONFIG_MAX_ERRORS). */
void cynic__schema_sort_errors(cynic__config_errors_t *errs);
/* The candidate closest to `word` by edit distance when close enough to be a
 * typo of it, else NULL. */
const char *cynic__schema_closest(const char *word, const char *const *candidates, size_t n);

/* Check that n is a mapping whose keys are all in `keys` (NULL-terminated,
 * or deprecated) and appear once; `what` names it in messages. Reports each
 * problem; returns false only when n is no mapping (or an empty value). */
bool cynic__schema_check_map(cynic__schema_t *sc, const cynic__yaml_node_t *n, const char *what,
                             const char *const *keys);
/* The sub-mapping `key` of m checked against `keys` (as check_map), or NULL
 * when it is absent or no mapping. */
const cynic__yaml_node_t *cynic__schema_section(cynic__schema_t *sc, const cynic__yaml_node_t *m,
                                                const char *key, const char *const *keys);
/* The value (key) node of `key` in mapping m, first occurrence; NULL when m
 * is no mapping or has no such key. Reports nothing. */
const cynic__yaml_node_t *cynic__schema_get(const cynic__yaml_node_t *m, const char *key);
const cynic__yaml_node_t *cynic__schema_get_key(const cynic__yaml_node_t *m, const char *key);
/* The text of scalar v, or NULL after reporting why there is none (a list, a
 * mapping, no value, a NUL byte). */
const char *cynic__schema_scalar(cynic__schema_t *sc, const cynic__yaml_node_t *v, const char *key);
/* A whole number in min..max from v (cynic__config_parse_count). */
bool cynic__schema_parse_uint(cynic__schema_t *sc, const cynic__yaml_node_t *v, const char *key,
                              uint64_t min, uint64_t max, uint64_t *out);

/* Typed getters: `key` of mapping m, checked against min..max (`range` says
 * what is valid, for the message). */
const cynic__yaml_node_t *cynic__schema_get_duration(cynic__schema_t *sc,
                                                     const cynic__yaml_node_t *m, const char *key,
                                                     uint64_t min, uint64_t max, const char *range,
                                                     uint64_t *out);
const cynic__yaml_node_t *cynic__schema_get_size(cynic__schema_t *sc, const cynic__yaml_node_t *m,
                                                 const char *key, uint64_t min, uint64_t max,
                                                 const char *range, uint64_t *out);
const cynic__yaml_node_t *cynic__schema_get_percent(cynic__schema_t *sc,
                                                    const cynic__yaml_node_t *m, const char *key,
                                                    uint32_t min, uint32_t max, uint32_t *out);
const cynic__yaml_node_t *cynic__schema_get_u32(cynic__schema_t *sc, const cynic__yaml_node_t *m,
                                                const char *key, uint32_t min, uint32_t max,
                                                uint32_t *out);
/* true or false, nothing else. */
const cynic__yaml_node_t *cynic__schema_get_bool(cynic__schema_t *sc, const cynic__yaml_node_t *m,
                                                 const char *key, bool *out);
/* One of `names` (NULL-terminated); *out is its index. */
const cynic__yaml_node_t *cynic__schema_get_enum(cynic__schema_t *sc, const cynic__yaml_node_t *m,
                                                 const char *key, const char *const *names,
                                                 int *out);
/* A string of 1..max bytes, copied into *out (the old one freed; the
 * caller owns the new one). */
const cynic__yaml_node_t *cynic__schema_get_string(cynic__schema_t *sc, const cynic__yaml_node_t *m,
                                                   const char *key, size_t max, char **out);

/* Units for bounds and defaults in the schema (config.c, config_http.c). */
#define NS_PER_MS UINT64_C(1000000)
#define NS_PER_S UINT64_C(1000000000)
#define KIB UINT64_C(1024)
#define MIB (KIB * 1024)
#define GIB (MIB * 1024)
#define TIB (GIB * 1024)

#endif /* CYNIC_PROXY_CONFIG_SCHEMA_H */
