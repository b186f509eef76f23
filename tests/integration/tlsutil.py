"""TLS fixtures for the integration tests of cynic's TLS (test_tls.py).

- Certs: every certificate the tests need, made once per session with the
  `openssl` CLI only (subprocess; no Python crypto package): a root CA, an
  intermediate CA under it, server certificates issued by the intermediate
  (their files hold the chain: leaf, then intermediate, so whoever serves one
  must send the chain for a client trusting only the root), a client
  certificate issued by the root, an expired one, a wrong-name one, a
  self-signed one, one that expires in 7 days, and a mismatched key pair.
- TlsServer: a threaded loopback TLS server (Python's ssl) that records each
  handshake (SNI, ALPN selected, resumed or not, version, the client's
  certificate, or the error) and then runs an application over the TLS
  socket: echo (with half-close) or a small HTTP/1.1 keep-alive server.
- Nginx: nginx from Debian serving HTTPS on a free loopback port, its access
  log recording SNI, ALPN, resumption and the client certificate per request.

Every loop and wait is bounded; every port is a free loopback one.
"""
import datetime
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time

from netutil import TcpServer, wait_for

OPENSSL = shutil.which("openssl") or "openssl"
DAY = 86400


def openssl(*args, cwd=None, timeout=30):
    """Runs `openssl ARGS`; raises with its stderr when it fails."""
    r = subprocess.run([OPENSSL, *args], cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=timeout)
    if r.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args)} failed ({r.returncode}):\n"
                             + r.stderr.decode(errors="replace"))
    return r.stdout.decode(errors="replace")


class Leaf:
    """One certificate and its key. cert: the PEM file to configure (the
    chain for intermediate-issued ones); leaf: the leaf alone; key: its
    private key; serial: the serial number (int); subject: as openssl prints
    it (RFC 2253); not_after: the expiry (datetime, UTC)."""

    def __init__(self, cert, key, leaf=None):
        self.cert, self.key, self.leaf = cert, key, leaf or cert
        out = openssl("x509", "-in", self.leaf, "-noout", "-serial", "-subject", "-enddate",
                      "-nameopt", "RFC2253")
        fields = dict(line.split("=", 1) for line in out.strip().splitlines())
        self.serial = int(fields["serial"], 16)
        self.subject = fields["subject"]
        self.not_after = datetime.datetime.strptime(fields["notAfter"], "%b %d %H:%M:%S %Y %Z").replace(
            tzinfo=datetime.timezone.utc)

    def __repr__(self):
        return f"Leaf({self.subject}, serial {self.serial:x})"


_CA_CNF = """[ ca ]
default_ca = here
[ here ]
database = {d}/index.txt
new_certs_dir = {d}/new
serial = {d}/serial
default_md = sha256
policy = any
unique_subject = no
email_in_dn = no
copy_extensions = none
[ any ]
organizationName = optional
organizationalUnitName = optional
commonName = supplied
"""

_EXT_CNF = """[ intermediate ]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ server ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ wrong_name ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:wrong.example
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ client ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


class Certs:
    """The session's certificates, under `dir` (a fresh directory).

    ca: the root CA (ca.cert is what a verifier trusts; no chain); inter: the
    intermediate CA. server, server2: DNS:localhost + IP:127.0.0.1 from the
    intermediate, chain included (server2 differs in serial and subject O,
    for the reload test); client: clientAuth from the root; expired: expired
    for a year (openssl ca -startdate/-enddate in the past); wrong_name:
    DNS:wrong.example only; self_signed: DNS:localhost + IP:127.0.0.1 but
    signed by its own key; soon: expires in 7 days; mismatched: server2's
    certificate with server's key (a pair no TLS stack may load)."""

    def __init__(self, dir):
        self.dir = dir
        self._serial = 0x1000
        cnf = os.path.join(dir, "ext.cnf")
        with open(cnf, "w") as f:
            f.write(_EXT_CNF)
        self.ext = cnf
        # the root: self-signed, CA:TRUE
        root = self._dir("root")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f"{root}/key.pem", "-out", f"{root}/cert.pem", "-days", "3650",
                "-subj", "/O=cynic tests/CN=cynic test root CA",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                "-addext", "subjectKeyIdentifier=hash")
        self.ca = Leaf(f"{root}/cert.pem", f"{root}/key.pem")
        # the intermediate, issued by the root
        inter = self._issue("inter", root, "/O=cynic tests/CN=cynic test intermediate CA", "intermediate",
                            days=3650)
        self.inter = inter
        inter_dir = os.path.dirname(inter.leaf)
        self.server = self._issue("server", inter_dir, "/O=cynic tests/CN=localhost", "server",
                                  chain=True)
        self.server2 = self._issue("server2", inter_dir, "/O=cynic tests reloaded/CN=localhost", "server",
                                   chain=True)
        self.client = self._issue("client", root, "/O=cynic tests/CN=cynic client", "client")
        self.expired = self._issue("expired", inter_dir, "/O=cynic tests/CN=expired.localhost", "server",
                                   chain=True, start=-730 * DAY, end=-365 * DAY)
        self.wrong_name = self._issue("wrong_name", inter_dir, "/O=cynic tests/CN=wrong.example",
                                      "wrong_name", chain=True)
        self.soon = self._issue("soon", inter_dir, "/O=cynic tests/CN=soon.localhost", "server",
                                chain=True, days=7)
        # self-signed: the right names, no issuer anyone trusts
        ss = self._dir("self_signed")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f"{ss}/key.pem", "-out", f"{ss}/cert.pem", "-days", "365",
                "-subj", "/O=cynic tests/CN=self-signed localhost",
                "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                "-addext", "extendedKeyUsage=serverAuth,clientAuth")
        self.self_signed = Leaf(f"{ss}/cert.pem", f"{ss}/key.pem")
        # server2's certificate with server's key
        self.mismatched = Leaf(self.server2.cert, self.server.key, self.server2.leaf)

    def _dir(self, name):
        d = os.path.join(self.dir, name)
        os.makedirs(d)
        return d

    def _issue(self, name, issuer_dir, subj, ext, chain=False, days=365, start=None, end=None):
        """A new key and a certificate for it, signed by the CA in issuer_dir
        (cert.pem, key.pem) with `openssl ca` (which alone in OpenSSL 3.0 takes
        a start and end date in the past). start/end: seconds from now."""
        d = self._dir(name)
        ca_state = os.path.join(d, "ca")
        os.makedirs(os.path.join(ca_state, "new"))
        open(os.path.join(ca_state, "index.txt"), "w").close()
        self._serial += 1
        with open(os.path.join(ca_state, "serial"), "w") as f:
            f.write(f"{self._serial:X}\n")
        with open(os.path.join(ca_state, "ca.cnf"), "w") as f:
            f.write(_CA_CNF.format(d=ca_state))
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f"{d}/key.pem", "-out", f"{d}/req.pem", "-subj", subj)
        when = []
        if start is not None:
            stamp = lambda s: (datetime.datetime.now(datetime.timezone.utc)  # noqa: E731
                               + datetime.timedelta(seconds=s)).strftime("%Y%m%d%H%M%SZ")
            when = ["-startdate", stamp(start), "-enddate", stamp(end)]
        else:
            when = ["-days", str(days)]
        openssl("ca", "-batch", "-notext", "-config", f"{ca_state}/ca.cnf", "-cert", f"{issuer_dir}/cert.pem",
                "-keyfile", f"{issuer_dir}/key.pem", "-in", f"{d}/req.pem", "-out", f"{d}/leaf.pem",
                "-extfile", self.ext, "-extensions", ext, *when)
        if ext == "intermediate":
            shutil.copy(f"{d}/leaf.pem", f"{d}/cert.pem")
        elif chain:
            with open(f"{d}/cert.pem", "w") as out:
                for part in (f"{d}/leaf.pem", f"{issuer_dir}/cert.pem"):
                    with open(part) as f:
                        out.write(f.read())
        else:
            shutil.copy(f"{d}/leaf.pem", f"{d}/cert.pem")
        return Leaf(f"{d}/cert.pem", f"{d}/key.pem", f"{d}/leaf.pem")

    def verify(self, leaf, purpose="sslserver", name=None, untrusted=True):
        """`openssl verify` of leaf against the root (the intermediate given
        as untrusted): (ok, output)."""
        args = ["verify", "-CAfile", self.ca.cert, "-purpose", purpose]
        if untrusted:
            args += ["-untrusted", self.inter.cert]
        if name:
            args += ["-verify_hostname" if not re.fullmatch(r"[\d.]+", name) else "-verify_ip", name]
        r = subprocess.run([OPENSSL, *args, leaf.leaf], capture_output=True, timeout=30)
        return r.returncode == 0, (r.stdout + r.stderr).decode(errors="replace")


def make_certs():
    """A Certs in a new temporary directory (removed by the caller's
    cleanup()); returned with it: (certs, tempdir)."""
    tmp = tempfile.TemporaryDirectory(prefix="cynic-tls-")
    return Certs(tmp.name), tmp


def install(leaf, cert_path, key_path):
    """Puts leaf's certificate and key at these paths, each by an atomic
    rename (a reader never sees half a file)."""
    for src, dst in ((leaf.cert, cert_path), (leaf.key, key_path)):
        tmp = dst + ".new"
        shutil.copy(src, tmp)
        os.replace(tmp, dst)


def client_context(certs, cert=None, alpn=None, verify=True, max_version=None):
    """A client SSLContext trusting the test root (or nothing checked when
    verify is False), with an optional client certificate (a Leaf)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        ctx.load_verify_locations(certs.ca.cert)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert is not None:
        ctx.load_cert_chain(cert.cert, cert.key)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


def tls_connect(addr, ctx, server_name="localhost", timeout=10.0):
    """A TLS connection to addr (host, port), handshake done."""
    raw = socket.create_connection(addr, timeout=timeout)
    try:
        return ctx.wrap_socket(raw, server_hostname=server_name)
    except BaseException:
        raw.close()
        raise


def peer_serial(tls):
    """The serial number of the certificate the server presented (int):
    from the verified certificate's fields, or by `openssl x509` when the
    context did not verify."""
    fields = tls.getpeercert()
    if fields and "serialNumber" in fields:
        return int(fields["serialNumber"], 16)
    der = tls.getpeercert(binary_form=True)
    out = subprocess.run([OPENSSL, "x509", "-inform", "DER", "-noout", "-serial"], input=der,
                         capture_output=True, timeout=30, check=True).stdout.decode()
    return int(out.strip().split("=", 1)[1], 16)


VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


class TlsServer(TcpServer):
    """A threaded TLS server on 127.0.0.1 (free port).

    leaf: the Leaf it presents (chain included); client_ca: a CA file whose
    certificates it then requires from clients (None: none asked for);
    alpn: the protocols it selects from; max_version: "1.2" or "1.3" (None:
    OpenSSL's). app(tls, record): what runs after a handshake (ECHO or
    HTTP, below). handshakes: one dict per connection, in accept order: sni,
    alpn, reused, version, peer (the client certificate's subject as a dict,
    or None), error (why the handshake failed, else None), eof ("close_notify"
    or "ragged": how the client ended its stream, set by the apps)."""

    def __init__(self, leaf, app=None, client_ca=None, alpn=("http/1.1",), max_version=None,
                 handshake_timeout=10.0, io_timeout=30.0):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(leaf.cert, leaf.key)
        if client_ca:
            ctx.load_verify_locations(client_ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
        if alpn:
            ctx.set_alpn_protocols(list(alpn))
        if max_version:
            ctx.maximum_version = VERSIONS[max_version]
        ctx.sni_callback = self._sni
        self.ctx = ctx
        self.app = app or ECHO
        self.handshakes = []
        self.handshake_timeout, self.io_timeout = handshake_timeout, io_timeout
        self._lock = threading.Lock()
        super().__init__(self._conn)

    @staticmethod
    def _sni(tls, name, ctx):
        tls.cynic_sni = name  # read back after the handshake, same thread
        return None

    def _conn(self, raw):
        raw.settimeout(self.handshake_timeout)
        rec = {"sni": None, "alpn": None, "reused": None, "version": None, "peer": None,
               "error": None, "eof": None}
        with self._lock:
            self.handshakes.append(rec)
        try:
            tls = self.ctx.wrap_socket(raw, server_side=True, suppress_ragged_eofs=False)
        except (ssl.SSLError, OSError) as e:
            rec["error"] = f"{type(e).__name__}: {e}"
            return
        rec.update(sni=getattr(tls, "cynic_sni", None), alpn=tls.selected_alpn_protocol(),
                   reused=tls.session_reused, version=tls.version())
        peer = tls.getpeercert()
        if peer:
            rec["peer"] = {k: v for rdn in peer["subject"] for k, v in rdn}
        tls.settimeout(self.io_timeout)
        try:
            self.app(tls, rec)
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def ok_handshakes(self):
        return [h for h in self.handshakes if h["error"] is None and h["version"] is not None]


def tls_recv(tls, rec, n=1 << 16):
    """One read: the bytes, or b"" at the end of the client's stream, noting
    in rec["eof"] whether it ended with close_notify or a bare TCP FIN."""
    try:
        data = tls.recv(n)
    except ssl.SSLEOFError:
        rec["eof"] = "ragged"
        return b""
    except ssl.SSLZeroReturnError:
        rec["eof"] = "close_notify"
        return b""
    if not data:
        rec["eof"] = rec["eof"] or "close_notify"
    return data


def ECHO(tls, rec):
    """Echo until the client ends its stream, then end ours: close_notify
    (when the client sent one) and a FIN."""
    while True:
        data = tls_recv(tls, rec)
        if not data:
            break
        tls.sendall(data)
    if rec["eof"] == "close_notify":
        try:
            raw = tls.unwrap()
            raw.shutdown(socket.SHUT_WR)
            return
        except (ssl.SSLError, OSError):
            pass
    tls.shutdown(socket.SHUT_WR)


def _read_head(tls, rec, buf):
    while b"\r\n\r\n" not in buf:
        if len(buf) > 65536:
            raise OSError("request head over 64 KB")
        data = tls_recv(tls, rec)
        if not data:
            return None, b""
        buf += data
    i = buf.index(b"\r\n\r\n") + 4
    return buf[:i], buf[i:]


def HTTP(tls, rec):
    """HTTP/1.1 keep-alive: each request (Content-Length bodies only) gets a
    200 whose JSON body is this connection's handshake record plus the
    request's method, target and number on the connection; headers X-SNI,
    X-ALPN and X-Reused say the same. Closes after a `Connection: close`."""
    buf, n = b"", 0
    while True:
        head, buf = _read_head(tls, rec, buf)
        if head is None:
            return
        m = re.search(rb"\r\ncontent-length: *(\d+)", head, re.I)
        need = int(m.group(1)) if m else 0
        while len(buf) < need:
            data = tls_recv(tls, rec)
            if not data:
                return
            buf += data
        body, buf = buf[:need], buf[need:]
        n += 1
        line = head.split(b"\r\n", 1)[0].decode(errors="replace").split(" ")
        out = json.dumps({**rec, "method": line[0], "target": line[1] if len(line) > 1 else "",
                          "n": n, "body_len": len(body)}).encode()
        close = re.search(rb"\r\nconnection: *close", head, re.I) is not None
        tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"X-SNI: %s\r\nX-ALPN: %s\r\nX-Reused: %d\r\nContent-Length: %d\r\n%s\r\n"
                    % (str(rec["sni"]).encode(), str(rec["alpn"]).encode(), int(bool(rec["reused"])),
                       len(out), b"Connection: close\r\n" if close else b"")
                    + out)
        if close:
            return


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Nginx:
    """nginx (Debian's) serving HTTPS on a free loopback port, as the
    current user from a temp directory (no master process, one worker),
    presenting `leaf` (chain included); with client_ca, it requires client
    certificates signed by it. Every request gets `200 ok` with headers
    X-SNI, X-ALPN, X-Reused, X-Client-DN; the access log (lines(): dicts)
    records the same per request."""

    FIELDS = ("sni", "alpn", "reused", "protocol", "client_dn", "verify", "request")

    def __init__(self, leaf, client_ca=None, timeout=10.0):
        self.tmp = tempfile.TemporaryDirectory(prefix="cynic-nginx-")
        d = self.tmp.name
        self.log = os.path.join(d, "access.log")
        client = ""
        if client_ca:
            client = f"ssl_client_certificate {client_ca};\n    ssl_verify_client on;"
        self.proc = None
        for _ in range(5):  # a free port may be taken between bind and nginx
            self.port = free_port()
            with open(os.path.join(d, "nginx.conf"), "w") as f:
                f.write(f"""daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 256; }}
http {{
  log_format tls '$ssl_server_name\\t$ssl_alpn_protocol\\t$ssl_session_reused\\t$ssl_protocol\\t$ssl_client_s_dn\\t$ssl_client_verify\\t$request';
  access_log {self.log} tls;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  keepalive_timeout 60s;
  server {{
    listen 127.0.0.1:{self.port} ssl;
    ssl_certificate {leaf.cert};
    ssl_certificate_key {leaf.key};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:tls:1m;
    ssl_session_tickets on;
    {client}
    location / {{
      add_header X-SNI $ssl_server_name always;
      add_header X-ALPN $ssl_alpn_protocol always;
      add_header X-Reused $ssl_session_reused always;
      add_header X-Client-DN $ssl_client_s_dn always;
      return 200 "ok\\n";
    }}
  }}
}}
""")
            self.proc = subprocess.Popen(["nginx", "-p", d, "-c", f"{d}/nginx.conf", "-e", f"{d}/error.log"],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE)
            if self._wait_listening(timeout):
                return
            self.proc.kill()
            self.proc.wait()
        raise AssertionError("nginx did not start:\n" + self.errors())

    def _wait_listening(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                time.sleep(0.05)
        return False

    @property
    def endpoint(self):
        return f"127.0.0.1:{self.port}"

    def errors(self):
        try:
            with open(os.path.join(self.tmp.name, "error.log")) as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def lines(self):
        try:
            with open(self.log) as f:
                return [dict(zip(self.FIELDS, line.rstrip("\n").split("\t"))) for line in f]
        except FileNotFoundError:
            return []

    def close(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.proc.stderr.close()
        self.tmp.cleanup()


def have_nginx():
    return shutil.which("nginx") is not None


__all__ = ["Certs", "Leaf", "TlsServer", "ECHO", "HTTP", "Nginx", "make_certs", "install", "client_context",
           "tls_connect", "peer_serial", "have_nginx", "wait_for", "openssl"]


def plain_http():
    """A plain HTTP/1.1 keep-alive backend: every request gets `200 ok`
    (Content-Length bodies read and dropped). Its `requests` counts them."""
    srv = None

    def handler(conn):
        conn.settimeout(30)
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                if len(buf) > 65536:
                    return
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            i = buf.index(b"\r\n\r\n") + 4
            head, buf = buf[:i], buf[i:]
            m = re.search(rb"\r\ncontent-length: *(\d+)", head, re.I)
            need = int(m.group(1)) if m else 0
            while len(buf) < need:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            buf = buf[need:]
            srv.requests += 1
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")

    srv = TcpServer(handler)
    srv.requests = 0
    return srv


def tls_half_close_exchange(addr, ctx, payload, server_name="localhost", timeout=60.0, chunk=16384):
    """A TLS client that sends payload, then ends its side of the stream
    (close_notify, then a TCP FIN) while it keeps reading what comes back,
    until the server ends its side. One thread, memory BIOs and select, so
    a large payload through an echo cannot deadlock. Returns (bytes read,
    how the server ended: "close_notify" or "fin" (a FIN with no
    close_notify)). Raises on a failed handshake or after `timeout`."""
    import select
    raw = socket.create_connection(addr, timeout=timeout)
    deadline = time.monotonic() + timeout
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=server_name)
    try:
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                raw.sendall(out.read())
                data = raw.recv(65536)
                if not data:
                    raise ConnectionError("closed during the handshake")
                inc.write(data)
        raw.sendall(out.read())
        raw.setblocking(False)
        view, pending = memoryview(payload), bytearray()
        sent_close = fin_sent = False
        got, eof = bytearray(), None
        while eof is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"exchange unfinished after {timeout}s: {len(got)} of {len(payload)} back")
            while view and len(pending) < (1 << 18):
                obj.write(view[:chunk])
                view = view[chunk:]
                pending += out.read()
            if not view and not sent_close:
                try:
                    obj.unwrap()
                except ssl.SSLWantReadError:
                    pass
                pending += out.read()
                sent_close = True
            r, w, _ = select.select([raw], [raw] if pending else [], [], 0.5)
            if w:
                try:
                    n = raw.send(pending)
                    del pending[:n]
                except BlockingIOError:
                    pass
            if sent_close and not pending and not fin_sent:
                raw.shutdown(socket.SHUT_WR)
                fin_sent = True
            if r:
                try:
                    data = raw.recv(1 << 16)
                except BlockingIOError:
                    continue
                if not data:
                    eof = "fin"
                    inc.write_eof()
                else:
                    inc.write(data)
                while True:
                    try:
                        piece = obj.read(1 << 16)
                    except ssl.SSLWantReadError:
                        break
                    except ssl.SSLZeroReturnError:
                        eof = "close_notify"
                        break
                    except ssl.SSLEOFError:
                        break
                    if not piece:
                        break
                    got += piece
                pending += out.read()
        return bytes(got), eof
    finally:
        raw.close()


def plain_half_close_exchange(addr, payload, timeout=60.0):
    """A plain TCP client: sends payload from a thread, then a FIN, and reads
    to EOF meanwhile. Returns the bytes read."""
    s = socket.create_connection(addr, timeout=timeout)
    err = []

    def send():
        try:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
        except OSError as e:
            err.append(e)
    th = threading.Thread(target=send, daemon=True)
    th.start()
    got = bytearray()
    try:
        while True:
            data = s.recv(1 << 16)
            if not data:
                break
            got += data
            if len(got) > len(payload) + (1 << 20):
                raise AssertionError("more bytes back than sent")
    finally:
        th.join(timeout)
        s.close()
    assert not err, err
    return bytes(got)
