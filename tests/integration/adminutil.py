"""Helpers for the admin listener's black-box tests: find the admin address in
cynic's log, a small HTTP client, and a parser of the Prometheus text
exposition format (0.0.4) strict enough to catch malformed output."""
import http.client
import json
import math
import re

import proxyutil as pu


class Admin:
    """HTTP client of a running cynic's admin listener."""

    def __init__(self, px, token=None, timeout=10.0):
        rec = px.wait_log(lambda r: r.get("msg") == "admin listening", what="admin listening")
        host, port = rec["address"].rsplit(":", 1)
        self.host, self.port = host.strip("[]"), int(port)
        self.token = token
        self.timeout = timeout

    def request(self, method, path, body=None, raw=None, headers=None, token=None):
        """Returns (status, headers dict (lower-case names), parsed JSON or None, raw bytes).
        One connection per request: tests also look at Connection handling."""
        hdrs = dict(headers or {})
        tok = token if token is not None else self.token
        if tok:
            hdrs["Authorization"] = f"Bearer {tok}"
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            payload = resp.read()
            rh = {k.lower(): v for k, v in resp.getheaders()}
        finally:
            conn.close()
        parsed = None
        if rh.get("content-type", "").startswith("application/json"):
            parsed = json.loads(payload)
        return resp.status, rh, parsed, payload

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    def status(self):
        st, _, js, _ = self.get("/status")
        assert st == 200, st
        return js

    def breaker(self, upstream, endpoint):
        for u in self.status()["upstreams"]:
            if u["name"] == upstream:
                for e in u["endpoints"]:
                    if e["name"] == endpoint:
                        return e["breaker"]
        raise AssertionError(f"no endpoint {upstream}/{endpoint}")

    def bulkhead(self, upstream):
        """The upstream's bulkhead in /status: in_use, pending and the counts."""
        for u in self.status()["upstreams"]:
            if u["name"] == upstream:
                return u["bulkhead"]
        raise AssertionError(f"no upstream {upstream}")

    def metrics(self):
        st, h, _, raw = self.get("/metrics")
        assert st == 200, st
        assert h["content-type"].startswith("text/plain; version=0.0.4"), h["content-type"]
        return parse_prometheus(raw.decode())


_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"^({_NAME})(?:\{{(.*)\}})? (\S+)$")
_LABEL = re.compile(rf'\s*({_NAME})="((?:[^"\\]|\\.)*)"\s*(,|$)')


class Metrics:
    def __init__(self):
        self.types = {}    # family -> counter | gauge | histogram
        self.help = {}     # family -> text
        self.samples = []  # (name, labels dict, value)

    def get(self, name, **labels):
        """The one sample called `name` whose labels include `labels`."""
        found = [v for n, lab, v in self.samples
                 if n == name and all(lab.get(k) == str(w) for k, w in labels.items())]
        assert len(found) == 1, f"{name}{labels}: {len(found)} samples"
        return found[0]

    def all(self, name, **labels):
        return [(lab, v) for n, lab, v in self.samples
                if n == name and all(lab.get(k) == str(w) for k, w in labels.items())]


def _family(name, types):
    if name in types:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and types.get(name[: -len(suffix)]) == "histogram":
            return name[: -len(suffix)]
    return None


def parse_prometheus(text):
    """Parses the text format; asserts on anything malformed: a sample before
    its TYPE, a family declared twice, bad label syntax, a non-number."""
    m = Metrics()
    assert text.endswith("\n"), "exposition must end with a newline"
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# HELP "):
            name, _, doc = line[7:].partition(" ")
            assert re.fullmatch(_NAME, name) and name not in m.help, line
            m.help[name] = doc
            continue
        if line.startswith("# TYPE "):
            name, _, typ = line[7:].partition(" ")
            assert typ in ("counter", "gauge", "histogram", "summary", "untyped"), line
            assert name not in m.types, f"TYPE twice: {line}"
            m.types[name] = typ
            continue
        assert not line.startswith("#"), line
        s = _SAMPLE.match(line)
        assert s, f"bad sample line: {line!r}"
        name, labeltext, value = s.group(1), s.group(2) or "", s.group(3)
        fam = _family(name, m.types)
        assert fam is not None, f"sample before its TYPE: {line}"
        labels = {}
        pos = 0
        while pos < len(labeltext):
            lm = _LABEL.match(labeltext, pos)
            assert lm, f"bad labels: {line!r}"
            labels[lm.group(1)] = re.sub(r"\\(.)", lambda x: {"n": "\n"}.get(x.group(1), x.group(1)), lm.group(2))
            pos = lm.end()
        v = float(value)  # accepts +Inf, NaN
        assert not math.isnan(v), line
        m.samples.append((name, labels, v))
    return m


def check_conventions(m):
    """Prometheus naming conventions: cynic_ prefix, counters end in _total,
    histograms have cumulative buckets ending at +Inf equal to _count, every
    family has HELP and TYPE."""
    for fam, typ in m.types.items():
        assert fam.startswith("cynic_"), fam
        assert fam in m.help and m.help[fam], f"no HELP for {fam}"
        if typ == "counter":
            assert fam.endswith("_total"), fam
        else:
            assert not fam.endswith("_total"), fam
        if typ == "histogram":
            assert fam.endswith("_seconds"), fam
            series = {}
            for n, lab, v in m.samples:
                if n == fam + "_bucket":
                    key = tuple(sorted((k, w) for k, w in lab.items() if k != "le"))
                    series.setdefault(key, []).append((lab["le"], v))
            assert series, f"{fam} has no buckets"
            for key, buckets in series.items():
                les = [float(le) for le, _ in buckets]
                assert les == sorted(les) and les[-1] == math.inf, (fam, les)
                vals = [v for _, v in buckets]
                assert vals == sorted(vals), f"{fam}{key} buckets not cumulative"
                lab = dict(key)
                assert m.get(fam + "_count", **lab) == vals[-1]
    for n, lab, v in m.samples:
        fam = _family(n, m.types)
        if m.types[fam] == "counter":
            assert v >= 0, (n, lab, v)


def token_config(path):
    return f"  token_file: {path}\n"
