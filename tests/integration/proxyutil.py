"""Loopback helpers for the black-box tests of the `cynic` proxy daemon.

- Cynic: start `cynic -c FILE` on a config text, read its JSON log lines from
  stderr, learn each listener's bound address (port 0) from its "listening"
  line, stop it with SIGTERM and check the exit status (in the sanitizer builds
  a clean exit also means no leaks).
- Backends: small threaded TCP servers an upstream can point at: echo, black
  hole (accepts, never answers), flood (sends without end), greeter (speaks
  first), and a refused port (bound, not listening).
- wait_for (from netutil.py, shared with the harness tests): bounded polls
  instead of sleeps.
"""
import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time

from netutil import TcpServer, wait_for  # noqa: F401  (wait_for re-exported for the proxy tests)

BUILD = os.environ.get("CYNIC_BUILD_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
CYNIC = os.path.join(BUILD, "cynic")


def sanitized():
    """True in a sanitizer build (slower: tests scale their volumes down)."""
    try:
        with open(os.path.join(BUILD, "CMakeCache.txt")) as f:
            for line in f:
                if line.startswith("CYNIC_SANITIZE:") and line.split("=", 1)[1].strip():
                    return True
    except OSError:
        pass
    return "asan" in os.path.basename(os.path.abspath(BUILD))


def process_sockets(pid):
    """Duplicates every TCP socket of process `pid` into this process
    (pidfd_getfd, Linux 5.6+; the proxy is our child, so we may) and returns
    them as socket objects; the caller closes them."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    out = []
    try:
        for name in os.listdir(f"/proc/{pid}/fd"):
            try:
                if not os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                    continue
            except OSError:
                continue
            fd = libc.syscall(438, pidfd, int(name), 0)  # SYS_pidfd_getfd
            if fd < 0:
                raise OSError(ctypes.get_errno(), "pidfd_getfd")
            s = socket.socket(fileno=fd)
            if s.family in (socket.AF_INET, socket.AF_INET6) and s.type == socket.SOCK_STREAM:
                out.append(s)
            else:
                s.detach()
                os.close(fd)
    finally:
        os.close(pidfd)
    return out


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


class Cynic:
    """A running `cynic -c FILE` with the given YAML text."""

    def __init__(self, config_text, timeout=15.0, nofile=None, env=None, wrap=(), wait_started=True):
        """`wrap`: argv put in front of `cynic -c FILE` (it must exec it);
        wait_started=False returns at once (call learn_listeners() later)."""
        self.dir = tempfile.TemporaryDirectory(prefix="cynic-test-")
        self.config = os.path.join(self.dir.name, "cynic.yaml")
        with open(self.config, "w") as f:
            f.write(config_text)
        self.lines = []
        self._cond = threading.Condition()
        def limit():
            if nofile is not None:  # a descriptor shortage, on purpose
                import resource
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        self.proc = subprocess.Popen([*wrap, CYNIC, "-c", self.config], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     preexec_fn=limit, env=env)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.listeners = {}
        if wait_started:
            self.wait_log(lambda r: r.get("msg") == "started", timeout)
            self.learn_listeners()

    def learn_listeners(self):
        """The bound addresses from the `listening` lines logged so far."""
        for r in self.records():
            if r.get("msg") in ("listening", "admin listening"):
                host, port = r["address"].rsplit(":", 1)
                self.listeners[r["listener"]] = (host.strip("[]"), int(port))

    def _read(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()

    @property
    def pid(self):
        return self.proc.pid

    def api(self, token=None):
        """A client of the admin listener (netutil.Api)."""
        from netutil import Api
        api = Api(*self.listeners["admin"])
        if token is not None:
            orig = api.request
            api.request = lambda m, p, body=None, raw=None, headers=None: orig(
                m, p, body=body, raw=raw, headers={"Authorization": f"Bearer {token}", **(headers or {})})
        return api

    def addr(self, listener="app"):
        return self.listeners[listener]

    def connect(self, listener="app", timeout=10.0):
        return socket.create_connection(self.addr(listener), timeout=timeout)

    def records(self):
        with self._cond:
            lines = list(self.lines)
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"msg": "<not json>", "line": line})
        return out

    def logs(self, **match):
        return [r for r in self.records() if all(r.get(k) == v for k, v in match.items())]

    def totals(self, what, name):
        """The counts by kind from the "totals" line logged at exit."""
        for r in self.logs(msg="totals"):
            if r.get(what) == name:
                return r["counts"]
        return {}

    def wait_log(self, pred, timeout=10.0, what="a log line"):
        deadline = time.monotonic() + timeout
        while True:
            for rec in self.records():
                if pred(rec):
                    return rec
            if self.proc.poll() is not None:
                self._reader.join(2)
                raise AssertionError(f"cynic exited ({self.proc.returncode}) waiting for {what}:\n" + self.tail())
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}:\n" + self.tail())
            with self._cond:
                self._cond.wait(0.05)

    def wait_msg(self, msg, timeout=10.0, **fields):
        """Waits for a log line with this msg and these field values."""
        return self.wait_log(lambda r: r.get("msg") == msg and all(r.get(k) == v for k, v in fields.items()),
                             timeout, what=f"log line {msg!r} {fields}")

    def wait_exit(self, timeout=10.0):
        """Waits for the process to end by itself and for its last log lines;
        returns the exit status."""
        rc = self.proc.wait(timeout)
        self._reader.join(5)
        return rc

    def tail(self, n=40):
        with self._cond:
            return "\n".join(self.lines[-n:])

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=30.0, expect=0):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("cynic did not stop on SIGTERM:\n" + self.tail())
        self._reader.join(5)
        self.proc.stdout.close()
        self.proc.stderr.close()
        self.dir.cleanup()
        assert rc == expect, f"exit status {rc}, expected {expect}:\n" + self.tail()
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Server(TcpServer):
    """A threaded TCP server on 127.0.0.1:port (0: any) running handler(conn)
    per client: netutil's TcpServer, under the name the proxy tests use."""


def echo_handler(conn):
    """Echo until EOF, then half-close back (FIN) after everything echoed."""
    while True:
        data = conn.recv(1 << 16)
        if not data:
            break
        conn.sendall(data)
    conn.shutdown(socket.SHUT_WR)


def echo(port=0):
    return Server(echo_handler, port=port)


def black_hole():
    """Accepts and never reads or answers; holds the connection until closed."""
    def handler(conn):
        while True:
            try:
                if not conn.recv(1 << 16):
                    return
            except OSError:
                return
            # reads are discarded; nothing is ever sent
    return Server(handler)


def silent():
    """Accepts, reads nothing, answers nothing (first-byte timeout target)."""
    ev = threading.Event()
    srv = Server(lambda conn: ev.wait(120))
    srv.release = ev
    return srv


def flood(chunk=1 << 16):
    """Sends without end as soon as a client connects."""
    block = b"x" * chunk
    def handler(conn):
        while True:
            conn.sendall(block)
    return Server(handler)


class Refused:
    """A port that refuses connections: bound but never listening."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    @property
    def endpoint(self):
        return f"127.0.0.1:{self.port}"

    def close(self):
        self.sock.close()


class ConnectBlackHole:
    """A port where connect() hangs: a listener with backlog 0 whose accept
    queue is already full (Linux then drops further SYNs), like a firewall
    that drops packets."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.filler = socket.create_connection(("127.0.0.1", self.port), timeout=5)

    @property
    def endpoint(self):
        return f"127.0.0.1:{self.port}"

    def close(self):
        self.filler.close()
        self.sock.close()


def config(listeners, upstreams, admin="", log_level="info"):
    """A config from listener and upstream YAML fragments (already indented
    as list items)."""
    return (f"admin:\n  listen: 127.0.0.1:0\n{admin}log:\n  file: \"-\"\n  level: {log_level}\n"
            f"listeners:\n{listeners}upstreams:\n{upstreams}")


def listener(name, upstream, extra=""):
    out = f"  - name: {name}\n    listen: 127.0.0.1:0\n    upstream: {upstream}\n"
    for line in extra.strip("\n").splitlines():
        out += "    " + line + "\n"
    return out


def upstream(name, endpoints, extra=""):
    out = f"  - name: {name}\n    endpoints: [{', '.join(endpoints)}]\n"
    for line in extra.strip("\n").splitlines():
        out += "    " + line + "\n"
    return out


def exchange(px, listener="app", payload=b"hello", timeout=10):
    """One short client through a listener of px (anything with
    connect(listener, timeout)): sends the payload, half-closes, reads to EOF.
    True when the payload came back; False when the proxy closed the client
    without it (refused, reset, shed)."""
    try:
        with px.connect(listener, timeout=timeout) as c:
            c.sendall(payload)
            c.shutdown(socket.SHUT_WR)
            return recv_all(c) == payload
    except OSError:
        return False


def recv_all(sock, limit=1 << 24):
    """Read until EOF; returns the bytes."""
    out = bytearray()
    while True:
        data = sock.recv(1 << 16)
        if not data:
            return bytes(out)
        out += data
        assert len(out) <= limit, "more data than expected"


def closed_within(sock, seconds):
    """True when the peer closes (EOF or reset) within `seconds`; returns the
    time it took, or None."""
    sock.settimeout(seconds)
    t0 = time.monotonic()
    try:
        while True:
            data = sock.recv(1 << 16)
            if not data:
                return time.monotonic() - t0
    except (ConnectionResetError, BrokenPipeError):
        return time.monotonic() - t0
    except socket.timeout:
        return None
