#!/usr/bin/env python3
"""bench/tls_idle.py: the idle clients of bench/tls.sh's memory figure.

  tls_idle.py PORT N [--tls CAFILE]

Opens N connections to 127.0.0.1:PORT (TLS, verifying localhost against
CAFILE, with --tls; plain without), makes one HTTP/1.1 keep-alive request on
each (so every handshake, the proxy's and its upstream's, is done and the
response read), prints "ready", then holds them all until stdin closes.
Exits 1 when a connection fails. Bounded: 30 s per connection.
"""
import socket
import ssl
import sys

REQUEST = b"GET /small HTTP/1.1\r\nHost: localhost\r\n\r\n"


def one(port, ctx):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    if ctx is not None:
        s = ctx.wrap_socket(s, server_hostname="localhost")
    s.sendall(REQUEST)
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = s.recv(4096)
        if not data:
            raise ConnectionError("closed before a response")
        buf += data
    head, _, body = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        data = s.recv(4096)
        if not data:
            raise ConnectionError("closed inside a response")
        body += data
    return s


def main():
    args = sys.argv[1:]
    if len(args) not in (2, 4) or (len(args) == 4 and args[2] != "--tls"):
        sys.exit(__doc__)
    port, n = int(args[0]), int(args[1])
    ctx = None
    if len(args) == 4:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(args[3])
    held = []
    try:
        for _ in range(n):
            held.append(one(port, ctx))
    except OSError as e:
        print(f"tls_idle.py: connection {len(held) + 1} of {n}: {e}", file=sys.stderr)
        sys.exit(1)
    print("ready", flush=True)
    sys.stdin.read()
    for s in held:
        s.close()


if __name__ == "__main__":
    main()
