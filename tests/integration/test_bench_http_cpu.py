"""bench/http_cpu.sh: CPU per request of cynic's HTTP mode and of HAProxy.

Its figures are never pass/fail; what is tested is that they can be trusted:
a real run prints one row per proxy and connection count with a plausible
figure, and a run against something that is not cynic's HTTP mode, or that
answers wrong, says so and exits 3 instead of printing a figure.
Argument checks need no tool; the runs need nginx, HAProxy, wrk and curl
(and valgrind for the instruction counts) and skip without them.
"""
import os
import re
import shutil
import stat
import subprocess
import sys

import pytest

import proxyutil as pu
from test_bench_http import FAKE_CYNIC

SOURCE = os.environ.get("CYNIC_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BENCH = os.path.join(SOURCE, "bench", "http_cpu.sh")
TOOLS = ("nginx", "haproxy", "wrk", "curl")
needs_tools = pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS),
                                 reason="needs nginx, haproxy, wrk and curl (scripts/deps.sh bench)")
# valgrind cannot run a sanitizer build (its shadow memory is ASan's too).
needs_valgrind = pytest.mark.skipif(shutil.which("valgrind") is None or shutil.which("callgrind_control") is None
                                    or pu.sanitized(), reason="needs valgrind and a build without sanitizers")


@pytest.mark.parametrize("args, msg", [
    (["--seconds", "0"], "--seconds must be a whole number from 1 to 60, not '0'"),
    (["--seconds", "61"], "--seconds must be a whole number from 1 to 60, not '61'"),
    (["--conns", "1 x"], "--conns takes numbers from 1 to 1000, not 'x'"),
    (["--conns", "0"], "--conns takes numbers from 1 to 1000, not '0'"),
    (["--only", "nginx"], "--only must be cynic or haproxy"),
    (["--frobnicate"], "unknown option --frobnicate"),
    (["--keep"], "usage: bench/http_cpu.sh"),
    (["a", "b"], "usage: bench/http_cpu.sh"),
])
def test_refuses_bad_arguments(args, msg):
    p = subprocess.run(["bash", BENCH] + args, capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and msg in p.stderr, p.stderr


@needs_tools
@needs_valgrind
def test_instructions_per_request_for_both_proxies(tmp_path):
    keep = tmp_path / "dumps"
    p = subprocess.run(["bash", BENCH, "--seconds", "1", "--conns", "4", "--keep", str(keep), pu.BUILD],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    rows = re.findall(r"^(cynic|haproxy) +4 conns +(\d+) requests +(\d+) instructions/request$",
                      p.stdout, re.M)
    assert [r[0] for r in rows] == ["cynic", "haproxy"], p.stdout
    for name, reqs, ir in rows:
        # Some requests went through; a request costs each proxy more than
        # a thousand instructions and less than 150,000 (about 16,000 and
        # 48,000 measured; a count that took in the start-up and the
        # warm-up, not zeroed, is several times that).
        assert int(reqs) > 0 and 1000 < int(ir) < 150000, (name, reqs, ir)
        assert (keep / f"{name}.4").stat().st_size > 0


@needs_tools
def test_native_cpu_time_per_request(tmp_path):
    p = subprocess.run(["bash", BENCH, "--native", "--seconds", "1", "--conns", "4", "--only", "cynic", pu.BUILD],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    m = re.search(r"^cynic +4 conns +(\d+) requests +user +([\d.]+) us/request +system +([\d.]+) us/request$",
                  p.stdout, re.M)
    assert m and int(m.group(1)) > 0, p.stdout
    assert "native: CPU time per request" in p.stdout


@needs_tools
def test_refuses_what_is_not_cynics_http_mode(tmp_path):
    fake = tmp_path / "cynic"
    fake.write_text(f"#!{sys.executable}" + FAKE_CYNIC)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    p = subprocess.run(["bash", BENCH, "--native", "--seconds", "1", "--conns", "4", "--only", "cynic", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 3, p.stdout + p.stderr
    assert "cynic's responses carry no 'Via: 1.1 cynic' (got ''): not HTTP mode; nothing measured" in p.stderr
    assert "instructions/request" not in p.stdout and "us/request" not in p.stdout
