#!/usr/bin/env python3
"""`make demo`: a scripted tour of cynic's stability patterns, narrated with
numbers measured as it goes, in a few seconds.

It starts the demo backend (examples/demo/backend.py), cynic-harness in
front of it and cynic in front of that, every one on a free loopback port
(port 0, read back), with a config of its own: first-byte timeout 300 ms,
breaker of 3 faults, open for 3 s. Then:

  1. traffic flows;
  2. the dependency starts hanging (a `timeout` toxic through the harness API);
     a client calling it directly waits until its own timeout gives up;
  3. cynic's first-byte timeout ends each hung call;
  4. after 3 of them the breaker opens;
  5. calls fail in microseconds instead of waiting for the timeout;
  6. the dependency recovers (the toxic is removed);
  7. the half-open probe goes through and closes the breaker.

The breaker's state and cynic's counts are read from cynic's admin API. Any
step that does not happen as narrated ends the tour with exit status 1 and
a message saying which step and what was seen instead. Timing checks are
orders of magnitude (a timed-out call took about the timeout, a fail-fast
call a small part of it), so the tour passes under ASan on a busy machine.

    python3 scripts/demo.py [--build build]

ctest runs it as demo/tour, in the normal and the sanitizer builds.
"""
import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time

import demolib as dl

HOST = "127.0.0.1"
FIRST_BYTE = 0.3   # s: upstream timeouts.first_byte
FAULTS = 3         # breaker.faults
OPEN_FOR = 3.0     # s: breaker.open_for (long enough that step 5 ends well inside it)
CALLS_OK, CALLS_FAST = 5, 5
CLIENT_TIMEOUT = 10.0  # s a demo client waits before calling the call hung
DIRECT_TIMEOUT = 1.0   # s the one client that bypasses cynic waits

CONFIG = f"""# written by scripts/demo.py
admin:
  listen: {HOST}:0
  drain_timeout: 5s
log:
  file: "{{log}}"
  level: info
listeners:
  - name: app
    listen: {HOST}:0
    mode: tcp
    upstream: backend
upstreams:
  - name: backend
    endpoints: [{{endpoint}}]
    timeouts: {{{{ connect: 300ms, first_byte: {int(FIRST_BYTE * 1000)}ms, idle: 10s }}}}
    breaker: {{{{ faults: {FAULTS}, leak: 60s, open_for: {int(OPEN_FOR * 1000)}ms, half_open_probes: 1 }}}}
"""


def sanitized(build):
    try:
        with open(os.path.join(build, "CMakeCache.txt")) as f:
            return any(line.startswith("CYNIC_SANITIZE:") and line.split("=", 1)[1].strip() for line in f)
    except OSError:
        return False


def fmt(seconds):
    """A duration for a reader: 0.21 ms, 12.3 ms, 301 ms, 1.52 s."""
    ms = seconds * 1000
    if ms < 10:
        return f"{ms:.2f} ms"
    if ms < 100:
        return f"{ms:.1f} ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    return f"{seconds:.2f} s"


class Step:
    """Numbered narration; fail() ends the tour at the current step."""

    def __init__(self):
        self.n, self.title = 0, "setting up"

    def start(self, title):
        self.n += 1
        self.title = title
        print(f"\n{self.n}. {title}", flush=True)

    def say(self, text):
        print(f"   {text}", flush=True)

    def fail(self, why):
        where = f"step {self.n} ({self.title.rstrip('.')})" if self.n else "setting up"
        raise dl.DemoError(f"{where} did not happen as narrated: {why}")


class Tour:
    def __init__(self, build, tmp):
        self.build, self.tmp = build, tmp
        self.slow = sanitized(build)
        # generous: the calls must only be told apart by orders of magnitude
        self.late = 2.0 if self.slow else 1.0            # s past the timeout a timed-out call may end
        self.fast = FIRST_BYTE / 2                      # s: a fail-fast call (the median is far below)
        self.children = []
        self.step = Step()

    # ---- the rig -------------------------------------------------------------

    def start(self):
        backend_log = os.path.join(self.tmp, "backend.log")
        harness_log = os.path.join(self.tmp, "harness.log")
        self.cynic_log = os.path.join(self.tmp, "cynic.log")
        backend = dl.Child("backend", [sys.executable, dl.BACKEND, "--listen", f"{HOST}:0"], log=backend_log)
        self.children.append(backend)
        rec = dl.wait_until(lambda: dl.log_find(backend_log, lambda r: r.get("msg") == "listening"), 15,
                            "the backend to listen", self.children)
        backend_addr = rec["address"]
        harness = dl.Child("cynic-harness", [os.path.join(self.build, "cynic-harness"), "-host", HOST, "-port", "0",
                                             "-seed", "1", "-log-file", harness_log], log=harness_log + ".stderr")
        self.children.append(harness)
        rec = dl.wait_until(lambda: dl.log_find(harness_log, lambda r: r.get("msg") == "API listening"), 15,
                            "cynic-harness's API to listen", self.children)
        self.harness_api = dl.split_address(rec["address"])
        st, proxy = dl.api(*self.harness_api, "POST", "/proxies",
                           {"name": "backend", "listen": f"{HOST}:0", "upstream": backend_addr})
        if st != 201:
            raise dl.DemoError(f"the harness refused the proxy: {st} {proxy}")
        self.endpoint = proxy["listen"]
        config = os.path.join(self.tmp, "cynic.yaml")
        with open(config, "w") as f:
            f.write(CONFIG.format(log=self.cynic_log, endpoint=self.endpoint))
        cynic = dl.Child("cynic", [os.path.join(self.build, "cynic"), "-c", config],
                         log=os.path.join(self.tmp, "cynic.stderr"))
        self.children.append(cynic)
        dl.wait_until(lambda: dl.log_find(self.cynic_log, lambda r: r.get("msg") == "started"), 15,
                      "cynic to start", self.children)
        for r in dl.log_records(self.cynic_log):
            if r.get("msg") == "admin listening":
                self.admin = dl.split_address(r["address"])
            elif r.get("msg") == "listening" and r.get("listener") == "app":
                self.app = dl.split_address(r["address"])
        print(f"cynic tour: the demo backend on {backend_addr}, behind cynic-harness proxy `backend` on "
              f"{self.endpoint}, behind cynic on {HOST}:{self.app[1]} (admin {HOST}:{self.admin[1]}).\n"
              f"cynic's config: first-byte timeout {fmt(FIRST_BYTE)}, breaker opens after {FAULTS} faults "
              f"and stays open {OPEN_FOR:g} s.", flush=True)

    def stop(self):
        """cynic (it drains), the harness, the backend; each must exit 0
        (under ASan a clean exit also means no leak)."""
        bad = []
        for c in reversed(self.children):
            rc = c.stop(20)
            if rc != 0:  # at the stop, or earlier by itself (a crash: its stderr says why)
                tail = c.log_tail()
                bad.append(f"{c.name} did not exit cleanly ({dl.describe_exit(rc)})" + (f":\n{tail}" if tail else ""))
        self.children = []
        return bad

    # ---- what the tour reads -------------------------------------------------

    def call(self):
        return dl.call(*self.app, timeout=CLIENT_TIMEOUT)

    def breaker(self):
        st, js = dl.api(*self.admin, "GET", "/breakers/backend")
        if st != 200:
            self.step.fail(f"GET /breakers/backend answered {st}: {js}")
        return js["endpoints"][0]["breaker"]

    def status(self):
        st, js = dl.api(*self.admin, "GET", "/status")
        if st != 200:
            self.step.fail(f"GET /status answered {st}")
        return js

    def counts(self):
        """(the endpoint's fault counts, the upstream's) from /status."""
        up = self.status()["upstreams"][0]
        return up["endpoints"][0].get("counts", {}), up.get("counts", {})

    # ---- the tour ------------------------------------------------------------

    def run(self):
        s = self.step
        s.start("Traffic flows.")
        times = []
        for i in range(CALLS_OK):
            out, dt, body = self.call()
            if out != "ok" or b"demo-backend" not in body:
                s.fail(f"call {i + 1} ended as {out!r} after {fmt(dt)} ({body[:100]!r}); expected the backend's JSON")
            times.append(dt)
        b = self.breaker()
        if b["state"] != "closed":
            s.fail(f"the breaker is {b['state']}, expected closed")
        s.say(f"{CALLS_OK} calls through cynic -> harness -> backend, all answered 200 with the backend's JSON "
              f"(median {fmt(statistics.median(times))}, worst {fmt(max(times))}).")
        s.say(f"Breaker of {self.endpoint}: {b['state']}, {b['successes']} successes (admin API, GET /breakers/backend).")
        healthy = statistics.median(times)

        s.start("The dependency starts hanging.")
        st, js = dl.api(*self.harness_api, "POST", "/proxies/backend/toxics",
                        {"name": "hang", "type": "timeout", "attributes": {"timeout": 0}})
        if st != 200:
            s.fail(f"the harness refused the toxic: {st} {js}")
        s.say("POST /proxies/backend/toxics {\"type\":\"timeout\",\"attributes\":{\"timeout\":0}} on the harness:")
        s.say("it now swallows every answer and never closes.")
        # without cynic: a client calling the harness proxy directly, with a
        # timeout of its own (one without would wait forever)
        out, dt, _ = dl.call(*dl.split_address(self.endpoint), timeout=DIRECT_TIMEOUT)
        if out != "hung":
            s.fail(f"a direct call to the dependency ended as {out!r} after {fmt(dt)}; expected it to hang")
        s.say(f"Without cynic: a client calling it directly got nothing and gave up after its own "
              f"{fmt(dt)} timeout; with no timeout of its own it would still be waiting.")

        s.start("The timeout fires.")
        timed = []
        for i in range(FAULTS):
            out, dt, body = self.call()
            if out != "closed" or not (FIRST_BYTE - 0.05 <= dt <= FIRST_BYTE + self.late):
                s.fail(f"call {i + 1} ended as {out!r} after {fmt(dt)}; expected cynic to close it after its "
                       f"{fmt(FIRST_BYTE)} first-byte timeout")
            timed.append(dt)
            s.say(f"call {i + 1}: no answer; cynic's first-byte timeout closed it after {fmt(dt)}.")
        ep, _ = self.counts()
        if ep.get("first_byte_timeout") != FAULTS:
            s.fail(f"cynic counted {ep} on the endpoint; expected first_byte_timeout: {FAULTS}")
        s.say(f"cynic counted {FAULTS} first_byte_timeout faults against {self.endpoint} (GET /status).")

        s.start("The breaker opens.")
        try:
            b = dl.wait_until(lambda: (lambda b: b if b["state"] != "closed" else None)(self.breaker()), 5,
                              "the breaker to leave closed")
        except dl.DemoError as e:
            s.fail(str(e))
        if b["state"] != "open" or b["reason"] != "fault_threshold" or b["failures"] != FAULTS:
            s.fail(f"the breaker is {b['state']} ({b['reason']}, {b['failures']} failures); expected open "
                   f"(fault_threshold) after {FAULTS} failures")
        s.say(f"After {FAULTS} faults (breaker.faults: {FAULTS}) the admin API shows the breaker {b['state']} "
              f"(reason {b['reason']}); next probe in {b['next_probe_s']:.2f} s.")

        s.start("Calls fail fast: microseconds, not the timeout.")
        fast = []
        for i in range(CALLS_FAST):
            n = FAULTS + i + 1
            out, dt, body = self.call()
            if out != "closed" or dt >= self.fast:
                s.fail(f"call {n} ended as {out!r} after {fmt(dt)}; expected cynic to close it at once "
                       f"(under {fmt(self.fast)}) while the breaker is open")
            fast.append(dt)
            s.say(f"call {n} failed in {fmt(dt)} (breaker open) - the hung dependency would have cost "
                  f"{fmt(statistics.median(timed))}.")
        b = self.breaker()
        _, up = self.counts()
        if b["state"] != "open" or up.get("breaker_open") != CALLS_FAST:
            s.fail(f"after the fail-fast calls the breaker is {b['state']} and the upstream counts {up}; "
                   f"expected open and breaker_open: {CALLS_FAST}")
        med_fast, med_timed = statistics.median(fast), statistics.median(timed)
        s.say(f"median {fmt(med_fast)} against {fmt(med_timed)} for a timed-out call: {med_timed / med_fast:,.0f} "
              f"times less; cynic counted {up['breaker_open']} breaker_open rejections.")

        s.start("The dependency recovers.")
        st, _ = dl.api(*self.harness_api, "DELETE", "/proxies/backend/toxics/hang")
        if st != 204:
            s.fail(f"the harness answered {st} to removing the toxic")
        t_fixed = time.monotonic()
        s.say("DELETE /proxies/backend/toxics/hang on the harness: the backend answers again.")
        b = self.breaker()
        if b["state"] != "open":
            s.fail(f"the breaker is {b['state']} before its open interval passed; expected open")
        if b["next_probe_s"] > 1.0:
            out, dt, _ = self.call()
            if out != "closed" or dt >= self.fast:
                s.fail(f"a call ended as {out!r} after {fmt(dt)} while the breaker was still open")
            fast.append(dt)
            s.say(f"cynic does not know yet: a call now still fails fast ({fmt(dt)}); the breaker waits out "
                  f"its open interval ({b['next_probe_s']:.2f} s left) before it risks a call.")

        s.start("The half-open probe closes the breaker.")
        try:
            dl.wait_until(lambda: self.breaker()["next_probe_s"] == 0, OPEN_FOR + (20 if self.slow else 10),
                          "the open interval to pass")
        except dl.DemoError as e:
            s.fail(str(e))
        out, dt, body = self.call()
        if out != "ok":
            s.fail(f"the probe call ended as {out!r} after {fmt(dt)}; expected the backend's answer")
        b = self.breaker()
        if b["state"] != "closed" or b["reason"] != "probes_succeeded":
            s.fail(f"after the probe the breaker is {b['state']} ({b['reason']}); expected closed (probes_succeeded)")
        trans = [(t["from"], t["to"], t["reason"]) for t in reversed(self.status()["transitions"])]
        want = [("closed", "open", "fault_threshold"), ("open", "half_open", "open_elapsed"),
                ("half_open", "closed", "probes_succeeded")]
        if trans != want:
            s.fail(f"the breaker's transitions are {trans}; expected {want}")
        try:
            served = json.loads(body)["request"]
        except (ValueError, KeyError, TypeError):
            s.fail(f"the probe's answer is not the backend's JSON: {body[:100]!r}")
        # the backend numbers the requests it received: the first calls, the
        # hung ones (their answers were swallowed on the way back), the probe
        if served != CALLS_OK + 1 + FAULTS + 1:
            s.fail(f"the probe was the backend's request {served}, expected {CALLS_OK + 1 + FAULTS + 1}: "
                   f"calls rejected by the open breaker must never reach it")
        s.say(f"The open interval over ({OPEN_FOR:g} s), the next call went through as the probe and was "
              f"answered in {fmt(dt)}; the breaker closed (reason {b['reason']}).")
        s.say(f"The probe was the backend's request #{served}: {CALLS_OK} before the fault, the direct one and "
              f"{FAULTS} through cynic while it hung, then this one; the calls the open breaker turned away "
              f"never reached it.")
        s.say("Transitions (GET /status): " + " -> ".join([want[0][0]] + [f"{t[1]} ({t[2]})" for t in trans]) + ".")
        after = []
        for i in range(CALLS_OK):
            out, dt, body = self.call()
            if out != "ok":
                s.fail(f"call {i + 1} after recovery ended as {out!r} after {fmt(dt)}")
            after.append(dt)
        s.say(f"{CALLS_OK} more calls, all answered (median {fmt(statistics.median(after))}, "
              f"as before the fault: {fmt(healthy)}).")

        print(f"\nIn short: while the dependency hung, {FAULTS} callers through cynic waited {fmt(med_timed)} "
              f"(its first-byte timeout), {len(fast)} were turned away at once (median {fmt(med_fast)}, the "
              f"open breaker), none hung; {time.monotonic() - t_fixed:.1f} s after it recovered, one probe "
              f"closed the breaker and traffic flowed again.", flush=True)


def main():
    ap = argparse.ArgumentParser(description="make demo: a narrated tour of cynic's stability patterns")
    ap.add_argument("--build", default=os.path.join(dl.ROOT, "build"), help="the build directory (default build)")
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    for b in ("cynic", "cynic-harness"):
        if not os.access(os.path.join(build, b), os.X_OK):
            print(f"demo: {os.path.join(build, b)} is not built; run `make build` first", file=sys.stderr)
            return 1

    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cynic-demo-") as tmp:
        tour = Tour(build, tmp)
        status = 0
        try:
            tour.start()
            tour.run()
        except dl.DemoError as e:
            print(f"\ndemo: {e}", file=sys.stderr, flush=True)
            tail = "\n".join(f"   {r}" for r in open(tour.cynic_log).read().splitlines()[-15:]) \
                if getattr(tour, "cynic_log", None) and os.path.exists(tour.cynic_log) else ""
            if tail:
                print(f"demo: cynic's log ends with:\n{tail}", file=sys.stderr)
            status = 1
        except KeyboardInterrupt:
            print("\ndemo: interrupted", file=sys.stderr)
            status = 130
        finally:
            bad = tour.stop()
        for b in bad:
            print(f"demo: {b}", file=sys.stderr)
            status = status or 1
    if status == 0:
        print(f"\nTour done in {time.monotonic() - t0:.1f} s; cynic, cynic-harness and the backend exited cleanly.")
    return status


if __name__ == "__main__":
    sys.exit(main())
