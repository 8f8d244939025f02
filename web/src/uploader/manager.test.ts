// @vitest-environment happy-dom
// The upload manager's planning against a fake spool: how chosen files
// are split into initBatch calls, and what is never sent.
import { afterEach, describe, expect, it, vi } from "vitest";
import { UploadManager, type ManagerApi } from "./manager";
import type { FileInput, MediaFile, UploadSession } from "./operations";
import { ServiceError, type ChunkTransport } from "./upload";
import { hashPiece } from "./hash";

function mediaOf(id: string, fileName: string, status: MediaFile["status"]): MediaFile {
  return {
    id, fileName, mimeType: "image/png", mediaType: "IMAGE", fileSize: 8, status, createdAt: "2026-01-01T00:00:00Z",
    url: `/media/${id}`, width: null, height: null, durationSeconds: null, placeholder: null, processingError: null,
    thumbnails: [], audio: null,
  };
}

/**
 * A spool that takes at most maxBatch files per initBatch. It answers a
 * file whose sha256 is in known as deduplicated: COMPLETED, with media.
 */
function fakeSpool(maxBatch: number, known: ReadonlySet<string> = new Set()) {
  const inputs: FileInput[] = [];
  const batches: string[][] = [];
  const planned: string[] = [];
  let next = 0;
  const session = (f: FileInput): UploadSession => {
    const id = `up${++next}`;
    if (f.sha256 && known.has(f.sha256)) {
      return {
        id, batchId: "b", fileName: f.fileName, totalSize: f.size, chunkSize: f.size, totalChunks: 1, status: "COMPLETED",
        chunkUrls: [], deduplicated: true, media: mediaOf("m-earlier", f.fileName, "READY"),
        progress: {
          uploadId: id, batchId: "b", status: "COMPLETED", uploadedBytes: f.size, totalBytes: f.size, percent: 100,
          uploadedChunks: 1, totalChunks: 1, failedChunks: [], mediaId: "m-earlier", mediaStatus: "READY", error: null, media: null,
        },
      };
    }
    return {
      id, batchId: "b", fileName: f.fileName, totalSize: f.size, chunkSize: f.size, totalChunks: 1, status: "INITIALIZED",
      deduplicated: false, media: null,
      chunkUrls: [{ chunkIndex: 0, url: `https://store.test/${id}/0`, method: "PUT", headers: [], offset: 0, size: f.size, expiresAt: "2999-01-01T00:00:00Z" }],
      progress: {
        uploadId: id, batchId: "b", status: "INITIALIZED", uploadedBytes: 0, totalBytes: f.size, percent: 0,
        uploadedChunks: 0, totalChunks: 1, failedChunks: [], mediaId: null, mediaStatus: null, error: null, media: null,
      },
    };
  };
  const api: ManagerApi = {
    initBatch: vi.fn(async (files: FileInput[]) => {
      inputs.push(...files);
      batches.push(files.map((f) => f.fileName));
      if (files.length > maxBatch) {
        throw new ServiceError(`a batch may hold at most ${maxBatch} files, got ${files.length}`, "BATCH_TOO_LARGE");
      }
      planned.push(...files.map((f) => f.fileName));
      return { id: "b", uploads: files.map(session) };
    }),
    requestChunkUrl: vi.fn(async () => { throw new ServiceError("not expected", "INTERNAL"); }),
    retry: vi.fn(async () => []),
    complete: vi.fn(async (uploadId: string): Promise<MediaFile> => mediaOf(`m-${uploadId}`, "x", "PROCESSING")),
    cancel: vi.fn(async () => {}),
    upload: vi.fn(async () => null),
    media: vi.fn(async () => null),
  };
  const puts: string[] = [];
  const transport: ChunkTransport = async (target) => {
    puts.push(target.url);
    return { status: 200, body: null };
  };
  return { api, transport, batches, planned, inputs, puts };
}

function files(n: number): File[] {
  return Array.from({ length: n }, (_, i) => new File([new Uint8Array(8)], `f${i}.png`, { type: "image/png" }));
}

let managers: UploadManager[] = [];

function newManager(spool: ReturnType<typeof fakeSpool>) {
  const list = document.createElement("ul");
  document.body.append(list);
  const announced: string[] = [];
  const manager = new UploadManager(spool.api, list, {
    parallel: () => 2,
    announce: (m) => announced.push(m),
    chooseFiles: () => {},
    uploadFinished: () => {},
    mediaProcessed: () => {},
    quotaChanged: () => {},
    unauthenticated: () => {},
  }, { transport: spool.transport });
  managers.push(manager);
  return { manager, list, announced };
}

afterEach(() => {
  for (const m of managers) m.dispose();
  managers = [];
  document.body.replaceChildren();
});

describe("UploadManager batches", () => {
  it("splits more files than a batch takes into batches of five", async () => {
    const spool = fakeSpool(5);
    const { manager, list } = newManager(spool);
    const chosen = files(7);
    await manager.addFiles(chosen);

    expect(spool.batches.map((b) => b.length)).toEqual([5, 2]);
    expect(spool.planned).toEqual(chosen.map((f) => f.name));
    expect(list.querySelectorAll("li[data-upload-id]")).toHaveLength(7);
  });

  it("halves a batch spool refuses as BATCH_TOO_LARGE, and keeps the smaller size for the files after it", async () => {
    const spool = fakeSpool(2);
    const { manager, list } = newManager(spool);
    const chosen = files(12);
    await manager.addFiles(chosen);

    // 5 is refused; halved to 2, the five go as 2+2+1 and the seven
    // after them as 2+2+2+1.
    expect(spool.batches.map((b) => b.length)).toEqual([5, 2, 2, 1, 2, 2, 2, 1]);
    expect(spool.planned).toEqual(chosen.map((f) => f.name));
    expect(list.querySelectorAll("li[data-upload-id]")).toHaveLength(12);
    expect(list.querySelectorAll('li[data-status="ERROR"]')).toHaveLength(0);
  });

  it("refuses an empty file itself, in plain words, and plans the others", async () => {
    const spool = fakeSpool(5);
    const { manager, list } = newManager(spool);
    const empty = new File([], "empty.png", { type: "image/png" });
    await manager.addFiles([empty, ...files(1)]);

    expect(spool.batches).toEqual([["f0.png"]]);
    const row = list.querySelector('li[data-file-name="empty.png"]');
    expect(row?.getAttribute("data-status")).toBe("ERROR");
    expect(row?.querySelector(".upload-status")?.textContent).toBe("empty.png is empty (0 bytes): choose a file with content");
  });
});

// WebCrypto, a hasher other than the one under test.
async function sha256Of(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
}

describe("UploadManager hashing and dedup", () => {
  it("sends each file's SHA-256, read piece by piece, with initBatch", async () => {
    const spool = fakeSpool(5);
    const { manager } = newManager(spool);
    // Over two of the hasher's pieces, so that it is fed more than once.
    const big = new Uint8Array(2 * hashPiece + 3).map((_, i) => i % 251);
    const small = new Uint8Array([1, 2, 3]);
    await manager.addFiles([new File([big], "big.mp4", { type: "video/mp4" }), new File([small], "s.png", { type: "image/png" })]);

    expect(spool.inputs.map((f) => [f.fileName, f.sha256])).toEqual([
      ["big.mp4", await sha256Of(big)],
      ["s.png", await sha256Of(small)],
    ]);
  });

  it("shows a deduplicated file as already uploaded at once, sending nothing", async () => {
    const bytes = new Uint8Array([9, 9, 9, 9]);
    const spool = fakeSpool(5, new Set([await sha256Of(bytes)]));
    const { manager, list, announced } = newManager(spool);
    await manager.addFiles([new File([bytes], "again.png", { type: "image/png" }), ...files(1)]);
    await vi.waitFor(() => expect(list.querySelector('li[data-file-name="f0.png"]')?.getAttribute("data-status")).toBe("COMPLETED"));

    const row = list.querySelector('li[data-file-name="again.png"]');
    expect(row?.getAttribute("data-status")).toBe("COMPLETED");
    expect(row?.querySelector(".upload-status")?.textContent).toBe("Already uploaded");
    expect(row?.querySelector<HTMLAnchorElement>(".upload-media")?.getAttribute("href")).toBe("/media/m-earlier");
    expect(announced).toContain("again.png was already uploaded.");
    // Only the other file was sent and completed.
    expect(spool.puts).toEqual(["https://store.test/up2/0"]);
    expect(spool.api.complete).toHaveBeenCalledTimes(1);
    expect(spool.api.complete).toHaveBeenCalledWith("up2");
  });
});

describe("UploadManager rows", () => {
  it("say why a chunk is being tried again, without a speed, until it arrives", async () => {
    vi.useFakeTimers();
    try {
      const spool = fakeSpool(5);
      let failures = 1;
      // Each PUT sends half its bytes at once and is answered 1.2 s later.
      spool.transport = async (target, _body, _signal, onSent) => {
        spool.puts.push(target.url);
        onSent(target.size / 2);
        await new Promise((resolve) => setTimeout(resolve, 1_200));
        if (failures-- > 0) throw new ServiceError("the connection broke while sending a chunk", "NETWORK");
        return { status: 200, body: null };
      };
      const { manager, list } = newManager(spool);
      await manager.addFiles(files(1));
      const row = () => list.querySelector('li[data-file-name="f0.png"]');
      const text = (part: string) => row()?.querySelector(`.upload-${part}`)?.textContent;
      await vi.waitFor(() => expect(spool.puts).toHaveLength(1));
      await vi.advanceTimersByTimeAsync(1_100); // a tick, the first PUT on its way
      expect(text("status")).toBe("Uploading…");
      expect(text("speed")).not.toBe("");

      // It fails at 1.2 s and is tried again 0.5 to 1 s later; that try
      // is answered 1.2 s after it. The tick at 2 s falls between.
      await vi.advanceTimersByTimeAsync(1_000);
      expect(row()?.getAttribute("data-status")).toBe("UPLOADING");
      expect(text("status")).toBe("Trying again: the connection broke while sending a chunk");
      expect(text("speed")).toBe("");
      expect(text("eta")).toBe("");

      await vi.advanceTimersByTimeAsync(3_000);
      expect(spool.puts).toHaveLength(2);
      expect(row()?.getAttribute("data-status")).toBe("COMPLETED");
      expect(text("status")).not.toContain("Trying again");
    } finally {
      vi.useRealTimers();
    }
  });

  it("resume the uploads that paused themselves once spool answers again, not those the user paused", async () => {
    vi.useFakeTimers();
    try {
      const spool = fakeSpool(5);
      let down = true;
      const received = new Set<string>();
      spool.transport = async (target) => {
        spool.puts.push(target.url);
        if (down) throw new ServiceError("the connection broke while sending a chunk", "NETWORK");
        received.add(target.url);
        return { status: 200, body: null };
      };
      // Asked where to go on, spool lists the one chunk until it has it.
      spool.api.retry = vi.fn(async (uploadId: string) => {
        const url = `https://store.test/${uploadId}/0`;
        return received.has(url) ? [] : [{ chunkIndex: 0, url, method: "PUT", headers: [], offset: 0, size: 8, expiresAt: "2999-01-01T00:00:00Z" }];
      });
      const { manager, list } = newManager(spool);
      await manager.addFiles(files(2));
      const row = (n: number) => list.querySelector(`li[data-file-name="f${n}.png"]`);
      await vi.waitFor(() => expect(row(1)?.getAttribute("data-status")).toBe("UPLOADING"));
      row(1)?.querySelector<HTMLButtonElement>(".upload-toggle")?.click(); // the user's pause

      // Every retry fails (5, backing off up to 16 s): f0 pauses itself.
      await vi.advanceTimersByTimeAsync(60_000);
      expect(row(0)?.getAttribute("data-status")).toBe("PAUSED");
      expect(row(0)?.querySelector(".upload-status")?.textContent).toBe("Paused: the connection broke while sending a chunk");
      expect(row(1)?.querySelector(".upload-status")?.textContent).toBe("Paused");

      down = false;
      manager.resumeStalled();
      await vi.advanceTimersByTimeAsync(1_000);
      expect(row(0)?.getAttribute("data-status")).toBe("COMPLETED");
      expect(row(1)?.getAttribute("data-status")).toBe("PAUSED");
    } finally {
      vi.useRealTimers();
    }
  });
});
