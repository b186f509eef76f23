/*
 * src/proxy/config_schema.c: a YAML tree read against a schema (the keys of
 * each mapping, typed values), with errors at file:line:column and "did you
 * mean" suggestions. Generic: cynic's own keys are in config.c. See
 * config_schema.h.
 */
#define _POSIX_C_SOURCE 200809L
#include "config_schema.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_value.h"

typedef cynic__yaml_node_t node_t;

/* ---- errors ---------------------------------------------------------------- */

static void verror(cynic__schema_t *sc, cynic__config_mark_t mark, const char *fmt, va_list ap) {
  cynic__config_errors_t *errs = sc->errs;
  if (errs->count >= CYNIC__CONFIG_MAX_ERRORS) {
    errs->truncated = true;
    return;
  }
  cynic__config_error_t *e = &errs->list[errs->count++];
  e->mark = mark;
  vsnprintf(e->message, sizeof e->message, fmt, ap);
}

void cynic__schema_error_at_mark(cynic__schema_t *sc, cynic__config_mark_t mark, const char *fmt,
                                 ...) {
  va_list ap;
  va_start(ap, fmt);
  verror(sc, mark, fmt, ap);
  va_end(ap);
}

void cynic__schema_error_at(cynic__schema_t *sc, const node_t *n, const char *fmt, ...) {
  cynic__config_mark_t none = {0, 0};
  va_list ap;
  va_start(ap, fmt);
  verror(sc, n ? n->mark : none, fmt, ap);
  va_end(ap);
}

void cynic__schema_out_of_memory(cynic__schema_t *sc) {
  if (!sc->nomem) {
    sc->nomem = true;
    cynic__config_mark_t none = {0, 0};
    cynic__schema_error_at_mark(sc, none, "out of memory while loading the config");
  }
}

const char *cynic__schema_describe(const node_t *n) {
  if (n->type == CYNIC__YAML_SEQ)
    return "a list";
  if (n->type == CYNIC__YAML_MAP)
    return "a mapping";
  if (n->plain && n->len == 0)
    return "no value";
  return "a single value";
}

static int mark_cmp(const cynic__config_mark_t *a, const cynic__config_mark_t *b) {
  if (a->line != b->line)
    return a->line < b->line ? -1 : 1;
  if (a->column != b->column)
    return a->column < b->column ? -1 : 1;
  return 0;
}

/* Insertion sort: stable, and there are at most CYNIC__CONFIG_MAX_ERRORS. */
void cynic__schema_sort_errors(cynic__config_errors_t *errs) {
  for (size_t i = 1; i < errs->count; i++) {
    cynic__config_error_t tmp = errs->list[i];
    size_t j = i;
    while (j > 0 && mark_cmp(&errs->list[j - 1].mark, &tmp.mark) > 0) {
      errs->list[j] = errs->list[j - 1];
      j--;
    }
    errs->list[j] = tmp;
  }
}

int cynic__config_error_format(const cynic__config_errors_t *errs, size_t i, char *buf,
                               size_t size) {
  if (errs == NULL || i >= errs->count)
    return snprintf(buf, size, "%s", "");
  const cynic__config_error_t *e = &errs->list[i];
  if (e->mark.line == 0)
    return snprintf(buf, size, "%s: %s", errs->file, e->message);
  return snprintf(buf, size, "%s:%u:%u: %s", errs->file, (unsigned)e->mark.line,
                  (unsigned)e->mark.column, e->message);
}

void cynic__config_errors_print(const cynic__config_errors_t *errs, FILE *out) {
  char line[CYNIC__CONFIG_MAX_PATH + CYNIC__CONFIG_MAX_MESSAGE + 32];
  for (size_t i = 0; i < errs->count; i++) {
    cynic__config_error_format(errs, i, line, sizeof line);
    fprintf(out, "%s\n", line);
  }
  if (errs->truncated)
    fprintf(out, "%s: stopped after %u errors; fix these and run --check again\n", errs->file,
            (unsigned)CYNIC__CONFIG_MAX_ERRORS);
}

/* ---- did you mean ---------------------------------------------------------- */

/* Levenshtein distance of two short strings; both are capped at 64 bytes. */
static size_t edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 64 || lb > 64)
    return SIZE_MAX;
  size_t row[65];
  for (size_t j = 0; j <= lb; j++)
    row[j] = j;
  for (size_t i = 1; i <= la; i++) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t up = row[j];
      size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      size_t best = diag + cost;
      if (up + 1 < best)
        best = up + 1;
      if (row[j - 1] + 1 < best)
        best = row[j - 1] + 1;
      row[j] = best;
      diag = up;
    }
  }
  return row[lb];
}

/* The closest candidate if it is close enough to be a typo, else NULL. */
const char *cynic__schema_closest(const char *word, const char *const *candidates, size_t n) {
  const char *best = NULL;
  size_t best_d = SIZE_MAX;
  for (size_t i = 0; i < n; i++) {
    size_t d = edit_distance(word, candidates[i]);
    if (d < best_d) {
      best_d = d;
      best = candidates[i];
    }
  }
  if (best == NULL || best_d == 0 || best_d > 2 || best_d * 2 >= strlen(best))
    return NULL;
  return best;
}

static size_t count_of(const char *const *list) {
  size_t n = 0;
  while (list[n] != NULL)
    n++;
  return n;
}

static void join(char *buf, size_t size, const char *const *list) {
  size_t used = 0;
  buf[0] = '\0';
  for (size_t i = 0; list[i] != NULL && used < size; i++) {
    int w = snprintf(buf + used, size - used, "%s%s", i ? ", " : "", list[i]);
    if (w < 0)
      break;
    used += (size_t)w;
  }
}

/* ---- mapping checks and typed getters -------------------------------------- */

/* Check that n is a mapping whose keys are all in `keys` (NULL-terminated, or
 * deprecated_keys) and appear once. Reports each problem; returns false only
 * if n is no mapping. */
bool cynic__schema_check_map(cynic__schema_t *sc, const node_t *n, const char *what,
                             const char *const *keys) {
  if (n->type == CYNIC__YAML_SCALAR && n->plain && n->len == 0) {
    cynic__schema_error_at(
        sc, n, "%s is empty; write its keys below it, or remove it to get the defaults", what);
    return false;
  }
  if (n->type != CYNIC__YAML_MAP) {
    cynic__schema_error_at(sc, n, "%s must be a mapping of keys to values, got %s", what,
                           cynic__schema_describe(n));
    return false;
  }
  for (size_t i = 0; i + 1 < n->count; i += 2) {
    const node_t *k = n->kids[i];
    char sv[64];
    if (k->type != CYNIC__YAML_SCALAR) {
      cynic__schema_error_at(sc, k, "a key in %s is %s; keys are plain words", what,
                             cynic__schema_describe(k));
      continue;
    }
    bool known = sc->deprecated != NULL && sc->deprecated(what, k->str);
    for (size_t j = 0; keys[j] != NULL; j++)
      known = known || strcmp(k->str, keys[j]) == 0;
    if (!known) {
      const char *guess = cynic__schema_closest(k->str, keys, count_of(keys));
      if (guess != NULL) {
        cynic__schema_error_at(sc, k, "unknown key '%s' in %s; did you mean '%s'?",
                               cynic__config_show(sv, k->str, k->len), what, guess);
      } else {
        char list[256];
        join(list, sizeof list, keys);
        cynic__schema_error_at(sc, k, "unknown key '%s' in %s; valid keys: %s",
                               cynic__config_show(sv, k->str, k->len), what, list);
      }
      continue;
    }
    for (size_t j = 0; j < i; j += 2) {
      const node_t *prev = n->kids[j];
      if (prev->type == CYNIC__YAML_SCALAR && strcmp(prev->str, k->str) == 0) {
        cynic__schema_error_at(sc, k, "duplicate key '%s' (first at line %u); keep one", k->str,
                               (unsigned)prev->mark.line);
        break;
      }
    }
  }
  return true;
}

/* The index in m->kids of the first key `key` of mapping m (its value is
 * the next kid), or SIZE_MAX. */
static size_t key_at(const node_t *m, const char *key) {
  if (m == NULL || m->type != CYNIC__YAML_MAP)
    return SIZE_MAX;
  for (size_t i = 0; i + 1 < m->count; i += 2)
    if (m->kids[i]->type == CYNIC__YAML_SCALAR && strcmp(m->kids[i]->str, key) == 0)
      return i;
  return SIZE_MAX;
}

/* The value of `key` in mapping m (first occurrence), or NULL. */
const node_t *cynic__schema_get(const node_t *m, const char *key) {
  size_t i = key_at(m, key);
  return i != SIZE_MAX ? m->kids[i + 1] : NULL;
}

/* The key node `key` of mapping m (for its position), or NULL. */
const node_t *cynic__schema_get_key(const node_t *m, const char *key) {
  size_t i = key_at(m, key);
  return i != SIZE_MAX ? m->kids[i] : NULL;
}

/* The text of a scalar value, or NULL after reporting why there is none. */
const char *cynic__schema_scalar(cynic__schema_t *sc, const node_t *v, const char *key) {
  if (v->type != CYNIC__YAML_SCALAR) {
    cynic__schema_error_at(sc, v, "%s: expected a single value, got %s", key,
                           cynic__schema_describe(v));
    return NULL;
  }
  if (v->plain && v->len == 0) {
    cynic__schema_error_at(sc, v, "%s: missing value", key);
    return NULL;
  }
  if (v->has_nul) {
    cynic__schema_error_at(sc, v, "%s: the value holds a NUL byte", key);
    return NULL;
  }
  return v->str;
}

/* A scalar parsed by `parse` (a duration or a size parser of config_value.c)
 * and checked against [min, max]; `range` says what is valid. NULL when the key
 * is absent; *out is set only when the value is good. */
typedef int (*u64_parser_fn)(const char *s, uint64_t *out, char *hint, size_t hintlen);

static const node_t *get_u64(cynic__schema_t *sc, const node_t *m, const char *key,
                             u64_parser_fn parse, uint64_t min, uint64_t max, const char *range,
                             uint64_t *out) {
  const node_t *v = cynic__schema_get(m, key);
  if (v == NULL)
    return NULL;
  const char *s = cynic__schema_scalar(sc, v, key);
  if (s == NULL)
    return v;
  char hint[192];
  uint64_t val;
  if (parse(s, &val, hint, sizeof hint) != 0) {
    cynic__schema_error_at(sc, v, "%s: %s", key, hint);
    return v;
  }
  if (val < min || val > max) {
    char sv[64];
    cynic__schema_error_at(sc, v, "%s: %s is out of range; use %s", key,
                           cynic__config_show(sv, s, v->len), range);
    return v;
  }
  *out = val;
  return v;
}

const node_t *cynic__schema_get_duration(cynic__schema_t *sc, const node_t *m, const char *key,
                                         uint64_t min, uint64_t max, const char *range,
                                         uint64_t *out) {
  return get_u64(sc, m, key, cynic__config_parse_duration, min, max, range, out);
}

const node_t *cynic__schema_get_size(cynic__schema_t *sc, const node_t *m, const char *key,
                                     uint64_t min, uint64_t max, const char *range, uint64_t *out) {
  return get_u64(sc, m, key, cynic__config_parse_size, min, max, range, out);
}

/* parse_percent in the shape of get_u64's parser. */
static int parse_percent_u64(const char *s, uint64_t *out, char *hint, size_t hintlen) {
  uint32_t pct;
  int rc = cynic__config_parse_percent(s, &pct, hint, hintlen);
  if (rc == 0)
    *out = pct;
  return rc;
}

const node_t *cynic__schema_get_percent(cynic__schema_t *sc, const node_t *m, const char *key,
                                        uint32_t min, uint32_t max, uint32_t *out) {
  char range[32];
  snprintf(range, sizeof range, "%u%%..%u%%", (unsigned)min, (unsigned)max);
  uint64_t pct = *out; /* get_u64 sets it only when the value is good */
  const node_t *v = get_u64(sc, m, key, parse_percent_u64, min, max, range, &pct);
  *out = (uint32_t)pct;
  return v;
}

/* A whole number in min..max (cynic__config_parse_count: the one count parser). */
bool cynic__schema_parse_uint(cynic__schema_t *sc, const node_t *v, const char *key, uint64_t min,
                              uint64_t max, uint64_t *out) {
  const char *s = cynic__schema_scalar(sc, v, key);
  if (s == NULL)
    return false;
  char hint[CYNIC__CONFIG_MAX_MESSAGE / 2];
  if (cynic__config_parse_count(s, min, max, out, hint, sizeof hint) != 0) {
    cynic__schema_error_at(sc, v, "%s: %s", key, hint);
    return false;
  }
  return true;
}

const node_t *cynic__schema_get_u32(cynic__schema_t *sc, const node_t *m, const char *key,
                                    uint32_t min, uint32_t max, uint32_t *out) {
  const node_t *v = cynic__schema_get(m, key);
  uint64_t n;
  if (v != NULL && cynic__schema_parse_uint(sc, v, key, min, max, &n))
    *out = (uint32_t)n;
  return v;
}

const node_t *cynic__schema_get_bool(cynic__schema_t *sc, const node_t *m, const char *key,
                                     bool *out) {
  const node_t *v = cynic__schema_get(m, key);
  if (v == NULL)
    return NULL;
  const char *s = cynic__schema_scalar(sc, v, key);
  if (s == NULL)
    return v;
  if (strcmp(s, "true") == 0) {
    *out = true;
  } else if (strcmp(s, "false") == 0) {
    *out = false;
  } else {
    char sv[64];
    cynic__schema_error_at(sc, v, "%s: '%s' is not a boolean; use true or false", key,
                           cynic__config_show(sv, s, v->len));
  }
  return v;
}

/* One of `names` (NULL-terminated); *out is its index. */
const node_t *cynic__schema_get_enum(cynic__schema_t *sc, const node_t *m, const char *key,
                                     const char *const *names, int *out) {
  const node_t *v = cynic__schema_get(m, key);
  if (v == NULL)
    return NULL;
  const char *s = cynic__schema_scalar(sc, v, key);
  if (s == NULL)
    return v;
  for (int i = 0; names[i] != NULL; i++) {
    if (strcmp(s, names[i]) == 0) {
      *out = i;
      return v;
    }
  }
  char sv[64], list[128];
  const char *guess = cynic__schema_closest(s, names, count_of(names));
  join(list, sizeof list, names);
  if (guess != NULL)
    cynic__schema_error_at(sc, v, "%s: unknown value '%s'; did you mean '%s'?", key,
                           cynic__config_show(sv, s, v->len), guess);
  else
    cynic__schema_error_at(sc, v, "%s: unknown value '%s'; use one of: %s", key,
                           cynic__config_show(sv, s, v->len), list);
  return v;
}

/* A string of 1..max bytes, copied into *out (replacing what was there). */
const node_t *cynic__schema_get_string(cynic__schema_t *sc, const node_t *m, const char *key,
                                       size_t max, char **out) {
  const node_t *v = cynic__schema_get(m, key);
  if (v == NULL)
    return NULL;
  const char *s = cynic__schema_scalar(sc, v, key);
  if (s == NULL)
    return v;
  if (v->len == 0 || v->len > max) {
    cynic__schema_error_at(sc, v, "%s: must be 1..%zu bytes long, got %zu", key, max, v->len);
    return v;
  }
  char *copy = strdup(s);
  if (copy == NULL) {
    cynic__schema_out_of_memory(sc);
    return v;
  }
  free(*out);
  *out = copy;
  return v;
}

const cynic__yaml_node_t *cynic__schema_section(cynic__schema_t *sc, const cynic__yaml_node_t *m,
                                                const char *key, const char *const *keys) {
  const cynic__yaml_node_t *v = cynic__schema_get(m, key);
  if (v == NULL || !cynic__schema_check_map(sc, v, key, keys))
    return NULL;
  return v;
}
