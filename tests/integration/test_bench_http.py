"""bench/http.sh (the HTTP benchmark) and its idle-connection client.

The benchmark's figures are never pass/fail; what is tested is that its
figures can be trusted: a run whose paths answer correctly prints every
figure for every path, and a run where one does not (errors, answers outside
2xx/3xx, no HTTP mode) says what went wrong and exits 3 instead of printing
numbers as if they were valid.

- http_idle.py, the client behind "RSS per 1,000 idle keep-alive connections",
  against small keep-alive servers made here: it holds N connections that
  made one request each, reports how many are still open when asked, and
  refuses a wrong status, a short body or an answer that closes the
  connection.
- bench/http.sh's argument checks (no tool needed).
- A short real run (1 s per figure, 1 round) against this build's cynic, and
  one against a stand-in "cynic" that answers 503 to everything. Both need
  nginx, HAProxy and wrk (`scripts/deps.sh bench`); without them they skip.
"""
import http.server
import os
import re
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import threading

import pytest

import proxyutil as pu

SOURCE = os.environ.get("CYNIC_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BENCH = os.path.join(SOURCE, "bench", "http.sh")
IDLE = os.path.join(SOURCE, "bench", "http_idle.py")
TOOLS = ("nginx", "haproxy", "wrk", "curl", "ss")
needs_tools = pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS),
                                 reason="needs nginx, haproxy, wrk, curl and ss (scripts/deps.sh bench)")


class Server:
    """A threaded HTTP/1.1 server on 127.0.0.1:0 answering every GET with
    `status` and `size` bytes; `close_after` closes each connection right after
    its first answer (without saying so), `connection_close` says
    `Connection: close`."""

    def __init__(self, status=200, size=128, close_after=False, connection_close=False, tls=None):
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                self.send_response(outer.status)
                self.send_header("Content-Length", str(outer.size))
                if outer.connection_close:
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(b"x" * outer.size)
                if outer.close_after:
                    self.close_connection = True

            def log_message(self, *args):
                pass

        self.status, self.size = status, size
        self.close_after, self.connection_close = close_after, connection_close
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:  # an ssl.SSLContext: HTTPS
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def run_idle(port, n, size=128, timeout=60, extra=()):
    """Runs http_idle.py: returns (its "ready" line, its "open" line, exit
    status, stderr)."""
    p = subprocess.Popen([sys.executable, IDLE, str(port), str(n), "/x", str(size), *extra],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready = p.stdout.readline().strip()
        opened = ""
        if ready:
            p.stdin.write("check\n")
            p.stdin.flush()
            opened = p.stdout.readline().strip()
        p.stdin.close()
        err = p.stderr.read()
        return ready, opened, p.wait(timeout=timeout), err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_idle_client_holds_keepalive_connections():
    srv = Server()
    try:
        ready, opened, rc, err = run_idle(srv.port, 50)
    finally:
        srv.close()
    assert (ready, opened, rc) == ("ready 50", "open 50", 0), err


def test_idle_client_over_tls_verifies_and_holds(tmp_path):
    """--tls CAFILE (bench/tls.sh's memory rows): HTTPS keep-alive connections,
    the certificate verified for 127.0.0.1; one it cannot verify is refused."""
    cert, key, other = (str(tmp_path / n) for n in ("cert.pem", "key.pem", "other.pem"))
    for out, k in ((cert, key), (other, str(tmp_path / "other.key"))):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", k, "-out", out, "-days", "2", "-subj", "/CN=idle",
                        "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=30)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv = Server(tls=ctx)
    try:
        ok = run_idle(srv.port, 10, extra=("--tls", cert))
        refused = run_idle(srv.port, 1, extra=("--tls", other))
    finally:
        srv.close()
    assert ok[:3] == ("ready 10", "open 10", 0), ok[3]
    assert refused[:3] == ("", "", 1) and "CERTIFICATE_VERIFY_FAILED" in refused[3], refused[3]


def test_idle_client_counts_connections_the_server_closed():
    srv = Server(close_after=True)
    try:
        ready, opened, rc, err = run_idle(srv.port, 20)
    finally:
        srv.close()
    # Every answer was complete and did not say close, so the set-up passes;
    # the check then finds every connection closed by the server.
    assert (ready, opened, rc) == ("ready 20", "open 0", 0), err


@pytest.mark.parametrize("kwargs, reason", [
    ({"status": 503}, "status 503, 128 body bytes (want 200, 128)"),
    ({"size": 100}, "status 200, 100 body bytes (want 200, 128)"),
    ({"connection_close": True}, "the answer closes the connection (not keep-alive)"),
])
def test_idle_client_refuses_a_wrong_answer(kwargs, reason):
    srv = Server(**kwargs)
    try:
        ready, opened, rc, err = run_idle(srv.port, 5)
    finally:
        srv.close()
    assert (ready, rc) == ("", 1)
    assert err.strip() == f"http_idle: connection 0: {reason}"


def test_idle_client_refuses_bad_arguments_and_a_refused_port():
    for args, msg in [(["0", "5", "/x", "1"], "bad arguments"), (["80", "0", "/x", "1"], "bad arguments"),
                      (["80", "5", "x", "1"], "bad arguments"), (["a", "5", "/x", "1"], "must be integers")]:
        p = subprocess.run([sys.executable, IDLE] + args, capture_output=True, text=True, timeout=30)
        assert p.returncode == 1 and msg in p.stderr, (args, p.stderr)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))  # bound, not listening: refused
    try:
        p = subprocess.run([sys.executable, IDLE, str(s.getsockname()[1]), "5", "/x", "1"],
                           capture_output=True, text=True, timeout=30)
    finally:
        s.close()
    assert p.returncode == 1 and "connection 0: ConnectionRefusedError" in p.stderr, p.stderr


@pytest.mark.parametrize("args, msg", [
    (["--seconds", "0"], "--seconds must be a whole number from 1 to 30, not '0'"),
    (["--seconds", "31"], "--seconds must be a whole number from 1 to 30, not '31'"),
    (["--rounds", "x"], "--rounds must be a whole number from 1 to 10, not 'x'"),
    (["--cynic-mode", "udp"], "--cynic-mode must be http or tcp, not 'udp'"),
    (["--proxy-cpu", "5"], "--proxy-cpu must be 0 (no proxy-bound rows) or a whole number from 10 to 100, not '5'"),
    (["--proxy-cpu", "101"], "--proxy-cpu must be 0 (no proxy-bound rows) or a whole number from 10 to 100, not '101'"),
    (["--frobnicate"], "unknown option --frobnicate"),
    (["--seconds"], "usage: bench/http.sh"),
    (["a", "b"], "usage: bench/http.sh"),
])
def test_bench_refuses_bad_arguments(args, msg):
    p = subprocess.run(["bash", BENCH] + args, capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and msg in p.stderr, p.stderr


def run_bench(build, timeout=170):
    return subprocess.run(["bash", BENCH, "--seconds", "1", "--rounds", "1", build],
                          capture_output=True, text=True, timeout=timeout)


ROWS = ["requests/s, 1 conn(s)", "requests/s, 16 conn(s)", "requests/s, 64 conn(s)",
        "  latency p50 (us)", "  latency p99 (us)", "1 MiB body, 4 conns (MB/s)"]


@needs_tools
def test_bench_short_run_prints_every_figure():
    p = run_bench(pu.BUILD)
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout
    assert "cynic mode: http (responses carry 'Via: 1.1 cynic')" in out, out
    for label in ROWS:
        lines = [ln for ln in out.splitlines() if ln.startswith(label)]
        assert lines, (label, out)
        for ln in lines:
            nums = ln[len(label):].split()
            # direct, cynic, haproxy, cynic/direct, cynic/haproxy
            assert len(nums) == 5, ln
            assert all(float(v) > 0 for v in nums[:3]), ln
            assert all(re.fullmatch(r"\d+\.\d\dx", v) for v in nums[3:]), ln
    rss = [ln for ln in out.splitlines() if ln.startswith("RSS per 1,000 idle keep-alive conns (KB)")]
    assert len(rss) == 1, out
    _, c_kb, h_kb, _, ratio = rss[0][len("RSS per 1,000 idle keep-alive conns (KB)"):].split()
    # Per connection: more than nothing, less than 64 KB (an idle keep-alive
    # connection holds no buffer in either proxy).
    assert 0 < int(c_kb) < 64000 and 0 < int(h_kb) < 64000, rss
    held = [ln for ln in out.splitlines() if ln.startswith("  upstream conns held meanwhile")]
    assert len(held) == 1 and int(held[0].split()[5]) <= 128, held  # at most the pool's max_idle
    # the proxy-bound rows (each proxy under a CPU quota), or why there are none
    notes = [ln for ln in out.splitlines() if ln.startswith("proxy-bound")]
    assert len(notes) == 1, out
    if re.match(r"proxy-bound: each proxy held to 40 % of core \d+ \(cgroup v[12] CPU quota, 10 ms "
                r"period\); wrk and nginx on core 0, unbound$", notes[0]):
        lines = out.splitlines()
        rows = lines[lines.index(notes[0]) + 1:][:8]
        for i, conns in enumerate((16, 64)):
            for j, label in enumerate((f"bound requests/s, {conns} conns", "  bound p50 (us)",
                                       "  bound p99 (us)", "  bound CPU per request (us)")):
                ln = rows[i * 4 + j]
                assert ln.startswith(label), (label, rows)
                nums = ln[len(label):].split()
                # -, cynic, haproxy, -, cynic/haproxy
                assert len(nums) == 5 and nums[0] == "-" and nums[3] == "-", ln
                assert float(nums[1]) > 0 and float(nums[2]) > 0, ln
                assert re.fullmatch(r"\d+\.\d\dx", nums[4]), ln
    else:
        assert notes[0].startswith("proxy-bound rows: skipped ("), notes
    # the fail-fast rows: plain, from the stale cache (a ratio of the plain
    # one), and proxying with the stale cache keeping responses
    for label, of in (("fail fast (breaker tripped), 16 conns", "proxied"),
                      ("fail fast from the stale cache, 16 conns", "fail fast"),
                      ("proxied, fallback.stale keeping, 16 c.", "proxied")):
        ln = [x for x in out.splitlines() if x.startswith(label)]
        assert len(ln) == 1, (label, out)
        assert re.fullmatch(r"\s+-\s+\d+ req/s\s+-\s+-\s+\d+\.\d\dx of " + of, ln[0][len(label):]), ln
    m = re.search(r"^took (\d+) s$", out, re.M)
    assert m and int(m.group(1)) < 150, out


# The interpreter is named directly (not through env) so the process keeps
# the name "cynic", which bench/http.sh checks before measuring its RSS.
FAKE_CYNIC = r'''
# A stand-in for cynic: listens where the config says and answers 503.
import http.server, re, sys
text = open(sys.argv[sys.argv.index("-c") + 1]).read()
port = int(re.search(r"^    listen: 127\.0\.0\.1:(\d+)$", text, re.M).group(1))
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(503)
        self.send_header("Content-Length", "4")
        self.end_headers()
        self.wfile.write(b"nope")
    def log_message(self, *a):
        pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
s.daemon_threads = True
s.serve_forever()
'''


@needs_tools
def test_bench_reports_a_path_that_answers_wrong(tmp_path):
    fake = tmp_path / "cynic"
    fake.write_text(f"#!{sys.executable}" + FAKE_CYNIC)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    p = run_bench(str(tmp_path))
    assert p.returncode == 3, p.stdout + p.stderr
    err = p.stderr
    assert "bench/http.sh: the figures above are not valid; what went wrong:" in err
    assert "cynic: a mode: http listener answered without Via (HTTP mode not active)" in err
    assert ("cynic: 16 idle connections could not be set up: http_idle: connection 0: "
            "status 503, 4 body bytes (want 200, 128)") in err
    for test in ("small1", "small16", "small64", "big"):
        m = re.search(rf"cynic {test} round 1: (\d+) requests, \d+ bytes, errors "
                      rf"connect/read/write/status/timeout 0/0/0/(\d+)/0", err)
        assert m and int(m.group(1)) > 0 and m.group(1) == m.group(2), (test, err)
    assert "Non-2xx or 3xx responses" in err  # wrk's own text is shown
    # The stand-in dies of SIGTERM instead of draining and exiting 0.
    assert "cynic exited with status 143 after SIGTERM" in err
    # The other paths answered right: no problem is reported for them.
    assert not re.search(r"^  - (direct|haproxy)", err, re.M), err
