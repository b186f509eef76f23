"""The admin listener's API, black box: /status, /breakers and manual breaker
control (seen in real traffic through the proxy), /health, /ready (503 under
drain, over capacity and when a required upstream is all open), /drain, the
bearer token, and every error (404, 405 with Allow, 400, 401)."""
import os
import socket
import subprocess
import time

import adminutil as au
import netutil
import proxyutil as pu


exchange = pu.exchange


def two_upstreams(a, b, refused, extra_b=""):
    return pu.config(
        pu.listener("app", "backend") + pu.listener("other", "db"),
        pu.upstream("backend", [a.endpoint, b.endpoint]) +
        pu.upstream("db", [refused.endpoint], "required: true\nbreaker: { faults: 2, leak: 60s, open_for: 60s }\n" + extra_b))


def test_status_health_breakers_and_errors():
    a, b, bad = pu.echo(), pu.echo(), pu.Refused()
    px = pu.Cynic(two_upstreams(a, b, bad))
    adm = au.Admin(px)
    try:
        st = adm.status()
        assert st["version"] and st["pid"] == px.pid and st["uptime_s"] >= 0
        assert st["config"]["file"] == px.config and st["config"]["loaded"].endswith("Z")
        assert st["ready"] is True and st["draining"] is False
        ls = {l["name"]: l for l in st["listeners"]}
        assert ls["app"]["address"] == "%s:%d" % px.addr("app")
        assert ls["app"]["mode"] == "tcp" and ls["app"]["upstream"] == "backend"
        assert ls["app"]["open"] == 0 and ls["app"]["max_connections"] == 10000
        us = {u["name"]: u for u in st["upstreams"]}
        assert us["db"]["required"] is True and us["backend"]["required"] is False
        assert us["backend"]["bulkhead"] == {"in_use": 0, "limit": 100, "pending": 0, "pending_limit": 50,
                                             "rejected_full": 0, "queue_timeouts": 0}
        eps = [e["name"] for e in us["backend"]["endpoints"]]
        assert eps == [a.endpoint, b.endpoint]
        br = us["backend"]["endpoints"][0]["breaker"]
        assert br["state"] == "closed" and br["reason"] == "none" and br["bucket_level"] == 0
        assert br["faults_to_trip"] == 5 and br["next_probe_s"] == 0
        assert st["transitions"] == []

        status, h, js, _ = adm.get("/health")
        assert status == 200 and js["status"] == "alive"
        status, _, js, _ = adm.get("/ready")
        assert (status, js["ready"]) == (200, True)

        status, _, js, _ = adm.get("/breakers")
        assert status == 200 and [u["upstream"] for u in js["upstreams"]] == ["backend", "db"]
        status, _, js, _ = adm.get("/breakers/backend")
        assert status == 200 and len(js["endpoints"]) == 2
        # an endpoint is named as in the config, URL-encoded or not
        for path in (f"/breakers/backend/{b.endpoint}", "/breakers/backend/" + b.endpoint.replace(":", "%3A")):
            status, _, js, _ = adm.get(path)
            assert status == 200 and js["endpoint"]["name"] == b.endpoint, path

        # errors: JSON with a message and the status
        for path, code, text in [
            ("/nope", 404, "not found"),
            ("/breakers/nope", 404, "no upstream named 'nope'"),
            ("/breakers/nope/trip", 404, "no upstream named 'nope'"),
            ("/breakers/backend/10.9.9.9:1", 404, "upstream 'backend' has no endpoint '10.9.9.9:1'"),
            ("/breakers/backend/10.9.9.9:1/trip", 404, "has no endpoint"),
        ]:
            status, _, js, _ = adm.get(path)
            assert status == code and text in js["error"] and js["status"] == code, (path, js)
        for method, path, allow in [("POST", "/status", "GET"), ("DELETE", "/metrics", "GET"),
                                    ("GET", "/drain", "POST"), ("GET", "/breakers/backend/trip", "POST"),
                                    ("PUT", "/breakers", "GET"), ("POST", "/health", "GET"),
                                    ("POST", "/ready", "GET")]:
            status, h, js, _ = adm.request(method, path)
            assert status == 405 and h["allow"] == allow and "not allowed" in js["error"], (method, path)
        for raw, text in [(b"{", "bad JSON body"), (b"[1]", "expected an object"),
                          (b'{"reason": 5}', "reason")]:
            status, _, js, _ = adm.request("POST", "/breakers/backend/trip", raw=raw,
                                           headers={"Content-Type": "application/json"})
            assert status == 400 and text in js["error"], (raw, js)
        # a refused change changed nothing
        assert adm.breaker("backend", a.endpoint)["state"] == "closed"
        # the status page is there too
        status, h, _, raw = adm.get("/")
        assert status == 200 and h["content-type"].startswith("text/html") and raw.lower().startswith(b"<!doctype html")
        # self-contained: no script, style sheet or image from anywhere else
        import re
        assert not re.search(rb'(src|href)\s*=\s*["\']?(https?:)?//', raw), "external resource"
        assert b"<script src" not in raw and b"<link" not in raw
    finally:
        px.stop()
        a.close(), b.close(), bad.close()


def test_trip_closes_clients_at_once_and_reset_lets_traffic_through():
    a = pu.echo()
    px = pu.Cynic(pu.config(pu.listener("app", "backend"), pu.upstream("backend", [a.endpoint])))
    adm = au.Admin(px)
    try:
        assert exchange(px)
        status, _, js, _ = adm.post("/breakers/backend/trip", {"reason": "db migration"})
        assert status == 200 and js["endpoints"][0]["breaker"]["state"] == "forced_open"
        assert js["endpoints"][0]["breaker"]["next_probe_s"] is None  # until an operator acts
        accepted = a.accepted
        for _ in range(5):
            with px.connect() as c:
                took = pu.closed_within(c, 5)
                assert took is not None and took < 1.0, took
        assert a.accepted == accepted  # nobody reached the upstream
        assert not exchange(px)
        # logged with who and why, in the log and in /status
        rec = px.wait_log(lambda r: r.get("msg") == "breaker changed by an operator")
        assert rec["action"] == "trip" and rec["upstream"] == "backend" and rec["reason"] == "db migration"
        assert rec["by"].startswith("127.0.0.1:")
        st = adm.status()
        t = st["transitions"][0]
        assert (t["upstream"], t["endpoint"], t["from"], t["to"], t["reason"]) == \
            ("backend", a.endpoint, "closed", "forced_open", "manual_trip")
        assert t["why"] == "db migration" and t["by"] == rec["by"]
        assert st["upstreams"][0]["endpoints"][0]["breaker"]["changed_by"] == rec["by"]

        # a long reason is kept up to 127 bytes, cut at a character boundary
        status, _, js, _ = adm.post("/breakers/backend/trip", {"reason": "é" * 100})
        assert status == 200 and js["endpoints"][0]["breaker"]["change_reason"] == "é" * 63
        status, _, js, _ = adm.post("/breakers/backend/reset")
        assert status == 200 and js["endpoints"][0]["breaker"]["state"] == "closed"
        assert js["endpoints"][0]["breaker"]["reason"] == "manual_reset"
        assert exchange(px) and exchange(px)
        assert adm.status()["transitions"][0]["to"] == "closed"
        assert len(adm.status()["transitions"]) == 3
    finally:
        px.stop()
        a.close()


def test_per_endpoint_trip_and_force_closed():
    a, b, bad = pu.echo(), pu.echo(), pu.Refused()
    px = pu.Cynic(pu.config(
        pu.listener("app", "backend") + pu.listener("other", "db"),
        pu.upstream("backend", [a.endpoint, b.endpoint]) +
        pu.upstream("db", [bad.endpoint], "breaker: { faults: 2, leak: 60s, open_for: 60s }")))
    adm = au.Admin(px)
    try:
        path = "/breakers/backend/" + a.endpoint.replace(":", "%3A") + "/trip"
        status, _, js, _ = adm.post(path, {"reason": "draining node a"})
        assert status == 200 and js["endpoint"]["breaker"]["state"] == "forced_open"
        assert adm.breaker("backend", b.endpoint)["state"] == "closed"
        a0, b0 = a.accepted, b.accepted
        for _ in range(6):
            assert exchange(px)
        assert a.accepted == a0 and b.accepted == b0 + 6  # all to the other endpoint
        # forced closed: faults never open it; every client is tried
        status, _, js, _ = adm.post(f"/breakers/db/{bad.endpoint}/force_closed")
        assert status == 200 and js["endpoint"]["breaker"]["state"] == "forced_closed"
        for _ in range(5):
            assert not exchange(px, "other")
        br = adm.breaker("db", bad.endpoint)
        assert br["state"] == "forced_closed" and br["failures"] == 5 and br["rejected"] == 0
        # reset: automatic again, and two faults open it
        adm.post(f"/breakers/db/{bad.endpoint}/reset")
        for _ in range(2):
            assert not exchange(px, "other")
        pu.wait_for(lambda: adm.breaker("db", bad.endpoint)["state"] == "open", what="open")
        br = adm.breaker("db", bad.endpoint)
        assert br["reason"] == "fault_threshold" and 50 < br["next_probe_s"] <= 60
        assert "changed_by" not in br
    finally:
        px.stop()
        a.close(), b.close(), bad.close()


def test_ready_turns_503_when_a_required_upstream_is_all_open():
    a, b, bad = pu.echo(), pu.echo(), pu.Refused()
    px = pu.Cynic(two_upstreams(a, b, bad))
    adm = au.Admin(px)
    try:
        assert adm.get("/ready")[0] == 200
        # the not-required upstream all open: still ready
        adm.post("/breakers/backend/trip")
        assert adm.get("/ready")[0] == 200
        adm.post("/breakers/backend/reset")
        # the required one's only endpoint refuses: two faults open it
        for _ in range(2):
            assert not exchange(px, "other")
        status, _, js, _ = adm.get("/ready")
        assert status == 503 and js["ready"] is False and "required upstream db" in js["reason"]
        assert adm.status()["ready_reason"] == js["reason"]
        adm.post("/breakers/db/reset")
        assert adm.get("/ready")[0] == 200
    finally:
        px.stop()
        a.close(), b.close(), bad.close()


def test_ready_503_over_capacity():
    a = pu.echo()
    px = pu.Cynic(pu.config(pu.listener("app", "backend", "max_connections: 2"),
                            pu.upstream("backend", [a.endpoint])))
    adm = au.Admin(px)
    try:
        held = [px.connect(), px.connect()]
        for c in held:
            c.sendall(b"x")
            assert c.recv(1) == b"x"
        status, _, js, _ = adm.get("/ready")
        assert status == 503 and "over capacity" in js["reason"] and "app" in js["reason"]
        for c in held:
            c.close()
        pu.wait_for(lambda: adm.get("/ready")[0] == 200, what="ready again")
    finally:
        px.stop()
        a.close()


def test_drain_over_the_api():
    a = pu.echo()
    px = pu.Cynic(pu.config(pu.listener("app", "backend"), pu.upstream("backend", [a.endpoint]),
                            admin="  drain_timeout: 20s\n"))
    adm = au.Admin(px)
    try:
        held = px.connect()
        held.sendall(b"ping")
        assert held.recv(4) == b"ping"
        status, _, js, _ = adm.post("/drain")
        assert status == 202 and js["draining"] is True and js["connections"] == 1
        assert js["drain_timeout_s"] == 20
        px.wait_log(lambda r: r.get("msg") == "draining")
        status, _, js, _ = adm.get("/ready")
        assert status == 503 and js["reason"] == "draining"
        assert adm.status()["draining"] is True
        assert netutil.refused(px.addr()[1])  # no new clients
        # the open connection still works, and its end ends the process
        held.sendall(b"pong")
        assert held.recv(4) == b"pong"
        held.shutdown(socket.SHUT_WR)
        assert pu.recv_all(held) == b""
        held.close()
        assert px.proc.wait(15) == 0
        px._reader.join(5)  # exited: read every line it wrote
        assert px.logs(msg="drain requested")[0]["by"].startswith("127.0.0.1:")
    finally:
        px.stop()
        a.close()


def test_bearer_token():
    a = pu.echo()
    tokdir = __import__("tempfile").mkdtemp(prefix="cynic-token-")
    tok = os.path.join(tokdir, "token")
    with open(tok, "w") as f:
        f.write("s3cret-Token\n")
    px = pu.Cynic(pu.config(pu.listener("app", "backend"), pu.upstream("backend", [a.endpoint]),
                            admin=f"  token_file: {tok}\n"))
    adm = au.Admin(px)
    try:
        for path in ("/status", "/metrics", "/health", "/breakers", "/ready"):
            status, h, js, _ = adm.get(path)
            assert status == 401 and "missing bearer token" in js["error"], path
            assert h["www-authenticate"].startswith("Bearer")
        for bad in ("s3cret-Toke", "s3cret-Token2", "S3cret-Token", "x"):
            status, _, js, _ = adm.get("/status", token=bad)
            assert status == 401 and js["error"] == "bad bearer token", bad
        status, _, js, _ = adm.request("GET", "/status", headers={"Authorization": "Basic czNjcmV0"})
        assert status == 401
        status, _, js, _ = adm.post("/breakers/backend/trip", token="wrong")
        assert status == 401  # and nothing changed:
        assert adm.get("/breakers/backend", token="s3cret-Token")[2]["endpoints"][0]["breaker"]["state"] == "closed"
        assert adm.get("/status", token="s3cret-Token")[0] == 200
        assert adm.get("/ready", token="s3cret-Token")[0] == 200
        assert adm.get("/")[0] == 200  # the page itself holds no data
    finally:
        px.stop()
        a.close()
        os.unlink(tok)
        os.rmdir(tokdir)


def test_remote_admin_without_token_refuses_to_start(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("admin:\n  listen: 0.0.0.0:0\nlisteners:\n  - name: app\n    listen: 127.0.0.1:0\n"
                   "    upstream: b\nupstreams:\n  - name: b\n    endpoints: [127.0.0.1:9]\n")
    r = subprocess.run([pu.CYNIC, "-c", str(cfg)], capture_output=True, timeout=20)
    assert r.returncode == 2 and b"has no token_file" in r.stderr
    cfg.write_text(cfg.read_text().replace("  listen: 0.0.0.0:0\n", "  listen: 0.0.0.0:0\n  allow_remote: true\n"))
    px = pu.Cynic(cfg.read_text())
    try:
        adm = au.Admin(px)
        assert adm.port > 0 and adm.get("/health")[0] == 200
    finally:
        px.stop()


def test_admin_address_in_use_exits_1():
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        cfg = os.path.join(d, "c.yaml")
        with open(cfg, "w") as f:
            f.write(pu.config(pu.listener("app", "b"), pu.upstream("b", ["127.0.0.1:9"])).replace(
                "127.0.0.1:0\nlog", f"127.0.0.1:{port}\nlog", 1))
        t0 = time.monotonic()
        r = subprocess.run([pu.CYNIC, "-c", cfg], capture_output=True, timeout=20)
        assert r.returncode == 1 and b"cannot listen" in r.stderr and b"admin" in r.stderr
        assert time.monotonic() - t0 < 10
    blocker.close()


def test_trip_can_close_open_connections_too():
    a = pu.echo()
    px = pu.Cynic(pu.config(pu.listener("app", "backend"), pu.upstream("backend", [a.endpoint])))
    adm = au.Admin(px)
    try:
        held = px.connect()
        held.sendall(b"1")
        assert held.recv(1) == b"1"
        # a plain trip leaves open connections alone
        assert adm.post("/breakers/backend/trip")[0] == 200
        held.sendall(b"2")
        assert held.recv(1) == b"2"
        for body, text in [({"close_connections": True}, "trip only"),
                           ({"close_connections": "yes"}, "close_connections")]:
            status, _, js, _ = adm.post("/breakers/backend/reset", body)
            assert status == 400 and text in js["error"], js
        # with close_connections, they end at once
        status, _, js, _ = adm.post(f"/breakers/backend/{a.endpoint}/trip",
                                    {"reason": "hangs", "close_connections": True})
        assert status == 200
        took = pu.closed_within(held, 5)
        assert took is not None and took < 2.0, took  # at once; generous for loaded ASan runs
        held.close()
        rec = px.wait_log(lambda r: r.get("event") == "breaker_manual" and r.get("reason") == "hangs")
        assert rec["closed_connections"] == 1
        m = adm.metrics()
        assert m.get("cynic_connections_total", listener="app", outcome="closed") == 1
    finally:
        px.stop()
        a.close()


def test_request_smuggling_vectors_get_400_and_close():
    """The admin listener parses requests with src/common's strict parser: two
    Host fields, no Host on HTTP/1.1, `Host : a`, obs-fold,
    `Transfer-Encoding: identity, chunked` and Content-Length with
    Transfer-Encoding are each answered 400 and the connection closed; an
    HTTP/1.0 request without Host is still served."""
    a = pu.echo()
    px = pu.Cynic(pu.config(pu.listener("app", "backend"), pu.upstream("backend", [a.endpoint])))
    adm = au.Admin(px)
    try:
        netutil.assert_smuggling_refused(adm.host, adm.port, "/health")
        head, body = netutil.raw_request(adm.host, adm.port, b"GET /health HTTP/1.0\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), (head, body)
        assert adm.get("/health")[0] == 200  # http.client sends Host
    finally:
        px.stop()
        a.close()
