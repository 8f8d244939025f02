// @vitest-environment happy-dom
// The gallery's cards as processing fills in their media: today's
// preview until then, then the thumbnail over its placeholder, live.
import { afterEach, describe, expect, it, vi } from "vitest";
import { rgbaToThumbHash } from "thumbhash";
import type { Api } from "./api";
import { Gallery } from "./gallery";
import type { MediaFile, MediaPage } from "./operations";

const processing: MediaFile = {
  id: "m1", fileName: "p.png", mimeType: "image/png", mediaType: "IMAGE", fileSize: 8, status: "PROCESSING",
  createdAt: "2026-01-01T00:00:00Z", url: "/media/m1/p.png", width: null, height: null, durationSeconds: null,
  placeholder: null, processingError: null, thumbnails: [], audio: null,
};
const hash = rgbaToThumbHash(2, 2, new Uint8Array(16).fill(200));
const ready: MediaFile = {
  ...processing, status: "READY", width: 1600, height: 900, placeholder: btoa(String.fromCharCode(...hash)),
  thumbnails: [
    { width: 160, height: 90, mimeType: "image/webp", url: "/media/m1/thumbnails/0" },
    { width: 640, height: 360, mimeType: "image/webp", url: "/media/m1/thumbnails/1" },
  ],
};

let gallery: Gallery | null = null;
afterEach(() => {
  gallery?.dispose();
  document.body.replaceChildren();
});

function newGallery(media: MediaFile, byId: Record<string, MediaFile> = {}) {
  const els = {
    list: document.createElement("ul"), filter: document.createElement("select"), loadMore: document.createElement("button"),
    sentinel: document.createElement("div"), summary: document.createElement("p"),
  };
  document.body.append(...Object.values(els));
  const page: MediaPage = { edges: [{ node: media }], pageInfo: { hasNextPage: false, endCursor: null }, totalCount: 1 };
  const api = { userMedia: async () => page, media: async (id: string) => byId[id] ?? null } as unknown as Api;
  gallery = new Gallery(els, api, () => {}, () => {});
  return { gallery, list: els.list };
}

describe("Gallery previews", () => {
  it("shows the file until processed, then its thumbnail over the placeholder, without a reload", async () => {
    const { gallery, list } = newGallery(processing);
    await gallery.reset();
    const img = () => list.querySelector<HTMLImageElement>('li[data-media-id="m1"] .media-preview img');
    expect(img()?.getAttribute("src")).toBe("/media/m1/p.png");

    gallery.showProcessed("m1", "READY", ready);
    const preview = list.querySelector<HTMLElement>('li[data-media-id="m1"] .media-preview')!;
    expect(img()?.getAttribute("src")).toBe("/media/m1/thumbnails/1");
    expect(img()?.getAttribute("srcset")).toBe("/media/m1/thumbnails/0 160w, /media/m1/thumbnails/1 640w");
    expect(preview.style.backgroundImage).toContain("data:image/png;base64,");
    expect(list.querySelector('li[data-media-id="m1"] .media-status')?.getAttribute("data-status")).toBe("READY");
  });

  it("shows a video's poster and an audio file's waveform, each with its duration", async () => {
    const video: MediaFile = { ...ready, id: "v1", mediaType: "VIDEO", durationSeconds: 62.4 };
    const { gallery, list } = newGallery(video);
    await gallery.reset();
    const card = list.querySelector('li[data-media-id="v1"]')!;
    expect(card.querySelector("video")?.getAttribute("poster")).toBe("/media/m1/thumbnails/1");
    expect(card.querySelector(".media-duration")?.textContent).toBe("1:02");

    const audio: MediaFile = { ...processing, id: "a1", mediaType: "AUDIO", status: "READY", durationSeconds: 7, audio: { peaks: [10, 100, 0] } };
    gallery.showProcessed("v1", "READY", video); // unchanged: stays as it is
    const second = newGallery(audio);
    await second.gallery.reset();
    const audioCard = second.list.querySelector('li[data-media-id="a1"]')!;
    expect(audioCard.querySelector(".media-waveform path")?.getAttribute("d")).toMatch(/^M/);
    expect(audioCard.querySelector("audio")).not.toBeNull();
    expect(audioCard.querySelector(".media-duration")?.textContent).toBe("0:07");
    second.gallery.dispose();
  });
});

describe("Gallery status", () => {
  const status = (list: HTMLElement, id: string) => list.querySelector<HTMLElement>(`li[data-media-id="${id}"] .media-status`)!;
  const problem = "the file could not be decoded as image/png: unexpected EOF";

  it("shows why processing failed, from the page, an event, or asked for", async () => {
    const failed: MediaFile = { ...processing, id: "f1", status: "FAILED", processingError: problem };
    const listed = newGallery(failed);
    await listed.gallery.reset();
    expect(status(listed.list, "f1").textContent).toBe(`Failed: ${problem}`);
    expect(status(listed.list, "f1").dataset.status).toBe("FAILED");
    expect(status(listed.list, "f1").textContent).not.toMatch(/checksum/i);
    listed.gallery.dispose();

    const live = newGallery(processing);
    await live.gallery.reset();
    expect(status(live.list, "m1").textContent).toBe("Processing");
    live.gallery.showProcessed("m1", "FAILED", { ...processing, status: "FAILED", processingError: problem });
    expect(status(live.list, "m1").textContent).toBe(`Failed: ${problem}`);
    live.gallery.dispose();

    // An event without the media: the reason is asked for.
    const asked = newGallery(processing, { m1: { ...processing, status: "FAILED", processingError: problem } });
    await asked.gallery.reset();
    asked.gallery.showProcessed("m1", "FAILED");
    expect(status(asked.list, "m1").textContent).toBe("Processing failed");
    await vi.waitFor(() => expect(status(asked.list, "m1").textContent).toBe(`Failed: ${problem}`));
  });
});
