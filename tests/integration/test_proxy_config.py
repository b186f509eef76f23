"""Black-box tests of `cynic --check -c FILE`: the quickstart example is good,
every broken file in BROKEN is refused with exit 2 and exactly the expected
messages (file:line:column: text), and oversized or hostile files are refused
quickly without eating memory."""

import os
import subprocess
import textwrap
import time

import pytest

BUILD = os.environ.get("CYNIC_BUILD_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
SOURCE = os.environ.get("CYNIC_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
CYNIC = os.path.join(BUILD, "cynic")


def run(*args, timeout=30):
    return subprocess.run([CYNIC, *args], capture_output=True, text=True, timeout=timeout)


def check(path, timeout=30):
    return run("--check", "-c", str(path), timeout=timeout)


# A good config the broken ones below are variations of. Line numbers in the
# expectations count from the first line of each case's text.
GOOD = """\
listeners:
  - name: app
    listen: 127.0.0.1:8080
    upstream: backend
upstreams:
  - name: backend
    endpoints: [127.0.0.1:9000]
"""


def with_upstream(extra):
    """GOOD plus lines appended to the upstream's mapping (starting line 8)."""
    return GOOD + textwrap.indent(textwrap.dedent(extra), "    ")


# (id, config text, expected stderr lines with {f} for the file name)
BROKEN = [
    ("empty", "", ["{f}: the config is empty; it needs at least 'listeners' and 'upstreams' (see examples/quickstart.yaml)"]),
    ("yaml-syntax", "listeners: [\n", ["{f}:2:1: YAML syntax error: did not find expected node content while parsing a flow node"]),
    ("bare-dash-log-file", "log:\n  file: -\n" + GOOD,
     ["{f}:2:9: YAML syntax error: block sequence entries are not allowed in this context; a lone '-' starts a list here: to mean stderr, quote it: file: \"-\""]),
    ("tab-indent", "listeners:\n\t- name: app\n",
     ["{f}:2:1: YAML syntax error: found character that cannot start any token while scanning for the next token; tabs cannot indent YAML, use spaces"]),
    ("unknown-key-typo", GOOD + "admin:\n  drain_timout: 5s\n",
     ["{f}:9:3: unknown key 'drain_timout' in admin; did you mean 'drain_timeout'?"]),
    ("unknown-key-no-guess", GOOD + "metrics: {}\n",
     ["{f}:8:1: unknown key 'metrics' in the config; valid keys: admin, log, limits, listeners, upstreams"]),
    ("duplicate-key", GOOD.replace("    upstream: backend\n", "    upstream: backend\n    upstream: backend\n"),
     ["{f}:5:5: duplicate key 'upstream' (first at line 4); keep one"]),
    ("missing-listeners", "upstreams:\n  - name: backend\n    endpoints: [127.0.0.1:9000]\n",
     ["{f}:1:1: missing 'listeners'; add at least one, e.g. listeners: [{{name: app, listen: 127.0.0.1:8080, upstream: app}}]"]),
    ("missing-upstream-key", GOOD.replace("    upstream: backend\n", ""),
     ["{f}:2:5: listener is missing 'upstream'; add upstream: <name of an upstream>"]),
    ("unknown-upstream", GOOD.replace("upstream: backend", "upstream: backnd"),
     ["{f}:4:15: upstream: no upstream is named 'backnd'; did you mean 'backend'?"]),
    ("bare-port", GOOD.replace("127.0.0.1:8080", "':8080'"),
     ["{f}:3:13: listen: ':8080' has no address; write an explicit one, e.g. 127.0.0.1:8080 (0.0.0.0:8080 for every IPv4 interface)"]),
    ("port-only", GOOD.replace("127.0.0.1:8080", "8080"),
     ["{f}:3:13: listen: '8080' has no address; write an explicit one, e.g. 127.0.0.1:8080 (0.0.0.0:8080 for every IPv4 interface)"]),
    ("no-port", GOOD.replace("127.0.0.1:8080", "127.0.0.1"),
     ["{f}:3:13: listen: '127.0.0.1' has no port; write address:port, e.g. 127.0.0.1:8080 or [::1]:8080"]),
    ("listen-hostname", GOOD.replace("127.0.0.1:8080", "localhost:8080"),
     ["{f}:3:13: listen: 'localhost:8080' is a host name; bind an explicit IP address, e.g. 127.0.0.1:8080 or [::1]:8080"]),
    ("ipv6-no-brackets", GOOD.replace("127.0.0.1:8080", "'::1:8080'"),
     ["{f}:3:13: listen: '::1:8080': an IPv6 address needs brackets, e.g. [::1]:8080"]),
    ("port-too-big", GOOD.replace("127.0.0.1:8080", "127.0.0.1:65536"),
     ["{f}:3:13: listen: port in '127.0.0.1:65536' is out of range; use 0..65535"]),
    ("duration-bare-number", with_upstream("timeouts: { connect: 250 }\n"),
     ["{f}:8:26: connect: '250' has no unit; add a unit, e.g. 250ms"]),
    ("duration-fraction", with_upstream("timeouts: { idle: 1.5m }\n"),
     ["{f}:8:23: idle: '1.5m': fractions are not supported; use a smaller unit (us, ms, s, m or h), e.g. 250ms"]),
    ("duration-overflow", with_upstream("timeouts: { connect: 99999999999999999999s }\n"),
     ["{f}:8:26: connect: '99999999999999999999s' is too large"]),
    ("duration-unit", with_upstream("resolve_interval: 30sec\n"),
     ["{f}:8:23: resolve_interval: '30sec': unknown unit 'sec'; use us, ms, s, m or h"]),
    ("size-bounds", GOOD.replace("    upstream: backend\n", "    upstream: backend\n    buffer: 1KB\n"),
     ["{f}:5:13: buffer: 1KB is out of range; use 4KB..16MB"]),
    ("size-unit", GOOD.replace("    upstream: backend\n", "    upstream: backend\n    buffer: 64kb\n"),
     ["{f}:5:13: buffer: '64kb': unknown unit 'kb'; use B, KB, MB or GB (KB = 1024 bytes)"]),
    ("negative-count", GOOD.replace("    upstream: backend\n", "    upstream: backend\n    max_connections: -1\n"),
     ["{f}:5:22: max_connections: '-1' is negative; use 1..1000000"]),
    ("wrong-type-list", GOOD.replace("    upstream: backend\n", "    upstream: [backend]\n"),
     ["{f}:4:15: upstream: expected a single value, got a list"]),
    ("wrong-type-endpoints", GOOD.replace("[127.0.0.1:9000]", "127.0.0.1:9000"),
     ["{f}:7:16: endpoints: expected a list, got a single value; write e.g. [127.0.0.1:9000]"]),
    ("bool-yes", with_upstream("required: yes\n"),
     ["{f}:8:15: required: 'yes' is not a boolean; use true or false"]),
    ("enum-typo", with_upstream("balance: round-robin\n"),
     ["{f}:8:14: balance: unknown value 'round-robin'; did you mean 'round_robin'?"]),
    ("percent-missing-sign", with_upstream("breaker: { window: { type: count, failure_rate: 50 } }\n"),
     ["{f}:8:53: failure_rate: '50' is not a percentage; add '%', e.g. 20%"]),
    ("open-max-below-open-for", with_upstream("breaker: { open_for: 30s, open_max: 10s }\n"),
     ["{f}:8:41: open_max: shorter than open_for; open_max caps the open period, so make it at least open_for"]),
    ("half-open-probes-zero", with_upstream("breaker: { half_open_probes: 0 }\n"),
     ["{f}:8:34: half_open_probes: 0 would leave the breaker open forever; use 1..1000"]),
    ("queue-timeout-zero", with_upstream("bulkhead: { max_pending: 5, queue_timeout: 0s }\n"),
     ["{f}:8:48: queue_timeout: 0 with max_pending 5 means queued clients wait forever or not at all; set queue_timeout (e.g. 100ms) or max_pending: 0"]),
    ("keepalive-fraction", with_upstream("keepalive: { idle: 1500ms }\n"),
     ["{f}:8:24: idle: TCP_KEEPIDLE counts whole seconds; write e.g. 60s"]),
    ("duplicate-listener-name-and-address", GOOD.replace("upstreams:", "  - name: app\n    listen: 0.0.0.0:8080\n    upstream: backend\nupstreams:"),
     ["{f}:5:5: listener name 'app' is already used (line 2); names must be unique",
      "{f}:6:13: listen: 0.0.0.0:8080 overlaps listener 'app' (127.0.0.1:8080, line 3); give each listener its own port"]),
    ("duplicate-upstream-name", GOOD + "  - name: backend\n    endpoints: [127.0.0.1:9001]\n",
     ["{f}:8:5: upstream name 'backend' is already used (line 6); names must be unique"]),
    ("listener-on-admin-port", GOOD.replace("127.0.0.1:8080", "127.0.0.1:9901"),
     ["{f}:3:13: listen: 127.0.0.1:9901 overlaps the admin listener (127.0.0.1:9901); give traffic and operations separate ports"]),
    ("admin-remote-without-token", GOOD + "admin:\n  listen: 0.0.0.0:9901\n",
     ["{f}:9:11: listen: admin on 0.0.0.0:9901 is reachable from other hosts and has no token_file; add token_file: /path/to/token, or allow_remote: true if this network is trusted"]),
    ("admin-token-unreadable", GOOD + "admin:\n  token_file: /nonexistent/token\n",
     ["{f}:9:15: token_file: '/nonexistent/token' cannot be read: No such file or directory; create it (the token on one line) or fix the path"]),
    ("summary-interval-too-short", GOOD + "log:\n  summary_interval: 10ms\n",
     ["{f}:9:21: summary_interval: 10ms is out of range; use 100ms..1h"]),
    ("rotate-stderr", GOOD + "log:\n  rotate: { keep: 3 }\n",
     ["{f}:9:11: rotate: the log goes to stderr, which cannot be rotated; set file: to a path or remove rotate"]),
    ("log-format-text", GOOD + "log:\n  format: text\n",
     ["{f}:9:11: format: 'text' is not supported yet; use json"]),
    ("bad-name", GOOD.replace("name: app", "name: 'my app'"),
     ["{f}:2:11: name: 'my app' is not a valid name; use 1..64 of A-Z a-z 0-9 _ . -"]),
    ("rate-limit-unit", GOOD.replace("    upstream: backend\n", "    upstream: backend\n    rate_limit: { per_client: 100/x }\n"),
     ["{f}:5:31: per_client: '100/x' is not a rate; write requests per unit, e.g. 100/s, 600/m or 1000/h"]),
    ("alias", GOOD + "admin: &a { drain_timeout: 5s }\nlog: *a\n",
     ["{f}:8:8: YAML anchors (&a) are not supported; write values out in full"]),
    ("two-documents", GOOD + "---\n" + GOOD,
     ["{f}:8:1: a config is one YAML document; remove the second '---' and what follows, or merge it into the first"]),
    ("not-utf8", GOOD.replace("name: app", "name: app\xff").encode("latin-1"),
     ["{f}:2:14: YAML syntax error: invalid leading UTF-8 octet; a config must be UTF-8 text"]),
    ("utf16-bom", GOOD.encode("utf-16"),
     ["{f}:1:1: the file is UTF-16 (it starts with a UTF-16 byte order mark); a config must be UTF-8: convert it with iconv -f UTF-16 -t UTF-8"]),
    ("utf32-bom", GOOD.encode("utf-32"),
     ["{f}:1:1: the file is UTF-32 (it starts with a UTF-32 byte order mark); a config must be UTF-8: convert it with iconv -f UTF-32 -t UTF-8"]),
    ("utf16-no-bom", GOOD.encode("utf-16-be"),
     ["{f}:1:1: a NUL byte; a config must be UTF-8 text without NUL bytes (UTF-16 or UTF-32 has them: convert it with iconv -t UTF-8)"]),
    ("nul-byte", GOOD.replace("name: app", "name: a\0pp").encode(),
     ["{f}:2:12: a NUL byte; a config must be UTF-8 text without NUL bytes (UTF-16 or UTF-32 has them: convert it with iconv -t UTF-8)"]),
    ("number-hex", with_upstream("breaker: { open_multiplier: 0x10 }\n"),
     ["{f}:8:33: open_multiplier: '0x10' is hexadecimal; write it in decimal, in 1..100; e.g. 2 doubles the open period after each failed probe"]),
    ("number-exponent", with_upstream("breaker: { open_multiplier: 1e2 }\n"),
     ["{f}:8:33: open_multiplier: '1e2' has an exponent; write all the digits, in 1..100; e.g. 2 doubles the open period after each failed probe"]),
    ("number-sign", with_upstream("breaker: { open_multiplier: +3 }\n"),
     ["{f}:8:33: open_multiplier: '+3' has a sign; write the digits alone, in 1..100; e.g. 2 doubles the open period after each failed probe"]),
    ("number-inf", with_upstream("breaker: { open_multiplier: inf }\n"),
     ["{f}:8:33: open_multiplier: 'inf' is not a number; use 1..100; e.g. 2 doubles the open period after each failed probe"]),
    ("count-hex", with_upstream("breaker: { faults: 0x10 }\n"),
     ["{f}:8:24: faults: '0x10' is hexadecimal; write it in decimal, in 1..1000000"]),
    ("count-exponent", with_upstream("breaker: { faults: 1e2 }\n"),
     ["{f}:8:24: faults: '1e2' has an exponent; write all the digits, in 1..1000000"]),
    ("count-sign", with_upstream("breaker: { faults: +3 }\n"),
     ["{f}:8:24: faults: '+3' has a sign; write the digits alone, in 1..1000000"]),
    ("several-errors", with_upstream("timeouts: { connect: 1 }\nbulkhead: { max_connections: 0 }\nretry: { backoff: 1s..50ms }\n"),
     ["{f}:8:26: connect: '1' has no unit; add a unit, e.g. 250ms",
      "{f}:9:34: max_connections: 0 is out of range; use 1..1000000",
      "{f}:10:23: backoff: '1s..50ms' needs 0 < min <= max <= 1h, e.g. 50ms..1s"]),
    ("tls-skip-verify-with-ca", with_upstream("tls: { ca_file: ca.pem, insecure_skip_verify: true }\n"),
     ["{f}:8:51: insecure_skip_verify: true contradicts ca_file (the CAs to verify against); drop one: ca_file to verify, or insecure_skip_verify for a test setup that verifies nothing"]),
    ("tls-min-version", with_upstream("tls: { min_version: 1.1 }\n"),
     ["{f}:8:25: min_version: '1.1' is not a TLS version cynic offers; write 1.2 or 1.3 (TLS 1.0 and 1.1 are deprecated, RFC 8996)"]),
    ("tls-listener-without-cert", GOOD.replace("    upstream: backend\n", "    upstream: backend\n    tls: { client_ca_file: ca.pem }\n"),
     ["{f}:5:10: tls: a listener needs cert_file and key_file (its certificate, chain included, and the private key); add both, e.g. {{ cert_file: /etc/cynic/server.pem, key_file: /etc/cynic/server.key }}"]),
    ("tls-handshake-range", with_upstream("timeouts: { tls_handshake: 0 }\n"),
     ["{f}:8:32: tls_handshake: 0 is out of range; use 1ms..60s"]),
]


def test_table_is_big_enough():
    assert len(BROKEN) >= 20
    assert len({c[0] for c in BROKEN}) == len(BROKEN)


def test_quickstart_is_ok():
    path = os.path.join(SOURCE, "examples", "quickstart.yaml")
    r = check(path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{path}: ok\n1 listener, 1 upstream, 1 endpoint; admin on 127.0.0.1:9901\n"
    assert r.stderr == ""


def test_good_base_is_ok(tmp_path):
    f = tmp_path / "good.yaml"
    f.write_text(GOOD)
    r = check(f)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("name,text,expected", BROKEN, ids=[c[0] for c in BROKEN])
def test_broken_config(tmp_path, name, text, expected):
    f = tmp_path / f"{name}.yaml"
    if isinstance(text, bytes):
        f.write_bytes(text)
    else:
        f.write_text(text)
    r = check(f)
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.splitlines() == [e.format(f=f) for e in expected]


def test_http_mode_retry_and_fallback_pass_without_notes(tmp_path):
    f = tmp_path / "http.yaml"
    f.write_text(GOOD.replace("    upstream: backend\n", "    upstream: backend\n    mode: http\n"))
    r = check(f)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{f}: ok\n1 listener, 1 upstream, 1 endpoint; admin on 127.0.0.1:9901\n"
    assert r.stderr == ""  # http mode is served: nothing to note
    # retry and a static fallback are applied: nothing to note
    text = f.read_text()
    at = text.index("  - name: backend\n") + len("  - name: backend\n")
    f.write_text(text[:at] + "    retry: { attempts: 1 }\n" + text[at:])
    r = check(f)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    f.write_text(text[:at] + "    fallback: { status: 503 }\n" + text[at:])
    r = check(f)
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_missing_file(tmp_path):
    f = tmp_path / "nope.yaml"
    r = check(f)
    assert r.returncode == 2
    assert r.stderr == f"{f}: cannot open: No such file or directory\n"


def test_errors_are_capped(tmp_path):
    f = tmp_path / "many.yaml"
    f.write_text(GOOD + "".join(f"    bogus{i}: 1\n" for i in range(40)))
    r = check(f)
    assert r.returncode == 2
    lines = r.stderr.splitlines()
    assert len(lines) == 21
    assert lines[0] == f"{f}:8:5: unknown key 'bogus0' in upstream; valid keys: name, endpoints, balance, resolve_interval, timeouts, tcp_keepalive, bulkhead, breaker, required, retry, expect, limits, fallback, pool, deadline_header, health_check, tls"
    assert lines[-1] == f"{f}: stopped after 20 errors; fix these and run --check again"


def test_two_megabyte_file_is_refused_quickly(tmp_path):
    f = tmp_path / "big.yaml"
    f.write_text(GOOD + ("# padding " + "x" * 89 + "\n") * 21000)
    assert f.stat().st_size > 2 * 1000 * 1000
    start = time.monotonic()
    r = check(f, timeout=10)
    assert time.monotonic() - start < 5
    assert r.returncode == 2
    assert r.stderr == f"{f}: the file is larger than 1 MiB; a config this big is a mistake\n"


def test_alias_bomb_is_refused_quickly(tmp_path):
    # The "billion laughs": each level doubles ten times; expanded it would
    # be 10^9 strings. We refuse the first anchor before anything expands.
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, (prev, cur) in enumerate(zip("abcdefgh", "bcdefghi")):
        lines.append(f"{cur}: &{cur} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]")
    f = tmp_path / "bomb.yaml"
    f.write_text("\n".join(lines) + "\n")
    start = time.monotonic()
    r = check(f, timeout=10)
    assert time.monotonic() - start < 5
    assert r.returncode == 2
    assert r.stderr == f"{f}:1:4: YAML anchors (&a) are not supported; write values out in full\n"


def test_deep_nesting_is_refused(tmp_path):
    f = tmp_path / "deep.yaml"
    f.write_text("[" * 100000 + "]" * 100000 + "\n")
    r = check(f, timeout=10)
    assert r.returncode == 2
    assert r.stderr == f"{f}:1:33: YAML nested more than 32 levels deep\n"


def test_version():
    r = run("--version")
    assert r.returncode == 0
    assert r.stdout.startswith("cynic ")
    parts = r.stdout.split()[1].split(".")
    assert len(parts) == 3 and all(p.isdigit() for p in parts)


def test_help():
    r = run("--help")
    assert r.returncode == 0
    assert "--check" in r.stdout and "-c, --config FILE" in r.stdout


def test_unknown_option():
    r = run("--frobnicate")
    assert r.returncode == 2
    assert r.stderr.startswith("cynic: unknown option '--frobnicate'\n")


def test_check_without_file():
    r = run("--check")
    assert r.returncode == 2
    assert r.stderr.startswith("cynic: no config file; give one with -c FILE\n")


def test_run_without_file():
    """Running the daemon needs a config; without -c it says so (the daemon
    itself is tested by test_proxy_tcp.py and its siblings)."""
    r = run()
    assert r.returncode == 2
    assert r.stderr.startswith("cynic: no config file; give one with -c FILE\n")
