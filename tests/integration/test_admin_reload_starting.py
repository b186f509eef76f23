"""Reload while cynic is still starting: an endpoint's host name whose lookup
never comes back (a typo, a dead name server) keeps cynic from binding its
listeners; a reload that fixes the name is applied at once, the listeners
(one of them new) are bound from the new config without waiting for the old
lookup, and traffic flows.

The lookup is made to hang for real: cynic runs in its own mount namespace
(unshare -m) with /etc/resolv.conf bound to a file that names a loopback
"name server" this test runs, which reads the queries and answers them only
when the test says so (REFUSED), so the process can also stop promptly.
Needs root and unshare; skipped otherwise."""
import os
import random
import shutil
import socket
import subprocess
import threading
import time

import pytest

import adminutil as au
import proxyutil as pu


def can_unshare():
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    r = subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=10)
    return r.returncode == 0


pytestmark = pytest.mark.skipif(not can_unshare(), reason="needs root and unshare -m")


class HangingDNS:
    """A UDP "name server" on 127.x.y.z:53 that holds every query until
    release(), then answers each REFUSED (and any later one at once)."""

    def __init__(self):
        for _ in range(50):
            self.addr = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                self.sock.bind((self.addr, 53))
                break
            except OSError:
                self.sock.close()
        else:
            raise AssertionError("no loopback address with a free port 53")
        self.sock.settimeout(0.1)
        self.queries = []
        self.released = threading.Event()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @staticmethod
    def refused(q, peer):
        end = 12
        while end < len(q) and q[end] != 0:
            end += q[end] + 1
        question = q[12:end + 5]  # name, its zero byte, type and class
        return q[:2] + b"\x81\x85" + b"\x00\x01" + b"\x00\x00" * 3 + question

    def _run(self):
        held = []
        while not self.stopping.is_set():
            try:
                q, peer = self.sock.recvfrom(4096)
                self.queries.append(q)
                held.append((q, peer))
            except socket.timeout:
                pass
            if self.released.is_set():
                for q, peer in held:
                    self.sock.sendto(self.refused(q, peer), peer)
                held = []

    def release(self):
        self.released.set()

    def close(self):
        self.release()
        time.sleep(0.3)
        self.stopping.set()
        self.thread.join(5)
        self.sock.close()


def starting_cynic(config_text, resolv):
    """pu.Cynic in its own mount namespace with the given resolv.conf, not
    waiting for "started"."""
    script = 'r="$1"; shift; mount --bind "$r" /etc/resolv.conf && exec "$@"'
    return pu.Cynic(config_text, wrap=("unshare", "-m", "sh", "-c", script, "sh", resolv),
                    wait_started=False)


exchange = pu.exchange


def test_reload_while_starting_fixes_a_name_that_never_resolves(tmp_path):
    dns = HangingDNS()
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(f"nameserver {dns.addr}\noptions timeout:30 attempts:1\n")
    good = pu.echo()
    port = good.endpoint.rsplit(":", 1)[1]
    typo = pu.config(pu.listener("app", "backend"),
                     pu.upstream("backend", [f"bakend.typo.example:{port}"]))
    px = starting_cynic(typo, str(resolv))
    try:
        adm = au.Admin(px)
        pu.wait_for(lambda: dns.queries, timeout=10, what="the lookup at the name server")
        st, _, js, _ = adm.get("/ready")
        assert st == 503 and js["reason"].startswith("starting"), js
        assert not px.logs(msg="started")

        # the operator fixes the name, and adds a listener while at it
        fixed = pu.config(pu.listener("app", "backend") + pu.listener("extra", "backend"),
                          pu.upstream("backend", [good.endpoint]))
        with open(px.config, "w") as f:
            f.write(fixed)
        st, _, js, _ = adm.post("/reload")
        assert st == 200, js
        assert js["starting"] is True
        assert js["added"]["upstreams"] == ["backend"]
        assert js["removed"]["upstreams"] == ["backend"]
        # started from the new config without waiting for the old lookup,
        # which the name server still holds (it answers only at the end)
        px.wait_log(lambda r: r.get("msg") == "started", timeout=10, what="started")
        assert not dns.released.is_set()
        started = px.logs(msg="started")[0]
        assert started["listeners"] == 2
        px.learn_listeners()
        assert set(px.listeners) >= {"admin", "app", "extra"}
        assert exchange(px, "app") and exchange(px, "extra")
        st, _, js, _ = adm.get("/ready")
        assert st == 200, js
        live = [u for u in adm.status()["upstreams"] if not u.get("retired")]
        assert [e["name"] for u in live for e in u["endpoints"]] == [good.endpoint]
        assert px.logs(event="reloaded")
    finally:
        dns.release()  # the old lookup ends (REFUSED), so cynic can exit at once
        try:
            px.stop()
        finally:
            dns.close()
            good.close()
