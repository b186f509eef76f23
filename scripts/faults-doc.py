#!/usr/bin/env python3
"""Renders docs/faults.md from what the fault matrix observed.

    scripts/faults-doc.py build/faults/tcp.json > docs/faults.md   (make faults-doc)

tests/faults/test_fault_matrix_tcp.py writes the JSON and, in its last test,
compares the committed document with a fresh rendering through stable(): the
columns of what happened must match; the measured times may differ.
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
sends 4 KB, half-closes and reads to the end.

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

HTTP mode's rows (500s, HTML instead of JSON, a hang after the headers, request
deadlines, expectations, retries, fallbacks) arrive with HTTP mode.

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


def render(data):
    out = [HEAD.format(build="sanitizer" if data.get("sanitized") else "normal")]
    out.append("| " + " | ".join(t for t, _, _ in COLUMNS) + " |")
    out.append("|" + "---|" * len(COLUMNS))
    for r in data["rows"]:
        out.append("| " + " | ".join(cell(k, r.get(k)) for _, k, _ in COLUMNS) + " |")
    return "\n".join(out) + "\n"


def stable(markdown):
    """The table's rows, stable columns only."""
    keep = [i for i, (_, _, s) in enumerate(COLUMNS) if s]
    rows = []
    for line in markdown.splitlines():
        if not line.startswith("| ") or line.startswith("| fault |"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        rows.append([cells[i] for i in keep if i < len(cells)])
    return rows


def main(argv):
    if len(argv) != 2:
        print("usage: faults-doc.py RESULTS.json > docs/faults.md", file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        sys.stdout.write(render(json.load(f)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
