// Proofs that real, unmodified GraphQL clients work against a real spool:
// graphql-ws (subscriptions over graphql-transport-ws), Apollo Client 4
// with apollo-upload-client (multipart uploads, subscriptions, cursor
// pagination) and urql 6. Every test talks to one spool binary started for
// this file, each as its own user so that no test sees another's media.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { ApolloClient, ApolloLink, CombinedGraphQLErrors, InMemoryCache, gql as apolloGql } from '@apollo/client';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { getMainDefinition } from '@apollo/client/utilities';
import { Client as UrqlClient, cacheExchange, fetchExchange, subscriptionExchange } from '@urql/core';
import UploadHttpLink from 'apollo-upload-client/UploadHttpLink.mjs';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

import { Feed, assertNeverBackwards, subscribe } from './support/progress.mjs';
import { gql, mustGql, pngBytes, putChunk, randomBytesWithHeader, startSpool } from './support/spool.mjs';

const MiB = 1 << 20;
// A guard for a whole test, so that a hung request fails instead of
// hanging the run (support/progress.mjs guards each wait).
const guarded = { timeout: 120_000 };

// Files above 5 MiB go in 5 MiB chunks, so a 12 MiB video has three.
// The files these tests send are random bytes behind a media header: the
// shared server checks their bytes and derives nothing from them.
const chunkedArgs = ['--single-threshold', '5MiB', '--chunk-size', '5MiB', '--media-processing=false'];

const PROGRESS_FIELDS = `uploadId batchId status uploadedBytes totalBytes percent uploadedChunks totalChunks failedChunks mediaId mediaStatus error`;
const UPLOAD_PROGRESS = `subscription ($uploadId: ID!) { uploadProgress(uploadId: $uploadId) { ${PROGRESS_FIELDS} } }`;
const BATCH_PROGRESS = `subscription ($batchId: ID!) { batchProgress(batchId: $batchId) { ${PROGRESS_FIELDS} } }`;
const MY_UPLOADS = `subscription { myUploads { ${PROGRESS_FIELDS} } }`;
const INIT_BATCH = `mutation ($input: InitBatchInput!) {
  initBatch(input: $input) {
    id
    uploads {
      id batchId strategy totalChunks totalSize status
      chunkUrls { chunkIndex url method headers { name value } offset size }
    }
  }
}`;
const COMPLETE = `mutation ($uploadId: ID!) { complete(uploadId: $uploadId) { id fileSize mimeType status } }`;
const UPLOAD_IMAGE = `mutation ($file: Upload!) { uploadImage(file: $file) { id fileName mimeType fileSize status url } }`;
const USER_MEDIA = `query ($first: Int, $after: Cursor) {
  userMedia(first: $first, after: $after) {
    totalCount
    edges { cursor node { id fileName } }
    pageInfo { hasNextPage endCursor }
  }
}`;

let spool;
before(async () => {
  spool = await startSpool({ args: chunkedArgs });
});
after(async () => {
  await spool?.stop();
});

describe('graphql-ws', () => {
  test('uploadProgress: the snapshot, an event per chunk, then COMPLETED, the file READY, and the end', guarded, async () => {
    const token = await spool.tokenFor('ws-upload');
    const ws = wsClient(token);
    try {
      const bytes = randomBytesWithHeader('video/mp4', 12 * MiB);
      const [upload] = (await initBatch(token, [{ fileName: 'clip.mp4', size: bytes.length, mimeType: 'video/mp4' }])).uploads;
      assert.equal(upload.strategy, 'CHUNKED');
      assert.equal(upload.totalChunks, 3);

      const feed = subscribe(ws, UPLOAD_PROGRESS, { uploadId: upload.id });
      const snapshot = await feed.next(() => true, 'the snapshot of uploadProgress');
      assert.equal(snapshot.uploadId, upload.id);
      assert.equal(snapshot.status, 'INITIALIZED');
      assert.equal(snapshot.uploadedBytes, 0);
      assert.equal(snapshot.totalBytes, bytes.length);

      // One chunk at a time, each seen on the subscription before the next
      // is sent: progress arrives live, not only at the end.
      for (const chunk of upload.chunkUrls) {
        await putChunk(chunk, bytes);
        await feed.next((p) => p.uploadedChunks >= chunk.chunkIndex + 1,
          `an uploadProgress event counting chunk ${chunk.chunkIndex}`);
      }
      const media = await complete(token, upload.id);
      await feed.ended('uploadProgress to complete by itself');

      const events = feed.values;
      assertNeverBackwards(events);
      const last = events.at(-1);
      assert.equal(last.status, 'COMPLETED');
      assert.equal(last.percent, 100);
      assert.equal(last.uploadedBytes, bytes.length);
      assert.equal(last.mediaId, media.id);
      assert.equal(last.mediaStatus, 'READY', 'the last event carries the checked file');
      assert.ok(events.length >= 4, `want the snapshot and an event per chunk, got ${events.length} events`);
    } finally {
      await ws.dispose();
    }
  });

  test('batchProgress: every upload of a batch, sent in parallel, reaches COMPLETED, then the subscription ends', guarded, async () => {
    const token = await spool.tokenFor('ws-batch');
    const ws = wsClient(token);
    try {
      const video = randomBytesWithHeader('video/mp4', 12 * MiB);
      const image = pngBytes(64, 48);
      const batch = await initBatch(token, [
        { fileName: 'clip.mp4', size: video.length, mimeType: 'video/mp4' },
        { fileName: 'pic.png', size: image.length, mimeType: 'image/png' },
      ]);
      const bytesOf = new Map([[batch.uploads[0].id, video], [batch.uploads[1].id, image]]);

      const feed = subscribe(ws, BATCH_PROGRESS, { batchId: batch.id });
      for (const u of batch.uploads) {
        await feed.next((p) => p.uploadId === u.id, `the snapshot of upload ${u.id} in batchProgress`);
      }
      await Promise.all(batch.uploads.flatMap((u) => u.chunkUrls.map((c) => putChunk(c, bytesOf.get(u.id)))));
      const media = await Promise.all(batch.uploads.map((u) => complete(token, u.id)));
      await feed.ended('batchProgress to complete by itself');

      for (const [i, u] of batch.uploads.entries()) {
        const events = feed.values.filter((p) => p.uploadId === u.id);
        assert.ok(events.every((p) => p.batchId === batch.id));
        assertNeverBackwards(events);
        const last = events.at(-1);
        assert.equal(last.status, 'COMPLETED', `upload ${i}`);
        assert.equal(last.percent, 100, `upload ${i}`);
        assert.equal(last.mediaId, media[i].id, `upload ${i}`);
        assert.equal(last.mediaStatus, 'READY', `upload ${i}`);
      }
    } finally {
      await ws.dispose();
    }
  });

  test('a bad token: operations fail UNAUTHENTICATED on one connection, with no reconnecting', guarded, async () => {
    let connected = 0;
    let opened = 0;
    const ws = createClient({
      url: spool.wsUrl,
      webSocketImpl: WebSocket,
      connectionParams: { Authorization: 'Bearer not-a-token' },
      // Keep the socket after the operations end, so that any close by the
      // server (and the client's retry) would show as a second connection.
      lazy: false,
      on: { connected: () => { connected++; }, opened: () => { opened++; } },
    });
    try {
      for (const query of [MY_UPLOADS, `subscription { uploadProgress(uploadId: "upl_nope") { uploadId } }`]) {
        const feed = subscribe(ws, query, {});
        const err = await feed.ended(`${query} to fail`).then(
          () => assert.fail(`${query}: completed, want an UNAUTHENTICATED error`),
          (e) => e,
        );
        assert.equal(codeOf(err), 'UNAUTHENTICATED', `${query}: got ${JSON.stringify(err)}`);
        assert.equal(feed.values.length, 0);
      }
      // A client that reconnected on every close would have done so many
      // times by now (graphql-ws retries at once); give it the chance.
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(connected, 1, 'connected events');
      assert.equal(opened, 1, 'opened sockets');
    } finally {
      await ws.dispose();
    }
  });
});

describe('Apollo Client 4 with apollo-upload-client', () => {
  test('uploadImage sends a PNG as a multipart upload; its url returns the same bytes', guarded, async () => {
    const token = await spool.tokenFor('apollo-image');
    const apollo = apolloClient(token);
    try {
      const png = pngBytes(31, 17);
      const file = new File([png], 'tiny.png', { type: 'image/png' });
      const { data } = await apollo.client.mutate({ mutation: apolloGql(UPLOAD_IMAGE), variables: { file } });
      const media = data.uploadImage;
      assert.equal(media.__typename, 'MediaFile');
      assert.equal(media.mimeType, 'image/png');
      assert.equal(media.fileName, 'tiny.png');
      assert.equal(media.fileSize, png.length);

      const res = await fetch(media.url);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-type'), 'image/png');
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), png);
    } finally {
      await apollo.close();
    }
  });

  test('uploadImage refuses a non-image and an image over 10 MiB with coded errors', guarded, async () => {
    const token = await spool.tokenFor('apollo-refused');
    const apollo = apolloClient(token);
    try {
      const cases = [
        { what: 'a declared non-image', file: new File(['just text\n'], 'notes.txt', { type: 'text/plain' }), code: 'INVALID_TYPE' },
        {
          what: 'a video',
          file: new File([randomBytesWithHeader('video/mp4', 4096)], 'clip.mp4', { type: 'video/mp4' }),
          code: 'INVALID_TYPE',
        },
        { what: 'text posing as a PNG', file: new File(['just text, no PNG\n'], 'fake.png', { type: 'image/png' }), code: 'TYPE_MISMATCH' },
        {
          what: 'a PNG one byte over 10 MiB',
          file: new File([padTo(pngBytes(8, 8), 10 * MiB + 1)], 'big.png', { type: 'image/png' }),
          code: 'FILE_TOO_LARGE',
        },
      ];
      for (const c of cases) {
        const err = await apollo.client.mutate({ mutation: apolloGql(UPLOAD_IMAGE), variables: { file: c.file } }).then(
          (r) => assert.fail(`${c.what}: got ${JSON.stringify(r.data)}, want ${c.code}`),
          (e) => e,
        );
        assert.ok(CombinedGraphQLErrors.is(err), `${c.what}: want GraphQL errors, got ${err}`);
        assert.equal(err.errors[0].extensions?.code, c.code, `${c.what}: ${err.message}`);
      }
      assert.equal(await mediaCount(token), 0, 'media stored by refused uploads');
      const me = await gql(spool.url, token, '{ me { usedBytes } }');
      assert.equal(me.data.me.usedBytes, 0, 'bytes still reserved by refused uploads');
    } finally {
      await apollo.close();
    }
  });

  test('a multipart POST without Apollo-Require-Preflight is refused with 400 (CSRF)', guarded, async () => {
    const token = await spool.tokenFor('csrf');
    const png = pngBytes(4, 4);
    // A GraphQL multipart request (operations, map, 0), as a plain HTML
    // form on another site could send it: no custom header.
    const multipart = () => {
      const form = new FormData();
      form.append('operations', JSON.stringify({ query: UPLOAD_IMAGE, variables: { file: null } }));
      form.append('map', JSON.stringify({ 0: ['variables.file'] }));
      form.append('0', new Blob([png], { type: 'image/png' }), 'pixel.png');
      return form;
    };
    const post = (headers) => fetch(spool.graphqlUrl, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, ...headers },
      body: multipart(),
    });

    const refused = await post({});
    const message = await refused.text();
    assert.equal(refused.status, 400, message);
    assert.match(message, /Apollo-Require-Preflight/i);
    assert.equal(await mediaCount(token), 0, 'media stored by the refused request');

    // Either header lets the same request through.
    for (const header of [{ 'Apollo-Require-Preflight': 'true' }, { 'X-Apollo-Operation-Name': 'Upload' }]) {
      const res = await post(header);
      const body = await res.json();
      assert.equal(res.status, 200, JSON.stringify(body));
      assert.equal(body.errors, undefined, JSON.stringify(body.errors));
      assert.equal(body.data.uploadImage.fileSize, png.length);
    }
    assert.equal(await mediaCount(token), 2);
  });

  test('myUploads over GraphQLWsLink sees a chunked upload reach COMPLETED, then its file READY', guarded, async () => {
    const token = await spool.tokenFor('apollo-live');
    const apollo = apolloClient(token);
    try {
      const bytes = randomBytesWithHeader('video/mp4', 11 * MiB);
      const [upload] = (await initBatch(token, [{ fileName: 'live.mp4', size: bytes.length, mimeType: 'video/mp4' }])).uploads;
      assert.equal(upload.strategy, 'CHUNKED');

      const feed = new Feed();
      const subscription = apollo.client.subscribe({ query: apolloGql(MY_UPLOADS) }).subscribe({
        next: (result) => (result.error ? feed.fail(result.error) : feed.push(result.data.myUploads)),
        error: (err) => feed.fail(err),
        complete: () => feed.finish(),
      });
      try {
        // The upload is unfinished, so it is in myUploads' first events.
        await feed.next((p) => p.uploadId === upload.id, 'the unfinished upload in myUploads');
        for (const chunk of upload.chunkUrls) await putChunk(chunk, bytes);
        const media = await complete(token, upload.id);
        const done = await feed.next((p) => p.uploadId === upload.id && p.status === 'COMPLETED', 'COMPLETED in myUploads');
        assert.equal(done.__typename, 'UploadProgress');
        assert.equal(done.percent, 100);
        assert.equal(done.mediaId, media.id);
        await feed.next((p) => p.uploadId === upload.id && p.mediaStatus === 'READY', 'mediaStatus READY in myUploads');
        assertNeverBackwards(feed.values.filter((p) => p.uploadId === upload.id));
      } finally {
        subscription.unsubscribe();
      }
    } finally {
      await apollo.close();
    }
  });

  test('userMedia pages with first/after: hasNextPage, then the rest, no overlap', guarded, async () => {
    const token = await spool.tokenFor('pager');
    const created = await storeImages(token, ['a.png', 'b.png', 'c.png']);
    const apollo = apolloClient(token);
    try {
      const query = apolloGql(USER_MEDIA);
      const first = (await apollo.client.query({ query, variables: { first: 2 } })).data.userMedia;
      assert.equal(first.totalCount, 3);
      assert.equal(first.edges.length, 2);
      assert.equal(first.pageInfo.hasNextPage, true);

      const rest = (await apollo.client.query({ query, variables: { first: 2, after: first.pageInfo.endCursor } })).data.userMedia;
      assert.equal(rest.edges.length, 1);
      assert.equal(rest.pageInfo.hasNextPage, false);

      const seen = [...first.edges, ...rest.edges].map((e) => e.node.id);
      assert.equal(new Set(seen).size, seen.length, `overlapping pages: ${seen}`);
      assert.deepEqual(new Set(seen), new Set(created));
    } finally {
      await apollo.close();
    }
  });
});

describe('urql 6', () => {
  test('me, initBatch, and batchProgress seeing COMPLETED for every upload', guarded, async () => {
    const token = await spool.tokenFor('urql');
    const ws = wsClient(token);
    const client = new UrqlClient({
      url: spool.graphqlUrl,
      exchanges: [
        cacheExchange,
        fetchExchange,
        subscriptionExchange({
          forwardSubscription(request) {
            const input = { ...request, query: request.query || '' };
            return {
              subscribe(sink) {
                const unsubscribe = ws.subscribe(input, sink);
                return { unsubscribe };
              },
            };
          },
        }),
      ],
      fetchOptions: () => ({ headers: { Authorization: `Bearer ${token}` } }),
    });
    try {
      const me = await client.query('{ me { id name } }', {}).toPromise();
      assert.equal(me.error, undefined, me.error?.message);
      assert.equal(me.data.me.name, 'urql');

      const files = [pngBytes(10, 10), pngBytes(20, 20)];
      const init = await client.mutation(INIT_BATCH, {
        input: { files: files.map((f, i) => ({ fileName: `u${i}.png`, size: f.length, mimeType: 'image/png' })) },
      }).toPromise();
      assert.equal(init.error, undefined, init.error?.message);
      const batch = init.data.initBatch;
      assert.equal(batch.uploads.length, 2);

      // urql repeats the last result when a subscription ends: keep the
      // distinct events only, and assert what was seen, not how often.
      const feed = new Feed();
      const seen = new Set();
      const { unsubscribe } = client.subscription(BATCH_PROGRESS, { batchId: batch.id }).subscribe((result) => {
        if (result.error) return feed.fail(result.error);
        const key = JSON.stringify(result.data.batchProgress);
        if (!seen.has(key)) {
          seen.add(key);
          feed.push(result.data.batchProgress);
        }
      });
      try {
        for (const u of batch.uploads) {
          await feed.next((p) => p.uploadId === u.id, `the snapshot of upload ${u.id}`);
        }
        await Promise.all(batch.uploads.map((u, i) => putChunk(u.chunkUrls[0], files[i])));
        for (const u of batch.uploads) {
          const c = await client.mutation(COMPLETE, { uploadId: u.id }).toPromise();
          assert.equal(c.error, undefined, c.error?.message);
        }
        for (const u of batch.uploads) {
          const done = await feed.next((p) => p.uploadId === u.id && p.status === 'COMPLETED', `COMPLETED for upload ${u.id}`);
          assert.equal(done.percent, 100);
          assert.ok(done.mediaId, 'mediaId');
          assertNeverBackwards(feed.values.filter((p) => p.uploadId === u.id));
        }
      } finally {
        unsubscribe();
      }
    } finally {
      await ws.dispose();
    }
  });
});

// --- helpers -------------------------------------------------------------

function wsClient(token) {
  return createClient({
    url: spool.wsUrl,
    webSocketImpl: WebSocket,
    connectionParams: { Authorization: `Bearer ${token}` },
  });
}

function apolloClient(token) {
  const ws = wsClient(token);
  const isSubscription = ({ query }) => {
    const def = getMainDefinition(query);
    return def.kind === 'OperationDefinition' && def.operation === 'subscription';
  };
  const link = ApolloLink.split(
    isSubscription,
    new GraphQLWsLink(ws),
    new UploadHttpLink({
      uri: spool.graphqlUrl,
      headers: { Authorization: `Bearer ${token}`, 'Apollo-Require-Preflight': 'true' },
    }),
  );
  const client = new ApolloClient({ link, cache: new InMemoryCache() });
  return {
    client,
    close: async () => {
      client.stop();
      await ws.dispose();
    },
  };
}

// codeOf reads extensions.code from what a client reports as an error:
// an array of GraphQL errors (graphql-ws), or an error wrapping them.
function codeOf(err) {
  const errors = Array.isArray(err) ? err : err?.errors ?? [err];
  return errors[0]?.extensions?.code;
}

async function initBatch(token, files) {
  return (await mustGql(spool.url, token, INIT_BATCH, { input: { files } })).initBatch;
}

async function complete(token, uploadId) {
  return (await mustGql(spool.url, token, COMPLETE, { uploadId })).complete;
}

async function mediaCount(token) {
  return (await mustGql(spool.url, token, USER_MEDIA, { first: 1 })).userMedia.totalCount;
}

// storeImages uploads small PNGs through the data plane and returns their
// media ids.
async function storeImages(token, names) {
  const files = names.map((_, i) => pngBytes(8 + i, 8));
  const batch = await initBatch(token, names.map((fileName, i) => ({ fileName, size: files[i].length, mimeType: 'image/png' })));
  const ids = [];
  for (const [i, u] of batch.uploads.entries()) {
    await putChunk(u.chunkUrls[0], files[i]);
    ids.push((await complete(token, u.id)).id);
  }
  return ids;
}

function padTo(buf, size) {
  return Buffer.concat([buf, Buffer.alloc(size - buf.length, 0x42)]);
}
