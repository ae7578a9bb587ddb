// The SecureVault dashboard in a real Perses, in a real browser: Debian's
// Chromium driven by playwright-core opens the dashboard that
// scripts/monitoring-up.sh provisions (migrated from the Grafana JSON the
// chart ships) over a Prometheus scraping a running data plane.
// operator/tests/dashboard_browser.rs starts all of that and runs this file;
// it can also be run by hand against `make monitoring-up`:
//
//   NODE_PATH=$(tests/setup/browser.sh | tail -n1) \
//   DASHBOARD_URL='http://127.0.0.1:3000/projects/securevault/dashboards/securevault?var-namespace=default&var-securevault=mail' \
//   GRAFANA_DASHBOARD=charts/securevault-operator/dashboards/securevault.json \
//   SCREENSHOT=/tmp/dashboard.png node tests/monitoring/dashboard.spec.mjs
//
// It fails when:
// - the page does not show as many panels as the Grafana dashboard has, or
//   with other titles;
// - a panel is still loading after LOAD_LIMIT_MS, shows an error, or draws
//   no chart;
// - a panel's query returns no series with two numbers (NaN is none), that
//   is no line: the chart then draws "No data" or a lone dot on its canvas,
//   where the DOM cannot see it, so the answers Perses gets from Prometheus
//   are read instead, query by query;
// - the browser reports a console error, an uncaught exception or a failed
//   request to Perses.
// The screenshot is written in every case, so a failure can be looked at.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { launchChromium } from '../browser/chromium.mjs';

// Tall enough for every panel to be in view: Perses runs a panel's queries
// only once the panel is visible.
const VIEWPORT = { width: 1400, height: 1850 };
/// From opening the page to every panel drawn.
const LOAD_LIMIT_MS = 60_000;
/// The whole run; a hang is reported instead of waiting for the harness.
const RUN_LIMIT_MS = 3 * 60_000;

function env(name, fallback) {
  const value = process.env[name] ?? fallback;
  if (value === undefined || value === '') {
    console.error(`dashboard.spec: ${name} is not set`);
    process.exit(2);
  }
  return value;
}

const DASHBOARD_URL = new URL(env('DASHBOARD_URL'));
const GRAFANA_DASHBOARD = env('GRAFANA_DASHBOARD');
const SCREENSHOT = env('SCREENSHOT');
/// The time range shown, as Perses writes it in the URL (`start=5m`).
const RANGE = env('DASHBOARD_RANGE', '5m');

// What the dashboard must show: the Grafana dashboard's panels, and their
// queries with the variables as the URL sets them.
const grafana = JSON.parse(fs.readFileSync(GRAFANA_DASHBOARD, 'utf8'));
const expected = grafana.panels.filter((p) => p.type !== 'row');
const variables = {};
for (const [key, value] of DASHBOARD_URL.searchParams) {
  if (key.startsWith('var-')) variables[key.slice(4)] = value;
}
function substitute(expr) {
  return expr.replace(/\$\{?(\w+)\}?/g, (whole, name) => variables[name] ?? whole);
}
const queries = new Map(); // PromQL as sent -> panel title
for (const panel of expected) {
  for (const target of panel.targets ?? []) queries.set(substitute(target.expr), panel.title);
}
for (const [query] of queries) {
  assert.ok(!/\$\w/.test(query), `a variable of ${query} is not set in DASHBOARD_URL`);
}

const browserErrors = [];
/// The last answer Prometheus gave (through Perses' proxy) to each query.
const answers = new Map();

/// The PromQL of a request to Prometheus' range query API, sent as a GET
/// query string or a POST form.
function promQuery(request) {
  const url = new URL(request.url());
  if (!url.pathname.endsWith('/api/v1/query_range')) return null;
  const params = new URLSearchParams(request.method() === 'POST' ? (request.postData() ?? '') : url.search);
  return params.get('query');
}

/// Why a range query's answer would draw no line, or null if it has data.
function emptiness(answer) {
  if (answer.status !== 'success') return `Prometheus answered ${JSON.stringify(answer).slice(0, 300)}`;
  const series = answer.data?.result ?? [];
  if (series.length === 0) return 'no series';
  // A line needs two points; one is a dot nobody sees.
  const lines = series.map((s) => (s.values ?? []).filter(([, v]) => Number.isFinite(Number(v))).length);
  if (!lines.some((n) => n >= 2)) return `points per series (numbers only): ${JSON.stringify(lines)}`;
  return null;
}

async function main() {
  const watchdog = setTimeout(() => {
    console.error(`\ndashboard.spec: the run did not finish within ${RUN_LIMIT_MS / 1000} s`);
    process.exit(1);
  }, RUN_LIMIT_MS);
  watchdog.unref();

  const browser = await launchChromium('dashboard.spec');
  const page = await browser.newPage({ viewport: VIEWPORT });
  page.on('console', (m) => {
    if (m.type() === 'error') browserErrors.push(`console error: ${m.text()}`);
  });
  page.on('pageerror', (e) => browserErrors.push(`uncaught exception: ${e.message}`));
  page.on('requestfailed', (r) => {
    const failure = r.failure()?.errorText ?? '';
    // The view beacon (/api/v1/view) is cut off by the navigation itself.
    if (failure === 'net::ERR_ABORTED' && new URL(r.url()).pathname === '/api/v1/view') return;
    browserErrors.push(`request failed: ${r.method()} ${r.url()} ${failure}`);
  });
  page.on('response', async (r) => {
    if (r.status() >= 400) browserErrors.push(`HTTP ${r.status()} for ${r.request().method()} ${r.url()}`);
    const query = promQuery(r.request());
    if (query === null) return;
    try {
      answers.set(query, await r.json());
    } catch (e) {
      answers.set(query, { status: `unreadable: ${e.message}` });
    }
  });

  const url = new URL(DASHBOARD_URL);
  url.searchParams.set('start', RANGE);
  console.log(`chromium ${browser.version()} opening ${url}`);
  let failure = null;
  try {
    await page.goto(url.toString(), { waitUntil: 'load' });
    await checkPanels(page);
  } catch (e) {
    failure = e;
  }
  fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
  await page.screenshot({ path: SCREENSHOT, fullPage: true }).catch((e) => {
    console.log(`(no screenshot: ${e.message})`);
  });
  console.log(`screenshot: ${SCREENSHOT}`);
  if (failure === null && browserErrors.length > 0) {
    failure = new Error(`the browser reported errors:\n  ${browserErrors.join('\n  ')}`);
  }
  if (failure !== null) {
    console.log(`\nFAILED: ${failure.message}`);
    for (const e of browserErrors) console.log(`  also: ${e}`);
    const text = await page
      .locator('body')
      .innerText({ timeout: 2000 })
      .catch(() => '');
    console.log(`the page read:\n    ${text.slice(0, 2000).replace(/\n/g, '\n    ')}`);
    await browser.close().catch(() => {});
    process.exit(1);
  }
  await browser.close();
  console.log(`all ${expected.length} panels show data`);
}

/// Waits until every panel is drawn and every query answered, then checks
/// each panel; throws with what is wrong.
async function checkPanels(page) {
  const panels = page.locator('[data-testid="panel"]');
  const deadline = Date.now() + LOAD_LIMIT_MS;
  let state;
  for (;;) {
    state = await panelState(page);
    const loading = state.filter((p) => p.loading || !p.canvas);
    const unanswered = [...queries.keys()].filter((q) => !answers.has(q));
    if (state.length >= expected.length && loading.length === 0 && unanswered.length === 0) break;
    if (Date.now() > deadline) {
      throw new Error(
        `after ${LOAD_LIMIT_MS / 1000} s: ${state.length} panels of ${expected.length}; ` +
          `still loading or without a chart: ${JSON.stringify(loading.map((p) => p.title))}; ` +
          `queries never sent or answered: ${JSON.stringify(unanswered)}`,
      );
    }
    await sleep(250);
  }
  // Let the charts finish drawing what they got.
  await sleep(1000);
  state = await panelState(page);

  assert.equal(await panels.count(), expected.length, 'the number of panels');
  assert.deepEqual(
    state.map((p) => p.title).sort(),
    expected.map((p) => p.title).sort(),
    'the panels are the Grafana dashboard panels',
  );
  const problems = [];
  for (const p of state) {
    if (p.error) problems.push(`${p.title}: shows an error: ${p.error}`);
    if (!p.canvas) problems.push(`${p.title}: draws no chart`);
  }
  for (const [query, title] of queries) {
    const why = emptiness(answers.get(query));
    if (why !== null) problems.push(`${title}: ${query} has no data (${why})`);
  }
  for (const p of state) {
    const n = [...queries.values()].filter((t) => t === p.title).length;
    console.log(`  ${p.title}: ${n} ${n === 1 ? 'query' : 'queries'}, chart ${p.canvas}`);
  }
  if (problems.length > 0) throw new Error(`panels without data:\n  ${problems.join('\n  ')}`);
}

/// Each panel's title, whether it is loading, its error text and the size
/// of its chart's canvas (null without one).
function panelState(page) {
  return page.locator('[data-testid="panel"]').evaluateAll((nodes) =>
    nodes.map((node) => {
      // The header is labelled by the title's element.
      const titleId = node.querySelector('header')?.getAttribute('aria-labelledby');
      const titleNode = titleId ? document.getElementById(titleId) : null;
      const canvas = [...node.querySelectorAll('canvas')].find((c) => c.width > 0 && c.height > 0);
      const alert = node.querySelector('[role="alert"], [aria-label="panel errors"]');
      return {
        title: (titleNode?.textContent ?? '').trim(),
        loading:
          node.querySelector('[aria-label="loading"], [aria-label="Loading..."], .MuiSkeleton-root') !== null,
        error: alert ? (alert.textContent || alert.getAttribute('aria-label') || 'error').trim() : null,
        canvas: canvas ? `${canvas.width}x${canvas.height}` : null,
      };
    }),
  );
}

main().catch((e) => {
  console.error(`dashboard.spec: ${e?.stack ?? e}`);
  process.exit(1);
});
