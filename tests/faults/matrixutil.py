"""What the two fault matrices (test_fault_matrix_tcp.py, _http.py) share:
the margins their bounds allow, the monitor of the healthy upstream, the
rig's toxics, breaker transitions and leak check, and the rows each run
records, writes as JSON and compares with docs/faults.md."""
import datetime
import importlib.util
import json
import os
import threading
import time

import pytest

import proxyutil as pu

SLOW = pu.sanitized()
# Bounds sit against the configured timeouts, not against how fast the
# (shared, 2-core, ctest -j2) machine is.
MARGIN = 1.5 if SLOW else 0.5          # s a caller may wait past a configured bound
RSS_MARGIN_KB = 65536 if SLOW else 8192  # buffer pools keep up to 4 MB per listener

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def log_time(rec):
    return datetime.datetime.strptime(rec["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def ms(s):
    return None if s is None else round(s * 1000)


class Monitor(threading.Thread):
    """Calls the healthy upstream every 20 ms until stopped: probe() returns
    (outcome, seconds); every outcome must be `ok`, none slower than
    `worst_bound`."""

    def __init__(self, probe, ok, worst_bound):
        super().__init__(daemon=True)
        self.probe, self.ok, self.worst_bound = probe, ok, worst_bound
        self.samples, self.halt = [], threading.Event()

    def run(self):
        while not self.halt.is_set():
            self.samples.append(self.probe())
            self.halt.wait(0.02)

    def finish(self):
        self.halt.set()
        self.join(10)
        assert self.samples, "the healthy upstream was never called"
        bad = [s for s in self.samples if s[0] != self.ok]
        worst = max(dt for _, dt in self.samples)
        assert not bad, f"healthy upstream failed during the fault: {bad[:5]}"
        assert worst < self.worst_bound, f"healthy upstream's worst call {worst:.3f}s"
        return worst


class RigBase:
    """A matrix's rig once its subclass has set harness (with proxy `dep`),
    px (cynic), dep (the endpoint whose breaker the rows watch) and started
    watching (watch())."""

    def watch(self, monitor):
        """Takes the baseline the leak check compares with, then starts the
        monitor of the healthy upstream."""
        self.base_fds = fds(self.px.pid)
        self.base_rss = pu.rss_kb(self.px.pid)
        self.monitor = monitor
        self.monitor.start()
        self.injected = self.cleared = None

    def toxic(self, type_, stream="downstream", **attributes):
        name = f"{type_}_{stream}"
        self.harness.add_toxic("dep", name=name, type=type_, stream=stream, toxicity=1.0,
                               attributes=attributes)
        self.injected = time.time()
        return name

    def clear(self, name):
        st, _, raw = self.harness.api.delete(f"/proxies/dep/toxics/{name}")
        assert st == 204, raw
        self.cleared = time.time()

    def transitions(self):
        return [(r["from"], r["to"], r["reason"], log_time(r))
                for r in self.px.logs(msg="breaker transition", endpoint=self.dep)]

    def wait_closed(self, whole, open_for):
        """Waits, calling whole() (one call that got a whole answer of the
        upstream's) every 50 ms, until one does and the breaker has closed:
        open_for for the probe's turn, then room for a loaded machine."""
        pu.wait_for(lambda: whole() and any(t[1] == "closed" for t in self.transitions()),
                    timeout=open_for + (20 if SLOW else 8), interval=0.05, what="the breaker to close")

    def finish(self):
        """Healthy upstream unharmed, no leak; returns (healthy worst, rss delta)."""
        worst = self.monitor.finish()
        pu.wait_for(lambda: fds(self.px.pid) <= self.base_fds, timeout=10,
                    what=f"cynic's descriptors back to {self.base_fds} (now {fds(self.px.pid)})")
        rss = pu.rss_kb(self.px.pid) - self.base_rss
        assert rss < RSS_MARGIN_KB, f"RSS grew {rss} KB over the fault"
        return worst, rss


def _doc_module():
    spec = importlib.util.spec_from_file_location("faults_doc", os.path.join(ROOT, "scripts", "faults-doc.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Results:
    """The rows one matrix ("tcp" or "http") observed, by id."""

    def __init__(self, mode):
        self.mode, self.rows = mode, {}

    def record(self, row, **fields):
        self.rows[row["id"]] = {**row, **fields}

    def data(self):
        return {"mode": self.mode, "sanitized": SLOW, "rows": [self.rows[k] for k in sorted(self.rows)]}

    def write(self):
        """To $CYNIC_FAULTS_OUT, default BUILD/faults/<mode>.json (make faults-doc renders it)."""
        out = os.environ.get("CYNIC_FAULTS_OUT") or os.path.join(pu.BUILD, "faults", self.mode + ".json")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with open(out, "w") as f:
            json.dump(self.data(), f, indent=1)

    def check_doc(self, expected_rows):
        """docs/faults.md's part for this mode shows what this run observed
        (timings aside); skipped unless all `expected_rows` rows ran."""
        if len(self.rows) != expected_rows:
            pytest.skip(f"{len(self.rows)} of {expected_rows} rows ran")
        doc = _doc_module()
        fresh = (doc.render if self.mode == "tcp" else doc.render_http)(self.data())
        with open(os.path.join(ROOT, "docs", "faults.md")) as f:
            committed = f.read()
        assert doc.stable(committed, self.mode) == doc.stable(fresh, self.mode), (
            f"docs/faults.md no longer matches what the {self.mode.upper()} fault matrix observes: "
            "run `make faults-doc`")
