"""Out of memory: allocation failures injected into cynic and cynic-harness.

The LD_PRELOAD shim tests/oom/failmalloc.c (built as libcynic_failmalloc.so
beside the binaries) fails malloc and friends with ENOMEM once armed: at a
seeded rate, or every Nth call. Each process starts with it disarmed; the test
arms it at a few rates (SIGUSR2 + a control file, acknowledged by the shim),
drives bounded traffic and API calls, then disarms it and checks recovery.

What must hold while allocations fail: the process never dies (no signal, no
abort) and never hangs; a proxied connection delivers exactly the bytes sent,
or a prefix of them and then a close or reset, never other bytes; an API
answer is either correct (well-formed JSON / Prometheus text) or a 5xx JSON
error, or the connection is closed. After disarming: traffic is exact, the API
answers, the state is consistent (no half-created proxy, no leaked listener)
and SIGTERM exits 0 promptly.

Skipped in sanitizer builds: AddressSanitizer owns malloc, so the shim cannot
be loaded (and is not built). To catch heap corruption on the failure paths
in the normal build, run with glibc's checking allocator behind the shim:
  CYNIC_OOM_EXTRA_PRELOAD=" /lib/x86_64-linux-gnu/libc_malloc_debug.so.0" MALLOC_CHECK_=3
Each round prints what the shim did (pytest -s): calls made and failed.
"""
import errno
import json
import os
import random
import re
import signal
import socket
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import proxyutil as pu
from harness_util import Harness
from netutil import echo_handler, TcpServer

SHIM = os.path.join(pu.BUILD, "libcynic_failmalloc.so")

pytestmark = pytest.mark.skipif(pu.sanitized() or not os.path.exists(SHIM),
                                reason="the malloc shim cannot run under a sanitizer (not built)")

RATES = ("0.002", "0.01", "0.05", "0.2")
IO_TIMEOUT = 5.0  # a proxied exchange or an API call that takes longer is a hang


class FailMalloc:
    """The shim's control: a spec file and SIGUSR2, acknowledged in FILE.ack."""

    def __init__(self):
        self.dir = tempfile.TemporaryDirectory(prefix="cynic-oom-")
        self.path = os.path.join(self.dir.name, "failmalloc")
        with open(self.path, "w") as f:
            f.write("off\n")
        self.gen = 0
        self.pid = None

    def env(self):
        env = dict(os.environ)
        env["LD_PRELOAD"] = SHIM + os.environ.get("CYNIC_OOM_EXTRA_PRELOAD", "")
        env["CYNIC_FAILMALLOC_CTL"] = self.path
        env.pop("CYNIC_FAILMALLOC", None)
        return env

    def set(self, spec):
        """Applies `spec` ("off", "seed=1,rate=0.05", "every=7") and returns
        the shim's counters {"armed", "calls", "failed"}."""
        self.gen += 1
        tmp = self.path + ".new"
        with open(tmp, "w") as f:
            f.write(f"gen={self.gen},{spec}\n")
        os.rename(tmp, self.path)
        os.kill(self.pid, signal.SIGUSR2)

        def acked():
            try:
                with open(self.path + ".ack") as f:
                    fields = dict(kv.split("=") for kv in f.read().split())
            except (OSError, ValueError):
                return None
            return fields if int(fields.get("gen", -1)) == self.gen else None
        fields = pu.wait_for(acked, timeout=5, what=f"the shim to apply {spec!r}")
        return {k: int(v) for k, v in fields.items()}

    def close(self):
        self.dir.cleanup()


# ---- clients that tolerate failure but never corruption or a hang --------------

def exchange(addr, payload):
    """Sends payload through the proxy to the echo server and reads until EOF.
    Returns True when the bytes came back exactly, False when the connection
    was refused, reset or closed early (with a prefix of the bytes at most).
    Fails the test on other bytes or a hang."""
    try:
        s = socket.create_connection(addr, timeout=IO_TIMEOUT)
    except (ConnectionRefusedError, ConnectionResetError):
        return False
    got = bytearray()
    try:
        s.settimeout(IO_TIMEOUT)
        try:
            if payload:
                s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except OSError as e:  # ENOTCONN: already reset
            if e.errno != errno.ENOTCONN:
                raise
        while True:
            d = s.recv(1 << 16)
            if not d:
                break
            got += d
    except (ConnectionResetError, BrokenPipeError):
        pass
    except socket.timeout:
        raise AssertionError(f"proxied connection hung: {len(got)} of {len(payload)} bytes back")
    finally:
        s.close()
    assert payload.startswith(bytes(got)), f"corrupted: {len(got)} bytes back differ from those sent"
    return bytes(got) == payload


def http_call(addr, method, path, body=b""):
    """One HTTP/1.1 request on a new connection (Connection: close). Returns
    (status, headers, body) or None when the connection was closed or reset
    without an answer. Fails the test on a hang or a malformed answer."""
    try:
        s = socket.create_connection(addr, timeout=IO_TIMEOUT)
    except (ConnectionRefusedError, ConnectionResetError):
        return None
    req = (f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
           f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    raw = bytearray()
    try:
        s.settimeout(IO_TIMEOUT)
        try:
            s.sendall(req)
        except (BrokenPipeError, ConnectionResetError):
            pass
        while True:
            d = s.recv(1 << 16)
            if not d:
                break
            raw += d
    except ConnectionResetError:
        pass
    except socket.timeout:
        raise AssertionError(f"{method} {path} hung ({len(raw)} bytes read)")
    finally:
        s.close()
    if not raw:
        return None
    head, sep, payload = bytes(raw).partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/1\.1 (\d{3}) ", head)
    assert m and sep, f"{method} {path}: not an HTTP answer: {bytes(raw[:200])!r}"
    status = int(m.group(1))
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower().decode()] = v.strip().decode()
    if "content-length" in headers:
        n = int(headers["content-length"])
        if len(payload) < n:
            return None  # closed in the middle of the body: a close, not a lie
        assert len(payload) == n, f"{method} {path}: {len(payload)} body bytes for Content-Length {n}"
    return status, headers, payload


def http_answer(addr):
    """GET / on a keep-alive connection; the status of the one answer, read by
    its Content-Length, or None when the connection was closed or reset first.
    Fails the test on a hang."""
    try:
        s = socket.create_connection(addr, timeout=IO_TIMEOUT)
    except (ConnectionRefusedError, ConnectionResetError):
        return None
    raw = bytearray()
    try:
        s.settimeout(IO_TIMEOUT)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        while True:
            head, sep, body = bytes(raw).partition(b"\r\n\r\n")
            if sep:
                m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
                if m and len(body) >= int(m.group(1)):
                    return int(head[9:12])
            d = s.recv(1 << 16)
            if not d:
                return None
            raw += d
    except (ConnectionResetError, BrokenPipeError):
        return None
    except socket.timeout:
        raise AssertionError(f"HTTP answer hung ({bytes(raw[:200])!r})")
    finally:
        s.close()


def check_answer(what, ans, ok_statuses, parse=json.loads):
    """An answer under failures: None (closed), a correct one, or a 5xx JSON error.
    Returns the parsed body of a correct answer, else None."""
    if ans is None:
        return None
    status, headers, body = ans
    if status >= 500:
        js = json.loads(body)  # a 5xx is a JSON error, never garbage
        assert "error" in js, f"{what}: {status} without an error: {body[:200]!r}"
        return None
    assert status in ok_statuses, f"{what}: {status} {body[:300]!r}"
    return parse(body) if body else b""


def parse_metrics(body):
    """Prometheus text: every line a comment or `name{labels} value`."""
    text = body.decode()
    assert text.endswith("\n"), "metrics cut short"
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        assert re.match(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? [-+0-9.eEnaNIf]+$', line), f"metrics line: {line!r}"
    return text


def listening_ports(pid):
    """The TCP ports process `pid` is listening on."""
    inodes = set()
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if cols[3] == "0A" and cols[9] in inodes:
                        ports.add(int(cols[1].rsplit(":", 1)[1], 16))
        except OSError:
            pass
    return ports


def assert_alive(proc, tail):
    rc = proc.poll()
    assert rc is None, f"process died: status {rc}:\n{tail()}"


# ---- cynic ---------------------------------------------------------------------

def cynic_config():
    return pu.config(pu.listener("app", "backend"),
                     pu.upstream("backend", ["{echo}"],
                                 "timeouts: { connect: 1s, first_byte: 3s, idle: 3s }"))


def parallel_exchanges(addr, rnd, count, sizes=(0, 1, 100, 5000, 70000, 300000)):
    """`count` exchanges on 4 client threads at once; how many were exact."""
    payloads = [rnd.randbytes(rnd.choice(sizes)) for _ in range(count)]
    with ThreadPoolExecutor(4) as pool:
        return sum(pool.map(lambda p: exchange(addr, p), payloads))


def cynic_round(px, rnd, reload_ok, iterations=40):
    """One round of traffic and admin calls; returns how many exchanges were
    exact (of 5 per iteration)."""
    addr, admin = px.addr("app"), px.addr("admin")
    ok = 0
    for i in range(iterations):
        ok += parallel_exchanges(addr, rnd, 5)
        if i % 5 == 0:
            st = check_answer("/status", http_call(admin, "GET", "/status"), (200,))
            if st is not None:
                assert "upstreams" in st or "listeners" in st, st
            check_answer("/metrics", http_call(admin, "GET", "/metrics"), (200,), parse_metrics)
            check_answer("/breakers", http_call(admin, "GET", "/breakers"), (200,))
            verb = rnd.choice(("trip", "reset", "force_closed"))
            check_answer(f"/breakers/backend/{verb}",
                         http_call(admin, "POST", f"/breakers/backend/{verb}"), (200,))
        if i % 20 == 10:
            js = check_answer("/reload", http_call(admin, "POST", "/reload"), (200, 400, 422))
            if js is not None and js.get("reloaded"):
                reload_ok.append(1)
        assert_alive(px.proc, px.tail)
    return ok


def test_cynic_survives_allocation_failures():
    srv = TcpServer(echo_handler)
    fm = FailMalloc()
    px = pu.Cynic(cynic_config().replace("{echo}", srv.endpoint), env=fm.env())
    fm.pid = px.pid
    rnd = random.Random(7)
    t0 = time.monotonic()
    try:
        assert exchange(px.addr(), b"warm up")
        failed_total = 0
        reloads = []
        for seed, rate in enumerate(RATES, 1):
            fm.set(f"seed={seed},rate={rate}")
            ok = cynic_round(px, rnd, reloads)
            counts = fm.set("off")
            print(f"cynic rate {rate}: {ok}/200 exchanges exact, {counts}")
            failed_total = counts["failed"]
            assert_alive(px.proc, px.tail)
            # disarmed: everything works again
            check_recovered_cynic(px, rnd)
        fm.set("every=3")
        cynic_round(px, rnd, reloads)
        counts = fm.set("off")
        assert counts["failed"] > failed_total > 0, counts  # the shim did fail allocations
        check_recovered_cynic(px, rnd)
        # a reload after the failures works and keeps serving
        js = check_answer("/reload", http_call(px.addr("admin"), "POST", "/reload"), (200,))
        assert js and js.get("reloaded") is True, js
        check_recovered_cynic(px, rnd)
        assert listening_ports(px.pid) == {px.addr()[1], px.addr("admin")[1]}
        for line in list(px.lines):
            json.loads(line)  # every log line whole, even those written under failures
    finally:
        t1 = time.monotonic()
        px.stop(timeout=10)
        assert time.monotonic() - t1 < 10
        srv.close()
        fm.close()
    assert time.monotonic() - t0 < 60


def check_recovered_cynic(px, rnd):
    admin = px.addr("admin")
    # a breaker forced open under failures is put back by hand
    ans = http_call(admin, "POST", "/breakers/backend/reset")
    assert ans and ans[0] == 200, ans
    for n in (0, 1, 1000, 200000):
        payload = rnd.randbytes(n)
        assert pu.wait_for(lambda: exchange(px.addr(), payload), timeout=5, what="traffic after disarm")
    ans = http_call(admin, "GET", "/status")
    assert ans and ans[0] == 200, ans
    st = json.loads(ans[2])
    assert st["upstreams"], st
    ans = http_call(admin, "GET", "/metrics")
    assert ans and ans[0] == 200
    parse_metrics(ans[2])


# ---- cynic-harness -------------------------------------------------------------

class Model:
    """What the test knows of the harness's proxies and toxics: a name maps to
    True (exists), False (does not) or None (unknown: the answer was lost)."""

    def __init__(self):
        self.proxies = {}
        self.toxics = {}  # (proxy, toxic) -> True / False / None


def harness_round(h, rnd, model, echo_ep, round_no):
    api = (h.host, h.port)
    for i in range(24):
        name = f"p{round_no}_{i}"
        body = {"name": name, "listen": "127.0.0.1:0", "upstream": echo_ep}
        if i % 3 == 0:
            body["toxics"] = [{"type": "latency", "attributes": {"latency": 5}}]
        ans = http_call(api, "POST", "/proxies", json.dumps(body).encode())
        js = check_answer("POST /proxies", ans, (201,))
        model.proxies[name] = True if js else (None if ans is None else False)
        if js:
            assert js["name"] == name and js["listen"].startswith("127.0.0.1:"), js
            if i % 3 == 0:
                assert [t["name"] for t in js["toxics"]] == ["latency_downstream"], js
                model.toxics[(name, "latency_downstream")] = True
            if i % 3 == 1:  # a toxic that ends connections itself: its close must not be lost
                lim = {"type": "limit_data", "attributes": {"bytes": 2000}}
                ans = http_call(api, "POST", f"/proxies/{name}/toxics", json.dumps(lim).encode())
                lj = check_answer("POST limit_data", ans, (200,))
                model.toxics[(name, "limit_data_downstream")] = True if lj else (None if ans is None else False)
            tox = {"type": "latency", "stream": "upstream", "attributes": {"latency": 3, "jitter": 1}}
            ans = http_call(api, "POST", f"/proxies/{name}/toxics", json.dumps(tox).encode())
            tj = check_answer("POST toxics", ans, (200,))
            model.toxics[(name, "latency_upstream")] = True if tj else (None if ans is None else False)
            port = int(js["listen"].rsplit(":", 1)[1])
            parallel_exchanges(("127.0.0.1", port), rnd, 6, (0, 10, 3000, 100000))
            if i % 6 == 2:  # the harness answers in the upstream's place: never a hang
                st = {"type": "http_status", "stream": "upstream", "name": "teapot",
                      "attributes": {"status": 418, "body": "short"}}
                ans = http_call(api, "POST", f"/proxies/{name}/toxics", json.dumps(st).encode())
                if check_answer("POST http_status", ans, (200,)):
                    for _ in range(3):
                        got = http_answer(("127.0.0.1", port))
                        assert got in (None, 418), got
                    ans = http_call(api, "DELETE", f"/proxies/{name}/toxics/teapot")
                    if ans is not None and ans[0] not in (204, 404):
                        check_answer("DELETE http_status", ans, ())
        check_answer("GET /proxies", http_call(api, "GET", "/proxies"), (200,))
        if i % 4 == 3:
            victim = rnd.choice(sorted(model.proxies))
            ans = http_call(api, "DELETE", f"/proxies/{victim}")
            if ans is None:
                model.proxies[victim] = None
            elif ans[0] == 204:
                model.proxies[victim] = False
            elif ans[0] == 404:
                assert model.proxies[victim] is not True, f"{victim} vanished"
                model.proxies[victim] = False
            else:
                check_answer("DELETE proxy", ans, ())
                model.proxies[victim] = None  # a 5xx after the change: unknown
        if i % 4 == 1:
            victim = rnd.choice(sorted(model.proxies))
            ans = http_call(api, "DELETE", f"/proxies/{victim}/toxics/latency_upstream")
            key = (victim, "latency_upstream")
            if ans is None:
                model.toxics[key] = None
            elif ans[0] == 204:
                model.toxics[key] = False
            elif ans[0] != 404:
                check_answer("DELETE toxic", ans, ())
                model.toxics[key] = None
        assert_alive(h.proc, lambda: "\n".join(h.lines[-40:]))


def check_recovered_harness(h, model, rnd):
    st, listing, raw = h.api.get("/proxies")
    assert st == 200, raw
    for name, known in model.proxies.items():
        if known is not None:
            assert (name in listing) == known, f"{name}: expected {'present' if known else 'absent'}"
    ports = set()
    for name, p in listing.items():
        assert p["enabled"] is True
        port = int(p["listen"].rsplit(":", 1)[1])
        ports.add(port)
        st, toxics, raw = h.api.get(f"/proxies/{name}/toxics")
        assert st == 200, raw
        assert toxics == p["toxics"], (toxics, p["toxics"])
        names = {t["name"] for t in toxics}
        for (pn, tn), known in model.toxics.items():
            if pn == name and known is not None:
                assert (tn in names) == known, f"{name}/{tn}: expected {'present' if known else 'absent'}"
        payload = rnd.randbytes(rnd.choice((1, 1000)))
        if not exchange(("127.0.0.1", port), payload):
            again = [exchange(("127.0.0.1", port), payload) for _ in range(3)]
            events = h.api.get(f"/events?proxy={name}")[2].decode().splitlines()[-12:]
            raise AssertionError(f"traffic through {name} after disarm (again: {again}):\n" +
                                 "\n".join(events) + "\n" + "\n".join(h.lines[-20:]))
    # every proxy listed has a listener, and no listener is left without a proxy
    assert listening_ports(h.proc.pid) == ports | {h.port}
    # the API still creates, changes and deletes
    p = h.create("after", "127.0.0.1:1")
    h.add_toxic("after", type="latency", attributes={"latency": 1})
    assert h.api.delete("/proxies/after")[0] == 204


def test_harness_survives_allocation_failures():
    srv = TcpServer(echo_handler)
    fm = FailMalloc()
    h = Harness(env=fm.env())
    fm.pid = h.proc.pid
    rnd = random.Random(11)
    model = Model()
    t0 = time.monotonic()
    try:
        h.create("base", srv.endpoint)
        model.proxies["base"] = True
        failed_total = 0
        for seed, rate in enumerate(RATES, 1):
            fm.set(f"seed={seed},rate={rate}")
            harness_round(h, rnd, model, srv.endpoint, seed)
            counts = fm.set("off")
            print(f"harness rate {rate}: {counts}, model {model.proxies}")
            failed_total = counts["failed"]
            check_recovered_harness(h, model, rnd)
        fm.set("every=4")
        harness_round(h, rnd, model, srv.endpoint, 9)
        counts = fm.set("off")
        assert counts["failed"] > failed_total > 0, counts
        check_recovered_harness(h, model, rnd)
        assert h.api.post("/reset")[0] == 204  # removes every toxic
        model.toxics = {k: False for k in model.toxics}
        check_recovered_harness(h, model, rnd)
    finally:
        t1 = time.monotonic()
        h.stop(timeout=10)
        assert time.monotonic() - t1 < 10
        srv.close()
        fm.close()
    assert time.monotonic() - t0 < 60
