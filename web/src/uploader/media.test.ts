// The gallery's pieces of processed media: durations, thumbnails to
// load, the ThumbHash placeholder and the waveform.
import { describe, expect, it } from "vitest";
import { rgbaToThumbHash } from "thumbhash";
import { formatClock, pickThumbnail, placeholderDataURL, srcsetOf, waveformPath } from "./media";

describe("formatClock", () => {
  it.each([
    [0, "0:00"],
    [7, "0:07"],
    [59.6, "1:00"],
    [62.4, "1:02"],
    [600, "10:00"],
    [3599, "59:59"],
    [3605, "1:00:05"],
    [-3, "0:00"],
    [Number.NaN, "0:00"],
  ])("writes %s s as %s", (seconds, want) => {
    expect(formatClock(seconds)).toBe(want);
  });
});

const thumbs = [
  { width: 640, height: 480, url: "/t/1" },
  { width: 160, height: 120, url: "/t/0" },
  { width: 1280, height: 960, url: "/t/2" },
];

describe("pickThumbnail", () => {
  it("takes the smallest thumbnail at least as wide as asked", () => {
    expect(pickThumbnail(thumbs, 320)?.url).toBe("/t/1");
    expect(pickThumbnail(thumbs, 160)?.url).toBe("/t/0");
    expect(pickThumbnail(thumbs, 100)?.url).toBe("/t/0");
  });
  it("takes the largest when none is wide enough, and none of none", () => {
    expect(pickThumbnail(thumbs, 4000)?.url).toBe("/t/2");
    expect(pickThumbnail([], 320)).toBeNull();
  });
  it("offers every thumbnail in srcset by its width", () => {
    expect(srcsetOf(thumbs)).toBe("/t/1 640w, /t/0 160w, /t/2 1280w");
  });
});

describe("placeholderDataURL", () => {
  it("decodes a ThumbHash sent as base64 to a PNG data URL", () => {
    // A 4×4 red square.
    const rgba = new Uint8Array(4 * 4 * 4).map((_, i) => (i % 4 === 0 || i % 4 === 3 ? 255 : 0));
    const hash = rgbaToThumbHash(4, 4, rgba);
    const base64 = btoa(String.fromCharCode(...hash));
    const url = placeholderDataURL(base64);
    expect(url).toMatch(/^data:image\/png;base64,[A-Za-z0-9+/]+=*$/);
    // The PNG signature, then an IHDR chunk.
    const png = atob(url!.slice("data:image/png;base64,".length));
    expect(png.slice(0, 8)).toBe("\x89PNG\r\n\x1a\n");
    expect(png.slice(12, 16)).toBe("IHDR");
  });
  it("gives null for nothing, or what is not a ThumbHash", () => {
    expect(placeholderDataURL(null)).toBeNull();
    expect(placeholderDataURL("")).toBeNull();
    expect(placeholderDataURL("not base64!")).toBeNull();
    expect(placeholderDataURL(btoa("ab"))).toBeNull();
  });
});

describe("waveformPath", () => {
  it("draws a bar per peak, centred, scaled to the height, silence one unit tall", () => {
    expect(waveformPath([100, 50, 0], 3, 10)).toBe("M0.2 0h0.6v10h-0.6zM1.2 2.5h0.6v5h-0.6zM2.2 4.5h0.6v1h-0.6z");
    expect(waveformPath([], 256, 64)).toBe("");
  });
});
