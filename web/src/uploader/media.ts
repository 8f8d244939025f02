// What the gallery makes of a processed media file: which thumbnail to
// load, the blurred placeholder shown until it does, durations as a
// player shows them, and an audio file's waveform.
import { thumbHashToDataURL } from "thumbhash";

export interface ThumbnailLike {
  width: number;
  height: number;
  url: string;
}

/** A duration as m:ss, or h:mm:ss from an hour on: "0:07", "1:02", "1:00:05". */
export function formatClock(seconds: number): string {
  const s = Math.max(0, Math.round(Number.isFinite(seconds) ? seconds : 0));
  const pad = (n: number) => String(n).padStart(2, "0");
  if (s < 3600) return `${Math.floor(s / 60)}:${pad(s % 60)}`;
  return `${Math.floor(s / 3600)}:${pad(Math.floor(s / 60) % 60)}:${pad(s % 60)}`;
}

/**
 * The smallest thumbnail at least width pixels wide, or the largest when
 * none is. spool lists them smallest first; this does not rely on it.
 */
export function pickThumbnail<T extends ThumbnailLike>(thumbnails: readonly T[], width: number): T | null {
  const bySize = [...thumbnails].sort((a, b) => a.width - b.width);
  return bySize.find((t) => t.width >= width) ?? bySize.at(-1) ?? null;
}

/** The srcset attribute offering every thumbnail by its width. */
export function srcsetOf(thumbnails: readonly ThumbnailLike[]): string {
  return thumbnails.map((t) => `${t.url} ${t.width}w`).join(", ");
}

/**
 * A ThumbHash (standard base64, as spool sends it) decoded to a small PNG
 * data URL; null when it is not valid base64 or not a ThumbHash.
 */
export function placeholderDataURL(base64: string | null | undefined): string | null {
  if (!base64) return null;
  try {
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    if (bytes.length < 5) return null; // shorter than a ThumbHash's header
    return thumbHashToDataURL(bytes);
  } catch {
    return null;
  }
}

/**
 * An SVG path of bars for peaks (0 to 100 each) in a box width × height,
 * each bar centred on the middle line, at least one unit tall so that
 * silence still shows.
 */
export function waveformPath(peaks: readonly number[], width: number, height: number): string {
  if (peaks.length === 0) return "";
  const step = width / peaks.length;
  const bar = Math.max(step * 0.6, 0.5);
  const mid = height / 2;
  return peaks
    .map((p, i) => {
      const h = Math.max(1, (Math.min(100, Math.max(0, p)) / 100) * height);
      const x = i * step + (step - bar) / 2;
      return `M${round(x)} ${round(mid - h / 2)}h${round(bar)}v${round(h)}h${round(-bar)}z`;
    })
    .join("");
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}
