// Uppy, unmodified, uploading to spool's tus endpoint from Chromium
// (issue 12): a page of its own (test/uppy/, built with Vite and served
// by `vite preview` on another origin, as a third party's frontend would
// be) with @uppy/core, @uppy/dashboard and @uppy/tus sends two files
// through the Dashboard, while a graphql-ws subscriber in Node watches
// both progress live and complete; then the bytes are downloaded and
// compared. Without Chromium the test is skipped, saying so; with CI set
// it fails instead (support/browser.mjs).

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';

import { createClient } from 'graphql-ws';
import { build, preview } from 'vite';
import WebSocket from 'ws';

import { artifactPath, openBrowser } from './support/browser.mjs';
import { assertNeverBackwards, guardMs, subscribe } from './support/progress.mjs';
import { freePort, mustGql, randomBytesWithHeader, startSpool } from './support/spool.mjs';

const MiB = 1 << 20;
const guarded = { timeout: 180_000 };
const pageRoot = resolve(dirname(fileURLToPath(import.meta.url)), 'uppy');

// spool keeps tus bytes in 5 MiB chunks; Uppy sends 2 MiB PATCHes, and
// the page's upload is capped so that the two files take a couple of
// seconds: long enough for progress to be seen on the way.
const spoolArgs = ['--single-threshold', '5MiB', '--chunk-size', '5MiB', '--media-processing=false'];
const uppyChunk = 2 * MiB;
const throttledUpload = 8 * MiB;

const MY_UPLOADS = `subscription {
  myUploads { uploadId status uploadedBytes totalBytes percent mediaId mediaStatus error }
}`;
const MEDIA = `query ($id: ID!) {
  node(id: $id) { ... on MediaFile { id fileName mimeType fileSize status url } }
}`;

let spool;
let page; // { origin, close }
let buildDir;
before(async () => {
  buildDir = await mkdtemp(join(tmpdir(), 'spool-uppy-page-'));
  page = await servePage(buildDir);
  spool = await startSpool({ args: [...spoolArgs, '--allowed-origins', page.origin] });
});
after(async () => {
  await spool?.stop();
  await page?.close();
  if (buildDir) await rm(buildDir, { recursive: true, force: true });
});

test('Uppy Dashboard with @uppy/tus sends two files to /files/; a subscriber sees both progress live and COMPLETED; bytes match', guarded, async (t) => {
  const browser = await openBrowser(t);
  if (!browser) return;
  t.after(() => browser.close());

  const token = await spool.tokenFor('uppy');
  const dir = await mkdtemp(join(tmpdir(), 'spool-uppy-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const files = [
    { name: 'clip.mp4', mimeType: 'video/mp4', bytes: randomBytesWithHeader('video/mp4', 12 * MiB) },
    { name: 'song.mp3', mimeType: 'audio/mpeg', bytes: randomBytesWithHeader('audio/mpeg', 7 * MiB + 4321) },
  ];
  for (const f of files) {
    f.path = join(dir, f.name);
    await writeFile(f.path, f.bytes);
  }

  // A user of its own: every event on this feed is one of these two files'.
  const ws = createClient({ url: spool.wsUrl, webSocketImpl: WebSocket, connectionParams: { Authorization: `Bearer ${token}` } });
  t.after(() => ws.dispose());
  const feed = subscribe(ws, MY_UPLOADS, {});

  const context = await browser.newContext({ viewport: { width: 1100, height: 800 } });
  const tab = await context.newPage();
  tab.setDefaultTimeout(guardMs);
  const consoleErrors = [];
  tab.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  const cdp = await context.newCDPSession(tab);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: throttledUpload,
  });

  const fragment = new URLSearchParams({ endpoint: `${spool.url}/files/`, token, chunkSize: String(uppyChunk) });
  await tab.goto(`${page.origin}/#${fragment}`);
  await tab.locator('.uppy-Dashboard').waitFor();
  await tab.locator('input.uppy-Dashboard-input').first().setInputFiles(files.map((f) => f.path));
  await tab.locator('.uppy-Dashboard-Item').nth(1).waitFor();
  await tab.getByRole('button', { name: /^Upload 2 files/ }).click();
  await tab.waitForFunction(() => window.uppyRecord.complete !== null, null, { timeout: 120_000 });
  const record = await tab.evaluate(() => window.uppyRecord);
  await tab.screenshot({ path: await artifactPath('uppy-dashboard.png'), fullPage: true });

  assert.deepEqual(record.failed, {}, `Uppy's upload errors (console: ${consoleErrors.join(' | ')})`);
  assert.deepEqual(record.complete, { successful: 2, failed: 0 });
  for (const f of files) {
    const sent = record.succeeded[f.name];
    assert.ok(sent, `Uppy reports ${f.name} uploaded`);
    assert.ok(sent.uploadURL.startsWith(`${spool.url}/files/`), `${f.name}'s upload URL ${sent.uploadURL}`);
    assert.ok(sent.mediaId, `${f.name}: Spool-Media-Id readable in the browser (exposed to the page's origin)`);
    const bars = record.progress[f.name] ?? [];
    assert.ok(bars.some((b) => b > 0 && b < f.bytes.length), `Uppy's own progress for ${f.name}: ${bars}`);
  }

  // The subscriber: both uploads, each seen part-way before Uppy heard
  // its last answer, then COMPLETED naming the media Uppy was told of.
  for (const f of files) {
    const done = await feed.next((p) => p.totalBytes === f.bytes.length && p.status === 'COMPLETED', `COMPLETED for ${f.name}`);
    const events = feed.values.filter((p) => p.uploadId === done.uploadId);
    assertNeverBackwards(events);
    assert.equal(done.uploadedBytes, f.bytes.length);
    assert.equal(done.percent, 100);
    assert.equal(done.mediaId, record.succeeded[f.name].mediaId, `${f.name}: the media the subscriber and Uppy were told of`);
    const livePartway = feed.values.findIndex((p, i) => p.uploadId === done.uploadId &&
      p.uploadedBytes > 0 && p.uploadedBytes < f.bytes.length && feed.receivedAt[i] < record.succeeded[f.name].at);
    assert.ok(livePartway >= 0, `${f.name}: an event part-way, received before Uppy finished; events: ${JSON.stringify(events)}`);
    t.diagnostic(`${f.name}: ${events.length} events, uploadedBytes ${events.map((p) => p.uploadedBytes).join(' → ')}`);
  }
  assert.equal(new Set(feed.values.map((p) => p.uploadId)).size, 2, 'two uploads on the feed');

  for (const f of files) {
    const media = (await mustGql(spool.url, token, MEDIA, { id: record.succeeded[f.name].mediaId })).node;
    assert.equal(media.fileName, f.name);
    assert.equal(media.mimeType, f.mimeType);
    assert.equal(media.fileSize, f.bytes.length);
    const res = await fetch(new URL(media.url, spool.url), { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(res.status, 200, `GET ${f.name}'s url`);
    assert.equal(sha256(Buffer.from(await res.arrayBuffer())), sha256(f.bytes), `${f.name}: the bytes spool serves are the bytes sent`);
  }
});

// servePage builds test/uppy/ with Vite into outDir (not web/dist, which
// ships in the binary) and serves it with `vite preview` on a free port
// of 127.0.0.1: another origin than spool's.
async function servePage(outDir) {
  const config = { root: pageRoot, configFile: false, logLevel: 'warn', build: { outDir, emptyOutDir: true, chunkSizeWarningLimit: 2000 } };
  await build(config);
  const port = await freePort();
  const server = await preview({ ...config, preview: { host: '127.0.0.1', port, strictPort: true } });
  return {
    origin: `http://127.0.0.1:${port}`,
    close: () => server.close(),
  };
}

function sha256(bytes) {
  return createHash('sha256').update(bytes).digest('hex');
}
