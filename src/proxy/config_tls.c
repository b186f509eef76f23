/*
 * src/proxy/config_tls.c: the `tls` section of a listener (cynic terminates
 * TLS from its clients) and of an upstream (cynic originates TLS to every
 * endpoint), and `timeouts.tls_handshake` under both.
 *
 * Only the config's side: keys read, values bounded, contradictions refused,
 * each error at its file:line:column with a fix, like the rest of the schema.
 * No file is opened here: tls.c reads the certificates, keys and CAs when it
 * builds a context, at start and at every reload, so a reload picks up new
 * file contents under unchanged paths (and refuses a bad one whole).
 *
 * Verification cannot be switched off by accident: it is on whenever the
 * section is, against the system store unless ca_file says otherwise, and
 * only an explicit insecure_skip_verify: true turns it off (tls.c logs that
 * loudly at every load); giving both that and ca_file is refused as the
 * contradiction it is.
 */
#define _POSIX_C_SOURCE 200809L
#include "config_tls.h"

#include <stdlib.h>
#include <string.h>

#include "config_value.h"

typedef cynic__yaml_node_t node_t;

static const char *const listener_tls_keys[] = {"enabled",        "cert_file",   "key_file",
                                                "client_ca_file", "min_version", NULL};
static const char *const upstream_tls_keys[] = {
    "enabled",     "server_name",          "ca_file", "cert_file", "key_file",
    "min_version", "insecure_skip_verify", NULL};

/* The keys one side has and the other not: written on the wrong side they
 * get a message saying where they belong instead of "unknown key". */
static const char *const upstream_only_keys[] = {"server_name", "ca_file", "insecure_skip_verify",
                                                 NULL};
static const char *const listener_only_keys[] = {"client_ca_file", NULL};

static bool listed(const char *key, const char *const *list) {
  for (size_t i = 0; list[i] != NULL; i++)
    if (strcmp(key, list[i]) == 0)
      return true;
  return false;
}

/* The schema reader's hook for keys it takes as known without listing or
 * suggesting them (config_schema.h, `deprecated`), set for the length of one
 * check_map: the other side's keys pass it, and tls_section() says where
 * they belong. */
static bool upstream_key_on_listener(const char *what, const char *key) {
  return strcmp(what, "tls") == 0 && listed(key, upstream_only_keys);
}

static bool listener_key_on_upstream(const char *what, const char *key) {
  return strcmp(what, "tls") == 0 && listed(key, listener_only_keys);
}

static void misplaced(cynic__schema_t *rd, const node_t *sec, bool listener) {
  static const struct {
    const char *key;
    bool on_listener;
    const char *message;
  } wrong_side[] = {
      {"server_name", true,
       "server_name: an upstream's key (the name cynic asks its servers for and verifies); "
       "a listener serves cert_file to every client, so remove it"},
      {"ca_file", true,
       "ca_file: on a listener the CAs that verify client certificates are client_ca_file; "
       "rename it"},
      {"insecure_skip_verify", true,
       "insecure_skip_verify: an upstream's key; a listener verifies clients only when "
       "client_ca_file is given, so remove it"},
      {"client_ca_file", false,
       "client_ca_file: a listener's key; an upstream verifies its servers with ca_file, "
       "so rename it"},
  };
  for (size_t i = 0; i < sizeof wrong_side / sizeof wrong_side[0]; i++) {
    const node_t *k;
    if (wrong_side[i].on_listener == listener &&
        (k = cynic__schema_get_key(sec, wrong_side[i].key)) != NULL)
      cynic__schema_error_at(rd, k, "%s", wrong_side[i].message);
  }
}

/* The tls mapping of m, checked against its keys, or NULL when there is
 * none (or it is no mapping, after saying what to write instead). */
static const node_t *tls_section(cynic__schema_t *rd, const node_t *m, bool listener) {
  const node_t *v = cynic__schema_get(m, "tls");
  if (v == NULL)
    return NULL;
  const char *example = listener ? "tls: { cert_file: /etc/cynic/server.pem, key_file: "
                                   "/etc/cynic/server.key }"
                                 : "tls: {} for TLS verified against the system store";
  if (v->type == CYNIC__YAML_SCALAR && v->plain && v->len == 0) {
    cynic__schema_error_at(rd, v, "tls is empty; write its keys, e.g. %s, or remove it", example);
    return NULL;
  }
  if (v->type == CYNIC__YAML_SCALAR) {
    char sv[64];
    cynic__schema_error_at(rd, v, "tls: '%s' is not a mapping of keys to values; write e.g. %s",
                           cynic__config_show(sv, v->str, v->len), example);
    return NULL;
  }
  bool (*saved)(const char *, const char *) = rd->deprecated;
  rd->deprecated = listener ? upstream_key_on_listener : listener_key_on_upstream;
  bool ok = cynic__schema_check_map(rd, v, "tls", listener ? listener_tls_keys : upstream_tls_keys);
  rd->deprecated = saved;
  if (!ok)
    return NULL;
  misplaced(rd, v, listener);
  return v;
}

/* A path of 1..CYNIC__CONFIG_MAX_PATH bytes into *out; "" says so. */
static const node_t *get_path(cynic__schema_t *rd, const node_t *sec, const char *key, char **out) {
  const node_t *v = cynic__schema_get(sec, key);
  if (v == NULL)
    return NULL;
  if (v->type == CYNIC__YAML_SCALAR && !v->plain && v->len == 0) {
    cynic__schema_error_at(rd, v, "%s: an empty path; give the path of a PEM file, or remove %s",
                           key, key);
    return v;
  }
  cynic__schema_get_string(rd, sec, key, CYNIC__CONFIG_MAX_PATH, out);
  return v;
}

static void get_min_version(cynic__schema_t *rd, const node_t *sec, cynic__config_tls_t *t) {
  const node_t *v = cynic__schema_get(sec, "min_version");
  if (v == NULL)
    return;
  const char *s = cynic__schema_scalar(rd, v, "min_version");
  if (s == NULL)
    return;
  /* The scalar's text, quoted or not: YAML would read a plain 1.2 as a
   * float, and 1.20 as the same one, but "1.20" is no version name. */
  if (strcmp(s, "1.2") == 0) {
    t->min_version = CYNIC__TLS_1_2;
  } else if (strcmp(s, "1.3") == 0) {
    t->min_version = CYNIC__TLS_1_3;
  } else {
    char sv[64];
    cynic__schema_error_at(rd, v,
                           "min_version: '%s' is not a TLS version cynic offers; write 1.2 or 1.3 "
                           "(TLS 1.0 and 1.1 are deprecated, RFC 8996)",
                           cynic__config_show(sv, s, v->len));
  }
}

/* ---- server_name ----------------------------------------------------------- */

bool cynic__config_tls_server_name_valid(const char *s, size_t len) {
  if (len == 0 || len > CYNIC__TLS_MAX_NAME || strlen(s) != len)
    return false;
  return cynic__config_dns_name(s, len, false) || cynic__config_ip_literal(s);
}

/* Why s is no server_name, in the words that fix it. */
static void bad_server_name(cynic__schema_t *rd, const node_t *v, const char *s) {
  char sv[64];
  const char *show = cynic__config_show(sv, s, strlen(s));
  size_t len = strlen(s);
  size_t longest_len = 0; /* the longest label */
  for (const char *p = s; *p;) {
    size_t n = strcspn(p, ".");
    if (n > longest_len)
      longest_len = n;
    p += n + (p[n] == '.');
  }
  if (s[0] == '[')
    cynic__schema_error_at(
        rd, v, "server_name: '%s': write an IPv6 address without brackets, e.g. ::1", show);
  else if (strchr(s, '*') != NULL)
    cynic__schema_error_at(rd, v,
                           "server_name: '%s' is a wildcard; those belong in certificates. Write "
                           "the host name asked for, e.g. api.example.com",
                           show);
  else if (len > 1 && s[len - 1] == '.' && cynic__config_dns_name(s, len - 1, false))
    cynic__schema_error_at(rd, v,
                           "server_name: '%s' ends with a dot; write the name without it (SNI "
                           "carries none)",
                           show);
  else if (strchr(s, ':') != NULL && strchr(s, ':') == strrchr(s, ':'))
    cynic__schema_error_at(rd, v,
                           "server_name: '%s' has a port; write the host name alone (the port "
                           "is the endpoint's)",
                           show);
  else if (longest_len > 63)
    cynic__schema_error_at(rd, v,
                           "server_name: '%s' has a label of %zu bytes; a DNS label is 1..63", show,
                           longest_len);
  else
    cynic__schema_error_at(rd, v,
                           "server_name: '%s' is neither a DNS name nor an IP address; write "
                           "labels of letters, digits and '-' joined by '.', e.g. "
                           "api.example.com, or an address such as 192.0.2.10",
                           show);
}

static void get_server_name(cynic__schema_t *rd, const node_t *sec, cynic__config_tls_t *t) {
  const node_t *v = cynic__schema_get(sec, "server_name");
  if (v == NULL)
    return;
  if (v->type == CYNIC__YAML_SCALAR && !v->plain && v->len == 0) {
    cynic__schema_error_at(rd, v,
                           "server_name: empty; write the name to ask for and verify, e.g. "
                           "api.example.com, or remove it to use each endpoint's host");
    return;
  }
  if (cynic__schema_get_string(rd, sec, "server_name", CYNIC__TLS_MAX_NAME, &t->server_name) ==
          NULL ||
      t->server_name == NULL)
    return;
  if (!cynic__config_tls_server_name_valid(t->server_name, strlen(t->server_name))) {
    bad_server_name(rd, v, t->server_name);
    free(t->server_name);
    t->server_name = NULL;
  }
}

/* ---- the two sides ----------------------------------------------------------- */

/* cert_file and key_file come as a pair (a listener must have both).
 * Positions are the values'; a key present with a bad value still counts as
 * given, so one mistake is reported once. */
static void check_pair(cynic__schema_t *rd, const node_t *sec, bool listener) {
  const node_t *cert = cynic__schema_get(sec, "cert_file");
  const node_t *key = cynic__schema_get(sec, "key_file");
  if (cert != NULL && key == NULL)
    cynic__schema_error_at(rd, cert,
                           "cert_file: given without key_file; add key_file: (the PEM private key "
                           "of this certificate)%s",
                           listener ? "" : " or remove cert_file (mutual TLS needs both)");
  else if (key != NULL && cert == NULL)
    cynic__schema_error_at(rd, key,
                           "key_file: given without cert_file; add cert_file: (the PEM "
                           "certificate, chain included, this key belongs to)%s",
                           listener ? "" : " or remove key_file (mutual TLS needs both)");
  else if (listener && cert == NULL)
    cynic__schema_error_at(rd, sec,
                           "tls: a listener needs cert_file and key_file (its certificate, chain "
                           "included, and the private key); add both, e.g. { cert_file: "
                           "/etc/cynic/server.pem, key_file: /etc/cynic/server.key }");
}

/* The defaults, then timeouts.tls_handshake of m: read whether tls is on or
 * not, so the struct is whole and the value checked either way (the
 * timeouts mapping's keys are checked by config.c). */
static void tls_defaults(cynic__schema_t *rd, const node_t *m, uint64_t handshake_ns,
                         cynic__config_tls_t *t) {
  t->enabled = false;
  t->min_version = CYNIC__TLS_1_2;
  t->insecure_skip_verify = false;
  t->handshake_timeout_ns = handshake_ns;
  t->mark.line = t->mark.column = 0;
  const node_t *to = cynic__schema_get(m, "timeouts");
  if (to != NULL && to->type == CYNIC__YAML_MAP)
    cynic__schema_get_duration(rd, to, "tls_handshake", CYNIC__TLS_HANDSHAKE_MIN_NS,
                               CYNIC__TLS_HANDSHAKE_MAX_NS, "1ms..60s", &t->handshake_timeout_ns);
}

void cynic__config_load_listener_tls(cynic__schema_t *rd, const node_t *m, cynic__config_tls_t *t) {
  tls_defaults(rd, m, CYNIC__TLS_HANDSHAKE_LISTENER_DEFAULT_NS, t);
  const node_t *sec = m != NULL ? tls_section(rd, m, true) : NULL;
  if (sec == NULL)
    return;
  t->mark = sec->mark;
  t->enabled = true; /* the section turns it on; enabled: false keeps it written but off */
  cynic__schema_get_bool(rd, sec, "enabled", &t->enabled);
  get_path(rd, sec, "cert_file", &t->cert_file);
  get_path(rd, sec, "key_file", &t->key_file);
  get_path(rd, sec, "client_ca_file", &t->ca_file); /* client certificates then required */
  get_min_version(rd, sec, t);
  check_pair(rd, sec, true);
}

void cynic__config_load_upstream_tls(cynic__schema_t *rd, const node_t *m, cynic__config_tls_t *t) {
  tls_defaults(rd, m, CYNIC__TLS_HANDSHAKE_UPSTREAM_DEFAULT_NS, t);
  const node_t *sec = m != NULL ? tls_section(rd, m, false) : NULL;
  if (sec == NULL)
    return;
  t->mark = sec->mark;
  t->enabled = true;
  cynic__schema_get_bool(rd, sec, "enabled", &t->enabled);
  get_server_name(rd, sec, t);
  const node_t *ca = get_path(rd, sec, "ca_file", &t->ca_file);
  get_path(rd, sec, "cert_file", &t->cert_file);
  get_path(rd, sec, "key_file", &t->key_file);
  get_min_version(rd, sec, t);
  const node_t *skip =
      cynic__schema_get_bool(rd, sec, "insecure_skip_verify", &t->insecure_skip_verify);
  check_pair(rd, sec, false);
  if (t->insecure_skip_verify && ca != NULL)
    cynic__schema_error_at(rd, skip,
                           "insecure_skip_verify: true contradicts ca_file (the CAs to verify "
                           "against); drop one: ca_file to verify, or insecure_skip_verify for a "
                           "test setup that verifies nothing");
}
