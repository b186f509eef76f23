"""What `make run` (scripts/run.py) and `make demo` (scripts/demo.py) share:
start the three programs of the demo (the backend, cynic-harness, cynic) as
children that cannot outlive this process, wait for them with bounded polls,
talk JSON to their HTTP APIs, and make one timed call through cynic.

Plain Python 3 standard library: no pytest, nothing `make test` installs.
"""
import ctypes
import http.client
import json
import os
import signal
import socket
import subprocess
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
BACKEND = os.path.join(ROOT, "examples", "demo", "backend.py")

PR_SET_PDEATHSIG = 1


class DemoError(Exception):
    """A step that did not happen; the message says which and why."""


def _child_setup(parent):
    """Runs in the child before exec: its own process group (a Ctrl-C at the
    terminal reaches only the supervisor, which stops the children in order)
    and SIGTERM when the parent dies, even by SIGKILL, so no child is ever
    left behind."""
    def setup():
        os.setpgid(0, 0)
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):
            pass
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)
    return setup


class Child:
    """One program started by the demo. Its stderr (and stdout) go to `log`
    (a path) or, when `log` is None, to this process's own."""

    def __init__(self, name, argv, log=None):
        self.name, self.argv, self.log = name, argv, log
        out = open(log, "wb") if log else None
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                         preexec_fn=_child_setup(os.getpid()))
        finally:
            if out:
                out.close()

    @property
    def pid(self):
        return self.proc.pid

    def exited(self):
        """The exit status if it has exited, else None."""
        return self.proc.poll()

    def log_tail(self, n=15):
        if not self.log:
            return ""
        try:
            with open(self.log, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def signal(self, sig):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, timeout):
        """SIGTERM, then up to `timeout` s to exit, then SIGKILL. Returns the
        exit status (negative: killed by that signal)."""
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return self.proc.returncode


def describe_exit(rc):
    if rc is None:
        return "still running"
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exit status {rc}"


def port_in_use(host, port):
    """True when (host, port) cannot be bound now, as a server would bind it
    (SO_REUSEADDR: a port in TIME_WAIT only is free)."""
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        return False
    except OSError:
        return True
    finally:
        s.close()


def wait_until(cond, timeout, what, children=()):
    """Polls cond() every 20 ms until it returns a truthy value (returned) or
    `timeout` s pass. A child that exits meanwhile ends the wait at once: its
    exit and the end of its log are in the error."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        for c in children:
            rc = c.exited()
            if rc is not None:
                tail = c.log_tail()
                raise DemoError(f"{c.name} exited ({describe_exit(rc)}) while waiting for {what}"
                                + (f"; its log ends with:\n{tail}" if tail else ""))
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


def connectable(host, port):
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def log_records(path):
    """The JSON lines of a log file written so far (others skipped)."""
    out = []
    try:
        with open(path, "rb") as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    except OSError:
        pass
    return out


def log_find(path, pred):
    for r in log_records(path):
        if pred(r):
            return r
    return None


def split_address(address):
    host, port = address.rsplit(":", 1)
    return host.strip("[]"), int(port)


def api(host, port, method, path, body=None, timeout=5.0):
    """One HTTP request to an admin or harness API: (status, parsed JSON or
    None). A connection error is a DemoError naming the request."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
        resp = conn.getresponse()
        raw = resp.read()
    except OSError as e:
        raise DemoError(f"{method} http://{host}:{port}{path}: {e}") from None
    finally:
        conn.close()
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = None
    return resp.status, parsed


REQUEST = b"GET / HTTP/1.1\r\nHost: demo\r\nAccept: application/json\r\n\r\n"


def call(host, port, timeout=10.0):
    """One client of the demo: an HTTP/1.1 GET through cynic's listener, read
    up to the end of the answer's body (Content-Length; the connection is kept
    alive, as curl's, so only an answer ends the wait), then closed.

    Returns (outcome, seconds, body): outcome "ok" (a 200 with a body),
    "closed" (cynic closed or reset the connection before any answer),
    "hung" (nothing within `timeout` s), "bad" (an answer that is not a
    whole 200) or "refused" (no connection at all: nobody listens)."""
    t0 = time.monotonic()
    got = bytearray()
    try:
        conn = socket.create_connection((host, port), timeout=timeout)
    except socket.timeout:
        return "hung", time.monotonic() - t0, b""
    except OSError:
        return "refused", time.monotonic() - t0, b""
    try:
        with conn as s:
            s.sendall(REQUEST)
            while True:
                head, sep, rest = bytes(got).partition(b"\r\n\r\n")
                if sep:
                    length = None
                    for line in head.split(b"\r\n")[1:]:
                        k, _, v = line.partition(b":")
                        if k.strip().lower() == b"content-length":
                            length = int(v.strip())
                    if length is not None and len(rest) >= length:
                        ok = head.startswith(b"HTTP/1.1 200 ")
                        return ("ok" if ok else "bad"), time.monotonic() - t0, rest[:length]
                d = s.recv(65536)
                if not d:
                    break
                got += d
                if len(got) > 1 << 20:
                    return "bad", time.monotonic() - t0, bytes(got[:200])
    except socket.timeout:
        return "hung", time.monotonic() - t0, bytes(got)
    except OSError:  # reset: cynic closing the client of a fault
        pass
    dt = time.monotonic() - t0
    return ("closed" if not got else "bad"), dt, bytes(got)
