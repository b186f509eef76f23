// Drives cynic-harness through toxiproxy-node-client@4.1.0: every API call the
// client makes, every toxic type created and echoed back, populate, reset,
// disable/re-enable on the same port, and the 404/409 paths.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import net from "node:net";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { Toxiproxy, ToxiproxyError } = require("toxiproxy-node-client");

let harness;
let toxiproxy;
let echo;
let echoAddr;

function startHarness() {
  return new Promise((resolve, reject) => {
    const bin = process.env.CYNIC_HARNESS;
    assert.ok(bin, "CYNIC_HARNESS must name the cynic-harness binary");
    const child = spawn(bin, ["-host", "127.0.0.1", "-port", "0", "-seed", "1"], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let buf = "";
    const timer = setTimeout(() => reject(new Error("harness did not start: " + buf)), 15000);
    child.stderr.on("data", (d) => {
      buf += d.toString();
      for (const line of buf.split("\n")) {
        try {
          const rec = JSON.parse(line);
          if (rec.msg === "API listening") {
            clearTimeout(timer);
            resolve({ child, address: rec.address, log: () => buf });
            return;
          }
        } catch {
          // partial line
        }
      }
    });
    child.on("exit", (code) => reject(new Error(`harness exited ${code}: ${buf}`)));
  });
}

function roundTrip(port, payload) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1");
    let got = "";
    s.setTimeout(10000, () => reject(new Error("timeout")));
    s.on("connect", () => s.end(payload));
    s.on("data", (d) => (got += d.toString()));
    s.on("end", () => resolve(got));
    s.on("error", reject);
  });
}

function connectRefused(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.on("connect", () => {
      s.destroy();
      resolve(false);
    });
    s.on("error", (e) => resolve(e.code === "ECONNREFUSED"));
  });
}

const portOf = (listen) => Number(listen.slice(listen.lastIndexOf(":") + 1));

async function rejectsWithStatus(promise, status) {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof ToxiproxyError, String(err));
    assert.match(err.message, new RegExp(`status code ${status}`));
    return true;
  });
}

before(async () => {
  harness = await startHarness();
  toxiproxy = new Toxiproxy(`http://${harness.address}`);
  echo = net.createServer((s) => s.pipe(s));
  await new Promise((r) => echo.listen(0, "127.0.0.1", r));
  echoAddr = `127.0.0.1:${echo.address().port}`;
});

after(async () => {
  echo.close();
  const exited = new Promise((r) => harness.child.on("exit", (code) => r(code)));
  harness.child.kill("SIGTERM");
  const code = await exited;
  assert.equal(code, 0, harness.log());
});

test("getVersion returns the Toxiproxy version document", async () => {
  const text = await toxiproxy.getVersion();
  assert.match(JSON.parse(text).version, /^2\.12\.0/);
});

test("createProxy, get, getAll, update, remove", async () => {
  const proxy = await toxiproxy.createProxy({ name: "crud", listen: "localhost:0", upstream: echoAddr });
  assert.equal(proxy.name, "crud");
  assert.equal(proxy.enabled, true);
  assert.match(proxy.listen, /^127\.0\.0\.1:\d+$/);
  assert.notEqual(portOf(proxy.listen), 0);
  assert.equal(await roundTrip(portOf(proxy.listen), "hello"), "hello");

  const got = await toxiproxy.get("crud");
  assert.deepEqual(got.toJson(), proxy.toJson());
  const all = await toxiproxy.getAll();
  assert.deepEqual(Object.keys(all), ["crud"]);
  assert.deepEqual(all.crud.toJson(), proxy.toJson());

  // Disable, then re-enable on the same port.
  const disabled = await proxy.update({ ...proxy.toJson(), enabled: false });
  assert.equal(disabled.enabled, false);
  assert.ok(await connectRefused(portOf(proxy.listen)));
  const enabled = await proxy.update({ ...proxy.toJson(), enabled: true });
  assert.equal(enabled.enabled, true);
  assert.equal(enabled.listen, proxy.listen);
  assert.equal(await roundTrip(portOf(proxy.listen), "again"), "again");

  await proxy.remove();
  await rejectsWithStatus(toxiproxy.get("crud"), 404);
  await rejectsWithStatus(proxy.remove(), 404);
});

test("409 on a duplicate proxy", async () => {
  const body = { name: "dup", listen: "localhost:0", upstream: echoAddr };
  const proxy = await toxiproxy.createProxy(body);
  await rejectsWithStatus(toxiproxy.createProxy(body), 409);
  await proxy.remove();
});

test("every toxic type is created and echoed back", async () => {
  const proxy = await toxiproxy.createProxy({ name: "types", listen: "localhost:0", upstream: echoAddr });
  const cases = [
    ["latency", "downstream", { latency: 100, jitter: 10 }],
    ["bandwidth", "upstream", { rate: 1000 }],
    ["slow_close", "downstream", { delay: 50 }],
    ["timeout", "upstream", { timeout: 1000 }],
    ["slicer", "downstream", { average_size: 64, size_variation: 32, delay: 10 }],
    ["limit_data", "upstream", { bytes: 4096 }],
    ["reset_peer", "downstream", { timeout: 500 }],
  ];
  for (const [type, stream, attributes] of cases) {
    const toxic = await proxy.addToxic({ name: `${type}_t`, type, stream, toxicity: 0.5, attributes });
    assert.deepEqual(toxic.toJson(), { attributes, name: `${type}_t`, stream, toxicity: 0.5, type });
    const fetched = await proxy.getToxic(`${type}_t`);
    assert.deepEqual(fetched.toJson(), toxic.toJson());
  }
  const listed = await toxiproxy.get("types");
  assert.equal(listed.name, "types");
  await proxy.remove();
});

// Values Toxiproxy 2.12 accepts unchecked, as suites written for it use them
// (toxiproxy-node-client's own test adds this slicer); issue 10.
test("attribute values Toxiproxy accepts are accepted, and data still flows", async () => {
  const proxy = await toxiproxy.createProxy({ name: "edges", listen: "localhost:0", upstream: echoAddr });
  const cases = [
    ["slicer", "downstream", { average_size: 1000, size_variation: 1000, delay: 1000 }, 1],
    ["slicer", "upstream", { average_size: 0, size_variation: 0, delay: 0 }, 1],
    ["latency", "downstream", { latency: -5, jitter: -1 }, 1],
    ["bandwidth", "upstream", { rate: 0 }, 1],
    ["noop", "downstream", {}, 2],
    ["timeout", "upstream", { timeout: -1 }, -1],
  ];
  for (const [type, stream, attributes, toxicity] of cases) {
    const toxic = await proxy.addToxic({ name: `${type}_${stream}`, type, stream, toxicity, attributes });
    assert.deepEqual(toxic.toJson(), { attributes, name: `${type}_${stream}`, stream, toxicity, type });
  }
  assert.equal(await roundTrip(portOf(proxy.listen), "sliced but whole"), "sliced but whole");
  await proxy.remove();
});

test("cynic's extra toxic types go through the client too", async () => {
  const proxy = await toxiproxy.createProxy({ name: "extras", listen: "localhost:0", upstream: echoAddr });
  const cases = [
    ["blackhole", "upstream", {}],
    ["accept_delay", "downstream", { delay: 10 }],
    ["garbage", "downstream", { bytes: 100 }],
    ["flood", "downstream", { bytes: 0 }],
    ["reset_after_bytes", "downstream", { bytes: 10 }],
    ["http_latency", "upstream", { latency: 5, jitter: 1 }],
    ["http_status", "downstream", { status: 503, percent: 50, body: "busy", content_type: "text/plain" }],
    ["http_drop_first_n", "upstream", { n: 2, status: 429 }],
    ["http_content_type", "downstream", { content_type: "text/html" }],
    ["refuse", "downstream", {}],
  ];
  for (const [type, stream, attributes] of cases) {
    const toxic = await proxy.addToxic({ name: `${type}_x`, type, stream, toxicity: 1, attributes });
    assert.deepEqual(toxic.toJson(), { attributes, name: `${type}_x`, stream, toxicity: 1, type });
  }
  assert.ok(await connectRefused(portOf(proxy.listen)));
  await toxiproxy.reset();
  assert.equal(await roundTrip(portOf(proxy.listen), "back"), "back");
  await proxy.remove();
});

test("toxic update, remove, 404 and 409", async () => {
  const proxy = await toxiproxy.createProxy({ name: "tox", listen: "localhost:0", upstream: echoAddr });
  const toxic = await proxy.addToxic({ name: "lat", type: "latency", stream: "downstream", toxicity: 1, attributes: { latency: 10 } });
  await rejectsWithStatus(
    proxy.addToxic({ name: "lat", type: "latency", stream: "downstream", toxicity: 1, attributes: { latency: 10 } }),
    409,
  );
  const updated = await toxic.update({ attributes: { latency: 20, jitter: 0 }, toxicity: 0.75 });
  assert.deepEqual(updated.attributes, { latency: 20, jitter: 0 });
  assert.equal(updated.toxicity, 0.75);
  await toxic.remove();
  await rejectsWithStatus(proxy.getToxic("lat"), 404);
  await rejectsWithStatus(toxic.remove(), 404);
  await rejectsWithStatus(proxy.addToxic({ name: "bad", type: "nope", stream: "downstream", toxicity: 1, attributes: {} }), 400);
  await proxy.remove();
});

test("a latency toxic added through the client slows real traffic", async () => {
  const proxy = await toxiproxy.createProxy({ name: "slow", listen: "localhost:0", upstream: echoAddr });
  await proxy.addToxic({ name: "l", type: "latency", stream: "downstream", toxicity: 1, attributes: { latency: 300 } });
  const t0 = Date.now();
  assert.equal(await roundTrip(portOf(proxy.listen), "x"), "x");
  assert.ok(Date.now() - t0 >= 300);
  await proxy.remove();
});

test("populate and reset", async () => {
  const proxies = await toxiproxy.populate([
    { name: "pop1", listen: "localhost:0", upstream: echoAddr },
    { name: "pop2", listen: "localhost:0", upstream: echoAddr, enabled: false },
  ]);
  assert.deepEqual(Object.keys(proxies).sort(), ["pop1", "pop2"]);
  assert.equal(proxies.pop2.enabled, false);
  await proxies.pop1.addToxic({ name: "t", type: "timeout", stream: "downstream", toxicity: 1, attributes: { timeout: 0 } });

  await toxiproxy.reset();
  const all = await toxiproxy.getAll();
  assert.equal(all.pop2.enabled, true);
  await rejectsWithStatus(all.pop1.getToxic("t"), 404);
  assert.equal(await roundTrip(portOf(all.pop1.listen), "ok"), "ok");
  await all.pop1.remove();
  await all.pop2.remove();
});
