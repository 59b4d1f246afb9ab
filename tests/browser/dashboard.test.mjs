// End-to-end test of the Spillway dashboard in real headless Chromium against the real
// `spillway up` binary (path in SPILLWAY_BIN). Set SPILLWAY_SCREENSHOTS=<dir> to also save
// screenshots of the main pages there.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm, mkdir, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { chromium } from "playwright-core";

const BIN = process.env.SPILLWAY_BIN;
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SHOTS = process.env.SPILLWAY_SCREENSHOTS ? resolve(process.env.SPILLWAY_SCREENSHOTS) : null;
const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--no-first-run",
];

let dir, server, base, admin, browser, output = "";

function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

/** Wait until `check` returns a truthy value, or fail after `ms`. */
async function until(what, check, ms = 30000) {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (e) { /* not yet */ }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n--- server output ---\n${output}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function api(method, path, token, body) {
  const resp = await fetch(base + path, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await resp.text();
  assert.ok(resp.ok, `${method} ${path}: ${resp.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

async function shot(page, name) {
  if (!SHOTS) return;
  await mkdir(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

async function signIn(context, token) {
  const page = await context.newPage();
  await page.goto(base + "/");
  assert.match(page.url(), /\/login$/);
  await page.getByLabel("API token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(base + "/");
  return page;
}

before(async () => {
  assert.ok(BIN, "set SPILLWAY_BIN to the spillway binary (e.g. target/debug/spillway)");
  dir = await mkdtemp(join(tmpdir(), "spillway-browser-"));
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  server = spawn(BIN, [
    "up", "--data-dir", join(dir, "data"), "--listen", `127.0.0.1:${port}`,
    "--workers", "1", "--queue", "default", "--queue", "fragile",
  ], { env: { ...process.env, HOME: dir, XDG_DATA_HOME: join(dir, "xdg"), SPILLWAY_LOG: "warn" }, stdio: ["ignore", "pipe", "pipe"] });
  server.stdout.on("data", (d) => { output += d; });
  server.stderr.on("data", (d) => { output += d; });
  await until("the server to answer /healthz", async () => (await fetch(base + "/healthz")).ok);
  admin = (await until("admin.token", () => readFile(join(dir, "data", "admin.token"), "utf8"))).trim();
  // The local worker serves this queue too; a task there dies after one failed attempt.
  await api("POST", "/v1/queues", admin, { name: "fragile", settings: { max_attempts: 1 } });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
});

after(async () => {
  if (browser) await browser.close();
  if (server && server.exitCode === null) {
    const exited = new Promise((r) => server.once("exit", r));
    server.kill("SIGTERM");
    await Promise.race([exited, new Promise((r) => setTimeout(r, 20000))]);
    if (server.exitCode === null) server.kill("SIGKILL");
  }
  if (dir) await rm(dir, { recursive: true, force: true });
});

let jobId;

test("an admin signs in, submits a job with an input file and sees it finish live", async () => {
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1280, height: 800 } });
  await shot(await context.newPage().then(async (p) => { await p.goto(base + "/login"); return p; }), "login");
  const page = await signIn(context, admin);
  await page.getByRole("link", { name: "Submit" }).click();
  await page.getByLabel("Name").fill("shout");
  await page.getByLabel("Command").fill('tr a-z A-Z < "$SPILLWAY_INPUT_DIR/hello.txt" > "$SPILLWAY_OUTPUT_DIR/out.txt"');
  await page.getByLabel("Input files").setInputFiles({ name: "hello.txt", mimeType: "text/plain", buffer: Buffer.from("hello dashboard\n") });
  await page.getByLabel("Labels").fill("run=e2e");
  await shot(page, "submit");
  await page.getByRole("button", { name: "Submit job" }).click();
  await page.waitForURL(/\/jobs\/[^/?]+\?notice=/);
  jobId = new URL(page.url()).pathname.split("/")[2];
  await page.getByText("Job submitted").waitFor();
  // Mark this document: if the page reloads, the mark is gone.
  await page.evaluate(() => { window.__sameDocument = true; });
  const badge = page.locator("section[data-live=job] [data-field=state]");
  await until("the job to succeed on the page", async () => (await badge.textContent()) === "succeeded", 60000);
  const link = page.getByRole("link", { name: "out.txt" });
  await link.waitFor({ timeout: 30000 });
  assert.equal(await page.evaluate(() => window.__sameDocument), true, "the page reloaded");
  assert.equal(await page.getByRole("button", { name: "Cancel job" }).isVisible(), false, "cancel offered for a finished job");
  assert.match(await page.locator("[data-field=finished_at]").textContent(), /UTC$/);
  await page.getByRole("link", { name: "hello.txt" }).waitFor();
  await shot(page, "job");
  const [download] = await Promise.all([page.waitForEvent("download"), link.click()]);
  assert.equal(download.suggestedFilename(), "out.txt");
  const saved = join(dir, "out.txt");
  await download.saveAs(saved);
  assert.equal(await readFile(saved, "utf8"), "HELLO DASHBOARD\n");

  await page.goto(base + "/jobs?label=run%3De2e");
  await page.locator(`tr[data-job="${jobId}"]`).waitFor();
  await shot(page, "jobs");
  await page.goto(base + "/queues");
  await shot(page, "queues");
  await page.goto(base + "/workers");
  await page.getByRole("heading", { name: /^active \([1-9]/ }).waitFor();
  await shot(page, "workers");
  await page.goto(base + "/");
  await page.locator('tr[data-queue="default/default"]').waitFor();
  await shot(page, "overview");
  await page.setViewportSize({ width: 390, height: 844 });
  await shot(page, "overview-phone");
  await page.goto(`${base}/jobs/${jobId}`);
  await shot(page, "job-phone");
  await context.close();
});

test("a dead task is requeued from the dead letter page", async () => {
  const { job } = await api("POST", "/v1/jobs", admin, { queue: "fragile", name: "doomed", command: ["sh", "-c", "echo broken >&2; exit 3"] });
  await until("the task to be dead", async () => (await api("GET", `/v1/jobs/${job.id}`, admin)).counts.dead === 1, 60000);
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await signIn(context, admin);
  await page.getByRole("link", { name: "Dead letters" }).click();
  const row = page.locator("tr[data-task]").filter({ hasText: job.id });
  await row.waitFor();
  await shot(page, "dead");
  await row.getByRole("button", { name: "Requeue" }).click();
  await page.getByText("Requeued 1 tasks").waitFor();
  // It failed again with one attempt allowed: back among the dead, with two attempts run.
  await until("the requeued task to run again", async () => {
    const tasks = await api("GET", `/v1/jobs/${job.id}/tasks`, admin);
    return tasks.items[0].attempt === 2;
  }, 60000);
  await context.close();
});

test("a viewer of another tenant can neither submit nor see the default tenant's jobs", async () => {
  await api("POST", "/v1/tenants", admin, { name: "blue" });
  const { token } = await api("POST", "/v1/tokens", admin, { name: "blue viewer", role: "viewer", tenant: "blue" });
  const context = await browser.newContext();
  const page = await signIn(context, token);
  await page.getByText("blue · viewer").waitFor();
  assert.equal(await page.getByRole("link", { name: "Submit" }).count(), 0);
  await page.getByRole("link", { name: "Jobs" }).click();
  await page.getByText("No jobs match.").waitFor();
  assert.equal((await page.content()).includes(jobId), false, "another tenant's job id is on the page");
  const submit = await page.goto(base + "/submit");
  assert.equal(submit.status(), 403);
  const other = await page.goto(`${base}/jobs/${jobId}`);
  assert.equal(other.status(), 404);
  // A forged POST with the viewer's own session and CSRF token is still refused.
  await page.goto(base + "/");
  const csrf = await page.locator("input[name=_csrf]").first().inputValue();
  const status = await page.evaluate(async (csrf) => {
    const body = new FormData();
    body.set("_csrf", csrf); body.set("queue", "default"); body.set("command", "true");
    return (await fetch("/submit", { method: "POST", body })).status;
  }, csrf);
  assert.equal(status, 403);
  const jobs = await api("GET", "/v1/jobs?tenant=blue", admin);
  assert.equal(jobs.items.length, 0);
  await context.close();
});

test("a running task's log appears live on its page before the task ends", async () => {
  const go = join(dir, "go-live-log");
  // The first line looks like markup: the page must show it as text.
  const script = `echo 'live line <b id=injected>one</b>'; while [ ! -e '${go}' ]; do sleep 0.05; done; echo 'after the gate'`;
  const { job } = await api("POST", "/v1/jobs", admin, { queue: "default", name: "live-log", command: ["sh", "-c", script] });
  const task = await until("the task to run", async () => {
    const tasks = await api("GET", `/v1/jobs/${job.id}/tasks`, admin);
    return tasks.items[0].state === "leased" ? tasks.items[0] : null;
  }, 60000);
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await signIn(context, admin);
  await page.goto(`${base}/tasks/${task.id}`);
  const log = page.locator("pre[data-live-log]");
  await until("the first line on the page", async () => (await log.textContent()).includes("live line <b id=injected>one</b>"));
  assert.equal(await page.locator("#injected").count(), 0, "the task's output was interpreted as HTML");
  const running = await api("GET", `/v1/jobs/${job.id}/tasks`, admin);
  assert.equal(running.items[0].state, "leased", "the line was seen while the task runs");
  await shot(page, "live-log");
  await writeFile(go, "");
  await until("the end on the page", async () => (await log.getAttribute("data-ended")) === "true", 60000);
  assert.match(await log.textContent(), /live line <b id=injected>one<\/b>\nafter the gate\n$/);
  await page.getByText("ended: succeeded").waitFor();
  const href = await page.getByRole("link", { name: "Whole log" }).first().getAttribute("href");
  assert.equal(href, `/tasks/${task.id}/log?attempt=1`);
  const whole = await page.evaluate(async (href) => (await fetch(href)).text(), href);
  assert.equal(whole, "live line <b id=injected>one</b>\nafter the gate\n");
  await context.close();
});
