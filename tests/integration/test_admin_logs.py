"""Logs an operator reads: the per-listener access log (one JSON line per
connection with phases, bytes, outcome and breaker decision; reopened on
SIGUSR1; rotated with log.rotate), and the schema of docs/logs.md for the
admin events (manual breaker changes, reloads, drain)."""
import json
import os
import signal
import socket
import re
import subprocess

import adminutil as au
import proxyutil as pu

REQUIRED = {"time", "listener", "client", "upstream", "endpoint", "outcome", "breaker",
            "queue_ms", "connect_ms", "first_byte_ms", "duration_ms", "bytes_up", "bytes_down"}


exchange = pu.exchange


def lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(x) for x in f.read().splitlines() if x]


def test_access_log_lines_reopen_and_rotation(tmp_path):
    good, bad = pu.echo(), pu.Refused()
    acc = str(tmp_path / "access.log")
    main = str(tmp_path / "cynic.log")
    text = pu.config(
        pu.listener("app", "backend", f"access_log: {acc}") + pu.listener("db", "db", f"access_log: {acc}"),
        pu.upstream("backend", [good.endpoint]) +
        pu.upstream("db", [bad.endpoint], "breaker: { faults: 2, leak: 60s, open_for: 60s }"))
    text = text.replace('file: "-"', f'file: "{main}"\n  rotate: {{ max_bytes: 64KB, keep: 2 }}')
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    proc = subprocess.Popen([pu.CYNIC, "-c", str(cfg)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        pu.wait_for(lambda: os.path.exists(main) and '"started"' in open(main).read(), what="start")
        recs = [json.loads(x) for x in open(main).read().splitlines()]
        addr = {r["listener"]: r["address"] for r in recs if r.get("msg") in ("listening", "admin listening")}

        class Px:  # enough of proxyutil.Cynic for exchange()
            def connect(self, listener, timeout):
                host, port = addr[listener].rsplit(":", 1)
                return socket.create_connection((host, int(port)), timeout=timeout)
        px = Px()
        assert exchange(px, "app", b"x" * 1234)
        for _ in range(3):
            assert not exchange(px, "db", b"q")
        pu.wait_for(lambda: len(lines(acc)) == 4, what="4 access lines")
        ok, *failed = lines(acc)
        assert REQUIRED <= set(ok), set(ok) ^ REQUIRED
        assert (ok["listener"], ok["upstream"], ok["endpoint"], ok["outcome"], ok["breaker"]) == \
            ("app", "backend", good.endpoint, "ok", "closed")
        assert ok["client"] == "127.0.0.1" and ok["bytes_up"] == 1234 and ok["bytes_down"] == 1234
        assert ok["queue_ms"] >= 0 and ok["connect_ms"] >= 0 and ok["first_byte_ms"] >= 0
        assert ok["duration_ms"] >= ok["first_byte_ms"] and ok["time"].endswith("Z")
        assert [f["outcome"] for f in failed] == ["connect_refused", "connect_refused", "breaker_open"]
        assert failed[0]["breaker"] == "closed" and failed[0]["connect_ms"] is None
        assert failed[2]["breaker"] == "rejected" and failed[2]["endpoint"] is None
        assert failed[2]["queue_ms"] is None and failed[2]["bytes_up"] == 0

        # SIGUSR1: the file was moved away; cynic writes to a new one
        os.rename(acc, acc + ".moved")
        proc.send_signal(signal.SIGUSR1)
        pu.wait_for(lambda: '"log reopened"' in open(main).read(), what="reopen")
        assert exchange(px, "app", b"after")
        pu.wait_for(lambda: len(lines(acc)) == 1, what="a line in the new file")
        assert lines(acc)[0]["bytes_up"] == 5 and len(lines(acc + ".moved")) == 4

        # rotation with log.rotate: past 64KB the file moves to .1
        with open(acc, "a") as f:
            f.write(json.dumps({"filler": "x" * 70000}) + "\n")
        pu.wait_for(lambda: os.path.exists(acc + ".1"), timeout=10, what="rotation")
        assert exchange(px, "app", b"new")
        pu.wait_for(lambda: len(lines(acc)) == 1, what="a line after rotation")
        assert os.path.getsize(acc + ".1") > 64 * 1024
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        proc.communicate()
        good.close(), bad.close()


def test_access_log_to_stderr_is_refused(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(pu.config(pu.listener("app", "b", 'access_log: "-"'), pu.upstream("b", ["127.0.0.1:9"])))
    r = subprocess.run([pu.CYNIC, "--check", "-c", str(cfg)], capture_output=True, timeout=20)
    assert r.returncode == 2 and b"access_log: '-' would mix" in r.stderr


def test_admin_events_follow_the_log_schema():
    good = pu.echo()
    px = pu.Cynic(pu.config(pu.listener("app", "backend"), pu.upstream("backend", [good.endpoint])))
    adm = au.Admin(px)
    try:
        adm.post("/breakers/backend/trip", {"reason": "maintenance"})
        adm.post("/reload")
        adm.post("/drain")
        assert px.wait_exit(15) == 0  # and read every line it wrote: all are checked
        for r in px.records():
            assert {"time", "level", "msg"} <= set(r), r
            assert r["level"] in ("debug", "info", "warn", "error")
        manual = px.logs(event="breaker_manual")[0]
        assert manual["level"] == "warn" and manual["upstream"] == "backend" and manual["action"] == "trip"
        assert manual["reason"] == "maintenance" and manual["by"].startswith("127.0.0.1:")
        tr = px.logs(event="breaker_transition")[0]
        assert tr["msg"] == "breaker transition"
        assert (tr["upstream"], tr["endpoint"], tr["from"], tr["to"], tr["reason"]) == \
            ("backend", good.endpoint, "closed", "forced_open", "manual_trip")
        assert px.logs(event="reloaded")[0]["reloads"] == 1
        assert px.logs(event="drain_requested")
    finally:
        px.stop()
        good.close()


HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def catalogue():
    """The event names docs/logs.md lists in its event catalogue."""
    text = open(os.path.join(ROOT, "docs", "logs.md")).read()
    section = text.split("### The event catalogue", 1)[1].split("\n## ", 1)[0]
    names = set()
    for row in section.splitlines():
        if row.startswith("| `"):
            names.update(re.findall(r"`([a-z_]+)`", row.split("|")[1]))
    return names


def test_every_event_in_the_source_is_in_the_catalogue():
    """Static half: every event the proxy's code can log is documented, even
    the ones no test provokes (start failures, out of memory)."""
    documented = catalogue()
    used = set()
    src = os.path.join(ROOT, "src", "proxy")
    for name in os.listdir(src):
        if name.endswith((".c", ".h")):
            code = open(os.path.join(src, name)).read()
            assert "cynic__log(" not in code, f"{name}: log with cynic__log_event (an event on every line)"
            used.update(re.findall(r'cynic__log_event\([^,]+,\s*"([a-z_]+)"', code))
            used.update(re.findall(r'XX\([A-Z_]+,\s*"([a-z_]+)"', code))  # CYNIC__EVENT_MAP
    assert len(used) > 30, used
    assert used <= documented, f"not in docs/logs.md's catalogue: {sorted(used - documented)}"


def test_every_line_has_a_documented_event(tmp_path):
    """Runtime half: cynic through start, traffic, faults and their summary,
    manual breaker changes, a refused and a good reload, SIGUSR1 and a drain;
    every line it wrote carries an event from the catalogue."""
    documented = catalogue()
    good, bad = pu.echo(), pu.Refused()
    text = pu.config(
        pu.listener("app", "backend") + pu.listener("db", "db"),
        pu.upstream("backend", [good.endpoint]) +
        pu.upstream("db", [bad.endpoint], "breaker: { faults: 2, leak: 60s, open_for: 60s }"),
        log_level="debug").replace("  level: debug\n", "  level: debug\n  summary_interval: 300ms\n")
    px = pu.Cynic(text)
    adm = au.Admin(px)
    try:
        assert exchange(px, "app", b"hello")
        for _ in range(3):  # two refusals trip the breaker, the third is refused by it
            assert not exchange(px, "db", b"q")
        px.wait_log(lambda r: r.get("event") == "connect_refused" and r.get("count") == 2,
                    what="the connect_refused summary")
        assert adm.post("/breakers/backend/trip", {"reason": "event test"})[0] == 200
        assert adm.post("/breakers/backend/reset")[0] == 200
        good_text = open(px.config).read()
        with open(px.config, "w") as f:
            f.write(good_text + "bogus: [\n")
        assert adm.post("/reload")[0] == 400
        with open(px.config, "w") as f:
            f.write(good_text)
        assert adm.post("/reload")[0] == 200
        px.signal(signal.SIGUSR1)
        px.wait_log(lambda r: r.get("msg") == "log reopened", what="log reopened")
        assert adm.post("/drain")[0] == 202
        assert px.wait_exit(15) == 0
        recs = px.records()
        missing = [r for r in recs if "event" not in r]
        assert not missing, missing[:5]
        unknown = {r["event"] for r in recs} - documented
        assert not unknown, f"events not in docs/logs.md: {unknown}"
        seen = {r["event"] for r in recs}
        for ev in ("listening", "started", "connection_closed", "connect_refused", "breaker_transition",
                   "breaker_open", "breaker_manual", "reload_refused", "reloaded", "log_reopened",
                   "drain_requested", "draining", "drained", "totals", "stopped"):
            assert ev in seen, (ev, sorted(seen))
    finally:
        px.stop()
        good.close(), bad.close()


def test_access_log_names_the_client_without_port_or_brackets_ipv4_and_ipv6(tmp_path):
    """The access log's `client` is the bare address in both families:
    "127.0.0.1" (IPv4 comes to cynic v4-mapped) and "::1", never "[::1]"
    or with a port."""
    good = pu.echo()
    acc = str(tmp_path / "access.log")
    text = pu.config(
        pu.listener("v4", "backend", f"access_log: {acc}") +
        pu.listener("v6", "backend", f"access_log: {acc}").replace("127.0.0.1:0", "\"[::1]:0\""),
        pu.upstream("backend", [good.endpoint]))
    px = pu.Cynic(text)
    try:
        assert exchange(px, "v4", b"four")
        assert exchange(px, "v6", b"six")
        pu.wait_for(lambda: len(lines(acc)) == 2, what="2 access lines")
        got = {r["listener"]: r["client"] for r in lines(acc)}
        assert got == {"v4": "127.0.0.1", "v6": "::1"}, got
    finally:
        px.stop()
        good.close()
