// The admin listener's status page in headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core): load the page, watch the tile
// of an upstream turn red when its only endpoint refuses connections and its
// breaker opens, click Reset, watch it turn green; save a screenshot. The
// page follows GET /status/stream (server-sent events) and shows "live"; while
// it is live it does not poll /status.
//
// Env: CYNIC (the cynic binary), CYNIC_SCREENSHOT (where to write the PNG;
// default: the build directory beside the binary), CHROMIUM (default
// /usr/bin/chromium).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import net from "node:net";
import path from "node:path";
import { chromium } from "playwright-core";

const CYNIC = process.env.CYNIC;
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
assert.ok(CYNIC, "set CYNIC to the cynic binary");
const SHOT = process.env.CYNIC_SCREENSHOT || path.join(path.dirname(CYNIC), "status-page.png");

function echoServer() {
  return new Promise((resolve) => {
    const srv = net.createServer((c) => { c.on("error", () => {}); c.pipe(c); });
    srv.listen(0, "127.0.0.1", () => resolve(srv));
  });
}

// A port that refuses: bind a server, note its port, close it.
async function refusedPort() {
  const srv = await echoServer();
  const port = srv.address().port;
  await new Promise((r) => srv.close(r));
  return port;
}

// cynic from its listeners and upstreams sections, with an admin listener
// and its logs on stderr (read into `records`).
function startCynic(sections) {
  const dir = mkdtempSync(path.join(tmpdir(), "cynic-ui-"));
  const file = path.join(dir, "cynic.yaml");
  writeFileSync(file, `admin:
  listen: 127.0.0.1:0
log:
  file: "-"
${sections}`);
  const proc = spawn(CYNIC, ["-c", file], { stdio: ["ignore", "ignore", "pipe"] });
  const records = [];
  let buf = "";
  proc.stderr.on("data", (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      try { records.push(JSON.parse(line)); } catch { records.push({ msg: "<not json>", line }); }
    }
  });
  const waitLog = async (pred, ms = 10000) => {
    const end = Date.now() + ms;
    for (;;) {
      const r = records.find(pred);
      if (r) return r;
      if (proc.exitCode !== null) throw new Error("cynic exited: " + JSON.stringify(records.slice(-5)));
      if (Date.now() > end) throw new Error("timed out waiting for a log line");
      await new Promise((res) => setTimeout(res, 20));
    }
  };
  const stop = () => new Promise((resolve) => {
    const done = (code) => { rmSync(dir, { recursive: true, force: true }); resolve(code); };
    if (proc.exitCode !== null) return done(proc.exitCode);
    proc.on("exit", done);
    proc.kill("SIGTERM");
  });
  return { proc, records, waitLog, stop };
}

// Waits until cynic's log says `ready` (default: "started"): its admin
// address and port(listener), the port a listener is bound to.
async function started(cy, ready = (r) => r.msg === "started") {
  const admin = (await cy.waitLog((r) => r.msg === "admin listening")).address;
  await cy.waitLog(ready);
  const port = (name) => Number(cy.records.find((r) => r.msg === "listening" && r.listener === name)
    .address.split(":").pop());
  return { admin, port };
}

// Headless Chromium with a fresh profile (playwright passes it as
// --user-data-dir); options add to the defaults (`args` too). closeBrowser()
// removes the profile as well: each one is a few MB left in the temp dir.
const BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"];
async function launchBrowser(options = {}) {
  const profile = mkdtempSync(path.join(tmpdir(), "cynic-chromium-"));
  try {
    const browser = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      ...options,
      args: [...BROWSER_ARGS, ...(options.args || [])],
    });
    browser.profile = profile;
    return browser;
  } catch (e) {
    rmSync(profile, { recursive: true, force: true });
    throw e;
  }
}

async function closeBrowser(browser) {
  if (!browser) return;
  await browser.close();
  rmSync(browser.profile, { recursive: true, force: true });
}

// The border colour of an upstream's tile, read in one step in the page (the
// tiles are rebuilt on every update: a handle taken earlier may be detached).
function tileColour(page, upstream) {
  return page.evaluate((u) => {
    const e = document.querySelector(`section.tile[data-upstream="${u}"]`);
    return e ? getComputedStyle(e).borderTopColor : null;
  }, upstream);
}

// One client through the proxy: resolves true when the echo came back.
function exchange(port, payload = "hello") {
  return new Promise((resolve) => {
    const c = net.connect(port, "127.0.0.1");
    let got = "";
    c.on("connect", () => c.end(payload));
    c.on("data", (d) => { got += d; });
    c.on("close", () => resolve(got === payload));
    c.on("error", () => resolve(false));
    c.setTimeout(5000, () => c.destroy());
  });
}

test("a tile turns red when its upstream fails, and green after Reset", async () => {
  const echo = await echoServer();
  const refused = await refusedPort();
  const cy = startCynic(`listeners:
  - name: web
    listen: 127.0.0.1:0
    upstream: api
  - name: pay
    listen: 127.0.0.1:0
    upstream: payments
upstreams:
  - name: api
    endpoints: [127.0.0.1:${echo.address().port}]
  - name: payments
    endpoints: [127.0.0.1:${refused}]
    required: true
    breaker: { faults: 3, leak: 60s, open_for: 60s }
`);
  let browser;
  try {
    const { admin, port } = await started(cy);
    browser = await launchBrowser({
      viewport: { width: 1100, height: 390 },
      args: ["--disable-quic", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    const page = await browser.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    const paths = [];
    page.on("request", (r) => paths.push(new URL(r.url()).pathname));
    // the `status` events the page receives on its stream (seen by the browser's
    // network layer: the page shows none of them while a button is held)
    let statusEvents = 0;
    const cdp = await browser.newCDPSession(page);
    cdp.on("Network.eventSourceMessageReceived", (e) => { if (e.eventName === "status") statusEvents++; });
    await cdp.send("Network.enable");
    await page.goto(`http://${admin}/`);
    const tile = page.locator('section.tile[data-upstream="payments"]');
    await tile.waitFor({ timeout: 10000 });
    // the page switches to the event stream
    await page.waitForSelector("#live.live", { timeout: 10000 });
    assert.equal(await page.locator("#live").textContent(), "live");
    assert.ok(paths.includes("/status/stream"), "the page asked for /status/stream");
    const liveFrom = paths.length;
    assert.equal(await tile.getAttribute("data-state"), "ok");
    assert.equal(await page.locator("#ready").textContent(), "ready");

    // some traffic for the sparklines, then the payments endpoint refuses
    for (let i = 0; i < 20; i++) assert.ok(await exchange(port("web")));
    for (let i = 0; i < 3; i++) assert.equal(await exchange(port("pay")), false);
    await page.waitForSelector('section.tile[data-upstream="payments"][data-state="open"]', { timeout: 10000 });
    assert.equal(await tileColour(page, "payments"), "rgb(208, 49, 45)"); // --open
    assert.match(await tile.locator("tr[data-state=open]").textContent(), /probe in/);
    assert.match(await tile.locator(".transitions").textContent(), /closed → open \(fault_threshold\)/);
    await page.waitForFunction(() => document.querySelector("#ready").textContent.startsWith("not ready"));
    assert.equal(await page.locator('section.tile[data-upstream="api"]').getAttribute("data-state"), "ok");
    // a few more seconds of traffic, so the sparklines have something to show
    for (let sec = 0; sec < 4; sec++) {
      const n = 10 + 8 * sec;
      for (let i = 0; i < n; i++) assert.ok(await exchange(port("web")));
      await page.waitForTimeout(700);
    }
    await page.waitForTimeout(1100);
    await page.screenshot({ path: SHOT });

    // the operator resets it from the page, with a reason
    await page.fill("#reason", "endpoint restarted");
    await tile.locator('button[data-action="reset"]').click();
    await page.waitForSelector('section.tile[data-upstream="payments"][data-state="ok"]', { timeout: 10000 });
    assert.equal(await tileColour(page, "payments"), "rgb(31, 157, 85)"); // --ok
    const rec = await cy.waitLog((r) => r.msg === "breaker changed by an operator");
    assert.equal(rec.action, "reset");
    assert.equal(rec.upstream, "payments");
    assert.equal(rec.reason, "endpoint restarted");
    await page.waitForFunction(() => /manual_reset, by 127\.0\.0\.1:\d+: endpoint restarted/.test(
      document.querySelector('section.tile[data-upstream="payments"] .transitions').textContent));

    // a button held down across several updates is not rebuilt under the
    // pointer: the click on release is not lost (force closed on api)
    const FC = 'section.tile[data-upstream="api"] button[data-action="force_closed"]';
    let held = false;
    for (let i = 0; i < 10 && !held; i++) { // an update may move the layout between aim and press
      const box = await page.locator(FC).boundingBox();
      if (box === null) continue; // rebuilt by an update between locating and measuring: aim again
      await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
      await page.mouse.down();
      held = await page.evaluate((sel) => {
        const b = document.querySelector(sel);
        return b !== null && b.matches(":active") && (b.heldByTest = true);
      }, FC);
      if (!held) { await page.mouse.move(0, 0); await page.mouse.up(); } // released elsewhere: no click
    }
    assert.ok(held, "pressed the Force closed button");
    // held across two status updates (one a second), bounded: without them
    // there was nothing to rebuild the button and the check below proved nothing
    const pressedAt = statusEvents;
    for (const end = Date.now() + 10000; statusEvents < pressedAt + 2 && Date.now() < end;)
      await page.waitForTimeout(100);
    assert.ok(statusEvents >= pressedAt + 2, `${statusEvents - pressedAt} status updates while the button was held`);
    assert.equal(await page.evaluate((sel) => document.querySelector(sel).heldByTest === true, FC), true,
      "the pressed button was rebuilt under the pointer");
    await page.mouse.up();
    await page.waitForSelector('section.tile[data-upstream="api"] tr[data-state="forced_closed"]', { timeout: 10000 });

    // and trips it again from the page: red, and traffic refused at once
    await page.locator('section.tile[data-upstream="api"] button[data-action="trip"]').click();
    await page.waitForSelector('section.tile[data-upstream="api"][data-state="open"]', { timeout: 10000 });
    assert.equal(await exchange(port("web")), false);
    // everything above came through the stream: no /status polling while live
    assert.equal(await page.locator("#live").textContent(), "live");
    assert.deepEqual(paths.slice(liveFrom).filter((p) => p === "/status" || p === "/status/history"), []);

    // a browser without EventSource polls instead, and shows it
    const old = await browser.newPage();
    old.on("pageerror", (e) => errors.push(String(e)));
    await old.addInitScript(() => { delete window.EventSource; });
    const oldPaths = [];
    old.on("request", (r) => oldPaths.push(new URL(r.url()).pathname));
    await old.goto(`http://${admin}/`);
    await old.locator('section.tile[data-upstream="api"][data-state="open"]').waitFor({ timeout: 10000 });
    await old.waitForFunction(() => document.querySelectorAll("section.tile").length === 2);
    const polls = () => oldPaths.filter((p) => p === "/status").length;
    const before = polls();
    for (const end = Date.now() + 10000; polls() < before + 2 && Date.now() < end;)
      await new Promise((res) => setTimeout(res, 100));
    assert.ok(polls() >= before + 2, "the page polls /status without EventSource");
    assert.equal(await old.locator("#live").textContent(), "polling");
    assert.ok(!oldPaths.includes("/status/stream"));
    await old.close();
    assert.deepEqual(errors, []);
  } finally {
    await closeBrowser(browser);
    assert.equal(await cy.stop(), 0);
    echo.close();
  }
});

// An upstream behind an HTTP listener speaks HTTP on its tile: requests/s,
// responses by status class, the idle pool.
function httpServer() {
  return new Promise((resolve) => {
    const srv = net.createServer((c) => {
      c.on("error", () => {});
      let buf = "";
      c.on("data", (d) => {
        buf += d;
        let i;
        while ((i = buf.indexOf("\r\n\r\n")) >= 0) {
          buf = buf.slice(i + 4);
          c.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        }
      });
    });
    srv.listen(0, "127.0.0.1", () => resolve(srv));
  });
}

function httpGets(port, n) {
  return new Promise((resolve) => {
    const c = net.connect(port, "127.0.0.1");
    let got = "";
    c.on("connect", () => { for (let i = 0; i < n; i++) c.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n"); });
    c.on("data", (d) => { got += d; if (got.split("HTTP/1.1 200").length - 1 === n) c.end(); });
    c.on("close", () => resolve(got.split("HTTP/1.1 200").length - 1));
    c.on("error", () => resolve(-1));
    c.setTimeout(5000, () => c.destroy());
  });
}

test("an HTTP upstream's tile shows requests, status classes and the pool", async () => {
  const be = await httpServer();
  const cy = startCynic(`listeners:
  - name: web
    listen: 127.0.0.1:0
    mode: http
    upstream: api
upstreams:
  - name: api
    endpoints: [127.0.0.1:${be.address().port}]
    pool: { idle_timeout: 120s } # the idle connection outlives Chromium's start on a loaded machine
`);
  let browser;
  try {
    const { admin, port: portOf } = await started(cy);
    const port = portOf("web");
    assert.equal(await httpGets(port, 3), 3);
    browser = await launchBrowser();
    const page = await browser.newPage();
    await page.goto(`http://${admin}/`);
    const row = page.locator('section.tile[data-upstream="api"] .row.http');
    await row.waitFor({ timeout: 10000 });
    assert.match(await row.textContent(), /2xx 3 · 3xx 0 · 4xx 0 · 5xx 0/);
    assert.match(await row.textContent(), /pool 1 idle · 2 reused/);
    assert.equal(await page.locator('section.tile[data-upstream="api"] .spark .label').first().textContent(), "requests/s");
  } finally {
    await closeBrowser(browser);
    assert.equal(await cy.stop(), 0);
    be.close();
  }
});

test("each endpoint shows its health check verdict; one held out by its checks says so", async () => {
  const good = await echoServer();
  const bad = await refusedPort();
  const cy = startCynic(`listeners:
  - name: app
    listen: 127.0.0.1:0
    upstream: db
upstreams:
  - name: db
    endpoints: [127.0.0.1:${good.address().port}, 127.0.0.1:${bad}]
    health_check: { interval: 200ms, timeout: 100ms, unhealthy_after: 1 }
`);
  let browser;
  try {
    const { admin } = await started(cy, (r) => r.event === "endpoint_unhealthy");
    browser = await launchBrowser();
    const page = await browser.newPage();
    await page.goto(`http://${admin}/`);
    const tile = page.locator('section.tile[data-upstream="db"]');
    const out = tile.locator(`tr[data-endpoint="127.0.0.1:${bad}"]`);
    await out.locator('td.health[data-health="unhealthy"]').waitFor({ timeout: 10000 });
    assert.match(await out.textContent(), /held open by its health checks/);
    assert.match(await out.locator("td.health").textContent(), /health unhealthy · \d+\/\d+ failed/);
    assert.match(await out.locator("td.health").getAttribute("title"), /last failure: connect: connection refused/);
    const ok = tile.locator(`tr[data-endpoint="127.0.0.1:${good.address().port}"] td.health`);
    await tile.locator('td.health[data-health="healthy"]').waitFor({ timeout: 10000 });
    assert.match(await ok.textContent(), /health healthy · 0\/\d+ failed · [\d.]+ ms/);
  } finally {
    await closeBrowser(browser);
    assert.equal(await cy.stop(), 0);
    good.close();
  }
});

// An upstream with a fallback shows its answers by kind and the stale cache.
test("an upstream's tile shows its fallback answers and the stale cache", async () => {
  const be = await httpServer();
  const cy = startCynic(`listeners:
  - name: web
    listen: 127.0.0.1:0
    mode: http
    upstream: api
upstreams:
  - name: api
    endpoints: [127.0.0.1:${be.address().port}]
    fallback:
      status: 503
      stale: { max_bytes: 1MB }
`);
  let browser;
  try {
    const { admin, port: portOf } = await started(cy);
    const port = portOf("web");
    assert.equal(await httpGets(port, 2), 2); // GET / kept in the stale cache
    const trip = await fetch(`http://${admin}/breakers/api/trip`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ reason: "test" }),
    });
    assert.equal(trip.status, 200);
    assert.equal(await httpGets(port, 3), 3); // answered from the cache: 200
    browser = await launchBrowser();
    const page = await browser.newPage();
    await page.goto(`http://${admin}/`);
    const row = page.locator('section.tile[data-upstream="api"] .row.fallback');
    await row.waitFor({ timeout: 10000 });
    assert.match(await row.textContent(), /fallback stale 3 · static 0/);
    assert.match(await row.textContent(), /cache 1 · \d+ B \/ 1\.0 MB/);
  } finally {
    await closeBrowser(browser);
    assert.equal(await cy.stop(), 0);
    be.close();
  }
});

// A listener whose certificate expires within 14 days: the page warns above
// the tiles (issue 14); an upstream with tls shows its handshakes.
test("a certificate expiring within 14 days is warned about above the tiles", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "cynic-ui-tls-"));
  const cert = path.join(dir, "cert.pem"), key = path.join(dir, "key.pem");
  const made = spawnSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
    "-nodes", "-keyout", key, "-out", cert, "-days", "7", "-subj", "/CN=soon.example"]);
  assert.equal(made.status, 0, String(made.stderr));
  const be = await echoServer();
  const cy = startCynic(`listeners:
  - name: web
    listen: 127.0.0.1:0
    upstream: db
    tls: { cert_file: "${cert}", key_file: "${key}" }
upstreams:
  - name: db
    endpoints: [127.0.0.1:${be.address().port}]
`);
  let browser;
  try {
    const { admin } = await started(cy);
    browser = await launchBrowser();
    const page = await browser.newPage();
    await page.goto(`http://${admin}/`);
    const warn = page.locator("#tlswarn");
    await warn.waitFor({ state: "visible", timeout: 10000 });
    assert.match(await warn.textContent(),
      /listener web: the certificate expires within 14 days: renew it, then reload \(CN=soon\.example, expires \d{4}-\d{2}-\d{2}\)/);
  } finally {
    await closeBrowser(browser);
    assert.equal(await cy.stop(), 0);
    be.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
