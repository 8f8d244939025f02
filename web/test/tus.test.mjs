// Proofs that tus-js-client, unmodified, uploads to spool's tus 1.0
// endpoint at /files/ (issue 12): a 40 MiB video in small chunks, aborted
// mid-request and resumed from its stored URL; a PATCH whose connection
// drops mid-body, and the resumption where its bytes end; four partial
// uploads joined by concatenation; checksums, right and wrong; graphql-ws
// subscribers watching a tus upload's progress live; and the refusals
// (no token, no filetype, another user's upload). Every file is
// downloaded afterwards through the MediaFile that Spool-Media-Id names,
// and compared byte for byte.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { createClient } from 'graphql-ws';
import { crc32 } from 'hash-wasm';
import * as tus from 'tus-js-client';
import WebSocket from 'ws';

import { assertNeverBackwards, subscribe } from './support/progress.mjs';
import { mustGql, randomBytesWithHeader, startSpool } from './support/spool.mjs';

const MiB = 1 << 20;
// A guard for a whole test, so that a hung request fails instead of
// hanging the run (support/progress.mjs guards each wait).
const guarded = { timeout: 120_000 };

// spool stores tus bytes in its own 5 MiB chunks; the clients here send
// 1.5 MiB PATCHes, which do not divide them, so PATCHes end mid-chunk and
// chunks end mid-PATCH.
const spoolChunk = 5 * MiB;
const tusChunk = 1.5 * MiB;
const spoolArgs = ['--single-threshold', '5MiB', '--chunk-size', '5MiB', '--media-processing=false'];
// CRC-32C's (Castagnoli's) polynomial, reversed, as hash-wasm's crc32 takes it.
const crc32cPolynomial = 0x82f63b78;

const MEDIA = `query ($id: ID!) {
  node(id: $id) { ... on MediaFile { id fileName mimeType fileSize status url } }
}`;
const PROGRESS_FIELDS = 'uploadId status uploadedBytes totalBytes percent mediaId mediaStatus error';
const MY_UPLOADS = `subscription { myUploads { ${PROGRESS_FIELDS} } }`;
const UPLOAD_PROGRESS = `subscription ($uploadId: ID!) { uploadProgress(uploadId: $uploadId) { ${PROGRESS_FIELDS} } }`;

let spool;
let endpoint;
before(async () => {
  spool = await startSpool({ args: spoolArgs });
  endpoint = `${spool.url}/files/`;
});
after(async () => {
  await spool?.stop();
});

test('a 40 MiB video in 1.5 MiB PATCHes, aborted mid-request, resumed from its stored URL, downloads byte-exact', guarded, async (t) => {
  const token = await spool.tokenFor('tus-resume');
  const video = randomBytesWithHeader('video/mp4', 40 * MiB);
  const dir = await mkdtemp(join(tmpdir(), 'spool-tus-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  // tus-js-client's own URL store for Node: where a resumable client
  // keeps the upload URL across restarts.
  const urlStoragePath = join(dir, 'tus-urls.json');
  await writeFile(urlStoragePath, '{}');
  const urlStorage = new tus.FileUrlStorage(urlStoragePath);
  const options = {
    endpoint,
    chunkSize: tusChunk,
    retryDelays: [],
    urlStorage,
    removeFingerprintOnSuccess: true,
    headers: { Authorization: `Bearer ${token}` },
    metadata: { filename: 'clip.mp4', filetype: 'video/mp4' },
  };

  // First run: abort inside the PATCH that follows the sixth accepted one
  // (9 MiB in), once that PATCH has begun sending.
  let acceptedBeforeAbort = 0;
  let patchesAccepted = 0;
  let aborted;
  const first = new tus.Upload(video, {
    ...options,
    onChunkComplete: (_size, accepted) => {
      acceptedBeforeAbort = accepted;
      patchesAccepted++;
    },
    onProgress: (sent) => {
      if (aborted || patchesAccepted < 6 || sent <= acceptedBeforeAbort) return;
      aborted = first.abort();
    },
  });
  const firstRun = runUpload(first);
  await until(() => {
    if (firstRun.state() === 'failed') throw firstRun.error();
    assert.notEqual(firstRun.state(), 'succeeded', 'the first run finished before it could be aborted');
    return aborted !== undefined;
  }, 'the first run to reach its seventh PATCH and abort');
  await aborted;
  assert.equal(await Promise.race([firstRun.settled, settledSoon()]), 'pending',
    'an aborted tus upload neither succeeds nor fails');
  assert.ok(first.url?.startsWith(endpoint), `the upload URL ${first.url} is under ${endpoint}`);
  assert.equal(acceptedBeforeAbort, 6 * tusChunk, 'bytes accepted before the abort');

  // Second run, as a restarted client: a new Upload of the same bytes finds
  // the stored URL and resumes from the offset spool's HEAD reports.
  const resumedPatches = [];
  const heads = [];
  const second = new tus.Upload(video, {
    ...options,
    onBeforeRequest: (req) => {
      if (req.getMethod() === 'PATCH') resumedPatches.push(Number(req.getHeader('Upload-Offset')));
      if (req.getMethod() === 'POST') assert.fail('the resumed client created a new upload instead of resuming');
    },
    onAfterResponse: (req, res) => {
      if (req.getMethod() === 'HEAD') heads.push({ status: res.getStatus(), offset: Number(res.getHeader('Upload-Offset')) });
    },
  });
  const previous = await second.findPreviousUploads();
  assert.equal(previous.length, 1, 'uploads stored for this file');
  assert.equal(previous[0].uploadUrl, first.url);
  second.resumeFromPreviousUpload(previous[0]);
  const { lastResponse } = await runUpload(second).settled;

  assert.equal(second.url, first.url, 'the same upload, resumed');
  assert.equal(heads.length, 1, `HEADs: ${JSON.stringify(heads)}`);
  const [{ status, offset: resumedAt }] = heads;
  assert.equal(status, 200);
  // What spool says it holds is at least what it had accepted before the
  // broken PATCH (nothing acknowledged is lost to spool's own 5 MiB chunk
  // boundaries) and at most that PATCH's end. So the client sends again
  // at most the broken PATCH's bytes, and nothing it had been told landed.
  assert.ok(resumedAt >= acceptedBeforeAbort && resumedAt <= acceptedBeforeAbort + tusChunk,
    `resumed at ${resumedAt}, want between ${acceptedBeforeAbort} and ${acceptedBeforeAbort + tusChunk}`);
  assert.equal(resumedPatches[0], resumedAt, 'the first resumed PATCH starts where HEAD said');
  const resent = sentBytes(resumedPatches, video.length, tusChunk);
  assert.equal(resent, video.length - resumedAt, 'bytes sent after resuming: exactly what spool lacked');
  t.diagnostic(`aborted after ${acceptedBeforeAbort} accepted bytes; spool kept ${resumedAt - acceptedBeforeAbort} ` +
    `bytes of the broken PATCH; ${resumedPatches.length} PATCHes (${resent} bytes) after resuming`);

  const media = await mediaOf(token, lastResponse, second.url);
  assert.equal(media.fileName, 'clip.mp4');
  assert.equal(media.mimeType, 'video/mp4');
  assert.equal(media.fileSize, video.length);
  await assertDownloads(token, media, video);
});

test('a PATCH cut off mid-body: spool keeps exactly the bytes that arrived, across its chunk boundary, and tus-js-client resumes there', guarded, async (t) => {
  const token = await spool.tokenFor('tus-cut');
  const video = randomBytesWithHeader('video/mp4', 8 * MiB);
  const created = await tusRequest(token, endpoint, 'POST', {
    'Upload-Length': String(video.length),
    'Upload-Metadata': `filename ${b64('cut.mp4')},filetype ${b64('video/mp4')}`,
  });
  assert.equal(created.status, 201);
  const url = new URL(created.headers.get('Location'), endpoint).href;
  const start = tusChunk;
  const first = await tusRequest(token, url, 'PATCH',
    { 'Upload-Offset': '0', 'Content-Type': 'application/offset+octet-stream' }, video.subarray(0, start));
  assert.equal(first.status, 204);

  // A PATCH that declares 6 MiB and delivers 4 MiB and a bit, then its
  // connection closes: the bytes run past spool's first chunk and end in
  // the middle of its second.
  const delivered = 4 * MiB + 12_345;
  const want = start + delivered;
  assert.ok(want > spoolChunk && want % spoolChunk !== 0);
  const cut = await cutPatch(token, url, start, video.subarray(start, start + 6 * MiB), delivered);
  assert.ok(cut.status >= 400, `the cut PATCH's answer: ${cut.status} ${cut.text}`);
  t.diagnostic(`the cut PATCH's answer: ${cut.status} ${cut.text.trim()}`);
  assert.equal(await headOffset(token, url), want, 'HEAD after the cut PATCH: every byte it delivered');

  const patches = [];
  const resumed = new tus.Upload(video, {
    endpoint,
    uploadUrl: url,
    chunkSize: tusChunk,
    retryDelays: [],
    headers: { Authorization: `Bearer ${token}` },
    onBeforeRequest: (req) => { if (req.getMethod() === 'PATCH') patches.push(Number(req.getHeader('Upload-Offset'))); },
  });
  const { lastResponse } = await runUpload(resumed).settled;
  assert.equal(patches[0], want, 'tus-js-client resumes where the cut PATCH ended');
  assert.equal(sentBytes(patches, video.length, tusChunk), video.length - want);
  await assertDownloads(token, await mediaOf(token, lastResponse, url), video);
});

test('parallelUploads: 4 sends four partial uploads, joined by concatenation into one MediaFile, byte-exact', guarded, async (t) => {
  const token = await spool.tokenFor('tus-parallel');
  // An odd size: the four parts are not multiples of anything.
  const video = randomBytesWithHeader('video/mp4', 24 * MiB + 12_345);
  const posts = [];
  const upload = new tus.Upload(video, {
    endpoint,
    chunkSize: tusChunk,
    parallelUploads: 4,
    retryDelays: [],
    headers: { Authorization: `Bearer ${token}` },
    metadata: { filename: 'joined.mp4', filetype: 'video/mp4' },
    onBeforeRequest: (req) => {
      if (req.getMethod() === 'POST') posts.push(req.getHeader('Upload-Concat'));
    },
  });
  const { lastResponse } = await runUpload(upload).settled;

  assert.deepEqual(posts.slice(0, 4), Array(4).fill('partial'), `creation requests: ${JSON.stringify(posts)}`);
  assert.equal(posts.length, 5);
  assert.match(posts[4], /^final;/);
  assert.equal(posts[4].split(' ').length, 4, `the final POST names the four parts: ${posts[4]}`);
  const media = await mediaOf(token, lastResponse, upload.url);
  assert.equal(media.fileName, 'joined.mp4');
  assert.equal(media.fileSize, video.length);
  await assertDownloads(token, media, video);
  t.diagnostic(`final upload ${upload.url}; ${posts[4]}`);
});

test('Upload-Checksum: right sha1, md5, sha256 and crc32c pass; a wrong one is 460 and leaves the offset', guarded, async () => {
  const token = await spool.tokenFor('tus-checksum');
  const video = randomBytesWithHeader('video/mp4', 8 * MiB);
  const algorithms = ['sha1', 'md5', 'sha256', 'crc32c'];
  const sent = [];
  // tus-js-client has no checksum option: each PATCH gets its
  // Upload-Checksum from the bytes it carries (offset and chunk size say
  // which), through the onBeforeRequest hook a client app would use.
  const withChecksums = (corruptAt) => async (req) => {
    if (req.getMethod() !== 'PATCH') return;
    const offset = Number(req.getHeader('Upload-Offset'));
    const body = video.subarray(offset, offset + tusChunk);
    const algorithm = algorithms[sent.length % algorithms.length];
    const sum = await checksum(algorithm, body);
    if (offset === corruptAt) sum[0] ^= 0xff;
    req.setHeader('Upload-Checksum', `${algorithm} ${sum.toString('base64')}`);
    sent.push({ offset, algorithm, corrupt: offset === corruptAt });
  };
  const options = {
    endpoint,
    chunkSize: tusChunk,
    retryDelays: [],
    headers: { Authorization: `Bearer ${token}` },
    metadata: { filename: 'summed.mp4', filetype: 'video/mp4' },
  };

  const corruptAt = 2 * tusChunk;
  const first = new tus.Upload(video, { ...options, onBeforeRequest: withChecksums(corruptAt) });
  const err = await runUpload(first).settled.then(
    () => assert.fail('an upload with a wrong checksum succeeded'),
    (e) => e,
  );
  assert.equal(err.originalResponse?.getStatus(), 460, `want 460 Checksum Mismatch, got ${err.message}`);
  assert.deepEqual(sent.map((s) => s.algorithm), ['sha1', 'md5', 'sha256'], 'two right PATCHes, then a wrong one');
  assert.equal(await headOffset(token, first.url), corruptAt, 'the offset after the refused PATCH');
  // An algorithm spool does not offer is a bad request, not a mismatch;
  // OPTIONS (no token needed) lists the ones it does.
  const sha512 = await tusRequest(token, first.url, 'PATCH', {
    'Upload-Offset': String(corruptAt),
    'Content-Type': 'application/offset+octet-stream',
    'Upload-Checksum': `sha512 ${createHash('sha512').update(video.subarray(corruptAt, corruptAt + tusChunk)).digest('base64')}`,
  }, video.subarray(corruptAt, corruptAt + tusChunk));
  assert.equal(sha512.status, 400, 'a sha512 Upload-Checksum');
  assert.equal(await headOffset(token, first.url), corruptAt, 'the offset after the sha512 PATCH');
  const discovery = await fetch(endpoint, { method: 'OPTIONS' });
  assert.ok([200, 204].includes(discovery.status), `OPTIONS without a token: ${discovery.status}`);
  assert.deepEqual(discovery.headers.get('Tus-Checksum-Algorithm')?.split(',').sort(), [...algorithms].sort());
  assert.match(discovery.headers.get('Tus-Extension') ?? '', /(^|,)checksum(,|$)/);

  // The same client resumes; every PATCH from here on carries a right checksum.
  const second = new tus.Upload(video, { ...options, uploadUrl: first.url, onBeforeRequest: withChecksums(-1) });
  const { lastResponse } = await runUpload(second).settled;
  assert.equal(sent[3].offset, corruptAt, 'the refused bytes are sent again, from the same offset');
  assert.ok(sent.slice(3).every((s) => !s.corrupt));
  assert.deepEqual(new Set(sent.filter((s) => !s.corrupt).map((s) => s.algorithm)), new Set(algorithms), 'every algorithm passed');
  await assertDownloads(token, await mediaOf(token, lastResponse, second.url), video);
});

test('myUploads and uploadProgress over graphql-ws show a tus upload progressing live, then COMPLETED with its media id', guarded, async () => {
  const token = await spool.tokenFor('tus-live');
  const video = randomBytesWithHeader('video/mp4', 12 * MiB);
  const ws = createClient({ url: spool.wsUrl, webSocketImpl: WebSocket, connectionParams: { Authorization: `Bearer ${token}` } });
  try {
    // A user of its own: every event on this feed is this upload's.
    const feed = subscribe(ws, MY_UPLOADS, {});
    // The first PATCH waits until the new upload is on the feed (so the
    // subscription is surely live), and the one that would carry bytes
    // past 6 MiB (spool's first chunk is whole by then) until the
    // subscriber has seen progress: the events come while the upload
    // runs, not after it.
    const holdAt = 4 * tusChunk;
    let single; // uploadProgress of the upload, once myUploads names it
    const upload = new tus.Upload(video, {
      endpoint,
      chunkSize: tusChunk,
      retryDelays: [],
      headers: { Authorization: `Bearer ${token}` },
      metadata: { filename: 'live.mp4', filetype: 'video/mp4' },
      onBeforeRequest: async (req) => {
        if (req.getMethod() === 'PATCH' && Number(req.getHeader('Upload-Offset')) === 0) {
          const { uploadId } = await feed.next(() => true, 'the new upload in myUploads');
          single = subscribe(ws, UPLOAD_PROGRESS, { uploadId });
          await single.next(() => true, `the snapshot of uploadProgress(${uploadId})`);
        }
        if (req.getMethod() === 'PATCH' && Number(req.getHeader('Upload-Offset')) === holdAt) {
          await feed.next((p) => p.uploadedBytes > 0 && p.uploadedBytes <= holdAt && p.status === 'UPLOADING',
            `an UPLOADING event with between 1 and ${holdAt} bytes, before the upload goes on`);
        }
      },
    });
    const { lastResponse } = await runUpload(upload).settled;
    const mediaId = lastResponse.getHeader('Spool-Media-Id');
    assert.ok(mediaId, 'Spool-Media-Id on the response to the last PATCH');

    const done = await feed.next((p) => p.status === 'COMPLETED', 'COMPLETED in myUploads');
    assert.equal(done.mediaId, mediaId);
    assert.equal(done.uploadedBytes, video.length);
    assert.equal(done.totalBytes, video.length);
    assert.equal(done.percent, 100);
    await feed.next((p) => p.status === 'COMPLETED' && p.mediaStatus === 'READY', 'mediaStatus READY in myUploads');
    const ids = new Set(feed.values.map((p) => p.uploadId));
    assert.equal(ids.size, 1, `events of one upload: ${[...ids]}`);
    const partway = feed.values.filter((p) => p.uploadedBytes > 0 && p.uploadedBytes < video.length);
    assert.ok(partway.length >= 1, `progress between 0 and the end: ${JSON.stringify(feed.values)}`);
    assertNeverBackwards(feed.values);

    // uploadProgress of the same upload ends by itself, as for any upload.
    await single.ended(`uploadProgress(${done.uploadId}) to complete by itself`);
    const last = single.values.at(-1);
    assert.equal(last.status, 'COMPLETED');
    assert.equal(last.mediaId, mediaId);
    assert.equal(last.mediaStatus, 'READY');
    assertNeverBackwards(single.values);
  } finally {
    await ws.dispose();
  }
});

test('without a token, without filetype, or as another user, tus requests are refused', guarded, async () => {
  const owner = await spool.tokenFor('tus-owner');
  const other = await spool.tokenFor('tus-other');
  const video = randomBytesWithHeader('video/mp4', 2 * MiB);

  const noToken = new tus.Upload(video, { endpoint, retryDelays: [], metadata: { filename: 'a.mp4', filetype: 'video/mp4' } });
  const e1 = await runUpload(noToken).settled.then(() => assert.fail('an upload without a token succeeded'), (e) => e);
  assert.equal(e1.originalResponse?.getStatus(), 401, e1.message);

  const noType = new tus.Upload(video, {
    endpoint, retryDelays: [], headers: { Authorization: `Bearer ${owner}` }, metadata: { filename: 'a.mp4' },
  });
  const e2 = await runUpload(noType).settled.then(() => assert.fail('an upload without filetype succeeded'), (e) => e);
  assert.equal(e2.originalResponse?.getStatus(), 400, e2.message);

  // The owner's upload, half sent (plain tus requests); to another user it
  // does not exist, whatever the method.
  const created = await tusRequest(owner, endpoint, 'POST', {
    'Upload-Length': String(video.length),
    'Upload-Metadata': `filename ${b64('mine.mp4')},filetype ${b64('video/mp4')}`,
  });
  assert.equal(created.status, 201);
  const url = new URL(created.headers.get('Location'), endpoint).href;
  const patched = await tusRequest(owner, url, 'PATCH',
    { 'Upload-Offset': '0', 'Content-Type': 'application/offset+octet-stream' }, video.subarray(0, MiB));
  assert.equal(patched.status, 204);
  assert.equal(patched.headers.get('Upload-Offset'), String(MiB));
  for (const [method, headers, body] of [
    ['HEAD', {}],
    ['PATCH', { 'Upload-Offset': String(MiB), 'Content-Type': 'application/offset+octet-stream' }, video.subarray(MiB)],
    ['DELETE', {}],
  ]) {
    const res = await tusRequest(other, url, method, headers, body);
    assert.equal(res.status, 404, `${method} of another user's upload`);
  }
  assert.equal(await headOffset(owner, url), MiB, 'the owner\'s upload after the other user tried');
});

// --- helpers -------------------------------------------------------------

// runUpload starts a tus upload; settled resolves with what onSuccess gets
// ({ lastResponse }) and rejects with what onError gets.
function runUpload(upload) {
  let state = 'pending';
  let error;
  const settled = new Promise((resolve, reject) => {
    upload.options.onSuccess = (payload) => { state = 'succeeded'; resolve(payload); };
    upload.options.onError = (err) => { state = 'failed'; error = err; reject(err); };
  });
  settled.catch(() => {}); // a test that never awaits it must not crash the run
  upload.start();
  return { settled, state: () => state, error: () => error };
}

// settledSoon resolves 'pending' after a moment: raced against a promise,
// it tells whether that one settled by then.
function settledSoon() {
  return new Promise((r) => setTimeout(() => r('pending'), 200));
}

// until polls check until it returns true; a hang guard, failing after
// 30 s with what never came.
async function until(check, what) {
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`waited 30 s for ${what} in vain`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

// cutPatch sends a PATCH whose Content-Length is body's, writes only its
// first `delivered` bytes and ends the connection there, as a client whose
// link drops mid-request (spool reads an early end of the body). It
// resolves with spool's answer once spool is done with the request: a
// request for the upload made while spool still reads this one would
// interrupt it (tusd's lock release), leaving bytes that arrived unread.
function cutPatch(token, url, offset, body, delivered) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      method: 'PATCH',
      agent: false,
      headers: {
        'Tus-Resumable': '1.0.0',
        Authorization: `Bearer ${token}`,
        'Upload-Offset': String(offset),
        'Content-Type': 'application/offset+octet-stream',
        'Content-Length': String(body.length),
      },
    });
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, text }));
    });
    req.on('error', (err) => reject(new Error(`the cut PATCH ended without an answer: ${err.message}`)));
    // Half-close: everything written reaches spool, then the end.
    req.write(body.subarray(0, delivered), (err) => (err ? reject(err) : req.socket.end()));
  });
}

// sentBytes adds up the bodies of PATCHes starting at offsets, each
// chunkSize long but the last.
function sentBytes(offsets, total, chunkSize) {
  return offsets.reduce((sum, offset) => sum + Math.min(chunkSize, total - offset), 0);
}

// tusRequest sends one tus request as a client would by hand, and reads
// the answer's body to the end.
async function tusRequest(token, url, method, headers = {}, body = undefined) {
  const res = await fetch(url, { method, body, headers: { 'Tus-Resumable': '1.0.0', Authorization: `Bearer ${token}`, ...headers } });
  await res.arrayBuffer();
  return res;
}

async function headOffset(token, url) {
  const res = await tusRequest(token, url, 'HEAD');
  assert.equal(res.status, 200, `HEAD ${url}`);
  return Number(res.headers.get('Upload-Offset'));
}

function b64(text) {
  return Buffer.from(text).toString('base64');
}

// mediaOf finds the MediaFile a finished tus upload made: the id from
// Spool-Media-Id on the last response (the last PATCH, or the final POST
// of a concatenation) or else on a HEAD of the upload, then the file by
// that id over GraphQL.
async function mediaOf(token, lastResponse, uploadUrl) {
  let id = lastResponse?.getHeader('Spool-Media-Id');
  if (!id) id = (await tusRequest(token, uploadUrl, 'HEAD')).headers.get('Spool-Media-Id');
  assert.ok(id, `no Spool-Media-Id on the last response (${lastResponse?.getStatus()}) nor on a HEAD of ${uploadUrl}`);
  const media = (await mustGql(spool.url, token, MEDIA, { id })).node;
  assert.ok(media, `MediaFile ${id} not found over GraphQL`);
  assert.equal(media.id, id);
  return media;
}

async function assertDownloads(token, media, bytes) {
  const res = await fetch(new URL(media.url, spool.url), { headers: { Authorization: `Bearer ${token}` } });
  assert.equal(res.status, 200, `GET ${media.fileName}'s url`);
  const got = Buffer.from(await res.arrayBuffer());
  assert.equal(got.length, bytes.length, `${media.fileName}: bytes downloaded`);
  assert.equal(sha256(got), sha256(bytes), `${media.fileName}: the bytes spool serves are the bytes sent`);
}

function sha256(bytes) {
  return createHash('sha256').update(bytes).digest('hex');
}

// checksum is the raw digest tus's Upload-Checksum carries (base64'd).
// Node's crypto has no CRC-32C; hash-wasm (the web uploader's hasher) has.
async function checksum(algorithm, bytes) {
  if (algorithm !== 'crc32c') return createHash(algorithm).update(bytes).digest();
  return Buffer.from(await crc32(bytes, crc32cPolynomial), 'hex');
}
