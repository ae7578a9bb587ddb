// The web console in a real browser: Debian's Chromium driven by
// playwright-core, against a real data plane, a real SMTP server (mailpit)
// and a real model server. dataplane/tests/console_browser.rs starts those
// and runs this file; it can also be run by hand against any data plane:
//
//   NODE_PATH=$(tests/setup/browser.sh | tail -n1) \
//   SV_URL=http://127.0.0.1:8080 MAILPIT_URL=http://127.0.0.1:8025 \
//   SV_ADMIN_USER=admin SV_ADMIN_PASSWORD=... SCREENSHOT_DIR=/tmp/shots \
//   AXE_PATH=$NODE_PATH/axe-core/axe.min.js node tests/console/console.spec.mjs
//
// (mailpit needs --enable-chaos for the failed-email step.)
//
// Plain Node, no test runner: the steps depend on each other (a key is
// revoked after it was created), so they run in order and the first failure
// ends the run, with the step's name, a screenshot and the page's text.
//
// Besides what each step checks, every step fails if the browser reported an
// error: a console error, an uncaught exception, or a Content-Security-Policy
// violation. The console is served under `default-src 'self'`, and a
// violation is a feature that silently does not work for a user. Every page
// is also checked with axe-core (serious and critical violations fail) at a
// desktop and a phone width, and screenshotted at both.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { launchChromium } from '../browser/chromium.mjs';

// ---------------------------------------------------------------------------
// The console's HTML contract, in one place: when a label or a text changes,
// change it here. A string names a label or button exactly; a RegExp matches
// part of it.
// ---------------------------------------------------------------------------
const UI = {
  paths: {
    root: '/console',
    login: '/console/login',
    emailDetail: /^\/console\/emails\/([^/?#]+)$/,
  },
  login: {
    user: 'User name',
    password: 'Password',
    submit: 'Sign in',
    wrongPassword: /Wrong user name or password/i,
    blocked: /Too many failed sign-ins/i,
  },
  nav: {
    name: 'Console',
    links: {
      overview: 'Overview',
      emails: 'Emails',
      generations: 'Generations',
      usage: 'Usage',
      keys: 'API keys',
      users: 'Users',
      audit: 'Audit trail',
    },
    signOut: 'Sign out',
  },
  headings: {
    overview: 'Overview',
    emails: 'Emails',
    email: 'Email',
    sendTest: 'Send a test email',
    generations: 'Generations',
    usage: 'Usage',
    keys: 'API keys',
    users: 'Users',
    audit: 'Audit trail',
  },
  emails: {
    status: 'Status',
    recipient: 'Recipient',
    filter: 'Filter',
    sendTestLink: 'Send a test email',
  },
  sendTest: { to: 'To', subject: 'Subject', message: 'Message', submit: 'Send test email' },
  email: {
    status: '[data-field="status"]',
    smtpAnswer: '[data-field="smtp-answer"]',
    statuses: ['queued', 'sending', 'sent', 'failed'],
    retry: /^Retry\b/,
  },
  generations: { prompt: 'Prompt', submit: 'Generate', answer: '#answer' },
  // A row's button may name its row to a screen reader ("Revoke ci-key").
  keys: { name: 'Name', scope: 'email', daily: 'Tokens per day', submit: 'Create key', newKey: 'code#new-key', revoke: /^Revoke\b/ },
  users: {
    user: 'User name',
    password: 'Password',
    role: 'Role',
    submit: 'Create user',
    disable: /^Disable\b/,
  },
  audit: { action: 'Action', filter: 'Filter', failure: /failure/i },
};

// ---------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------
const DESKTOP = { viewport: { width: 1280, height: 800 } };
const PHONE = {
  viewport: { width: 390, height: 844 },
  isMobile: true,
  hasTouch: true,
  deviceScaleFactor: 2,
};
const ACTION_TIMEOUT_MS = 15_000;
const EMAIL_STATUS_LIMIT_MS = 30_000;
const GENERATION_LIMIT_MS = 120_000;
/// The answer counts as complete once its text stopped changing this long.
const ANSWER_SETTLED_MS = 4_000;
/// The whole run; a hang is reported instead of waiting for the harness.
const RUN_LIMIT_MS = 8 * 60_000;
/// axe-core impacts that fail the run (minor and moderate are printed).
const FAILING_IMPACTS = new Set(['serious', 'critical']);

function env(name, fallback) {
  const value = process.env[name] ?? fallback;
  if (value === undefined || value === '') {
    console.error(`console.spec: ${name} is not set`);
    process.exit(2);
  }
  return value;
}

const SV_URL = env('SV_URL').replace(/\/+$/, '');
const MAILPIT_URL = env('MAILPIT_URL').replace(/\/+$/, '');
const ADMIN_USER = env('SV_ADMIN_USER', 'admin');
const ADMIN_PASSWORD = env('SV_ADMIN_PASSWORD');
const SCREENSHOT_DIR = env('SCREENSHOT_DIR');
const AXE_PATH = env('AXE_PATH');

const AXE_SOURCE = fs.readFileSync(AXE_PATH, 'utf8');
fs.mkdirSync(SCREENSHOT_DIR, { recursive: true });
// A failure's screenshot from an earlier run would outlive a passing one.
for (const file of fs.readdirSync(SCREENSHOT_DIR)) {
  if (/^FAILED-step-\d+\.png$/.test(file)) fs.rmSync(path.join(SCREENSHOT_DIR, file));
}

/// Makes this run's names unique, so a rerun against the same data plane
/// does not find the previous run's rows.
const RUN = Math.random().toString(36).slice(2, 8);

// ---------------------------------------------------------------------------
// Watching the browser
// ---------------------------------------------------------------------------

/// Errors the browser reported since the last step ended.
const browserErrors = [];

/// Turns CSP violations into console errors. addInitScript is injected
/// through the DevTools protocol, so the page's own CSP does not stop it.
function reportCspViolations() {
  document.addEventListener('securitypolicyviolation', (e) => {
    console.error(
      `CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || 'an inline resource'}` +
        (e.sourceFile ? ` (${e.sourceFile}:${e.lineNumber})` : ''),
    );
  });
}

function watch(page, label) {
  page.setDefaultTimeout(ACTION_TIMEOUT_MS);
  page.setDefaultNavigationTimeout(2 * ACTION_TIMEOUT_MS);
  // Pages the browser navigated to. Chromium logs "Failed to load resource"
  // for a page answered with 4xx too, and a failed sign-in rightly answers
  // 401 or 429: for the page itself that is a status, not an error (the
  // steps check what the page says). A script, style, image or fetch that
  // fails is an error.
  const documents = new Set();
  page.on('response', (response) => {
    const request = response.request();
    if (request.isNavigationRequest() && request.frame() === page.mainFrame()) documents.add(response.url());
  });
  page.on('console', (msg) => {
    const where = msg.location()?.url;
    const text = `${msg.text()}${where ? ` [${where}]` : ''}`;
    if (msg.type() === 'error' && msg.text().startsWith('Failed to load resource') && documents.has(where)) {
      console.log(`    note (${label}): ${text}`);
    } else if (msg.type() === 'error') {
      browserErrors.push(`${label}: console error on ${page.url()}: ${text}`);
    } else if (msg.type() === 'warning') {
      console.log(`    note (${label}): console warning on ${page.url()}: ${text}`);
    }
  });
  page.on('pageerror', (err) => {
    browserErrors.push(`${label}: uncaught exception on ${page.url()}: ${err.message}`);
  });
  page.on('crash', () => browserErrors.push(`${label}: the page crashed on ${page.url()}`));
  // A confirm() before a destructive action (Revoke, Disable) is answered
  // as a user who means it would.
  page.on('dialog', (dialog) => dialog.accept().catch(() => {}));
}

async function newContext(browser, options, label) {
  const context = await browser.newContext(options);
  await context.addInitScript(reportCspViolations);
  const page = await context.newPage();
  watch(page, label);
  return { context, page };
}

function assertNoBrowserErrors() {
  if (browserErrors.length > 0) {
    const list = browserErrors.splice(0);
    assert.fail(`the browser reported ${list.length} error(s):\n      ${list.join('\n      ')}`);
  }
}

// ---------------------------------------------------------------------------
// Page checks
// ---------------------------------------------------------------------------

/// Role options for a name that is exact when a string, partial when a RegExp.
function named(name) {
  return typeof name === 'string' ? { name, exact: true } : { name };
}

function pathname(page) {
  return new URL(page.url()).pathname;
}

/// Polls `check` (which returns a truthy value or throws) until it holds.
async function eventually(what, limitMs, check, intervalMs = 250) {
  const deadline = Date.now() + limitMs;
  let last;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
      last = value;
    } catch (e) {
      last = e.message;
    }
    if (Date.now() > deadline) {
      assert.fail(`${what}: not within ${limitMs / 1000} s (last: ${last})`);
    }
    await sleep(intervalMs);
  }
}

async function h1Text(page) {
  const h1 = page.getByRole('heading', { level: 1 });
  const texts = await h1.allTextContents();
  return texts.map((t) => t.trim()).join(' | ');
}

async function expectHeading(page, text) {
  await eventually(`the h1 of ${page.url()} to read "${text}"`, ACTION_TIMEOUT_MS, async () => {
    const actual = await h1Text(page);
    if (actual !== text) throw new Error(`h1 is "${actual}"`);
    return true;
  });
}

async function expectPath(page, expected) {
  await eventually(`the address to be ${expected}`, ACTION_TIMEOUT_MS, async () => {
    const actual = pathname(page);
    const ok = expected instanceof RegExp ? expected.test(actual) : actual === expected;
    if (!ok) throw new Error(`at ${page.url()}`);
    return true;
  });
}

/// What every signed-in page has: the Console navigation with all its links,
/// and a Sign out button.
async function expectChrome(page) {
  const nav = page.getByRole('navigation', named(UI.nav.name));
  assert.equal(await nav.count(), 1, `${page.url()}: expected one <nav aria-label="${UI.nav.name}">`);
  for (const name of Object.values(UI.nav.links)) {
    const n = await nav.getByRole('link', named(name)).count();
    assert.equal(n, 1, `${page.url()}: the navigation should have one link "${name}", has ${n}`);
  }
  const signOut = await page.getByRole('button', named(UI.nav.signOut)).count();
  assert.equal(signOut, 1, `${page.url()}: expected one "${UI.nav.signOut}" button`);
}

async function runAxe(page, label) {
  const loaded = await page.evaluate(() => typeof window.axe !== 'undefined');
  if (!loaded) {
    // Evaluated, not page.addScriptTag: the CSP refuses an injected inline
    // script, but not code run through the DevTools protocol.
    await page.evaluate(AXE_SOURCE);
  }
  const results = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  const describe = (v) =>
    `${v.id} (${v.impact}): ${v.help}\n        ` +
    v.nodes
      .slice(0, 8)
      .map((n) => `${n.target.join(' ')}${n.failureSummary ? ` — ${n.failureSummary.split('\n').slice(1).join(' ').trim()}` : ''}`)
      .join('\n        ');
  const failing = results.violations.filter((v) => FAILING_IMPACTS.has(v.impact));
  for (const v of results.violations.filter((v) => !FAILING_IMPACTS.has(v.impact))) {
    console.log(`    note (${label}): axe ${describe(v)}`);
  }
  assert.equal(
    failing.length,
    0,
    `axe-core found ${failing.length} serious or critical accessibility violation(s) on ${label} (${page.url()}):\n      ` +
      failing.map(describe).join('\n      '),
  );
}

/// Checks the page the desktop browser is on: axe at desktop width, and a
/// desktop screenshot; then the same address in a phone-sized browser (with
/// the same cookies when signed in): axe again and a phone screenshot.
async function checkPage(browser, desktop, name, { signedIn = true } = {}) {
  const { context, page } = desktop;
  if (signedIn) await expectChrome(page);
  await runAxe(page, `${name} (desktop)`);
  await page.screenshot({ path: path.join(SCREENSHOT_DIR, `${name}-desktop.png`), fullPage: true });

  const storageState = signedIn ? await context.storageState() : undefined;
  const phone = await newContext(browser, { ...PHONE, storageState }, `${name} (phone)`);
  try {
    await phone.page.goto(page.url(), { waitUntil: 'load' });
    assert.equal(
      pathname(phone.page),
      pathname(page),
      `the phone browser opening ${page.url()} ended at ${phone.page.url()}`,
    );
    await runAxe(phone.page, `${name} (phone)`);
    const overflow = await phone.page.evaluate(
      () => document.documentElement.scrollWidth - document.documentElement.clientWidth,
    );
    if (overflow > 0) {
      console.log(`    note (${name}): at phone width the page scrolls sideways by ${overflow} px`);
    }
    await phone.page.screenshot({ path: path.join(SCREENSHOT_DIR, `${name}-phone.png`), fullPage: true });
  } finally {
    await phone.context.close();
  }
}

async function navigate(page, key) {
  const nav = page.getByRole('navigation', named(UI.nav.name));
  await nav.getByRole('link', named(UI.nav.links[key])).click();
  await page.waitForLoadState('load');
  await expectHeading(page, UI.headings[key]);
}

async function signIn(page, user, password) {
  if (pathname(page) !== UI.paths.login) await page.goto(SV_URL + UI.paths.login);
  await page.getByLabel(UI.login.user, { exact: true }).fill(user);
  await page.getByLabel(UI.login.password, { exact: true }).fill(password);
  await page.getByRole('button', named(UI.login.submit)).click();
  await page.waitForLoadState('load');
}

async function alertText(page) {
  const alert = page.getByRole('alert');
  await alert.first().waitFor({ state: 'visible' });
  return (await alert.allTextContents()).join(' ').trim();
}

/// A row of the page's tables that contains all of `texts`.
function row(page, ...texts) {
  let rows = page.getByRole('row');
  for (const t of texts) rows = rows.filter({ hasText: t });
  return rows;
}

async function tableText(page) {
  const rows = await page.getByRole('row').allInnerTexts();
  return rows.map((r) => r.replace(/\s+/g, ' ').trim()).join('\n        ');
}

// ---------------------------------------------------------------------------
// The data plane's API and mailpit, as a plain HTTP client sees them
// ---------------------------------------------------------------------------

async function whoAmI(key) {
  const response = await fetch(`${SV_URL}/api/auth/me`, {
    headers: { Authorization: `Bearer ${key}` },
  });
  await response.arrayBuffer();
  return response.status;
}

async function mailpitSubjects() {
  const response = await fetch(`${MAILPIT_URL}/api/v1/messages?limit=500`);
  assert.ok(response.ok, `mailpit answered ${response.status} to GET /api/v1/messages`);
  const body = await response.json();
  return (body.messages ?? []).map((m) => m.Subject);
}

async function expectInMailpit(subject) {
  await eventually(`"${subject}" to arrive in mailpit`, 10_000, async () =>
    (await mailpitSubjects()).includes(subject),
  );
}

/// mailpit's chaos triggers (the body testkit's Mailpit::set_chaos sends);
/// `{}` switches them all off.
async function setChaos(config) {
  const response = await fetch(`${MAILPIT_URL}/api/v1/chaos`, {
    method: 'PUT',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(config),
  });
  const text = await response.text();
  assert.ok(response.ok, `mailpit refused chaos ${JSON.stringify(config)}: ${response.status} ${text}`);
}

// ---------------------------------------------------------------------------
// Email helpers
// ---------------------------------------------------------------------------

async function emailStatus(page) {
  const status = (await page.locator(UI.email.status).first().textContent())?.trim() ?? '';
  assert.ok(
    UI.email.statuses.includes(status),
    `${page.url()}: data-field="status" reads "${status}", expected one of ${UI.email.statuses.join('|')}`,
  );
  return status;
}

async function smtpAnswer(page) {
  const field = page.locator(UI.email.smtpAnswer);
  if ((await field.count()) === 0) return '(no data-field="smtp-answer" on the page)';
  return ((await field.first().textContent()) ?? '').trim();
}

/// Reloads the detail page until its status reads `want`.
async function waitForEmailStatus(page, want) {
  const deadline = Date.now() + EMAIL_STATUS_LIMIT_MS;
  for (;;) {
    const status = await emailStatus(page);
    if (status === want) return;
    if (status === 'failed' || status === 'sent') {
      assert.fail(`${page.url()}: the email became ${status}, not ${want}; last SMTP answer: ${await smtpAnswer(page)}`);
    }
    if (Date.now() > deadline) {
      assert.fail(`${page.url()}: still ${status} after ${EMAIL_STATUS_LIMIT_MS / 1000} s, expected ${want}`);
    }
    await sleep(500);
    await page.reload({ waitUntil: 'load' });
  }
}

async function sendTestEmail(page, to, subject) {
  await navigate(page, 'emails');
  await page.getByRole('link', named(UI.emails.sendTestLink)).click();
  await page.waitForLoadState('load');
  await expectHeading(page, UI.headings.sendTest);
  await page.getByLabel(UI.sendTest.to, { exact: true }).fill(to);
  await page.getByLabel(UI.sendTest.subject, { exact: true }).fill(subject);
  await page.getByLabel(UI.sendTest.message, { exact: true }).fill(`Sent by the console's browser test, run ${RUN}.`);
  await page.getByRole('button', named(UI.sendTest.submit)).click();
  await page.waitForLoadState('load');
  await expectPath(page, UI.paths.emailDetail);
  await expectHeading(page, UI.headings.email);
  return pathname(page);
}

async function filterEmails(page, status, recipient) {
  await navigate(page, 'emails');
  await page.getByLabel(UI.emails.status, { exact: true }).selectOption(status);
  await page.getByLabel(UI.emails.recipient, { exact: true }).fill(recipient);
  await page.getByRole('button', named(UI.emails.filter)).click();
  await page.waitForLoadState('load');
  await expectHeading(page, UI.headings.emails);
}

// ---------------------------------------------------------------------------
// The steps
// ---------------------------------------------------------------------------

const steps = [];
const step = (name, fn) => steps.push({ name, fn });

let browser;
let admin; // { context, page }: the administrator's desktop browser
const state = {};

step('a signed-out visit to the console goes to the sign-in page', async () => {
  admin = await newContext(browser, DESKTOP, 'admin');
  const { page } = admin;
  await page.goto(SV_URL + UI.paths.root, { waitUntil: 'load' });
  await expectPath(page, UI.paths.login);
  for (const label of [UI.login.user, UI.login.password]) {
    assert.equal(await page.getByLabel(label, { exact: true }).count(), 1, `the sign-in form should have an input labelled "${label}"`);
  }
  assert.equal(await page.getByRole('alert').count(), 0, 'the sign-in page shows an alert before any attempt');
});

step('a wrong password shows an error and keeps the user signed out', async () => {
  const { page } = admin;
  await signIn(page, ADMIN_USER, `${ADMIN_PASSWORD}-wrong`);
  const text = await alertText(page);
  assert.match(text, UI.login.wrongPassword, `the alert after a wrong password reads "${text}"`);
  await expectPath(page, UI.paths.login);
  await checkPage(browser, admin, 'login', { signedIn: false });
});

step('the right password signs in to the Overview', async () => {
  const { page, context } = admin;
  await signIn(page, ADMIN_USER, ADMIN_PASSWORD);
  await expectPath(page, /^\/console\/?$/);
  await expectHeading(page, UI.headings.overview);
  const cookies = await context.cookies(SV_URL);
  assert.ok(cookies.length > 0, 'signing in set no cookie');
  for (const c of cookies) {
    assert.ok(c.httpOnly, `cookie ${c.name} is readable by scripts (no HttpOnly)`);
    assert.notEqual(c.sameSite, 'None', `cookie ${c.name} is sent cross-site (SameSite=None)`);
  }
  await checkPage(browser, admin, 'overview');
});

step('an API key created in the console (scope email, a daily token budget) is shown once', async () => {
  const { page } = admin;
  await navigate(page, 'keys');
  state.keyName = `browser-key-${RUN}`;
  await page.getByLabel(UI.keys.name, { exact: true }).fill(state.keyName);
  await page.getByRole('checkbox', named(UI.keys.scope)).check();
  await page.getByLabel(UI.keys.daily, { exact: true }).fill('5000');
  await page.getByRole('button', named(UI.keys.submit)).click();
  await page.waitForLoadState('load');
  await expectHeading(page, UI.headings.keys);
  const shown = page.locator(UI.keys.newKey);
  await shown.waitFor({ state: 'visible' });
  state.key = ((await shown.textContent()) ?? '').trim();
  assert.ok(state.key.length >= 20, `<code id="new-key"> holds "${state.key}", not a key`);
  assert.ok((await row(page, state.keyName).count()) >= 1, `no table row names the key "${state.keyName}":\n        ${await tableText(page)}`);
  const budget = (await row(page, state.keyName).first().textContent()) ?? '';
  assert.ok(budget.includes('5000/day, default/month'), `the key's row does not show its budget: ${budget}`);
  await checkPage(browser, admin, 'api-keys');

  await navigate(page, 'keys');
  assert.equal(await page.locator(UI.keys.newKey).count(), 0, 'the new key is still shown after leaving the page');
  assert.ok(!(await page.content()).includes(state.key), 'the key appears on the API keys page again');
});

step('the key works from a plain HTTP client', async () => {
  const status = await whoAmI(state.key);
  assert.equal(status, 200, `GET /api/auth/me with the new key answered ${status}`);
});

step('revoking the key in the console locks the client out', async () => {
  const { page } = admin;
  const keyRow = row(page, state.keyName);
  assert.equal(await keyRow.count(), 1, `expected one row for "${state.keyName}":\n        ${await tableText(page)}`);
  await keyRow.getByRole('button', named(UI.keys.revoke)).click();
  await page.waitForLoadState('load');
  await expectHeading(page, UI.headings.keys);
  const status = await whoAmI(state.key);
  assert.equal(status, 401, `GET /api/auth/me with the revoked key answered ${status}`);
});

step('a test email sent from the console becomes sent', async () => {
  const { page } = admin;
  state.sentTo = `sent-${RUN}@example.com`;
  state.sentSubject = `Console test ${RUN}: delivered`;
  state.sentPath = await sendTestEmail(page, state.sentTo, state.sentSubject);
  await waitForEmailStatus(page, 'sent');
  const retries = await page.getByRole('button', named(UI.email.retry)).count();
  assert.equal(retries, 0, 'a sent email offers Retry');
  console.log(`    last SMTP answer: ${await smtpAnswer(page)}`);
  await checkPage(browser, admin, 'email-detail');
});

step('the sent email is in mailpit', async () => {
  await expectInMailpit(state.sentSubject);
});

step('the Emails list filters by status and recipient', async () => {
  const { page } = admin;
  await filterEmails(page, 'sent', state.sentTo);
  assert.ok((await row(page, state.sentTo).count()) >= 1, `status=sent, recipient=${state.sentTo} lists no row with it:\n        ${await tableText(page)}`);
  await checkPage(browser, admin, 'emails');
  await filterEmails(page, 'failed', state.sentTo);
  assert.equal(await row(page, state.sentTo).count(), 0, `status=failed lists the sent email:\n        ${await tableText(page)}`);
});

step('the Send a test email page', async () => {
  const { page } = admin;
  await navigate(page, 'emails');
  await page.getByRole('link', named(UI.emails.sendTestLink)).click();
  await page.waitForLoadState('load');
  await expectHeading(page, UI.headings.sendTest);
  await checkPage(browser, admin, 'send-test-email');
});

step('a recipient refused for good (SMTP 550) makes a test email failed', async () => {
  const { page } = admin;
  await setChaos({ Recipient: { ErrorCode: 550, Probability: 100 } });
  try {
    state.failedTo = `refused-${RUN}@example.com`;
    state.failedSubject = `Console test ${RUN}: refused, then retried`;
    state.failedPath = await sendTestEmail(page, state.failedTo, state.failedSubject);
    await waitForEmailStatus(page, 'failed');
  } finally {
    await setChaos({});
  }
  const answer = await smtpAnswer(page);
  assert.match(answer, /550/, `the last SMTP answer of the failed email reads "${answer}"`);
  assert.equal(await page.getByRole('button', named(UI.email.retry)).count(), 1, 'a failed email offers no Retry button');
  await checkPage(browser, admin, 'email-detail-failed');
});

step('the refused address is on the Suppressions page, and Lift takes it off', async () => {
  const { page } = admin;
  // A hard bounce suppresses the address: a Retry now would not be sent.
  await page.goto(`${SV_URL}/console/suppressions`, { waitUntil: 'load' });
  await expectHeading(page, 'Suppressions');
  const entry = row(page, state.failedTo);
  assert.equal(await entry.count(), 1, `the Suppressions page lists no row for ${state.failedTo}:\n        ${await tableText(page)}`);
  assert.match(await entry.textContent(), /bounce/, 'the reason reads bounce');
  await checkPage(browser, admin, 'suppressions');
  await entry.getByRole('button', named(/^Lift\b/)).click();
  await page.waitForLoadState('load');
  assert.equal(await row(page, state.failedTo).count(), 0, `${state.failedTo} is still listed after Lift`);
  await page.goto(SV_URL + state.failedPath, { waitUntil: 'load' });
});

step('Retry on the failed email delivers it', async () => {
  const { page } = admin;
  await page.getByRole('button', named(UI.email.retry)).click();
  await page.waitForLoadState('load');
  await expectPath(page, state.failedPath);
  const status = await emailStatus(page);
  assert.ok(['queued', 'sending', 'sent'].includes(status), `right after Retry the status reads ${status}`);
  await waitForEmailStatus(page, 'sent');
  await expectInMailpit(state.failedSubject);
});

step('a prompt on the Generations page streams its answer in', async () => {
  const { page } = admin;
  await navigate(page, 'generations');
  state.prompt = `Name three colours. (${RUN})`;
  await page.getByLabel(UI.generations.prompt, { exact: true }).fill(state.prompt);
  await page.getByRole('button', named(UI.generations.submit)).click();

  // Sampled from here rather than in the page, so a form that navigates
  // instead of streaming is still read (and then seen arriving whole).
  const answer = page.locator(UI.generations.answer);
  const seen = [];
  let last = '';
  let changedAt = Date.now();
  const deadline = Date.now() + GENERATION_LIMIT_MS;
  for (;;) {
    const text = ((await answer.first().textContent({ timeout: 1000 }).catch(() => null)) ?? '').trim();
    if (text !== last) {
      last = text;
      changedAt = Date.now();
      if (text) seen.push(text);
    }
    if (last && Date.now() - changedAt > ANSWER_SETTLED_MS) break;
    if (Date.now() > deadline) {
      assert.fail(`#answer ${last ? 'kept changing' : 'stayed empty'} for ${GENERATION_LIMIT_MS / 1000} s; it reads "${last}"`);
    }
    await sleep(50);
  }
  console.log(`    answer (${seen.length} distinct texts while streaming, lengths ${seen.map((s) => s.length).join(' → ')}): ${JSON.stringify(last)}`);
  assert.ok(seen.length >= 2, `the answer arrived in one piece, not streamed: ${JSON.stringify(last)}`);
  assert.ok(
    seen.slice(0, -1).some((s) => s.length < last.length),
    `the answer did not grow while streaming: ${JSON.stringify(seen)}`,
  );
});

step('the prompt is in the history after a reload', async () => {
  const { page } = admin;
  await eventually('the prompt to appear in the history table', 30_000, async () => {
    await page.reload({ waitUntil: 'load' });
    await expectHeading(page, UI.headings.generations);
    return (await row(page, state.prompt).count()) >= 1;
  }, 1000);
  await checkPage(browser, admin, 'generations');
});

step('the Usage page charts the tokens of that prompt', async () => {
  const { page } = admin;
  await navigate(page, 'usage');
  const chart = page.getByRole('img', { name: /^Tokens, last 30 days:/ });
  assert.equal(await chart.count(), 1, 'the Usage page has no chart of tokens per day');
  const label = await chart.getAttribute('aria-label');
  const counts = label.match(/: (\d+) prompt, (\d+) completion/);
  assert.ok(counts && Number(counts[1]) > 0 && Number(counts[2]) > 0, `the chart counts no tokens: "${label}"`);
  assert.ok((await row(page, ADMIN_USER, 'signed in').count()) >= 1, `no row of the administrator's own generations:\n        ${await tableText(page)}`);
  await checkPage(browser, admin, 'usage');
});

step('a user created on the Users page is listed', async () => {
  const { page } = admin;
  await navigate(page, 'users');
  state.user = `browser-${RUN}`;
  state.userPassword = `throwaway-password-${RUN}-0123456789`;
  await page.getByLabel(UI.users.user, { exact: true }).fill(state.user);
  await page.getByLabel(UI.users.password, { exact: true }).fill(state.userPassword);
  await page.getByLabel(UI.users.role, { exact: true }).selectOption('member');
  await page.getByRole('button', named(UI.users.submit)).click();
  await page.waitForLoadState('load');
  await expectHeading(page, UI.headings.users);
  const userRow = row(page, state.user);
  assert.equal(await userRow.count(), 1, `expected one row for "${state.user}":\n        ${await tableText(page)}`);
  assert.equal(await userRow.getByRole('button', named(UI.users.disable)).count(), 1, `the row of "${state.user}" has no "${UI.users.disable}" button`);
  await checkPage(browser, admin, 'users');
});

// Last of the sign-ins: the failures count per address too, so after this
// one nobody signs in from 127.0.0.1 until the block ends.
step('repeated wrong passwords block even the right one', async () => {
  const other = await newContext(browser, DESKTOP, 'blocked user');
  try {
    const { page } = other;
    await page.goto(SV_URL + UI.paths.login, { waitUntil: 'load' });
    for (let attempt = 1; attempt <= 5; attempt++) {
      await signIn(page, state.user, `wrong-${attempt}`);
      const text = await alertText(page);
      assert.ok(
        UI.login.wrongPassword.test(text) || UI.login.blocked.test(text),
        `wrong password #${attempt}: the alert reads "${text}"`,
      );
      await expectPath(page, UI.paths.login);
    }
    await signIn(page, state.user, state.userPassword);
    const text = await alertText(page);
    assert.match(text, UI.login.blocked, `the right password after 5 failures: the alert reads "${text}"`);
    await expectPath(page, UI.paths.login);
    await runAxe(page, 'login (blocked)');
  } finally {
    await other.context.close();
  }
});

step('the audit trail shows the failed sign-in, filtered by action', async () => {
  const { page } = admin;
  await navigate(page, 'audit');
  await page.getByLabel(UI.audit.action, { exact: true }).fill('login');
  await page.getByRole('button', named(UI.audit.filter)).click();
  await page.waitForLoadState('load');
  await expectHeading(page, UI.headings.audit);
  const table = await tableText(page);
  assert.ok((await row(page, ADMIN_USER, UI.audit.failure).count()) >= 1, `no row shows a failed login of "${ADMIN_USER}":\n        ${table}`);
  assert.ok((await row(page, state.user).count()) >= 1, `no row shows the logins of "${state.user}":\n        ${table}`);
  const bodyRows = await page.getByRole('row').filter({ has: page.getByRole('cell') }).allInnerTexts();
  const others = bodyRows.filter((r) => !r.includes('login'));
  assert.deepEqual(others, [], 'the filter by action "login" lists other actions');
  await checkPage(browser, admin, 'audit');
});

step('the Overview charts what went through', async () => {
  const { page } = admin;
  await navigate(page, 'overview');
  await expectHeading(page, UI.headings.overview);
  // Two test emails were sent (the failed one after its retry, so none is
  // failed now) and one generation succeeded: the charts' text
  // alternatives say so.
  const emails = await page.locator('figure svg[role="img"]').first().getAttribute('aria-label');
  assert.match(emails, /\b2 sent, 0 failed\b/, `the emails chart reads: ${emails}`);
  const generations = await page.locator('figure svg[role="img"]').nth(1).getAttribute('aria-label');
  assert.match(generations, /\b1 succeeded\b/, `the generations chart reads: ${generations}`);
  // Taken again now that there is something to chart (the README shows it).
  await checkPage(browser, admin, 'overview');
});

step('signing out ends the session', async () => {
  const { page } = admin;
  await page.getByRole('button', named(UI.nav.signOut)).click();
  await page.waitForLoadState('load');
  await expectPath(page, UI.paths.login);
  await page.goto(SV_URL + UI.paths.root, { waitUntil: 'load' });
  await expectPath(page, UI.paths.login);
});

// ---------------------------------------------------------------------------

async function reportFailure(index, error) {
  console.log(`[${index + 1}/${steps.length}] FAILED`);
  console.log(`\nstep ${index + 1} "${steps[index].name}" failed:\n  ${error?.message ?? error}`);
  const page = admin?.page;
  if (page && !page.isClosed()) {
    try {
      const shot = path.join(SCREENSHOT_DIR, `FAILED-step-${index + 1}.png`);
      await page.screenshot({ path: shot, fullPage: true });
      const text = (await page.locator('body').innerText({ timeout: 2000 })).slice(0, 2000);
      console.log(`  the page was ${page.url()} (screenshot: ${shot}); it read:\n    ${text.replace(/\n/g, '\n    ')}`);
    } catch (e) {
      console.log(`  (no screenshot: ${e.message})`);
    }
  }
  for (const e of browserErrors) console.log(`  also: ${e}`);
}

async function main() {
  const watchdog = setTimeout(() => {
    console.error(`\nconsole.spec: the run did not finish within ${RUN_LIMIT_MS / 60_000} min`);
    process.exit(1);
  }, RUN_LIMIT_MS);
  watchdog.unref();

  browser = await launchChromium('console.spec');
  console.log(`chromium ${browser.version()} against ${SV_URL}; screenshots in ${SCREENSHOT_DIR}`);
  let failed = false;
  for (const [i, { name, fn }] of steps.entries()) {
    const started = Date.now();
    const tag = `[${i + 1}/${steps.length}]`;
    console.log(`${tag} ${name}`);
    try {
      await fn();
      assertNoBrowserErrors();
      console.log(`${tag} ok (${((Date.now() - started) / 1000).toFixed(1)} s)`);
    } catch (e) {
      await reportFailure(i, e);
      failed = true;
      break;
    }
  }
  await setChaos({}).catch(() => {});
  await browser.close().catch(() => {});
  if (failed) process.exit(1);
  console.log(`all ${steps.length} console steps passed`);
}

main().catch((e) => {
  console.error(`console.spec: ${e?.stack ?? e}`);
  process.exit(1);
});
