// The pages spool serves, driven in a real Chromium against a real spool
// binary: the uploader at / (sign-in, two files, a reload in the middle
// of a chunked upload and its resumption, the gallery; what it does with
// a bad token, a refused file, a 403 or 415 chunk answer, an expired
// upload; the gallery's cards at desktop and phone widths, and an
// image's thumbnail once processed) and GraphiQL
// at /graphiql (a query, and a subscription that shows an upload made
// from Node). Screenshots go to web/test-results/. Without Chromium the
// tests are skipped, saying so; with CI set they fail instead
// (support/browser.mjs).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';

import { artifactPath, openBrowser } from './support/browser.mjs';
import { mustGql, pngBytes, putChunk, randomBytesWithHeader, startSpool } from './support/spool.mjs';

const MiB = 1 << 20;
// Failure guards only: how long to wait for something before failing with
// a message that says what never came. Nothing asserts a duration.
const guardMs = 30_000;
const guarded = { timeout: 120_000 };

// Files above 5 MiB go in 5 MiB chunks: the 30 MiB clip has six.
// The files these tests send are random bytes behind a media header: the
// shared server checks their bytes and derives nothing from them.
const chunkedArgs = ['--single-threshold', '5MiB', '--chunk-size', '5MiB', '--media-processing=false'];
const clipSize = 30 * MiB;
// Slow enough that the clip is still uploading when the page reloads,
// fast enough that a chunk arrives every second or so.
const throttledUpload = 4 * MiB;

const UPLOAD_STATE = `query ($id: ID!) {
  upload(id: $id) { id status progress { percent uploadedChunks totalChunks } }
}`;
const USER_MEDIA = `query {
  userMedia(first: 10) { edges { node { id fileName mimeType mediaType fileSize status url } } }
}`;
const INIT_BATCH = `mutation ($input: InitBatchInput!) {
  initBatch(input: $input) {
    uploads { id chunkUrls { chunkIndex url method headers { name value } offset size } }
  }
}`;
const COMPLETE = `mutation ($uploadId: ID!) { complete(uploadId: $uploadId) { id status } }`;
const UPLOAD_STATUS = `query ($id: ID!) { upload(id: $id) { status } }`;

let spool;
before(async () => {
  spool = await startSpool({ args: chunkedArgs });
});
after(async () => {
  await spool?.stop();
});

test('uploader: sign in, upload, reload mid-upload, resume, gallery, accessibility', guarded, async (t) => {
  const browser = await openBrowser(t);
  if (!browser) return;
  t.after(() => browser.close());

  // Files on disk, chosen by path both times: the browser takes name,
  // size and lastModified from the file itself, so the fingerprint the
  // page computes is the same before and after the reload.
  const dir = await mkdtemp(join(tmpdir(), 'spool-browser-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const photo = { name: 'photo.png', bytes: pngBytes(640, 360) };
  const clip = { name: 'clip.mp4', bytes: randomBytesWithHeader('video/mp4', clipSize) };
  for (const f of [photo, clip]) {
    f.path = join(dir, f.name);
    await writeFile(f.path, f.bytes);
  }

  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(guardMs);
  const cdp = await context.newCDPSession(page);
  const bars = await recordProgressBars(page);
  const puts = watchChunkPuts(page);
  // Listening long before the keypress that opens the picker: Playwright
  // turns interception on asynchronously once a listener exists, and a
  // chooser opened before that is lost.
  const choosers = [];
  page.on('filechooser', (chooser) => choosers.push(chooser));

  // Sign in with the form; the token is kept for the next visit.
  await page.goto(`${spool.url}/`);
  await page.locator('#token').waitFor();
  await assertControlsNamed(cdp, 'the sign-in screen');
  await page.locator('#token').fill(spool.token);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.locator('#app').waitFor();
  assert.equal(await page.evaluate(() => localStorage.getItem('spool.token')), spool.token);
  assert.equal(await page.locator('#user-name').textContent(), 'alice');

  // One chunk at a time, so the clip's bar climbs in several steps.
  assert.equal(await page.locator('#parallel').inputValue(), '4', 'parallel chunks default');
  await page.locator('#parallel').fill('1');
  await page.locator('#parallel').blur();
  await page.waitForFunction(() => localStorage.getItem('spool.parallel') === '1');

  await cdp.send('Network.enable');
  await limitUpload(cdp, throttledUpload);
  await page.setInputFiles('#files', [photo.path, clip.path]);

  // Reload once spool holds some of the clip's chunks but not all.
  const clipRow = page.locator('li.upload[data-file-name="clip.mp4"]');
  const photoRow = page.locator('li.upload[data-file-name="photo.png"]');
  await page.locator('li.upload[data-file-name="clip.mp4"][data-upload-id]').waitFor({ state: 'attached' });
  const clipId = await clipRow.getAttribute('data-upload-id');
  let last;
  const partial = await until(async () => {
    last = (await uploadState(clipId)).progress;
    return last.uploadedChunks >= 1 && last.uploadedChunks < last.totalChunks ? last : null;
  }, 'clip.mp4 to have some chunks on spool, not all', () => `; last saw ${JSON.stringify(last)} (is the upload throttled?)`);
  assert.equal(partial.totalChunks, clipSize / (5 * MiB));
  const photoDoneBeforeReload = (await photoRow.getAttribute('data-status')) === 'COMPLETED';
  bars.mark('reload');
  await page.reload();
  await page.locator('#app').waitFor();

  // The unfinished upload is listed, waiting for its file.
  const listed = page.locator(`li.upload[data-upload-id="${clipId}"]`);
  await waitForAttribute(listed, 'data-status', 'PAUSED', 'the unfinished clip.mp4 listed after the reload');
  assert.equal(await listed.getAttribute('data-file-name'), 'clip.mp4');
  await listed.getByRole('button', { name: 'Resume clip.mp4' }).waitFor();
  // Read now, not at once after the reload: a chunk whose last byte left
  // before it may still be landing on spool then.
  const received = await receivedChunks(clipId);
  assert.ok(received.length >= 1 && received.length < partial.totalChunks,
    `after the reload spool holds chunks [${received}] of ${partial.totalChunks}`);
  const heldPercent = String((await uploadState(clipId)).progress.percent);
  await waitForAttribute(listed.locator('[role=progressbar]'), 'aria-valuenow', heldPercent, 'the listed row to show what spool holds');

  // Choosing the same file again resumes the same upload, unthrottled.
  // The PUTs counted from here on are the new page's: the old one sends
  // its next chunk as soon as spool answers the last, and that PUT, cut
  // off by the reload, could start after any earlier mark.
  const putsBeforeReload = puts.count();
  puts.reset();
  await limitUpload(cdp, -1);
  await page.setInputFiles('#files', photoDoneBeforeReload ? [clip.path] : [photo.path, clip.path]);
  const resumed = page.locator(`li.upload[data-upload-id="${clipId}"]`);
  await waitForAttribute(resumed, 'data-status', 'COMPLETED', 'clip.mp4 to complete after resuming');
  assert.equal(await resumed.locator('[role=progressbar]').getAttribute('aria-valuenow'), '100');
  assert.equal(await clipRow.count(), 1, 'one row for clip.mp4: the listed one gave way to the resumed one');
  assert.equal(await clipRow.getAttribute('data-upload-id'), clipId, 'the same upload id before and after the reload');

  const missing = range(partial.totalChunks).filter((i) => !received.includes(i));
  assert.deepEqual(puts.indexes(clipId), missing,
    `after the reload, PUTs of exactly the chunks spool lacked (it had [${received}])`);
  assert.ok(puts.count() < partial.totalChunks,
    `${puts.count()} chunk PUTs after the reload, fewer than the ${partial.totalChunks} chunks`);
  assert.ok(putsBeforeReload >= 2, `photo.png and at least one clip.mp4 chunk sent before the reload (${putsBeforeReload} PUTs)`);

  if (photoDoneBeforeReload) {
    assert.ok(bars.values('photo.png', 'reload').includes(100), 'photo.png reached 100 before the reload');
  } else {
    await waitForAttribute(photoRow, 'data-status', 'COMPLETED', 'photo.png to complete after choosing it again');
    assert.equal(await photoRow.locator('[role=progressbar]').getAttribute('aria-valuenow'), '100');
  }

  // The bars only ever rose, through the reload too; the clip's climbed in steps.
  for (const name of [photo.name, clip.name]) {
    const seen = bars.values(name);
    assert.deepEqual(seen, [...seen].sort((a, b) => a - b), `${name}'s aria-valuenow went backwards: ${seen}`);
    assert.equal(seen.at(-1), 100, `${name}'s bar ends at 100: ${seen}`);
  }
  const clipBefore = bars.values(clip.name, 'reload');
  t.diagnostic(`clip.mp4's bar: ${clipBefore} | reload | ${bars.values(clip.name).slice(clipBefore.length)}; ` +
    `spool held chunks [${received}] of ${partial.totalChunks}; PUTs after the reload: [${puts.indexes(clipId)}]; ` +
    `photo.png ${photoDoneBeforeReload ? 'completed before' : 'completed after'} the reload`);
  assert.ok(clipBefore.some((v) => v > 0 && v < 100), `clip.mp4's bar moved before the reload: ${clipBefore}`);

  // The gallery shows both files, checked (READY), with their bytes.
  const gallery = page.locator('#gallery li.media');
  await until(async () => {
    const items = await gallery.evaluateAll((lis) => lis.map((li) => [li.dataset.fileName, li.querySelector('.media-status')?.dataset.status]));
    const ready = items.filter(([, status]) => status === 'READY').map(([name]) => name).sort();
    return ready.length === 2 && ready.join() === 'clip.mp4,photo.png';
  }, 'photo.png and clip.mp4 READY in the gallery');
  assert.equal(await page.locator('#load-more').isHidden(), true, 'no Load more with everything shown');
  await page.getByRole('button', { name: 'Delete photo.png' }).waitFor();
  await page.getByRole('button', { name: 'Delete clip.mp4' }).waitFor();
  await page.screenshot({ path: await artifactPath('uploader.png'), fullPage: true });

  const stored = (await mustGql(spool.url, spool.token, USER_MEDIA)).userMedia.edges.map((e) => e.node);
  assert.deepEqual(stored.map((m) => m.fileName).sort(), ['clip.mp4', 'photo.png']);
  for (const m of stored) {
    const sent = m.fileName === photo.name ? photo.bytes : clip.bytes;
    assert.equal(await page.locator(`#gallery li.media[data-media-id="${m.id}"]`).getAttribute('data-file-name'), m.fileName,
      `the gallery shows ${m.fileName} as media ${m.id}`);
    const res = await fetch(new URL(m.url, spool.url), { headers: { Authorization: `Bearer ${spool.token}` } });
    assert.equal(res.status, 200, `GET ${m.fileName}'s url`);
    const got = Buffer.from(await res.arrayBuffer());
    assert.equal(sha256(got), sha256(sent), `${m.fileName}: the bytes spool serves are the bytes sent`);
  }

  await page.locator('#type-filter').selectOption({ label: 'Images' });
  await until(async () => (await galleryNames(page)) === 'photo.png', 'the Images filter to show photo.png alone');

  // Accessibility: names for every control, proper progress bars, and
  // the file picker reachable from the keyboard.
  await assertControlsNamed(cdp, 'the uploader');
  await assertProgressBars(page);
  await page.reload();
  await page.locator('#app').waitFor();
  const reached = await tabTo(page, ['files', 'drop-zone']);
  // Only a chooser opened by this keypress counts.
  const openedBefore = choosers.length;
  await page.keyboard.press(reached === 'files' ? 'Space' : 'Enter');
  const chooser = await until(async () => choosers[openedBefore], `a file chooser after pressing ${reached === 'files' ? 'Space' : 'Enter'} on #${reached}`);
  assert.equal(chooser.isMultiple(), true, `the picker (#${reached}) takes several files`);
});

test('uploader: a bad token, then a stale saved one, are refused at sign-in; a pasted "Bearer …" is taken', guarded, async (t) => {
  const browser = await openBrowser(t);
  if (!browser) return;
  t.after(() => browser.close());

  const page = await browser.newPage();
  page.setDefaultTimeout(guardMs);
  const storedToken = () => page.evaluate(() => localStorage.getItem('spool.token'));
  const refused = /did not accept that token/;

  await page.goto(`${spool.url}/`);
  await page.locator('#token').fill('not-a-token');
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.locator('#signin-error').waitFor();
  assert.match(await page.locator('#signin-error').textContent(), refused);
  assert.equal(await page.locator('#app').isHidden(), true, 'the uploader stays hidden');
  assert.equal(await storedToken(), null, 'a refused token is not kept');

  // A token kept from an earlier visit that spool no longer takes (signed
  // by another server here) sends the page back to sign-in, and is dropped.
  await page.evaluate((value) => localStorage.setItem('spool.token', value), await foreignToken());
  await page.reload();
  await page.locator('#signin-error').waitFor();
  assert.match(await page.locator('#signin-error').textContent(), refused);
  // It says why, as spool told it.
  assert.match(await page.locator('#signin-error').textContent(), /made for another server/);
  assert.equal(await page.locator('#app').isHidden(), true, 'the uploader stays hidden');
  assert.equal(await storedToken(), null, 'the stale token is dropped');

  const token = await spool.tokenFor('bearer-paste');
  await page.locator('#token').fill(`  Bearer ${token} `);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.locator('#app').waitFor();
  assert.equal(await page.locator('#user-name').textContent(), 'bearer-paste');
  assert.equal(await storedToken(), token);
});

test('uploader: with storage disabled (a browser setting), signing in works for the visit', guarded, async (t) => {
  const browser = await openBrowser(t);
  if (!browser) return;
  t.after(() => browser.close());

  const context = await browser.newContext();
  // As Chromium does when a user blocks site data: any use throws.
  await context.addInitScript(() => Object.defineProperty(window, 'localStorage', {
    get() { throw new DOMException('access is denied for this document', 'SecurityError'); },
  }));
  const page = await context.newPage();
  page.setDefaultTimeout(guardMs);
  const errors = [];
  page.on('pageerror', (err) => errors.push(err.message));
  await page.goto(`${spool.url}/`);
  await page.locator('#token').fill(await spool.tokenFor('no-storage'));
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.locator('#app').waitFor();
  assert.equal(await page.locator('#user-name').textContent(), 'no-storage');
  await page.locator('#parallel').fill('2');
  await page.locator('#parallel').blur();
  assert.deepEqual(errors, [], 'errors thrown in the page');
});

test('uploader: a type spool refuses, bytes that are not the declared type (415), a tampered chunk URL (403)', guarded, async (t) => {
  const browser = await openBrowser(t);
  if (!browser) return;
  t.after(() => browser.close());

  const dir = await mkdtemp(join(tmpdir(), 'spool-browser-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const files = {
    notes: { name: 'notes.txt', bytes: Buffer.from('just text\n') },
    empty: { name: 'empty.png', bytes: Buffer.alloc(0) },
    good: { name: 'good.png', bytes: pngBytes(32, 32) },
    fake: { name: 'fake.png', bytes: Buffer.from('just text, no PNG\n') },
    tampered: { name: 'tampered.png', bytes: pngBytes(40, 30) },
  };
  for (const f of Object.values(files)) {
    f.path = join(dir, f.name);
    await writeFile(f.path, f.bytes);
  }

  const token = await spool.tokenFor('refusals');
  const page = await signedInPage(browser, spool.url, token);
  const puts = watchChunkPuts(page);
  const row = (f) => page.locator(`li.upload[data-file-name="${f.name}"]`);

  // One batch: spool refuses it for notes.txt, so the page plans the files
  // one by one and only notes.txt is refused.
  // An empty file is refused by the page, in words for its user.
  await page.setInputFiles('#files', [files.notes.path, files.good.path, files.fake.path, files.empty.path]);
  await waitForAttribute(row(files.notes), 'data-status', 'ERROR', 'notes.txt refused');
  const refusal = await row(files.notes).locator('.upload-status').textContent();
  assert.match(refusal, /text\/plain/);
  // Each accepted format is named (MP4, not video/mp4) once, not once per
  // MIME alias (audio/wav, audio/x-wav, audio/wave).
  const formats = [...refusal.matchAll(/\(([^)]*)\)/g)].map((m) => m[1].split(', '));
  assert.equal(formats.length, 3, `video, image and audio formats in "${refusal}"`);
  for (const list of formats) {
    assert.deepEqual(list, [...new Set(list)], `a format named twice in "${refusal}"`);
    assert.deepEqual(list.filter((f) => f.includes('/')), [], `MIME types instead of format names in "${refusal}"`);
  }
  await waitForAttribute(row(files.empty), 'data-status', 'ERROR', 'empty.png refused');
  assert.equal(await row(files.empty).locator('.upload-status').textContent(), 'empty.png is empty (0 bytes): choose a file with content');
  assert.equal(await row(files.empty).getAttribute('data-upload-id'), null, 'no upload planned for an empty file');
  await waitForAttribute(row(files.good), 'data-status', 'COMPLETED', 'good.png uploaded beside the refused file');
  await waitForAttribute(row(files.fake), 'data-status', 'FAILED', 'fake.png failed: its bytes are no PNG');
  assert.match(await row(files.fake).locator('.upload-status').textContent(), /declared as image\/png/);
  // Sending it again cannot help, so the page cancelled it: only
  // good.png's bytes count against the quota.
  await until(async () => (await mustGql(spool.url, token, '{ me { usedBytes } }')).me.usedBytes === files.good.bytes.length,
    `usedBytes back to good.png's ${files.good.bytes.length} once fake.png is given up`);
  const fakeId = await row(files.fake).getAttribute('data-upload-id');
  assert.equal((await mustGql(spool.url, token, UPLOAD_STATUS, { id: fakeId })).upload.status, 'CANCELLED');
  assert.deepEqual(puts.answers(fakeId), [415], 'fake.png: one PUT, refused with 415 and not sent again');

  // The first PUT goes out with a broken signature: spool answers 403,
  // and the page asks for a fresh URL and sends the chunk again.
  let tampered = false;
  await page.route(/\/uploads\/[^/]+\/chunks\/\d+\?/, (route) => {
    if (tampered) return route.continue();
    tampered = true;
    const url = new URL(route.request().url());
    url.searchParams.set('sig', `x${url.searchParams.get('sig')}`);
    return route.continue({ url: url.toString() });
  });
  await page.setInputFiles('#files', [files.tampered.path]);
  await waitForAttribute(row(files.tampered), 'data-status', 'COMPLETED', 'tampered.png uploaded after a 403');
  const tamperedId = await row(files.tampered).getAttribute('data-upload-id');
  assert.deepEqual(puts.answers(tamperedId), [403, 200], 'tampered.png: refused once (403), then taken');
});

test('uploader: an upload that outlives its session is shown expired; choosing the file again starts it anew', guarded, async (t) => {
  const browser = await openBrowser(t);
  if (!browser) return;
  t.after(() => browser.close());

  const ttlMs = 2_000;
  const shortLived = await startSpool({ args: ['--session-ttl', `${ttlMs}ms`, '--sweep-interval', '1h'], user: 'late' });
  t.after(() => shortLived.stop());
  const dir = await mkdtemp(join(tmpdir(), 'spool-browser-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const late = { name: 'late.png', path: join(dir, 'late.png') };
  await writeFile(late.path, pngBytes(24, 24));

  const page = await signedInPage(browser, shortLived.url, shortLived.token);
  const puts = watchChunkPuts(page);
  // The first PUT is held until the session is over: spool refuses its
  // URL then, and a new one for a session that is over. The test sends
  // it itself and keeps spool's answer: the page may abort it first, when
  // the upload's EXPIRED event outruns the answer (then Playwright
  // reports no response for it).
  let held = false;
  let heldAnswer;
  await page.route(/\/uploads\/[^/]+\/chunks\/\d+\?/, async (route) => {
    if (held) return route.continue();
    held = true;
    await new Promise((r) => setTimeout(r, ttlMs + 500));
    const res = await route.fetch();
    heldAnswer = res.status();
    return route.fulfill({ response: res }).catch(() => {}); // the page aborted it meanwhile
  });
  await page.setInputFiles('#files', [late.path]);
  const rows = page.locator('li.upload[data-file-name="late.png"]');
  await waitForAttribute(rows, 'data-status', 'EXPIRED', 'late.png shown expired');
  assert.match(await rows.locator('.upload-status').textContent(), /choose the file again/);
  const expiredId = await rows.getAttribute('data-upload-id');
  assert.equal((await mustGql(shortLived.url, shortLived.token, UPLOAD_STATUS, { id: expiredId })).upload.status, 'EXPIRED');
  await until(() => heldAnswer !== undefined, 'the held PUT of late.png answered');
  assert.equal(heldAnswer, 403);

  await page.setInputFiles('#files', [late.path]);
  const again = rows.and(page.locator(`:not([data-upload-id="${expiredId}"])`));
  await waitForAttribute(again, 'data-status', 'COMPLETED', 'late.png uploaded anew');
  assert.notEqual(await again.getAttribute('data-upload-id'), expiredId);
});

test('uploader: every gallery card shows its date, its player and a working Delete button, on a desktop and a phone', guarded, async (t) => {
  const browser = await openBrowser(t);
  if (!browser) return;
  t.after(() => browser.close());

  // Media larger than any card (a wide and a tall PNG; a video with
  // controls wants 300 px) and long names: the card must scale them down,
  // not widen past its column.
  const dir = await mkdtemp(join(tmpdir(), 'spool-browser-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const files = ['a', 'b'].flatMap((set) => [
    { name: `a-photo-with-a-rather-long-name-${set}.png`, bytes: set === 'a' ? pngBytes(640, 360) : pngBytes(300, 1200), set },
    { name: `a-clip-with-a-rather-long-name-${set}.mp4`, bytes: randomBytesWithHeader('video/mp4', 64 << 10), set },
  ]);
  for (const f of files) {
    f.path = join(dir, f.name);
    await writeFile(f.path, f.bytes);
  }

  const token = await spool.tokenFor('gallery');
  const page = await signedInPage(browser, spool.url, token);
  await page.setInputFiles('#files', files.map((f) => f.path));
  const card = (f) => page.locator(`#gallery li.media[data-file-name="${f.name}"]`);
  for (const f of files) {
    await waitForAttribute(card(f).locator('.media-status'), 'data-status', 'READY', `${f.name} READY in the gallery`);
  }

  const desktop = { width: 1280, height: 800 };
  const phone = { width: 390, height: 844 };
  const problems = [];
  for (const [label, viewport] of Object.entries({ desktop, phone })) {
    await page.setViewportSize(viewport);
    for (const f of files) {
      for (const p of await cardProblems(card(f))) problems.push(`${viewport.width}×${viewport.height}: ${f.name}: ${p}`);
    }
    await page.locator('#gallery').screenshot({ path: await artifactPath(`gallery-${label}.png`) });
  }
  assert.deepEqual(problems, [], 'what of the cards a user cannot see or click');

  // Delete is clicked as a user would: Playwright's click fails when the
  // button is clipped or something else would take the click.
  const remove = async (f, viewport) => {
    await page.setViewportSize(viewport);
    await card(f).getByRole('button', { name: `Delete ${f.name}` }).click({ timeout: 5_000 });
    await card(f).waitFor({ state: 'detached' });
  };
  for (const f of files.filter((f) => f.set === 'b')) await remove(f, phone);
  for (const f of files.filter((f) => f.set === 'a')) await remove(f, desktop);
  const left = (await mustGql(spool.url, token, '{ userMedia(first: 10) { totalCount } }')).userMedia.totalCount;
  assert.equal(left, 0, 'media left on spool after deleting every card');
});

// Needs the server's processing (issue 9): until spool makes thumbnails,
// a READY image has none and its card shows the file itself.
test('uploader: an uploaded image card shows its thumbnail once READY, without a reload (needs server processing)', guarded, async (t) => {
  const browser = await openBrowser(t);
  if (!browser) return;
  t.after(() => browser.close());

  const dir = await mkdtemp(join(tmpdir(), 'spool-browser-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const name = 'thumbnailed.png';
  const path = join(dir, name);
  await writeFile(path, pngBytes(1600, 900));

  // A server of its own, processing media (the shared one does not).
  const processing = await startSpool({ user: 'thumbnails' });
  t.after(() => processing.stop());
  const token = processing.token;
  const page = await signedInPage(browser, processing.url, token);
  await page.setInputFiles('#files', [path]);
  const card = page.locator(`#gallery li.media[data-file-name="${name}"]`);
  await waitForAttribute(card.locator('.media-status'), 'data-status', 'READY', `${name} READY in the gallery`);

  const media = (await mustGql(processing.url, token, `{ userMedia(first: 10) { edges { node {
    id fileName status thumbnails { width url } } } } }`)).userMedia.edges.map((e) => e.node).find((m) => m.fileName === name);
  assert.ok(media?.thumbnails.length > 0, `spool made no thumbnails of ${name}: ${JSON.stringify(media)}`);
  const thumbnailPaths = media.thumbnails.map((th) => new URL(th.url).pathname);
  const img = card.locator('.media-preview img');
  const src = await until(async () => {
    const got = await img.evaluateAll((els) => els.map((el) => el.getAttribute('src')));
    return got.length === 1 && thumbnailPaths.includes(new URL(got[0], processing.url).pathname) && got[0];
  }, `${name}'s card showing one of its thumbnails ${JSON.stringify(thumbnailPaths)}`);
  assert.match(new URL(src, processing.url).pathname, /^\/media\/[^/]+\/thumbnails\/\d+$/);
  assert.ok((await img.getAttribute('srcset')).includes(' ' + media.thumbnails[0].width + 'w'), 'srcset offers the thumbnails by width');
  // The thumbnail loads: the browser shows it, not a broken image.
  await until(() => img.evaluate((el) => el.complete && el.naturalWidth > 0), `${name}'s thumbnail loaded`);
});

test('uploader: notices never cover the type filter, on a desktop and a phone', guarded, async (t) => {
  const browser = await openBrowser(t);
  if (!browser) return;
  t.after(() => browser.close());

  const dir = await mkdtemp(join(tmpdir(), 'spool-browser-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const notes = join(dir, 'notes.txt');
  await writeFile(notes, 'not media\n');

  const page = await signedInPage(browser, spool.url, await spool.tokenFor('notices'));
  const filter = page.locator('#type-filter');
  for (const viewport of [{ width: 1280, height: 800 }, { width: 390, height: 844 }]) {
    await page.setViewportSize(viewport);
    // As the page first shows, and scrolled so that the filter is at the
    // bottom of the window and at the top, where notices may sit.
    const placements = {
      'as loaded': () => window.scrollTo(0, 0),
      'at the bottom': () => {
        const box = document.getElementById('type-filter').getBoundingClientRect();
        window.scrollBy(0, box.bottom - window.innerHeight + 8);
      },
      'at the top': () => {
        const box = document.getElementById('type-filter').getBoundingClientRect();
        window.scrollBy(0, box.top - 8);
      },
    };
    for (const [where, scroll] of Object.entries(placements)) {
      await page.evaluate(scroll);
      // A refused file makes two notices ("Uploading …", "… was refused");
      // earlier ones are dropped first, so these are the ones checked.
      await page.evaluate(() => document.getElementById('status').replaceChildren());
      await page.setInputFiles('#files', [notes]);
      await until(async () => (await page.locator('#status p').count()) === 2, 'two notices about notes.txt');
      await nextFrames(page);
      const { notices, overlaps } = await page.evaluate(() => {
        const f = document.getElementById('type-filter').getBoundingClientRect();
        const boxes = [...document.querySelectorAll('#status p')].map((p) => p.getBoundingClientRect());
        return {
          notices: boxes.length,
          overlaps: boxes.filter((n) => n.left < f.right && f.left < n.right && n.top < f.bottom && f.top < n.bottom)
            .map((n) => `notice at ${Math.round(n.left)},${Math.round(n.top)} ${Math.round(n.width)}×${Math.round(n.height)}`),
        };
      });
      assert.ok(notices > 0, 'no notice showed while checking');
      const box = await filter.boundingBox();
      assert.deepEqual(overlaps, [], `at ${viewport.width}×${viewport.height}, filter ${where} (${JSON.stringify(box)}): notices over the type filter`);
      await filter.click({ trial: true, timeout: 5_000 });
    }
    await filter.selectOption({ label: 'Videos' });
    assert.equal(await filter.inputValue(), 'VIDEO');
    await filter.selectOption({ label: 'All' });
  }
});

test('GraphiQL: a query, then a subscription that shows an upload made elsewhere', guarded, async (t) => {
  const browser = await openBrowser(t);
  if (!browser) return;
  t.after(() => browser.close());

  const token = await spool.tokenFor('grace');
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  await context.addInitScript((value) => localStorage.setItem('spool.token', value), token);
  const page = await context.newPage();
  page.setDefaultTimeout(guardMs);
  await page.goto(`${spool.url}/graphiql`);
  await page.locator('.graphiql-query-editor .monaco-editor').waitFor();

  const execute = page.locator('button.graphiql-execute-button');
  const response = page.locator('.graphiql-response');
  const responseText = async () => (await response.innerText()).replace(/\u00a0/g, ' ');

  // The first example tab asks who the token belongs to.
  await selectTab(page, 'Me', 'query Me');
  await execute.click();
  await until(async () => (await responseText()).includes('"name": "grace"'), 'GraphiQL to show me.name "grace"');

  // An unfinished upload is in myUploads' opening snapshot: its arrival
  // says the subscription is live before anything is sent.
  const bytes = pngBytes(48, 48);
  const [upload] = (await mustGql(spool.url, token, INIT_BATCH, {
    input: { files: [{ fileName: 'from-node.png', size: bytes.length, mimeType: 'image/png' }] },
  })).initBatch.uploads;
  await selectTab(page, 'MyUploads', 'subscription MyUploads');
  await execute.click();
  await waitForAttribute(execute, 'aria-label', 'Stop query (Ctrl-Enter)', 'the subscription to start');
  await until(async () => {
    const text = await responseText();
    return text.includes(upload.id) && text.includes('"INITIALIZED"');
  }, `myUploads' snapshot with ${upload.id} INITIALIZED in GraphiQL`);

  for (const chunk of upload.chunkUrls) await putChunk(chunk, bytes);
  await mustGql(spool.url, token, COMPLETE, { uploadId: upload.id });
  await until(async () => {
    const text = await responseText();
    return text.includes(upload.id) && text.includes('"COMPLETED"');
  }, `${upload.id} COMPLETED in GraphiQL's response pane`);
  // The example selects mediaStatus: the file's check arrives too.
  await until(async () => (await responseText()).includes('"mediaStatus": "READY"'),
    `${upload.id}'s mediaStatus READY in GraphiQL's response pane`);
  await page.screenshot({ path: await artifactPath('graphiql.png') });
  await execute.click(); // stops the subscription
  await waitForAttribute(execute, 'aria-label', 'Execute query (Ctrl-Enter)', 'the subscription to stop');
});

// cardProblems lists what of a gallery card a user could not see or
// click: its date, its Delete button or (a video's) player outside the
// card's box (which clips what overflows it), or under something else at
// its centre; and content wider than the card.
async function cardProblems(card) {
  return card.evaluate((li) => {
    const problems = [];
    const round = (r) => `${Math.round(r.left)}..${Math.round(r.right)} × ${Math.round(r.top)}..${Math.round(r.bottom)}`;
    if (li.scrollWidth > li.clientWidth + 1) {
      problems.push(`its content is ${li.scrollWidth} px wide, the card ${li.clientWidth} px`);
    }
    const parts = { date: li.querySelector('time'), 'Delete button': li.querySelector('.media-delete') };
    if (li.dataset.mediaType === 'VIDEO') parts.player = li.querySelector('video');
    for (const [what, el] of Object.entries(parts)) {
      if (!el) {
        problems.push(`no ${what}`);
        continue;
      }
      // The window, not the element, is scrolled: scrollIntoView would
      // also scroll the card's clipped content and hide what is cut.
      const first = el.getBoundingClientRect();
      window.scrollBy(0, first.top + first.height / 2 - window.innerHeight / 2);
      const box = li.getBoundingClientRect();
      // Each box of it: a date may wrap onto two lines.
      for (const r of el.getClientRects()) {
        const inside = r.width > 0 && r.height > 0 && r.left >= box.left - 0.5 && r.right <= box.right + 0.5 &&
          r.top >= box.top - 0.5 && r.bottom <= box.bottom + 0.5;
        if (!inside) problems.push(`its ${what} (${round(r)}) is not inside the card (${round(box)})`);
        const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
        if (!hit || !el.contains(hit)) problems.push(`at its ${what}'s centre is ${hit ? hit.outerHTML.slice(0, 80) : 'nothing'}`);
      }
      if (el.getClientRects().length === 0) problems.push(`its ${what} is not shown`);
    }
    return problems;
  });
}

// nextFrames waits until the page has drawn twice: whatever it does on
// scroll or resize has run by then.
function nextFrames(page) {
  return page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))));
}

// limitUpload caps the page's upload rate through DevTools' network
// emulation (which throttles XHR bodies too); -1 lifts the cap.
function limitUpload(cdp, bytesPerSecond) {
  return cdp.send('Network.emulateNetworkConditions', {
    offline: false,
    latency: 0,
    downloadThroughput: -1,
    uploadThroughput: bytesPerSecond,
  });
}

// recordProgressBars records every aria-valuenow each upload row shows,
// as a MutationObserver in the page sees it, through reloads. Rows not
// yet tied to an upload (no data-upload-id, shown while spool plans
// them) are left out: their 0 says nothing of spool's progress.
async function recordProgressBars(page) {
  const samples = [];
  const marks = new Map();
  await page.exposeFunction('__spoolTestBar', (name, value) => {
    if (samples.findLast((s) => s.name === name)?.value !== value) samples.push({ name, value });
  });
  await page.addInitScript(() => {
    const report = (li) => {
      const bar = li.querySelector('[role=progressbar]');
      if (li.dataset.uploadId && bar) window.__spoolTestBar(li.dataset.fileName, Number(bar.getAttribute('aria-valuenow')));
    };
    new MutationObserver((mutations) => {
      for (const m of mutations) {
        const nodes = m.type === 'attributes' ? [m.target] : [...m.addedNodes];
        for (const node of nodes) {
          if (!(node instanceof Element)) continue;
          const row = node.closest('li.upload');
          if (row) report(row);
          else node.querySelectorAll('li.upload').forEach(report);
        }
      }
    }).observe(document, {
      subtree: true,
      childList: true,
      attributes: true,
      attributeFilter: ['aria-valuenow', 'data-upload-id'],
    });
  });
  return {
    mark: (label) => marks.set(label, samples.length),
    /** aria-valuenow values of name, all or those before the mark. */
    values: (name, beforeMark) => {
      const end = beforeMark ? marks.get(beforeMark) : samples.length;
      return samples.slice(0, end).filter((s) => s.name === name).map((s) => s.value);
    },
  };
}

// watchChunkPuts counts the page's PUTs to the data plane since reset(),
// and the statuses spool answered them with.
function watchChunkPuts(page) {
  let seen = [];
  const chunkOf = (req) => {
    if (req.method() !== 'PUT') return null;
    const m = new URL(req.url()).pathname.match(/^\/uploads\/([^/]+)\/chunks\/(\d+)$/);
    return m && { uploadId: decodeURIComponent(m[1]), index: Number(m[2]) };
  };
  page.on('request', (req) => {
    const chunk = chunkOf(req);
    if (chunk) seen.push({ ...chunk, req });
  });
  const answers = new Map();
  page.on('response', (res) => {
    if (chunkOf(res.request())) answers.set(res.request(), res.status());
  });
  return {
    reset: () => { seen = []; },
    count: () => seen.length,
    indexes: (uploadId) => seen.filter((p) => p.uploadId === uploadId).map((p) => p.index).sort((a, b) => a - b),
    /** The statuses of uploadId's PUTs that were answered, in the order sent. */
    answers: (uploadId) => seen.filter((p) => p.uploadId === uploadId && answers.has(p.req)).map((p) => answers.get(p.req)),
  };
}

// signedInPage opens the uploader of the spool at url, signed in with
// token (kept from an earlier visit, as the page stores it).
async function signedInPage(browser, url, token) {
  const context = await browser.newContext();
  await context.addInitScript((value) => localStorage.setItem('spool.token', value), token);
  const page = await context.newPage();
  page.setDefaultTimeout(guardMs);
  await page.goto(`${url}/`);
  await page.locator('#app').waitFor();
  return page;
}

// foreignToken makes a token the way `spool token` does, but with another
// data directory's secret: well formed, and not one this spool signed.
async function foreignToken() {
  const dir = await mkdtemp(join(tmpdir(), 'spool-other-'));
  try {
    const { stdout } = await promisify(execFile)(spool.binary, ['token', '--user', 'alice', '--data-dir', dir]);
    return stdout.trim();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function uploadState(id) {
  const upload = (await mustGql(spool.url, spool.token, UPLOAD_STATE, { id })).upload;
  assert.ok(upload, `upload ${id} not found`);
  return upload;
}

// receivedChunks asks the data plane which chunks spool holds
// (Spool-Received-Chunks: "0-2,4").
async function receivedChunks(id) {
  const res = await fetch(`${spool.url}/uploads/${encodeURIComponent(id)}`, {
    method: 'HEAD',
    headers: { Authorization: `Bearer ${spool.token}` },
  });
  assert.equal(res.status, 200, `HEAD /uploads/${id}`);
  const ranges = res.headers.get('Spool-Received-Chunks') ?? '';
  return ranges.split(',').filter(Boolean).flatMap((part) => {
    const [from, to = from] = part.split('-').map(Number);
    return range(to - from + 1).map((i) => from + i);
  });
}

// assertControlsNamed checks, with the accessible names Chromium itself
// computes, that every input, select and button a user can reach
// (hidden ones are left out of the accessibility tree) has a name.
async function assertControlsNamed(cdp, where) {
  const { result } = await cdp.send('Runtime.evaluate', {
    expression: `[...document.querySelectorAll('input, select, textarea, button, [role=button]')]`,
  });
  const { result: props } = await cdp.send('Runtime.getProperties', { objectId: result.objectId, ownProperties: true });
  const elements = props.filter((p) => /^\d+$/.test(p.name)).map((p) => p.value.objectId);
  const unnamed = [];
  let named = 0;
  for (const objectId of elements) {
    const { nodes } = await cdp.send('Accessibility.getPartialAXTree', { objectId, fetchRelatives: false });
    const node = nodes[0];
    if (!node || node.ignored) continue;
    if (node.name?.value?.trim()) {
      named++;
      continue;
    }
    const { result: html } = await cdp.send('Runtime.callFunctionOn', {
      objectId,
      functionDeclaration: 'function () { return this.outerHTML.slice(0, 160); }',
      returnByValue: true,
    });
    unnamed.push(`${node.role?.value}: ${html.value}`);
  }
  await cdp.send('Runtime.releaseObject', { objectId: result.objectId });
  assert.deepEqual(unnamed, [], `controls without an accessible name on ${where}`);
  assert.ok(named > 0, `no controls found on ${where}`);
}

async function assertProgressBars(page) {
  const bars = await page.locator('li.upload [role=progressbar]').evaluateAll((els) => els.map((el) => ({
    label: el.getAttribute('aria-label'),
    now: el.getAttribute('aria-valuenow'),
    min: el.getAttribute('aria-valuemin'),
    max: el.getAttribute('aria-valuemax'),
  })));
  assert.ok(bars.length > 0, 'upload rows have progress bars');
  for (const bar of bars) {
    assert.ok(bar.label, `a progress bar without aria-label: ${JSON.stringify(bar)}`);
    assert.equal(bar.min, '0', `${bar.label}: aria-valuemin`);
    assert.equal(bar.max, '100', `${bar.label}: aria-valuemax`);
    assert.ok(/^\d+$/.test(bar.now ?? '') && Number(bar.now) <= 100, `${bar.label}: aria-valuenow ${bar.now}`);
  }
}

// tabTo presses Tab from the top of the page until one of ids has the
// focus, and returns it.
async function tabTo(page, ids) {
  const path = [];
  for (let i = 0; i < 30; i++) {
    await page.keyboard.press('Tab');
    const id = await page.evaluate(() => document.activeElement?.id || document.activeElement?.tagName);
    path.push(id);
    if (ids.includes(id)) return id;
  }
  assert.fail(`Tab never reached ${ids.join(' or ')}; focus went ${path.join(' → ')}`);
}

// selectTab opens GraphiQL's example tab label and waits until its
// operation is in the editor and GraphiQL has parsed it: it re-reads the
// operation name on a 100 ms debounce, and executing sooner sends the
// previous tab's name. A page timer set after the change fires after it.
async function selectTab(page, label, operation) {
  await page.locator('.graphiql-tab .graphiql-tab-button', { hasText: new RegExp(`^${label}$`) }).click();
  await until(async () => (await page.locator('.graphiql-query-editor .view-lines').innerText()).replace(/\u00a0/g, ' ').includes(operation),
    `the ${label} tab's operation in GraphiQL's editor`);
  await page.evaluate(() => new Promise((resolve) => setTimeout(resolve, 300)));
}

async function galleryNames(page) {
  if (await page.locator('#gallery[aria-busy]').count()) return null;
  return (await page.locator('#gallery li.media').evaluateAll((lis) => lis.map((li) => li.dataset.fileName))).sort().join();
}

async function waitForAttribute(locator, name, want, what) {
  let got;
  await until(async () => {
    const values = await locator.evaluateAll((els, attr) => els.map((el) => el.getAttribute(attr)), name);
    got = values.length === 1 ? values[0] : `${values.length} elements: ${JSON.stringify(values)}`;
    return got === want;
  }, `${what} (${name}="${want}")`, () => `; last saw ${name}="${got}"`);
}

// until polls check until it returns something truthy, and returns that;
// after guardMs it fails saying what never happened.
async function until(check, what, detail = () => '') {
  const deadline = Date.now() + guardMs;
  for (;;) {
    const got = await check();
    if (got) return got;
    if (Date.now() > deadline) assert.fail(`gave up waiting ${guardMs / 1000} s for ${what} ${detail()}`.trim());
    await new Promise((r) => setTimeout(r, 100));
  }
}

function range(n) {
  return Array.from({ length: n }, (_, i) => i);
}

function sha256(bytes) {
  return createHash('sha256').update(bytes).digest('hex');
}
