/*
 * src/proxy/config_yaml.c: libyaml events to a bounded tree (config_yaml.h).
 *
 * The event API rather than libyaml's document loader: it lets us refuse an
 * alias before anything refers to it, and count nodes and depth as they come.
 */
#include "config_yaml.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "cynic/common.h"

/* The first problem found; later ones are ignored (loading stops at it). */
typedef struct tree_error {
  cynic__config_mark_t *mark;
  char *msg;
  size_t size;
  int rc;
} tree_error_t;

__attribute__((format(printf, 3, 4))) static void fail(tree_error_t *te, cynic__config_mark_t mark,
                                                       const char *fmt, ...) {
  if (te->rc != 0)
    return;
  te->rc = CYNIC_EINVAL;
  *te->mark = mark;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(te->msg, te->size, fmt, ap);
  va_end(ap);
}

static void fail_nomem(tree_error_t *te) {
  if (te->rc == 0) {
    te->rc = CYNIC_ENOMEM;
    snprintf(te->msg, te->size, "out of memory while parsing YAML");
  }
}

/* ---- building the tree from libyaml events --------------------------------- */

void cynic__yaml_free(cynic__yaml_node_t *n) {
  if (n == NULL)
    return;
  for (size_t i = 0; i < n->count; i++)
    cynic__yaml_free(n->kids[i]);
  free(n->kids);
  free(n->str);
  free(n);
}

static cynic__config_mark_t yaml_mark(yaml_mark_t m) {
  cynic__config_mark_t r = {(uint32_t)m.line + 1, (uint32_t)m.column + 1};
  return r;
}

static bool add_kid(cynic__yaml_node_t *parent, cynic__yaml_node_t *kid) {
  if (parent->count == parent->cap) {
    size_t cap = parent->cap ? parent->cap * 2 : 8;
    cynic__yaml_node_t **kids = realloc(parent->kids, cap * sizeof *kids);
    if (kids == NULL)
      return false;
    parent->kids = kids;
    parent->cap = cap;
  }
  parent->kids[parent->count++] = kid;
  return true;
}

static void syntax_error(tree_error_t *te, const yaml_parser_t *p, const char *data, size_t len) {
  const char *problem = p->problem ? p->problem : "cannot parse";
  const char *hint = "";
  cynic__config_mark_t mark = yaml_mark(p->problem_mark);
  if (p->error == YAML_READER_ERROR) {
    /* The reader reports a byte offset, not a mark: count lines up to it. */
    mark.line = 1;
    mark.column = 1;
    for (size_t i = 0; i < p->problem_offset && i < len; i++) {
      if (data[i] == '\n') {
        mark.line++;
        mark.column = 1;
      } else if (((unsigned char)data[i] & 0xc0) != 0x80) { /* characters, not bytes */
        mark.column++;
      }
    }
    hint = "; a config must be UTF-8 text";
    if (p->problem_offset < len && data[p->problem_offset] == '\0') {
      fail(te, mark,
           "a NUL byte; a config must be UTF-8 text without NUL bytes (UTF-16 or UTF-32 "
           "has them: convert it with iconv -t UTF-8)");
      return;
    }
  }
  if (strstr(problem, "block sequence entries are not allowed") != NULL)
    hint = "; a lone '-' starts a list here: to mean stderr, quote it: file: \"-\"";
  else if (strstr(problem, "mapping values are not allowed") != NULL)
    hint = "; a value with ': ' in it needs quotes, or a key is indented wrongly";
  else if (strstr(problem, "found character that cannot start any token") != NULL)
    hint = "; tabs cannot indent YAML, use spaces";
  if (p->context != NULL)
    fail(te, mark, "YAML syntax error: %s %s%s", problem, p->context, hint);
  else
    fail(te, mark, "YAML syntax error: %s%s", problem, hint);
}

int cynic__yaml_load(const char *data, size_t len, cynic__yaml_node_t **out,
                     cynic__config_mark_t *err_mark, char *msg, size_t msg_size) {
  tree_error_t err = {err_mark, msg, msg_size, 0};
  tree_error_t *te = &err;
  size_t nodes = 0;
  yaml_parser_t parser;
  yaml_event_t ev;
  cynic__yaml_node_t *root = NULL;
  cynic__yaml_node_t *stack[CYNIC__CONFIG_MAX_DEPTH];
  size_t depth = 0;
  unsigned documents = 0;
  bool done = false, failed = false;

  *out = NULL;
  if (!yaml_parser_initialize(&parser)) {
    fail_nomem(te);
    return err.rc;
  }
  yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);
  /* libyaml would decode a file that starts with a UTF-16 byte order mark;
   * docs/configuration.md says a config is UTF-8, so say so at the BOM. */
  static const struct {
    const char *bom;
    size_t len;
    const char *name;
  } boms[] = {{"\xff\xfe\0\0", 4, "UTF-32"},
              {"\0\0\xfe\xff", 4, "UTF-32"},
              {"\xff\xfe", 2, "UTF-16"},
              {"\xfe\xff", 2, "UTF-16"}};
  for (size_t i = 0; i < sizeof boms / sizeof boms[0]; i++)
    if (len >= boms[i].len && memcmp(data, boms[i].bom, boms[i].len) == 0) {
      cynic__config_mark_t first = {1, 1};
      fail(te, first,
           "the file is %s (it starts with a %s byte order mark); a config must be "
           "UTF-8: convert it with iconv -f %s -t UTF-8",
           boms[i].name, boms[i].name, boms[i].name);
      yaml_parser_delete(&parser);
      return err.rc;
    }
  yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING);

  while (!done && !failed) {
    if (!yaml_parser_parse(&parser, &ev)) {
      if (parser.error == YAML_MEMORY_ERROR)
        fail_nomem(te);
      else
        syntax_error(te, &parser, data, len);
      failed = true;
      break;
    }
    cynic__config_mark_t mark = yaml_mark(ev.start_mark);
    cynic__yaml_node_t *n = NULL;
    const yaml_char_t *anchor = NULL, *tag = NULL;
    switch (ev.type) {
    case YAML_STREAM_END_EVENT:
      done = true;
      break;
    case YAML_DOCUMENT_START_EVENT:
      if (++documents > 1) {
        fail(te, mark,
             "a config is one YAML document; remove the second '---' and "
             "what follows, or merge it into the first");
        failed = true;
      }
      break;
    case YAML_ALIAS_EVENT:
      fail(te, mark, "YAML aliases (*%s) are not supported; write the value out in full",
           (const char *)ev.data.alias.anchor);
      failed = true;
      break;
    case YAML_SCALAR_EVENT:
      anchor = ev.data.scalar.anchor;
      tag = ev.data.scalar.tag;
      break;
    case YAML_SEQUENCE_START_EVENT:
      anchor = ev.data.sequence_start.anchor;
      tag = ev.data.sequence_start.tag;
      break;
    case YAML_MAPPING_START_EVENT:
      anchor = ev.data.mapping_start.anchor;
      tag = ev.data.mapping_start.tag;
      break;
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
      if (depth > 0)
        depth--;
      break;
    default:
      break;
    }
    if (failed || done ||
        (ev.type != YAML_SCALAR_EVENT && ev.type != YAML_SEQUENCE_START_EVENT &&
         ev.type != YAML_MAPPING_START_EVENT)) {
      yaml_event_delete(&ev);
      continue;
    }
    if (anchor != NULL) {
      fail(te, mark, "YAML anchors (&%s) are not supported; write values out in full",
           (const char *)anchor);
      failed = true;
    } else if (tag != NULL) {
      fail(te, mark, "YAML tags (%s) are not supported; remove the tag", (const char *)tag);
      failed = true;
    } else if (++nodes > CYNIC__CONFIG_MAX_NODES) {
      fail(te, mark, "too many YAML nodes (more than %u); a config this big is a mistake",
           (unsigned)CYNIC__CONFIG_MAX_NODES);
      failed = true;
    } else if ((n = calloc(1, sizeof *n)) == NULL) {
      fail_nomem(te);
      failed = true;
    } else {
      n->mark = mark;
      if (ev.type == YAML_SCALAR_EVENT) {
        n->type = CYNIC__YAML_SCALAR;
        n->plain = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        n->len = ev.data.scalar.length;
        n->str = malloc(n->len + 1);
        if (n->str == NULL) {
          fail_nomem(te);
          failed = true;
        } else {
          memcpy(n->str, ev.data.scalar.value, n->len);
          n->str[n->len] = '\0';
          n->has_nul = memchr(n->str, '\0', n->len) != NULL;
        }
      } else {
        n->type = ev.type == YAML_SEQUENCE_START_EVENT ? CYNIC__YAML_SEQ : CYNIC__YAML_MAP;
      }
      if (!failed) {
        if (depth == 0 && root == NULL) {
          root = n;
        } else if (depth == 0) {
          cynic__yaml_free(n); /* unreachable with one document; keep the tree sound */
          n = NULL;
        } else if (!add_kid(stack[depth - 1], n)) {
          cynic__yaml_free(n);
          n = NULL;
          fail_nomem(te);
          failed = true;
        }
        if (n != NULL && n->type != CYNIC__YAML_SCALAR) {
          if (depth == CYNIC__CONFIG_MAX_DEPTH) {
            fail(te, mark, "YAML nested more than %u levels deep",
                 (unsigned)CYNIC__CONFIG_MAX_DEPTH);
            failed = true;
          } else {
            stack[depth++] = n;
          }
        }
      } else {
        cynic__yaml_free(n);
      }
    }
    yaml_event_delete(&ev);
  }
  yaml_parser_delete(&parser);
  if (failed) {
    cynic__yaml_free(root);
    return err.rc != 0 ? err.rc : CYNIC_EINVAL;
  }
  *out = root;
  return 0;
}
