// The per-file upload engine: it sends one file's chunks to their signed
// URLs, a few at a time, retries what fails for a passing reason, and
// completes the upload once spool has every chunk. It knows nothing of
// the page: what it does is reported through an EngineListener, and
// spool is reached only through the UploadApi it is given and a
// ChunkTransport.
import pLimit, { type LimitFunction } from "p-limit";
import pRetry from "p-retry";

export interface ChunkTarget {
  chunkIndex: number;
  url: string;
  method: string;
  headers: { name: string; value: string }[];
  offset: number;
  size: number;
  expiresAt: string;
}

/** What spool says it holds of an upload (a progress event or a PUT's answer). */
export interface ChunkProgress {
  status: string;
  uploadedChunks: number;
  totalChunks: number;
  error?: string | null;
}

export interface UploadPlan {
  id: string;
  totalChunks: number;
  /** Signed URLs of missing chunks, in chunk order; spool caps the list. */
  chunkUrls: ChunkTarget[];
  progress: ChunkProgress;
}

/** spool's GraphQL mutations; each throws a ServiceError when it fails. */
export interface UploadApi<M> {
  requestChunkUrl(uploadId: string, chunkIndex: number): Promise<ChunkTarget>;
  retry(uploadId: string): Promise<ChunkTarget[]>;
  complete(uploadId: string): Promise<M>;
  cancel(uploadId: string): Promise<void>;
}

export type EngineState<M> =
  /**
   * retrying is why a try (a chunk's, or a question to spool) failed while
   * it is tried again after a backoff; unset again once a chunk arrives.
   */
  | { kind: "running"; retrying?: string }
  /** reason (and spool's code) are set when the engine stopped by itself. */
  | { kind: "paused"; reason: string | null; code?: string }
  | { kind: "completing" }
  | { kind: "completed"; media: M }
  | { kind: "failed"; message: string; code: string }
  | { kind: "cancelled" };

export interface EngineListener<M> {
  state(state: EngineState<M>): void;
  /**
   * inFlight: bytes handed to the network but not yet acknowledged;
   * sentTotal: every byte sent so far, resends included (it only grows).
   */
  sending?(inFlight: number, sentTotal: number): void;
}

export interface ChunkResponse {
  status: number;
  body: unknown;
  /** The Retry-After header, in seconds, when the answer had one. */
  retryAfter?: number;
}

/**
 * Sends one chunk's bytes as target says (its url, method and headers;
 * the engine slices body by its offset and size), reports the bytes sent
 * so far through onSent, and rejects with signal.reason when aborted.
 * It answers with the HTTP status and the parsed JSON body, if any.
 */
export type ChunkTransport = (
  target: ChunkTarget,
  body: Blob,
  signal: AbortSignal,
  onSent: (loaded: number) => void,
) => Promise<ChunkResponse>;

export interface EngineOptions {
  /** Chunks in flight at once (1 to 16). */
  parallel: number;
  /** Retries per chunk after its first attempt. */
  retries?: number;
  /** First retry delay in ms; later ones double, with jitter. */
  minRetryDelay?: number;
  /** A PUT that sends nothing for this long (ms) is dropped and retried. */
  stallTimeout?: number;
  transport?: ChunkTransport;
}

/** A failure spool (or the way to it) reported, with spool's error code. */
export class ServiceError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly httpStatus = 0,
    /** How long spool asked the caller to wait before trying again (ms); 0 if it did not say. */
    readonly retryAfterMs = 0,
  ) {
    super(message);
    this.name = "ServiceError";
  }
}

/** err as a ServiceError: itself, or an unexpected failure coded INTERNAL. */
export function asServiceError(err: unknown): ServiceError {
  if (err instanceof ServiceError) return err;
  return new ServiceError(err instanceof Error ? err.message : String(err), "INTERNAL");
}

// Failures that may pass by themselves. FORBIDDEN is among them because
// the URL is signed afresh before the next attempt; RATE_LIMITED (a
// budget, or the upload's parallel PUTs, spent) and REQUEST_TIMEOUT (a
// body that stalled and was cut off) pass with the backoff.
const passingCodes = new Set([
  "NETWORK",
  "TIMEOUT",
  "UNAVAILABLE",
  "STORAGE_UNAVAILABLE",
  "INTERNAL",
  "FORBIDDEN",
  "RATE_LIMITED",
  "REQUEST_TIMEOUT",
]);

/** Whether a failure with spool's code may pass by itself (the network, spool restarting, a budget). */
export function isPassingCode(code: string): boolean {
  return passingCodes.has(code);
}

function isRetryable(err: unknown): boolean {
  return err instanceof ServiceError && isPassingCode(err.code);
}

// Statuses that say the file itself is wrong (its type, or bytes that
// differ from what was declared): sending it again cannot help.
const fileFaultStatuses = new Set([400, 413, 415]);

const statusCodes: Record<number, string> = {
  400: "CHUNK_TOO_SMALL",
  403: "FORBIDDEN",
  404: "NOT_FOUND",
  409: "ALREADY_FINISHED",
  410: "SESSION_EXPIRED",
  413: "CHUNK_TOO_LARGE",
  415: "TYPE_MISMATCH",
  416: "INVALID_CHUNK",
};

/** Turns a chunk PUT's failed answer into a ServiceError. */
function chunkError(status: number, body: unknown, retryAfter = 0): ServiceError {
  const detail = (body as { error?: { code?: unknown; message?: unknown } } | null)?.error;
  let code = typeof detail?.code === "string" ? detail.code : statusCodes[status];
  if (status === 408 || status === 429 || status >= 500) code ??= "UNAVAILABLE";
  const message =
    typeof detail?.message === "string" ? detail.message : `the chunk was refused (HTTP ${status})`;
  // A proxy's 5xx carries no code; spool's own 5xx say STORAGE_UNAVAILABLE
  // or INTERNAL. Either way it may pass.
  return new ServiceError(message, code ?? `HTTP_${status}`, status, askedWait(retryAfter));
}

/** The most of a wait spool (or a proxy) may ask for that is honoured, in ms. */
const maxAskedWait = 60_000;

/** A Retry-After of seconds, in ms, at most maxAskedWait; 0 for none or nonsense. */
export function askedWait(seconds: unknown): number {
  return typeof seconds === "number" && seconds > 0 ? Math.min(seconds * 1000, maxAskedWait) : 0;
}

/** Waits ms, or rejects with signal's reason once it aborts. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", stop);
      resolve();
    }, ms);
    const stop = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener("abort", stop, { once: true });
  });
}

const terminalStatuses = new Set(["COMPLETED", "FAILED", "CANCELLED", "EXPIRED"]);
const maxRounds = 3;
const urlMargin = 60_000; // a URL this close to expiry is signed afresh first
const defaultStallTimeout = 60_000;

/**
 * A resumable session (GCS's, for a direct SINGLE upload) takes the rest of
 * the file from the offset the store kept, as its Content-Range says; a
 * broken attempt leaves that offset behind, so the target is asked for
 * again instead of re-sent.
 */
function isResumable(target: ChunkTarget): boolean {
  return target.headers.some((h) => h.name.toLowerCase() === "content-range");
}

export function clampParallel(n: number): number {
  return Number.isFinite(n) ? Math.min(16, Math.max(1, Math.round(n))) : 4;
}

export class FileUpload<M> {
  readonly id: string;
  private readonly limit: LimitFunction;
  private readonly transport: ChunkTransport;
  private readonly targets = new Map<number, ChunkTarget>();
  /** Chunks whose resumable session broke: where to go on is asked of spool. */
  private readonly resuming = new Set<number>();
  private readonly inFlight = new Map<number, number>();
  private generation = new AbortController();
  private completing: Promise<void> | null = null;
  private current: EngineState<M> = { kind: "paused", reason: null };
  private received: number;
  private sentTotal = 0;

  constructor(
    private readonly file: Blob,
    private readonly plan: UploadPlan,
    private readonly api: UploadApi<M>,
    private readonly listener: EngineListener<M>,
    private readonly options: EngineOptions,
  ) {
    this.id = plan.id;
    this.received = plan.progress.uploadedChunks;
    this.transport = options.transport ?? xhrTransport;
    // rejectOnClear lets a pause settle the Promise.all waiting on the
    // queue, instead of leaving it pending for ever.
    this.limit = pLimit({ concurrency: clampParallel(options.parallel), rejectOnClear: true });
    for (const t of plan.chunkUrls) this.targets.set(t.chunkIndex, t);
  }

  get state(): EngineState<M> {
    return this.current;
  }

  start(): void {
    if (this.current.kind === "paused") void this.run(() => this.initialWork());
  }

  /** Aborts the PUTs in flight and schedules no more until resume(). */
  pause(): void {
    if (this.current.kind !== "running") return;
    this.stopSending();
    this.setState({ kind: "paused", reason: null });
  }

  /** Continues with fresh URLs for whatever spool is still missing. */
  resume(): void {
    if (this.current.kind === "paused") void this.run(() => this.missingWork());
  }

  /** Stops sending and cancels the upload on spool, freeing its quota. */
  async cancel(): Promise<void> {
    const kind = this.current.kind;
    if (kind === "completing" || kind === "completed" || kind === "failed" || kind === "cancelled") return;
    this.stopSending();
    try {
      await this.api.cancel(this.id);
    } catch (err) {
      this.setState({ kind: "paused", reason: `could not cancel: ${asServiceError(err).message}` });
      throw err;
    }
    this.setState({ kind: "cancelled" });
  }

  setParallel(n: number): void {
    this.limit.concurrency = clampParallel(n);
  }

  /** Takes spool's view of the upload, from a PUT's answer or a progress event. */
  noteProgress(p: ChunkProgress): void {
    this.received = p.uploadedChunks;
    const kind = this.current.kind;
    const settled = kind === "completed" || kind === "failed" || kind === "cancelled";
    if (settled) return;
    switch (p.status) {
      case "CANCELLED": // by another tab or client
        this.stopSending();
        this.setState({ kind: "cancelled" });
        return;
      case "FAILED":
      case "EXPIRED":
        this.stopSending();
        this.setState({
          kind: "failed",
          code: p.status,
          message: p.error ?? (p.status === "EXPIRED" ? "the upload expired" : "spool gave up on this upload"),
        });
        return;
      case "COMPLETED": // complete() is idempotent: it fetches the media
        void this.finish();
        return;
    }
    if (this.allReceived() && kind === "running") void this.finish();
  }

  private allReceived(): boolean {
    return this.received >= this.plan.totalChunks;
  }

  private async run(load: () => Promise<number[]>): Promise<void> {
    const generation = new AbortController();
    this.generation = generation;
    const { signal } = generation;
    this.setState({ kind: "running" });
    try {
      let work = await load();
      for (let round = 1; ; round++) {
        signal.throwIfAborted();
        if (work.length === 0 || this.allReceived()) return await this.finish();
        if (round > maxRounds) {
          throw new ServiceError(`${work.length} chunk(s) did not arrive after ${maxRounds} rounds`, "INCOMPLETE");
        }
        await Promise.all(work.map((index) => this.limit(() => this.sendChunk(index, signal))));
        signal.throwIfAborted();
        if (this.allReceived()) return await this.finish();
        // Every PUT succeeded yet spool misses chunks (one replaced
        // meanwhile, or refused after answering): ask what is missing.
        work = await this.missingWork();
      }
    } catch (err) {
      // Whoever aborted or cleared the queue (pause, cancel, finish) has
      // set the state.
      if (signal.aborted || this.completing) return;
      this.stopSending();
      this.fail(err);
    }
  }

  private async initialWork(): Promise<number[]> {
    const listed = this.plan.chunkUrls.map((t) => t.chunkIndex);
    const missing = this.plan.totalChunks - this.plan.progress.uploadedChunks;
    if (listed.length >= missing) return listed;
    // spool lists the first missing chunks only. When every chunk after
    // the last listed one is missing too, they are known without asking;
    // their URLs are requested one by one as they come up.
    const next = listed.length > 0 ? Math.max(...listed) + 1 : 0;
    const unlisted = Array.from({ length: this.plan.totalChunks - next }, (_, i) => next + i);
    if (unlisted.length === missing - listed.length) return [...listed, ...unlisted];
    return this.missingWork();
  }

  private async missingWork(): Promise<number[]> {
    const fresh = await this.retried(() => this.api.retry(this.id), this.generation.signal);
    for (const t of fresh) this.targets.set(t.chunkIndex, t);
    return fresh.map((t) => t.chunkIndex);
  }

  private async sendChunk(index: number, signal: AbortSignal): Promise<void> {
    await this.retried(async () => {
      signal.throwIfAborted();
      const target = this.resuming.has(index) ? await this.resumedTarget(index) : await this.targetFor(index);
      signal.throwIfAborted();
      if (target === null) return; // the store has the whole chunk
      const body = this.file.slice(target.offset, target.offset + target.size);
      let answer: ChunkResponse;
      const attempt = this.watchStall(signal);
      try {
        answer = await this.transport(target, body, attempt.signal, (loaded) => {
          attempt.alive();
          this.noteSent(index, loaded);
        });
      } catch (err) {
        if (isResumable(target)) this.resuming.add(index);
        // A stall is retried; the transport only saw an abort.
        if (attempt.stalled()) throw attempt.signal.reason;
        throw err;
      } finally {
        attempt.done();
        this.inFlight.delete(index);
        this.reportSending();
      }
      if (answer.status >= 200 && answer.status < 300) {
        if (this.current.kind === "running" && this.current.retrying) this.setState({ kind: "running" });
        const p = answer.body as ChunkProgress | null;
        if (p && typeof p.uploadedChunks === "number") this.noteProgress(p);
        return;
      }
      const err = chunkError(answer.status, answer.body, answer.retryAfter);
      if (isResumable(target)) this.resuming.add(index);
      else if (err.code === "FORBIDDEN") this.targets.delete(index);
      throw err;
    }, signal);
  }

  /**
   * One PUT's abort signal: it aborts with the engine's signal, or with a
   * TIMEOUT error when alive() was not called for stallTimeout ms. The
   * engine watches this, not the transport, so that every transport
   * (XHR, or another a direct upload needs) is dropped the same way.
   */
  private watchStall(signal: AbortSignal) {
    const controller = new AbortController();
    const limit = this.options.stallTimeout ?? defaultStallTimeout;
    const stop = () => controller.abort(signal.reason);
    signal.addEventListener("abort", stop, { once: true });
    let timer: ReturnType<typeof setTimeout> | undefined;
    let stalled = false;
    const alive = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        stalled = true;
        controller.abort(new ServiceError(`sending a chunk stalled: nothing went out for ${Math.round(limit / 1000)} s`, "TIMEOUT"));
      }, limit);
    };
    alive();
    return {
      signal: controller.signal,
      alive,
      stalled: () => stalled,
      done: () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", stop);
      },
    };
  }

  private retried<T>(attempt: () => Promise<T>, signal: AbortSignal): Promise<T> {
    return pRetry(attempt, {
      retries: this.options.retries ?? 5,
      factor: 2,
      minTimeout: this.options.minRetryDelay ?? 500,
      maxTimeout: 20_000,
      randomize: true,
      signal,
      shouldRetry: ({ error }) => isRetryable(error),
      onFailedAttempt: async ({ error, retriesLeft }) => {
        if (retriesLeft <= 0 || !isRetryable(error)) return;
        const e = asServiceError(error);
        // A URL signed afresh after a 403 is routine, not worth a word.
        if (e.code !== "FORBIDDEN") this.noteRetrying(e.message);
        // What spool asked for first (RATE_LIMITED says when the budget
        // has room again), then the backoff's own wait.
        if (e.retryAfterMs > 0) await pause(e.retryAfterMs, signal);
      },
      // A refusal for the user's budget, with the wait until it has room,
      // is spool pacing the upload, not failing it: tried again after that
      // wait alone, without using up a retry, so a tight budget makes an
      // upload slower rather than paused (seen from outside: 1 request
      // per 3 s paused a 4-parallel upload within 40 s).
      shouldConsumeRetry: ({ error }) => {
        const e = asServiceError(error);
        return !(e.code === "RATE_LIMITED" && e.retryAfterMs > 0);
      },
    });
  }

  /**
   * Says, while running, why a try is being made again: while spool
   * restarts or the network is down, the bar standing still would
   * otherwise be all the page shows until the retries run out.
   */
  private noteRetrying(reason: string): void {
    if (this.current.kind !== "running" || this.current.retrying === reason) return;
    this.setState({ kind: "running", retrying: reason });
  }

  /**
   * Where a broken resumable session goes on: spool asks the store what it
   * kept and lists the chunk from there, or no longer lists it when the
   * store has it whole. retry, not requestChunkUrl: a session that did
   * finish, its answer lost, must not be started again.
   */
  private async resumedTarget(index: number): Promise<ChunkTarget | null> {
    const fresh = await this.api.retry(this.id);
    this.resuming.delete(index);
    this.targets.delete(index);
    for (const t of fresh) this.targets.set(t.chunkIndex, t);
    return this.targets.get(index) ?? null;
  }

  private async targetFor(index: number): Promise<ChunkTarget> {
    const known = this.targets.get(index);
    if (known && Date.parse(known.expiresAt) - Date.now() > urlMargin) return known;
    const fresh = await this.api.requestChunkUrl(this.id, index);
    this.targets.set(index, fresh);
    return fresh;
  }

  private finish(): Promise<void> {
    if (this.completing) return this.completing;
    // Any chunk still queued is one spool already has. Those in flight
    // are left to end: spool has their bytes too, only the answer is
    // still on its way.
    this.limit.clearQueue();
    const sending = this.generation;
    const generation = new AbortController();
    this.generation = generation;
    this.setState({ kind: "completing" });
    this.completing = this.retried(() => this.api.complete(this.id), generation.signal).then(
      (media) => {
        sending.abort();
        this.setState({ kind: "completed", media });
      },
      (err: unknown) => {
        sending.abort();
        this.completing = null;
        if (!generation.signal.aborted) this.fail(err);
      },
    );
    return this.completing;
  }

  private fail(err: unknown): void {
    const e = asServiceError(err);
    if (isRetryable(e) || e.code === "UNAUTHENTICATED") {
      // Retries are used up, but the cause may pass: what spool has is
      // kept, and resume() continues from there.
      this.setState({ kind: "paused", reason: e.message, code: e.code });
      return;
    }
    if (fileFaultStatuses.has(e.httpStatus)) {
      // Sending this file again cannot succeed, so its reserved quota
      // is freed now rather than when the upload expires.
      this.api.cancel(this.id).catch(() => {});
    }
    this.setState({ kind: "failed", message: e.message, code: e.code });
  }

  private stopSending(): void {
    this.generation.abort();
    this.limit.clearQueue();
    this.inFlight.clear();
    this.reportSending();
  }

  private noteSent(index: number, loaded: number): void {
    this.sentTotal += Math.max(0, loaded - (this.inFlight.get(index) ?? 0));
    this.inFlight.set(index, loaded);
    this.reportSending();
  }

  private reportSending(): void {
    let inFlight = 0;
    for (const n of this.inFlight.values()) inFlight += n;
    this.listener.sending?.(inFlight, this.sentTotal);
  }

  private setState(next: EngineState<M>): void {
    this.current = next;
    this.listener.state(next);
  }
}

export function isTerminalStatus(status: string): boolean {
  return terminalStatuses.has(status);
}

// Headers a browser sets itself and refuses from scripts.
const browserOwnedHeaders = new Set(["content-length", "host", "connection", "accept-encoding"]);

/**
 * Sends a chunk with XMLHttpRequest rather than fetch: only XHR reports
 * how much of a request body has gone out, which is all a one-chunk
 * file can show until spool has it.
 */
const xhrTransport: ChunkTransport = (target, body, signal, onSent) =>
  new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const xhr = new XMLHttpRequest();
    const abort = () => xhr.abort();
    const settle = () => signal.removeEventListener("abort", abort);
    signal.addEventListener("abort", abort, { once: true });
    xhr.open(target.method, target.url);
    for (const h of target.headers) {
      if (!browserOwnedHeaders.has(h.name.toLowerCase())) xhr.setRequestHeader(h.name, h.value);
    }
    xhr.upload.onprogress = (e) => onSent(e.loaded);
    xhr.onload = () => {
      settle();
      let parsed: unknown = null;
      try {
        parsed = JSON.parse(xhr.responseText);
      } catch {
        // not spool's JSON (a proxy's page, or GCS's XML): status decides
      }
      const retryAfter = Number(xhr.getResponseHeader("Retry-After"));
      resolve({ status: xhr.status, body: parsed, retryAfter: retryAfter > 0 ? retryAfter : undefined });
    };
    xhr.onerror = () => {
      settle();
      reject(new ServiceError("the connection broke while sending a chunk", "NETWORK"));
    };
    xhr.onabort = () => {
      settle();
      reject(signal.reason ?? new DOMException("aborted", "AbortError"));
    };
    xhr.send(body);
  });
