/* tests/unit/proxy/test_config_tls.c: src/proxy/config_tls.c, the `tls`
 * section of listeners and upstreams and their timeouts.tls_handshake.
 *
 * Through the real loader (cynic__config_parse): defaults, every key read to
 * its exact value, enabled: false, the handshake timeout's defaults and
 * range, every refusal with its file:line:column and fix, the server_name
 * rule over tables of good and bad names; then config_copy.c's copy and
 * comparison of the tls fields (each change is READ: tls.c builds a new
 * context at reload). */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "config_tls.h"
#include "cynic/common.h"

#define MS UINT64_C(1000000)
#define SEC UINT64_C(1000000000)

static cynic__config_errors_t errs;

/* A config with `listener` lines after the listener's (from line 5) and
 * `upstream` lines after the upstream's (from line 8 when `listener` is
 * empty). */
static const char *text_of(const char *listener, const char *upstream) {
  static char text[4096];
  int n = snprintf(text, sizeof text,
                   "listeners:\n"
                   "  - name: l\n"
                   "    listen: 127.0.0.1:8080\n"
                   "    upstream: u\n"
                   "%s"
                   "upstreams:\n"
                   "  - name: u\n"
                   "    endpoints: [127.0.0.1:9000]\n"
                   "%s",
                   listener, upstream);
  assert_true(n > 0 && (size_t)n < sizeof text);
  return text;
}

static cynic__config_t *parse_ok(const char *listener, const char *upstream) {
  const char *text = text_of(listener, upstream);
  cynic__config_t *cfg = NULL;
  int rc = cynic__config_parse("t.yaml", text, strlen(text), &cfg, &errs);
  if (rc != 0)
    cynic__config_errors_print(&errs, stderr);
  assert_int_equal(rc, 0);
  assert_non_null(cfg);
  return cfg;
}

/* Error 0 of a config that must be refused, formatted. */
static const char *parse_bad(const char *listener, const char *upstream) {
  static char line[1024];
  const char *text = text_of(listener, upstream);
  cynic__config_t *cfg = (cynic__config_t *)&errs; /* must come back NULL */
  int rc = cynic__config_parse("t.yaml", text, strlen(text), &cfg, &errs);
  assert_int_equal(rc, CYNIC_EINVAL);
  assert_null(cfg);
  assert_true(errs.count > 0);
  cynic__config_error_format(&errs, 0, line, sizeof line);
  return line;
}

/* line starts with want, or the test fails showing both. */
static void assert_starts(const char *line, const char *want) {
  if (strncmp(line, want, strlen(want)) != 0)
    fail_msg("got \"%s\", want it to start with \"%s\"", line, want);
}

static void assert_tls_off(const cynic__config_tls_t *t, uint64_t handshake_ns) {
  assert_false(t->enabled);
  assert_int_equal(t->min_version, CYNIC__TLS_1_2);
  assert_null(t->cert_file);
  assert_null(t->key_file);
  assert_null(t->ca_file);
  assert_null(t->server_name);
  assert_false(t->insecure_skip_verify);
  assert_int_equal(t->handshake_timeout_ns, handshake_ns);
  assert_int_equal(t->mark.line, 0);
  assert_int_equal(t->mark.column, 0);
}

/* Without a tls section: off on both sides, the handshake defaults filled in. */
static void test_defaults(void **state) {
  (void)state;
  cynic__config_t *cfg = parse_ok("", "");
  assert_tls_off(&cfg->listeners[0].tls, 5 * SEC);
  assert_tls_off(&cfg->upstreams[0].tls, 2 * SEC);
  cynic__config_free(cfg);
}

/* `tls: {}` on an upstream: TLS on, verified against the system store. */
static void test_upstream_section_turns_tls_on(void **state) {
  (void)state;
  cynic__config_t *cfg = parse_ok("", "    tls: {}\n");
  const cynic__config_tls_t *t = &cfg->upstreams[0].tls;
  assert_true(t->enabled);
  assert_false(t->insecure_skip_verify);
  assert_null(t->ca_file);     /* the system store */
  assert_null(t->server_name); /* the endpoint's host */
  assert_null(t->cert_file);
  assert_null(t->key_file);
  assert_int_equal(t->min_version, CYNIC__TLS_1_2);
  assert_int_equal(t->handshake_timeout_ns, 2 * SEC);
  assert_int_equal(t->mark.line, 8); /* the section's mapping */
  assert_int_equal(t->mark.column, 10);
  assert_false(cfg->listeners[0].tls.enabled); /* one side does not turn on the other */
  cynic__config_free(cfg);
}

static void test_upstream_every_key(void **state) {
  (void)state;
  cynic__config_t *cfg = parse_ok("", "    timeouts: { connect: 500ms, tls_handshake: 750ms }\n"
                                      "    tls:\n"
                                      "      enabled: true\n"
                                      "      server_name: api.vendor.example\n"
                                      "      ca_file: /etc/cynic/vendor-ca.pem\n"
                                      "      cert_file: /etc/cynic/client.pem\n"
                                      "      key_file: /etc/cynic/client.key\n"
                                      "      min_version: 1.3\n"
                                      "      insecure_skip_verify: false\n");
  const cynic__config_tls_t *t = &cfg->upstreams[0].tls;
  assert_true(t->enabled);
  assert_string_equal(t->server_name, "api.vendor.example");
  assert_string_equal(t->ca_file, "/etc/cynic/vendor-ca.pem");
  assert_string_equal(t->cert_file, "/etc/cynic/client.pem");
  assert_string_equal(t->key_file, "/etc/cynic/client.key");
  assert_int_equal(t->min_version, CYNIC__TLS_1_3);
  assert_false(t->insecure_skip_verify);
  assert_int_equal(t->handshake_timeout_ns, 750 * MS);
  assert_int_equal(cfg->upstreams[0].connect_timeout_ns, 500 * MS);
  assert_int_equal(t->mark.line, 10); /* block mapping: its first key */
  assert_int_equal(t->mark.column, 7);
  cynic__config_free(cfg);

  /* insecure_skip_verify alone (no ca_file), an IP address as server_name */
  cfg = parse_ok("", "    tls: { insecure_skip_verify: true, server_name: 192.0.2.10 }\n");
  t = &cfg->upstreams[0].tls;
  assert_true(t->enabled);
  assert_true(t->insecure_skip_verify);
  assert_string_equal(t->server_name, "192.0.2.10");
  cynic__config_free(cfg);
}

/* min_version as YAML may hand it over: a plain 1.2 (a float to YAML),
 * quoted '1.3' or "1.2". */
static void test_min_version_quoted_or_not(void **state) {
  (void)state;
  static const struct {
    const char *value;
    cynic__tls_version_t want;
  } cases[] = {
      {"1.2", CYNIC__TLS_1_2},   {"1.3", CYNIC__TLS_1_3},     {"'1.2'", CYNIC__TLS_1_2},
      {"'1.3'", CYNIC__TLS_1_3}, {"\"1.3\"", CYNIC__TLS_1_3}, {"\"1.2\"", CYNIC__TLS_1_2},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char up[128], li[256];
    snprintf(up, sizeof up, "    tls: { min_version: %s }\n", cases[i].value);
    snprintf(li, sizeof li, "    tls: { cert_file: s.pem, key_file: s.key, min_version: %s }\n",
             cases[i].value);
    cynic__config_t *cfg = parse_ok(li, up);
    if (cfg->upstreams[0].tls.min_version != cases[i].want ||
        cfg->listeners[0].tls.min_version != cases[i].want)
      fail_msg("min_version: %s read as %d / %d", cases[i].value,
               (int)cfg->upstreams[0].tls.min_version, (int)cfg->listeners[0].tls.min_version);
    cynic__config_free(cfg);
  }
}

static void test_listener_every_key(void **state) {
  (void)state;
  cynic__config_t *cfg = parse_ok("    timeouts: { header: 2s, tls_handshake: 3s }\n"
                                  "    tls:\n"
                                  "      enabled: true\n"
                                  "      cert_file: /etc/cynic/server.pem\n"
                                  "      key_file: /etc/cynic/server.key\n"
                                  "      client_ca_file: /etc/cynic/clients-ca.pem\n"
                                  "      min_version: '1.3'\n",
                                  "");
  const cynic__config_tls_t *t = &cfg->listeners[0].tls;
  assert_true(t->enabled);
  assert_string_equal(t->cert_file, "/etc/cynic/server.pem");
  assert_string_equal(t->key_file, "/etc/cynic/server.key");
  assert_string_equal(t->ca_file, "/etc/cynic/clients-ca.pem"); /* client certificates required */
  assert_int_equal(t->min_version, CYNIC__TLS_1_3);
  assert_null(t->server_name);
  assert_false(t->insecure_skip_verify);
  assert_int_equal(t->handshake_timeout_ns, 3 * SEC);
  assert_int_equal(cfg->listeners[0].header_timeout_ns, 2 * SEC);
  assert_int_equal(t->mark.line, 7);
  assert_int_equal(t->mark.column, 7);
  assert_tls_off(&cfg->upstreams[0].tls, 2 * SEC);
  cynic__config_free(cfg);

  /* without client_ca_file no client certificate is asked for */
  cfg = parse_ok("    tls: { cert_file: s.pem, key_file: s.key }\n", "");
  t = &cfg->listeners[0].tls;
  assert_true(t->enabled);
  assert_null(t->ca_file);
  assert_int_equal(t->min_version, CYNIC__TLS_1_2);
  assert_int_equal(t->handshake_timeout_ns, 5 * SEC);
  assert_int_equal(t->mark.line, 5);
  assert_int_equal(t->mark.column, 10);
  cynic__config_free(cfg);
}

/* enabled: false: read and checked, kept, but off. */
static void test_enabled_false(void **state) {
  (void)state;
  cynic__config_t *cfg =
      parse_ok("    tls: { enabled: false, cert_file: s.pem, key_file: s.key }\n",
               "    tls: { enabled: false, server_name: api.example.com, ca_file: ca.pem }\n");
  const cynic__config_tls_t *l = &cfg->listeners[0].tls, *u = &cfg->upstreams[0].tls;
  assert_false(l->enabled);
  assert_string_equal(l->cert_file, "s.pem");
  assert_string_equal(l->key_file, "s.key");
  assert_int_equal(l->mark.line, 5);
  assert_false(u->enabled);
  assert_string_equal(u->server_name, "api.example.com");
  assert_string_equal(u->ca_file, "ca.pem");
  assert_int_equal(u->mark.line, 9);
  cynic__config_free(cfg);
  /* still checked: the same mistakes are refused when it is off */
  const char *line = parse_bad("    tls: { enabled: false, cert_file: s.pem }\n", "");
  assert_string_equal(line, "t.yaml:5:39: cert_file: given without key_file; add key_file: "
                            "(the PEM private key of this certificate)");
  line = parse_bad("", "    tls: { enabled: false, server_name: 'a b' }\n");
  assert_starts(line, "t.yaml:8:41: server_name: 'a b' is neither");
  line = parse_bad("", "    tls: { enabled: no }\n");
  assert_string_equal(line, "t.yaml:8:21: enabled: 'no' is not a boolean; use true or false");
}

/* timeouts.tls_handshake: defaults whether tls is on or not, 1ms..60s. */
static void test_tls_handshake_range(void **state) {
  (void)state;
  cynic__config_t *cfg =
      parse_ok("    timeouts: { tls_handshake: 1ms }\n", "    timeouts: { tls_handshake: 60s }\n");
  assert_false(cfg->listeners[0].tls.enabled); /* read without tls too */
  assert_int_equal(cfg->listeners[0].tls.handshake_timeout_ns, MS);
  assert_int_equal(cfg->upstreams[0].tls.handshake_timeout_ns, 60 * SEC);
  cynic__config_free(cfg);
  cfg = parse_ok("    timeouts: { idle: 10s }\n", "    timeouts: { connect: 2s }\n");
  assert_int_equal(cfg->listeners[0].tls.handshake_timeout_ns, 5 * SEC);
  assert_int_equal(cfg->upstreams[0].tls.handshake_timeout_ns, 2 * SEC);
  cynic__config_free(cfg);
  static const struct {
    const char *listener, *upstream, *error;
  } cases[] = {
      {"    timeouts: { tls_handshake: 0 }\n", "",
       "t.yaml:5:32: tls_handshake: 0 is out of range; use 1ms..60s"},
      {"    timeouts: { tls_handshake: 61s }\n", "",
       "t.yaml:5:32: tls_handshake: 61s is out of range; use 1ms..60s"},
      {"", "    timeouts: { tls_handshake: 999us }\n",
       "t.yaml:8:32: tls_handshake: 999us is out of range; use 1ms..60s"},
      {"", "    timeouts: { tls_handshake: 2m }\n",
       "t.yaml:8:32: tls_handshake: 2m is out of range; use 1ms..60s"},
      {"", "    timeouts: { tls_handshake: 250 }\n",
       "t.yaml:8:32: tls_handshake: '250' has no unit"},
      {"", "    timeouts: { tls_handshake: [1s] }\n",
       "t.yaml:8:32: tls_handshake: expected a single value, got a list"},
      {"", "    timeouts: { tls_handshak: 1s }\n",
       "t.yaml:8:17: unknown key 'tls_handshak' in timeouts; did you mean 'tls_handshake'?"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *line = parse_bad(cases[i].listener, cases[i].upstream);
    if (strncmp(line, cases[i].error, strlen(cases[i].error)) != 0)
      fail_msg("case %zu: got \"%s\", want it to start with \"%s\"", i, line, cases[i].error);
  }
}

/* Every refusal, at its position, with its fix. */
static void test_refused(void **state) {
  (void)state;
  static const struct {
    const char *listener, *upstream, *error;
  } cases[] = {
      /* the pair */
      {"", "    tls: { cert_file: c.pem }\n",
       "t.yaml:8:23: cert_file: given without key_file; add key_file: (the PEM private key of "
       "this certificate) or remove cert_file (mutual TLS needs both)"},
      {"", "    tls: { key_file: c.key }\n",
       "t.yaml:8:22: key_file: given without cert_file; add cert_file: (the PEM certificate, "
       "chain included, this key belongs to) or remove key_file (mutual TLS needs both)"},
      {"    tls: { key_file: s.key }\n", "",
       "t.yaml:5:22: key_file: given without cert_file; add cert_file: (the PEM certificate, "
       "chain included, this key belongs to)"},
      /* a listener needs its certificate */
      {"    tls: {}\n", "",
       "t.yaml:5:10: tls: a listener needs cert_file and key_file (its certificate, chain "
       "included, and the private key); add both, e.g. { cert_file: /etc/cynic/server.pem, "
       "key_file: /etc/cynic/server.key }"},
      {"    tls: { client_ca_file: ca.pem }\n", "",
       "t.yaml:5:10: tls: a listener needs cert_file and key_file"},
      /* the contradiction */
      {"", "    tls: { ca_file: ca.pem, insecure_skip_verify: true }\n",
       "t.yaml:8:51: insecure_skip_verify: true contradicts ca_file (the CAs to verify against); "
       "drop one: ca_file to verify, or insecure_skip_verify for a test setup that verifies "
       "nothing"},
      {"", "    tls: { insecure_skip_verify: yes }\n",
       "t.yaml:8:34: insecure_skip_verify: 'yes' is not a boolean; use true or false"},
      /* empty and missing values */
      {"", "    tls: { ca_file: '' }\n",
       "t.yaml:8:21: ca_file: an empty path; give the path of a PEM file, or remove ca_file"},
      {"    tls: { cert_file: \"\", key_file: s.key }\n", "",
       "t.yaml:5:23: cert_file: an empty path; give the path of a PEM file, or remove cert_file"},
      {"    tls: { cert_file: s.pem, key_file: '' }\n", "",
       "t.yaml:5:40: key_file: an empty path; give the path of a PEM file, or remove key_file"},
      {"    tls: { cert_file: s.pem, key_file: s.key, client_ca_file: '' }\n", "",
       "t.yaml:5:63: client_ca_file: an empty path; give the path of a PEM file, or remove "
       "client_ca_file"},
      {"", "    tls: { cert_file: c.pem, key_file: }\n", "t.yaml:8:40: key_file: missing value"},
      {"", "    tls: { ca_file: [a.pem, b.pem] }\n",
       "t.yaml:8:21: ca_file: expected a single value, got a list"},
      {"", "    tls: { server_name: '' }\n",
       "t.yaml:8:25: server_name: empty; write the name to ask for and verify, e.g. "
       "api.example.com, or remove it to use each endpoint's host"},
      /* min_version */
      {"", "    tls: { min_version: 1.1 }\n",
       "t.yaml:8:25: min_version: '1.1' is not a TLS version cynic offers; write 1.2 or 1.3 "
       "(TLS 1.0 and 1.1 are deprecated, RFC 8996)"},
      {"", "    tls: { min_version: 1.20 }\n",
       "t.yaml:8:25: min_version: '1.20' is not a TLS version cynic offers; write 1.2 or 1.3"},
      {"    tls: { cert_file: s.pem, key_file: s.key, min_version: TLSv1.3 }\n", "",
       "t.yaml:5:60: min_version: 'TLSv1.3' is not a TLS version cynic offers; write 1.2 or 1.3"},
      {"", "    tls: { min_version: 1.3.0 }\n",
       "t.yaml:8:25: min_version: '1.3.0' is not a TLS version cynic offers"},
      /* the section itself */
      {"", "    tls:\n",
       "t.yaml:8:9: tls is empty; write its keys, e.g. tls: {} for TLS verified against the "
       "system store, or remove it"},
      {"    tls:\n", "",
       "t.yaml:5:9: tls is empty; write its keys, e.g. tls: { cert_file: /etc/cynic/server.pem, "
       "key_file: /etc/cynic/server.key }, or remove it"},
      {"", "    tls: true\n",
       "t.yaml:8:10: tls: 'true' is not a mapping of keys to values; write e.g. tls: {} for TLS "
       "verified against the system store"},
      {"", "    tls: [a]\n", "t.yaml:8:10: tls must be a mapping of keys to values, got a list"},
      {"", "    tls: { cert_fle: c.pem }\n",
       "t.yaml:8:12: unknown key 'cert_fle' in tls; did you mean 'cert_file'?"},
      {"", "    tls: { alpn: h2 }\n",
       "t.yaml:8:12: unknown key 'alpn' in tls; valid keys: enabled, server_name, ca_file, "
       "cert_file, key_file, min_version, insecure_skip_verify"},
      {"", "    tls: { ca_file: a.pem, ca_file: b.pem }\n",
       "t.yaml:8:28: duplicate key 'ca_file' (first at line 8); keep one"},
      /* keys of the other side, said where they belong */
      {"    tls: { cert_file: s.pem, key_file: s.key, ca_file: ca.pem }\n", "",
       "t.yaml:5:47: ca_file: on a listener the CAs that verify client certificates are "
       "client_ca_file; rename it"},
      {"    tls: { cert_file: s.pem, key_file: s.key, server_name: a.example }\n", "",
       "t.yaml:5:47: server_name: an upstream's key (the name cynic asks its servers for and "
       "verifies); a listener serves cert_file to every client, so remove it"},
      {"    tls: { cert_file: s.pem, key_file: s.key, insecure_skip_verify: true }\n", "",
       "t.yaml:5:47: insecure_skip_verify: an upstream's key; a listener verifies clients only "
       "when client_ca_file is given, so remove it"},
      {"", "    tls: { client_ca_file: ca.pem }\n",
       "t.yaml:8:12: client_ca_file: a listener's key; an upstream verifies its servers with "
       "ca_file, so rename it"},
      {"    tls: { cert_file: s.pem, key_file: s.key, server_nam: a }\n", "",
       "t.yaml:5:47: unknown key 'server_nam' in tls; valid keys: enabled, cert_file, key_file, "
       "client_ca_file, min_version"},
      /* tls is no key of the top level or of timeouts */
      {"", "    timeouts: { tls: 1s }\n",
       "t.yaml:8:17: unknown key 'tls' in timeouts; valid keys: connect, first_byte, idle, "
       "request, tls_handshake"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *line = parse_bad(cases[i].listener, cases[i].upstream);
    if (strncmp(line, cases[i].error, strlen(cases[i].error)) != 0)
      fail_msg("case %zu: got \"%s\", want it to start with \"%s\"", i, line, cases[i].error);
  }
  /* one mistake, one error: a bad cert_file value is still "given" */
  parse_bad("", "    tls: { cert_file: '', key_file: k.pem }\n");
  assert_int_equal(errs.count, 1);
  /* every problem of a section at once, in order */
  parse_bad("", "    tls: { cert_file: c.pem, min_version: 1.0, ca_file: a, "
                "insecure_skip_verify: true }\n");
  assert_int_equal(errs.count, 3);
  char line[512];
  cynic__config_error_format(&errs, 0, line, sizeof line);
  assert_starts(line, "t.yaml:8:23: cert_file: given without key_file");
  cynic__config_error_format(&errs, 1, line, sizeof line);
  assert_starts(line, "t.yaml:8:43: min_version: '1.0'");
  cynic__config_error_format(&errs, 2, line, sizeof line);
  assert_starts(line, "t.yaml:8:82: insecure_skip_verify: true contradicts");
}

/* server_name: a DNS name (LDH labels of 1..63, at most 253 bytes) or an IP
 * literal; the reason given for each kind of bad name. */
static void test_server_names(void **state) {
  (void)state;
  char label63[64], label64[65], name253[254], name254[255];
  memset(label63, 'a', 63), label63[63] = '\0';
  memset(label64, 'a', 64), label64[64] = '\0';
  /* 63 + '.' + 63 + '.' + 63 + '.' + 61 = 253 */
  snprintf(name253, sizeof name253, "%s.%s.%s.%.61s", label63, label63, label63, label63);
  assert_int_equal(strlen(name253), 253);
  snprintf(name254, sizeof name254, "%s.%s.%s.%.62s", label63, label63, label63, label63);
  assert_int_equal(strlen(name254), 254);
  const char *good[] = {"api.example.com",
                        "API.Example.COM",
                        "localhost",
                        "a",
                        "x-1.example",
                        "1a.example",
                        "example.123a",
                        "10.0.0.1",
                        "::1",
                        "2001:db8::17",
                        label63,
                        name253};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    if (!cynic__config_tls_server_name_valid(good[i], strlen(good[i])))
      fail_msg("'%s' refused", good[i]);
    char up[512];
    snprintf(up, sizeof up, "    tls: { server_name: '%s' }\n", good[i]);
    cynic__config_t *cfg = parse_ok("", up);
    assert_string_equal(cfg->upstreams[0].tls.server_name, good[i]);
    cynic__config_free(cfg);
  }
  static const struct {
    const char *name, *error;
  } bad[] = {
      {"[::1]", "'[::1]': write an IPv6 address without brackets, e.g. ::1"},
      {"*.example.com", "'*.example.com' is a wildcard; those belong in certificates"},
      {"api.example.com.", "'api.example.com.' ends with a dot; write the name without it"},
      {"api.example.com:443", "'api.example.com:443' has a port; write the host name alone"},
      {"10.0.0.1:443", "'10.0.0.1:443' has a port"},
      {"a_b.example", "'a_b.example' is neither a DNS name nor an IP address"},
      {"-a.example", "'-a.example' is neither"},
      {"a-.example", "'a-.example' is neither"},
      {"a..example", "'a..example' is neither"},
      {".example", "'.example' is neither"},
      {"1.2.3", "'1.2.3' is neither"},
      {"300.1.1.1", "'300.1.1.1' is neither"},
      {"a b", "'a b' is neither"},
      {"fe80::1%eth0", "'fe80::1%eth0' is neither"},
      {"caf\xc3\xa9.example", "'caf??.example' is neither"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_false(cynic__config_tls_server_name_valid(bad[i].name, strlen(bad[i].name)));
    char up[512], want[256];
    snprintf(up, sizeof up, "    tls: { server_name: '%s' }\n", bad[i].name);
    snprintf(want, sizeof want, "t.yaml:8:25: server_name: %s", bad[i].error);
    const char *line = parse_bad("", up);
    if (strncmp(line, want, strlen(want)) != 0)
      fail_msg("'%s': got \"%s\", want it to start with \"%s\"", bad[i].name, line, want);
  }
  /* a label too long; a name too long (the string bound) */
  char up[512];
  snprintf(up, sizeof up, "    tls: { server_name: %s.example }\n", label64);
  assert_string_equal(parse_bad("", up),
                      "t.yaml:8:25: server_name: 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...' "
                      "has a label of 64 bytes; a DNS label is 1..63");
  snprintf(up, sizeof up, "    tls: { server_name: %s }\n", name254);
  assert_string_equal(parse_bad("", up),
                      "t.yaml:8:25: server_name: must be 1..253 bytes long, got 254");
  assert_false(cynic__config_tls_server_name_valid(name254, 254));
  assert_false(cynic__config_tls_server_name_valid("", 0));
  assert_false(cynic__config_tls_server_name_valid("a\0b", 3)); /* a NUL inside */
}

/* config_copy.c: the tls strings are copied (none shared), freed, and every
 * field's change is seen as READ (tls.c builds a new context at reload);
 * the position is not compared. */
static void test_copy_and_diff(void **state) {
  (void)state;
  cynic__config_t *cfg = parse_ok("    tls: { cert_file: s.pem, key_file: s.key, "
                                  "client_ca_file: clients.pem, min_version: 1.3 }\n",
                                  "    tls: { server_name: api.example.com, ca_file: ca.pem, "
                                  "cert_file: c.pem, key_file: c.key }\n");
  cynic__config_listener_t *l = cynic__config_listener_copy(&cfg->listeners[0]);
  cynic__config_upstream_t *u = cynic__config_upstream_copy(&cfg->upstreams[0]);
  assert_non_null(l);
  assert_non_null(u);
  const cynic__config_tls_t *lt = &cfg->listeners[0].tls, *ut = &cfg->upstreams[0].tls;
  assert_ptr_not_equal(l->tls.cert_file, lt->cert_file);
  assert_string_equal(l->tls.cert_file, "s.pem");
  assert_ptr_not_equal(l->tls.key_file, lt->key_file);
  assert_string_equal(l->tls.key_file, "s.key");
  assert_ptr_not_equal(l->tls.ca_file, lt->ca_file);
  assert_string_equal(l->tls.ca_file, "clients.pem");
  assert_null(l->tls.server_name);
  assert_int_equal(l->tls.min_version, CYNIC__TLS_1_3);
  assert_ptr_not_equal(u->tls.server_name, ut->server_name);
  assert_string_equal(u->tls.server_name, "api.example.com");
  assert_ptr_not_equal(u->tls.ca_file, ut->ca_file);
  assert_ptr_not_equal(u->tls.cert_file, ut->cert_file);
  assert_ptr_not_equal(u->tls.key_file, ut->key_file);
  assert_string_equal(u->tls.key_file, "c.key");
  assert_int_equal(cynic__config_listener_diff(&cfg->listeners[0], l), 0);
  assert_int_equal(cynic__config_upstream_diff(&cfg->upstreams[0], u), 0);

  /* each change, one at a time, on the copies */
  u->tls.enabled = false;
  assert_int_equal(cynic__config_upstream_diff(&cfg->upstreams[0], u), CYNIC__CHANGE_READ);
  u->tls.enabled = true;
  free(u->tls.server_name);
  u->tls.server_name = NULL; /* back to the endpoint's host */
  assert_int_equal(cynic__config_upstream_diff(&cfg->upstreams[0], u), CYNIC__CHANGE_READ);
  u->tls.server_name = strdup("api.example.com");
  assert_non_null(u->tls.server_name);
  assert_int_equal(cynic__config_upstream_diff(&cfg->upstreams[0], u), 0);
  u->tls.insecure_skip_verify = true;
  assert_int_equal(cynic__config_upstream_diff(&cfg->upstreams[0], u), CYNIC__CHANGE_READ);
  u->tls.insecure_skip_verify = false;
  u->tls.handshake_timeout_ns = 3 * SEC;
  assert_int_equal(cynic__config_upstream_diff(&cfg->upstreams[0], u), CYNIC__CHANGE_READ);
  u->tls.handshake_timeout_ns = ut->handshake_timeout_ns;
  u->tls.mark.line++; /* where it is written is no setting */
  assert_int_equal(cynic__config_upstream_diff(&cfg->upstreams[0], u), 0);
  l->tls.min_version = CYNIC__TLS_1_2;
  assert_int_equal(cynic__config_listener_diff(&cfg->listeners[0], l), CYNIC__CHANGE_READ);
  l->tls.min_version = CYNIC__TLS_1_3;
  free(l->tls.ca_file);
  l->tls.ca_file = strdup("other.pem");
  assert_non_null(l->tls.ca_file);
  assert_int_equal(cynic__config_listener_diff(&cfg->listeners[0], l), CYNIC__CHANGE_READ);

  /* the part alone */
  cynic__config_tls_t *t = cynic__config_tls_copy(ut);
  assert_non_null(t);
  assert_ptr_not_equal(t->ca_file, ut->ca_file);
  assert_string_equal(t->ca_file, "ca.pem");
  assert_int_equal(cynic__config_tls_diff(t, ut), 0);
  free(t->cert_file);
  t->cert_file = strdup("c2.pem");
  assert_non_null(t->cert_file);
  assert_int_not_equal(cynic__config_tls_diff(t, ut), 0);
  cynic__config_tls_free(t);
  cynic__config_tls_free(NULL);

  /* the copies outlive the config they came from (leaks: ASan) */
  cynic__config_free(cfg);
  assert_string_equal(l->tls.cert_file, "s.pem");
  assert_string_equal(u->tls.server_name, "api.example.com");
  cynic__config_listener_free(l);
  cynic__config_upstream_free(u);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_upstream_section_turns_tls_on),
      cmocka_unit_test(test_upstream_every_key),
      cmocka_unit_test(test_min_version_quoted_or_not),
      cmocka_unit_test(test_listener_every_key),
      cmocka_unit_test(test_enabled_false),
      cmocka_unit_test(test_tls_handshake_range),
      cmocka_unit_test(test_refused),
      cmocka_unit_test(test_server_names),
      cmocka_unit_test(test_copy_and_diff),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
