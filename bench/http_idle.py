#!/usr/bin/env python3
"""bench/http_idle.py: the idle keep-alive clients of the HTTP and TLS
benchmarks (bench/http.sh, bench/tls.sh).

    http_idle.py PORT N PATH SIZE [--tls CAFILE]

Opens N keep-alive connections to 127.0.0.1:PORT one after the other and sends
one `GET PATH` on each; every answer must be a 200 with a body of exactly SIZE
bytes and must not close the connection. Then prints "ready N" and holds the
connections, idle, until a line arrives on stdin; then checks that each is
still open (the proxy has not closed it meanwhile), prints "open K" and exits.
Exits 1 with the reason on stderr when a connection or an answer fails; every
socket operation has a 10 s timeout, so a stalled proxy cannot hang it.
With --tls each connection is HTTPS, the server's certificate verified
against CAFILE for 127.0.0.1 (so every handshake is done before "ready").
"""
import http.client
import resource
import socket
import ssl
import sys

TIMEOUT_S = 10.0
MAX_CONNECTIONS = 100000


def fail(msg):
    print(f"http_idle: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def main():
    ctx = None
    if len(sys.argv) == 7 and sys.argv[5] == "--tls":
        try:
            ctx = ssl.create_default_context(cafile=sys.argv[6])
        except (OSError, ssl.SSLError) as e:
            fail(f"--tls {sys.argv[6]}: {e}")
    elif len(sys.argv) != 5:
        fail("usage: http_idle.py PORT N PATH SIZE [--tls CAFILE]")
    try:
        port, n, path, size = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    except ValueError:
        fail("PORT, N and SIZE must be integers")
    if not 1 <= port <= 65535 or not 1 <= n <= MAX_CONNECTIONS or size < 0 or not path.startswith("/"):
        fail(f"bad arguments: port 1..65535, N 1..{MAX_CONNECTIONS}, SIZE >= 0, PATH starting with /")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 64
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            fail(f"{n} connections need {want} descriptors; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    conns = []
    for i in range(n):
        if ctx is None:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
        else:
            c = http.client.HTTPSConnection("127.0.0.1", port, timeout=TIMEOUT_S, context=ctx)
        try:
            c.request("GET", path)
            r = c.getresponse()
            body = r.read()
        except (OSError, http.client.HTTPException) as e:
            fail(f"connection {i}: {type(e).__name__}: {e}")
        if r.status != 200 or len(body) != size:
            fail(f"connection {i}: status {r.status}, {len(body)} body bytes (want 200, {size})")
        if r.will_close:
            fail(f"connection {i}: the answer closes the connection (not keep-alive)")
        conns.append(c)
    print(f"ready {n}", flush=True)

    sys.stdin.readline()
    still_open = 0
    for c in conns:
        # An idle connection the proxy closed reads EOF (or an error); one
        # still open has nothing to read (or unasked bytes: still open).
        # (Non-blocking: with a timeout set, Python waits for data first.)
        # Peeked on a duplicate of the descriptor: a TLS socket takes no
        # flags, and the raw bytes are all that matters here.
        raw = socket.fromfd(c.sock.fileno(), socket.AF_INET, socket.SOCK_STREAM)
        raw.setblocking(False)
        try:
            if raw.recv(1, socket.MSG_PEEK) == b"":
                continue
        except BlockingIOError:
            pass
        except OSError:
            continue
        finally:
            raw.close()
        still_open += 1
    print(f"open {still_open}", flush=True)
    for c in conns:
        c.close()


if __name__ == "__main__":
    main()
