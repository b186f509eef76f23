"""cynic-harness: names and bodies with bytes that are not UTF-8 (issue 10).
A name in the path that decodes to invalid UTF-8 names nothing (404), a body
that is not UTF-8 is a 400, and every answer is JSON, never a 500. The debug
log line of each request stays JSON too."""

import netutil
from harness_util import Harness, harness  # noqa: F401
from netutil import strict_json

BAD = ["%ff", "%c3", "a%80b", "%e2%82", "%ed%a0%80", "%c0%af"]


def check(api, method, path, want, raw=None, text=None):
    hdrs = {"Content-Type": "application/json"} if raw is not None else None
    st, _, payload = api.request(method, path, raw=raw, headers=hdrs)
    assert st == want, (method, path, raw, st, payload)
    js = strict_json(payload)
    assert js["status"] == want and js["error"], (method, path, js)
    if text is not None:
        assert text in js["error"], (method, path, js)
    return js


def test_bad_bytes_in_names(harness):
    api = harness.api
    harness.create("x", "127.0.0.1:1")
    harness.add_toxic("x", name="lat", type="latency")
    for bad in BAD:
        for method in ("GET", "POST", "PATCH", "DELETE"):
            check(api, method, f"/proxies/{bad}", 404, raw=b"{}" if method in ("POST", "PATCH") else None)
            check(api, method, f"/proxies/x/toxics/{bad}", 404, raw=b"{}" if method in ("POST", "PATCH") else None)
        check(api, "GET", f"/proxies/{bad}/toxics", 404)
        check(api, "POST", f"/proxies/{bad}/toxics", 404, raw=b'{"type":"latency"}')
        check(api, "GET", f"/{bad}", 404)
        check(api, "GET", f"/events?proxy={bad}", 400)
    # escapes of characters a name cannot hold, and of ones it can
    check(api, "GET", "/proxies/a%2Fb", 404)
    check(api, "GET", "/proxies/%20", 404)
    st, js, _ = api.get("/proxies/%78")  # %78 is "x"
    assert st == 200 and js["name"] == "x"
    # bodies that are not UTF-8: jansson refuses them, we answer 400 with JSON
    bodies = [
        b'{"name": "\xff", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"}',
        b'{"name": "ok\xc3", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"}',
        b'{"name": "\xed\xa0\x80", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"}',
        b'{"name\xff": "a"}',
        b"\xff",
    ]
    for body in bodies:
        check(api, "POST", "/proxies", 400, raw=body, text="bad request body")
        check(api, "POST", "/proxies/x", 400, raw=body)
        check(api, "POST", "/proxies/x/toxics", 400, raw=body)
        check(api, "POST", "/proxies/x/toxics/lat", 400, raw=body)
        check(api, "POST", "/populate", 400, raw=b"[" + body + b"]")
    check(api, "POST", "/proxies/x/toxics", 400, raw=b'{"name": "t\xff", "type": "latency"}')
    # valid UTF-8 that a name may not hold: 400 with the rule
    st, js, raw = api.post("/proxies", {"name": "caf\u00e9", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"})
    assert st == 400 and strict_json(raw)["status"] == 400
    st, js, raw = api.post("/proxies/x/toxics", {"name": "caf\u00e9", "type": "latency"})
    assert st == 400 and strict_json(raw)["status"] == 400
    # nothing was created or removed by any of it
    st, js, _ = api.get("/proxies")
    assert st == 200 and list(js) == ["x"] and [t["name"] for t in js["x"]["toxics"]] == ["lat"]


def test_debug_log_of_raw_bytes_stays_json():
    h = Harness("-log-level", "debug")
    try:
        # raw bytes above 0x7f in the path: the strict parser (llhttp's strict
        # mode) refuses them, so no route and no log line ever sees them
        head, body = netutil.raw_request(
            h.host, h.port, b"GET /proxies/\xff\xc3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert head.split(b" ")[1] == b"400", (head, body)
        assert strict_json(body)["error"] == "Invalid char in url path"
        # percent-encoded, they reach the router (404) and its debug line, JSON
        head, body = netutil.raw_request(
            h.host, h.port, b"GET /proxies/%ff%c3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert head.split(b" ")[1] == b"404", (head, body)
        assert strict_json(body)["error"] == "proxy not found"
        rec = h.wait_log(lambda r: r.get("msg") == "api request" and r.get("url", "").startswith("/proxies/"))
        assert rec["url"] == "/proxies/%ff%c3", rec
        assert not [r for r in h.records() if r.get("msg") == "<not json>"]
    finally:
        h.stop()


def test_config_path_with_bad_bytes_is_logged_as_json(tmp_path):
    import os
    import subprocess

    from netutil import binary
    bad = os.path.join(os.fsencode(str(tmp_path)), b"no\xffsuch.json")
    p = subprocess.run([os.fsencode(binary("cynic-harness")), b"-port", b"0", b"-config", bad],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=30)
    assert p.returncode == 2
    recs = [strict_json(ln) for ln in p.stderr.splitlines() if ln.strip()]
    rec = [r for r in recs if r.get("msg") == "cannot read config"][0]
    assert rec["config"].endswith("no\ufffdsuch.json") and rec["error"], rec


def test_ctl_refuses_what_json_cannot_carry(harness):
    """ctl built the request with jansson, which dropped a non-UTF-8 attribute
    and a nan/inf toxicity without a word (the toxic came out with defaults)."""
    import os
    import subprocess

    from netutil import binary
    harness.create("c", "127.0.0.1:1")

    def ctl(*args):
        return subprocess.run([os.fsencode(binary("cynic-harness")), b"ctl", b"-host",
                               f"http://{harness.address}".encode(), *args], capture_output=True, timeout=30)
    for args in ([b"-a", b"latency=\xff"], [b"-a", b"lat\xc3=5"], [b"-tox", b"nan"], [b"-tox", b"inf"]):
        r = ctl(b"toxic", b"add", b"c", b"-t", b"latency", *args)
        assert r.returncode != 0, (args, r.stdout, r.stderr)
    st, js, _ = harness.api.get("/proxies/c/toxics")
    assert st == 200 and js == []
    r = ctl(b"toxic", b"add", b"c", b"-t", b"latency", b"-a", b"latency=5", b"-tox", b"0.25")
    assert r.returncode == 0, r.stderr
