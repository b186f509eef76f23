#!/usr/bin/env python3
"""The demo upstream of `make run` and `make demo`: a tiny HTTP/1.1 server
that answers every request with one JSON object, e.g.

    {"service": "demo-backend", "request": 7, "method": "GET", "path": "/"}

It stands for the dependency cynic protects; cynic-harness sits between the
two so that the dependency can be made to misbehave on demand.

    python3 examples/demo/backend.py --listen 127.0.0.1:9001

Port 0 picks a free port. Once bound it prints one JSON line on stdout,
{"msg": "listening", "address": "127.0.0.1:PORT"}, and then serves until
SIGTERM or SIGINT (exit 0). A port it cannot bind exits 1 with the reason.

Bounds: at most MAX_CLIENTS connections at once (more are closed at once),
IDLE_S seconds of silence per connection, Python's own limits on the request
line and headers (64 KiB, 100 headers), bodies up to MAX_BODY bytes (read and
ignored). Connections are kept alive (HTTP/1.1) until the client closes or
the idle bound passes, which is what lets a `timeout` toxic on the way back
look like a dependency that hangs.
"""
import argparse
import http.server
import json
import signal
import sys
import threading

MAX_CLIENTS = 64
IDLE_S = 30
MAX_BODY = 64 * 1024


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "demo-backend"
    sys_version = ""
    timeout = IDLE_S  # per socket read: an idle or stalled client is dropped

    def answer(self):
        length = self.headers.get("Content-Length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                n = -1
            if n < 0 or n > MAX_BODY:
                self.send_error(413 if n > MAX_BODY else 400)
                self.close_connection = True
                return
            self.rfile.read(n)
        with self.server.count_lock:
            self.server.count += 1
            count = self.server.count
        body = json.dumps({"service": "demo-backend", "request": count,
                           "method": self.command, "path": self.path}).encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = answer

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format, *args):  # quiet: cynic's log tells the story
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr):
        super().__init__(addr, Handler)
        self.count = 0
        self.count_lock = threading.Lock()
        self.slots = threading.BoundedSemaphore(MAX_CLIENTS)

    def process_request(self, request, client_address):
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)  # over the bound: closed at once
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request, client_address):
        pass  # a client that resets or times out is not news


def parse_address(text):
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"'{text}' is not HOST:PORT (e.g. 127.0.0.1:9001)")
    return host.strip("[]"), int(port)


def main():
    ap = argparse.ArgumentParser(description="The demo upstream: answers every HTTP request with JSON.")
    ap.add_argument("--listen", type=parse_address, default=("127.0.0.1", 9001),
                    help="HOST:PORT to listen on (default 127.0.0.1:9001; port 0 picks one)")
    args = ap.parse_args()
    try:
        server = Server(args.listen)
    except OSError as e:
        print(f"backend: cannot listen on {args.listen[0]}:{args.listen[1]}: {e.strerror}", file=sys.stderr)
        return 1
    host, port = server.server_address[:2]
    print(json.dumps({"msg": "listening", "address": f"{host}:{port}"}), flush=True)

    def stop(signum, frame):
        # shutdown() waits for serve_forever() to return: not from its own thread
        threading.Thread(target=server.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever(poll_interval=0.1)
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
