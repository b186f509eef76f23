"""cynic-harness under churn: toxics of every type added, changed and removed
at random while clients push traffic. Nothing may crash, hang or leak (the
sanitizer build checks the last two at exit), the API must keep answering
fast, and after /reset a clean echo must work."""
import random
import socket
import threading
import time

from harness_util import Harness
from netutil import TcpServer, connect, echo_handler, recv_exactly

TYPES = {
    "latency": lambda r: {"latency": r.randint(0, 200), "jitter": r.randint(0, 50)},
    "bandwidth": lambda r: {"rate": r.randint(1, 10000)},
    "slow_close": lambda r: {"delay": r.randint(0, 300)},
    "timeout": lambda r: {"timeout": r.randint(0, 500)},
    "reset_peer": lambda r: {"timeout": r.randint(0, 300)},
    "slicer": lambda r: {"average_size": r.randint(2, 100), "size_variation": 1, "delay": r.randint(0, 2000)},
    "limit_data": lambda r: {"bytes": r.randint(0, 5000)},
    "refuse": lambda r: {},
    "blackhole": lambda r: {},
    "accept_delay": lambda r: {"delay": r.randint(0, 200)},
    "garbage": lambda r: {"bytes": r.randint(0, 5000)},
    "flood": lambda r: {"bytes": r.randint(1, 200000)},
    "reset_after_bytes": lambda r: {"bytes": r.randint(0, 5000)},
    "http_latency": lambda r: {"latency": r.randint(0, 100)},
    "http_status": lambda r: {"status": r.choice([500, 503, 429]), "percent": r.randint(0, 100)},
    "http_drop_first_n": lambda r: {"n": r.randint(0, 3)},
    "http_content_type": lambda r: {"content_type": "text/html"},
}


def client_loop(port, stop, rnd):
    while not stop.is_set():
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=1)
            s.settimeout(0.5)
            payload = rnd.randbytes(rnd.choice([1, 100, 5000, 70000]))
            s.sendall(payload)
            if rnd.random() < 0.3:
                s.shutdown(socket.SHUT_WR)
            try:
                while s.recv(65536):
                    pass
            except OSError:
                pass
            s.close()
        except OSError:
            time.sleep(0.01)


def test_random_toxic_churn_under_traffic():
    rnd = random.Random(1234)
    h = Harness(seed=99)
    up = TcpServer(echo_handler)
    stop = threading.Event()
    threads = []
    try:
        p = h.create("chaos", up.address)
        port = h.listen_port(p)
        for i in range(4):
            t = threading.Thread(target=client_loop, args=(port, stop, random.Random(i)), daemon=True)
            t.start()
            threads.append(t)
        names = []
        worst = 0.0
        deadline = time.monotonic() + 4
        n = 0
        while time.monotonic() < deadline:
            n += 1
            action = rnd.random()
            t0 = time.monotonic()
            if action < 0.45 or not names:
                typ = rnd.choice(list(TYPES))
                name = f"t{n}"
                st, _, raw = h.api.post("/proxies/chaos/toxics", {
                    "name": name, "type": typ, "stream": rnd.choice(["upstream", "downstream"]),
                    "toxicity": rnd.choice([0, 0.5, 1]), "attributes": TYPES[typ](rnd)})
                assert st in (200, 400, 507), raw
                if st == 200:
                    names.append(name)
            elif action < 0.65:
                name = rnd.choice(names)
                st, _, raw = h.api.patch(f"/proxies/chaos/toxics/{name}", {"toxicity": rnd.random()})
                assert st == 200, raw
            elif action < 0.93:
                name = names.pop(rnd.randrange(len(names)))
                st, _, raw = h.api.delete(f"/proxies/chaos/toxics/{name}")
                assert st == 204, raw
            elif action < 0.97:
                st, _, raw = h.api.post("/proxies/chaos", {"enabled": rnd.random() < 0.5})
                assert st == 200, raw
            else:
                assert h.api.post("/reset")[0] == 204
                names.clear()
            worst = max(worst, time.monotonic() - t0)
            time.sleep(0.005)
        assert n > 100
        assert worst < 1.0, worst
        stop.set()
        for t in threads:
            t.join(10)
        assert h.api.post("/reset")[0] == 204
        s = connect(port)
        s.sendall(b"after the storm")
        assert recv_exactly(s, 15) == b"after the storm"
        s.close()
        st, _, raw = h.api.request("GET", "/events?since=0&limit=10")
        assert st == 200 and raw
    finally:
        stop.set()
        up.close()
        h.stop()


HTTP_TYPES = {k: v for k, v in TYPES.items() if k.startswith("http_")}
HTTP_TYPES["latency"] = TYPES["latency"]
HTTP_TYPES["slicer"] = TYPES["slicer"]


def http_client_loop(port, stop, rnd, errors):
    import http.client
    while not stop.is_set():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            for i in range(rnd.randint(1, 5)):
                if rnd.random() < 0.3:
                    conn.request("POST", f"/p{i}", body=rnd.randbytes(rnd.randint(0, 3000)))
                else:
                    conn.request("GET", f"/g{i}")
                conn.getresponse().read()
        except (OSError, http.client.HTTPException):
            errors.append(1)  # toxics do break requests: that is their job
        finally:
            conn.close()


def test_random_http_toxic_churn_keepalive():
    import http.server

    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            body = b"x" * 1000
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            data = self.rfile.read(n)
            self.send_response(201)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    rnd = random.Random(77)
    h = Harness(seed=3)
    stop = threading.Event()
    errors = []
    threads = []
    try:
        p = h.create("hchaos", f"127.0.0.1:{srv.server_address[1]}")
        port = h.listen_port(p)
        for i in range(3):
            t = threading.Thread(target=http_client_loop, args=(port, stop, random.Random(i), errors),
                                 daemon=True)
            t.start()
            threads.append(t)
        names = []
        deadline = time.monotonic() + 4
        n = 0
        while time.monotonic() < deadline:
            n += 1
            if rnd.random() < 0.5 or not names:
                typ = rnd.choice(list(HTTP_TYPES))
                st, _, raw = h.api.post("/proxies/hchaos/toxics", {
                    "name": f"h{n}", "type": typ, "stream": rnd.choice(["upstream", "downstream"]),
                    "attributes": HTTP_TYPES[typ](rnd)})
                assert st in (200, 400), raw
                if st == 200:
                    names.append(f"h{n}")
            else:
                name = names.pop(rnd.randrange(len(names)))
                assert h.api.delete(f"/proxies/hchaos/toxics/{name}")[0] == 204
            time.sleep(0.01)
        stop.set()
        for t in threads:
            t.join(10)
        assert h.api.post("/reset")[0] == 204
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/clean")
        r = conn.getresponse()
        assert r.status == 200 and r.read() == b"x" * 1000
        conn.close()
    finally:
        stop.set()
        h.stop()
        srv.shutdown()
        srv.server_close()
