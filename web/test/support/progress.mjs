// Waiting on GraphQL subscriptions in tests: a Feed collects a stream's
// values (progress events) so that a test can wait for one that matches or
// for the stream's end, with hang guards that say what never came.
//
//   const feed = subscribe(ws, 'subscription { myUploads { uploadId status } }', {});
//   await feed.next((p) => p.status === 'COMPLETED', 'COMPLETED in myUploads');

import assert from 'node:assert/strict';

// Failure guards only: how long to wait for something before failing with
// a message that says what never came. Nothing asserts a duration.
export const guardMs = 30_000;

// Feed collects a stream's values so that a test can wait for one that
// matches, and for the stream's end (done rejects if the stream errors).
export class Feed {
  values = [];
  // When each value arrived (Date.now()), to compare with what a client
  // saw on the same machine's clock.
  receivedAt = [];
  #waiters = new Set();
  #ended = false;
  #error;

  constructor() {
    this.done = new Promise((res, rej) => {
      this.#finish = res;
      this.#fail = rej;
    });
    this.done.catch(() => {}); // a test that never awaits done must not crash the run
  }

  #finish;
  #fail;

  push(value) {
    this.values.push(value);
    this.receivedAt.push(Date.now());
    for (const w of this.#waiters) w.check();
  }

  finish() {
    this.#ended = true;
    this.#finish();
    for (const w of this.#waiters) w.check();
  }

  fail(err) {
    this.#ended = true;
    this.#error = err;
    this.#fail(err);
    for (const w of this.#waiters) w.check();
  }

  /** Resolves when the stream completes, rejects when it errors; fails after guardMs. */
  ended(what) {
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(
        `waited ${guardMs / 1000} s for ${what} in vain; values so far: ${JSON.stringify(this.values)}`)), guardMs);
    });
    return Promise.race([this.done, timeout]).finally(() => clearTimeout(timer));
  }

  /** The first value, seen or to come, that matches; fails if the stream ends first. */
  next(match, what) {
    return new Promise((resolve, reject) => {
      const waiter = {
        check: () => {
          const found = this.values.find(match);
          if (found !== undefined) return settle(() => resolve(found));
          if (this.#ended) {
            return settle(() => reject(new Error(`stream ended without ${what}: ${this.#error ? JSON.stringify(this.#error) : 'completed'}; ` +
              `values: ${JSON.stringify(this.values)}`)));
          }
        },
      };
      const timer = setTimeout(() => settle(() => reject(new Error(
        `waited ${guardMs / 1000} s for ${what} in vain; values so far: ${JSON.stringify(this.values)}`))), guardMs);
      const settle = (fn) => {
        clearTimeout(timer);
        this.#waiters.delete(waiter);
        fn();
      };
      this.#waiters.add(waiter);
      waiter.check();
    });
  }
}

// subscribe runs one operation on a graphql-ws client; the Feed holds the
// operation's first root field of each result. A result carrying errors
// fails the feed, as graphql-ws's error message does.
export function subscribe(ws, query, variables) {
  const feed = new Feed();
  feed.unsubscribe = ws.subscribe({ query, variables }, {
    next: (result) => {
      if (result.errors) return feed.fail(result.errors);
      feed.push(Object.values(result.data)[0]);
    },
    error: (err) => feed.fail(err),
    complete: () => feed.finish(),
  });
  return feed;
}

export function assertNeverBackwards(events) {
  for (let i = 1; i < events.length; i++) {
    const [prev, cur] = [events[i - 1], events[i]];
    if (prev.uploadId !== cur.uploadId) continue;
    assert.ok(cur.percent >= prev.percent, `percent went from ${prev.percent} to ${cur.percent} (event ${i})`);
    assert.ok(cur.uploadedBytes >= prev.uploadedBytes, `uploadedBytes went from ${prev.uploadedBytes} to ${cur.uploadedBytes} (event ${i})`);
  }
}
