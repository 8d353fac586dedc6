// End-to-end tests of the page served by `matcalc serve`, in Debian's Chromium
// (headless) driven by playwright-core. Nothing is downloaded: the browser is
// /usr/bin/chromium (or $CHROMIUM), the server target/release/matcalc (or
// $MATCALC_BIN) on a free loopback port. With MATCALC_SCREENSHOT=PATH the
// headline result is saved there as a PNG (docs/screenshot.png in the README).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const BIN = process.env.MATCALC_BIN || join(ROOT, "target/release/matcalc");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

const HEADLINE = {
  expr: "norm2(sin(W2*cos(W1*x)))^2",
  decls: "W1: matrix(r, 100); W2: matrix(100, r); r: dim in 1..95",
  wrt: "x",
};

let server;
let base;
let context;
let userDir;

/** Start `matcalc serve --port 0` and read the address it prints. */
function startServer() {
  server = spawn(BIN, ["serve", "--port", "0"], { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`server did not print its address: ${out}`)), 20000);
    server.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/http:\/\/127\.0\.0\.1:\d+\//);
      if (m) {
        clearTimeout(timer);
        resolve(m[0]);
      }
    });
    server.on("exit", (code) => reject(new Error(`server exited with ${code}: ${out}`)));
  });
}

before(async () => {
  base = await startServer();
  userDir = mkdtempSync(join(tmpdir(), "matcalc-chromium-"));
  context = await chromium.launchPersistentContext(userDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: { width: 1200, height: 1000 },
  });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: base.replace(/\/$/, "") });
  context.setDefaultTimeout(15000);
});

after(async () => {
  await context?.close();
  if (server && server.exitCode === null) {
    const stopped = new Promise((r) => server.once("exit", r));
    server.kill("SIGINT"); // Ctrl-C: graceful shutdown
    await stopped;
  }
  if (userDir) rmSync(userDir, { recursive: true, force: true });
});

/** A page with empty inputs (an explicit empty state in the URL). */
async function blankPage() {
  const page = await context.newPage();
  await page.goto(`${base}?expr=`);
  return page;
}

/** Type the headline example as a person would and wait for its gradient. */
async function typeHeadline(page) {
  await page.locator("#decls").fill(HEADLINE.decls);
  await page.locator("#wrt").fill(HEADLINE.wrt);
  await page.locator("#expr").pressSequentially(HEADLINE.expr, { delay: 5 });
  await page.waitForFunction(() => document.querySelector("#result math mfrac") !== null);
}

test("the headline gradient is rendered as MathML", async () => {
  const page = await blankPage();
  await typeHeadline(page);
  const text = await page.locator("#result").textContent();
  assert.match(text, /⊙/);
  assert.match(text, /sin/);
  // Rendered as math, not shown as markup: the <math> element has a real size.
  const box = await page.locator("#result math").boundingBox();
  assert.ok(box && box.height > 30 && box.width > 200, JSON.stringify(box));
  assert.equal(await page.locator("#result math").evaluate((m) => m.namespaceURI), "http://www.w3.org/1998/Math/MathML");
  assert.match(await page.locator("#layout").textContent(), /gradient: same shape as x \(100\)/);
  assert.match(await page.locator("#echo").textContent(), /read as norm2\(sin\(W2\*cos\(W1\*x\)\)\)\^2/);
  // The variables table: W1, W2 declared; x assumed, a vector of 100.
  const x = page.locator('#vars tr[data-name="x"]');
  assert.equal(await x.locator("select").inputValue(), "vector");
  assert.equal(await x.locator("input").inputValue(), "100");
  assert.equal(await x.locator(".state").textContent(), "assumed");
  assert.equal(await page.locator('#vars tr[data-name="W1"] .state').textContent(), "declared");
  if (process.env.MATCALC_SCREENSHOT) {
    await page.screenshot({ path: process.env.MATCALC_SCREENSHOT, clip: { x: 0, y: 0, width: 1200, height: 760 } });
  }
  await page.close();
});

test("the form switcher shows the cascade and the Diag form", async () => {
  const page = await blankPage();
  await typeHeadline(page);
  const rows = () => page.locator("#result mtr").count();
  assert.equal(await rows(), 2); // f = …, ∂f/∂x = …
  await page.getByRole("button", { name: "Cascade" }).click();
  assert.equal(await page.getByRole("button", { name: "Cascade" }).getAttribute("aria-pressed"), "true");
  assert.ok((await rows()) >= 8, `cascade rows: ${await rows()}`);
  assert.match(page.url(), /form=cascade/);
  await page.getByRole("button", { name: "Diag" }).click();
  assert.match(await page.locator("#result").textContent(), /Diag/);
  await page.close();
});

test("the derivation panel opens", async () => {
  const page = await blankPage();
  await typeHeadline(page);
  const panel = page.locator("#derivation");
  assert.equal(await panel.evaluate((d) => d.open), false);
  await page.locator("#derivation summary").click();
  assert.equal(await panel.evaluate((d) => d.open), true);
  const body = page.locator("#explanation");
  assert.ok(await body.isVisible());
  // The derivation (MathML from the server): the back-substitution ends in the gradient.
  assert.ok((await body.locator("table.derivation math").count()) >= 10);
  const steps = await body.textContent();
  assert.match(steps, /back-substituted/);
  assert.match(steps, /substitute/);
  assert.ok((await body.locator("mo", { hasText: ":" }).count()) >= 5, steps);
  await page.close();
});

test("check numerically shows PASS", async () => {
  const page = await blankPage();
  await typeHeadline(page);
  await page.getByRole("button", { name: "Check numerically" }).click();
  const out = page.locator("#check-result");
  await page.waitForFunction(() => /^(PASS|FAIL|error)/.test(document.querySelector("#check-result").textContent));
  assert.match(await out.textContent(), /^PASS: worst relative error \d\.\d\de-\d+ \(\d+ comparisons/);
  assert.match(await out.getAttribute("class"), /pass/);
  await page.close();
});

test("code tabs and copy buttons", async () => {
  const page = await blankPage();
  await typeHeadline(page);
  assert.match(await page.locator("#code").textContent(), /import numpy as np/);
  await page.getByRole("tab", { name: "JAX" }).click();
  assert.match(await page.locator("#code").textContent(), /jax/);
  await page.getByRole("tab", { name: "Rust" }).click();
  const rust = await page.locator("#code").textContent();
  assert.match(rust, /fn f_and_grad/);
  const copyCode = page.getByRole("button", { name: "Copy code" });
  await copyCode.click();
  await page.waitForFunction(() => document.querySelector("#copy-code").textContent === "Copied");
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), rust);
  await page.getByRole("button", { name: "Copy LaTeX" }).click();
  const latex = await page.evaluate(() => navigator.clipboard.readText());
  assert.match(latex, /^\\begin\{aligned\}/);
  assert.match(latex, /\\odot/);
  await page.close();
});

test("an error is shown inline with the offending text highlighted", async () => {
  const page = await blankPage();
  await typeHeadline(page);
  await page.locator("#expr").fill("sinn(W1*x)");
  await page.waitForSelector("#error:not([hidden])");
  assert.match(await page.locator("#error").textContent(), /unknown function `sinn`/);
  assert.match(await page.locator("#error").textContent(), /did you mean `sin`/);
  assert.equal(await page.locator("#error-source mark").textContent(), "sinn");
  assert.match(await page.locator("#expr").getAttribute("class"), /has-error/);
  // A mistake in the declarations is marked there.
  await page.locator("#expr").fill(HEADLINE.expr);
  await page.locator("#decls").fill("W1: matrx(r, 100)");
  await page.waitForFunction(() => document.querySelector("#decls").classList.contains("has-error"));
  assert.equal(await page.locator("#error-source mark").textContent(), "matrx");
  // Fixed: the error goes away.
  await page.locator("#decls").fill(HEADLINE.decls);
  await page.waitForSelector("#error", { state: "hidden" });
  await page.close();
});

test("a shared URL shows the same result", async () => {
  const page = await blankPage();
  await typeHeadline(page);
  await page.getByRole("button", { name: "Cascade" }).click();
  const url = page.url();
  const html = await page.locator("#result").innerHTML();
  await page.close();
  const again = await context.newPage();
  await again.goto(url);
  await again.waitForFunction(() => document.querySelector("#result math mfrac") !== null);
  assert.equal(await again.locator("#expr").inputValue(), HEADLINE.expr);
  assert.equal(await again.locator("#decls").inputValue(), HEADLINE.decls);
  assert.equal(await again.getByRole("button", { name: "Cascade" }).getAttribute("aria-pressed"), "true");
  assert.equal(await again.locator("#result").innerHTML(), html);
  await again.close();
});

test("editing the variables table declares the variable", async () => {
  const page = await blankPage();
  await page.locator("#expr").fill("x'*A*x");
  // No variable chosen yet: the page offers the expression's variables.
  await page.getByRole("button", { name: "x", exact: true }).click();
  await page.waitForFunction(() => document.querySelector("#result math mfrac") !== null);
  assert.equal(await page.locator("#wrt").inputValue(), "x");
  assert.equal(await page.locator('#vars tr[data-name="A"] select').inputValue(), "matrix");
  const before = await page.locator("#result").textContent();
  await page.locator('#vars tr[data-name="A"] select').selectOption("symmetric");
  await page.waitForFunction(() => /A: symmetric\(\w+\)/.test(document.querySelector("#decls").value));
  await page.waitForFunction((b) => document.querySelector("#result").textContent !== b, before);
  assert.equal(await page.locator('#vars tr[data-name="A"] .state').textContent(), "declared");
  await page.close();
});

test("LaTeX input names its own variable", async () => {
  const page = await blankPage();
  await page.locator("#expr").fill("L(x) := \\|A x - b\\|_2^2, \\quad A \\in \\mathbb{R}^{m \\times n}");
  await page.waitForFunction(() => document.querySelector("#result math mfrac") !== null);
  assert.match(await page.locator("#echo").textContent(), /LaTeX.*read as norm2\(A\*x - b\)\^2.*by x/);
  await page.close();
});

test("fits a phone-sized screen", async () => {
  const page = await context.newPage();
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${base}?expr=${encodeURIComponent(HEADLINE.expr)}&decls=${encodeURIComponent(HEADLINE.decls)}&wrt=x`);
  await page.waitForFunction(() => document.querySelector("#result math mfrac") !== null);
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 390, `the page is ${width}px wide on a 390px screen`);
  // One column: the variables come after the input, not beside it.
  const input = await page.locator(".panel.input").boundingBox();
  const vars = await page.locator(".panel.variables").boundingBox();
  assert.ok(vars.y > input.y + input.height - 1, JSON.stringify({ input, vars }));
  await page.close();
});
