#!/usr/bin/env python3
"""Renders docs/faults.md from what the fault matrix observed.

    scripts/faults-doc.py build/faults/tcp.json [build/faults/http.json] > docs/faults.md
                                                                   (make faults-doc)

tests/faults/test_fault_matrix_tcp.py and test_fault_matrix_http.py write the
JSON and, in their last tests, compare the committed document with a fresh
rendering through stable(): the columns of what happened must match; the
measured times may differ. The TCP part is rendered by render() alone, as it
was before HTTP mode; the HTTP part (render_http()) follows it under its own
heading, and stable() reads one part at a time.
"""
import json
import sys

HEAD = """# The fault matrix

What cynic does when a dependency misbehaves, as observed by the fault matrix
(`tests/faults/`, part of `make test`): every row drives real traffic over
loopback through cynic-harness into cynic and checks the outcome. This file is
generated from a run (`make faults-doc`); a test fails when the outcomes here
differ from what the code does. Times are from the run that wrote the file
({build} build, shared 2-core machine); they vary from run to run, the
outcomes may not.

The rig: an echo server (the dependency) behind a cynic-harness proxy; cynic's
upstream `dep` with one endpoint (that proxy), `timeouts: {{ connect: 300ms,
first_byte: 1s, idle: 2s }}`, `breaker: {{ faults: 3, leak: 60s, open_for: 1500ms }}`,
`bulkhead: {{ max_connections: 4, max_pending: 2, queue_timeout: 200ms }}`; a second
upstream `healthy` (another echo server, direct) behind the same cynic. A caller
sends 4 KB, half-closes and reads to the end. The rows marked *TLS* use a
dependency that speaks TLS (a TLS echo server behind the harness) and an upstream
`dep` with `tls` (verified against the test CA) and `timeouts.tls_handshake: 500ms`;
their callers still speak plain TCP to cynic.

Every row also checks, and fails otherwise:

- the caller's worst wait is at most the bound plus a margin (0.5 s; 1.5 s under
  the sanitizers);
- the breaker opens after exactly 3 faults when the fault is one, then fails
  fast, and closes after the dependency recovers; for the others it stays closed;
- the healthy upstream, called every 20 ms throughout, fails no call and none
  takes over 0.9 s, under the first-byte timeout (1.5 s under the sanitizers);
- cynic's descriptors return to their count before the fault and its RSS to
  within 8 MB of it (the buffer pools keep up to 4 MB).

## TCP mode

Columns: *bound* is the configured limit that should end the caller's wait;
*worst* the longest call under the fault; *detect* when the protection acted
(breaker rows: from the fault to the breaker opening; others: the first call);
*recover* from clearing the fault to whole calls again (breaker rows: to the
breaker closing after its half-open probe); *fail fast* the median call while
the breaker is open; *healthy* the healthy upstream's worst call meanwhile;
*RSS* how much cynic grew.

HTTP mode's rows (500s, HTML instead of JSON, a hang after the headers, a 1 GB
response, a reset mid-body, ...) follow the TCP table, with a retry row (one endpoint
of two refusing: every call still 200) and two fallback rows (a hang answered from the
stale cache, 500s replaced by the static answer).

"""

COLUMNS = [  # (title, key, stable)
    ("fault", "fault", True),
    ("injected by", "injected_by", True),
    ("protection", "protection", True),
    ("caller sees", "caller_sees", True),
    ("breaker", "breaker", True),
    ("bound", "bound_ms", True),
    ("worst", "worst_ms", False),
    ("detect", "detect_ms", False),
    ("recover", "recover_ms", False),
    ("fail fast", "fail_fast_us", False),
    ("healthy", "healthy_worst_ms", False),
    ("RSS", "rss_delta_kb", False),
]


HTTP_HEAD = """
## HTTP mode

The same checks, `mode: http` listeners on both sides ({build} build;
`tests/faults/test_fault_matrix_http.py`). The dependency is a scripted
HTTP/1.1 backend (200 with 4 KB of JSON, keep-alive) behind the cynic-harness
proxy; what the harness cannot do (a 1 GB response, streamed; a hang before or
after the head; a slow body) the backend does. Upstream `dep`: `timeouts: {{
connect: 300ms, first_byte: 1s, idle: 1s, request: 2500ms }}`, the same breaker and
bulkhead as above, `expect: {{ content_type: application/json }}` (so
`expect.status` is the default, 200-499), `limits: {{ max_response_bytes: 1MB }}`,
`pool: {{ max_idle: 0 }}` (a connection per request, so a toxic that counts bytes
counts them from the request's first). The healthy upstream is another such
backend. A caller sends `GET / HTTP/1.1` with `Connection: close` and reads to
the end.

*Caller sees*: the upstream's own status (passed on as it is), or cynic's
answer as status and `Cynic-Answer`, or `reset` when part of a response had
already gone out (a cut response must not look whole). Breaker rows also check
that the breaker is still closed one fault short, that while open every call
gets `503 breaker_open` with `Retry-After` without reaching the dependency;
rows that are not faults check that the breaker's bucket stays empty after
more calls than `faults`. Columns as above.

"""


def cell(key, v):
    if v is None:
        return "—"
    if key.endswith("_us"):
        return f"{v} µs"
    if key.endswith("_ms"):
        return f"{v} ms"
    if key.endswith("_kb"):
        return f"{v:+d} KB"
    return str(v).replace("|", "\\|")


def section(head, data):
    """A part of the document: its prose (head, formatted with the build),
    then the table of data's rows."""
    out = [head.format(build="sanitizer" if data.get("sanitized") else "normal")]
    out.append("| " + " | ".join(t for t, _, _ in COLUMNS) + " |")
    out.append("|" + "---|" * len(COLUMNS))
    for r in data["rows"]:
        out.append("| " + " | ".join(cell(k, r.get(k)) for _, k, _ in COLUMNS) + " |")
    return "\n".join(out) + "\n"


def render(data):
    """The TCP part, which starts the document."""
    return section(HEAD, data)


def render_http(data):
    """The HTTP part: its heading, rig and table (appended to render()'s)."""
    return section(HTTP_HEAD, data)


HTTP_HEADING = "\n## HTTP mode\n"


def stable(markdown, part="tcp"):
    """One part's table rows ("tcp": before the HTTP heading; "http": after
    it), stable columns only."""
    keep = [i for i, (_, _, s) in enumerate(COLUMNS) if s]
    rows = []
    tcp, _, http = markdown.partition(HTTP_HEADING)
    for line in (tcp if part == "tcp" else http).splitlines():
        if not line.startswith("| ") or line.startswith("| fault |"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        rows.append([cells[i] for i in keep if i < len(cells)])
    return rows


def main(argv):
    if len(argv) not in (2, 3):
        print("usage: faults-doc.py TCP.json [HTTP.json] > docs/faults.md", file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        sys.stdout.write(render(json.load(f)))
    if len(argv) == 3:
        with open(argv[2]) as f:
            sys.stdout.write(render_http(json.load(f)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
