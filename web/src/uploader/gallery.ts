// The signed-in user's media, newest first, a page at a time: pages load
// as the end of the list scrolls into view, or with the "Load more"
// button for keyboard users.
import type { Api } from "./api";
import { formatBytes, formatDate } from "./format";
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
  FAILED: "Checksum mismatch",
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
   * myUploads event). A file not listed yet may be in a page on its way,
   * asked for before the result: the newest page is merged again.
   */
  showProcessed(id: string, status: MediaStatus): void {
    const li = this.item(id);
    if (li) showStatus(li, status);
    else this.refresh();
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

  // Only status and link change: the preview keeps playing or showing
  // what it loaded, and focus stays where it is.
  private update(li: HTMLLIElement, media: MediaFile): void {
    showStatus(li, media.status);
    const name = li.querySelector<HTMLAnchorElement>(".media-name");
    if (name) name.href = media.url;
  }

  private render(media: MediaFile): HTMLLIElement {
    const li = document.createElement("li");
    li.className = "media";
    li.dataset.mediaId = media.id;
    li.dataset.fileName = media.fileName;
    li.dataset.mediaType = media.mediaType;

    const preview = document.createElement("div");
    preview.className = "media-preview";
    preview.append(this.previewOf(media));

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
    showStatus(li, media.status);
    return li;
  }

  private previewOf(media: MediaFile): HTMLElement {
    if (media.mediaType === "IMAGE") {
      const img = document.createElement("img");
      img.src = media.url;
      img.alt = media.fileName;
      img.loading = "lazy";
      img.decoding = "async";
      return img;
    }
    const player = document.createElement(media.mediaType === "VIDEO" ? "video" : "audio");
    player.controls = true;
    player.preload = "none";
    player.src = media.url;
    player.setAttribute("aria-label", media.fileName);
    return player;
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
// answered after) must not turn READY back into PROCESSING.
function showStatus(li: HTMLLIElement, status: MediaStatus): void {
  const label = li.querySelector<HTMLElement>(".media-status");
  if (!label) return;
  const shown = label.dataset.status as MediaStatus | undefined;
  if (shown && settled.has(shown) && !settled.has(status)) return;
  label.dataset.status = status;
  label.textContent = statusLabels[status] ?? status;
}
