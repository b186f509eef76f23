"""Slowloris against HTTP mode (issue 13): many clients each sending a
request head one byte per second. The listener's `timeouts.header` runs from
a request's first byte to the end of its head (docs/design-http.md,
"Timeouts"): each slow client gets 408 (Cynic-Answer: header_timeout) and is
closed when it passes, while a normal client on the same listener keeps
getting its answers; afterwards cynic holds no connection at all. The RSS
each slow connection cost cynic is printed (measured, not asserted)."""
import resource
import select
import socket
import threading
import time

import adminutil as au
import proxyutil as pu

SLOW = pu.sanitized()
COUNT = 300 if SLOW else 2000   # slow clients, all open at once
HEADER = 2.5                    # s: the listener's timeouts.header, between two bytes
LATE = 10.0 if SLOW else 3.0    # s past HEADER a 408 may come (2,000 timers fire at once)
NORMAL_WORST = 3.0 if SLOW else 2.0  # s: the normal client's worst call: generous, under HEADER
HEAD = b"GET /slow HTTP/1.1\r\nHost: app\r\nUser-Agent: slowloris\r\n\r\n"  # never all sent
OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


def backend_handler(conn):
    """Keep-alive HTTP/1.1: 200 "ok" to every request head."""
    buf = b""
    while True:
        while b"\r\n\r\n" not in buf:
            data = conn.recv(65536)
            if not data:
                return
            buf += data
        buf = buf[buf.index(b"\r\n\r\n") + 4:]
        conn.sendall(OK)


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        assert hard == resource.RLIM_INFINITY or hard >= need, f"RLIMIT_NOFILE hard {hard} < {need}"
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def get_ok(addr):
    """One normal request on its own connection; returns the seconds it took."""
    t0 = time.monotonic()
    with socket.create_connection(addr, timeout=NORMAL_WORST + 10) as c:
        c.sendall(b"GET /fast HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")
        got = pu.recv_all(c)
    assert got.startswith(b"HTTP/1.1 200 OK\r\n") and got.endswith(b"\r\n\r\nok"), got
    return time.monotonic() - t0


class Normal(threading.Thread):
    """A normal client calling every 20 ms until stopped."""

    def __init__(self, addr):
        super().__init__(daemon=True)
        self.addr, self.times, self.errors, self.halt = addr, [], [], threading.Event()

    def run(self):
        while not self.halt.is_set():
            try:
                self.times.append(get_ok(self.addr))
            except (OSError, AssertionError) as e:
                self.errors.append(repr(e))
            self.halt.wait(0.02)


def test_slowloris_gets_408_after_the_header_timeout_and_normal_clients_are_served():
    raise_nofile(COUNT + 512)
    be = pu.Server(backend_handler)
    px = pu.Cynic(pu.config(
        pu.listener("app", "backend", "mode: http\ntimeouts: { header: 2500ms }"),
        pu.upstream("backend", [be.endpoint])), nofile=COUNT + 512)
    adm = au.Admin(px)
    addr = px.addr()
    slow, normal = [], Normal(addr)
    try:
        get_ok(addr)  # warm: the pool holds its upstream connection
        base_rss = pu.rss_kb(px.pid)
        # every slow client connects first (no byte yet: the header timer
        # starts at a request's first byte), so all of them are open at once
        for _ in range(COUNT):
            slow.append(socket.create_connection(addr, timeout=10))
        pu.wait_for(lambda: adm.status()["connections"] >= COUNT, timeout=30,
                    what=f"cynic to hold {COUNT} connections")
        normal.start()
        sent = [0] * COUNT
        answer = [b""] * COUNT
        first = [None] * COUNT  # monotonic time of its first byte
        ended = [None] * COUNT  # s from its first byte to EOF (or reset)
        reset = [False] * COUNT
        ep = select.epoll()
        index = {}
        for i, s in enumerate(slow):
            s.setblocking(False)
            ep.register(s.fileno(), select.EPOLLIN)
            index[s.fileno()] = i
        t0 = time.monotonic()
        peak_rss = peak_conns = 0
        tick = 0.0
        while any(e is None for e in ended):
            now = time.monotonic() - t0
            assert now < HEADER + LATE + 5, f"{sum(e is None for e in ended)} slow clients never closed"
            if now >= tick:
                # one more byte each, once a second; none to a client whose
                # answer has begun (a byte cynic never reads would turn its
                # close into a reset, and the 408 might be lost)
                readable = {index[fd] for fd, _ in ep.poll(0)}
                for i, s in enumerate(slow):
                    if ended[i] is None and not answer[i] and i not in readable and sent[i] < len(HEAD):
                        try:
                            s.send(HEAD[sent[i]:sent[i] + 1])
                        except OSError:
                            continue  # closed under our feet: the read below tells
                        sent[i] += 1
                        if first[i] is None:
                            first[i] = time.monotonic()
                if tick == 1.0:  # every slow client is mid-head (2 bytes in): measure
                    peak_rss = pu.rss_kb(px.pid)
                    peak_conns = adm.status()["connections"]
                tick += 1.0
            for fd, _ in ep.poll(0.05):
                i = index[fd]
                try:
                    data = slow[i].recv(4096)
                except ConnectionResetError:
                    data, reset[i] = b"", True
                except BlockingIOError:
                    continue
                if data:
                    answer[i] += data
                else:
                    ended[i] = time.monotonic() - first[i]
                    ep.unregister(fd)
        ep.close()
        normal.halt.set()
        normal.join(NORMAL_WORST + 15)

        bad = [(i, answer[i][:60], reset[i]) for i in range(COUNT)
               if not answer[i].startswith(b"HTTP/1.1 408 ") or b"\r\nCynic-Answer: header_timeout\r\n" not in answer[i]]
        assert not bad, f"{len(bad)} slow clients without a 408 header_timeout, e.g. {bad[:3]}"
        assert min(sent) >= int(HEADER) + 1, min(sent)  # bytes at 0, 1 and 2 s at least
        early = min(ended)
        late = max(ended)
        # cynic stamps the deadline with its loop's time, read once per turn:
        # a turn busy with 2,000 reads may stamp it a little before the byte
        assert early >= HEADER - 0.25, f"a slow client was closed {early:.3f}s after its first byte"
        assert late <= HEADER + LATE, f"a slow client was closed only {late:.3f}s after its first byte"
        assert peak_conns >= COUNT, peak_conns
        assert not normal.errors, normal.errors[:3]
        assert normal.times, "the normal client never ran"
        worst = max(normal.times)
        assert worst < NORMAL_WORST, f"the normal client's worst call {worst:.3f}s"
        pu.wait_for(lambda: adm.status()["connections"] == 0, timeout=10,
                    what="cynic's open connections back to 0")
        per_conn = (peak_rss - base_rss) * 1024 / COUNT
        print(f"\nslowloris: {COUNT} slow clients, 408 after {early:.3f}..{late:.3f} s "
              f"(timeouts.header {HEADER} s); normal client: {len(normal.times)} calls, worst "
              f"{worst * 1000:.1f} ms; cynic RSS {base_rss} KB -> {peak_rss} KB with all of them "
              f"mid-head: {per_conn:.0f} bytes per slow connection; {sum(reset)} closes were resets")
    finally:
        normal.halt.set()
        for s in slow:
            s.close()
        px.stop()
        be.close()
    counts = px.totals("listener", "app")
    assert counts.get("header_timeout") == COUNT, counts
