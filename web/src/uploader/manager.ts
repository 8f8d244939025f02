// Ties chosen files to spool's uploads: it plans them in batches, gives
// each a row and an engine, and routes spool's progress events to them.
// Rows also appear for unfinished uploads this page did not start (the
// myUploads snapshot after a reload); choosing the same file again
// resumes them, since spool matches the fingerprint.
import type { Api } from "./api";
import { sha256Hex } from "./hash";
import { mimeTypeOf } from "./mime";
import type { FileInput, MediaFile, MediaStatus, Progress, UploadSession } from "./operations";
import { UploadRow, isFinished, type RowModel, type RowStatus } from "./rows";
import { FileUpload, asServiceError, isPassingCode, isTerminalStatus, type ChunkTransport, type UploadApi } from "./upload";

/** What the manager asks of spool: the engine's mutations, and planning. */
export type ManagerApi = UploadApi<MediaFile> & Pick<Api, "initBatch" | "upload" | "media">;

export interface ManagerOptions {
  /** How the engines send chunks; XMLHttpRequest unless a test says otherwise. */
  transport?: ChunkTransport;
}

export interface ManagerHooks {
  parallel(): number;
  announce(message: string): void;
  /** Opens the file picker: resuming a row needs its file chosen again. */
  chooseFiles(): void;
  /** An upload completed: the gallery has a new file. */
  uploadFinished(): void;
  /**
   * A new file was processed: READY (with its thumbnails, when spool
   * made any), or FAILED. media is what the event carried, if anything.
   */
  mediaProcessed(mediaId: string, status: MediaStatus, media: MediaFile | null): void;
  /** Reserved or freed bytes changed the quota. */
  quotaChanged(): void;
  unauthenticated(): void;
}

interface Entry {
  row: UploadRow;
  file?: File;
  /** The file's SHA-256 (hex), once read. */
  sha256?: string;
  engine?: FileUpload<MediaFile>;
  cancelRequested?: boolean;
}

// Refusals that concern single files: a batch refused for one of them is
// retried file by file, so each row gets its own verdict (a batch is all
// or nothing on spool).
const perFileCodes = new Set(["INVALID_TYPE", "FILE_TOO_LARGE", "QUOTA_EXCEEDED", "BAD_USER_INPUT"]);

// spool's default batch limit (--max-batch-files). A lower one on the
// server shows as BATCH_TOO_LARGE: the page then halves its batches until
// spool takes them, and keeps the lower size for later files.
const defaultBatchLimit = 5;

export class UploadManager {
  private readonly byId = new Map<string, Entry>();
  private readonly lastEvent = new Map<string, string>();
  /** Latest events of uploads that have no row yet. */
  private readonly strangers = new Map<string, Progress>();
  private readonly lookups = new Set<string>();
  private readonly initsInFlight = new Set<Promise<void>>();
  private readonly completedSeen = new Set<string>();
  /** Every row's entry; byId indexes those spool has planned. */
  private readonly entries = new Set<Entry>();
  private readonly ticker: ReturnType<typeof setInterval>;
  private closed = false;
  private batchLimit = defaultBatchLimit;

  constructor(
    private readonly api: ManagerApi,
    private readonly list: HTMLUListElement,
    private readonly hooks: ManagerHooks,
    private readonly options: ManagerOptions = {},
  ) {
    this.ticker = setInterval(() => {
      const now = performance.now();
      for (const row of this.rows()) row.tick(now);
    }, 1000);
  }

  /** Plans and starts uploads of files; new rows go to the top of the list. */
  async addFiles(files: File[]): Promise<void> {
    if (files.length === 0) return;
    const entries = files.map((file) => this.newEntry(file));
    const fragment = document.createDocumentFragment();
    for (const e of entries) fragment.append(e.row.element);
    this.list.prepend(fragment);
    // spool refuses an empty file too, in words meant for developers.
    const empty = entries.filter((e) => e.file!.size === 0);
    for (const e of empty) this.reject(e, `${e.file!.name} is empty (0 bytes): choose a file with content`);
    await this.planInBatches(entries.filter((e) => e.file!.size > 0));
  }

  /** Takes one event of the myUploads subscription. */
  onProgress(p: Progress): void {
    // urql repeats the last result when a subscription ends, and a
    // reconnect replays the snapshot: an event seen before changes nothing.
    const key = JSON.stringify(p);
    if (this.lastEvent.get(p.uploadId) === key) return;
    this.lastEvent.set(p.uploadId, key);
    const entry = this.byId.get(p.uploadId);
    if (p.status === "COMPLETED" && !this.completedSeen.has(p.uploadId)) {
      this.completedSeen.add(p.uploadId);
      this.hooks.uploadFinished();
      // Completed by another tab or client: fetch what the link needs.
      if (entry && !entry.engine && p.mediaId) this.showMedia(entry, p.mediaId);
    }
    if (p.mediaId && (p.mediaStatus === "READY" || p.mediaStatus === "FAILED")) {
      this.hooks.mediaProcessed(p.mediaId, p.mediaStatus, p.media ?? null);
    }
    if (!entry) {
      this.strangers.set(p.uploadId, p);
      void this.adopt(p.uploadId);
      return;
    }
    this.apply(entry, p);
  }

  /**
   * Resumes the uploads that paused themselves on a failure that may have
   * passed (spool unreachable or restarting, storage down): called when
   * spool answers again, so that an outage longer than the retries does
   * not leave every upload waiting for a click. A pause the user chose,
   * or a refused token, stays.
   */
  resumeStalled(): void {
    for (const e of this.entries) {
      const state = e.engine?.state;
      if (state?.kind === "paused" && state.reason !== null && state.code !== undefined && isPassingCode(state.code)) {
        e.engine!.resume();
      }
    }
  }

  setParallel(n: number): void {
    for (const e of this.byId.values()) e.engine?.setParallel(n);
  }

  /** Removes the rows of uploads that are over. */
  clearFinished(): void {
    for (const e of this.entries) if (isFinished(e.row.status)) this.forget(e);
  }

  /** Stops every engine (their uploads stay resumable) and the ticker. */
  dispose(): void {
    this.closed = true;
    clearInterval(this.ticker);
    for (const e of this.byId.values()) e.engine?.pause();
  }

  private rows(): UploadRow[] {
    return [...this.entries].map((e) => e.row);
  }

  private forget(entry: Entry): void {
    entry.row.element.remove();
    this.entries.delete(entry);
    const id = entry.row.model.uploadId;
    if (id && this.byId.get(id) === entry) this.byId.delete(id);
  }

  private newEntry(file: File): Entry {
    const entry: Entry = {
      file,
      row: this.makeRow({ fileName: file.name, size: file.size, hasFile: true }, () => entry),
    };
    this.entries.add(entry);
    return entry;
  }

  private makeRow(model: RowModel, entryOf: () => Entry): UploadRow {
    return new UploadRow(
      model,
      {
        pause: () => entryOf().engine?.pause(),
        resume: () => {
          const engine = entryOf().engine;
          if (engine) engine.resume();
          else this.hooks.chooseFiles();
        },
        cancel: () => void this.cancel(entryOf()),
      },
      (row, status, text) => this.announceChange(row, status, text),
    );
  }

  private track(work: Promise<void>): Promise<void> {
    this.initsInFlight.add(work);
    return work.finally(() => this.initsInFlight.delete(work));
  }

  /** Plans entries in batches of batchLimit, which may drop on the way. */
  private async planInBatches(entries: Entry[]): Promise<void> {
    let rest = entries;
    while (rest.length > 0 && !this.closed) {
      const group = rest.slice(0, this.batchLimit);
      rest = rest.slice(group.length);
      await this.track(this.plan(group));
    }
  }

  /**
   * Reads each file of group to hash it, one after the other (in
   * parallel they would compete for the same disk), and returns those
   * that could be read and are still wanted.
   */
  private async hashAll(group: Entry[]): Promise<Entry[]> {
    const hashed: Entry[] = [];
    for (const entry of group) {
      if (this.closed) break;
      if (entry.sha256 === undefined && !entry.cancelRequested) {
        try {
          entry.sha256 = await sha256Hex(entry.file!, (read) => entry.row.update({ hashed: read }));
        } catch (err) {
          this.reject(entry, `${entry.file!.name} could not be read: ${asServiceError(err).message}`);
          continue;
        }
      }
      if (!entry.cancelRequested) hashed.push(entry);
    }
    return hashed;
  }

  private async plan(entries: Entry[]): Promise<void> {
    const group = await this.hashAll(entries);
    if (group.length === 0) return;
    try {
      const batch = await this.api.initBatch(group.map((e) => fileInput(e.file!, e.sha256)));
      batch.uploads.forEach((session, i) => this.attach(group[i]!, session));
      this.hooks.quotaChanged();
    } catch (err) {
      const e = asServiceError(err);
      if (e.code === "UNAUTHENTICATED") {
        for (const entry of group) this.reject(entry, "Not signed in");
        this.hooks.unauthenticated();
        return;
      }
      if (group.length > 1 && e.code === "BATCH_TOO_LARGE") {
        this.batchLimit = Math.min(this.batchLimit, Math.max(1, Math.floor(group.length / 2)));
        await this.planInBatches(group);
        return;
      }
      if (group.length > 1 && perFileCodes.has(e.code)) {
        for (const entry of group) await this.plan([entry]);
        return;
      }
      for (const entry of group) this.reject(entry, withoutFileLabel(e.message));
    }
  }

  private reject(entry: Entry, message: string): void {
    entry.row.update({ rejected: message });
  }

  private attach(entry: Entry, session: UploadSession): void {
    const earlier = this.byId.get(session.id);
    if (earlier?.engine) {
      // The same file chosen twice: spool answered with the upload this
      // page is already sending.
      this.forget(entry);
      if (earlier.engine.state.kind === "paused") earlier.engine.resume();
      this.hooks.announce(`${session.fileName} is already being uploaded.`);
      return;
    }
    // A row shown from the snapshot gives way to the one with the file.
    if (earlier) this.forget(earlier);
    this.byId.set(session.id, entry);
    if (session.deduplicated && session.media) {
      // spool had this file already: the upload is complete and nothing
      // is to be sent.
      entry.row.update({ uploadId: session.id, progress: session.progress, media: session.media, deduplicated: true });
      this.strangers.delete(session.id);
      this.hooks.uploadFinished();
      return;
    }
    entry.row.update({ uploadId: session.id, progress: session.progress });
    const seen = this.strangers.get(session.id);
    this.strangers.delete(session.id);
    if (entry.cancelRequested) {
      void this.api.cancel(session.id).catch(() => {});
      return;
    }
    const engine = new FileUpload<MediaFile>(entry.file!, session, this.api, {
      state: (state) => {
        entry.row.update(state.kind === "completed" ? { engine: state, media: state.media } : { engine: state });
        if (state.kind === "completed") this.hooks.uploadFinished();
        if (state.kind === "completed" || state.kind === "cancelled") this.hooks.quotaChanged();
        if (state.kind === "paused" && state.code === "UNAUTHENTICATED") this.hooks.unauthenticated();
      },
      sending: (inFlight, sentTotal) => entry.row.showSending(inFlight, sentTotal),
    }, { parallel: this.hooks.parallel(), transport: this.options.transport });
    entry.engine = engine;
    engine.start();
    if (seen) this.apply(entry, seen);
  }

  private apply(entry: Entry, p: Progress): void {
    entry.row.update({ progress: p });
    entry.engine?.noteProgress(p);
  }

  private showMedia(entry: Entry, mediaId: string): void {
    this.api.media(mediaId).then(
      (media) => media && entry.row.update({ media }),
      () => {},
    );
  }

  /** Gives a row to an upload this page did not start, if it is unfinished. */
  private async adopt(id: string): Promise<void> {
    if (this.lookups.has(id)) return;
    this.lookups.add(id);
    try {
      // An initBatch under way may be about to claim this upload.
      await Promise.allSettled([...this.initsInFlight]);
      const seen = this.strangers.get(id);
      if (!seen || this.byId.has(id) || isTerminalStatus(seen.status)) {
        this.strangers.delete(id);
        return;
      }
      const upload = await this.api.upload(id);
      const latest = this.strangers.get(id) ?? upload?.progress;
      this.strangers.delete(id);
      if (!upload || !latest || this.byId.has(id) || this.closed || isTerminalStatus(latest.status)) return;
      const entry: Entry = {
        row: this.makeRow(
          { fileName: upload.fileName, size: upload.totalSize, uploadId: id, hasFile: false, progress: latest },
          () => entry,
        ),
      };
      this.byId.set(id, entry);
      this.entries.add(entry);
      // Below the uploads chosen in this page, which are newer.
      this.list.append(entry.row.element);
    } catch {
      // The row is a convenience: choosing the file again still resumes.
    } finally {
      this.lookups.delete(id);
    }
  }

  private async cancel(entry: Entry): Promise<void> {
    const id = entry.row.model.uploadId;
    try {
      if (entry.engine) {
        await entry.engine.cancel();
      } else if (id) {
        await this.api.cancel(id);
        entry.row.update({ engine: { kind: "cancelled" } });
        this.hooks.quotaChanged();
      } else {
        // Not planned yet: cancelled as soon as spool answers.
        entry.cancelRequested = true;
        entry.row.update({ engine: { kind: "cancelled" } });
      }
    } catch (err) {
      this.hooks.announce(`Could not cancel ${entry.row.model.fileName}: ${asServiceError(err).message}`);
    }
  }

  private announceChange(row: UploadRow, status: RowStatus, text: string): void {
    const name = row.model.fileName;
    const engine = row.model.engine;
    switch (status) {
      case "COMPLETED":
        this.hooks.announce(row.model.deduplicated ? `${name} was already uploaded.` : `${name} uploaded.`);
        break;
      case "FAILED":
      case "EXPIRED":
        this.hooks.announce(`${name}: ${text}`);
        break;
      case "ERROR":
        // A message of the page's own names the file already.
        this.hooks.announce(text.startsWith(name) ? text : `${name} was refused: ${text}`);
        break;
      case "CANCELLED":
        this.hooks.announce(`${name} cancelled.`);
        break;
      case "PAUSED":
        if (engine?.kind === "paused" && engine.reason) this.hooks.announce(`${name} paused: ${engine.reason}`);
        break;
    }
  }
}

function fileInput(file: File, sha256: string | undefined): FileInput {
  return {
    fileName: file.name,
    size: file.size,
    mimeType: mimeTypeOf(file),
    // Stable across page loads, so choosing the file again resumes it.
    fingerprint: `${file.name}:${file.size}:${file.lastModified}`,
    // spool checks the file against it, resumes by it, and answers a
    // file it already has as deduplicated.
    sha256,
  };
}

// spool names the file in batch errors ("file 2 ("a.txt"): …"); the row
// already shows the name.
function withoutFileLabel(message: string): string {
  return message.replace(/^file \d+ \(".*?"\): /, "");
}
