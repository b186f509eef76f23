"""Reload (POST /reload and SIGHUP): a bad config is refused whole and the old
one keeps serving; a good one is applied with the listeners' sockets, open
connections and breaker state kept; listeners and upstreams added, rebuilt or
retired in place (nothing needs a restart); a change that cannot be had now (an
address in use, a file that does not open) is refused with 409 and nothing
applied."""
import datetime
import os
import signal
import time
import socket

import adminutil as au
import netutil
import proxyutil as pu


exchange = pu.exchange


def make(good, bad, db_extra="", app_extra="", level="info"):
    return pu.config(
        pu.listener("app", "backend", app_extra) + pu.listener("other", "db"),
        pu.upstream("backend", [good.endpoint]) +
        pu.upstream("db", [bad.endpoint], "breaker: { faults: 2, leak: 60s, open_for: 60s }\n" + db_extra),
        log_level=level)


def rewrite(px, text):
    with open(px.config, "w") as f:
        f.write(text)


def test_bad_config_is_refused_whole_and_the_old_one_serves():
    good, bad = pu.echo(), pu.Refused()
    px = pu.Cynic(make(good, bad))
    adm = au.Admin(px)
    try:
        loaded = adm.status()["config"]["loaded"]
        rewrite(px, make(good, bad).replace("faults: 2", "faults: two") + "bogus: 1\n")
        status, _, js, _ = adm.post("/reload")
        assert status == 400 and "old one keeps serving" in js["error"]
        assert len(js["errors"]) == 2
        assert any(px.config + ":" in e and "faults" in e for e in js["errors"]), js["errors"]
        assert any("bogus" in e for e in js["errors"]), js["errors"]
        rec = px.wait_log(lambda r: r.get("event") == "reload_refused")
        assert rec["level"] == "error" and rec["by"].startswith("POST /reload from 127.0.0.1:")
        assert exchange(px)
        st = adm.status()
        assert st["config"]["reloads"] == 0 and st["config"]["loaded"] == loaded
        # the same through SIGHUP
        px.signal(signal.SIGHUP)
        pu.wait_for(lambda: len(px.logs(event="reload_refused")) == 2, what="second refusal")
        assert px.logs(event="reload_refused")[1]["by"] == "SIGHUP"
        assert exchange(px) and px.proc.poll() is None
    finally:
        px.stop()
        good.close(), bad.close()


def test_good_reload_keeps_sockets_connections_and_breaker_state():
    good, bad = pu.echo(), pu.Refused()
    px = pu.Cynic(make(good, bad))
    adm = au.Admin(px)
    try:
        addr = px.addr("app")
        held = px.connect()
        held.sendall(b"before")
        assert held.recv(6) == b"before"
        for _ in range(2):
            assert not exchange(px, "other")
        pu.wait_for(lambda: adm.breaker("db", bad.endpoint)["state"] == "open", what="db open")
        adm.post(f"/breakers/backend/{good.endpoint}/force_closed", {"reason": "pinned"})
        assert adm.get("/ready")[0] == 200
        # new: db is required, app allows 3 connections, debug logging
        rewrite(px, make(good, bad, db_extra="required: true", app_extra="max_connections: 3",
                         level="debug"))
        status, _, js, _ = adm.post("/reload")
        assert status == 200 and js["reloaded"] is True and js["reloads"] == 1, js
        st = adm.status()
        assert st["config"]["reloads"] == 1
        app = [l for l in st["listeners"] if l["name"] == "app"][0]
        assert app["address"] == "%s:%d" % addr and app["max_connections"] == 3
        # breaker state survived, manual ones too
        assert adm.breaker("db", bad.endpoint)["state"] == "open"
        assert adm.breaker("db", bad.endpoint)["failures"] == 2
        assert adm.breaker("backend", good.endpoint)["state"] == "forced_closed"
        # the new `required` is in force: db is all open
        status, _, js, _ = adm.get("/ready")
        assert status == 503 and "required upstream db" in js["reason"]
        # the open connection kept going, new ones work on the same socket
        held.sendall(b"after")
        assert held.recv(5) == b"after"
        held.close()
        assert exchange(px)
        px.wait_log(lambda r: r.get("msg") == "config reloaded")
        # SIGHUP reloads too
        rewrite(px, make(good, bad, app_extra="max_connections: 4"))
        px.signal(signal.SIGHUP)
        pu.wait_for(lambda: adm.status()["config"]["reloads"] == 2, what="SIGHUP reload")
        assert [l for l in adm.status()["listeners"] if l["name"] == "app"][0]["max_connections"] == 4
        assert adm.get("/ready")[0] == 200  # db no longer required
    finally:
        px.stop()
        good.close(), bad.close()


def test_reload_moves_the_admin_listener(tmp_path):
    """admin.listen changed: the new address is bound first (in use: the
    whole reload is refused, the old one keeps serving); the loopback/token
    rule applies to it; on success the old listener answers the reload and
    then closes."""
    good, bad = pu.echo(), pu.Refused()
    text = make(good, bad)
    px = pu.Cynic(text)
    adm = au.Admin(px)
    busy = socket.socket()
    try:
        held = px.connect()
        held.sendall(b"1")
        assert held.recv(1) == b"1"
        # the new address is in use: refused whole, nothing applied
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        rewrite(px, text.replace("admin:\n  listen: 127.0.0.1:0", f"admin:\n  listen: 127.0.0.1:{port}", 1)
                .replace("upstream: backend\n", "upstream: backend\n    max_connections: 7\n", 1))
        status, _, js, _ = adm.post("/reload")
        assert status == 409 and "admin.listen: cannot listen on 127.0.0.1:%d" % port in js["error"], js
        assert "nothing was applied" in js["error"]
        st = adm.status()
        assert st["config"]["reloads"] == 0
        assert [l for l in st["listeners"] if l["name"] == "app"][0]["max_connections"] != 7
        rec = px.wait_log(lambda r: r.get("event") == "reload_refused")
        assert "admin.listen" in rec["reason"]
        # not loopback and no token: the loader refuses it (400), old one serves
        rewrite(px, text.replace("admin:\n  listen: 127.0.0.1:0", "admin:\n  listen: 0.0.0.0:0", 1))
        status, _, js, _ = adm.post("/reload")
        assert status == 400 and any("token_file" in e and "allow_remote" in e for e in js["errors"]), js
        assert adm.status()["config"]["reloads"] == 0
        # another loopback address: bound first, the answer comes on the old one
        old = (adm.host, adm.port)
        rewrite(px, text.replace("admin:\n  listen: 127.0.0.1:0", "admin:\n  listen: 127.0.0.2:0", 1))
        status, _, js, _ = adm.post("/reload")
        assert status == 200 and js["admin"].startswith("127.0.0.2:"), js
        rec = px.wait_log(lambda r: r.get("event") == "admin_moved")
        assert rec["address"] == js["admin"] and rec["previous"] == "%s:%d" % old
        host, p = js["admin"].rsplit(":", 1)
        adm.host, adm.port = host, int(p)
        st = adm.status()
        assert st["config"]["reloads"] == 1 and st["admin"] == js["admin"]
        pu.wait_for(lambda: netutil.refused(old[1], old[0]), timeout=10, what="old admin address closed")
        # traffic never noticed
        held.sendall(b"2")
        assert held.recv(1) == b"2"
        held.close()
        assert exchange(px)
        # and back to a remote-reachable one with a token: allowed, token required there
        tok = tmp_path / "token"
        tok.write_text("sesame\n")
        rewrite(px, text.replace("admin:\n  listen: 127.0.0.1:0",
                                 f"admin:\n  listen: 0.0.0.0:0\n  token_file: {tok}", 1))
        status, _, js, _ = adm.post("/reload")
        assert status == 200, js
        host, p = js["admin"].rsplit(":", 1)
        adm.host, adm.port = "127.0.0.1", int(p)
        assert adm.get("/status")[0] == 401
        adm.token = "sesame"
        assert adm.status()["config"]["reloads"] == 2
        assert adm.request("GET", "/reload")[0] == 405
    finally:
        busy.close()
        px.stop()
        good.close(), bad.close()


def test_reload_reads_the_token_again(tmp_path):
    good, bad = pu.echo(), pu.Refused()
    tok = tmp_path / "token"
    tok.write_text("first\n")
    text = make(good, bad).replace("admin:\n  listen: 127.0.0.1:0\n",
                                   f"admin:\n  listen: 127.0.0.1:0\n  token_file: {tok}\n")
    px = pu.Cynic(text)
    adm = au.Admin(px, token="first")
    try:
        assert adm.get("/status")[0] == 200
        tok.write_text("second\n")
        assert adm.get("/status")[0] == 200  # read at start and on reload only
        status, _, js, _ = adm.post("/reload")
        assert status == 200, js
        assert adm.get("/status")[0] == 401
        adm.token = "second"
        assert adm.get("/status")[0] == 200
        # a bad token file refuses the reload and keeps the old token
        tok.write_text("")
        status, _, js, _ = adm.post("/reload")
        assert status == 400 and "token_file" in js["errors"][0] and "is empty" in js["errors"][0], js
        assert adm.get("/status")[0] == 200
    finally:
        px.stop()
        good.close(), bad.close()


def test_reload_adds_listeners_and_upstreams_all_or_nothing(tmp_path):
    good, bad, fresh = pu.echo(), pu.Refused(), pu.echo()
    text = make(good, bad)
    px = pu.Cynic(text)
    adm = au.Admin(px)
    try:
        held = px.connect()
        held.sendall(b"a")
        assert held.recv(1) == b"a"
        for _ in range(2):
            assert not exchange(px, "other")
        pu.wait_for(lambda: adm.breaker("db", bad.endpoint)["state"] == "open", what="db open")
        # a listener on an address in use: the whole reload is refused
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        acc = tmp_path / "new-access.log"
        added = text.replace("upstreams:\n",
                             pu.listener("new", "fresh", f"access_log: {acc}").replace("127.0.0.1:0", f"127.0.0.1:{port}") +
                             "upstreams:\n") + pu.upstream("fresh", [fresh.endpoint])
        rewrite(px, added)
        status, _, js, _ = adm.post("/reload")
        assert status == 409 and "listener 'new' cannot listen" in js["error"], js
        st = adm.status()
        assert [l["name"] for l in st["listeners"]] == ["app", "other"]
        assert [u["name"] for u in st["upstreams"]] == ["backend", "db"]
        assert st["config"]["reloads"] == 0
        assert exchange(px)
        # on a free port it goes through, in the same slots
        busy.close()
        rewrite(px, added.replace(f"127.0.0.1:{port}", "127.0.0.1:0"))
        status, _, js, _ = adm.post("/reload")
        assert status == 200, js
        assert js["added"] == {"upstreams": ["fresh"], "listeners": ["new"]}
        st = adm.status()
        new = [l for l in st["listeners"] if l["name"] == "new"][0]
        assert new["upstream"] == "fresh" and new["listening"] is True
        host, p = new["address"].rsplit(":", 1)
        with socket.create_connection((host, int(p)), timeout=10) as c:
            c.sendall(b"via new")
            c.shutdown(socket.SHUT_WR)
            assert pu.recv_all(c) == b"via new"
        assert fresh.accepted == 1
        pu.wait_for(lambda: acc.exists() and "via new" not in acc.read_text() and
                    '"listener":"new"' in acc.read_text(), what="access line of the new listener")
        # what was there keeps going: socket, open connection, breaker state
        held.sendall(b"b")
        assert held.recv(1) == b"b"
        held.close()
        assert exchange(px)
        assert adm.breaker("db", bad.endpoint)["state"] == "open"
        m = adm.metrics()
        au.check_conventions(m)
        assert m.get("cynic_connections_total", listener="new", upstream="fresh", outcome="ok") == 1
        assert m.get("cynic_breaker_state", upstream="fresh", endpoint=fresh.endpoint, state="closed") == 1
    finally:
        px.stop()
        good.close(), bad.close(), fresh.close()


def test_reload_removes_a_listener_its_connections_finish_and_the_name_can_return():
    good, bad = pu.echo(), pu.Refused()
    text = make(good, bad)
    px = pu.Cynic(text)
    adm = au.Admin(px)
    try:
        # a second listener on the backend, with a client in the middle of a conversation
        two = text.replace("upstreams:\n", pu.listener("side", "backend") + "upstreams:\n")
        rewrite(px, two)
        status, _, js, _ = adm.post("/reload")
        assert status == 200 and js["added"]["listeners"] == ["side"], js
        side = [l for l in adm.status()["listeners"] if l["name"] == "side"][0]
        host, port = side["address"].rsplit(":", 1)
        held = socket.create_connection((host, int(port)), timeout=10)
        held.sendall(b"1")
        assert held.recv(1) == b"1"
        # remove it: it stops accepting, the open connection carries on
        rewrite(px, text)
        status, _, js, _ = adm.post("/reload")
        assert status == 200 and js["removed"]["listeners"] == ["side"], js
        assert netutil.refused(int(port))
        st = adm.status()
        gone = [l for l in st["listeners"] if l["name"] == "side"][0]
        assert gone["retired"] is True and gone["listening"] is False and gone["open"] == 1
        held.sendall(b"2")
        assert held.recv(1) == b"2"
        held.shutdown(socket.SHUT_WR)
        assert pu.recv_all(held) == b""
        held.close()
        rec = px.wait_log(lambda r: r.get("event") == "listener_removed")
        assert rec["listener"] == "side" and rec["connections"] == 1
        m = adm.metrics()
        au.check_conventions(m)
        assert not m.all("cynic_connections_total", listener="side")
        assert exchange(px)  # the others never noticed
        # the name can come back, on a new socket; the metrics have one series
        rewrite(px, two)
        status, _, js, _ = adm.post("/reload")
        assert status == 200 and js["added"]["listeners"] == ["side"], js
        side = [l for l in adm.status()["listeners"] if l["name"] == "side" and not l["retired"]][0]
        host, port = side["address"].rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as c:
            c.sendall(b"back")
            c.shutdown(socket.SHUT_WR)
            assert pu.recv_all(c) == b"back"
        m = adm.metrics()
        au.check_conventions(m)
        assert m.get("cynic_connections_total", listener="side", outcome="ok") == 1
        assert adm.status()["config"]["reloads"] == 3
        # moved to another address: a new socket there, the old one's client finishes
        held = socket.create_connection((host, int(port)), timeout=10)
        held.sendall(b"3")
        assert held.recv(1) == b"3"
        moved = two.replace("- name: side\n    listen: 127.0.0.1:0", "- name: side\n    listen: 127.0.0.2:0")
        assert moved != two
        rewrite(px, moved)
        status, _, js, _ = adm.post("/reload")
        assert status == 200 and js["added"]["listeners"] == ["side"] and js["removed"]["listeners"] == ["side"], js
        assert netutil.refused(int(port))
        now = [l for l in adm.status()["listeners"] if l["name"] == "side" and not l["retired"]][0]
        assert now["address"].startswith("127.0.0.2:")
        h2, p2 = now["address"].rsplit(":", 1)
        with socket.create_connection((h2, int(p2)), timeout=10) as c:
            c.sendall(b"moved")
            c.shutdown(socket.SHUT_WR)
            assert pu.recv_all(c) == b"moved"
        held.sendall(b"4")
        assert held.recv(1) == b"4"
        held.close()
        px.wait_log(lambda r: r.get("event") == "listener_removed" and r.get("moved_to") == "127.0.0.2:0")
    finally:
        px.stop()
        good.close(), bad.close()


def test_reload_rebuilds_and_removes_upstreams_old_connections_finish():
    good, bad, good2 = pu.echo(), pu.Refused(), pu.echo()
    text = make(good, bad)
    px = pu.Cynic(text)
    adm = au.Admin(px)
    try:
        held = px.connect()
        held.sendall(b"1")
        assert held.recv(1) == b"1"
        for _ in range(2):
            assert not exchange(px, "other")
        pu.wait_for(lambda: adm.breaker("db", bad.endpoint)["state"] == "open", what="db open")
        # backend moves to another endpoint: a new upstream object; db is untouched
        rewrite(px, make(good2, bad))
        status, _, js, _ = adm.post("/reload")
        assert status == 200, js
        assert js["added"]["upstreams"] == ["backend"] and js["removed"]["upstreams"] == ["backend"], js
        assert exchange(px) and good2.accepted == 1
        held.sendall(b"2")  # the old connection still goes to the old endpoint
        assert held.recv(1) == b"2"
        assert adm.breaker("db", bad.endpoint)["state"] == "open"  # unchanged: kept
        st = adm.status()
        backends = [u for u in st["upstreams"] if u["name"] == "backend"]
        assert [u["retired"] for u in backends] == [True, False]
        assert backends[1]["endpoints"][0]["name"] == good2.endpoint
        m = adm.metrics()
        au.check_conventions(m)
        assert m.get("cynic_bulkhead_in_use", upstream="backend") == 0  # the new one only
        assert list(adm.get("/status/history")[2]["upstreams"]) == ["db", "backend"]
        held.close()
        # a listener can switch upstream; an upstream nobody uses can go
        switched = make(good2, bad).replace("upstream: db\n", "upstream: backend\n")
        switched = switched[:switched.index("  - name: db\n")]
        rewrite(px, switched)
        status, _, js, _ = adm.post("/reload")
        assert status == 200 and js["removed"]["upstreams"] == ["db"], js
        assert exchange(px, "other") and good2.accepted == 2
        assert adm.get("/breakers/db")[0] == 404
        assert adm.get("/ready")[0] == 200
        px.wait_log(lambda r: r.get("event") == "upstream_removed" and r.get("upstream") == "db")
    finally:
        px.stop()
        good.close(), bad.close(), good2.close()


def test_reload_turns_on_an_access_log_and_a_rate_limit_in_place(tmp_path):
    good, bad = pu.echo(), pu.Refused()
    px = pu.Cynic(make(good, bad))
    adm = au.Admin(px)
    try:
        addr = px.addr("app")
        acc = tmp_path / "access.log"
        rewrite(px, make(good, bad, app_extra=f"access_log: {acc}\nrate_limit: {{ per_client: 1/h, burst: 2 }}"))
        status, _, js, _ = adm.post("/reload")
        assert status == 200, js
        assert [l for l in adm.status()["listeners"] if l["name"] == "app"][0]["address"] == "%s:%d" % addr
        assert exchange(px) and exchange(px)
        assert not exchange(px)  # the third within the hour: over the rate
        m = adm.metrics()
        assert m.get("cynic_connections_total", listener="app", outcome="rate_limited") == 1
        pu.wait_for(lambda: acc.exists() and acc.read_text().count('"listener":"app"') == 2,
                    what="two access lines")
        # and off again
        rewrite(px, make(good, bad))
        assert adm.post("/reload")[0] == 200
        assert exchange(px)
    finally:
        px.stop()
        good.close(), bad.close()


def test_reload_moves_the_log_to_a_file(tmp_path):
    good, bad = pu.echo(), pu.Refused()
    text = make(good, bad)
    px = pu.Cynic(text)
    adm = au.Admin(px)
    try:
        log = tmp_path / "cynic.log"
        rewrite(px, text.replace('file: "-"', f'file: "{tmp_path}/no/such/dir/cynic.log"'))
        status, _, js, _ = adm.post("/reload")
        assert status == 409 and "log.file: cannot open" in js["error"], js
        rewrite(px, text.replace('file: "-"', f'file: "{log}"'))
        assert adm.post("/reload")[0] == 200
        px.wait_log(lambda r: r.get("event") == "log_moved" and r.get("file") == str(log))
        pu.wait_for(lambda: log.exists() and '"config reloaded"' in log.read_text(), what="log in file")
        assert exchange(px)
        assert not [r for r in px.records() if r.get("msg") == "config reloaded"]  # not on stderr
    finally:
        px.stop()
        good.close(), bad.close()


def test_many_reloads_that_retire_things_stay_bounded():
    """Twelve reloads that move a listener and rebuild an upstream, with a
    connection open across each: every one applies (retired objects keep a
    copy of their config, not the whole old file), traffic flows after each,
    and the exit is clean (the sanitizer build checks for leaks)."""
    good, bad, good2 = pu.echo(), pu.Refused(), pu.echo()
    a = make(good, bad)
    b = make(good2, bad).replace("- name: other\n    listen: 127.0.0.1:0", "- name: other\n    listen: 127.0.0.2:0")
    px = pu.Cynic(a)
    adm = au.Admin(px)
    held = []
    try:
        for i in range(12):
            c = px.connect()
            c.sendall(b"x")
            assert c.recv(1) == b"x"
            held.append(c)
            rewrite(px, b if i % 2 == 0 else a)
            status, _, js, _ = adm.post("/reload")
            assert status == 200, (i, js)
            assert exchange(px)
        for c in held:
            c.sendall(b"y")
            assert c.recv(1) == b"y"
            c.close()
        st = adm.status()
        assert st["config"]["reloads"] == 12
        assert sum(1 for u in st["upstreams"] if u["name"] == "backend" and not u["retired"]) == 1
        au.check_conventions(adm.metrics())
    finally:
        for c in held:
            c.close()
        px.stop()
        good.close(), bad.close(), good2.close()


def test_reload_turns_the_per_client_limit_on_and_off():
    good, bad = pu.echo(), pu.Refused()
    px = pu.Cynic(make(good, bad))
    adm = au.Admin(px)
    try:
        rewrite(px, make(good, bad, app_extra="max_connections_per_client: 1"))
        assert adm.post("/reload")[0] == 200
        held = px.connect()
        held.sendall(b"a")
        assert held.recv(1) == b"a"
        with px.connect() as c:  # the same client's second: shed at once
            assert pu.closed_within(c, 5) is not None
        assert adm.metrics().get("cynic_connections_total", listener="app",
                                 outcome="max_connections_per_client") == 1
        rewrite(px, make(good, bad))
        assert adm.post("/reload")[0] == 200
        assert exchange(px)  # off again: a second one is fine
        held.close()
        assert exchange(px)
    finally:
        px.stop()
        good.close(), bad.close()


def size(path):
    try:
        return path.stat().st_size
    except FileNotFoundError:  # between the rename and the reopen
        return -1


def test_reload_applies_log_rotate(tmp_path):
    """log.rotate turned on, then changed (keep 2 -> 3), by reloads: the check
    starts with the first and reads the new keep after the second."""
    good, bad = pu.echo(), pu.Refused()
    text = make(good, bad)
    px = pu.Cynic(text)
    adm = au.Admin(px)
    log = tmp_path / "cynic.log"
    rotated = lambda n: (tmp_path / f"cynic.log.{n}").exists()

    def fill():  # past 64KB at once: the next check (every second) rotates
        with open(log, "a") as f:
            f.write('{"filler":"' + "x" * 70000 + '"}\n')

    try:
        to_file = text.replace('file: "-"', f'file: "{log}"')
        rewrite(px, to_file)
        assert adm.post("/reload")[0] == 200
        pu.wait_for(lambda: log.exists() and '"config reloaded"' in log.read_text(), what="log in file")
        rewrite(px, to_file.replace(f'file: "{log}"', f'file: "{log}"\n  rotate: {{ max_bytes: 64KB, keep: 2 }}'))
        status, _, js, _ = adm.post("/reload")
        assert status == 200, js
        fill()
        pu.wait_for(lambda: rotated(1), timeout=10, what="first rotation")
        fill()
        pu.wait_for(lambda: rotated(2), timeout=10, what="second rotation")
        fill()  # keep 2: file.2 is overwritten, never a file.3
        pu.wait_for(lambda: 0 < size(log) < 65536, timeout=10, what="third rotation")
        assert not rotated(3)
        rewrite(px, to_file.replace(f'file: "{log}"', f'file: "{log}"\n  rotate: {{ max_bytes: 64KB, keep: 3 }}'))
        status, _, js, _ = adm.post("/reload")
        assert status == 200, js
        fill()
        pu.wait_for(lambda: rotated(3), timeout=10, what="rotation with keep 3")
        assert exchange(px)
        # and off: the file then grows past max_bytes and stays
        rewrite(px, to_file)
        assert adm.post("/reload")[0] == 200
        assert adm.status()["config"]["reloads"] == 4
    finally:
        px.stop()
        good.close(), bad.close()


def live_breaker(adm, upstream, endpoint):
    """The breaker of the upstream in use (GET /breakers leaves retired ones
    out; adminutil's breaker() reads /status, which lists them too)."""
    status, _, js, _ = adm.get(f"/breakers/{upstream}/{endpoint}")
    assert status == 200, js
    return js["endpoint"]["breaker"]


def same_time(a, b, within_s=0.05):
    """Two ISO times from /status: `since` is the wall clock minus a monotonic
    age, so it may differ by a millisecond between two reads."""
    parse = lambda t: datetime.datetime.strptime(t, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()
    return abs(parse(a) - parse(b)) <= within_s


def test_rebuilt_upstream_keeps_tripped_and_open_breakers():
    """Endpoints added by a reload: the endpoints the upstream had keep their
    breaker (an operator's trip with who/why/since, an automatic open), and
    traffic goes to the new endpoint."""
    good, bad, more, more2 = pu.echo(), pu.Refused(), pu.echo(), pu.echo()
    px = pu.Cynic(make(good, bad))
    adm = au.Admin(px)
    try:
        status, _, js, _ = adm.post(f"/breakers/backend/{good.endpoint}/trip", {"reason": "maintenance"})
        assert status == 200, js
        tripped = live_breaker(adm, "backend", good.endpoint)
        assert tripped["state"] == "forced_open" and tripped["change_reason"] == "maintenance"
        assert not exchange(px)
        for _ in range(2):
            assert not exchange(px, "other")
        pu.wait_for(lambda: live_breaker(adm, "db", bad.endpoint)["state"] == "open", what="db open")
        opened = live_breaker(adm, "db", bad.endpoint)
        # add an endpoint to each upstream (and change db's fault count): both rebuilt
        text = make(good, bad).replace(f"[{good.endpoint}]", f"[{good.endpoint}, {more.endpoint}]")
        text = text.replace(f"[{bad.endpoint}]", f"[{bad.endpoint}, {more2.endpoint}]").replace("faults: 2", "faults: 3")
        rewrite(px, text)
        status, _, js, _ = adm.post("/reload")
        assert status == 200 and js["removed"]["upstreams"] == ["backend", "db"], js
        now = live_breaker(adm, "backend", good.endpoint)
        assert now["state"] == "forced_open" and now["manual"] is True
        assert now["changed_by"] == tripped["changed_by"] and now["change_reason"] == "maintenance"
        assert same_time(now["since"], tripped["since"])
        still = live_breaker(adm, "db", bad.endpoint)
        assert still["state"] == "open" and same_time(still["since"], opened["since"])
        assert still["next_probe_s"] is not None and still["next_probe_s"] > 30
        assert live_breaker(adm, "backend", more.endpoint)["state"] == "closed"
        # traffic goes to the new endpoints only
        for _ in range(3):
            assert exchange(px) and exchange(px, "other")
        assert more.accepted == 3 and more2.accepted == 3
        assert good.accepted == 0
        st = adm.status()
        ups = {u["name"]: u for u in st["upstreams"] if not u["retired"]}
        assert ups["backend"]["endpoints_open"] == 1 and ups["db"]["endpoints_open"] == 1
        # the operator's reset works on the new object
        assert adm.post(f"/breakers/backend/{good.endpoint}/reset")[0] == 200
        assert live_breaker(adm, "backend", good.endpoint)["state"] == "closed"
        pu.wait_for(lambda: exchange(px) and good.accepted >= 1, timeout=10, what="traffic to the reset endpoint")
    finally:
        px.stop()
        good.close(), bad.close(), more.close(), more2.close()


def test_listener_rebuilt_at_the_same_address_keeps_its_socket():
    """A listener whose buffer (or mode) changed becomes a new object on the
    same socket: no accept refused across the reload (a client connects in a
    loop meanwhile), the connection opened before finishes with the old
    object, new ones get the new buffer."""
    import threading
    good, bad = pu.echo(), pu.Refused()
    text = make(good, bad)
    px = pu.Cynic(text)
    adm = au.Admin(px)
    stop = threading.Event()
    results = []

    # A request both modes answer over the echo backend: TCP mode echoes it
    # back as it is; HTTP mode forwards it, reads it back as a "response",
    # and answers 502 bad_response (503 breaker_open once those faults have
    # opened the breaker). Either way the client was served.
    request = b"GET /loop HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n"

    def one():
        try:
            with px.connect("app", timeout=10) as c:
                c.sendall(request)
                c.shutdown(socket.SHUT_WR)
                got = pu.recv_all(c)
        except OSError:
            return False
        return got == request or (got.startswith(b"HTTP/1.1 50") and
                                  (b"Cynic-Answer: bad_response" in got or b"Cynic-Answer: breaker_open" in got))

    def hammer():  # bounded: at most 5000 connections or 60 s
        deadline = time.monotonic() + 60
        while not stop.is_set() and len(results) < 5000 and time.monotonic() < deadline:
            results.append(one())

    try:
        addr = px.addr("app")
        before = [l for l in adm.status()["listeners"] if l["name"] == "app"][0]
        assert before["buffer_bytes"] == 65536
        held = px.connect()
        held.sendall(b"1")
        assert held.recv(1) == b"1"
        t = threading.Thread(target=hammer)
        t.start()
        pu.wait_for(lambda: len(results) >= 20, what="the loop running")
        rebuilt = text.replace("upstream: backend\n", "upstream: backend\n    buffer: 8KB\n", 1)
        for new in (rebuilt, rebuilt.replace("buffer: 8KB\n", "buffer: 8KB\n    mode: http\n", 1)):
            rewrite(px, new)
            n0 = len(results)
            status, _, js, _ = adm.post("/reload")
            assert status == 200, js
            assert js["added"]["listeners"] == ["app"] and js["removed"]["listeners"] == ["app"], js
            pu.wait_for(lambda: len(results) >= n0 + 20, what="the loop after the reload")
        stop.set()
        t.join(timeout=70)
        assert not t.is_alive()
        assert len(results) >= 60 and all(results), (len(results), results.count(False))
        st = adm.status()
        apps = [l for l in st["listeners"] if l["name"] == "app"]
        live = [l for l in apps if not l["retired"]]
        assert len(live) == 1 and live[0]["address"] == "%s:%d" % addr
        assert live[0]["buffer_bytes"] == 8192 and live[0]["mode"] == "http" and live[0]["listening"]
        first = apps[0]  # the object the held client came in on: old buffer, still open
        assert first["retired"] and first["buffer_bytes"] == 65536 and first["open"] == 1
        held.sendall(b"2" * 100000)  # more than either buffer: flows through the old one
        got = b""
        while len(got) < 100000:
            chunk = held.recv(65536)
            assert chunk
            got += chunk
        assert got == b"2" * 100000
        held.close()
        pu.wait_for(lambda: [l for l in adm.status()["listeners"] if l["name"] == "app"][0]["open"] == 0,
                    what="the old object's connection closed")
        rec = px.wait_log(lambda r: r.get("event") == "listener_rebuilt")
        assert rec["address"] == "%s:%d" % addr and rec["buffer_bytes"] == 8192
        assert one()  # served in HTTP mode now
    finally:
        stop.set()
        px.stop()
        good.close(), bad.close()


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_retired_places_are_reclaimed_so_reloads_never_run_out():
    """More reloads that move a listener (and rebuild an upstream) than there
    are places (64 listeners): each one succeeds, because a retired object's
    place is freed once its connections have finished. A retired listener
    with an open connection keeps its place until that closes; afterwards
    /status lists nothing retired and the descriptors are back where they
    started."""
    good, bad, good2 = pu.echo(), pu.Refused(), pu.echo()
    a = make(good, bad)
    b = make(good2, bad).replace("- name: other\n    listen: 127.0.0.1:0", "- name: other\n    listen: 127.0.0.2:0")
    px = pu.Cynic(a)
    adm = au.Admin(px)
    rounds = 80  # > CYNIC__CONFIG_MAX_LISTENERS (64)
    try:
        assert exchange(px)
        fds0 = fd_count(px.pid)
        held = px.connect()
        held.sendall(b"h")
        assert held.recv(1) == b"h"
        deadline = time.monotonic() + 120
        for i in range(rounds):
            assert time.monotonic() < deadline, f"{i} reloads in 120 s"
            rewrite(px, b if i % 2 == 0 else a)
            status, _, js, _ = adm.post("/reload")
            assert status == 200, (i, js)
            assert js["added"]["listeners"] == ["other"] and js["added"]["upstreams"] == ["backend"], (i, js)
        assert exchange(px)
        st = adm.status()
        assert st["config"]["reloads"] == rounds
        # every retired listener was reclaimed (by the next reload's or the
        # once-a-second sweep); of the 80 retired backends only the held
        # client's object is left (and the last one, until the next sweep)
        pu.wait_for(lambda: not [l for l in adm.status()["listeners"] if l["retired"]],
                    timeout=10, what="retired listeners reclaimed")
        pu.wait_for(lambda: len([u for u in adm.status()["upstreams"] if u["retired"]]) == 1,
                    timeout=10, what="retired upstreams reclaimed but the held one")
        kept = [u for u in adm.status()["upstreams"] if u["retired"]][0]
        assert kept["name"] == "backend" and kept["endpoints"][0]["name"] == good.endpoint
        assert kept["endpoints"][0]["active"] == 1
        held.sendall(b"i")
        assert held.recv(1) == b"i"
        held.close()
        pu.wait_for(lambda: not [u for u in adm.status()["upstreams"] if u["retired"]],
                    timeout=10, what="retired upstreams reclaimed")
        st = adm.status()
        assert len(st["listeners"]) == 2 and len(st["upstreams"]) == 2
        pu.wait_for(lambda: fd_count(px.pid) <= fds0, timeout=10,
                    what=f"descriptors back to {fds0}")
        px.wait_log(lambda r: r.get("event") == "listener_reclaimed" and r.get("listener") == "other")
        px.wait_log(lambda r: r.get("event") == "upstream_reclaimed" and r.get("upstream") == "backend")
        au.check_conventions(adm.metrics())
        assert exchange(px) and exchange(px)
    finally:
        px.stop()
        good.close(), bad.close(), good2.close()


def test_retired_listener_with_a_connection_keeps_its_place_until_it_closes():
    good, bad = pu.echo(), pu.Refused()
    text = make(good, bad)
    px = pu.Cynic(text)
    adm = au.Admin(px)
    try:
        moved = text.replace("- name: app\n    listen: 127.0.0.1:0", "- name: app\n    listen: 127.0.0.2:0")
        held = px.connect()
        held.sendall(b"1")
        assert held.recv(1) == b"1"
        rewrite(px, moved)
        assert adm.post("/reload")[0] == 200
        # two more sweeps (one a second) do not reclaim it while the client is open
        n = len(px.logs(event="listener_reclaimed"))
        t0 = adm.status()["uptime_s"]
        pu.wait_for(lambda: adm.status()["uptime_s"] > t0 + 2.2, timeout=10, what="two sweeps")
        apps = [l for l in adm.status()["listeners"] if l["name"] == "app"]
        assert [l["retired"] for l in apps] == [True, False] and apps[0]["open"] == 1
        assert len(px.logs(event="listener_reclaimed")) == n
        held.sendall(b"2")
        assert held.recv(1) == b"2"
        held.close()
        pu.wait_for(lambda: len([l for l in adm.status()["listeners"] if l["name"] == "app"]) == 1,
                    timeout=10, what="the retired listener reclaimed")
        px.wait_log(lambda r: r.get("event") == "listener_reclaimed" and r.get("listener") == "app")
    finally:
        px.stop()
        good.close(), bad.close()


def test_access_logs_a_reload_stops_using_are_closed(tmp_path):
    """80 reloads (more than the 64 files the access logs may hold open), each
    naming a new access_log path for the app listener: every one succeeds, the
    files the config no longer names are closed (descriptors stay flat), and
    the current one gets the lines."""
    good, bad = pu.echo(), pu.Refused()
    base = make(good, bad)
    px = pu.Cynic(base.replace("    upstream: backend\n",
                               f"    upstream: backend\n    access_log: {tmp_path}/a0.log\n", 1))
    adm = au.Admin(px)
    rounds = 80
    try:
        assert exchange(px)
        fds0 = fd_count(px.pid)
        deadline = time.monotonic() + 120
        for i in range(1, rounds + 1):
            assert time.monotonic() < deadline, f"{i} reloads in 120 s"
            rewrite(px, base.replace("    upstream: backend\n",
                                     f"    upstream: backend\n    access_log: {tmp_path}/a{i}.log\n", 1))
            status, _, js, _ = adm.post("/reload")
            assert status == 200, (i, js)
        def logs_open():
            out = []
            for f in os.listdir(f"/proc/{px.pid}/fd"):
                try:
                    if os.readlink(f"/proc/{px.pid}/fd/{f}").startswith(str(tmp_path)):
                        out.append(f)
                except FileNotFoundError:  # closed meanwhile
                    pass
            return out
        # the file the last reload left is closed by the next sweep (<= 1 s)
        pu.wait_for(lambda: len(logs_open()) == 1, timeout=10, what="one access log open")
        pu.wait_for(lambda: fd_count(px.pid) <= fds0, timeout=10, what=f"descriptors back to {fds0}")
        assert exchange(px)
        pu.wait_for(lambda: os.path.exists(tmp_path / f"a{rounds}.log") and
                    os.path.getsize(tmp_path / f"a{rounds}.log") > 0, what="a line in the current log")
    finally:
        px.stop()
        good.close(), bad.close()


def keepalive_config(srv, idle, probes):
    return pu.config(pu.listener("app", "backend"), pu.upstream("backend", [srv.endpoint], f"""
tcp_keepalive: {{ idle: {idle}s, interval: 7s, probes: {probes} }}
"""))


def upstream_ports(px, srv):
    """The local ports of cynic's sockets to srv."""
    socks = pu.process_sockets(px.pid)
    try:
        return {s.getsockname()[1] for s in socks if _peer(s) == ("127.0.0.1", srv.port)}
    finally:
        for s in socks:
            s.close()


def connect_and_read_options(px, srv):
    """A new client through cynic, and TCP_KEEPIDLE and TCP_KEEPCNT of cynic's
    two sockets for it (the accepted one, the one to the upstream), read back
    with getsockopt. Returns (client, [(idle, cnt) client side, (idle, cnt)
    upstream side])."""
    before = upstream_ports(px, srv)
    c = px.connect()
    c.sendall(b"x")
    assert c.recv(1) == b"x"
    socks = pu.process_sockets(px.pid)
    try:
        client_side = [s for s in socks if _peer(s) == c.getsockname()]
        up_side = [s for s in socks
                   if _peer(s) == ("127.0.0.1", srv.port) and s.getsockname()[1] not in before]
        assert len(client_side) == 1 and len(up_side) == 1
        return c, [(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                    s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT))
                   for s in (client_side[0], up_side[0])]
    finally:
        for s in socks:
            s.close()


def _peer(s):
    try:
        return s.getpeername()
    except OSError:
        return None  # a listening socket


def test_reload_applies_tcp_keepalive_to_new_client_sockets_too():
    # Accepted sockets inherit their options from the listening socket; a
    # reload that changes them must refresh the listening socket (and the
    # listener's "inherited" verdict), not only new upstream sockets.
    srv = pu.echo()
    px = pu.Cynic(keepalive_config(srv, 17, 4))
    adm = au.Admin(px)
    held = []
    try:
        for _ in range(2):  # the first accept settles "inherited"; the second trusts it
            c, opts = connect_and_read_options(px, srv)
            held.append(c)
            assert opts == [(17, 4), (17, 4)]
        rewrite(px, keepalive_config(srv, 23, 6))
        status, _, js, _ = adm.post("/reload")
        assert status == 200 and js["reloaded"] is True, js
        for _ in range(2):  # checked again on the first accept after the reload
            c, opts = connect_and_read_options(px, srv)
            held.append(c)
            assert opts == [(23, 6), (23, 6)]
    finally:
        for c in held:
            c.close()
        px.stop()
        srv.close()
