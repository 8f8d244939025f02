// Browser plumbing for tests that drive spool's pages in Chromium through
// playwright-core: where Chromium is, how it is launched, what happens
// when it is missing, and where screenshots go.
//
//   const browser = await openBrowser(t);   // null: skipped, say nothing more
//   if (!browser) return;
//
// Chromium is $CHROMIUM_PATH, else /usr/bin/chromium (Debian's package).
// playwright-core never downloads a browser of its own.

import { accessSync, constants } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

/** Where screenshots and other artifacts go (git-ignored). */
export const artifactDir = resolve(dirname(fileURLToPath(import.meta.url)), '../../test-results');

export const chromiumPath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

// A fresh temporary profile per launch (chromium.launch makes one), no
// GPU, and none of the background traffic (updates, sync, field trials)
// that would add requests a test might count.
const launchArgs = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

let skipSaid = false;

/**
 * Launches Chromium for test context t. Where none is installed, it fails
 * the test when CI is set (CI must run every test), else it skips t,
 * saying so on stderr too so that `make test` output shows it, and
 * returns null.
 *
 * @param {import('node:test').TestContext} t
 * @returns {Promise<import('playwright-core').Browser | null>}
 */
export async function openBrowser(t) {
  if (!isExecutable(chromiumPath)) {
    if (process.env.CI) {
      throw new Error(`chromium is required in CI (.ci/run installs it); none at ${chromiumPath}`);
    }
    const message = `chromium not found at ${chromiumPath}: browser test skipped; install it with apt-get install chromium`;
    if (!skipSaid) process.stderr.write(`${message}\n`);
    skipSaid = true;
    t.skip(message);
    return null;
  }
  return chromium.launch({ executablePath: chromiumPath, args: launchArgs });
}

/** The path for artifact name, creating the artifact directory. */
export async function artifactPath(name) {
  await mkdir(artifactDir, { recursive: true });
  return join(artifactDir, name);
}

function isExecutable(path) {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}
