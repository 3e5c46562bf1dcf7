// Serves web/ on 127.0.0.1, opens index.html?autorun=1 in headless Chromium with WebGPU on
// SwiftShader, waits for the page to train, and checks: a WebGPU adapter was used, the layer
// graph's device gradients equal the formula within 1e-5, the test accuracy is at least 95 %,
// and nothing was logged as an error. Saves a screenshot (docs/web.png, or $WGRAD_WEB_SHOT).
//
//   node web/test.mjs            (after building web/pkg; see the README)
//
// CHROMIUM names the browser binary (default /usr/bin/chromium). WGRAD_WEB_NO_WEBGPU=1 runs the
// browser without WebGPU instead, and checks that the page says so and trains on wgrad's CPU
// backend compiled to WebAssembly.
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import puppeteer from "puppeteer-core";

const root = path.dirname(fileURLToPath(import.meta.url));
const shot = process.env.WGRAD_WEB_SHOT || path.join(root, "..", "docs", "web.png");
const types = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm", ".png": "image/png" };

if (!fs.existsSync(path.join(root, "pkg", "wgrad_web.js"))) {
  console.error("web/pkg is missing: build it first (see the README's browser section)");
  process.exit(1);
}

const server = http.createServer((req, res) => {
  let p = decodeURIComponent(new URL(req.url, "http://localhost").pathname);
  if (p.endsWith("/")) p += "index.html";
  const file = path.join(root, path.normalize(p));
  if (!file.startsWith(root) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { "Content-Type": types[path.extname(file)] || "application/octet-stream" });
  fs.createReadStream(file).pipe(res);
});
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const url = `http://127.0.0.1:${server.address().port}/index.html?autorun=1`;

const noWebgpu = process.env.WGRAD_WEB_NO_WEBGPU === "1";
const webgpuFlags = [
  "--enable-unsafe-webgpu",
  "--enable-features=Vulkan",
  "--use-vulkan=swiftshader",
  "--use-webgpu-adapter=swiftshader",
];
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-dev-shm-usage", ...(noWebgpu ? ["--disable-features=WebGPU"] : webgpuFlags)],
});
const errors = [];
let failed = false;
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1000, height: 1200 });
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(m.text());
    else console.log("page:", m.text());
  });
  page.on("pageerror", (e) => errors.push(String(e)));
  const started = Date.now();
  await page.goto(url);
  await page.waitForFunction("window.wgrad && window.wgrad.done", { timeout: 15 * 60 * 1000, polling: 500 });
  const r = await page.evaluate(() => window.wgrad);
  fs.mkdirSync(path.dirname(shot), { recursive: true });
  await page.screenshot({ path: shot, fullPage: true });
  const wasm = fs.statSync(path.join(root, "pkg", "wgrad_web_bg.wasm")).size;
  console.log(`device: ${r.device ? `${r.device.name} (${r.device.backend}), WebGPU: ${r.device.webgpu}` : "none"}`);
  console.log(`adapter as the page shows it: ${r.adapterText}`);
  console.log(`layer graph: largest |device − formula| = ${r.layerMaxDiff}`);
  if (r.epochs) {
    console.log(`training: ${r.epochs.length} epochs, ${r.secondsPerEpoch.toFixed(3)} s per epoch, ` +
      `test accuracy ${(100 * r.accuracy).toFixed(2)} %`);
  }
  console.log(`wasm: ${(wasm / 1024).toFixed(0)} KiB; page done in ${((Date.now() - started) / 1000).toFixed(1)} s; screenshot ${shot}`);
  const checks = [
    noWebgpu
      ? ["without WebGPU the page said so and ran on the CPU backend", r.device && !r.device.webgpu && r.noWebgpuShown]
      : ["the page used a WebGPU adapter", r.device && r.device.webgpu],
    ["the layer graph's gradients equal the formula within 1e-5", r.layerMaxDiff <= 1e-5],
    ["the test accuracy is at least 95 %", r.accuracy >= 0.95],
    ["no error in the console or the page", errors.length === 0 && r.errors.length === 0],
  ];
  for (const [what, ok] of checks) {
    console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
    failed ||= !ok;
  }
  for (const e of [...errors, ...(r.errors || [])]) console.log("error:", e);
} finally {
  await browser.close();
  server.close();
}
process.exit(failed ? 1 : 0);
