"""The admin listener (HTTP + JSON on its own address): health, readiness
(503 while draining or while a required upstream has every breaker open),
status, breakers read, tripped and reset by hand, drain, Prometheus metrics,
bearer token, and clean answers to wrong paths and methods."""
import socket

import proxyutil as pu


exchange = pu.exchange


def test_health_ready_status_breakers_metrics():
    srv = pu.echo()
    px = pu.Cynic(pu.config(pu.listener("app", "backend"), pu.upstream("backend", [srv.endpoint])))
    try:
        api = px.api()
        status, health, _ = api.get("/health")
        assert status == 200 and health["status"] == "alive"
        status, ready, _ = api.get("/ready")
        assert status == 200 and ready["ready"] is True
        assert exchange(px)
        status, st, _ = api.get("/status")
        assert status == 200 and st["draining"] is False and st["version"]
        assert st["listeners"][0]["name"] == "app" and st["listeners"][0]["address"] == "%s:%d" % px.addr()
        up = st["upstreams"][0]
        assert up["name"] == "backend" and up["available"] is True
        b = up["bulkhead"]
        assert (b["in_use"], b["limit"], b["pending"], b["pending_limit"]) == (0, 100, 0, 50)
        ep = up["endpoints"][0]
        assert ep["name"] == srv.endpoint and ep["address"] == srv.endpoint and ep["active"] == 0
        assert ep["breaker"]["state"] == "closed" and ep["breaker"]["successes"] == 1
        status, br, _ = api.get("/breakers")
        assert status == 200
        assert [e["breaker"]["state"] for u in br["upstreams"] for e in u["endpoints"]] == ["closed"]
        status, _, raw = api.get("/metrics")
        text = raw.decode()
        assert status == 200 and "cynic_ready 1\n" in text
        assert 'cynic_listener_connections_open{listener="app"} 0\n' in text
        assert f'cynic_breaker_state{{upstream="backend",endpoint="{srv.endpoint}",state="closed"}} 1\n' in text
        assert 'cynic_bulkhead_in_use{upstream="backend"} 0\n' in text
        api.close()
    finally:
        px.stop()
        srv.close()


def test_trip_and_reset_by_hand_and_readiness_of_a_required_upstream():
    srv = pu.echo()
    px = pu.Cynic(pu.config(pu.listener("app", "backend"),
                            pu.upstream("backend", [srv.endpoint], "required: true")))
    try:
        api = px.api()
        status, body, _ = api.post(f"/breakers/backend/{srv.endpoint}/trip")
        assert status == 200 and body["endpoint"]["breaker"]["state"] == "forced_open"
        rec = px.wait_msg("breaker transition", endpoint=srv.endpoint)
        assert (rec["to"], rec["reason"]) == ("forced_open", "manual_trip")
        accepted = srv.accepted
        assert not exchange(px)  # closed at once
        assert srv.accepted == accepted
        status, body, _ = api.get("/ready")
        assert status == 503 and body["reason"] == "required upstream backend: every endpoint's breaker is open"
        assert api.get("/status")[1]["upstreams"][0]["available"] is False
        text = api.get("/metrics")[2].decode()
        assert f'cynic_breaker_state{{upstream="backend",endpoint="{srv.endpoint}",state="forced_open"}} 1\n' in text
        assert 'cynic_events_total{upstream="backend",event="breaker_open"} 1\n' in text
        status, body, _ = api.post("/breakers/backend/reset")  # every endpoint of it
        assert status == 200 and body["endpoints"][0]["breaker"]["state"] == "closed"
        assert exchange(px)
        assert api.get("/ready")[0] == 200
        api.close()
    finally:
        px.stop()
        srv.close()


def test_post_drain_drains_and_ready_says_so():
    srv = pu.echo()
    px = pu.Cynic(pu.config(pu.listener("app", "backend"), pu.upstream("backend", [srv.endpoint])))
    try:
        api = px.api()
        c = px.connect()  # keeps the drain going while we look
        c.sendall(b"a")
        assert c.recv(1) == b"a"
        status, body, _ = api.post("/drain")
        assert status == 202 and body["draining"] is True
        px.wait_msg("draining", cause="POST /drain")
        status, body, _ = api.get("/ready")
        assert status == 503 and (body["ready"], body["reason"]) == (False, "draining")
        c.shutdown(socket.SHUT_WR)
        assert pu.recv_all(c) == b""
        c.close()
        assert px.wait_exit(10) == 0
        api.close()
    finally:
        px.stop()
        srv.close()


def test_bearer_token(tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    srv = pu.echo()
    px = pu.Cynic(pu.config(pu.listener("app", "backend"), pu.upstream("backend", [srv.endpoint]),
                            admin=f"  token_file: {token}\n"))
    try:
        status, body, _ = px.api().get("/status")
        assert status == 401 and "bearer token" in body["error"]
        assert px.api(token="wrong").get("/health")[0] == 401
        assert px.api(token="s3cret").get("/health")[0] == 200
    finally:
        px.stop()
        srv.close()


def test_wrong_paths_and_methods():
    srv = pu.echo()
    px = pu.Cynic(pu.config(pu.listener("app", "backend"), pu.upstream("backend", [srv.endpoint])))
    try:
        api = px.api()
        assert api.get("/nope")[0] == 404
        assert api.post("/health")[0] == 405
        assert api.get("/drain")[0] == 405
        assert api.post("/breakers/nope/trip")[0] == 404
        assert api.post("/breakers/backend/127.0.0.1:1/trip")[0] == 404
        assert api.post("/breakers/backend/explode")[0] == 404
        assert exchange(px)  # nothing was tripped
        api.close()
    finally:
        px.stop()
        srv.close()


def test_post_drain_with_nothing_open_answers_then_exits():
    srv = pu.echo()
    px = pu.Cynic(pu.config(pu.listener("app", "backend"), pu.upstream("backend", [srv.endpoint])))
    try:
        status, body, _ = px.api().post("/drain")
        assert status == 202 and (body["draining"], body["connections"]) == (True, 0)
        assert px.wait_exit(10) == 0
    finally:
        px.stop()
        srv.close()
