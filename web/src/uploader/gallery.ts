// The signed-in user's media, newest first, a page at a time: pages load
// as the end of the list scrolls into view, or with the "Load more"
// button for keyboard users.
import type { Api } from "./api";
import { formatBytes, formatDate } from "./format";
import { formatClock, pickThumbnail, placeholderDataURL, srcsetOf, waveformPath } from "./media";
import type { MediaFile, MediaStatus, MediaType } from "./operations";
import { asServiceError } from "./upload";

export interface GalleryElements {
  list: HTMLUListElement;
  filter: HTMLSelectElement;
  loadMore: HTMLButtonElement;
  sentinel: HTMLElement;
  summary: HTMLElement;
}

const pageSize = 24;
const statusLabels: Record<MediaStatus, string> = {
  PENDING: "Pending",
  PROCESSING: "Processing",
  READY: "Ready",
  FAILED: "Processing failed",
};

export class Gallery {
  private cursor: string | null = null;
  private hasNext = false;
  private loaded = false;
  private totalCount = 0;
  private loading: Promise<void> | null = null;
  /** Bumped on every reset, so a page asked for before it is dropped. */
  private generation = 0;
  private refreshTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly observer: IntersectionObserver;

  constructor(
    private readonly els: GalleryElements,
    private readonly api: Api,
    private readonly announce: (message: string) => void,
    private readonly deleted: () => void,
  ) {
    this.observer = new IntersectionObserver(
      (entries) => {
        if (entries.some((e) => e.isIntersecting)) void this.loadNext();
      },
      { rootMargin: "400px 0px" },
    );
    this.observer.observe(els.sentinel);
    els.loadMore.addEventListener("click", () => void this.loadNext());
    els.filter.addEventListener("change", () => void this.reset());
  }

  /** Empties the gallery and loads its first page under the current filter. */
  reset(): Promise<void> {
    this.generation++;
    this.loading = null;
    this.cursor = null;
    this.hasNext = false;
    this.loaded = false;
    this.els.list.replaceChildren();
    this.renderFooter();
    return this.loadNext();
  }

  /** Merges the newest page into the list soon (after an upload finished). */
  refresh(): void {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => void this.mergeFirstPage(), 400);
  }

  /**
   * Shows a media file's processing result (READY or FAILED, from a
   * myUploads event), with the thumbnails, waveform and duration when
   * the event brought the media, and why processing failed. A FAILED
   * result without the media has its reason asked for. A file not listed
   * yet may be in a page on its way, asked for before the result: the
   * newest page is merged again.
   */
  showProcessed(id: string, status: MediaStatus, media: MediaFile | null = null): void {
    const li = this.item(id);
    if (!li) this.refresh();
    else if (media) this.update(li, { ...media, status });
    else {
      showStatus(li, status);
      if (status === "FAILED") void this.fetchFailure(id);
    }
  }

  private async fetchFailure(id: string): Promise<void> {
    const generation = this.generation;
    try {
      const media = await this.api.media(id);
      const li = this.item(id);
      if (media && li && generation === this.generation) this.update(li, media);
    } catch {
      // The card keeps its status without the reason.
    }
  }

  dispose(): void {
    this.generation++;
    clearTimeout(this.refreshTimer);
    this.observer.disconnect();
    this.els.list.replaceChildren();
  }

  private mediaType(): MediaType | null {
    const v = this.els.filter.value;
    return v === "IMAGE" || v === "VIDEO" || v === "AUDIO" ? v : null;
  }

  private loadNext(): Promise<void> {
    if (this.loading) return this.loading;
    if (this.loaded && !this.hasNext) return Promise.resolve();
    const generation = this.generation;
    const work = (async () => {
      this.els.loadMore.disabled = true;
      this.els.list.setAttribute("aria-busy", "true");
      try {
        const page = await this.api.userMedia(pageSize, this.cursor, this.mediaType());
        if (generation !== this.generation) return;
        // The schema lets an edge, and its node, be null.
        for (const edge of page.edges ?? []) {
          const media = edge?.node;
          if (media && !this.item(media.id)) this.els.list.append(this.render(media));
        }
        this.cursor = page.pageInfo.endCursor;
        this.hasNext = page.pageInfo.hasNextPage;
        this.totalCount = page.totalCount;
        this.loaded = true;
      } catch (err) {
        if (generation === this.generation) this.announce(`Could not load your media: ${asServiceError(err).message}`);
      } finally {
        if (generation === this.generation) {
          this.loading = null;
          this.els.loadMore.disabled = false;
          this.els.list.removeAttribute("aria-busy");
          this.renderFooter();
          // The observer reports changes only: if the sentinel is still in
          // view (a tall window), observing anew reports it again.
          this.observer.unobserve(this.els.sentinel);
          this.observer.observe(this.els.sentinel);
        }
      }
    })();
    this.loading = work;
    return work;
  }

  // New files go on top and known ones are updated in place, so pages
  // loaded further down stay where the reader left them.
  private async mergeFirstPage(): Promise<void> {
    if (!this.loaded) {
      await this.reset();
      return;
    }
    const generation = this.generation;
    try {
      const page = await this.api.userMedia(pageSize, null, this.mediaType());
      if (generation !== this.generation) return;
      const fresh: HTMLLIElement[] = [];
      for (const edge of page.edges ?? []) {
        const media = edge?.node;
        if (!media) continue;
        const known = this.item(media.id);
        if (known) this.update(known, media);
        else fresh.push(this.render(media));
      }
      this.els.list.prepend(...fresh);
      this.totalCount = page.totalCount;
      this.renderFooter();
    } catch {
      // The next completed upload refreshes again.
    }
  }

  private item(id: string): HTMLLIElement | null {
    for (const li of this.els.list.children) {
      if ((li as HTMLElement).dataset.mediaId === id) return li as HTMLLIElement;
    }
    return null;
  }

  // Status and link change; the preview only when processing gave it
  // something new to show (thumbnails, a waveform), so that one playing
  // or loaded stays as it is, and focus stays where it is.
  private update(li: HTMLLIElement, media: MediaFile): void {
    showStatus(li, media.status, media.processingError);
    const name = li.querySelector<HTMLAnchorElement>(".media-name");
    if (name) name.href = media.url;
    const preview = li.querySelector<HTMLElement>(".media-preview");
    if (preview && preview.dataset.preview === "plain" && previewKind(media) !== "plain") fillPreview(preview, media);
  }

  private render(media: MediaFile): HTMLLIElement {
    const li = document.createElement("li");
    li.className = "media";
    li.dataset.mediaId = media.id;
    li.dataset.fileName = media.fileName;
    li.dataset.mediaType = media.mediaType;

    const preview = document.createElement("div");
    preview.className = "media-preview";
    fillPreview(preview, media);

    const body = document.createElement("div");
    body.className = "media-body";
    const name = document.createElement("a");
    name.className = "media-name";
    name.href = media.url;
    name.target = "_blank";
    name.rel = "noopener";
    name.textContent = media.fileName;
    name.title = media.fileName;
    const meta = document.createElement("span");
    meta.className = "media-meta";
    const time = document.createElement("time");
    time.dateTime = media.createdAt;
    time.textContent = formatDate(media.createdAt);
    meta.append(`${formatBytes(media.fileSize)} · `, time);
    const status = document.createElement("span");
    status.className = "media-status";
    body.append(name, meta, status);

    const del = document.createElement("button");
    del.type = "button";
    del.className = "media-delete";
    del.textContent = "Delete";
    del.setAttribute("aria-label", `Delete ${media.fileName}`);
    del.addEventListener("click", () => void this.remove(media, li, del));

    li.append(preview, body, del);
    showStatus(li, media.status, media.processingError);
    return li;
  }

  private async remove(media: MediaFile, li: HTMLLIElement, button: HTMLButtonElement): Promise<void> {
    // Read before disabling the button, which takes the focus away.
    const hadFocus = li.contains(document.activeElement);
    button.disabled = true;
    try {
      await this.api.deleteMedia(media.id);
    } catch (err) {
      button.disabled = false;
      this.announce(`Could not delete ${media.fileName}: ${asServiceError(err).message}`);
      return;
    }
    // Focus moves to a neighbour's Delete button, not to the page's start.
    const next = (li.nextElementSibling ?? li.previousElementSibling) as HTMLElement | null;
    li.remove();
    this.totalCount = Math.max(0, this.totalCount - 1);
    this.renderFooter();
    if (hadFocus) (next?.querySelector<HTMLElement>(".media-delete") ?? this.els.filter).focus();
    this.announce(`${media.fileName} deleted.`);
    this.deleted();
  }

  private renderFooter(): void {
    this.els.loadMore.hidden = !this.hasNext;
    const shown = this.els.list.children.length;
    if (!this.loaded) this.els.summary.textContent = "Loading…";
    else if (this.totalCount === 0) this.els.summary.textContent = this.mediaType() ? "No media of this type yet." : "No media yet: uploaded files appear here.";
    else this.els.summary.textContent = `${shown} of ${this.totalCount} shown`;
  }
}

const settled: ReadonlySet<MediaStatus> = new Set(["READY", "FAILED"]);

// A processing result is final: a page asked for before it arrived (and
// answered after) must not turn READY back into PROCESSING. A FAILED
// file shows why (its processingError): a checksum that did not match,
// or a file that could not be decoded or probed.
function showStatus(li: HTMLLIElement, status: MediaStatus, problem: string | null = null): void {
  const label = li.querySelector<HTMLElement>(".media-status");
  if (!label) return;
  const shown = label.dataset.status as MediaStatus | undefined;
  if (shown && settled.has(shown) && !settled.has(status)) return;
  // A result without its reason does not wipe a reason shown already.
  if (status === "FAILED" && !problem && shown === "FAILED") return;
  label.dataset.status = status;
  label.textContent = status === "FAILED" && problem ? `Failed: ${problem}` : (statusLabels[status] ?? status);
}

/** Width in CSS pixels a card's preview is drawn at, about: cards are 13rem and up. */
const previewWidth = 320;
// What the browser picks from srcset by: a card is a column of the
// gallery's grid, as wide as the window on a phone.
const previewSizes = "(max-width: 40rem) 100vw, 20rem";

type PreviewKind = "thumbnail" | "waveform" | "plain";

function previewKind(media: MediaFile): PreviewKind {
  if ((media.mediaType === "IMAGE" || media.mediaType === "VIDEO") && media.thumbnails.length > 0) return "thumbnail";
  if (media.mediaType === "AUDIO" && (media.audio?.peaks.length ?? 0) > 0) return "waveform";
  return "plain";
}

/**
 * Fills a card's preview: a processed image's thumbnail that fits, a
 * video's poster with its duration, an audio file's waveform with its
 * duration; until processing made those (or when it failed), the file
 * itself. While a thumbnail loads, the ThumbHash placeholder shows.
 */
function fillPreview(box: HTMLElement, media: MediaFile): void {
  const kind = previewKind(media);
  box.dataset.preview = kind;
  box.replaceChildren();
  const placeholder = kind === "thumbnail" ? placeholderDataURL(media.placeholder) : null;
  box.style.backgroundImage = placeholder ? `url("${placeholder}")` : "";
  if (media.mediaType === "IMAGE") {
    const img = document.createElement("img");
    img.alt = media.fileName;
    img.loading = "lazy";
    img.decoding = "async";
    if (kind === "thumbnail") {
      img.src = pickThumbnail(media.thumbnails, previewWidth)!.url;
      img.setAttribute("srcset", srcsetOf(media.thumbnails));
      img.setAttribute("sizes", previewSizes);
      // The placeholder would show through a transparent image.
      img.addEventListener("load", () => (box.style.backgroundImage = ""), { once: true });
    } else {
      img.src = media.url;
    }
    box.append(img);
    return;
  }
  const player = document.createElement(media.mediaType === "VIDEO" ? "video" : "audio");
  player.controls = true;
  player.preload = "none";
  player.src = media.url;
  player.setAttribute("aria-label", media.fileName);
  if (kind === "thumbnail") player.setAttribute("poster", pickThumbnail(media.thumbnails, previewWidth)!.url);
  if (kind === "waveform") box.append(waveform(media.audio!.peaks));
  box.append(player);
  if (kind !== "plain" && media.durationSeconds != null) {
    const duration = document.createElement("span");
    duration.className = "media-duration";
    duration.textContent = formatClock(media.durationSeconds);
    duration.setAttribute("aria-label", `duration ${duration.textContent}`);
    box.append(duration);
  }
}

const svgNS = "http://www.w3.org/2000/svg";

function waveform(peaks: readonly number[]): SVGSVGElement {
  const width = peaks.length;
  const height = 64;
  const svg = document.createElementNS(svgNS, "svg");
  svg.setAttribute("class", "media-waveform");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS(svgNS, "path");
  path.setAttribute("d", waveformPath(peaks, width, height));
  svg.append(path);
  return svg;
}
