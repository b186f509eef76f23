"""Names in admin URLs are the client's bytes: percent-escapes that decode to
invalid UTF-8 (%ff, a cut %c3, a stray %80) name nothing, so they are a 404
with a JSON body like any unknown name, never a 500 (issue 10). The same for
a request body whose bytes are not UTF-8: a 400 with a JSON body."""
import adminutil as au
import netutil
import proxyutil as pu
from netutil import strict_json

BAD = ["%ff", "%c3", "a%80b", "%e2%82", "%ed%a0%80", "%c0%af", "%f4%90%80%80"]


def test_bad_bytes_in_names_are_404_with_json():
    a = pu.echo()
    px = pu.Cynic(pu.config(pu.listener("app", "backend"), pu.upstream("backend", [a.endpoint])))
    adm = au.Admin(px)
    try:
        ep = a.endpoint
        for bad in BAD:
            for method, path in [
                ("GET", f"/breakers/{bad}"),
                ("POST", f"/breakers/{bad}/trip"),
                ("POST", f"/breakers/{bad}/reset"),
                ("POST", f"/breakers/{bad}/force_closed"),
                ("GET", f"/breakers/{bad}/{ep}"),
                ("POST", f"/breakers/{bad}/{ep}/trip"),
                ("GET", f"/breakers/backend/{bad}"),
                ("POST", f"/breakers/backend/{bad}/trip"),
                ("POST", f"/breakers/backend/{bad}/reset"),
                ("GET", f"/{bad}"),
                ("GET", f"/status/{bad}"),
            ]:
                status, h, _, raw = adm.request(method, path)
                assert status == 404, (method, path, status, raw)
                assert h["content-type"].startswith("application/json"), (method, path)
                js = strict_json(raw)
                assert js["status"] == 404 and js["error"], (method, path, js)
        # the message names what was asked for, with U+FFFD for each bad sequence
        status, _, _, raw = adm.get("/breakers/a%80b")
        assert strict_json(raw)["error"] == "no upstream named 'a\ufffdb'"
        status, _, _, raw = adm.get("/breakers/backend/%ff")
        assert strict_json(raw)["error"] == "upstream 'backend' has no endpoint '\ufffd'"
        # a body that is not UTF-8: 400, JSON
        for body in [b'{"reason": "\xff"}', b'{"reason": "ok", "x\xc3": 1}', b"\xff\xfe", b'{"reason": "\xed\xa0\x80"}']:
            status, h, _, raw = adm.post("/breakers/backend/trip", raw=body, headers={"Content-Type": "application/json"})
            assert status == 400, (body, status, raw)
            js = strict_json(raw)
            assert js["status"] == 400 and js["error"].startswith("bad JSON body"), (body, js)
        # raw bytes above 0x7f in the request line: the same 404 (or llhttp's 400), JSON
        head, payload = netutil.raw_request(
            adm.host, adm.port, b"GET /breakers/\xff\xc3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert head.split(b" ")[1] in (b"400", b"404"), (head, payload)
        assert strict_json(payload)["status"] in (400, 404)
        # nothing was tripped by any of it, and the process logged only JSON lines
        assert adm.breaker("backend", ep)["state"] == "closed"
        assert not [r for r in px.records() if r.get("msg") == "<not json>"]
    finally:
        px.stop()
