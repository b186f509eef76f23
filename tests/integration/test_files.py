"""Files that are not regular files, and token files of every bad kind
(issue 10).

A named pipe (FIFO) at a path cynic or cynic-harness opens used to block the
whole process until something opened the other end: /health timed out and
traffic stopped. Every path is now opened without waiting and checked for
its type. Each test bounds its waits (subprocess timeouts, HTTP timeouts), so
a regression fails by timeout instead of hanging the suite.
"""
import contextlib
import os
import select
import signal
import subprocess
import time

import adminutil as au
import netutil
import proxyutil as pu

BUILD = pu.BUILD
CYNIC = pu.CYNIC
HARNESS = os.path.join(BUILD, "cynic-harness")
BOUND = 20  # seconds: generous on a loaded machine; a blocked process never answers


def run(args, timeout=BOUND):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def config_text(echo, extra_admin=""):
    return pu.config(pu.listener("app", "backend"), pu.upstream("backend", [echo.endpoint]),
                     admin=extra_admin)


def fifo(path):
    os.mkfifo(path)
    return str(path)


@contextlib.contextmanager
def running(config=None):
    """An echo upstream and a cynic in front of it (config_text unless
    config(echo) is given); yields (echo, the config text, cynic, its admin),
    stopped and closed on the way out."""
    echo = pu.echo()
    try:
        text = (config or config_text)(echo)
        px = pu.Cynic(text)
        try:
            yield echo, text, px, au.Admin(px, timeout=BOUND)
        finally:
            px.stop()
    finally:
        echo.close()


def reload_with(px, adm, text):
    """Write text as px's config and POST /reload; returns adm.post's answer."""
    with open(px.config, "w") as out:
        out.write(text)
    return adm.post("/reload")


def sighup_is_refused_too(px, adm):
    """SIGHUP refuses the same config as the POST /reload before it did (the
    second reload_refused), and the proxy stays responsive."""
    px.signal(signal.SIGHUP)
    pu.wait_for(lambda: len(px.logs(event="reload_refused")) == 2, timeout=BOUND,
                what="the SIGHUP refusal")
    assert px.logs(event="reload_refused")[1]["by"] == "SIGHUP"
    responsive(px, adm)


def responsive(px, adm):
    """/health answers and traffic flows, both within the bound."""
    t0 = time.monotonic()
    st, _, _, _ = adm.get("/health")
    assert st == 200
    assert pu.exchange(px, timeout=BOUND)
    assert time.monotonic() - t0 < BOUND


# ---- the config --------------------------------------------------------------------


def test_check_refuses_a_fifo_config_at_once(tmp_path):
    f = fifo(tmp_path / "cynic.yaml")
    r = run([CYNIC, "--check", "-c", f])
    assert r.returncode == 2
    assert r.stderr == f"{f}: is a FIFO (named pipe), not a regular file; give the path of a regular file\n"


def test_start_refuses_a_fifo_config_at_once(tmp_path):
    f = fifo(tmp_path / "cynic.yaml")
    r = run([CYNIC, "-c", f])
    assert r.returncode == 2
    assert "is a FIFO (named pipe), not a regular file" in r.stderr


def test_check_refuses_devices_and_directories(tmp_path):
    for path, words in (("/dev/zero", "is a device, not a regular file"),
                        ("/dev/null", "is a device, not a regular file"),
                        (str(tmp_path), "is a directory, not a regular file")):
        r = run([CYNIC, "--check", "-c", path])
        assert r.returncode == 2, path
        assert r.stderr == f"{path}: {words}; give the path of a regular file\n"


def test_reload_of_a_fifo_config_is_refused_and_the_proxy_keeps_serving(tmp_path):
    with running() as (_, _, px, adm):
        os.remove(px.config)
        fifo(px.config)
        status, _, js, _ = adm.post("/reload")
        assert status == 400, js
        assert js["errors"] == [f"{px.config}: is a FIFO (named pipe), not a regular file; "
                                "give the path of a regular file"]
        rec = px.wait_log(lambda r: r.get("event") == "reload_refused", what="reload_refused")
        assert "FIFO" in rec["errors"][0]
        responsive(px, adm)
        sighup_is_refused_too(px, adm)


# ---- log files -------------------------------------------------------------------------


def test_reload_to_a_fifo_log_file_is_refused_and_logged(tmp_path):
    with running() as (_, text, px, adm):
        f = fifo(tmp_path / "log.fifo")
        status, _, js, _ = reload_with(px, adm, text.replace('file: "-"', f"file: {f}"))
        assert status == 409, js
        want = f"log.file: cannot open '{f}': has no reader"
        assert js["error"].startswith(want) and js["error"].endswith("; nothing was applied"), js
        rec = px.wait_log(lambda r: r.get("event") == "reload_refused", what="reload_refused")
        assert rec["msg"] == "reload refused: cannot open log.file"
        assert rec["reason"].startswith(want) and rec["by"].startswith("POST /reload")
        responsive(px, adm)
        sighup_is_refused_too(px, adm)  # was silent


def test_log_swapped_for_a_fifo_before_sigusr1_keeps_the_old_file(tmp_path):
    log = tmp_path / "cynic.log"
    with running() as (_, text, px, adm):
        assert reload_with(px, adm, text.replace('file: "-"', f"file: {log}"))[0] == 200
        pu.wait_for(log.exists, timeout=BOUND, what="the log file")
        os.rename(log, tmp_path / "cynic.log.1")  # logrotate's move ...
        fifo(log)  # ... and something else in its place
        px.signal(signal.SIGUSR1)
        responsive(px, adm)
        old = tmp_path / "cynic.log.1"
        pu.wait_for(lambda: '"event":"log_reopened"' in old.read_text(), timeout=BOUND,
                    what="log_reopened in the old file")
        line = [x for x in old.read_text().splitlines() if '"log_reopened"' in x][-1]
        assert '"level":"error"' in line and "has no reader" in line, line


def test_log_file_may_be_a_character_device(tmp_path):
    # containers point logs at /dev/stdout; /dev/null is the simplest device
    with running() as (_, text, px, adm):
        status, _, js, _ = reload_with(px, adm, text.replace('file: "-"', "file: /dev/null"))
        assert status == 200, js
        responsive(px, adm)


def test_start_with_a_fifo_log_file_exits_1_at_once(tmp_path):
    echo = pu.echo()
    try:
        f = fifo(tmp_path / "log.fifo")
        cfg = tmp_path / "cynic.yaml"
        cfg.write_text(config_text(echo).replace('file: "-"', f"file: {f}"))
        r = run([CYNIC, "-c", str(cfg)])
        assert r.returncode == 1
        assert r.stderr.startswith(f"cynic: cannot open log file {f}: has no reader"), r.stderr
    finally:
        echo.close()


def test_log_file_may_be_stdout_when_it_is_a_pipe_with_a_reader(tmp_path):
    # the container case: /dev/stdout is the collector's pipe (here, ours)
    with running() as (_, text, px, adm):
        status, _, js, _ = reload_with(px, adm, text.replace('file: "-"', "file: /dev/stdout"))
        assert status == 200, js
        responsive(px, adm)
        # the log continues on stdout (a bounded wait)
        assert select.select([px.proc.stdout], [], [], BOUND)[0], "no log line on stdout"
        line = px.proc.stdout.readline()
        assert b'"event"' in line, line


def test_access_log_refusal_on_reload_is_logged_as_reload_refused(tmp_path):
    with running() as (echo, _, px, adm):
        f = fifo(tmp_path / "access.fifo")
        text = pu.config(pu.listener("app", "backend", f"access_log: {f}"),
                         pu.upstream("backend", [echo.endpoint]))
        status, _, js, _ = reload_with(px, adm, text)
        assert status == 409, js
        rec = px.wait_log(lambda r: r.get("event") == "reload_refused", what="reload_refused")
        assert rec["msg"] == "reload refused: cannot open an access log"
        assert rec["reason"].startswith(f"listener 'app': access_log: cannot open '{f}': has no reader"), rec
        assert js["error"] == rec["reason"] + "; nothing was applied"
        failed = px.logs(event="access_log_failed")
        assert failed and failed[-1]["file"] == f
        responsive(px, adm)


# ---- the token file ---------------------------------------------------------------


def token_cases(tmp_path):
    """(name, path, what the error says after the file name)."""
    cases = []

    def write(name, data):
        p = tmp_path / name
        p.write_bytes(data)
        return str(p)

    rule = "the token is 1..4096 visible ASCII characters on one line"
    cases.append(("empty", write("empty", b""), f"is empty; write the token in it: {rule}"))
    cases.append(("newline", write("newline", b"\n"), f"holds only a newline; write the token in it: {rule}"))
    cases.append(("blank", write("blank", b"   \n"), f"has a space at byte 1; {rule}"))
    cases.append(("4097", write("4097", b"a" * 4097), f"holds 4097 bytes; {rule}"))
    cases.append(("50MB", write("50MB", b"a" * (50 << 20)), f"is longer than 4096 bytes; {rule}"))
    cases.append(("two-lines", write("two", b"first\nsecond\n"), f"has a second line at byte 6; {rule}"))
    cases.append(("nul", write("nul", b"sec\0ret\n"), f"has a NUL byte at byte 4; {rule}"))
    cases.append(("directory", str(tmp_path), "is a directory, not a regular file; put the token in a regular file"))
    cases.append(("dev-zero", "/dev/zero", "is a device, not a regular file; put the token in a regular file"))
    cases.append(("fifo", fifo(tmp_path / "token.fifo"),
                  "is a FIFO (named pipe), not a regular file; put the token in a regular file"))
    return cases


def token_config(echo, path):
    return config_text(echo, extra_admin=f"  token_file: {path}\n")


def test_check_and_start_refuse_every_bad_token_file_the_same_way(tmp_path):
    echo = pu.echo()
    try:
        for name, path, words in token_cases(tmp_path):
            cfg = tmp_path / f"cynic-{name}.yaml"
            cfg.write_text(token_config(echo, path))
            want = f"{cfg}:3:15: token_file: '{path}' {words}\n"
            r = run([CYNIC, "--check", "-c", str(cfg)])
            assert (r.returncode, r.stderr) == (2, want), name
            r = run([CYNIC, "-c", str(cfg)])
            assert (r.returncode, r.stderr) == (2, want), name
    finally:
        echo.close()


def test_good_token_files_pass(tmp_path):
    echo = pu.echo()
    try:
        for name, data in (("plain", b"s3cr3t"), ("lf", b"s3cr3t\n"), ("crlf", b"s3cr3t\r\n"),
                           ("longest", b"x" * 4096 + b"\n")):
            tok = tmp_path / name
            tok.write_bytes(data)
            cfg = tmp_path / f"cynic-{name}.yaml"
            cfg.write_text(token_config(echo, tok))
            r = run([CYNIC, "--check", "-c", str(cfg)])
            assert r.returncode == 0, (name, r.stderr)
        px = pu.Cynic(token_config(echo, tmp_path / "crlf"))
        try:
            assert au.Admin(px, token="s3cr3t").get("/status")[0] == 200
        finally:
            px.stop()
    finally:
        echo.close()


def test_reload_refuses_every_bad_token_file_and_keeps_the_old_token(tmp_path):
    echo = pu.echo()
    tok = tmp_path / "token"
    tok.write_text("first\n")
    px = pu.Cynic(token_config(echo, tok))
    adm = au.Admin(px, token="first", timeout=BOUND)
    try:
        refused = 0
        for name, path, words in token_cases(tmp_path):
            with open(px.config, "w") as out:
                out.write(token_config(echo, path))
            status, _, js, _ = adm.post("/reload")
            assert status == 400, (name, js)
            assert js["errors"] == [f"{px.config}:3:15: token_file: '{path}' {words}"], name
            refused += 1
            pu.wait_for(lambda: len(px.logs(event="reload_refused")) == refused, timeout=BOUND,
                        what=f"reload_refused for {name}")
            assert adm.get("/status")[0] == 200, name  # the old token still works
        responsive(px, adm)
    finally:
        px.stop()
        echo.close()


# ---- cynic-harness -----------------------------------------------------------------


def test_harness_refuses_a_fifo_config(tmp_path):
    f = fifo(tmp_path / "toxics.json")
    r = run([HARNESS, "-host", "127.0.0.1", "-port", "0", "-config", f])
    assert r.returncode == 2
    assert "is a FIFO (named pipe), not a regular file" in r.stderr


def test_harness_refuses_a_fifo_log_file(tmp_path):
    f = fifo(tmp_path / "harness.log")
    r = run([HARNESS, "-host", "127.0.0.1", "-port", "0", "-log-file", f])
    assert r.returncode == 2
    assert r.stderr.startswith(f"cynic-harness: cannot open log file {f}: has no reader"), r.stderr


def test_harness_log_swapped_for_a_fifo_before_sigusr1(tmp_path):
    log = tmp_path / "harness.log"
    proc = subprocess.Popen([HARNESS, "-host", "127.0.0.1", "-port", "0", "-log-file", str(log)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        rec = pu.wait_for(lambda: [x for x in (log.read_text().splitlines() if log.exists() else [])
                                   if "API listening" in x], timeout=BOUND, what="API listening")
        import json
        host, port = json.loads(rec[0])["address"].rsplit(":", 1)
        os.rename(log, tmp_path / "harness.log.1")
        fifo(log)
        proc.send_signal(signal.SIGUSR1)
        api = netutil.Api(host.strip("[]"), int(port))
        st, _, _ = api.get("/version")
        assert st == 200
        api.close()
        old = tmp_path / "harness.log.1"
        pu.wait_for(lambda: "cannot reopen log file" in old.read_text(), timeout=BOUND,
                    what="the reopen error in the old file")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(BOUND)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError("cynic-harness did not stop on SIGTERM")
        assert rc == 0
