// @vitest-environment happy-dom
// The upload manager's planning against a fake spool: how chosen files
// are split into initBatch calls, and what is never sent.
import { afterEach, describe, expect, it, vi } from "vitest";
import { UploadManager, type ManagerApi } from "./manager";
import type { FileInput, MediaFile, UploadSession } from "./operations";
import { ServiceError, type ChunkTransport } from "./upload";

/** A spool that takes at most maxBatch files per initBatch. */
function fakeSpool(maxBatch: number) {
  const batches: string[][] = [];
  const planned: string[] = [];
  let next = 0;
  const session = (f: FileInput): UploadSession => {
    const id = `up${++next}`;
    return {
      id, batchId: "b", fileName: f.fileName, totalSize: f.size, chunkSize: f.size, totalChunks: 1, status: "INITIALIZED",
      chunkUrls: [{ chunkIndex: 0, url: `https://store.test/${id}/0`, method: "PUT", headers: [], offset: 0, size: f.size, expiresAt: "2999-01-01T00:00:00Z" }],
      progress: {
        uploadId: id, batchId: "b", status: "INITIALIZED", uploadedBytes: 0, totalBytes: f.size, percent: 0,
        uploadedChunks: 0, totalChunks: 1, failedChunks: [], mediaId: null, mediaStatus: null, error: null,
      },
    };
  };
  const api: ManagerApi = {
    initBatch: vi.fn(async (files: FileInput[]) => {
      batches.push(files.map((f) => f.fileName));
      if (files.length > maxBatch) {
        throw new ServiceError(`a batch may hold at most ${maxBatch} files, got ${files.length}`, "BATCH_TOO_LARGE");
      }
      planned.push(...files.map((f) => f.fileName));
      return { id: "b", uploads: files.map(session) };
    }),
    requestChunkUrl: vi.fn(async () => { throw new ServiceError("not expected", "INTERNAL"); }),
    retry: vi.fn(async () => []),
    complete: vi.fn(async (uploadId: string): Promise<MediaFile> => ({
      id: `m-${uploadId}`, fileName: "x", mimeType: "image/png", mediaType: "IMAGE", fileSize: 1,
      status: "PROCESSING", createdAt: "2026-01-01T00:00:00Z", url: "/media/x",
    })),
    cancel: vi.fn(async () => {}),
    upload: vi.fn(async () => null),
    media: vi.fn(async () => null),
  };
  const transport: ChunkTransport = async () => ({ status: 200, body: null });
  return { api, transport, batches, planned };
}

function files(n: number): File[] {
  return Array.from({ length: n }, (_, i) => new File([new Uint8Array(8)], `f${i}.png`, { type: "image/png" }));
}

let managers: UploadManager[] = [];

function newManager(spool: ReturnType<typeof fakeSpool>) {
  const list = document.createElement("ul");
  document.body.append(list);
  const manager = new UploadManager(spool.api, list, {
    parallel: () => 2,
    announce: () => {},
    chooseFiles: () => {},
    uploadFinished: () => {},
    mediaProcessed: () => {},
    quotaChanged: () => {},
    unauthenticated: () => {},
  }, { transport: spool.transport });
  managers.push(manager);
  return { manager, list };
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
