// Debian's Chromium driven by playwright-core, for the browser tests
// (tests/console/console.spec.mjs, tests/monitoring/dashboard.spec.mjs).
// tests/setup/browser.sh installs both; the Rust test that runs a spec
// hands node the packages' directory as NODE_PATH.

import { createRequire } from 'node:module';

const CHROMIUM = '/usr/bin/chromium';
// Without the background-networking flags Chromium keeps reaching for
// Google's hosts, which this machine refuses; --no-sandbox because the tests
// run as root. playwright's launch() gives each run a fresh, temporary
// --user-data-dir of its own.
const CHROMIUM_FLAGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

// ES modules ignore NODE_PATH; a CommonJS require made here honours it, so
// the packages can live in the cache that tests/setup/browser.sh fills.
const require = createRequire(import.meta.url);

/// playwright-core's `chromium`, or exit 2 naming `spec` and what to run.
function playwright(spec) {
  try {
    return require('playwright-core').chromium;
  } catch (e) {
    console.error(
      `${spec}: cannot load playwright-core (NODE_PATH=${process.env.NODE_PATH ?? ''}); ` +
        `tests/setup/browser.sh installs it: ${e.message}`,
    );
    process.exit(2);
  }
}

/// A headless Debian Chromium for the spec named `spec`.
export async function launchChromium(spec) {
  return playwright(spec).launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS });
}
