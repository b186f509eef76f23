"""cynic-harness ctl: Toxiproxy CLI's commands against a running harness."""
import subprocess

from harness_util import Harness, harness  # noqa: F401
from netutil import binary


def ctl(h, *args, ok=True):
    r = subprocess.run([binary("cynic-harness"), "ctl", "-host", f"http://{h.address}", *args],
                       capture_output=True, timeout=30, text=True)
    if ok:
        assert r.returncode == 0, r.stderr
    return r


def test_ctl_commands(harness):
    r = ctl(harness, "create", "db", "-l", "127.0.0.1:0", "-u", "127.0.0.1:5432")
    assert "Created new proxy db listening on 127.0.0.1:" in r.stdout
    r = ctl(harness, "list")
    assert "db" in r.stdout and "127.0.0.1:5432" in r.stdout and "true" in r.stdout

    r = ctl(harness, "toxic", "add", "db", "-t", "latency", "-a", "latency=250", "-a", "jitter=5",
            "-tox", "0.5", "-u")
    st, js, _ = harness.api.get("/proxies/db/toxics/latency_upstream")
    assert st == 200 and js["attributes"] == {"latency": 250, "jitter": 5} and js["toxicity"] == 0.5
    ctl(harness, "toxic", "add", "db", "-t", "http_status", "-n", "teapot",
        "-a", "status=418", "-a", "body=short and stout")
    st, js, _ = harness.api.get("/proxies/db/toxics/teapot")
    assert js["attributes"]["status"] == 418 and js["attributes"]["body"] == "short and stout"

    ctl(harness, "toxic", "update", "db", "-n", "latency_upstream", "-a", "latency=100")
    st, js, _ = harness.api.get("/proxies/db/toxics/latency_upstream")
    assert js["attributes"] == {"latency": 100, "jitter": 5} and js["toxicity"] == 0.5

    r = ctl(harness, "inspect", "db")
    assert '"latency_upstream"' in r.stdout and '"teapot"' in r.stdout

    r = ctl(harness, "toggle", "db")
    assert "disabled" in r.stdout
    assert harness.api.get("/proxies/db")[1]["enabled"] is False
    ctl(harness, "toggle", "db")
    assert harness.api.get("/proxies/db")[1]["enabled"] is True

    ctl(harness, "toxic", "remove", "db", "-n", "teapot")
    assert harness.api.get("/proxies/db/toxics/teapot")[0] == 404
    ctl(harness, "delete", "db")
    assert harness.api.get("/proxies/db")[0] == 404


def test_ctl_errors(harness):
    r = ctl(harness, "inspect", "missing", ok=False)
    assert r.returncode == 1 and "proxy not found" in r.stderr
    r = ctl(harness, "toxic", "add", "missing", ok=False)
    assert r.returncode == 2
    r = ctl(harness, "bogus", ok=False)
    assert r.returncode == 2
    r = subprocess.run([binary("cynic-harness"), "ctl", "-host", "http://127.0.0.1:1", "list"],
                       capture_output=True, timeout=30, text=True)
    assert r.returncode == 1 and "cannot connect" in r.stderr


def test_ctl_env_url_and_cli_name(harness, tmp_path):
    import os
    env = dict(os.environ, TOXIPROXY_URL=f"http://{harness.address}")
    r = subprocess.run([binary("cynic-harness"), "ctl", "create", "e", "-l", "127.0.0.1:0",
                        "-u", "127.0.0.1:1"], capture_output=True, timeout=30, text=True, env=env)
    assert r.returncode == 0, r.stderr
    cli = tmp_path / "cynic-harness-cli"
    cli.symlink_to(binary("cynic-harness"))
    r = subprocess.run([str(cli), "list"], capture_output=True, timeout=30, text=True, env=env)
    assert r.returncode == 0 and "e " in r.stdout, r.stderr


def test_ctl_events(harness):
    import json
    from netutil import TcpServer, connect, echo_handler, recv_exactly, wait_for
    up = TcpServer(echo_handler)
    try:
        p = harness.create("ev", up.address)
        s = connect(harness.listen_port(p))
        s.sendall(b"q")
        assert recv_exactly(s, 1) == b"q"
        s.close()

        def lines():
            r = ctl(harness, "events", "-proxy", "ev", "-since", "0")
            return [json.loads(x) for x in r.stdout.splitlines() if x]
        evs = wait_for(lambda: [e for e in lines() if e["event"] == "connection_closed"] and lines(),
                       what="closed event via ctl")
        assert evs[0]["event"] == "connection_opened" and all(e["proxy"] == "ev" for e in evs)
        assert ctl(harness, "events", "-bogus", "1", ok=False).returncode == 2
    finally:
        up.close()
