// One list item per upload. A row shows what spool reports (progress
// events) together with what this page is doing (the engine's state);
// rowStatus decides which of the two a reader sees.
import { formatBytes, formatDuration, formatRate } from "./format";
import type { MediaFile, Progress } from "./operations";
import { RateMeter } from "./rate";
import type { EngineState } from "./upload";

/** The row's data-status: spool's UploadStatus plus the page's own states. */
export type RowStatus =
  | "PENDING"
  | "UPLOADING"
  | "PAUSED"
  | "ASSEMBLING"
  | "COMPLETED"
  | "FAILED"
  | "CANCELLED"
  | "EXPIRED"
  | "ERROR";

const finished: ReadonlySet<RowStatus> = new Set(["COMPLETED", "FAILED", "CANCELLED", "EXPIRED", "ERROR"]);

export function isFinished(status: RowStatus): boolean {
  return finished.has(status);
}

export interface RowModel {
  fileName: string;
  size: number;
  uploadId?: string;
  /** The latest progress event from spool. */
  progress?: Progress;
  engine?: EngineState<MediaFile>;
  /** Whether this page holds the file (else the row only mirrors spool). */
  hasFile: boolean;
  /** Why spool refused to start the upload. */
  rejected?: string;
  media?: MediaFile;
  /** spool had the file already: nothing was sent. */
  deduplicated?: boolean;
  /** Bytes of the file read to hash it, while that goes on. */
  hashed?: number;
}

function rowStatus(m: RowModel): { status: RowStatus; text: string } {
  const e = m.engine;
  const server = m.progress?.status;
  const expired = { status: "EXPIRED", text: "Expired: choose the file again to start over" } as const;
  if (m.rejected) return { status: "ERROR", text: m.rejected };
  if (e?.kind === "failed") {
    // Whether the engine learnt it from an event or from a refusal.
    if (e.code === "EXPIRED" || e.code === "SESSION_EXPIRED") return expired;
    return { status: "FAILED", text: `Failed: ${e.message}` };
  }
  if (e?.kind === "cancelled" || server === "CANCELLED") return { status: "CANCELLED", text: "Cancelled" };
  // COMPLETED waits for the MediaFile, so the link is there when it shows;
  // the check of its content ends later, in a progress event.
  if (m.media) {
    const checked = m.progress?.mediaStatus ?? m.media.status;
    if (m.deduplicated) return { status: "COMPLETED", text: "Already uploaded" };
    if (checked !== "FAILED") return { status: "COMPLETED", text: "Uploaded" };
    const problem = m.progress?.media?.processingError ?? m.media.processingError;
    return { status: "COMPLETED", text: problem ? `Uploaded, but processing failed: ${problem}` : "Uploaded, but processing failed" };
  }
  if (server === "FAILED") return { status: "FAILED", text: `Failed: ${m.progress?.error ?? "spool gave up on this upload"}` };
  if (server === "EXPIRED") return expired;
  if (e?.kind === "completing" || server === "ASSEMBLING" || server === "COMPLETED") {
    return { status: "ASSEMBLING", text: "Finishing…" };
  }
  if (e?.kind === "paused") return { status: "PAUSED", text: e.reason ? `Paused: ${e.reason}` : "Paused" };
  if (e?.kind === "running") {
    return { status: "UPLOADING", text: e.retrying ? `Trying again: ${e.retrying}` : "Uploading…" };
  }
  if (!m.hasFile && m.uploadId) return { status: "PAUSED", text: "Paused — choose the same file to resume" };
  if (!m.uploadId && m.hashed !== undefined && m.hashed < m.size) {
    return { status: "PENDING", text: `Reading the file… ${Math.floor((m.hashed / m.size) * 100)} %` };
  }
  return { status: "PENDING", text: "Waiting…" };
}

export interface RowActions {
  pause(): void;
  resume(): void;
  cancel(): void;
}

export class UploadRow {
  readonly element: HTMLLIElement;
  readonly model: RowModel;
  private readonly bar: HTMLDivElement;
  private readonly barDone: HTMLDivElement;
  private readonly barSending: HTMLDivElement;
  private readonly statusText: HTMLSpanElement;
  private readonly speedText: HTMLSpanElement;
  private readonly etaText: HTMLSpanElement;
  private readonly mediaLink: HTMLAnchorElement;
  private readonly toggle: HTMLButtonElement;
  private readonly cancelButton: HTMLButtonElement;
  private readonly serverRate = new RateMeter();
  private readonly sendRate = new RateMeter();
  private inFlight = 0;
  private sentTotal = 0;
  private shown: RowStatus | null = null;

  constructor(
    model: RowModel,
    private readonly actions: RowActions,
    private readonly onStatus: (row: UploadRow, status: RowStatus, text: string) => void,
  ) {
    this.model = model;
    const li = el("li", "upload");
    li.tabIndex = -1; // focus lands here when the focused button goes away
    li.dataset.fileName = model.fileName;

    const title = el("div", "upload-title");
    const name = el("span", "upload-name");
    name.textContent = model.fileName;
    name.title = model.fileName;
    const size = el("span", "upload-size");
    size.textContent = formatBytes(model.size);
    title.append(name, size);

    this.bar = el("div", "upload-bar");
    this.bar.setAttribute("role", "progressbar");
    this.bar.setAttribute("aria-valuemin", "0");
    this.bar.setAttribute("aria-valuemax", "100");
    this.bar.setAttribute("aria-label", model.fileName);
    this.barSending = el("div", "upload-bar-sending");
    this.barDone = el("div", "upload-bar-done");
    this.bar.append(this.barSending, this.barDone);

    const info = el("div", "upload-info");
    this.statusText = el("span", "upload-status");
    this.speedText = el("span", "upload-speed");
    this.etaText = el("span", "upload-eta");
    this.mediaLink = el("a", "upload-media");
    this.mediaLink.target = "_blank";
    this.mediaLink.rel = "noopener";
    this.mediaLink.textContent = "Open";
    this.mediaLink.setAttribute("aria-label", `Open ${model.fileName}`);
    this.mediaLink.hidden = true;
    info.append(this.statusText, this.speedText, this.etaText, this.mediaLink);

    const buttons = el("div", "upload-actions");
    this.toggle = button("Pause", "upload-toggle");
    this.toggle.addEventListener("click", () => {
      if (this.shown === "PAUSED") this.actions.resume();
      else this.actions.pause();
    });
    this.cancelButton = button("Cancel", "upload-cancel");
    this.cancelButton.setAttribute("aria-label", `Cancel ${model.fileName}`);
    this.cancelButton.addEventListener("click", () => this.actions.cancel());
    buttons.append(this.toggle, this.cancelButton);

    const main = el("div", "upload-main");
    main.append(title, this.bar, info);
    li.append(main, buttons);
    this.element = li;
    this.render();
  }

  get status(): RowStatus {
    return this.shown ?? "PENDING";
  }

  update(change: Partial<RowModel>): void {
    const wasRunning = this.model.engine?.kind === "running";
    Object.assign(this.model, change);
    const now = performance.now();
    if (this.model.engine?.kind === "running" && !wasRunning) {
      // A fresh start: earlier bytes and pauses say nothing of the speed now.
      this.serverRate.reset();
      this.sendRate.reset();
      this.serverRate.add(this.model.progress?.uploadedBytes ?? 0, now);
      this.sendRate.add(this.sentTotal, now);
    } else if (change.progress && this.model.engine?.kind === "running") {
      this.serverRate.add(change.progress.uploadedBytes, now);
    }
    this.render();
  }

  showSending(inFlight: number, sentTotal: number): void {
    this.inFlight = inFlight;
    this.sentTotal = sentTotal;
    this.sendRate.add(sentTotal, performance.now());
    this.renderBar();
  }

  /** Refreshes speed and time left; called about once a second. */
  tick(now: number): void {
    const server = this.serverRate.sample(now);
    const local = this.sendRate.sample(now);
    if (this.shown !== "UPLOADING") return;
    if (this.retrying()) {
      // Nothing moves while a try waits: no speed, and no time left.
      this.speedText.textContent = "";
      this.etaText.textContent = "";
      return;
    }
    const total = this.model.size;
    const uploaded = this.model.progress?.uploadedBytes ?? 0;
    // spool counts whole chunks; until one has arrived (a one-chunk file
    // never shows a step before the end) the bytes sent are all there is.
    const rate = this.serverRate.moving ? server : local;
    const remaining = this.serverRate.moving ? total - uploaded : total - uploaded - this.inFlight;
    if (rate === null || rate <= 0) {
      this.speedText.textContent = "";
      this.etaText.textContent = "";
      return;
    }
    this.speedText.textContent = formatRate(rate);
    this.etaText.textContent = remaining > 0 ? `${formatDuration(remaining / rate)} left` : "";
  }

  private retrying(): boolean {
    const e = this.model.engine;
    return e?.kind === "running" && !!e.retrying;
  }

  private percent(): number {
    if (this.model.media) return 100;
    return this.model.progress?.percent ?? 0;
  }

  private renderBar(): void {
    const total = this.model.size || 1;
    const uploaded = this.model.media ? total : (this.model.progress?.uploadedBytes ?? 0);
    const sending = this.shown === "UPLOADING" ? Math.min(total, uploaded + this.inFlight) : uploaded;
    // Widths follow bytes; spool's whole-number percent is for aria-valuenow.
    this.barDone.style.width = `${(uploaded / total) * 100}%`;
    this.barSending.style.width = `${(sending / total) * 100}%`;
  }

  private render(): void {
    const m = this.model;
    const { status, text } = rowStatus(m);
    const previous = this.shown;
    this.shown = status;
    const li = this.element;
    if (m.uploadId) li.dataset.uploadId = m.uploadId;
    li.dataset.status = status;

    const percent = this.percent();
    const uploaded = m.media ? m.size : (m.progress?.uploadedBytes ?? 0);
    this.bar.setAttribute("aria-valuenow", String(percent));
    this.bar.setAttribute("aria-valuetext", `${percent} %, ${formatBytes(uploaded)} of ${formatBytes(m.size)}`);
    this.bar.hidden = status === "ERROR";
    this.statusText.textContent = text;
    if (status !== "UPLOADING" || this.retrying()) {
      this.speedText.textContent = "";
      this.etaText.textContent = "";
    }

    if (m.media) {
      this.mediaLink.href = m.media.url;
      this.mediaLink.hidden = false;
    }

    const paused = status === "PAUSED";
    this.toggle.textContent = paused ? "Resume" : "Pause";
    this.toggle.setAttribute("aria-label", `${paused ? "Resume" : "Pause"} ${m.fileName}`);
    this.toggle.disabled = !(paused || status === "UPLOADING");
    this.cancelButton.disabled = status === "ASSEMBLING";
    const done = isFinished(status);
    if (done && li.querySelector(".upload-actions")?.contains(document.activeElement)) {
      (m.media ? this.mediaLink : li).focus();
    }
    this.toggle.hidden = done;
    this.cancelButton.hidden = done;
    this.renderBar();

    if (status !== previous) this.onStatus(this, status, text);
  }
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, className: string): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  node.className = className;
  return node;
}

function button(text: string, className: string): HTMLButtonElement {
  const b = el("button", className);
  b.type = "button";
  b.textContent = text;
  return b;
}
