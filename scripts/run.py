#!/usr/bin/env python3
"""`make run`: a working system to poke at, not a proxy in front of nothing.

Starts, on fixed loopback ports (the ones examples/quickstart.yaml names):

    curl ──> cynic 127.0.0.1:8080 ──> cynic-harness proxy "backend" 127.0.0.1:9000 ──> demo backend 127.0.0.1:9001
             admin + status page 127.0.0.1:9901       harness API 127.0.0.1:8474

prints the commands to try, shows cynic's JSON log, and supervises: Ctrl-C
(SIGINT) or SIGTERM stops all three (cynic first, so it drains); if any of
them exits by itself, the others are stopped and this exits 1 saying which.
A port already taken is named before anything starts. The children die with
this process even if it is killed (PR_SET_PDEATHSIG).

    python3 scripts/run.py [--build build]
"""
import argparse
import json
import os
import signal
import sys
import time

import demolib as dl

HOST = "127.0.0.1"
LISTENER, ADMIN, HARNESS_API, HARNESS_PROXY, BACKEND = 8080, 9901, 8474, 9000, 9001
CONFIG = os.path.join(dl.ROOT, "examples", "quickstart.yaml")
START_TIMEOUT = 15.0   # s for each program to answer on its ports
STOP_TIMEOUT = 40.0    # s for each to exit: more than quickstart's drain_timeout (30 s)

PORTS = [
    (LISTENER, "cynic's listener `app` (examples/quickstart.yaml)"),
    (ADMIN, "cynic's admin listener (examples/quickstart.yaml)"),
    (HARNESS_API, "the cynic-harness API"),
    (HARNESS_PROXY, "the cynic-harness proxy `backend`, cynic's upstream endpoint (examples/quickstart.yaml)"),
    (BACKEND, "the demo backend (examples/demo/backend.py)"),
]

# What the quickstart must say for the ports above to be right.
EXPECTED = [f"listen: {HOST}:{ADMIN}", f"listen: {HOST}:{LISTENER}", f"endpoints: [{HOST}:{HARNESS_PROXY}]"]


def banner(run_dir):
    toxic = '{"name":"hang","type":"timeout","attributes":{"timeout":0}}'
    return f"""
==============================================================================
 cynic is running, in front of a demo backend behind cynic-harness:

   curl -> cynic {HOST}:{LISTENER} -> harness {HOST}:{HARNESS_PROXY} -> backend {HOST}:{BACKEND}
   status page http://{HOST}:{ADMIN}/      harness API {HOST}:{HARNESS_API}

 Try, from another terminal:

 1. Send traffic through cynic (the backend answers with JSON):
      curl -s {HOST}:{LISTENER}/

 2. Make the dependency hang (a `timeout` toxic swallows every answer), then
    call five times: three calls wait for the 2 s first-byte timeout, the
    breaker opens, and the last ones fail in well under a millisecond:
      curl -s -XPOST {HOST}:{HARNESS_API}/proxies/backend/toxics -d '{toxic}'
      for i in 1 2 3 4 5; do curl -s -o /dev/null -w '%{{http_code}} %{{time_total}}s\\n' {HOST}:{LISTENER}/; done

 3. Watch the breaker: open http://{HOST}:{ADMIN}/ in a browser, or
      curl -s {HOST}:{ADMIN}/status
      curl -s {HOST}:{ADMIN}/breakers/backend

 Recover: remove the toxic; 10 s after it opened, the next call is the
 half-open probe, and its answer closes the breaker:
      curl -s -XDELETE {HOST}:{HARNESS_API}/proxies/backend/toxics/hang
      curl -s {HOST}:{LISTENER}/

 The same story, scripted and measured, on ports of its own: make demo

 cynic's log (JSON lines) follows; the harness's and the backend's are in
 {os.path.relpath(run_dir)}/. Ctrl-C stops all three.
==============================================================================
""".lstrip("\n")


def main():
    ap = argparse.ArgumentParser(description="make run: cynic in front of a demo backend behind cynic-harness")
    ap.add_argument("--build", default=os.path.join(dl.ROOT, "build"), help="the build directory (default build)")
    args = ap.parse_args()
    cynic, harness = os.path.join(args.build, "cynic"), os.path.join(args.build, "cynic-harness")
    for b in (cynic, harness):
        if not os.access(b, os.X_OK):
            print(f"run: {b} is not built; run `make build` first", file=sys.stderr)
            return 1
    with open(CONFIG) as f:
        text = f.read()
    for want in EXPECTED:
        if want not in text:
            print(f"run: {os.path.relpath(CONFIG)} no longer says `{want}`; scripts/run.py starts the "
                  f"harness and the backend on the ports the quickstart names: keep them in step", file=sys.stderr)
            return 1
    taken = [(p, what) for p, what in PORTS if dl.port_in_use(HOST, p)]
    for p, what in taken:
        print(f"run: port {p} on {HOST} is in use; it is needed for {what}. "
              f"Stop what holds it (`ss -ltnp 'sport = :{p}'` shows it) and run again.", file=sys.stderr)
    if taken:
        return 1

    run_dir = os.path.join(args.build, "run")
    os.makedirs(run_dir, exist_ok=True)
    harness_config = os.path.join(run_dir, "harness.json")
    with open(harness_config, "w") as f:
        json.dump([{"name": "backend", "listen": f"{HOST}:{HARNESS_PROXY}", "upstream": f"{HOST}:{BACKEND}"}], f)

    signals = []
    def on_signal(signum, frame):
        signals.append(signum)
        if len(signals) > 1:  # a second Ctrl-C: cynic closes what it still drains at once
            for c in children:
                if c.name == "cynic":
                    c.signal(signal.SIGTERM)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    children = []
    status = 0
    try:
        children.append(dl.Child("backend", [sys.executable, dl.BACKEND, "--listen", f"{HOST}:{BACKEND}"],
                                 log=os.path.join(run_dir, "backend.log")))
        dl.wait_until(lambda: signals or dl.connectable(HOST, BACKEND), START_TIMEOUT,
                      f"the backend on {HOST}:{BACKEND}", children)
        children.append(dl.Child("cynic-harness", [harness, "-host", HOST, "-port", str(HARNESS_API),
                                                   "-config", harness_config],
                                 log=os.path.join(run_dir, "harness.log")))
        dl.wait_until(lambda: signals or (dl.connectable(HOST, HARNESS_API) and dl.connectable(HOST, HARNESS_PROXY)),
                      START_TIMEOUT, f"cynic-harness on {HOST}:{HARNESS_API} and {HOST}:{HARNESS_PROXY}", children)
        children.append(dl.Child("cynic", [cynic, "-c", CONFIG]))  # its log: this terminal
        def cynic_up():
            if signals:
                return True
            try:
                return dl.api(HOST, ADMIN, "GET", "/health", timeout=1)[0] == 200
            except dl.DemoError:
                return False
        dl.wait_until(cynic_up, START_TIMEOUT, f"cynic's admin listener on {HOST}:{ADMIN}", children)
        if not signals:
            time.sleep(0.1)  # let cynic's start lines go out before the banner
            print(banner(run_dir), file=sys.stderr, flush=True)
        while not signals:
            for c in children:
                rc = c.exited()
                if rc is not None:
                    tail = c.log_tail()
                    raise dl.DemoError(f"{c.name} exited ({dl.describe_exit(rc)}); stopping the others"
                                       + (f"; its log ends with:\n{tail}" if tail else ""))
            time.sleep(0.1)
    except dl.DemoError as e:
        print(f"run: {e}", file=sys.stderr, flush=True)
        status = 1
    finally:
        if signals:
            print(f"\nrun: {signal.Signals(signals[0]).name}: stopping cynic (it drains), cynic-harness, "
                  "the backend", file=sys.stderr, flush=True)
        # cynic first: it stops accepting and finishes what is in flight
        # while its upstream is still there; then the harness, then the backend.
        for c in reversed(children):
            running = c.exited() is None
            rc = c.stop(STOP_TIMEOUT)
            if running and rc != 0:
                print(f"run: {c.name} stopped with {dl.describe_exit(rc)}", file=sys.stderr)
                status = 1
    if status == 0:
        print("run: stopped: cynic, cynic-harness and the backend have exited", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
