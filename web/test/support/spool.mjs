// Starts a real spool binary for tests that drive it as clients do: over
// HTTP, websockets and its signed URLs. Each server gets a free port and a
// fresh data directory (SQLite, local files), and is stopped with SIGTERM.
//
//   const spool = await startSpool({ args: ['--chunk-size', '5MiB'] });
//   const body = await gql(spool.url, spool.token, '{ me { id } }');
//   await spool.stop();
//
// The binary is $SPOOL_BIN, else <repo>/bin/spool (`make build`).

import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import zlib from 'node:zlib';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const startTimeoutMs = 30_000;

/**
 * Starts `spool serve` on 127.0.0.1 and a free port, with its own data dir.
 *
 * @param {{ args?: string[], user?: string }} [options] extra serve flags;
 *   the user whose token is returned as `token`.
 * @returns {Promise<{ url: string, graphqlUrl: string, wsUrl: string,
 *   token: string, tokenFor: (user: string) => Promise<string>,
 *   dataDir: string, stop: () => Promise<void>, binary: string,
 *   log: () => string }>} url is the server's base URL (no trailing
 *   slash); graphqlUrl and wsUrl are its /graphql endpoint over HTTP and
 *   websockets.
 */
export async function startSpool({ args = [], user = 'alice' } = {}) {
  const binary = spoolBinary();
  const port = await freePort();
  const dataDir = await mkdtemp(join(tmpdir(), 'spool-test-'));
  const url = `http://127.0.0.1:${port}`;
  const env = hermeticEnv();

  const child = spawn(binary, ['serve', '--addr', `127.0.0.1:${port}`, '--data-dir', dataDir, ...args], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (b) => { output += b; });
  child.stderr.on('data', (b) => { output += b; });
  const exited = new Promise((res) => child.once('exit', (code, signal) => res({ code, signal })));
  let running = true;
  exited.then(() => { running = false; });
  // A test process that dies without calling stop() must not leave a server behind.
  const killOnExit = () => { if (running) child.kill('SIGKILL'); };
  process.once('exit', killOnExit);

  const stop = async () => {
    process.removeListener('exit', killOnExit);
    if (running) child.kill('SIGTERM');
    await exited;
    await rm(dataDir, { recursive: true, force: true });
  };

  try {
    await waitHealthy(url, exited, () => output);
  } catch (err) {
    await stop();
    throw err;
  }

  const tokenFor = async (name) => {
    try {
      const { stdout } = await promisify(execFile)(binary, ['token', '--user', name, '--data-dir', dataDir], { env });
      return stdout.trim();
    } catch (err) {
      throw new Error(`spool token --user ${name} failed: ${err.message}\n${err.stderr ?? ''}`);
    }
  };
  let token;
  try {
    token = await tokenFor(user);
  } catch (err) {
    await stop();
    throw err;
  }

  return {
    url,
    graphqlUrl: `${url}/graphql`,
    wsUrl: `ws://127.0.0.1:${port}/graphql`,
    token,
    tokenFor,
    dataDir,
    stop,
    binary,
    log: () => output,
  };
}

function spoolBinary() {
  const binary = process.env.SPOOL_BIN || join(repoRoot, 'bin', 'spool');
  if (!existsSync(binary)) {
    throw new Error(`no spool binary at ${binary}: run \`make build\` in ${repoRoot} first (or set SPOOL_BIN)`);
  }
  return binary;
}

// hermeticEnv drops the settings spool reads from the environment
// (SPOOL_*, DATABASE_URL, REDIS_URL, STORAGE_URL), so a developer's shell
// cannot point a test server at shared PostgreSQL, Redis or storage.
function hermeticEnv() {
  const env = { ...process.env };
  for (const name of Object.keys(env)) {
    if (name.startsWith('SPOOL_') || ['DATABASE_URL', 'REDIS_URL', 'STORAGE_URL'].includes(name)) {
      delete env[name];
    }
  }
  return env;
}

// freePort asks the kernel for a free port and releases it for spool (or
// a test's own server) to take. Another process could grab it in between;
// on loopback in a test run that is rare enough to accept.
export function freePort() {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => res(port));
    });
  });
}

async function waitHealthy(url, exited, log) {
  const deadline = Date.now() + startTimeoutMs;
  let exit;
  exited.then((e) => { exit = e; });
  for (;;) {
    if (exit) {
      throw new Error(`spool exited before serving (code ${exit.code}, signal ${exit.signal}); its log:\n${log()}`);
    }
    try {
      const res = await fetch(`${url}/healthz`);
      await res.arrayBuffer();
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      throw new Error(`spool at ${url} not healthy after ${startTimeoutMs / 1000} s; its log:\n${log()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

// putChunk sends a chunk's bytes (sliced from the whole file's) the way
// its ChunkURL says, and fails unless spool takes them.
export async function putChunk(chunk, fileBytes) {
  const res = await fetch(chunk.url, {
    method: chunk.method,
    headers: Object.fromEntries(chunk.headers.map((h) => [h.name, h.value])),
    body: fileBytes.subarray(Number(chunk.offset), Number(chunk.offset) + Number(chunk.size)),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`PUT chunk ${chunk.chunkIndex}: HTTP ${res.status} ${text}`);
}

/**
 * POSTs one GraphQL operation as JSON and returns the parsed body
 * ({ data, errors }). url is the server's base URL or its /graphql URL.
 * Throws if the answer is not JSON.
 */
export async function gql(url, token, query, variables = {}) {
  const endpoint = url.replace(/\/+$/, '').endsWith('/graphql') ? url : `${url.replace(/\/+$/, '')}/graphql`;
  const headers = { 'Content-Type': 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  const res = await fetch(endpoint, { method: 'POST', headers, body: JSON.stringify({ query, variables }) });
  const text = await res.text();
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`POST ${endpoint}: HTTP ${res.status}, not JSON: ${text.slice(0, 500)}`);
  }
}

/** Like gql, but returns data and fails the test if spool answered errors. */
export async function mustGql(url, token, query, variables) {
  const body = await gql(url, token, query, variables);
  assert.equal(body.errors, undefined, `${query.trim().split('\n')[0]}: ${JSON.stringify(body.errors)}`);
  return body.data;
}

/** A valid width×height RGB PNG (a gradient), as a Buffer. */
export function pngBytes(width, height) {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8); // 8-bit depth, RGB, deflate, no filter method, no interlace
  const rowLength = 1 + width * 3; // each row starts with its filter type (0, none)
  const pixels = Buffer.alloc(rowLength * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const at = y * rowLength + 1 + x * 3;
      pixels[at] = (x * 255) / Math.max(width - 1, 1);
      pixels[at + 1] = (y * 255) / Math.max(height - 1, 1);
      pixels[at + 2] = 128;
    }
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', header),
    pngChunk('IDAT', zlib.deflateSync(pixels)),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

function pngChunk(type, data) {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const typeAndData = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(typeAndData));
  return Buffer.concat([length, typeAndData, crc]);
}

// zlib.crc32 arrived in Node 20.15; earlier releases get a table.
let crcTable;
function crc32(buf) {
  if (typeof zlib.crc32 === 'function') return zlib.crc32(buf);
  crcTable ??= Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  let c = 0xffffffff;
  for (const byte of buf) c = crcTable[(c ^ byte) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

// Leading bytes that make spool's content sniffing accept a file as mime.
const magic = {
  'video/mp4': Buffer.from('\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom', 'latin1'),
  'video/quicktime': Buffer.from('\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00qt  ', 'latin1'),
  'video/webm': Buffer.from([0x1a, 0x45, 0xdf, 0xa3]),
  'audio/mpeg': Buffer.from('ID3\x04\x00\x00\x00\x00\x00\x00', 'latin1'),
  'image/jpeg': Buffer.from([0xff, 0xd8, 0xff, 0xe0]),
};

/**
 * size bytes that start like a file of type mime (video/mp4,
 * video/quicktime, video/webm, audio/mpeg, image/jpeg), then are random.
 * Enough for spool's sniffing, not a playable file.
 */
export function randomBytesWithHeader(mime, size) {
  const head = magic[mime];
  if (!head) throw new Error(`randomBytesWithHeader: no header for ${mime}; known: ${Object.keys(magic).join(', ')}`);
  if (size < head.length) throw new Error(`randomBytesWithHeader: ${size} bytes cannot hold the ${head.length}-byte header`);
  const bytes = randomBytes(size);
  head.copy(bytes, 0);
  return bytes;
}
