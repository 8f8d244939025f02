// A file's SHA-256, read a piece at a time. WebCrypto's digest takes the
// whole input at once, which for a video means the whole video in
// memory; hash-wasm's hasher is fed piece by piece.
import { createSHA256 } from "hash-wasm";

/** How much of a file is in memory at once while it is hashed. */
export const hashPiece = 4 << 20;

/**
 * The file's SHA-256 as lowercase hex. onRead hears the bytes read so far
 * after each piece; signal, when aborted, stops the reading and rejects
 * with its reason.
 */
export async function sha256Hex(file: Blob, onRead?: (read: number) => void, signal?: AbortSignal): Promise<string> {
  const hasher = await createSHA256();
  hasher.init();
  for (let offset = 0; offset < file.size; offset += hashPiece) {
    signal?.throwIfAborted();
    const piece = await file.slice(offset, offset + hashPiece).arrayBuffer();
    hasher.update(new Uint8Array(piece));
    onRead?.(Math.min(file.size, offset + hashPiece));
  }
  return hasher.digest("hex");
}
