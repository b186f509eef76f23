"""The fault matrix, TCP mode: the test harness against the system.

Every misbehaviour of a dependency that cynic-harness can produce is driven,
with real traffic over loopback, through cynic-harness into cynic, and checked
against the protection that should catch it:

- the caller's worst wait stays within the configured bound plus MARGIN;
- the breaker opens when the fault is one (after exactly `faults` of them),
  then fails fast, and closes again once the dependency recovers -- and it
  stays closed for faults TCP mode cannot see or should not count;
- a second, healthy upstream behind the same cynic keeps answering, every
  call, none slower than HEALTHY_WORST (bulkhead isolation);
- nothing leaks: cynic's descriptors return to their count before the fault
  and its RSS to within RSS_MARGIN_KB of it.

Each row records what it observed; the run writes them as JSON
($CYNIC_FAULTS_OUT, default BUILD/faults/tcp.json) and the last test checks
that docs/faults.md (`make faults-doc` renders it from that file) still shows
what this run saw, timings aside.

The rig of every row: an echo server (the dependency) behind a cynic-harness
proxy `dep`, cynic's listener `app` -> upstream `dep` (one endpoint: the
harness proxy), and cynic's listener `other` -> upstream `healthy` (another
echo server, direct). A call sends PAYLOAD, half-closes and reads to EOF.
"""
import errno
import socket
import statistics
import threading
import time

import pytest

import proxyutil as pu
import tlsutil as tu
from harness_util import Harness
import matrixutil as mu
from matrixutil import MARGIN, RSS_MARGIN_KB, SLOW, fds, ms
from netutil import recv_exactly

CONNECT, FIRST_BYTE, IDLE, OPEN_FOR, FAULTS = 0.3, 1.0, 2.0, 1.5, 3

# Bounds sit against the configured timeouts, not against how fast the
# (shared, 2-core, ctest -j2) machine is: a normal run sees fail fast in
# ~0.2 ms and the healthy upstream's worst call at up to ~0.2 s. MARGIN (s
# a caller may wait past a configured bound) and RSS_MARGIN_KB are
# matrixutil's, shared with the HTTP matrix.
# s: a fail-fast answer: sooner than the shortest timeout (connect) that
# would have ended a call that was let through
AT_ONCE = CONNECT if SLOW else CONNECT - 0.05
# s: the healthy upstream's worst call during a fault: sooner than the
# dependency's first-byte timeout, so no healthy call waited on the fault
HEALTHY_WORST = 1.5 if SLOW else FIRST_BYTE - 0.1
MAX_CONNECTIONS, MAX_PENDING, QUEUE_TIMEOUT = 4, 2, 0.2
DEP = f"""
timeouts: {{ connect: 300ms, first_byte: 1s, idle: 2s }}
breaker: {{ faults: {FAULTS}, leak: 60s, open_for: 1500ms, half_open_probes: 1 }}
bulkhead: {{ max_connections: {MAX_CONNECTIONS}, max_pending: {MAX_PENDING}, queue_timeout: 200ms }}
"""
PAYLOAD = bytes(range(256)) * 16  # 4 KB
# The TLS rows (issue 14): the same dependency speaking TLS, cynic verifying it.
TLS_HANDSHAKE = 0.5

RESULTS = mu.Results("tcp")
record = RESULTS.record


@pytest.fixture(scope="module", autouse=True)
def write_results():
    yield
    RESULTS.write()


# ---- calls -------------------------------------------------------------------

def call(addr, payload=PAYLOAD, timeout=10.0, half_close=True, reset_seen=False):
    """One caller: send, half-close, read to EOF. Returns (outcome, seconds,
    bytes received); outcome is ok (the payload back), nothing (closed or
    reset before any byte came back: a caller cannot tell the two apart
    reliably, since closing a socket with unread bytes sends a reset),
    truncated (EOF after a prefix), altered (other bytes), reset (after some
    bytes) or hung (nothing for `timeout` s). half_close=False: the caller
    waits for its answer without a FIN, as an RPC client on a kept-alive
    connection does, so the dependency has no end of input to react to.
    reset_seen=True: a reset that arrives before the caller read anything is
    "reset" too (the caller's kernel drops bytes it had not read yet when the
    reset lands, and it may land before the caller's send or half-close: a
    race), while a clean EOF without bytes stays "nothing"."""
    t0 = time.monotonic()
    got = bytearray()
    try:
        with socket.create_connection(addr, timeout=timeout) as c:
            c.sendall(payload)
            if half_close:
                c.shutdown(socket.SHUT_WR)
            while True:
                d = c.recv(1 << 16)
                if not d:
                    break
                got += d
                if not half_close and len(got) >= len(payload):
                    break  # the whole answer: done (the echo server would wait for more)
    except socket.timeout:
        return "hung", time.monotonic() - t0, len(got)
    except OSError as e:  # reset, broken pipe, or not connected any more at shutdown
        # ECONNRESET at a read, EPIPE at a send, ENOTCONN at the half-close:
        # each only after the connection was reset
        was_reset = got or (reset_seen and e.errno in (errno.ECONNRESET, errno.EPIPE,
                                                       errno.ENOTCONN))
        return ("reset" if was_reset else "nothing"), time.monotonic() - t0, len(got)
    dt = time.monotonic() - t0
    if bytes(got) == payload:
        return "ok", dt, len(got)
    if not got:
        return "nothing", dt, 0
    if payload.startswith(bytes(got)):
        return "truncated", dt, len(got)
    return "altered", dt, len(got)


class Rig(mu.RigBase):
    """The dependency behind the harness, the healthy upstream, and cynic."""

    def __init__(self, dep_endpoint=None, backend=None, dep=DEP):
        self.backend = backend or pu.echo()
        self.healthy = pu.echo()
        self.harness = Harness()
        proxy = self.harness.create("dep", self.backend.endpoint)
        self.dep = dep_endpoint or proxy["listen"]
        self.px = pu.Cynic(pu.config(
            pu.listener("app", "dep") + pu.listener("other", "healthy"),
            pu.upstream("dep", [self.dep], dep) + pu.upstream("healthy", [self.healthy.endpoint])))
        self.app, self.other = self.px.addr("app"), self.px.addr("other")
        for _ in range(5):  # warm up both paths, then take the baseline
            if dep_endpoint is None:  # (a given endpoint may be the fault itself)
                assert call(self.app)[0] == "ok"
            assert call(self.other)[0] == "ok"
        self.watch(mu.Monitor(self.probe_healthy, "ok", HEALTHY_WORST))

    def probe_healthy(self):
        out, dt, _ = call(self.other, b"h" * 64, timeout=5)
        return out, dt

    def close(self):
        self.monitor.halt.set()
        self.px.stop()
        self.harness.stop()
        self.backend.close()
        self.healthy.close()


@pytest.fixture
def rig():
    r = Rig()
    yield r
    r.close()


@pytest.fixture(scope="module")
def certs():
    c, tmp = tu.make_certs()
    yield c
    tmp.cleanup()


def tls_dep(certs):
    """DEP for a dependency that speaks TLS: `tls` verified against the test
    CA (name localhost) and `timeouts.tls_handshake` TLS_HANDSHAKE. The
    callers still speak plain TCP to cynic (TCP mode wrapping the
    dependency's protocol in TLS); the backend is a TLS echo server (the
    integration tests' tlsutil)."""
    return DEP.replace("first_byte: 1s", f"tls_handshake: {int(TLS_HANDSHAKE * 1000)}ms, first_byte: 1s") + \
        f"tls: {{ server_name: localhost, ca_file: \"{certs.ca.cert}\" }}\n"


@pytest.fixture
def tls_rig(certs):
    r = Rig(backend=tu.TlsServer(certs.server, tu.ECHO), dep=tls_dep(certs))
    yield r
    r.close()


# ---- the two shapes of a row -------------------------------------------------

def breaker_row(rig, row, inject, clear, expect, bound, half_close=True, timed=False):
    """A fault the breaker must count: `faults` calls each end as `expect`
    within bound + MARGIN (timed: each one ended by that timeout, so no
    sooner than the bound), the breaker opens, later calls are closed at once,
    and after the fault clears a probe closes it again."""
    name = inject()
    outcomes, worst, last_start = [], 0.0, None
    for _ in range(FAULTS):
        last_start = time.time()
        out, dt, _ = call(rig.app, timeout=bound + 10, half_close=half_close)
        outcomes.append(out)
        worst = max(worst, dt)
        assert not timed or dt >= bound - 0.05, f"a call ended after {dt:.3f}s, before the {bound}s timeout"
    assert outcomes == [expect] * FAULTS, outcomes
    assert worst <= bound + MARGIN, f"a caller waited {worst:.3f}s (bound {bound}s)"
    # it opened, and not before the last of the `faults` calls began (the
    # log line may reach us after the call ends: compare the log's time)
    pu.wait_for(rig.transitions, timeout=5, what="the breaker to open")
    opened = rig.transitions()[0]
    assert opened[:3] == ("closed", "open", "fault_threshold"), opened
    assert opened[3] >= last_start - 0.005, "the breaker opened before the last fault"
    fast = []
    for _ in range(5):
        out, dt, _ = call(rig.app)
        assert out == "nothing", out
        fast.append(dt)
    assert max(fast) < AT_ONCE, f"fail fast took {max(fast):.3f}s"
    clear(name)
    rig.wait_closed(lambda: call(rig.app)[0] == "ok", OPEN_FOR)
    ts = rig.transitions()
    assert [t[:2] for t in ts] == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")], ts
    healthy, rss = rig.finish()
    record(row, caller_sees=expect, breaker="opens after 3 faults, fails fast, closes after recovery",
           bound_ms=ms(bound), worst_ms=ms(worst), detect_ms=ms(opened[3] - rig.injected),
           recover_ms=ms(ts[2][3] - rig.cleared), fail_fast_us=round(statistics.median(fast) * 1e6),
           healthy_worst_ms=ms(healthy), rss_delta_kb=rss)


def pass_row(rig, row, inject, clear, expect, bound, lower=0.0, calls=5, reset_seen=False):
    """A fault TCP mode passes on as it is: every call ends as `expect`
    within [lower, bound + MARGIN], the breaker stays closed, and calls are
    whole again once the fault clears."""
    name = inject()
    worst, first = 0.0, None
    for _ in range(calls):
        out, dt, n = call(rig.app, timeout=bound + 10, reset_seen=reset_seen)
        assert out == expect, (out, dt, n)
        assert lower <= dt <= bound + MARGIN, f"call took {dt:.3f}s, expected {lower}..{bound}s"
        worst = max(worst, dt)
        first = dt if first is None else first
    assert rig.transitions() == [], rig.transitions()
    clear(name)
    t0 = time.monotonic()
    pu.wait_for(lambda: call(rig.app)[0] == "ok", timeout=10, what="whole calls again")
    recovered = time.monotonic() - t0
    healthy, rss = rig.finish()
    record(row, caller_sees=expect, breaker="stays closed", bound_ms=ms(bound), worst_ms=ms(worst),
           detect_ms=ms(first), recover_ms=ms(recovered), fail_fast_us=None,
           healthy_worst_ms=ms(healthy), rss_delta_kb=rss)


def row(id_, fault, injected_by, protection):
    return {"id": id_, "fault": fault, "injected_by": injected_by, "protection": protection}


# ---- faults the breaker must count -------------------------------------------

def test_refused(rig):
    breaker_row(rig, row("01-refused", "refused connection", "`refuse`",
                         "breaker (connect refused is a fault)"),
                lambda: rig.toxic("refuse"), rig.clear, "nothing", CONNECT)


def test_blackhole(rig):
    breaker_row(rig, row("02-blackhole", "accepts, never answers (black hole)", "`blackhole`",
                         "first-byte timeout, breaker"),
                lambda: rig.toxic("blackhole"), rig.clear, "nothing", FIRST_BYTE, timed=True)


def test_silence(rig):
    # the caller does not half-close: with a FIN to pass on, the harness's
    # timeout toxic closes (as Toxiproxy's), which is the dependency hanging up
    breaker_row(rig, row("03-silence", "accepts, then silence (the caller waits without a FIN)",
                         "`timeout` (0: never closes)", "first-byte timeout, breaker"),
                lambda: rig.toxic("timeout", timeout=0), rig.clear, "nothing", FIRST_BYTE,
                half_close=False, timed=True)


def test_latency_past_first_byte(rig):
    breaker_row(rig, row("04-latency-high", "latency past the first-byte timeout (3 s)",
                         "`latency` 3000 ms", "first-byte timeout, breaker"),
                lambda: rig.toxic("latency", latency=3000), rig.clear, "nothing", FIRST_BYTE, timed=True)


def test_reset_before_first_byte(rig):
    breaker_row(rig, row("05-reset-early", "reset before the first byte", "`reset_peer` 0 ms (upstream)",
                         "breaker (reset before the first byte is a fault); the reset reaches the caller"),
                lambda: rig.toxic("reset_peer", stream="upstream", timeout=0), rig.clear, "nothing",
                CONNECT)


# ---- faults TCP mode passes on -----------------------------------------------

def test_latency_with_jitter(rig):
    pass_row(rig, row("10-latency-jitter", "latency with jitter under the bound (150 ± 100 ms)",
                      "`latency` 150, jitter 100", "none needed: under the first-byte timeout"),
             lambda: rig.toxic("latency", latency=150, jitter=100), rig.clear, "ok", 0.25)


def test_bandwidth(rig):
    # 4 KB at 2 KB/s: about 2 s, bytes flowing all along (the idle timeout,
    # 2 s of no bytes at all, never fires)
    pass_row(rig, row("11-bandwidth", "slow bytes (2 KB/s)", "`bandwidth` rate 2",
                      "none in TCP mode: bytes keep flowing, so idle never fires; "
                      "a whole-exchange deadline is HTTP mode's `timeouts.request`"),
             lambda: rig.toxic("bandwidth", rate=2), rig.clear, "ok", 2.0, lower=1.0, calls=2)


def test_slicer(rig):
    # 4 KB in ~64-byte pieces 5 ms apart: about 0.3 s
    pass_row(rig, row("12-slicer", "bytes in small slices", "`slicer` 64 ± 32 B, 5 ms apart",
                      "none needed: the relay forwards what arrives"),
             lambda: rig.toxic("slicer", average_size=64, size_variation=32, delay=5000), rig.clear,
             "ok", 0.6, lower=0.1)


def test_reset_mid_response(rig):
    pass_row(rig, row("13-reset-mid", "reset mid-response (after 1 KB)", "`reset_after_bytes` 1024",
                      "the reset is passed on as a reset, so the caller knows the answer is cut; "
                      "not a breaker fault (the endpoint answered)"),
             lambda: rig.toxic("reset_after_bytes", bytes=1024), rig.clear, "reset", 0.1,
             reset_seen=True)


def test_truncated(rig):
    pass_row(rig, row("14-truncated", "truncated response (1 KB of 4 KB, then FIN)", "`limit_data` 1024",
                      "none in TCP mode: a FIN is a FIN; HTTP mode's framing will tell"),
             lambda: rig.toxic("limit_data", bytes=1024), rig.clear, "truncated", 0.1)


def test_garbage(rig):
    pass_row(rig, row("15-garbage", "garbage bytes", "`garbage` 512",
                      "none in TCP mode: bytes are opaque; HTTP mode rejects a malformed head"),
             lambda: rig.toxic("garbage", bytes=512), rig.clear, "altered", 0.1)


def test_slow_close(rig):
    # the FIN is held 5 s; every byte has arrived, then nothing moves for
    # `idle` (2 s), and cynic closes both sides
    pass_row(rig, row("16-slow-close", "slow close (FIN held 5 s)", "`slow_close` 5000",
                      "idle timeout ends the connection"),
             lambda: rig.toxic("slow_close", delay=5000), rig.clear, "ok", IDLE, lower=IDLE - 0.1, calls=2)


# ---- a dependency that speaks TLS (cynic verifies it) --------------------------

def test_tls_blackhole_in_the_handshake(tls_rig):
    breaker_row(tls_rig, row("30-tls-blackhole", "TLS: accepts, never answers the ClientHello",
                             "`blackhole`, upstream with `tls`",
                             "TLS handshake timeout (`tls_handshake_timeout`), breaker"),
                lambda: tls_rig.toxic("blackhole"), tls_rig.clear, "nothing", TLS_HANDSHAKE, timed=True)


def test_tls_garbage_in_the_handshake(tls_rig):
    breaker_row(tls_rig, row("31-tls-garbage", "TLS: garbage instead of the server's handshake",
                             "`garbage` 512, upstream with `tls`",
                             "the handshake fails (`tls_failed`, protocol), breaker"),
                lambda: tls_rig.toxic("garbage", bytes=512), tls_rig.clear, "nothing", CONNECT)


def test_tls_reset_in_the_handshake(tls_rig):
    breaker_row(tls_rig, row("32-tls-reset", "TLS: reset during the handshake",
                             "`reset_peer` 0 ms (upstream), upstream with `tls`",
                             "the handshake fails (`tls_failed`, closed), breaker"),
                lambda: tls_rig.toxic("reset_peer", stream="upstream", timeout=0), tls_rig.clear,
                "nothing", CONNECT)


def test_tls_latency_under_the_bound(tls_rig):
    # 100 ms each way on the handshake's flights and on the echo: well under
    # tls_handshake (0.5 s) and first_byte (1 s)
    pass_row(tls_rig, row("33-tls-latency", "TLS: latency under the bounds (100 ms)",
                          "`latency` 100, upstream with `tls`",
                          "none needed: the handshake and the answer come in time"),
             lambda: tls_rig.toxic("latency", latency=100), tls_rig.clear, "ok", 0.6)


def test_tls_records_in_slices(tls_rig):
    # the handshake's flights and the echoed records in ~64-byte pieces, 2 ms
    # apart: the engine puts records together from whatever arrives
    pass_row(tls_rig, row("34-tls-slicer", "TLS: records cut in small slices",
                          "`slicer` 64 ± 32 B, 2 ms apart, upstream with `tls`",
                          "none needed: the TLS engine reassembles records from partial reads"),
             lambda: tls_rig.toxic("slicer", average_size=64, size_variation=32, delay=2000),
             tls_rig.clear, "ok", 0.6, lower=0.05)


# ---- the rest: their own shapes ----------------------------------------------

def test_idle_after_first_bytes(rig):
    """The dependency answers, then goes silent mid-conversation: the idle
    timeout closes both sides `idle` after the last byte either way."""
    r = row("20-idle", "silence mid-conversation", "`timeout` added to a live connection",
            "idle timeout")
    c = socket.create_connection(rig.app, timeout=10)
    c.sendall(b"a" * 100)
    assert recv_exactly(c, 100) == b"a" * 100
    name = rig.toxic("timeout", timeout=0)
    c.sendall(b"b" * 100)
    gone = pu.closed_within(c, IDLE + MARGIN + 5)
    c.close()
    assert gone is not None, "the connection was never closed"
    assert IDLE - 0.1 <= gone <= IDLE + MARGIN, f"closed after {gone:.3f}s (idle {IDLE}s)"
    assert rig.transitions() == []
    rig.clear(name)
    t1 = time.monotonic()
    pu.wait_for(lambda: call(rig.app)[0] == "ok", timeout=10, what="whole calls again")
    healthy, rss = rig.finish()
    record(r, caller_sees="closed after the idle timeout", breaker="stays closed", bound_ms=ms(IDLE), worst_ms=ms(gone),
           detect_ms=ms(gone), recover_ms=ms(time.monotonic() - t1),
           fail_fast_us=None, healthy_worst_ms=ms(healthy), rss_delta_kb=rss)


def test_endless_response(rig):
    """An endless response: a caller that reads gets bytes until it hangs up;
    callers that stop reading cost cynic at most its bounded buffers (back
    pressure: the dependency is read no faster than the caller reads) and are
    cut by the idle timeout once nothing has moved for `idle`."""
    r = row("21-flood", "endless response", "`flood` 0 (endless)",
            "back pressure (bounded buffers); the idle timeout cuts a caller that stopped reading")
    name = rig.toxic("flood", bytes=0)
    held = []
    for _ in range(3):
        c = socket.socket()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.settimeout(10)
        c.connect(rig.app)
        c.sendall(b"x")
        held.append(c)
    t0 = time.monotonic()
    with socket.create_connection(rig.app, timeout=10) as reader:
        reader.sendall(b"x")
        got = 0
        while got < (16 << 20):
            d = reader.recv(1 << 16)
            assert d, f"the endless response ended after {got} bytes"
            got += len(d)
    worst = time.monotonic() - t0
    time.sleep(max(0.0, 1.2 - worst))  # every buffer on the way is full by now, under `idle`
    grown = pu.rss_kb(rig.px.pid) - rig.base_rss
    assert grown < RSS_MARGIN_KB, f"RSS grew {grown} KB with 3 callers not reading an endless response"
    # cynic lets go of them (both sockets closed: its descriptor count is
    # back to the baseline) `idle` after the last byte moved. (The caller
    # may not see the FIN yet: it waits behind the bytes it has not read.)
    pu.wait_for(lambda: fds(rig.px.pid) <= rig.base_fds, timeout=IDLE + MARGIN + 5,
                what="cynic to let go of the callers that stopped reading")
    cut_after = time.monotonic() - t0
    for c in held:
        c.close()
    assert IDLE - 0.1 <= cut_after <= IDLE + 1.2 + MARGIN, f"cut after {cut_after:.3f}s (idle {IDLE}s)"
    assert rig.transitions() == []
    rig.clear(name)
    t1 = time.monotonic()
    pu.wait_for(lambda: call(rig.app)[0] == "ok", timeout=10, what="whole calls again")
    healthy, rss = rig.finish()
    record(r, caller_sees="bytes until it hangs up (16 MB read); a caller that stops reading is cut",
           breaker="stays closed", bound_ms=ms(IDLE), worst_ms=ms(cut_after), detect_ms=ms(cut_after),
           recover_ms=ms(time.monotonic() - t1), fail_fast_us=None, healthy_worst_ms=ms(healthy),
           rss_delta_kb=grown)


def test_bulkhead_holds_a_hanging_dependency(rig):
    """12 callers at once to a black hole: 4 hold the bulkhead's slots until
    the first-byte timeout, 2 wait in its queue for queue_timeout, 6 are
    closed at once; the healthy upstream never notices."""
    r = row("22-bulkhead", "a hanging dependency under load (12 callers at once)", "`blackhole`",
            "bulkhead: 4 slots, 2 queued for 200 ms, the rest closed at once")
    name = rig.toxic("blackhole")
    results = [None] * 12
    def one(i):
        results[i] = call(rig.app, timeout=FIRST_BYTE + 10)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(FIRST_BYTE + 15)
    assert all(x is not None for x in results), results
    assert all(x[0] == "nothing" for x in results), results
    times = sorted(x[1] for x in results)
    slow = [t for t in times if t >= FIRST_BYTE - 0.05]
    assert len(slow) == MAX_CONNECTIONS, times
    assert max(times) <= FIRST_BYTE + MARGIN, times
    assert max(times[:-MAX_CONNECTIONS]) < FIRST_BYTE / 2, times
    rig.clear(name)
    t1 = time.monotonic()
    pu.wait_for(lambda: call(rig.app)[0] == "ok", timeout=OPEN_FOR + 15, interval=0.05,
                what="whole calls again")
    recover = time.monotonic() - t1
    healthy, rss = rig.finish()
    rig.px.stop()
    counts = rig.px.totals("upstream", "dep")
    assert counts.get("bulkhead_full") == 12 - MAX_CONNECTIONS - MAX_PENDING, counts
    assert counts.get("queue_timeout") == MAX_PENDING, counts
    record(r, caller_sees="nothing: 6 at once, 2 after the queue timeout, 4 after the first-byte timeout",
           breaker="opens (4 first-byte timeouts)", bound_ms=ms(FIRST_BYTE), worst_ms=ms(max(times)),
           detect_ms=ms(times[0]), recover_ms=ms(recover), fail_fast_us=round(times[0] * 1e6),
           healthy_worst_ms=ms(healthy), rss_delta_kb=rss)


def test_connect_hangs():
    """SYNs dropped (a full accept queue: what a firewall that drops packets
    looks like; the harness accepts every connection, so it cannot do this
    one): the connect timeout, then the breaker."""
    hole = pu.ConnectBlackHole()
    rig = Rig(dep_endpoint=hole.endpoint)
    port = hole.port
    state = {}
    def clear(_):
        hole.close()
        state["echo"] = pu.echo(port)
        rig.cleared = time.time()
    def inject():
        rig.injected = time.time()
        return None
    try:
        breaker_row(rig, row("06-connect-hangs", "connect never completes (SYNs dropped)",
                             "full accept queue (not a harness toxic)", "connect timeout, breaker"),
                    inject, clear, "nothing", CONNECT, timed=True)
    finally:
        rig.close()
        if "echo" in state:
            state["echo"].close()
        else:
            hole.close()


# ---- the document ------------------------------------------------------------

def test_zz_doc_matches_this_run():
    """docs/faults.md shows what this run observed (timings aside). Runs last
    (pytest keeps file order); skipped when only some rows ran."""
    expected_rows = len([k for k in globals() if k.startswith("test_") and k != "test_zz_doc_matches_this_run"])
    RESULTS.check_doc(expected_rows)
