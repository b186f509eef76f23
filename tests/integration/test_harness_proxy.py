"""cynic-harness: plain forwarding over loopback, without toxics."""
import hashlib
import os
import socket
import threading
import time

from harness_util import Harness, harness  # noqa: F401
from netutil import (TcpServer, connect, echo_handler, recv_all, recv_exactly, refused, reset_behind_data,
                     rounds_ending_in_fin, wait_for)


def test_forward_echo_and_half_close(harness):
    up = TcpServer(echo_handler)
    try:
        p = harness.create("echo", up.address)
        s = connect(harness.listen_port(p))
        s.sendall(b"ping")
        assert recv_exactly(s, 4) == b"ping"
        # Half-close: our FIN reaches the upstream, whose FIN comes back.
        s.sendall(b"tail")
        s.shutdown(socket.SHUT_WR)
        assert recv_all(s) == b"tail"
        s.close()
    finally:
        up.close()


def test_half_close_keeps_other_direction_open(harness):
    """The client finishes its request with FIN; the upstream answers after it."""
    def handler(c):
        got = b""
        while True:
            d = c.recv(65536)
            if not d:
                break
            got += d
        c.sendall(b"answer:" + got)
        c.shutdown(socket.SHUT_WR)
    up = TcpServer(handler)
    try:
        p = harness.create("hc", up.address)
        s = connect(harness.listen_port(p))
        s.sendall(b"question")
        s.shutdown(socket.SHUT_WR)
        assert recv_all(s) == b"answer:question"
        s.close()
    finally:
        up.close()


def test_large_transfer_integrity(harness):
    data = os.urandom(8 << 20)
    up = TcpServer(echo_handler)
    try:
        p = harness.create("big", up.address)
        s = connect(harness.listen_port(p))
        out = []
        t = threading.Thread(target=lambda: out.append(recv_all(s, timeout=60)))
        t.start()
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        t.join(90)
        assert hashlib.sha256(out[0]).digest() == hashlib.sha256(data).digest()
        s.close()
    finally:
        up.close()


def metric(raw, name, direction):
    for line in raw.decode().splitlines():
        if line.startswith(name + "{") and f'direction="{direction}"' in line:
            return int(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} {direction} not in metrics")


def test_back_pressure_bounds_buffering():
    """A client that never reads: the harness stops reading the upstream once
    it holds its per-direction cap (256 KiB), whatever the kernel buffers."""
    h = Harness("-proxy-metrics")
    done = threading.Event()

    def flood(c):
        chunk = b"x" * 65536
        c.settimeout(30)
        try:
            while not done.is_set():
                c.send(chunk)
        except OSError:
            pass
    up = TcpServer(flood)
    try:
        p = h.create("bp", up.address)
        s = connect(h.listen_port(p))

        def held():
            st, _, raw = h.api.get("/metrics")
            got = metric(raw, "toxiproxy_proxy_received_bytes_total", "downstream")
            out = metric(raw, "toxiproxy_proxy_sent_bytes_total", "downstream")
            return got, out
        # Wait until reading from the upstream stops (two equal samples).
        last = [None]

        def steady():
            now = held()
            same = now == last[0] and now[0] > 0
            last[0] = now
            return same
        wait_for(steady, timeout=30, interval=0.2, what="reads to stop")
        got, out = last[0]
        assert got - out <= (256 << 10) + (64 << 10), (got, out)
        done.set()
        s.close()
    finally:
        up.close()
        h.stop()


def test_reset_right_behind_data_reaches_the_client_as_reset(harness):
    """An upstream whose last bytes and reset arrive together (libuv then
    reports EOF, not ECONNRESET): with no toxic the client still gets a
    reset, never a FIN. Before the fix most rounds ended in a FIN."""
    payload = b"r" * 1024
    srv = reset_behind_data(payload)
    try:
        p = harness.create("rst", srv.endpoint)
        port = harness.listen_port(p)
        fins = rounds_ending_in_fin(lambda: connect(port), payload)
        assert fins == [], f"rounds that ended in a FIN instead of a reset (round, bytes): {fins}"
    finally:
        srv.close()


def test_disable_refuses_and_closes_live_then_same_port(harness):
    up = TcpServer(echo_handler)
    try:
        p = harness.create("tog", up.address)
        port = harness.listen_port(p)
        s = connect(port)
        s.sendall(b"a")
        assert recv_exactly(s, 1) == b"a"
        st, js, _ = harness.api.post("/proxies/tog", {"enabled": False})
        assert st == 200 and js["enabled"] is False
        s.settimeout(10)
        try:
            assert s.recv(10) == b""  # closed by the harness
        except ConnectionResetError:
            pass
        s.close()
        assert refused(port)
        st, js, _ = harness.api.post("/proxies/tog", {"enabled": True})
        assert st == 200 and js["listen"] == p["listen"]
        s = connect(port)
        s.sendall(b"b")
        assert recv_exactly(s, 1) == b"b"
        s.close()
    finally:
        up.close()


def test_delete_closes_live(harness):
    up = TcpServer(echo_handler)
    try:
        p = harness.create("del", up.address)
        s = connect(harness.listen_port(p))
        s.sendall(b"a")
        assert recv_exactly(s, 1) == b"a"
        assert harness.api.delete("/proxies/del")[0] == 204
        s.settimeout(10)
        try:
            assert s.recv(10) == b""
        except ConnectionResetError:
            pass
        s.close()
        assert refused(harness.listen_port(p))
    finally:
        up.close()


def test_upstream_down_closes_client(harness):
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()
    p = harness.create("dead", f"127.0.0.1:{port}")
    s = connect(harness.listen_port(p))
    s.settimeout(10)
    try:
        assert s.recv(10) == b""
    except ConnectionResetError:
        pass
    s.close()


def test_upstream_resolved_per_connection(harness):
    """A name upstream is resolved when a client connects, not at create."""
    up = TcpServer(echo_handler)
    try:
        p = harness.create("dns", f"localhost:{up.port}")
        s = connect(harness.listen_port(p))
        s.sendall(b"hi")
        assert recv_exactly(s, 2) == b"hi"
        s.close()
        # An upstream that does not resolve is accepted at create time.
        p2 = harness.create("nx", "no-such-host.invalid:80")
        s = connect(harness.listen_port(p2))
        s.settimeout(20)
        try:
            assert s.recv(10) == b""
        except ConnectionResetError:
            pass
        s.close()
    finally:
        up.close()


def test_slow_dial_does_not_stall_others(harness):
    """An upstream whose accept queue is full never answers the dial; other
    proxies keep working meanwhile."""
    stuck = socket.socket()
    stuck.bind(("127.0.0.1", 0))
    stuck.listen(0)
    fillers = []
    try:
        # Fill the backlog so further SYNs are dropped and connects hang.
        for _ in range(4):
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(stuck.getsockname())
            fillers.append(f)
        slow = harness.create("slow", "127.0.0.1:%d" % stuck.getsockname()[1])
        clients = [connect(harness.listen_port(slow)) for _ in range(5)]
        up = TcpServer(echo_handler)
        try:
            fast = harness.create("fast", up.address)
            t0 = time.monotonic()
            s = connect(harness.listen_port(fast))
            s.sendall(b"quick")
            assert recv_exactly(s, 5) == b"quick"
            assert time.monotonic() - t0 < 2.0
            st, _, _ = harness.api.get("/proxies")
            assert st == 200
            s.close()
        finally:
            up.close()
        for c in clients:
            c.close()
    finally:
        for f in fillers:
            f.close()
        stuck.close()


def test_many_connections(harness):
    up = TcpServer(echo_handler)
    try:
        p = harness.create("many", up.address)
        socks = [connect(harness.listen_port(p)) for _ in range(50)]
        for i, s in enumerate(socks):
            s.sendall(b"%03d" % i)
        for i, s in enumerate(socks):
            assert recv_exactly(s, 3) == b"%03d" % i
            s.close()
    finally:
        up.close()


def test_config_file(tmp_path):
    up = TcpServer(echo_handler)
    cfg = tmp_path / "cfg.json"
    cfg.write_text('[{"name":"fromfile","listen":"127.0.0.1:0","upstream":"%s",'
                   '"toxics":[{"type":"limit_data","attributes":{"bytes":2}}]}]' % up.address)
    h = Harness("-config", str(cfg))
    try:
        st, js, _ = h.api.get("/proxies/fromfile")
        assert st == 200 and js["toxics"][0]["attributes"] == {"bytes": 2}
        s = connect(h.listen_port(js))
        s.sendall(b"abcdef")
        assert recv_all(s) == b"ab"
        s.close()
    finally:
        h.stop()
        up.close()


def test_bad_config_exits_2(tmp_path):
    from netutil import binary
    import subprocess
    cfg = tmp_path / "bad.json"
    cfg.write_text('[{"name":"x"}]')
    r = subprocess.run([binary("cynic-harness"), "-port", "0", "-config", str(cfg)],
                       capture_output=True, timeout=20)
    assert r.returncode == 2 and b"missing required field: upstream" in r.stderr
    r = subprocess.run([binary("cynic-harness"), "-version"], capture_output=True, timeout=20)
    assert r.returncode == 0 and b"cynic-harness version" in r.stdout
    r = subprocess.run([binary("cynic-harness"), "-bogus"], capture_output=True, timeout=20)
    assert r.returncode == 2


def test_log_file_reopened_on_sigusr1(tmp_path):
    import json
    import signal
    from netutil import binary, wait_for
    import subprocess
    log = tmp_path / "harness.log"
    # With -log-file the JSON lines go to the file; read the address from there.
    proc = subprocess.Popen([binary("cynic-harness"), "-port", "0", "-host", "127.0.0.1",
                             "-log-file", str(log)], stderr=subprocess.PIPE)
    try:
        rec = wait_for(lambda: next((json.loads(l) for l in log.read_text().splitlines()
                                     if '"API listening"' in l), None) if log.exists() else None,
                       what="API listening in the log file")
        assert rec["address"].startswith("127.0.0.1:")
        rotated = tmp_path / "harness.log.1"
        log.rename(rotated)
        proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: log.exists(), what="log reopened")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert '"shutting down"' in log.read_text()
        assert '"API listening"' in rotated.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def test_proxy_pointed_at_itself_is_bounded(harness):
    """Each connection dials the proxy again: the connection cap ends the
    cascade, the client gets a close, and the API stays responsive."""
    p = harness.create("loop", "127.0.0.1:1")
    st, js, _ = harness.api.post("/proxies/loop", {"upstream": p["listen"]})
    assert st == 200 and js["listen"] == p["listen"] and js["upstream"] == p["listen"]
    s = connect(harness.listen_port(p))
    s.sendall(b"x")
    s.settimeout(30)
    try:
        assert s.recv(10) == b""
    except ConnectionResetError:
        pass
    s.close()
    assert harness.api.get("/version")[0] == 200
    assert harness.api.delete("/proxies/loop")[0] == 204
