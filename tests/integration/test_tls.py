"""TLS on both sides of cynic (issue 14), over real sockets.

First the fixtures themselves (tlsutil.py): every certificate verifies, or
fails to, as intended (`openssl verify`, `openssl s_client`, curl, Python's
ssl), and the backends record what they claim to (SNI, ALPN, resumption,
client certificates, close_notify).

Then cynic:
- origination: a verified HTTPS upstream behind an HTTP listener (nginx and
  Python backends): SNI = server_name, ALPN http/1.1; wrong name, expired and
  self-signed certificates refused, logged (reason, subject, expiry, no key
  material) and counted; mutual TLS to a backend that requires it; a handshake
  into cynic-harness's blackhole cut at tls_handshake and counted by the
  breaker; session resumption on the next connection (TLS 1.2 and 1.3); TCP
  mode wrapping a plain protocol, exact bytes and half-close.
- termination: client certificates required by client_ca_file; a silent or
  half-a-ClientHello client closed at tls_handshake; a certificate reload
  under traffic with no failed request, and a mismatched pair refused whole;
  TCP mode exact bytes with half-close; the status page's expiry warning.

The log events are those of docs/logs.md (tls_failed, tls_handshake_timeout,
client_tls_failed, tls_insecure), the metrics those of docs/admin.md
(cynic_tls_handshakes_total, cynic_tls_resumed_total,
cynic_tls_handshake_failures_total{reason}, cynic_tls_cert_expiry_seconds).
"""
import datetime
import http.client
import json
import os
import random
import socket
import ssl
import subprocess
import tempfile
import threading
import time

import pytest

import adminutil as au
import proxyutil as pu
import tlsutil as tu
from harness_util import Harness

SLOW = pu.sanitized()


# ---- fixtures ---------------------------------------------------------------

@pytest.fixture(scope="session")
def certs():
    c, tmp = tu.make_certs()
    yield c
    tmp.cleanup()


# ---- helpers ----------------------------------------------------------------

def q(path):
    return json.dumps(path)  # a YAML double-quoted scalar


def tls_block(**fields):
    """`tls: { k: v, ... }` with values quoted as needed."""
    parts = []
    for k, v in fields.items():
        if isinstance(v, bool):
            parts.append(f"{k}: {'true' if v else 'false'}")
        else:
            parts.append(f"{k}: {q(str(v))}")
    return "tls: { " + ", ".join(parts) + " }"


def http_get(addr, path="/", timeout=10.0, headers=None):
    """One GET on a new plain connection: (status, headers dict, body)."""
    conn = http.client.HTTPConnection(*addr, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def https_get(addr, ctx, path="/", timeout=10.0, server_name="localhost"):
    """One GET on a new TLS connection: (status, body, the server
    certificate's serial)."""
    tls = tu.tls_connect(addr, ctx, server_name, timeout)
    try:
        serial = tu.peer_serial(tls)
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        data = pu.recv_all(tls)
    finally:
        tls.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body, serial


def text_of(rec):
    return json.dumps(rec)


def tls_failures(px):
    """cynic's `tls_failed` log lines (an upstream handshake failed)."""
    return px.logs(event="tls_failed")


def tls_counts(adm, **owner):
    """The TLS counters of one listener or upstream (listener=... or
    upstream=...) in /metrics: handshakes, resumed, and failures by reason."""
    m = adm.metrics()
    out = {"handshakes": m.get("cynic_tls_handshakes_total", **owner),
           "resumed": m.get("cynic_tls_resumed_total", **owner)}
    for reason in ("timeout", "verify", "protocol", "closed"):
        out[reason] = m.get("cynic_tls_handshake_failures_total", reason=reason, **owner)
    return out


def tls_status(adm, kind, name):
    """The `tls` object of a listener or upstream in /status."""
    for x in adm.status()[kind]:
        if x["name"] == name:
            return x["tls"]
    raise AssertionError(f"no {kind} {name}")


def expiry_forms(when):
    """Ways a log line may write a certificate's expiry."""
    return [when.strftime("%Y-%m-%d"), when.strftime("%Y%m%d"), when.strftime("%b %e %H:%M:%S %Y"),
            when.strftime("%b %d %H:%M:%S %Y"), str(int(when.timestamp()))]


def key_material(leaf):
    """The base64 lines of leaf's private key (none may reach a log)."""
    with open(leaf.key) as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("-----")]


def random_payload(n, seed):
    return random.Random(seed).randbytes(n)


# ---- the fixtures, proven ---------------------------------------------------

def test_fixture_certificates_verify_as_intended(certs):
    c = certs
    for leaf, purpose, name in ((c.server, "sslserver", "localhost"), (c.server, "sslserver", "127.0.0.1"),
                                (c.server2, "sslserver", "localhost"), (c.soon, "sslserver", None),
                                (c.client, "sslclient", None)):
        ok, out = c.verify(leaf, purpose, name)
        assert ok, (leaf, purpose, name, out)
    # the chain is needed: the root alone does not verify a server certificate
    ok, out = c.verify(c.server, untrusted=False)
    assert not ok and "unable to get local issuer certificate" in out, out
    # so the server files carry it: leaf, then the intermediate
    for leaf in (c.server, c.server2, c.expired, c.wrong_name, c.soon):
        with open(leaf.cert) as f:
            assert f.read().count("BEGIN CERTIFICATE") == 2, leaf
    ok, out = c.verify(c.expired)
    assert not ok and "certificate has expired" in out, out
    assert c.expired.not_after < datetime.datetime.now(datetime.timezone.utc)
    ok, out = c.verify(c.wrong_name, name="localhost")
    assert not ok and "hostname mismatch" in out, out
    assert c.verify(c.wrong_name, name="wrong.example")[0]
    ok, out = c.verify(c.self_signed)
    assert not ok and "self-signed certificate" in out, out
    ok, out = c.verify(c.client, "sslserver")
    assert not ok, out  # a client certificate does not serve
    left = c.soon.not_after - datetime.datetime.now(datetime.timezone.utc)
    assert datetime.timedelta(days=6, hours=23) < left <= datetime.timedelta(days=7), left
    # server2 differs from server in serial and subject O; the mismatched pair does not match
    assert c.server2.serial != c.server.serial
    assert "O=cynic tests reloaded" in c.server2.subject and "O=cynic tests reloaded" not in c.server.subject

    def pub(args):
        return tu.openssl(*args)
    assert pub(["x509", "-in", c.server.leaf, "-noout", "-pubkey"]) == pub(["pkey", "-in", c.server.key, "-pubout"])
    assert pub(["x509", "-in", c.mismatched.leaf, "-noout", "-pubkey"]) != \
        pub(["pkey", "-in", c.mismatched.key, "-pubout"])
    with pytest.raises(ssl.SSLError):
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(c.mismatched.cert, c.mismatched.key)


def s_client(port, certs, name="localhost", extra=()):
    """`openssl s_client` verifying against the root: (exit code, output)."""
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", name,
                        "-verify_hostname", name, "-CAfile", certs.ca.cert, "-verify_return_error",
                        "-brief", *extra],
                       input=b"", capture_output=True, timeout=30)
    return r.returncode, (r.stdout + r.stderr).decode(errors="replace")


def test_fixture_backends_with_openssl_curl_and_python(certs):
    c = certs
    good = tu.TlsServer(c.server, tu.HTTP)
    wrong = tu.TlsServer(c.wrong_name, tu.HTTP)
    mtls = tu.TlsServer(c.server, tu.ECHO, client_ca=c.ca.cert)
    try:
        rc, out = s_client(good.port, c)
        assert rc == 0 and "Verification: OK" in out, out
        rc, out = s_client(wrong.port, c)
        assert rc != 0 and "hostname mismatch" in out, out
        # curl: SNI and ALPN as the backend saw them
        r = subprocess.run(["curl", "-sS", "--cacert", c.ca.cert, "--http1.1", "-D", "-",
                            f"https://localhost:{good.port}/x"], capture_output=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert b"X-SNI: localhost" in r.stdout and b"X-ALPN: http/1.1" in r.stdout, r.stdout
        assert good.ok_handshakes()[-1]["sni"] == "localhost"
        # Python: the second connection resumes, in TLS 1.2 and in 1.3
        for version in ("1.2", "1.3"):
            srv = tu.TlsServer(c.server, tu.HTTP, max_version=version)
            try:
                ctx = tu.client_context(c)
                session = None
                for i in range(2):
                    tls = ctx.wrap_socket(socket.create_connection(("127.0.0.1", srv.port), timeout=10),
                                          server_hostname="localhost", session=session)
                    tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    pu.recv_all(tls)  # TLS 1.3 tickets come after the handshake
                    session = tls.session
                    assert tls.session_reused == (i == 1), (version, i)
                    tls.close()
                pu.wait_for(lambda: len(srv.ok_handshakes()) == 2, what="two handshakes")
                assert [h["reused"] for h in srv.ok_handshakes()] == [False, True], srv.handshakes
                assert srv.ok_handshakes()[0]["version"] == f"TLSv{version}"
            finally:
                srv.close()
        # a backend that requires a client certificate: refused without, served with
        with pytest.raises((ssl.SSLError, ConnectionError)):
            tls = tu.tls_connect(("127.0.0.1", mtls.port), tu.client_context(c))
            tls.sendall(b"x")
            tls.recv(1)  # TLS 1.3: the refusal comes after the client's Finished
        got, eof = tu.tls_half_close_exchange(("127.0.0.1", mtls.port), tu.client_context(c, cert=c.client),
                                              b"y" * 300000)
        assert got == b"y" * 300000 and eof == "close_notify"
        pu.wait_for(lambda: mtls.ok_handshakes(), what="an mTLS handshake")
        assert mtls.ok_handshakes()[-1]["peer"]["commonName"] == "cynic client"
        assert mtls.ok_handshakes()[-1]["eof"] == "close_notify"
        assert mtls.handshakes[0]["error"] is not None or mtls.handshakes[0]["peer"] is None
    finally:
        good.close(), wrong.close(), mtls.close()


@pytest.mark.skipif(not tu.have_nginx(), reason="nginx not installed (scripts/deps.sh installs it)")
def test_fixture_nginx_serves_https_and_records_the_handshake(certs):
    c = certs
    ng = tu.Nginx(c.server)
    ngm = tu.Nginx(c.server, client_ca=c.ca.cert)
    try:
        r = subprocess.run(["curl", "-sS", "--cacert", c.ca.cert, "--http1.1", "-D", "-",
                            f"https://localhost:{ng.port}/a"], capture_output=True, timeout=30)
        assert r.returncode == 0 and b"\r\nX-SNI: localhost\r\n" in r.stdout, (r.stdout, r.stderr)
        assert b"X-ALPN: http/1.1" in r.stdout
        pu.wait_for(lambda: ng.lines(), what="nginx's access log line")
        assert ng.lines()[-1]["sni"] == "localhost" and ng.lines()[-1]["alpn"] == "http/1.1"
        rc, out = s_client(ng.port, c)
        assert rc == 0 and "Verification: OK" in out, out
        r = subprocess.run(["curl", "-sS", "--cacert", c.ca.cert, f"https://localhost:{ngm.port}/"],
                           capture_output=True, timeout=30)
        assert b"No required SSL certificate was sent" in r.stdout, r.stdout
        r = subprocess.run(["curl", "-sS", "--cacert", c.ca.cert, "--cert", c.client.cert, "--key", c.client.key,
                            "-D", "-", f"https://localhost:{ngm.port}/"], capture_output=True, timeout=30)
        assert r.returncode == 0 and b"CN=cynic client" in r.stdout, r.stdout
    finally:
        ng.close(), ngm.close()


# ---- cynic: origination -----------------------------------------------------

def origin_config(endpoint, tls, mode="http", upstream_extra="", listener_extra=""):
    return pu.config(
        pu.listener("app", "vendor", f"mode: {mode}\n{listener_extra}"),
        pu.upstream("vendor", [endpoint], f"timeouts: {{ connect: 1s, tls_handshake: 2s }}\n{tls}\n{upstream_extra}"))


@pytest.mark.skipif(not tu.have_nginx(), reason="nginx not installed (scripts/deps.sh installs it)")
def test_verified_https_upstream_nginx(certs):
    ng = tu.Nginx(certs.server)
    px = pu.Cynic(origin_config(ng.endpoint, tls_block(server_name="localhost", ca_file=certs.ca.cert)))
    try:
        for i in range(5):
            st, h, body = http_get(px.addr(), f"/r{i}")
            assert st == 200 and body == b"ok\n", (st, h, body, px.tail())
            assert h["x-sni"] == "localhost" and h["x-alpn"] == "http/1.1", h
        pu.wait_for(lambda: len(ng.lines()) == 5, what="nginx's five access log lines")
        for line in ng.lines():
            assert line["sni"] == "localhost" and line["alpn"] == "http/1.1", line
            assert line["protocol"] in ("TLSv1.2", "TLSv1.3"), line
        assert [line["request"] for line in ng.lines()] == [f"GET /r{i} HTTP/1.1" for i in range(5)]
    finally:
        px.stop()
        ng.close()


def test_verified_https_upstream_python_backend_and_server_name_defaults(certs):
    be = tu.TlsServer(certs.server, tu.HTTP)
    try:
        # server_name given: SNI = server_name, ALPN http/1.1 offered and chosen
        px = pu.Cynic(origin_config(be.endpoint, tls_block(server_name="localhost", ca_file=certs.ca.cert)))
        try:
            for i in range(3):
                st, h, body = http_get(px.addr(), f"/p{i}")
                assert st == 200, (st, body, px.tail())
                js = json.loads(body)
                assert js["sni"] == "localhost" and js["alpn"] == "http/1.1" and js["target"] == f"/p{i}", js
        finally:
            px.stop()
        # no server_name, endpoint by name: SNI and the name verified are the endpoint's host
        px = pu.Cynic(origin_config(f"localhost:{be.port}", tls_block(ca_file=certs.ca.cert)))
        try:
            st, h, body = http_get(px.addr())
            assert st == 200 and json.loads(body)["sni"] == "localhost", (st, body, px.tail())
        finally:
            px.stop()
        # no server_name, endpoint by IP address: verified as that IP (the
        # certificate has IP:127.0.0.1); no SNI (RFC 6066 has none for IPs)
        px = pu.Cynic(origin_config(be.endpoint, tls_block(ca_file=certs.ca.cert)))
        try:
            st, h, body = http_get(px.addr())
            assert st == 200, (st, body, px.tail())
            assert json.loads(body)["sni"] is None, body
        finally:
            px.stop()
    finally:
        be.close()


BAD = {
    # name: (the certificate, the tls block's extra fields, words one of which the reason has)
    "expired": ("expired", {"server_name": "localhost", "ca_file": None}, ("expired",)),
    "wrong_name": ("wrong_name", {"server_name": "localhost", "ca_file": None},
                   ("hostname", "name mismatch", "mismatch", "wrong name")),
    "self_signed": ("self_signed", {"server_name": "localhost"},
                    ("self-signed", "self signed", "local issuer", "unknown ca", "untrusted")),
}


@pytest.mark.parametrize("mode", ["http", "tcp"])
@pytest.mark.parametrize("bad", sorted(BAD))
def test_bad_upstream_certificate_refused_logged_counted(certs, bad, mode):
    attr, fields, words = BAD[bad]
    leaf = getattr(certs, attr)
    fields = {k: (certs.ca.cert if k == "ca_file" else v) for k, v in fields.items()}
    be = tu.TlsServer(leaf, tu.HTTP if mode == "http" else tu.ECHO)
    px = pu.Cynic(origin_config(be.endpoint, tls_block(**fields), mode=mode,
                                upstream_extra="breaker: { faults: 50, leak: 60s, open_for: 30s, half_open_probes: 1 }"))
    adm = au.Admin(px)
    try:
        for _ in range(2):
            if mode == "http":
                st, h, body = http_get(px.addr())
                assert st in (502, 503) and h["cynic-answer"] == "tls_failed", (st, h, body)
            else:
                with px.connect() as s:
                    s.sendall(b"hello")
                    assert pu.closed_within(s, 10) is not None, "the client was not closed"
                    # nothing of the backend's came through
        pu.wait_for(lambda: tls_failures(px), what="a tls failure log line")
        assert be.ok_handshakes() == [] or all(h["error"] is not None for h in be.handshakes)
        rec = tls_failures(px)[0]
        assert rec["level"] == "warn" and rec["upstream"] == "vendor" and rec["endpoint"] == be.endpoint, rec
        assert rec["error"].startswith("certificate verify failed: "), rec
        text = text_of(rec).lower()
        assert any(w in text for w in words), ("reason", rec)
        assert leaf.subject.split(",")[0].split("=", 1)[1].lower() in text, ("subject", rec)
        assert any(form.lower() in text for form in expiry_forms(leaf.not_after)), ("expiry", rec)
        assert "PRIVATE KEY" not in "\n".join(px.lines)
        for line in key_material(leaf) + key_material(certs.client):
            assert line not in "\n".join(px.lines)
        counts = tls_counts(adm, upstream="vendor")
        assert counts == {"handshakes": 0, "resumed": 0, "timeout": 0, "verify": 2, "protocol": 0, "closed": 0}, \
            counts
        assert tls_status(adm, "upstreams", "vendor")["failures"]["verify"] == 2
    finally:
        px.stop()
        be.close()


def test_mutual_tls_to_a_backend_that_requires_it(certs):
    be = tu.TlsServer(certs.server, tu.HTTP, client_ca=certs.ca.cert)
    try:
        px = pu.Cynic(origin_config(be.endpoint, tls_block(server_name="localhost", ca_file=certs.ca.cert,
                                                            cert_file=certs.client.cert,
                                                            key_file=certs.client.key)))
        try:
            st, h, body = http_get(px.addr())
            assert st == 200, (st, body, px.tail())
            assert json.loads(body)["peer"]["commonName"] == "cynic client", body
        finally:
            px.stop()
        before = len(be.handshakes)
        px = pu.Cynic(origin_config(be.endpoint, tls_block(server_name="localhost", ca_file=certs.ca.cert)))
        try:
            st, h, body = http_get(px.addr())
            assert st in (502, 503), (st, body)
            pu.wait_for(lambda: len(be.handshakes) > before
                        and all(h["error"] is not None for h in be.handshakes[before:]),
                        what="the backend to refuse the handshake")
            assert not [h for h in be.handshakes[before:] if h["peer"]], be.handshakes[before:]
        finally:
            px.stop()
    finally:
        be.close()


def test_handshake_into_a_blackhole_cut_at_tls_handshake_and_trips_the_breaker(certs):
    be = tu.TlsServer(certs.server, tu.ECHO)
    harness = Harness()
    hs = 0.5 if not SLOW else 1.0
    try:
        p = harness.create("dep", be.endpoint)
        port = harness.listen_port(p)
        endpoint = f"127.0.0.1:{port}"
        px = pu.Cynic(origin_config(endpoint, tls_block(server_name="localhost", ca_file=certs.ca.cert),
                                    mode="tcp", upstream_extra=(
                                        "breaker: { faults: 3, leak: 60s, open_for: 60s, half_open_probes: 1 }")
                                    ).replace("tls_handshake: 2s", f"tls_handshake: {int(hs * 1000)}ms"
                                              ).replace("connect: 1s", "connect: 1s, first_byte: 30s"))
        adm = au.Admin(px)
        try:
            # healthy first: the path works through the harness
            assert pu.exchange(px, payload=b"through")
            # blackhole: neither direction is read nor written (docs/harness.md)
            harness.add_toxic("dep", name="bh", type="blackhole", stream="downstream", toxicity=1.0, attributes={})
            took = []
            for i in range(3):
                with px.connect(timeout=30) as s:
                    t0 = time.monotonic()
                    s.sendall(b"x")
                    end = pu.closed_within(s, hs + 10)
                    assert end is not None, f"client {i} not closed within tls_handshake + 10 s"
                    took.append(time.monotonic() - t0)
            # cut at tls_handshake: not before it, and well before first_byte (30 s)
            assert all(0.8 * hs <= t <= hs + 5 for t in took), took
            assert adm.breaker("vendor", endpoint)["state"] == "open", adm.breaker("vendor", endpoint)
            # open: the next client is closed at once, without waiting for a handshake
            with px.connect() as s:
                t0 = time.monotonic()
                s.sendall(b"x")
                assert pu.closed_within(s, 10) is not None
                assert time.monotonic() - t0 < 0.8 * hs, time.monotonic() - t0
            rec = px.wait_msg("TLS handshake timeout", event="tls_handshake_timeout", endpoint=endpoint)
            assert rec["level"] == "warn" and rec["upstream"] == "vendor", rec
            counts = tls_counts(adm, upstream="vendor")
            assert counts["timeout"] == 3 and counts["handshakes"] == 1, counts
        finally:
            px.stop()
    finally:
        harness.stop()
        be.close()


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_session_resumed_on_the_next_connection(certs, version):
    be = tu.TlsServer(certs.server, tu.ECHO, max_version=version)
    px = pu.Cynic(origin_config(be.endpoint, tls_block(server_name="localhost", ca_file=certs.ca.cert), mode="tcp"))
    adm = au.Admin(px)
    try:
        for i in range(3):
            assert tu.plain_half_close_exchange(px.addr(), b"round %d" % i) == b"round %d" % i
            pu.wait_for(lambda: len(be.ok_handshakes()) == i + 1, what=f"handshake {i + 1}")
        hs = be.ok_handshakes()
        assert [h["version"] for h in hs] == [f"TLSv{version}"] * 3, hs
        assert [h["reused"] for h in hs] == [False, True, True], hs
        counts = tls_counts(adm, upstream="vendor")
        assert counts["handshakes"] == 3 and counts["resumed"] == 2, counts
        assert abs(tls_status(adm, "upstreams", "vendor")["resumption_rate"] - 2 / 3) < 0.01
    finally:
        px.stop()
        be.close()


SIZES = [1, 1000, 65537, 1 << 20]


def test_tcp_mode_plain_client_to_tls_upstream_exact_bytes(certs):
    be = tu.TlsServer(certs.server, tu.ECHO)
    px = pu.Cynic(origin_config(be.endpoint, tls_block(server_name="localhost", ca_file=certs.ca.cert), mode="tcp"))
    try:
        for n in SIZES:
            payload = random_payload(n, n)
            got = tu.plain_half_close_exchange(px.addr(), payload)
            assert len(got) == n and got == payload, (n, len(got))
        pu.wait_for(lambda: all(h["eof"] for h in be.ok_handshakes()), what="every stream ended")
    finally:
        px.stop()
        be.close()


def test_tcp_mode_origination_ends_the_stream_with_close_notify(certs):
    """The client's FIN reaches the TLS backend as close_notify (a bare TCP
    FIN is indistinguishable from a truncation attack)."""
    be = tu.TlsServer(certs.server, tu.ECHO)
    px = pu.Cynic(origin_config(be.endpoint, tls_block(server_name="localhost", ca_file=certs.ca.cert), mode="tcp"))
    try:
        assert tu.plain_half_close_exchange(px.addr(), b"bye") == b"bye"
        pu.wait_for(lambda: be.ok_handshakes() and be.ok_handshakes()[0]["eof"], what="the stream's end")
        assert be.ok_handshakes()[0]["eof"] == "close_notify", be.handshakes
    finally:
        px.stop()
        be.close()


# ---- cynic: termination -----------------------------------------------------

def term_config(certs_dir_or_leaf, upstream_endpoint, mode="http", extra_tls="", timeouts="tls_handshake: 5s"):
    leaf = certs_dir_or_leaf
    return pu.config(
        pu.listener("app", "backend", f"mode: {mode}\ntimeouts: {{ {timeouts} }}\n"
                    f"tls: {{ cert_file: {q(leaf[0])}, key_file: {q(leaf[1])}{extra_tls} }}"),
        pu.upstream("backend", [upstream_endpoint], "timeouts: { connect: 1s }"))


def test_tcp_mode_tls_client_to_plain_upstream_exact_bytes(certs):
    echo = pu.echo()
    px = pu.Cynic(term_config((certs.server.cert, certs.server.key), echo.endpoint, mode="tcp"))
    try:
        for n in SIZES:
            payload = random_payload(n, n + 1)
            got, eof = tu.tls_half_close_exchange(px.addr(), tu.client_context(certs), payload)
            assert len(got) == n and got == payload, (n, len(got))
            assert eof == "close_notify", eof
    finally:
        px.stop()
        echo.close()


def test_listener_requires_client_certificates_signed_by_client_ca(certs):
    be = tu.plain_http()
    px = pu.Cynic(term_config((certs.server.cert, certs.server.key), be.endpoint,
                              extra_tls=f", client_ca_file: {q(certs.ca.cert)}"))
    adm = au.Admin(px)
    try:
        st, body, serial = https_get(px.addr(), tu.client_context(certs, cert=certs.client))
        assert st == 200 and body == b"ok\n" and serial == certs.server.serial
        served = be.requests
        for who, cert in (("no certificate", None), ("a self-signed one", certs.self_signed)):
            with pytest.raises((OSError, ValueError, IndexError)):  # ssl.SSLError, resets, ENOTCONN
                # TLS 1.3: the refusal may come after the client's Finished, at the first read
                st, body, _ = https_get(px.addr(), tu.client_context(certs, cert=cert))
                raise AssertionError(f"{who}: answered {st} {body!r}")
        assert be.requests == served
        rec = px.wait_msg("client TLS handshake failed or timed out", event="client_tls_failed", listener="app")
        assert rec["level"] == "warn" and "certificate" in rec["error"], rec
        counts = tls_counts(adm, listener="app")
        assert counts["handshakes"] >= 1 and counts["verify"] + counts["protocol"] + counts["closed"] == 2, counts
    finally:
        px.stop()
        be.close()


def test_listener_closes_a_silent_or_half_hello_client_at_tls_handshake(certs):
    be = tu.plain_http()
    hs = 1.0
    px = pu.Cynic(term_config((certs.server.cert, certs.server.key), be.endpoint, timeouts="tls_handshake: 1s"))
    adm = au.Admin(px)
    try:
        # half a ClientHello: the first bytes of a real one
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = tu.client_context(certs).wrap_bio(inc, out, server_hostname="localhost")
        with pytest.raises(ssl.SSLWantReadError):
            obj.do_handshake()
        hello = out.read()
        assert hello[0] == 0x16 and len(hello) > 100
        for what, data in (("silent", b""), ("half a ClientHello", hello[:len(hello) // 2])):
            with px.connect() as s:
                t0 = time.monotonic()
                if data:
                    s.sendall(data)
                took = pu.closed_within(s, hs + 10)
                assert took is not None, f"{what}: not closed"
                took = time.monotonic() - t0
                assert 0.8 * hs <= took <= hs + 5, (what, took)
        rec = px.wait_msg("client TLS handshake failed or timed out", event="client_tls_failed", listener="app")
        assert "tls_handshake" in rec["error"], rec
        assert tls_counts(adm, listener="app")["timeout"] == 2
        # a client past its handshake is not held to it
        tls = tu.tls_connect(px.addr(), tu.client_context(certs))
        try:
            time.sleep(hs * 1.5)
            tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert pu.recv_all(tls).startswith(b"HTTP/1.1 200 ")
        finally:
            tls.close()
    finally:
        px.stop()
        be.close()


def test_certificate_reload_under_traffic(certs):
    be = tu.plain_http()
    d = tempfile.TemporaryDirectory(prefix="cynic-reload-")
    cert, key = os.path.join(d.name, "listener.pem"), os.path.join(d.name, "listener.key")
    tu.install(certs.server, cert, key)
    px = pu.Cynic(term_config((cert, key), be.endpoint))
    adm = au.Admin(px)
    ctx = tu.client_context(certs)
    results, stop = [], threading.Event()  # (status or error, serial, started, ended)
    marks = {}  # when each reload was asked for and answered (time.monotonic())

    def loop():
        while not stop.is_set() and len(results) < 100000:
            t0 = time.monotonic()
            try:
                st, body, serial = https_get(px.addr(), ctx)
                results.append((st, serial, t0, time.monotonic()))
            except Exception as e:  # noqa: BLE001 - counted as a failure
                results.append((repr(e), None, t0, time.monotonic()))
    kept = []  # one connection opened before the reload, kept alive across it

    def kept_request():
        tls = kept[0]
        tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        buf = b""
        while b"ok\n" not in buf:
            data = tls.recv(4096)
            assert data, "the kept connection was closed"
            buf += data
        return buf.startswith(b"HTTP/1.1 200 ")
    threads = [threading.Thread(target=loop, daemon=True) for _ in range(2)]
    try:
        kept.append(tu.tls_connect(px.addr(), ctx))
        assert kept_request() and tu.peer_serial(kept[0]) == certs.server.serial
        for t in threads:
            t.start()
        pu.wait_for(lambda: len(results) >= 20, timeout=30, what="traffic before the reload")
        tu.install(certs.server2, cert, key)
        marks["asked"] = time.monotonic()
        st, _, js, raw = adm.post("/reload")
        marks["answered"] = time.monotonic()
        assert st == 200, raw
        n_at_reload = len(results)
        pu.wait_for(lambda: any(r[1] == certs.server2.serial for r in results[n_at_reload:]), timeout=10,
                    what="a new connection with the new certificate")
        pu.wait_for(lambda: len(results) >= n_at_reload + 40, timeout=30, what="traffic after the reload")
        assert tls_status(adm, "listeners", "app")["certificate"]["subject"] == certs.server2.subject
        assert kept_request()  # the open connection keeps working
        # a mismatched pair: refused whole, the new-old one keeps serving
        tu.install(certs.mismatched, cert, key)
        marks["bad"] = time.monotonic()
        st, _, js, raw = adm.post("/reload")
        assert 400 <= st < 500, (st, raw)
        assert b"key values mismatch" in raw and b"tls.key_file" in raw, raw
        assert px.wait_log(lambda r: r.get("event") == "reload_refused")["level"] == "error"
        n_at_bad = len(results)
        pu.wait_for(lambda: len(results) >= n_at_bad + 20, timeout=30, what="traffic after the refused reload")
        assert kept_request()
        assert tls_status(adm, "listeners", "app")["certificate"]["subject"] == certs.server2.subject
    finally:
        stop.set()
        for t in threads:
            if t.ident is not None:  # started
                t.join(30)
        for tls in kept:
            tls.close()
        px.stop()
        be.close()
        d.cleanup()
    failed = [r for r in results if r[0] != 200]
    assert not failed, (len(failed), failed[:5])
    # connections over before the reload was asked for saw the old
    # certificate; every one begun after it was answered, the new one, also
    # after the refused reload (those in between may see either)
    before = [r for r in results if r[3] < marks["asked"]]
    after = [r for r in results if r[2] > marks["answered"]]
    assert len(before) >= 20 and len(after) >= 40, (len(before), len(after))
    assert {r[1] for r in before} == {certs.server.serial}
    assert {r[1] for r in after} == {certs.server2.serial}, "the refused reload changed the certificate"
    assert [r for r in after if r[2] > marks["bad"]], "no traffic after the refused reload"


def test_status_warns_of_a_certificate_expiring_within_14_days(certs):
    be = tu.plain_http()
    px = pu.Cynic(term_config((certs.soon.cert, certs.soon.key), be.endpoint))
    adm = au.Admin(px)
    try:
        st, body, serial = https_get(px.addr(), tu.client_context(certs))
        assert st == 200 and serial == certs.soon.serial
        cert = tls_status(adm, "listeners", "app")["certificate"]
        assert cert["expires_in_days"] in (6, 7) and "14 days" in cert["warning"], cert
        assert cert["subject"] == certs.soon.subject, cert
        # a certificate good for a year has no warning
        px2 = pu.Cynic(term_config((certs.server.cert, certs.server.key), be.endpoint))
        try:
            cert2 = tls_status(au.Admin(px2), "listeners", "app")["certificate"]
            assert "warning" not in cert2 and cert2["expires_in_days"] >= 360, cert2
        finally:
            px2.stop()
        samples = adm.metrics().all("cynic_tls_cert_expiry_seconds")
        assert samples, "no cynic_tls_cert_expiry_seconds"
        left = (certs.soon.not_after - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
        # seconds left, or the expiry as a Unix time: either names this certificate
        assert any(abs(v - left) < 3600 or abs(v - certs.soon.not_after.timestamp()) < 3600
                   for _, v in samples), (samples, left)
    finally:
        px.stop()
        be.close()


# ---- versions, insecure_skip_verify, ALPN, limits, bad files -----------------

def test_min_version_1_3_on_both_sides_refuses_tls_1_2(certs):
    # listener: a client that stops at TLS 1.2 is refused, one with 1.3 served
    be = tu.plain_http()
    px = pu.Cynic(term_config((certs.server.cert, certs.server.key), be.endpoint, extra_tls=', min_version: "1.3"'))
    adm = au.Admin(px)
    try:
        with pytest.raises(ssl.SSLError):
            tu.tls_connect(px.addr(), tu.client_context(certs, max_version=ssl.TLSVersion.TLSv1_2)).close()
        tls = tu.tls_connect(px.addr(), tu.client_context(certs))
        assert tls.version() == "TLSv1.3"
        tls.close()
        rec = px.wait_msg("client TLS handshake failed or timed out", event="client_tls_failed", listener="app")
        assert "unsupported protocol" in rec["error"], rec
        assert tls_counts(adm, listener="app")["protocol"] == 1
    finally:
        px.stop()
        be.close()
    # upstream: a backend that stops at TLS 1.2 is refused (and counted), one with 1.3 served
    old = tu.TlsServer(certs.server, tu.HTTP, max_version="1.2")
    new = tu.TlsServer(certs.server, tu.HTTP, max_version="1.3")
    try:
        for be, want in ((old, 502), (new, 200)):
            px = pu.Cynic(origin_config(be.endpoint, tls_block(server_name="localhost", ca_file=certs.ca.cert,
                                                               min_version="1.3")))
            adm = au.Admin(px)
            try:
                st, h, body = http_get(px.addr())
                assert st == want, (st, h, body)
                if want == 502:
                    assert h["cynic-answer"] == "tls_failed"
                    assert tls_counts(adm, upstream="vendor")["protocol"] == 1
                    assert tls_failures(px)[0]["error"].startswith("TLS handshake failed"), tls_failures(px)
                else:
                    assert json.loads(body)["version"] == "TLSv1.3"
            finally:
                px.stop()
        assert old.ok_handshakes() == []
    finally:
        old.close(), new.close()


def test_insecure_skip_verify_works_and_is_logged_loudly(certs):
    be = tu.TlsServer(certs.self_signed, tu.HTTP)
    px = pu.Cynic(origin_config(be.endpoint, tls_block(server_name="localhost", insecure_skip_verify=True)))
    adm = au.Admin(px)
    try:
        st, h, body = http_get(px.addr())
        assert st == 200 and json.loads(body)["sni"] == "localhost", (st, body)
        rec = px.wait_log(lambda r: r.get("event") == "tls_insecure")
        assert rec["level"] == "warn" and rec["upstream"] == "vendor" and "NOT verified" in rec["msg"], rec
        # again at every reload
        st, _, js, raw = adm.post("/reload")
        assert st == 200, raw
        pu.wait_for(lambda: len(px.logs(event="tls_insecure")) == 2, what="tls_insecure at the reload")
        assert tls_failures(px) == []
    finally:
        px.stop()
        be.close()


def test_alpn_http_1_1_is_offered_behind_http_listeners_only(certs):
    be = tu.TlsServer(certs.server, tu.ECHO)
    px = pu.Cynic(origin_config(be.endpoint, tls_block(server_name="localhost", ca_file=certs.ca.cert), mode="tcp"))
    try:
        assert tu.plain_half_close_exchange(px.addr(), b"not http") == b"not http"
        pu.wait_for(lambda: be.ok_handshakes(), what="the handshake")
        # a TCP listener may carry any protocol: it must not claim http/1.1
        assert be.ok_handshakes()[0]["alpn"] is None and be.ok_handshakes()[0]["sni"] == "localhost"
    finally:
        px.stop()
        be.close()


def test_per_client_limit_applies_before_the_handshake(certs):
    """A client holding its allowance of silent connections gets its next one
    closed at once, not after tls_handshake (issue 14: the per-client limits
    apply before the handshake)."""
    be = tu.plain_http()
    px = pu.Cynic(pu.config(
        pu.listener("app", "backend", "mode: http\nmax_connections_per_client: 2\ntimeouts: { tls_handshake: 10s }\n"
                    f"tls: {{ cert_file: {q(certs.server.cert)}, key_file: {q(certs.server.key)} }}"),
        pu.upstream("backend", [be.endpoint], "timeouts: { connect: 1s }")))
    held = []
    try:
        held = [px.connect() for _ in range(2)]
        time.sleep(0.2)  # both accepted and counted (a bounded pause; the check below is by closing time)
        with px.connect() as s:
            took = pu.closed_within(s, 5)
            assert took is not None and took < 5, "the third connection was held into its handshake"
        for h in held:  # the two silent ones are still open (waiting to handshake)
            h.settimeout(0.1)
            with pytest.raises(socket.timeout):
                h.recv(1)
    finally:
        for h in held:
            h.close()
        px.stop()
        be.close()


def test_bad_certificate_files_refused_at_start_with_a_clear_error(certs):
    d = tempfile.TemporaryDirectory(prefix="cynic-badtls-")
    try:
        cases = [
            ("missing", (os.path.join(d.name, "nope.pem"), certs.server.key), "No such file"),
            ("mismatched", (certs.mismatched.cert, certs.mismatched.key), "key values mismatch"),
            ("not PEM", (certs.ext, certs.server.key), "no start line"),
            ("key for cert", (certs.server.key, certs.server.key), "tls.cert_file"),
        ]
        for what, pair, words in cases:
            path = os.path.join(d.name, "c.yaml")
            with open(path, "w") as f:
                f.write(term_config(pair, "127.0.0.1:1"))
            r = subprocess.run([pu.CYNIC, "--check", "-c", path], capture_output=True, timeout=30)
            out = (r.stdout + r.stderr).decode(errors="replace")
            assert r.returncode == 2, (what, r.returncode, out)
            assert words in out and "listener 'app'" in out, (what, out)
            for line in key_material(certs.server) + key_material(certs.server2):
                assert line not in out, (what, "key material in the error")
            # and the daemon itself does not start on it
            px = pu.Cynic(term_config(pair, "127.0.0.1:1"), wait_started=False)
            try:
                assert px.wait_exit(30) == 2, px.tail()
            finally:
                px.kill()
                px.proc.stdout.close(), px.proc.stderr.close()
                px.dir.cleanup()
    finally:
        d.cleanup()


def test_health_checks_of_a_tls_upstream_speak_tls(certs):
    """health_check on a tls upstream: an HTTP check goes over a verified
    handshake (SNI, ALPN as traffic) and passes; a TCP check passes on the
    handshake; a certificate the upstream's tls refuses fails the check with
    the verification's reason and takes the endpoint out of rotation."""
    good = tu.TlsServer(certs.server, tu.HTTP)
    bad = tu.TlsServer(certs.wrong_name, tu.HTTP)
    checks = "health_check: { path: /healthz, interval: 200ms, timeout: 150ms, unhealthy_after: 2, healthy_after: 1 }"
    tcp_checks = "health_check: { interval: 200ms, timeout: 150ms, unhealthy_after: 2, healthy_after: 1 }"
    tls = tls_block(server_name="localhost", ca_file=certs.ca.cert)
    for hc in (checks, tcp_checks):
        px = pu.Cynic(origin_config(good.endpoint, tls, upstream_extra=hc))
        try:
            adm = au.Admin(px)
            pu.wait_for(lambda: endpoint_health(adm, good.endpoint)["checks"] >= 3, timeout=5,
                        what="three checks of the good endpoint")
            h = endpoint_health(adm, good.endpoint)
            assert h["state"] == "healthy" and h["failures"] == 0, h
        finally:
            px.stop()
        px = pu.Cynic(origin_config(bad.endpoint, tls, upstream_extra=hc))
        try:
            adm = au.Admin(px)
            pu.wait_for(lambda: endpoint_health(adm, bad.endpoint)["state"] == "unhealthy", timeout=5,
                        what="the wrong-name endpoint unhealthy")
            h = endpoint_health(adm, bad.endpoint)
            assert "tls: certificate verify failed: hostname mismatch" in h["last_failure"], h
        finally:
            px.stop()
    # the checks reached the good backend through TLS handshakes: SNI always,
    # ALPN http/1.1 for the HTTP checks (offered as traffic offers it). At
    # least the HTTP checks' three: a TCP check passes on cynic's side of the
    # handshake and closes, which the backend may see before its own side
    # ends (then it records an error, not a handshake).
    ok = good.ok_handshakes()
    good.close()
    bad.close()
    assert len(ok) >= 3, ok
    assert all(h["sni"] == "localhost" for h in ok), ok[:3]
    assert sum(h["alpn"] == "http/1.1" for h in ok) >= 3, ok


def endpoint_health(adm, endpoint):
    for u in adm.status()["upstreams"]:
        for e in u["endpoints"]:
            if e["name"] == endpoint:
                return e["health"]
    raise AssertionError(f"no endpoint {endpoint}")
