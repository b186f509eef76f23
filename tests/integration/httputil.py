"""Raw HTTP/1.1 over loopback for the tests of cynic's `mode: http`.

- Backend: a scripted raw origin server. It records every byte it receives,
  per connection, and every request it could frame (head and raw body, chunk
  framing included), and answers each request with scripted raw bytes chosen
  by the request's path, so a test can send anything: malformed framing,
  chunked bodies, no length (until EOF), 1xx, bogus bodies after 204/304,
  bytes after a response, a close or a reset instead of an answer, or
  nothing at all.
- Client: one client connection; sends raw bytes, reads responses with a
  small strict reader (told the request's method, so HEAD has no body), and
  tells how the connection ended (EOF, reset, or still open).
- parse_head / fields: a head split into its start line and (name, value)
  pairs, in order, exactly as received.

Everything is bounded: every read has a timeout, every buffer a limit.
"""
import re
import socket
import struct
import threading
import time

from netutil import TcpServer, wait_for

HEX32 = re.compile(rb"^[0-9a-f]{32}$")
LIMIT = 1 << 22  # the most any reader here buffers (4 MiB)


def parse_head(head):
    """(start line, [(name, value), ...]) of a head without its final CRLFCRLF.
    Names and values as sent (the value without surrounding spaces)."""
    lines = head.split(b"\r\n")
    out = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        assert sep, f"not a header line: {line!r}"
        out.append((name, value.strip(b" \t")))
    return lines[0], out


def field(fields, name):
    """Every value of header `name` (case-insensitive), in order."""
    n = name.lower()
    return [v for k, v in fields if k.lower() == n]


# ---- the scripted backend ----------------------------------------------------------------


class Reply:
    """What the backend does with one request.

    data: raw bytes sent as the answer (anything, framed or not);
    pieces: instead of data, [(delay_s, bytes), ...] sent in turn;
    on_head: bytes sent as soon as the head arrived, before the body is read
             (a 100 Continue);
    then: "keep" (read the next request on this connection), "close" (FIN),
          "reset" (RST: SO_LINGER 0), "hang" (send nothing more, hold the
          connection until the peer closes or the backend is released);
    before: seconds to wait before answering.
    """

    def __init__(self, data=b"", pieces=None, on_head=b"", then="keep", before=0.0):
        self.data, self.pieces, self.on_head = data, pieces, on_head
        self.then, self.before = then, before


def ok(body=b"ok", extra=b""):
    """A plain 200 with Content-Length."""
    return Reply(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body))


class Request:
    """One request as the backend framed it."""

    def __init__(self, conn, head, body):
        self.conn = conn  # the backend's connection number (0, 1, ...)
        self.head = head  # raw head without the final CRLFCRLF
        self.body = body  # raw body bytes, chunk framing and trailers included
        self.line, self.fields = parse_head(head)

    @property
    def raw(self):
        return self.head + b"\r\n\r\n" + self.body

    def __repr__(self):
        return f"Request(conn={self.conn}, {self.raw!r})"


class Backend:
    """The scripted origin server on 127.0.0.1:0 (see the module's docstring).
    Replies are chosen by the request target's path (query and absolute-form
    authority ignored): script(path, reply, ...) sets the replies for a path,
    used in turn (the last one repeats); other paths get ok()."""

    def __init__(self):
        self.lock = threading.Lock()
        self.scripts = {}
        self.requests = []  # every framed request, in arrival order
        self.received = []  # raw bytes per connection (bytearrays)
        self.ended = set()  # connections whose peer (cynic) closed or reset them
        self.release = threading.Event()
        self.errors = []  # what the test double could not frame (a bug of the test, or bytes
        #                   cynic should never have sent: a test asserts on requests anyway)
        self.server = TcpServer(self._guarded)

    @property
    def endpoint(self):
        return self.server.endpoint

    def script(self, path, *replies):
        with self.lock:
            self.scripts[path] = list(replies)

    def total(self):
        with self.lock:
            return sum(len(b) for b in self.received)

    def snapshot(self):
        """How many bytes each connection has received so far."""
        with self.lock:
            return [len(b) for b in self.received]

    def grown(self, snap):
        """{connection: the bytes it received since snapshot snap}."""
        with self.lock:
            out = {}
            for i, b in enumerate(self.received):
                start = snap[i] if i < len(snap) else 0
                if len(b) > start:
                    out[i] = bytes(b[start:])
            return out

    def is_ended(self, conn):
        with self.lock:
            return conn in self.ended

    def since(self, mark):
        """The requests recorded after mark (an index into requests)."""
        with self.lock:
            return list(self.requests[mark:])

    def mark(self):
        with self.lock:
            return len(self.requests)

    def _reply_for(self, target):
        path = target
        m = re.match(rb"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/]*", path)
        if m:
            path = path[m.end():] or b"/"
        path = path.split(b"?", 1)[0].decode("latin-1")
        with self.lock:
            replies = self.scripts.get(path)
            if not replies:
                return ok()
            return replies.pop(0) if len(replies) > 1 else replies[0]

    def _guarded(self, conn):
        try:
            self._serve(conn)
        except (ValueError, AssertionError, IndexError) as e:
            with self.lock:
                self.errors.append(repr(e))

    def _serve(self, conn):
        with self.lock:
            num = len(self.received)
            self.received.append(bytearray())
        conn.settimeout(30)
        buf = bytearray()

        def more():
            try:
                d = conn.recv(65536)
            except ConnectionResetError:
                d = b""
            if not d:
                with self.lock:
                    self.ended.add(num)
            if d:
                with self.lock:
                    self.received[num] += d
                buf.extend(d)
                assert len(buf) <= LIMIT
            return bool(d)

        def upto(sep):
            """Bytes of buf up to and including sep, reading as needed; None on EOF."""
            while True:
                i = buf.find(sep)
                if i >= 0:
                    out = bytes(buf[:i + len(sep)])
                    del buf[:i + len(sep)]
                    return out
                if not more():
                    return None

        def exactly(n):
            while len(buf) < n:
                if not more():
                    return None
            out = bytes(buf[:n])
            del buf[:n]
            return out

        while True:
            head = upto(b"\r\n\r\n")
            if head is None:
                return
            head = head[:-4]
            try:
                line, fields = parse_head(head)
                target = line.split(b" ")[1]
            except (AssertionError, IndexError):
                return  # not a request this test double can frame: recorded raw only
            reply = self._reply_for(target)
            if reply.on_head:
                conn.sendall(reply.on_head)
            body = bytearray()
            te = field(fields, b"transfer-encoding")
            cl = field(fields, b"content-length")
            if te and te[-1].lower() == b"chunked":
                while True:
                    size_line = upto(b"\r\n")
                    if size_line is None:
                        return
                    body += size_line
                    size = int(size_line.split(b";")[0].strip(), 16)
                    if size == 0:
                        while True:  # trailers, then the empty line
                            t = upto(b"\r\n")
                            if t is None:
                                return
                            body += t
                            if t == b"\r\n":
                                break
                        break
                    data = exactly(size + 2)
                    if data is None:
                        return
                    body += data
            elif cl:
                data = exactly(int(cl[0]))
                if data is None:
                    return
                body += data
            with self.lock:
                self.requests.append(Request(num, head, bytes(body)))
            if reply.before:
                time.sleep(reply.before)
            if reply.pieces is not None:
                for delay, piece in reply.pieces:
                    time.sleep(delay)
                    conn.sendall(piece)
            elif reply.data:
                conn.sendall(reply.data)
            if reply.then == "close":
                conn.shutdown(socket.SHUT_WR)
                return
            if reply.then == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            if reply.then == "hang":
                conn.settimeout(0.05)
                deadline = time.monotonic() + 60
                while not self.release.is_set() and time.monotonic() < deadline:
                    try:
                        if not conn.recv(65536):
                            with self.lock:
                                self.ended.add(num)
                            return
                    except socket.timeout:
                        continue
                    except ConnectionResetError:
                        with self.lock:
                            self.ended.add(num)
                        return
                return

    def close(self):
        self.release.set()
        self.server.close()


# ---- the client ----------------------------------------------------------------------------


class Response:
    def __init__(self, head, body, decoded):
        self.head = head  # raw head without the final CRLFCRLF
        self.body = body  # raw body as received (chunk framing included)
        self.decoded = decoded  # the body without chunk framing
        self.line, self.fields = parse_head(head)
        self.status = int(self.line.split(b" ")[1])

    def get(self, name):
        v = field(self.fields, name)
        return v[0] if v else None

    @property
    def raw(self):
        return self.head + b"\r\n\r\n" + self.body

    def __repr__(self):
        return f"Response({self.raw!r})"


class Client:
    """One client connection to addr, raw."""

    def __init__(self, addr, timeout=10.0):
        self.sock = socket.create_connection(addr, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.buf = bytearray()
        self.eof = None  # None, "fin" or "reset" once the peer ended

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def _more(self):
        if self.eof:
            return False
        self.sock.settimeout(self.timeout)
        try:
            d = self.sock.recv(65536)
        except ConnectionResetError:
            self.eof = "reset"
            return False
        if not d:
            self.eof = "fin"
            return False
        self.buf.extend(d)
        assert len(self.buf) <= LIMIT, "more than the reader's limit"
        return True

    def _upto(self, sep):
        while True:
            i = self.buf.find(sep)
            if i >= 0:
                out = bytes(self.buf[:i + len(sep)])
                del self.buf[:i + len(sep)]
                return out
            if not self._more():
                raise EOFError(f"{self.eof} before {sep!r}; have {bytes(self.buf)!r}")

    def _exactly(self, n):
        while len(self.buf) < n:
            if not self._more():
                raise EOFError(f"{self.eof} after {len(self.buf)} of {n} body bytes")
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def response(self, method=b"GET"):
        """The next response (a 1xx is one too). Raises EOFError when the
        connection ends before a whole response."""
        head = self._upto(b"\r\n\r\n")[:-4]
        r = Response(head, b"", b"")
        if method == b"HEAD" or r.status < 200 or r.status in (204, 304):
            return r
        te, cl = r.get(b"transfer-encoding"), r.get(b"content-length")
        if te is not None and te.lower() == b"chunked":
            raw, dec = bytearray(), bytearray()
            while True:
                size_line = self._upto(b"\r\n")
                raw += size_line
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while True:
                        t = self._upto(b"\r\n")
                        raw += t
                        if t == b"\r\n":
                            break
                    break
                chunk = self._exactly(size + 2)
                raw += chunk
                dec += chunk[:-2]
            r.body, r.decoded = bytes(raw), bytes(dec)
        elif cl is not None:
            r.body = r.decoded = self._exactly(int(cl))
        else:
            while self._more():
                pass
            r.body = r.decoded = bytes(self.buf)
            self.buf.clear()
        return r

    def final(self, method=b"GET"):
        """The interim responses and the final one: (list of 1xx, final)."""
        interim = []
        while True:
            r = self.response(method)
            if r.status >= 200:
                return interim, r
            interim.append(r)

    def ended(self, timeout=5.0):
        """Waits up to timeout for the peer to end the connection: "fin",
        "reset", or None if it is still open; bytes received meanwhile stay
        in self.buf (a test asserts there are none)."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                return None
            except ConnectionResetError:
                self.eof = "reset"
                break
            if not d:
                self.eof = "fin"
                break
            self.buf.extend(d)
            assert len(self.buf) <= LIMIT
        return self.eof


def wait_requests(backend, mark, n, timeout=10.0):
    """The n requests the backend recorded after mark, waiting for them."""
    wait_for(lambda: len(backend.since(mark)) >= n, timeout, what=f"{n} requests at the backend")
    return backend.since(mark)
