"""HTTP mode's fallbacks over real sockets (docs/configuration.md,
"Fallbacks"): the static answer when the breaker is open; the stale cache
answering a GET it kept once the backend is gone (marker, Age), and not
answering another URL, an entry past max_age, a response that must not be
kept (Set-Cookie, no-store, private) or another Vary variant; the cache's
byte bound under a flood of distinct URLs; an expect.status rejection
replaced by the fallback; the counts in /metrics and /status and the access
log's `fallback` field; the config's checks."""
import os
import subprocess
import tempfile
import time

import adminutil as au
import proxyutil as pu
from test_proxy_http import Backend, access_records, get, ok, read_response

BUILD = os.environ.get("CYNIC_BUILD_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
CYNIC = os.path.join(BUILD, "cynic")


def config(be_endpoint, fallback, listener_extra="", upstream_extra=""):
    """One http listener `app` to upstream `backend` with this fallback
    section (YAML lines, indented under `fallback:`)."""
    fb = "fallback:\n" + "".join("  " + line + "\n" for line in fallback.strip("\n").splitlines())
    return pu.config(pu.listener("app", "backend", "mode: http\n" + listener_extra),
                     pu.upstream("backend", [be_endpoint], fb + upstream_extra))


def upstream_status(adm, name="backend"):
    for u in adm.status()["upstreams"]:
        if u["name"] == name:
            return u
    raise AssertionError(name)


def ask(px, path=b"/", extra=b"", method=b"GET"):
    """One request on a new connection: (status, headers, body)."""
    with px.connect() as c:
        c.settimeout(10)
        c.sendall(method + b" " + path + b" HTTP/1.1\r\nHost: app\r\n" + extra + b"\r\n")
        if method == b"HEAD":
            buf = b""
            while b"\r\n\r\n" not in buf:
                data = c.recv(65536)
                assert data
                buf += data
            status, h, _, _ = read_response(c, buf.split(b"\r\n\r\n")[0] + b"\r\nContent-Length: 0\r\n\r\n")
            return status, h, b""
        status, h, body, _ = read_response(c)
        return status, h, body


# ---- static ------------------------------------------------------------------------------

def test_static_answer_when_the_breaker_is_open_with_its_headers_marker_counts_and_log():
    be = Backend(lambda head, body, n: ok(b"live"))
    log = tempfile.NamedTemporaryFile(suffix=".log", delete=False).name
    px = pu.Cynic(config(be.endpoint, """
status: 200
body: '{"degraded": true}'
content_type: application/json
headers: { Cache-Control: no-store, X-Degraded: "yes" }
""", listener_extra=f"access_log: {log}\n"))
    try:
        adm = au.Admin(px)
        assert ask(px)[2] == b"live"  # served by the upstream while it can
        st, _, js, _ = adm.post("/breakers/backend/trip", {"reason": "test"})
        assert st == 200, js
        with px.connect() as c:  # keep-alive: both answered on one connection
            c.settimeout(10)
            for i in range(2):
                c.sendall(get(b"/p%d" % i))
                status, h, body, rest = read_response(c)
                assert (status, body, rest) == (200, b'{"degraded": true}', b"")
                assert h["cynic-fallback"] == "static"
                assert h["cynic-answer"] == "breaker_open"
                assert h["content-type"] == "application/json"
                assert h["cache-control"] == "no-store" and h["x-degraded"] == "yes"
                assert "connection" not in h and "x-request-id" in h
        assert len(be.requests) == 1  # the fallback never reached the backend
        m = adm.metrics()
        assert m.get("cynic_fallbacks_total", upstream="backend", kind="static") == 2
        assert m.get("cynic_fallbacks_total", upstream="backend", kind="stale") == 0
        fb = upstream_status(adm)["fallback"]
        assert fb["order"] == ["static"] and fb["answers"]["static"] == 2
        assert fb["stale_cache"] is None
        lines = access_records(log, 3)
        assert [x["fallback"] for x in lines] == [None, "static", "static"]
        assert lines[1]["answer"] == "breaker_open" and lines[1]["status"] == 200
        assert lines[1]["path"] == "/p0"
        # HEAD gets the head alone, Content-Length as the body would be
        status, h, body = ask(px, method=b"HEAD")
        assert status == 200 and h["cynic-fallback"] == "static" and body == b""
    finally:
        px.stop()
        be.close()


def test_without_a_fallback_the_usual_answer_is_unchanged():
    be = Backend()
    px = pu.Cynic(pu.config(pu.listener("app", "backend", "mode: http\n"),
                            pu.upstream("backend", [be.endpoint])))
    try:
        adm = au.Admin(px)
        adm.post("/breakers/backend/trip", {"reason": "test"})
        status, h, body = ask(px)
        assert status == 503 and h["cynic-answer"] == "breaker_open" and "cynic-fallback" not in h
        assert not adm.metrics().all("cynic_fallbacks_total")
        assert upstream_status(adm)["fallback"] is None
    finally:
        px.stop()
        be.close()


# ---- stale -------------------------------------------------------------------------------

def stale_backend():
    """Answers by path: /cookie sets a cookie, /nostore and /private say so,
    /vary varies on Accept-Language (and echoes it), others echo the path."""
    def respond(head, body, n):
        path = head.split(b" ")[1]
        if path == b"/cookie":
            return ok(b"c", extra=b"Set-Cookie: s=1\r\n")
        if path == b"/nostore":
            return ok(b"n", extra=b"Cache-Control: no-store\r\n")
        if path == b"/private":
            return ok(b"p", extra=b"Cache-Control: private, max-age=60\r\n")
        if path == b"/vary":
            lang = b""
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"accept-language:"):
                    lang = line.split(b":", 1)[1].strip()
            return ok(b"lang=" + lang, extra=b"Vary: Accept-Language\r\n")
        return ok(b"body of " + path, extra=b"X-Origin: backend\r\nX-Request-Id: old-id\r\n")
    return Backend(respond)


STALE = """
stale: { max_entries: 100, max_bytes: 1MB, max_age: 1m }
"""
NO_TRIP = "breaker: { faults: 1000 }\n"


def test_stale_answers_a_kept_get_once_the_backend_is_gone():
    be = stale_backend()
    log = tempfile.NamedTemporaryFile(suffix=".log", delete=False).name
    px = pu.Cynic(config(be.endpoint, STALE, listener_extra=f"access_log: {log}\n",
                         upstream_extra=NO_TRIP))
    try:
        adm = au.Admin(px)
        for path in (b"/a", b"/cookie", b"/nostore", b"/private"):
            status, h, _ = ask(px, path)
            assert status == 200 and "cynic-fallback" not in h
        for lang in (b"fr", b"de"):  # the last variant stored is the one kept
            assert ask(px, b"/vary", b"Accept-Language: " + lang + b"\r\n")[2] == b"lang=" + lang
        assert ask(px, b"/vary", b"Accept-Language: fr\r\n")[2] == b"lang=fr"
        c = upstream_status(adm)["fallback"]["stale_cache"]
        assert c["entries"] == 2 and c["stored"] == 4, c  # /a, and /vary 3 times
        be.close()
        time.sleep(1.2)  # Age counts whole seconds
        status, h, body = ask(px, b"/a")
        assert (status, body) == (200, b"body of /a")
        assert h["cynic-fallback"] == "stale"
        assert h["cynic-answer"] in ("connect_refused", "upstream_closed", "upstream_reset")
        assert int(h["age"]) >= 1 and h["via"] == "1.1 cynic"
        assert h["x-origin"] == "backend"
        assert h["x-request-id"] != "old-id"  # the stored one is not this request's
        assert h["content-length"] == str(len(b"body of /a"))
        # a HEAD request for the same URL: the head alone
        status, h, body = ask(px, b"/a", method=b"HEAD")
        assert status == 200 and h["cynic-fallback"] == "stale" and body == b""
        # Vary: the variant kept answers; another does not
        status, h, body = ask(px, b"/vary", b"Accept-Language: fr\r\n")
        assert (status, body, h.get("cynic-fallback")) == (200, b"lang=fr", "stale")
        for extra in (b"Accept-Language: de\r\n", b""):
            status, h, _ = ask(px, b"/vary", extra)
            assert status == 502 and "cynic-fallback" not in h, (extra, h)
        # never kept: another URL, Set-Cookie, no-store, private
        for path in (b"/b", b"/cookie", b"/nostore", b"/private"):
            status, h, _ = ask(px, path)
            assert status == 502 and "cynic-fallback" not in h, (path, h)
        # a POST is never answered from the cache
        status, h, _ = ask(px, b"/a", b"Content-Length: 0\r\n", method=b"POST")
        assert status == 502 and "cynic-fallback" not in h
        m = adm.metrics()
        assert m.get("cynic_fallbacks_total", upstream="backend", kind="stale") == 3
        assert m.get("cynic_stale_cache_entries", upstream="backend") == 2
        assert 0 < m.get("cynic_stale_cache_bytes", upstream="backend") <= 1 << 20
        lines = access_records(log, 17)
        stale = [x for x in lines if x["fallback"] == "stale"]
        assert len(stale) == 3 and stale[0]["path"] == "/a" and stale[0]["upstream_status"] is None
    finally:
        px.stop()
        be.close()


def test_an_entry_past_max_age_is_not_served():
    be = stale_backend()
    px = pu.Cynic(config(be.endpoint, "stale: { max_age: 1s }\n", upstream_extra=NO_TRIP))
    try:
        adm = au.Admin(px)
        assert ask(px, b"/old")[0] == 200
        be.close()
        status, h, _ = ask(px, b"/old")  # within max_age: served
        assert h.get("cynic-fallback") == "stale", h
        time.sleep(1.3)
        status, h, _ = ask(px, b"/old")
        assert status == 502 and "cynic-fallback" not in h
        c = upstream_status(adm)["fallback"]["stale_cache"]
        assert c["expired"] == 1 and c["entries"] == 0, c
    finally:
        px.stop()
        be.close()


def test_stale_if_error_shortens_an_entrys_life():
    def respond(head, body, n):
        return ok(b"x", extra=b"Cache-Control: max-age=0, stale-if-error=1\r\n")
    be = Backend(respond)
    px = pu.Cynic(config(be.endpoint, "stale: { max_age: 1h }\n", upstream_extra=NO_TRIP))
    try:
        assert ask(px, b"/s")[0] == 200
        be.close()
        assert ask(px, b"/s")[1].get("cynic-fallback") == "stale"
        time.sleep(1.3)
        status, h, _ = ask(px, b"/s")
        assert status == 502 and "cynic-fallback" not in h
    finally:
        px.stop()
        be.close()


def test_the_cache_never_holds_more_than_max_bytes_under_a_flood_of_urls():
    body = b"y" * 1000
    be = Backend(lambda head, b, n: ok(body))
    max_bytes = 64 * 1024
    px = pu.Cynic(config(be.endpoint, "stale: { max_entries: 100000, max_bytes: 64KB, max_entry_bytes: 4KB }\n",
                         upstream_extra=NO_TRIP))
    try:
        adm = au.Admin(px)
        most = 0
        with px.connect() as c:
            c.settimeout(10)
            for i in range(2000):
                c.sendall(get(b"/flood/%d" % i))
                status, _, got, _ = read_response(c)
                assert status == 200 and got == body
                if i % 50 == 49:
                    s = upstream_status(adm)["fallback"]["stale_cache"]
                    assert s["bytes"] <= max_bytes, s
                    assert s["bytes"] + s["pending_bytes"] <= 2 * max_bytes, s
                    most = max(most, s["bytes"])
        s = upstream_status(adm)["fallback"]["stale_cache"]
        assert s["stored"] == 2000 and s["evicted"] > 1900, s
        assert s["entries"] * 1000 <= max_bytes
        assert most > max_bytes // 2  # it was used, not refused
        be.close()
        # the newest URL is still kept, the oldest was evicted
        assert ask(px, b"/flood/1999")[1].get("cynic-fallback") == "stale"
        assert "cynic-fallback" not in ask(px, b"/flood/0")[1]
    finally:
        px.stop()
        be.close()


# ---- expect.status ------------------------------------------------------------------------

def test_a_response_outside_expect_status_is_replaced_by_the_fallback():
    def respond(head, body, n):
        path = head.split(b" ")[1]
        if path == b"/flip" and n == 1:
            return ok(b"good")
        return ok(b"oops", status=b"500 Internal Server Error")
    be = Backend(respond)
    log = tempfile.NamedTemporaryFile(suffix=".log", delete=False).name
    px = pu.Cynic(config(be.endpoint, "stale: {}\n", listener_extra=f"access_log: {log}\n",
                         upstream_extra="expect: { status: 200-499 }\n" + NO_TRIP))
    try:
        assert ask(px, b"/flip")[2] == b"good"
        status, h, body = ask(px, b"/flip")  # 500 now: the kept 200 instead
        assert (status, body) == (200, b"good")
        assert h["cynic-fallback"] == "stale" and h["cynic-answer"] == "unexpected_status"
        # nothing kept for /other: the upstream's 500 is forwarded as before
        status, h, body = ask(px, b"/other")
        assert (status, body) == (500, b"oops") and "cynic-fallback" not in h
        lines = access_records(log, 3)
        assert lines[1]["fallback"] == "stale" and lines[1]["upstream_status"] == 500
        assert lines[1]["status"] == 200 and lines[1]["outcome"] == "unexpected_status"
        assert lines[2]["fallback"] is None and lines[2]["status"] == 500
    finally:
        px.stop()
        be.close()


def test_static_replaces_a_rejected_response_and_order_is_followed():
    be = Backend(lambda head, body, n: ok(b"fine") if n == 1 else ok(b"", status=b"503 Busy"))
    px = pu.Cynic(config(be.endpoint, """
status: 503
body: try later
stale: {}
order: [static, stale]
""", upstream_extra="expect: { status: 200-499 }\n" + NO_TRIP))
    try:
        assert ask(px, b"/o")[2] == b"fine"
        status, h, body = ask(px, b"/o")  # static first, though /o is kept
        assert (status, body, h["cynic-fallback"]) == (503, b"try later", "static")
        assert h["content-type"] == "text/plain"
    finally:
        px.stop()
        be.close()


# ---- the config ---------------------------------------------------------------------------

def check(text):
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(text)
    try:
        return subprocess.run([CYNIC, "--check", "-c", f.name], capture_output=True, text=True,
                              timeout=30)
    finally:
        os.unlink(f.name)


CHECK_BASE = """\
listeners:
  - name: app
    listen: 127.0.0.1:8080
    upstream: a
    mode: http
upstreams:
  - name: a
    endpoints: [127.0.0.1:9000]
    fallback: {FB}
  - name: b
    endpoints: [127.0.0.1:9001]
    fallback: {FB2}
"""


def checked(fb, fb2="{ status: 503 }"):
    return check(CHECK_BASE.replace("{FB}", fb).replace("{FB2}", fb2))


def test_the_config_checks_fallbacks():
    r = checked("{ stale: {}, secondary: b, status: 503 }")
    assert r.returncode == 0 and r.stderr == "", r.stderr  # secondary is applied: nothing to note
    r = checked("{ stale: {} }")
    assert r.returncode == 0 and r.stderr == "", r.stderr  # status is not required with stale
    bad = {
        "{ secondary: a }": "secondary: 'a' is this upstream",
        "{ secondary: nope }": "no upstream is named 'nope'",
        "{ body: x }": "fallback answers nothing",
        "{ stale: {}, body: x }": "belong to the static answer",
        "{ status: 503, headers: { Content-Length: 5 } }": "cynic writes 'Content-Length' itself",
        "{ status: 503, headers: { 'Bad Name': x } }": "is not a header name",
        "{ status: 503, headers: { X-A: \"a\\r\\nb\" } }": "without control characters",
        "{ status: 503, order: [stale] }": "'stale' is not configured",
        "{ status: 503, stale: {}, order: [static] }": "'stale' is configured but not listed",
        "{ status: 503, order: [static, static] }": "listed twice",
        "{ stale: { max_bytes: 1MB, max_entry_bytes: 1MB } }": "more than half of max_bytes",
        "{ stale: { max_age: 0s } }": "max_age",
        "{ stale: { max_entries: 0 } }": "max_entries",
    }
    for fb, want in bad.items():
        r = checked(fb)
        assert r.returncode == 2 and want in r.stderr, (fb, r.stderr)
    r = checked("{ secondary: b }", "{ secondary: a }")
    assert r.returncode == 2 and "a fallback goes one hop only" in r.stderr, r.stderr


# ---- more answer points, framing, reload ---------------------------------------------------

def test_bulkhead_full_is_answered_by_the_fallback():
    be = Backend(lambda head, body, n: None if b"/hang" in head else ok(b"ok"))
    px = pu.Cynic(config(be.endpoint, "status: 200\nbody: busy, try later\n",
                         upstream_extra="bulkhead: { max_connections: 1, max_pending: 0 }\n"))
    try:
        hold = px.connect()
        hold.sendall(get(b"/hang"))
        pu.wait_for(lambda: len(be.requests) == 1, what="the first request upstream")
        status, h, body = ask(px, b"/next")
        assert (status, body) == (200, b"busy, try later")
        assert h["cynic-fallback"] == "static" and h["cynic-answer"] == "bulkhead_full"
        hold.close()
    finally:
        be.hang.set()
        px.stop()
        be.close()


def test_a_chunked_response_is_kept_decoded_and_served_with_its_length():
    def respond(head, body, n):
        return (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n"
                b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n")
    be = Backend(respond)
    px = pu.Cynic(config(be.endpoint, "stale: {}\n", upstream_extra=NO_TRIP))
    try:
        with px.connect() as c:  # as the upstream sent it: chunked
            c.settimeout(10)
            c.sendall(get(b"/chunked"))
            got = b""
            while not got.endswith(b"0\r\n\r\n"):
                data = c.recv(65536)
                assert data
                got += data
            assert b"transfer-encoding: chunked" in got.lower()
        be.close()
        status, h, body = ask(px, b"/chunked")
        assert (status, body, h["cynic-fallback"]) == (200, b"hello, world", "stale")
        assert h["content-length"] == "12" and "transfer-encoding" not in h
    finally:
        px.stop()
        be.close()


def test_a_reload_applies_a_new_fallback():
    be = Backend()
    px = pu.Cynic(config(be.endpoint, "status: 503\nbody: first\n"))
    try:
        adm = au.Admin(px)
        adm.post("/breakers/backend/trip", {"reason": "test"})
        assert ask(px)[2] == b"first"
        with open(px.config, "w") as f:
            f.write(config(be.endpoint, "status: 200\nbody: second\nheaders: { X-New: 'yes' }\n"))
        status, _, js, _ = adm.post("/reload")
        assert status == 200 and js["reloaded"] is True, js
        status, h, body = ask(px)
        assert (status, body, h["x-new"]) == (200, b"second", "yes")
        with open(px.config, "w") as f:  # no fallback: cynic's own answer again
            f.write(pu.config(pu.listener("app", "backend", "mode: http\n"),
                              pu.upstream("backend", [be.endpoint])))
        assert adm.post("/reload")[0] == 200
        status, h, _ = ask(px)
        assert status == 503 and h["cynic-answer"] == "breaker_open" and "cynic-fallback" not in h
        assert upstream_status(adm)["fallback"] is None
    finally:
        px.stop()
        be.close()


def test_a_large_kept_body_is_served_whole_to_a_slow_reader():
    big = bytes(range(256)) * 800  # 200 KB: its head and body go in two writes
    be = Backend(lambda head, body, n: ok(big))
    px = pu.Cynic(config(be.endpoint, "stale: {}\n", upstream_extra=NO_TRIP))
    try:
        assert ask(px, b"/big")[2] == big
        be.close()
        with px.connect() as c:
            c.settimeout(10)
            c.setsockopt(pu.socket.SOL_SOCKET, pu.socket.SO_RCVBUF, 32768)
            for _ in range(2):  # keep-alive holds after a queued write too
                c.sendall(get(b"/big"))
                time.sleep(0.2)  # the answer fills the socket and waits in a write
                status, h, body, rest = read_response(c)
                assert (status, len(body), body == big, rest) == (200, len(big), True, b"")
                assert h["cynic-fallback"] == "stale"
    finally:
        px.stop()
        be.close()
