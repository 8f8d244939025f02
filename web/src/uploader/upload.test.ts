// The upload engine against a fake spool: a transport and an UploadApi
// that answer as spool would, and fake timers for backoff and stalls.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  FileUpload,
  type ChunkResponse,
  type ChunkTarget,
  type ChunkTransport,
  type EngineOptions,
  type EngineState,
  type UploadApi,
  ServiceError,
} from "./upload";

const chunkSize = 10;
const uploadId = "up1";

function chunkTarget(index: number, signature: string): ChunkTarget {
  return {
    chunkIndex: index,
    url: `https://store.test/${uploadId}/${index}?sig=${signature}`,
    method: "PUT",
    headers: [{ name: "Content-Type", value: "application/octet-stream" }],
    offset: index * chunkSize,
    size: chunkSize,
    expiresAt: "2999-01-01T00:00:00Z",
  };
}

interface Put {
  index: number;
  url: string;
  bytes: number;
  signal: AbortSignal;
  onSent: (loaded: number) => void;
}

/** The codes spool's data plane answers with these statuses. */
const answerCodes: Record<number, string> = { 403: "FORBIDDEN", 408: "REQUEST_TIMEOUT", 429: "RATE_LIMITED" };

/**
 * A spool holding totalChunks chunks of one upload. Each PUT is answered
 * by the next of answers (then 200), which may also hold it forever
 * ("hang": until aborted).
 */
function fakeSpool(totalChunks: number) {
  const received = new Set<number>();
  const puts: Put[] = [];
  const answers: (number | "hang" | { status: number; retryAfter: number })[] = [];
  const progress = () => ({ status: "UPLOADING", uploadedChunks: received.size, totalChunks });
  const transport: ChunkTransport = (target, body, signal, onSent) => {
    puts.push({ index: target.chunkIndex, url: target.url, bytes: body.size, signal, onSent });
    const next = answers.shift() ?? 200;
    return new Promise<ChunkResponse>((resolve, reject) => {
      signal.addEventListener("abort", () => reject(signal.reason), { once: true });
      if (next === "hang") return;
      const { status: answer, retryAfter } = typeof next === "number" ? { status: next, retryAfter: undefined } : next;
      if (answer === 200) received.add(target.chunkIndex);
      const body = answer === 200 ? progress() : { error: { code: answerCodes[answer], message: `HTTP ${answer}` } };
      queueMicrotask(() => resolve({ status: answer, body, retryAfter }));
    });
  };
  const api = {
    requestChunkUrl: vi.fn(async (_id: string, index: number) => chunkTarget(index, "fresh")),
    retry: vi.fn(async () =>
      Array.from({ length: totalChunks }, (_, i) => i).filter((i) => !received.has(i)).map((i) => chunkTarget(i, "retry")),
    ),
    complete: vi.fn(async () => ({ id: "media1" })),
    cancel: vi.fn(async () => {}),
  } satisfies UploadApi<{ id: string }>;
  return { received, puts, answers, transport, api };
}

function startEngine(spool: ReturnType<typeof fakeSpool>, totalChunks: number, options: Partial<EngineOptions> = {}) {
  const states: EngineState<{ id: string }>[] = [];
  const file = new Blob([new Uint8Array(totalChunks * chunkSize)]);
  const engine = new FileUpload(
    file,
    {
      id: uploadId,
      totalChunks,
      chunkUrls: Array.from({ length: totalChunks }, (_, i) => chunkTarget(i, "first")),
      progress: { status: "INITIALIZED", uploadedChunks: 0, totalChunks },
    },
    spool.api,
    { state: (s) => states.push(s) },
    { parallel: 1, retries: 3, minRetryDelay: 1_000, transport: spool.transport, ...options },
  );
  engine.start();
  return { engine, states, last: () => states.at(-1)?.kind };
}

// Lets promise callbacks run without moving the fake clock.
const settle = () => vi.advanceTimersByTimeAsync(0);

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  vi.useRealTimers();
});

describe("FileUpload", () => {
  it("retries a chunk that failed for a passing reason, after a backoff, and completes", async () => {
    const spool = fakeSpool(1);
    spool.answers.push(503);
    const { last } = startEngine(spool, 1);
    await settle();
    expect(spool.puts).toHaveLength(1);

    // The first retry waits minRetryDelay at least (twice that at most,
    // with jitter).
    await vi.advanceTimersByTimeAsync(999);
    expect(spool.puts).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1_001);
    expect(spool.puts.map((p) => p.index)).toEqual([0, 0]);
    await settle();
    expect(last()).toBe("completed");
    expect(spool.api.complete).toHaveBeenCalledTimes(1);
    expect(spool.api.requestChunkUrl).not.toHaveBeenCalled();
  });

  it("says why while it tries again, and stops saying so once a chunk arrives", async () => {
    const spool = fakeSpool(2);
    spool.answers.push(503, 503);
    const { states } = startEngine(spool, 2);
    await vi.runAllTimersAsync();

    // Two failures for one reason say it once; a 200 clears it.
    expect(states).toEqual([
      { kind: "running" },
      { kind: "running", retrying: "HTTP 503" },
      { kind: "running" },
      { kind: "completing" },
      { kind: "completed", media: { id: "media1" } },
    ]);
  });

  it("does not call a URL signed afresh after a 403 a retry", async () => {
    const spool = fakeSpool(1);
    spool.answers.push(403);
    const { states } = startEngine(spool, 1);
    await vi.runAllTimersAsync();

    expect(states.map((s) => s.kind)).toEqual(["running", "completing", "completed"]);
  });

  it("waits what spool asked for (Retry-After) before the backoff's own wait", async () => {
    const spool = fakeSpool(1);
    spool.answers.push({ status: 503, retryAfter: 5 });
    const { last } = startEngine(spool, 1);
    await settle();
    expect(spool.puts).toHaveLength(1);

    // 5 s asked, then minRetryDelay (1 s) to twice that, with jitter.
    await vi.advanceTimersByTimeAsync(5_999);
    expect(spool.puts).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1_001 + 1_000);
    expect(spool.puts).toHaveLength(2);
    await settle();
    expect(last()).toBe("completed");
  });

  it("paces itself by RATE_LIMITED's Retry-After without using up its retries", async () => {
    const spool = fakeSpool(1);
    // More refusals than the 3 retries allowed: each says when to come back.
    for (let i = 0; i < 6; i++) spool.answers.push({ status: 429, retryAfter: 2 });
    const { last } = startEngine(spool, 1);
    await settle();
    for (let put = 2; put <= 7; put++) {
      await vi.advanceTimersByTimeAsync(1_999);
      expect(spool.puts).toHaveLength(put - 1);
      await vi.advanceTimersByTimeAsync(1); // exactly the wait asked, no backoff on top
      expect(spool.puts).toHaveLength(put);
    }
    await settle();
    expect(last()).toBe("completed");
  });

  it("retries a chunk refused as RATE_LIMITED (429) or cut off as REQUEST_TIMEOUT (408), and completes", async () => {
    const spool = fakeSpool(2);
    spool.answers.push(429, 408);
    const { last } = startEngine(spool, 2);
    await vi.runAllTimersAsync();

    expect(last()).toBe("completed");
    expect(spool.puts).toHaveLength(4);
    expect(spool.api.complete).toHaveBeenCalledTimes(1);
  });

  it("asks for a freshly signed URL once after a 403, and sends the chunk there", async () => {
    const spool = fakeSpool(2);
    spool.answers.push(403);
    const { last } = startEngine(spool, 2);
    await vi.runAllTimersAsync();

    expect(last()).toBe("completed");
    expect(spool.api.requestChunkUrl.mock.calls).toEqual([[uploadId, 0]]);
    expect(spool.puts.map((p) => p.url)).toEqual([
      chunkTarget(0, "first").url,
      chunkTarget(0, "fresh").url,
      chunkTarget(1, "first").url,
    ]);
  });

  it("drops a PUT that sends nothing for stallTimeout, and sends the chunk again", async () => {
    const spool = fakeSpool(1);
    spool.answers.push("hang");
    const { last } = startEngine(spool, 1, { stallTimeout: 5_000 });
    await settle();
    const [stuck] = spool.puts;

    // Progress keeps the PUT alive: the stall is counted from the last byte.
    await vi.advanceTimersByTimeAsync(3_000);
    stuck!.onSent(4);
    await vi.advanceTimersByTimeAsync(4_999);
    expect(stuck!.signal.aborted).toBe(false);
    expect(spool.puts).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(stuck!.signal.aborted).toBe(true);
    expect(stuck!.signal.reason).toMatchObject({ code: "TIMEOUT" });

    await vi.runAllTimersAsync();
    expect(spool.puts.map((p) => p.index)).toEqual([0, 0]);
    expect(last()).toBe("completed");
  });

  it("pause aborts the PUT in flight and sends no more; resume sends only the chunks spool lacks", async () => {
    const spool = fakeSpool(4);
    spool.answers.push(200, "hang");
    const { engine, last } = startEngine(spool, 4);
    await settle();
    expect(spool.puts.map((p) => p.index)).toEqual([0, 1]);

    engine.pause();
    await settle();
    expect(last()).toBe("paused");
    expect(spool.puts[1]!.signal.aborted).toBe(true);
    await vi.advanceTimersByTimeAsync(120_000);
    expect(spool.puts).toHaveLength(2);

    engine.resume();
    await vi.runAllTimersAsync();
    expect(spool.api.retry).toHaveBeenCalledTimes(1);
    expect(spool.puts.slice(2).map((p) => p.index)).toEqual([1, 2, 3]);
    expect(spool.puts.slice(2).every((p) => p.url.endsWith("sig=retry"))).toBe(true);
    expect([...spool.received].sort()).toEqual([0, 1, 2, 3]);
    expect(last()).toBe("completed");
  });

  it("sends each chunk's bytes, sliced by the URL's offset and size", async () => {
    const spool = fakeSpool(3);
    startEngine(spool, 3);
    await vi.runAllTimersAsync();
    expect(spool.puts.map((p) => [p.index, p.bytes])).toEqual([[0, 10], [1, 10], [2, 10]]);
  });

  describe("a resumable session (direct SINGLE upload to GCS)", () => {
    const size = 30;
    const sessionTarget = (offset: number): ChunkTarget => ({
      chunkIndex: 0,
      url: "https://storage.test/upload?upload_id=session1",
      method: "PUT",
      headers: [{ name: "Content-Range", value: `bytes ${offset}-${size - 1}/${size}` }],
      offset,
      size: size - offset,
      expiresAt: "2999-01-01T00:00:00Z",
    });

    /** The store keeps kept bytes of a PUT that breaks; retryOffsets are what spool's retry reports. */
    function resumableSpool(kept: number, retryOffsets: (number | null)[]) {
      const puts: { offset: number; bytes: number; contentRange: string | undefined }[] = [];
      const transport: ChunkTransport = (target, body, _signal, onSent) => {
        puts.push({ offset: target.offset, bytes: body.size, contentRange: target.headers.find((h) => h.name === "Content-Range")?.value });
        if (puts.length === 1) {
          onSent(kept);
          return Promise.reject(new ServiceError("the connection broke while sending a chunk", "NETWORK"));
        }
        return Promise.resolve({ status: 200, body: { kind: "storage#object", size: String(size) } });
      };
      const api = {
        requestChunkUrl: vi.fn(async () => sessionTarget(0)),
        retry: vi.fn(async () => {
          const offset = retryOffsets.shift() ?? null;
          return offset === null ? [] : [sessionTarget(offset)];
        }),
        complete: vi.fn(async () => ({ id: "media1" })),
        cancel: vi.fn(async () => {}),
      } satisfies UploadApi<{ id: string }>;
      const states: EngineState<{ id: string }>[] = [];
      const engine = new FileUpload(
        new Blob([new Uint8Array(size)]),
        { id: uploadId, totalChunks: 1, chunkUrls: [sessionTarget(0)], progress: { status: "INITIALIZED", uploadedChunks: 0, totalChunks: 1 } },
        api,
        { state: (s) => states.push(s) },
        { parallel: 1, retries: 3, minRetryDelay: 1_000, transport },
      );
      engine.start();
      return { puts, api, last: () => states.at(-1)?.kind };
    }

    it("goes on from the offset the store kept, as spool's retry gives it, not from the start", async () => {
      // After the break spool reports offset 12; once the rest is sent the
      // store holds the file and retry lists nothing.
      const spool = resumableSpool(12, [12, null]);
      await vi.runAllTimersAsync();
      expect(spool.puts).toEqual([
        { offset: 0, bytes: 30, contentRange: "bytes 0-29/30" },
        { offset: 12, bytes: 18, contentRange: "bytes 12-29/30" },
      ]);
      expect(spool.api.requestChunkUrl).not.toHaveBeenCalled();
      expect(spool.api.complete).toHaveBeenCalledTimes(1);
      expect(spool.last()).toBe("completed");
    });

    it("sends nothing more when the store got the whole file and only the answer was lost", async () => {
      const spool = resumableSpool(30, [null, null]);
      await vi.runAllTimersAsync();
      expect(spool.puts).toHaveLength(1);
      expect(spool.api.requestChunkUrl).not.toHaveBeenCalled();
      expect(spool.api.complete).toHaveBeenCalledTimes(1);
      expect(spool.last()).toBe("completed");
    });
  });
});
