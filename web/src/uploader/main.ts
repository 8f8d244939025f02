// Wires the uploader page: sign-in with a development token, the file
// picker and drop zone, the upload list fed by the myUploads
// subscription, and the gallery. One Session exists while signed in.
import { Api, toServiceError } from "./api";
import { createSpoolClient, type ConnectionState, type SpoolClient } from "./client";
import { loadToken, normalizeToken, saveToken } from "../token";
import { formatBytes } from "./format";
import { Gallery } from "./gallery";
import { UploadManager } from "./manager";
import { MyUploadsSubscription, type User } from "./operations";
import { ServiceError, asServiceError, clampParallel } from "./upload";

const parallelKey = "spool.parallel";

function byId<T extends HTMLElement>(id: string): T {
  const node = document.getElementById(id);
  if (!node) throw new Error(`index.html lacks #${id}`);
  return node as T;
}

const ui = {
  signin: byId<HTMLElement>("signin"),
  signinForm: byId<HTMLFormElement>("signin-form"),
  signinError: byId<HTMLElement>("signin-error"),
  token: byId<HTMLInputElement>("token"),
  app: byId<HTMLElement>("app"),
  account: byId<HTMLElement>("account"),
  userName: byId<HTMLElement>("user-name"),
  quota: byId<HTMLElement>("quota"),
  quotaText: byId<HTMLElement>("quota-text"),
  signOut: byId<HTMLButtonElement>("sign-out"),
  files: byId<HTMLInputElement>("files"),
  dropZone: byId<HTMLElement>("drop-zone"),
  parallel: byId<HTMLInputElement>("parallel"),
  uploads: byId<HTMLUListElement>("uploads"),
  uploadsEmpty: byId<HTMLElement>("uploads-empty"),
  clearFinished: byId<HTMLButtonElement>("clear-finished"),
  connection: byId<HTMLElement>("connection"),
  gallery: byId<HTMLUListElement>("gallery"),
  typeFilter: byId<HTMLSelectElement>("type-filter"),
  loadMore: byId<HTMLButtonElement>("load-more"),
  sentinel: byId<HTMLElement>("gallery-sentinel"),
  gallerySummary: byId<HTMLElement>("gallery-summary"),
  status: byId<HTMLElement>("status"),
};

interface Session {
  client: SpoolClient;
  api: Api;
  manager: UploadManager;
  gallery: Gallery;
  stopProgress: () => void;
  quotaTimer?: ReturnType<typeof setTimeout>;
}

let session: Session | null = null;

/** Says something to screen readers (and shows it briefly). */
function announce(message: string): void {
  const line = document.createElement("p");
  line.textContent = message;
  ui.status.append(line);
  while (ui.status.children.length > 3) ui.status.firstElementChild?.remove();
  placeNotices();
  setTimeout(() => line.remove(), 8_000);
}

// Notices sit at the bottom of the window, or at its top while at the
// bottom they would hide the type filter or the control that has the
// focus. They let clicks through, but a filter one cannot read is one
// nobody uses.
function placeNotices(): void {
  ui.status.dataset.edge = "bottom";
  if (ui.status.childElementCount === 0) return;
  const notices = ui.status.getBoundingClientRect();
  const focused = document.activeElement === document.body ? null : document.activeElement;
  const hidden = [ui.typeFilter, focused].some((el) => el && overlaps(el.getBoundingClientRect(), notices));
  if (hidden) ui.status.dataset.edge = "top";
}

function overlaps(a: DOMRect, b: DOMRect): boolean {
  return a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
}

function wireNotices(): void {
  let pending = false;
  const soon = () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      placeNotices();
    });
  };
  for (const event of ["scroll", "resize"]) window.addEventListener(event, soon, { passive: true });
  document.addEventListener("focusin", soon);
}

// tokenRefusal is why spool refused the token it was sent ("it has
// expired", "it was made for another server, …"), read from its
// UNAUTHENTICATED message; "" when the message gives no reason.
function tokenRefusal(e: ServiceError): string {
  const m = /the bearer token was refused: (.+)$/.exec(e.message);
  return m ? m[1]!.replace(/[.\s]+$/, "") : "";
}

// noLongerAccepted is the notice of a signed-in session whose token
// spool stopped taking.
function noLongerAccepted(e: ServiceError): string {
  const why = tokenRefusal(e);
  return `spool no longer accepts your token${why ? `: ${why}` : ""}. Sign in again.`;
}

function showSignIn(message?: string): void {
  ui.app.hidden = true;
  ui.account.hidden = true;
  ui.signin.hidden = false;
  ui.signinError.hidden = !message;
  ui.signinError.textContent = message ?? "";
  ui.token.focus();
}

async function signIn(token: string): Promise<void> {
  const client = createSpoolClient(token, showConnection);
  const api = new Api(client.urql);
  let me: User;
  try {
    me = await api.me();
  } catch (err) {
    client.dispose();
    const e = asServiceError(err);
    if (e.code === "UNAUTHENTICATED") {
      saveToken("");
      ui.token.value = "";
      const why = tokenRefusal(e) || "it may have expired or come from another server";
      showSignIn(`spool did not accept that token: ${why}. Make a new one with spool token --user NAME.`);
    } else {
      ui.token.value = token;
      showSignIn(`Could not sign in: ${e.message}`);
    }
    return;
  }
  saveToken(token);
  ui.token.value = "";

  const manager = new UploadManager(api, ui.uploads, {
    parallel: () => clampParallel(ui.parallel.valueAsNumber),
    announce,
    chooseFiles: () => ui.files.click(),
    uploadFinished: () => session?.gallery.refresh(),
    mediaProcessed: (id, status, media) => session?.gallery.showProcessed(id, status, media),
    quotaChanged: () => refreshQuota(),
    unauthenticated: () => signOut("spool no longer accepts your token. Sign in again; your unfinished uploads resume when you choose the same files."),
  });
  const gallery = new Gallery(
    { list: ui.gallery, filter: ui.typeFilter, loadMore: ui.loadMore, sentinel: ui.sentinel, summary: ui.gallerySummary },
    api,
    announce,
    () => refreshQuota(),
  );
  session = { client, api, manager, gallery, stopProgress: () => {} };
  session.stopProgress = followProgress(session);

  showUser(me);
  ui.signin.hidden = true;
  ui.signinError.hidden = true;
  ui.account.hidden = false;
  ui.app.hidden = false;
  updateUploadsEmpty();
  void gallery.reset();
}

// One myUploads subscription drives every row: it starts with the
// unfinished uploads (rows after a reload) and carries every change of
// this user's uploads, whichever batch they moved into.
function followProgress(s: Session): () => void {
  let stopped = false;
  let current: { unsubscribe(): void } | null = null;
  let again: ReturnType<typeof setTimeout> | undefined;
  const start = () => {
    current = s.client.urql.subscription(MyUploadsSubscription, {}).subscribe((result) => {
      if (stopped) return;
      if (result.error) {
        const e = toServiceError(result.error);
        if (e.code === "UNAUTHENTICATED") {
          signOut(noLongerAccepted(e));
          return;
        }
        // The operation ended (graphql-ws reconnects sockets by itself);
        // subscribe anew after a pause.
        current?.unsubscribe();
        again = setTimeout(start, 5_000);
        return;
      }
      if (result.data) s.manager.onProgress(result.data.myUploads);
    });
  };
  start();
  return () => {
    stopped = true;
    clearTimeout(again);
    current?.unsubscribe();
  };
}

function signOut(message?: string): void {
  const s = session;
  session = null;
  if (s) {
    s.stopProgress();
    s.manager.dispose();
    s.gallery.dispose();
    s.client.dispose();
    clearTimeout(s.quotaTimer);
  }
  saveToken("");
  ui.uploads.replaceChildren();
  showSignIn(message);
  if (message) announce(message);
}

function showUser(me: User): void {
  ui.userName.textContent = me.name;
  const percent = me.quotaBytes > 0 ? Math.min(100, Math.round((me.usedBytes / me.quotaBytes) * 100)) : 0;
  const text = `${formatBytes(me.usedBytes)} of ${formatBytes(me.quotaBytes)} used`;
  ui.quota.setAttribute("aria-valuenow", String(percent));
  ui.quota.setAttribute("aria-valuetext", text);
  ui.quota.style.setProperty("--fill", `${percent}%`);
  ui.quota.dataset.level = percent >= 90 ? "high" : percent >= 75 ? "warn" : "ok";
  ui.quotaText.textContent = text;
}

// Coalesces the bursts of quota changes a batch causes into one query.
function refreshQuota(): void {
  const s = session;
  if (!s) return;
  clearTimeout(s.quotaTimer);
  s.quotaTimer = setTimeout(() => {
    s.api.me().then(
      (me) => session === s && showUser(me),
      (err: unknown) => {
        if (err instanceof ServiceError && err.code === "UNAUTHENTICATED" && session === s) {
          signOut(noLongerAccepted(err));
        }
      },
    );
  }, 300);
}

function showConnection(state: ConnectionState): void {
  // spool answers again after an outage: uploads that paused themselves
  // on it go on.
  if (state === "connected" && ui.connection.dataset.state === "reconnecting") session?.manager.resumeStalled();
  ui.connection.dataset.state = state;
  ui.connection.textContent =
    state === "connected" ? "Live" : state === "connecting" ? "Connecting…" : "Reconnecting…";
  ui.connection.title =
    state === "reconnecting" ? "Live progress is interrupted; uploads continue and the list catches up." : "";
}

function updateUploadsEmpty(): void {
  ui.uploadsEmpty.hidden = ui.uploads.children.length > 0;
  ui.clearFinished.hidden = ui.uploads.children.length === 0;
}

function addFiles(list: FileList | null | undefined): void {
  const files = [...(list ?? [])];
  if (!session || files.length === 0) return;
  void session.manager.addFiles(files);
  announce(files.length === 1 ? `Uploading ${files[0]!.name}.` : `Uploading ${files.length} files.`);
}

function wirePicker(): void {
  ui.files.addEventListener("change", () => {
    addFiles(ui.files.files);
    // Choosing the same file again (to resume it) must fire change anew.
    ui.files.value = "";
  });
  ui.dropZone.addEventListener("click", () => ui.files.click());
  ui.dropZone.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      ui.files.click();
    }
  });
  // Entering a child fires dragleave on the parent: count the depth.
  let depth = 0;
  ui.dropZone.addEventListener("dragenter", (e) => {
    e.preventDefault();
    depth++;
    ui.dropZone.classList.add("dragover");
  });
  ui.dropZone.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (depth === 0) ui.dropZone.classList.remove("dragover");
  });
  ui.dropZone.addEventListener("dragover", (e) => {
    e.preventDefault();
    if (e.dataTransfer) e.dataTransfer.dropEffect = "copy";
  });
  ui.dropZone.addEventListener("drop", (e) => {
    e.preventDefault();
    depth = 0;
    ui.dropZone.classList.remove("dragover");
    addFiles(e.dataTransfer?.files);
  });
  // A file dropped beside the zone would otherwise replace the page.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());

  // With storage disabled (a browser setting) every use of localStorage
  // throws; the choice then lasts for the visit, like the token.
  try {
    const saved = Number(localStorage.getItem(parallelKey));
    if (saved) ui.parallel.value = String(clampParallel(saved));
  } catch {}
  ui.parallel.addEventListener("change", () => {
    const n = clampParallel(ui.parallel.valueAsNumber);
    ui.parallel.value = String(n);
    try {
      localStorage.setItem(parallelKey, String(n));
    } catch {}
    session?.manager.setParallel(n);
  });
}

function wireAccount(): void {
  ui.signinForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const token = normalizeToken(ui.token.value);
    if (!token) return;
    const submit = ui.signinForm.querySelector<HTMLButtonElement>("button[type=submit]");
    if (submit) submit.disabled = true;
    void signIn(token).finally(() => {
      if (submit) submit.disabled = false;
    });
  });
  ui.signOut.addEventListener("click", () => signOut());
  ui.clearFinished.addEventListener("click", () => {
    session?.manager.clearFinished();
    updateUploadsEmpty();
  });
  new MutationObserver(updateUploadsEmpty).observe(ui.uploads, { childList: true });
}

wirePicker();
wireAccount();
wireNotices();
const saved = loadToken();
if (saved) void signIn(saved);
else showSignIn();
