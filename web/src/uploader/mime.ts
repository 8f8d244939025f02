// The MIME type to declare for a file. Browsers leave File.type empty for
// extensions the OS does not know, and some report aliases spool does not
// list; both are mapped to the types spool accepts (docs/CONFIG.md).
const byExtension: Record<string, string> = {
  mp4: "video/mp4",
  m4v: "video/mp4",
  webm: "video/webm",
  mov: "video/quicktime",
  qt: "video/quicktime",
  jpg: "image/jpeg",
  jpeg: "image/jpeg",
  jpe: "image/jpeg",
  png: "image/png",
  gif: "image/gif",
  webp: "image/webp",
  mp3: "audio/mpeg",
  m4a: "audio/x-m4a",
  aac: "audio/aac",
  wav: "audio/wav",
  ogg: "audio/ogg",
  oga: "audio/ogg",
  opus: "audio/ogg",
  flac: "audio/flac",
  weba: "audio/webm",
};

const aliases: Record<string, string> = {
  "audio/mp3": "audio/mpeg",
  "audio/x-mpeg": "audio/mpeg",
  "audio/x-flac": "audio/flac",
  "audio/vnd.wave": "audio/wav",
  "audio/x-aac": "audio/aac",
  "image/jpg": "image/jpeg",
  "image/pjpeg": "image/jpeg",
};

export function mimeTypeOf(file: { name: string; type: string }): string {
  const declared = file.type.toLowerCase();
  if (declared) return aliases[declared] ?? declared;
  const ext = file.name.toLowerCase().match(/\.([a-z0-9]+)$/)?.[1] ?? "";
  // spool refuses this type with a message that lists the accepted ones.
  return byExtension[ext] ?? "application/octet-stream";
}
