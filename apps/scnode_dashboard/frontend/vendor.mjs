// Copies the chart library npm installed (package-lock.json pins it, with its integrity hash)
// into ../static/vendor/ with its licence, so the dashboard serves it itself (no CDN; CSP 'self').
// `npm ci && npm run build` rebuilds the committed copy; `npm run check` fails when it differs.
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "static", "vendor");
const pkg = (name) => JSON.parse(readFileSync(join(here, "node_modules", name, "package.json")));
const charts = pkg("lightweight-charts");
const canvas = pkg("fancy-canvas");
const files = {
  "lightweight-charts.standalone.production.js": readFileSync(
    join(here, "node_modules/lightweight-charts/dist/lightweight-charts.standalone.production.js"),
  ),
  "LICENSE.lightweight-charts.txt": readFileSync(
    join(here, "node_modules/lightweight-charts/LICENSE"),
  ),
  "NOTICE.txt": Buffer.from(
    `static/vendor/lightweight-charts.standalone.production.js is ${charts.name} ` +
      `${charts.version} (${charts.license}, Copyright TradingView, Inc.; ` +
      `https://www.tradingview.com/ ; licence in LICENSE.lightweight-charts.txt), ` +
      `copied unchanged from npm by apps/scnode_dashboard/frontend/vendor.mjs.\n` +
      `It bundles ${canvas.name} ${canvas.version} (${canvas.license} licence, ` +
      `Copyright TradingView, Inc.).\n`,
  ),
};
const check = process.argv.includes("--check");
let stale = [];
mkdirSync(out, { recursive: true });
for (const [name, body] of Object.entries(files)) {
  const target = join(out, name);
  if (check) {
    let have = null;
    try { have = readFileSync(target); } catch { have = null; }
    if (have === null || !have.equals(body)) stale.push(name);
  } else {
    writeFileSync(target, body);
  }
}
if (stale.length) {
  console.error(`static/vendor differs from npm's copy: ${stale.join(", ")} (run npm run build)`);
  process.exit(1);
}
console.log(check ? "static/vendor matches npm" : `vendored ${charts.name} ${charts.version}`);
