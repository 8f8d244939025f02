package upload_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spoolhq/spool/internal/upload"
)

// collect reads ch until it closes, in the background; wait returns what
// arrived, failing the test if ch is still open after the deadline.
func collect(t *testing.T, ch <-chan *upload.Progress) (wait func() []upload.Progress) {
	t.Helper()
	done := make(chan []upload.Progress, 1)
	go func() {
		var got []upload.Progress
		for p := range ch {
			got = append(got, *p)
		}
		done <- got
	}()
	return func() []upload.Progress {
		t.Helper()
		select {
		case got := <-done:
			return got
		case <-time.After(10 * time.Second):
			t.Fatalf("subscription still open after 10s")
			return nil
		}
	}
}

// next receives one event, failing after a deadline.
func next(t *testing.T, ch <-chan *upload.Progress) *upload.Progress {
	t.Helper()
	select {
	case p, ok := <-ch:
		if !ok {
			t.Fatalf("subscription closed, want an event")
		}
		return p
	case <-time.After(10 * time.Second):
		t.Fatalf("no event after 10s")
		return nil
	}
}

func checkMonotonic(t *testing.T, events []upload.Progress) {
	t.Helper()
	for i := 1; i < len(events); i++ {
		prev, cur := events[i-1], events[i]
		if cur.UploadID != prev.UploadID {
			continue
		}
		if cur.Version <= prev.Version {
			t.Errorf("event %d of %s: version %d after %d", i, cur.UploadID, cur.Version, prev.Version)
		}
		if cur.Percent < prev.Percent {
			t.Errorf("event %d of %s: percent %d after %d", i, cur.UploadID, cur.Percent, prev.Percent)
		}
	}
}

func TestWatchUpload(t *testing.T) {
	t.Parallel()
	e := newTestService(t, testConfig())
	owner := e.user(t, "alice")
	ctx := t.Context()
	sess := e.initOne(t, owner, mp4Spec("a.mp4", file11))
	e.mustSend(t, sess.ID, 0, file11)

	ch, err := e.svc.WatchUpload(ctx, owner, sess.ID)
	if err != nil {
		t.Fatalf("WatchUpload: %v", err)
	}
	snap := next(t, ch)
	if snap.UploadID != sess.ID || snap.Status != upload.StatusUploading || snap.UploadedChunks != 1 || snap.UploadedBytes != 5*MiB {
		t.Fatalf("first event = %+v, want the snapshot: UPLOADING with chunk 0", snap)
	}
	wait := collect(t, ch)

	// A failure, then the rest, then completion.
	short := e.chunk(file11, 1)[:1000]
	_, err = e.svc.ReceiveChunk(context.Background(), sess.ID, 1, bytes.NewReader(short), upload.ReceiveOptions{ContentLength: -1})
	wantCode(t, err, upload.CodeChunkTooSmall)
	e.mustSend(t, sess.ID, 1, file11)
	e.mustSend(t, sess.ID, 2, file11)
	media, err := e.svc.Complete(context.Background(), owner, sess.ID)
	if err != nil {
		t.Fatal(err)
	}

	events := append([]upload.Progress{*snap}, wait()...)
	if len(events) < 2 {
		t.Fatalf("got %d events, want the snapshot and at least the completion", len(events))
	}
	checkMonotonic(t, events)
	last := events[len(events)-1]
	if last.Status != upload.StatusCompleted || last.Percent != 100 || last.UploadedBytes != 11*MiB {
		t.Fatalf("last event = %s, %d%%, %d bytes; want COMPLETED, 100%%, %d", last.Status, last.Percent, last.UploadedBytes, 11*MiB)
	}
	if last.MediaID == nil || *last.MediaID != media.ID {
		t.Errorf("completed event's media id = %v, want %s", last.MediaID, media.ID)
	}
	if last.MediaStatus == nil || *last.MediaStatus != upload.MediaReady {
		t.Errorf("last event's media status = %v, want READY: the subscription ends after processing", last.MediaStatus)
	}

	// Watching a finished upload sends its state and closes.
	ch, err = e.svc.WatchUpload(ctx, owner, sess.ID)
	if err != nil {
		t.Fatal(err)
	}
	got := collect(t, ch)()
	if len(got) != 1 || got[0].Status != upload.StatusCompleted {
		t.Fatalf("watching a completed upload = %+v, want one COMPLETED event", got)
	}
	if got[0].MediaID == nil || *got[0].MediaID != media.ID {
		t.Errorf("completed snapshot's media id = %v, want %s", got[0].MediaID, media.ID)
	}
	if got[0].MediaStatus == nil || *got[0].MediaStatus != upload.MediaReady {
		t.Errorf("completed snapshot's media status = %v, want READY", got[0].MediaStatus)
	}
}

// TestWatchUploadUntilMediaProcessed: after complete, a subscriber sees
// COMPLETED with its media PROCESSING (unless processing won the race and
// the events collapsed), then the processing result, and only then does
// the subscription end.
func TestWatchUploadUntilMediaProcessed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		sha256 *string
		want   upload.MediaStatus
	}{
		{"no declared hash", nil, upload.MediaReady},
		{"right hash", ptr(sha256Hex(file11)), upload.MediaReady},
		{"wrong hash", ptr(strings.Repeat("ab", 32)), upload.MediaFailed},
	}
	e := newTestService(t, testConfig())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A user each: an earlier READY copy would complete the upload at once (dedup).
			owner := e.user(t, tt.name)
			f := mp4Spec("a.mp4", file11)
			f.SHA256 = tt.sha256
			sess := e.initOne(t, owner, f)
			e.sendAll(t, sess, file11)
			ch, err := e.svc.WatchUpload(t.Context(), owner, sess.ID)
			if err != nil {
				t.Fatal(err)
			}
			wait := collect(t, ch)
			m, err := e.svc.Complete(context.Background(), owner, sess.ID)
			if err != nil {
				t.Fatal(err)
			}
			events := wait()
			checkMonotonic(t, events)
			if first := events[0]; first.Status != upload.StatusUploading || first.MediaID != nil || first.MediaStatus != nil {
				t.Errorf("snapshot = %s, media %v (%v); want UPLOADING with no media", first.Status, first.MediaID, first.MediaStatus)
			}
			completed := 0
			for i, p := range events {
				if p.Status != upload.StatusCompleted {
					continue
				}
				completed++
				if p.MediaID == nil || *p.MediaID != m.ID || p.MediaStatus == nil {
					t.Fatalf("event %d: COMPLETED with media %v (%v), want %s and its status", i, p.MediaID, p.MediaStatus, m.ID)
				}
				if i < len(events)-1 && *p.MediaStatus != upload.MediaProcessing {
					t.Errorf("event %d: COMPLETED with media %s before the last event, want PROCESSING", i, *p.MediaStatus)
				}
			}
			last := events[len(events)-1]
			if completed == 0 || last.Status != upload.StatusCompleted || last.MediaStatus == nil || *last.MediaStatus != tt.want {
				t.Fatalf("last event = %s with media %v, want COMPLETED with media %s", last.Status, last.MediaStatus, tt.want)
			}
			if got := e.waitMedia(t, owner, m.ID).Status; got != tt.want {
				t.Errorf("stored media status = %s, want %s as the event said", got, tt.want)
			}

			// What was published: the result is newer than any event that
			// showed the media PROCESSING, so no subscriber drops it.
			var processing, result int64
			for _, p := range e.broker.eventsOf(sess.ID) {
				switch {
				case p.MediaStatus == nil:
				case *p.MediaStatus == upload.MediaProcessing:
					processing = max(processing, p.Version)
				case *p.MediaStatus == tt.want && result == 0:
					result = p.Version
				}
			}
			if result == 0 || result <= processing {
				t.Errorf("published versions: PROCESSING up to %d, %s at %d; want the result published and newer", processing, tt.want, result)
			}
		})
	}
}

// watchProcessing watches a completed upload whose media is PROCESSING,
// and returns the subscription after checking its snapshot says so.
func (e *testEnv) watchProcessing(t *testing.T, userID, uploadID string) (<-chan *upload.Progress, *upload.Progress) {
	t.Helper()
	ch, err := e.svc.WatchUpload(t.Context(), userID, uploadID)
	if err != nil {
		t.Fatalf("WatchUpload: %v", err)
	}
	snap := next(t, ch)
	if snap.Status != upload.StatusCompleted || snap.MediaStatus == nil || *snap.MediaStatus != upload.MediaProcessing {
		t.Fatalf("snapshot = %s with media %v, want COMPLETED with media PROCESSING", snap.Status, snap.MediaStatus)
	}
	return ch, snap
}

// TestWatchUploadWaitsForRetriedProcessing: while processing fails
// (storage trouble) and its job, queued again by the sweeper, retries
// it, a subscriber is kept waiting, and sees the result once a retry
// succeeds.
func TestWatchUploadWaitsForRetriedProcessing(t *testing.T) {
	t.Parallel()
	e := newTestService(t, testConfig())
	owner := e.user(t, "alice")
	ctx := context.Background()
	sess, m := e.uploadProcessed(t, owner, "a.mp4")
	// As after a crash mid-processing, with the bytes unreadable for now.
	e.unprocess(t, m.ID)
	object := filepath.Join(e.dir, "objects", filepath.FromSlash(m.StorageKey))
	if err := os.Rename(object, object+".away"); err != nil {
		t.Fatal(err)
	}

	ch, snap := e.watchProcessing(t, owner, sess.ID)
	e.clock.Advance(2 * time.Minute) // past the sweeper's patience
	if r, err := e.svc.Sweep(ctx); err != nil || r.Processed != 1 {
		t.Fatalf("Sweep = %+v, %v; want one media's processing queued (and failing)", r, err)
	}
	// Events of the first processing may still land late; only one newer
	// than the snapshot would come from the failed retry.
	for _, ev := range e.broker.eventsOf(sess.ID) {
		if ev.Version > snap.Version {
			t.Errorf("a failed processing published %+v, want nothing newer than version %d", ev, snap.Version)
		}
	}
	select {
	case p, ok := <-ch:
		t.Fatalf("while processing fails: got %+v (open %v), want the subscription open and quiet", p, ok)
	case <-time.After(50 * time.Millisecond):
	}

	if err := os.Rename(object+".away", object); err != nil {
		t.Fatal(err)
	}
	// The job retries on its own, within seconds.
	p := next(t, ch)
	if p.MediaStatus == nil || *p.MediaStatus != upload.MediaReady || p.Version <= snap.Version {
		t.Fatalf("after the retry: media %v at version %d, want READY newer than %d", p.MediaStatus, p.Version, snap.Version)
	}
	if rest := collect(t, ch)(); len(rest) != 0 {
		t.Errorf("after READY: %d more events, want the subscription closed", len(rest))
	}
}

// TestDeleteMediaEndsWatch: deleting media that is still processing
// publishes the upload's progress without it, which ends subscriptions
// that waited for the processing result.
func TestDeleteMediaEndsWatch(t *testing.T) {
	t.Parallel()
	e := newTestService(t, testConfig())
	owner := e.user(t, "alice")
	ctx := context.Background()
	sess, m := e.uploadProcessed(t, owner, "a.mp4")
	e.unprocess(t, m.ID)
	ch, snap := e.watchProcessing(t, owner, sess.ID)
	wait := collect(t, ch)
	if err := e.svc.DeleteMedia(ctx, owner, m.ID); err != nil {
		t.Fatal(err)
	}
	got := wait()
	if len(got) != 1 || got[0].Status != upload.StatusCompleted || got[0].MediaID != nil || got[0].MediaStatus != nil || got[0].Version <= snap.Version {
		t.Fatalf("after deleting the media: %+v, want one newer COMPLETED event naming no media, then the end", got)
	}
}

func TestProgressSettled(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status upload.Status
		media  *upload.MediaStatus
		want   bool
	}{
		{upload.StatusUploading, nil, false},
		{upload.StatusAssembling, nil, false},
		{upload.StatusCompleted, ptr(upload.MediaPending), false},
		{upload.StatusCompleted, ptr(upload.MediaProcessing), false},
		{upload.StatusCompleted, ptr(upload.MediaReady), true},
		{upload.StatusCompleted, ptr(upload.MediaFailed), true},
		{upload.StatusCompleted, nil, true}, // its media was deleted
		{upload.StatusCancelled, nil, true},
		{upload.StatusExpired, nil, true},
		{upload.StatusFailed, nil, true},
	}
	for _, tt := range tests {
		p := upload.Progress{Status: tt.status, MediaStatus: tt.media}
		if got := p.Settled(); got != tt.want {
			t.Errorf("Settled() of %s with media %v = %v, want %v", tt.status, tt.media, got, tt.want)
		}
	}
}

func TestWatchUploadEndsOnExpiry(t *testing.T) {
	t.Parallel()
	e := newTestService(t, testConfig())
	owner := e.user(t, "alice")
	sess := e.initOne(t, owner, mp4Spec("a.mp4", file11))
	ch, err := e.svc.WatchUpload(t.Context(), owner, sess.ID)
	if err != nil {
		t.Fatal(err)
	}
	if snap := next(t, ch); snap.Status != upload.StatusInitialized || snap.Percent != 0 {
		t.Fatalf("snapshot = %s at %d%%, want INITIALIZED at 0%%", snap.Status, snap.Percent)
	}
	wait := collect(t, ch)
	e.clock.Advance(2 * time.Hour)
	if _, err := e.svc.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := wait()
	if len(got) == 0 || got[len(got)-1].Status != upload.StatusExpired {
		t.Fatalf("events after expiry = %+v, want the last one EXPIRED", got)
	}
}

func TestWatchBatch(t *testing.T) {
	t.Parallel()
	e := newTestService(t, testConfig())
	owner := e.user(t, "alice")
	ctx := context.Background()
	b, err := e.svc.InitBatch(ctx, owner, upload.BatchSpec{Files: []upload.FileSpec{
		mp4Spec("a.mp4", file11), mp4Spec("b.mp4", file11),
	}})
	if err != nil {
		t.Fatal(err)
	}
	other := e.initOne(t, owner, mp4Spec("other.mp4", file11)) // same user, another batch
	a, bb := b.Uploads[0], b.Uploads[1]

	ch, err := e.svc.WatchBatch(t.Context(), owner, b.ID)
	if err != nil {
		t.Fatalf("WatchBatch: %v", err)
	}
	first := []*upload.Progress{next(t, ch), next(t, ch)}
	if first[0].UploadID != a.ID && first[1].UploadID != a.ID || first[0].UploadID == first[1].UploadID {
		t.Fatalf("snapshot = %s, %s; want both uploads of the batch", first[0].UploadID, first[1].UploadID)
	}
	wait := collect(t, ch)

	e.sendAll(t, a, file11)
	e.mustSend(t, other.ID, 0, file11)
	if _, err := e.svc.Complete(ctx, owner, a.ID); err != nil {
		t.Fatal(err)
	}
	e.mustSend(t, bb.ID, 0, file11)
	if _, err := e.svc.Cancel(ctx, owner, bb.ID); err != nil {
		t.Fatal(err)
	}

	events := wait()
	latest := map[string]upload.Progress{}
	for _, p := range events {
		if p.UploadID != a.ID && p.UploadID != bb.ID {
			t.Errorf("event for upload %s, not in batch %s", p.UploadID, b.ID)
		}
		if p.BatchID != b.ID {
			t.Errorf("event batch = %s, want %s", p.BatchID, b.ID)
		}
		latest[p.UploadID] = p
	}
	checkMonotonic(t, events)
	if got := latest[a.ID].Status; got != upload.StatusCompleted {
		t.Errorf("last status of %s = %s, want COMPLETED", a.ID, got)
	}
	if got := latest[a.ID].MediaStatus; got == nil || *got != upload.MediaReady {
		t.Errorf("last media status of %s = %v, want READY", a.ID, got)
	}
	if got := latest[bb.ID].Status; got != upload.StatusCancelled {
		t.Errorf("last status of %s = %s, want CANCELLED", bb.ID, got)
	}
}

func TestWatchEndsWithContext(t *testing.T) {
	t.Parallel()
	e := newTestService(t, testConfig())
	owner := e.user(t, "alice")
	sess := e.initOne(t, owner, mp4Spec("a.mp4", file11))
	subs := e.broker.Subscribers()

	for _, kind := range []string{"upload", "batch", "user"} {
		t.Run(kind, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var (
				ch  <-chan *upload.Progress
				err error
			)
			switch kind {
			case "upload":
				ch, err = e.svc.WatchUpload(ctx, owner, sess.ID)
			case "batch":
				ch, err = e.svc.WatchBatch(ctx, owner, sess.BatchID)
			case "user":
				ch, err = e.svc.WatchUser(ctx, owner)
			}
			if err != nil {
				t.Fatalf("watch %s: %v", kind, err)
			}
			if snap := next(t, ch); snap.UploadID != sess.ID {
				t.Fatalf("snapshot of %s, want %s", snap.UploadID, sess.ID)
			}
			wait := collect(t, ch)
			cancel()
			wait()
			deadline := time.Now().Add(5 * time.Second)
			for e.broker.Subscribers() != subs {
				if time.Now().After(deadline) {
					t.Fatalf("subscribers = %d after cancel, want %d", e.broker.Subscribers(), subs)
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
}

// TestWatchReadsSnapshotAfterSubscribing: a change committed just before
// the subscription is registered (its event reaches no feed) is in the
// snapshot, because the snapshot is read after subscribing (the snapshot
// rule, docs/DESIGN.md, invariant 8).
func TestWatchReadsSnapshotAfterSubscribing(t *testing.T) {
	t.Parallel()
	e := newTestService(t, testConfig())
	owner := e.user(t, "alice")
	sess := e.initOne(t, owner, mp4Spec("a.mp4", file11))
	e.broker.mu.Lock()
	e.broker.beforeSubscribe = func() { e.mustSend(t, sess.ID, 0, file11) }
	e.broker.mu.Unlock()

	ch, err := e.svc.WatchUpload(t.Context(), owner, sess.ID)
	if err != nil {
		t.Fatalf("WatchUpload: %v", err)
	}
	if snap := next(t, ch); snap.UploadedChunks != 1 || snap.Status != upload.StatusUploading {
		t.Fatalf("first event = %s with %d chunks, want the snapshot taken after subscribing: UPLOADING with 1",
			snap.Status, snap.UploadedChunks)
	}
}

// TestWatchDropsStaleEvents: an event that is not newer than what the
// subscriber has (a late or repeated publish, another replica's) is not
// forwarded; the next one the subscriber sees is the next real change.
func TestWatchDropsStaleEvents(t *testing.T) {
	t.Parallel()
	e := newTestService(t, testConfig())
	owner := e.user(t, "alice")
	sess := e.initOne(t, owner, mp4Spec("a.mp4", file11))
	e.mustSend(t, sess.ID, 0, file11)
	ch, err := e.svc.WatchUpload(t.Context(), owner, sess.ID)
	if err != nil {
		t.Fatalf("WatchUpload: %v", err)
	}
	snap := next(t, ch)

	for _, version := range []int64{snap.Version - 1, snap.Version} {
		stale := *snap
		stale.Version, stale.UploadedChunks, stale.UploadedBytes = version, 0, 0
		if err := e.broker.Hub.Publish(context.Background(), stale); err != nil {
			t.Fatal(err)
		}
	}
	e.mustSend(t, sess.ID, 1, file11)
	got := next(t, ch)
	if got.Version <= snap.Version || got.UploadedChunks != 2 {
		t.Fatalf("event after the snapshot (version %d) = version %d with %d chunks, want the real change: a newer version with 2",
			snap.Version, got.Version, got.UploadedChunks)
	}
}

// TestWatchResyncReadsSnapshot: when the broker says events may have been
// lost, the subscriber reads the database again and sends what changed,
// here a change no event was published for.
func TestWatchResyncReadsSnapshot(t *testing.T) {
	t.Parallel()
	e := newTestService(t, testConfig())
	owner := e.user(t, "alice")
	sess := e.initOne(t, owner, mp4Spec("a.mp4", file11))
	ch, err := e.svc.WatchUpload(t.Context(), owner, sess.ID)
	if err != nil {
		t.Fatalf("WatchUpload: %v", err)
	}
	if snap := next(t, ch); snap.Status != upload.StatusInitialized {
		t.Fatalf("snapshot status = %s, want INITIALIZED", snap.Status)
	}

	e.force(t, sess.ID, upload.StatusFailed) // committed, never published
	e.broker.Resync()
	got := collect(t, ch)()
	if len(got) != 1 || got[0].Status != upload.StatusFailed {
		t.Fatalf("events after a resync = %+v, want one FAILED read from the database, then the end", got)
	}
}

// TestWatchUserResyncReadsWhatFinished: after lost events, myUploads
// reads again the uploads it sent unsettled, not only the unfinished
// ones: an upload that ended while the events were lost is no longer
// unfinished, and its subscriber would otherwise see it at its last
// state for ever (seen from outside: Redis stopped while an upload was
// ASSEMBLING, and the page's row stayed there).
func TestWatchUserResyncReadsWhatFinished(t *testing.T) {
	t.Parallel()
	e := newTestService(t, testConfig())
	owner := e.user(t, "alice")
	failed := e.initOne(t, owner, mp4Spec("a.mp4", file11))
	cancelled := e.initOne(t, owner, mp4Spec("b.mp4", file11))
	going := e.initOne(t, owner, mp4Spec("c.mp4", file11))
	ch, err := e.svc.WatchUser(t.Context(), owner)
	if err != nil {
		t.Fatalf("WatchUser: %v", err)
	}
	for range 3 {
		if snap := next(t, ch); snap.Status != upload.StatusInitialized {
			t.Fatalf("snapshot: %s is %s, want INITIALIZED", snap.UploadID, snap.Status)
		}
	}

	// Committed, never published: what a subscriber misses while its
	// replica has lost the fan-out.
	e.force(t, failed.ID, upload.StatusFailed)
	e.force(t, cancelled.ID, upload.StatusCancelled)
	e.broker.Resync()
	got := map[string]upload.Status{}
	for range 2 {
		p := next(t, ch)
		got[p.UploadID] = p.Status
	}
	want := map[string]upload.Status{failed.ID: upload.StatusFailed, cancelled.ID: upload.StatusCancelled}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("events after the resync: %v, want %v (and nothing of %s, unchanged)", got, want, going.ID)
	}

	// A second resync sends only what changed since: the settled ones
	// are not sent again.
	e.force(t, going.ID, upload.StatusFailed)
	e.broker.Resync()
	if p := next(t, ch); p.UploadID != going.ID || p.Status != upload.StatusFailed {
		t.Errorf("after the second resync: %s %s, want %s FAILED", p.UploadID, p.Status, going.ID)
	}
}

// wakeCounter is an upload.Receiver that records its calls.
type wakeCounter struct {
	mu       sync.Mutex
	attached bool
	early    bool          // woken before Attach
	wakes    chan struct{} // one token per Wake
}

func (w *wakeCounter) Attach() {
	w.mu.Lock()
	w.attached = true
	w.mu.Unlock()
}

func (w *wakeCounter) Wake() {
	w.mu.Lock()
	if !w.attached {
		w.early = true
	}
	w.mu.Unlock()
	w.wakes <- struct{}{}
}

// TestWatchWakesReceiver: a subscription given a Receiver wakes it before
// every event it sends and before it closes, so a consumer that receives
// only when woken gets everything (a send without a Wake would block it
// forever, and the test would find the event missing).
func TestWatchWakesReceiver(t *testing.T) {
	t.Parallel()
	e := newTestService(t, testConfig())
	owner := e.user(t, "alice")
	first := e.initOne(t, owner, mp4Spec("a.mp4", file11))

	w := &wakeCounter{wakes: make(chan struct{}, 16)}
	ctx, cancel := context.WithCancel(upload.WithReceiver(t.Context(), w))
	defer cancel()
	ch, err := e.svc.WatchUser(ctx, owner)
	if err != nil {
		t.Fatalf("WatchUser: %v", err)
	}
	// receive takes one value per Wake, as the websocket transport does.
	receive := func() (*upload.Progress, bool) {
		t.Helper()
		select {
		case <-w.wakes:
		case <-time.After(10 * time.Second):
			t.Fatalf("no Wake after 10s")
		}
		select {
		case p, ok := <-ch:
			return p, ok
		case <-time.After(10 * time.Second):
			t.Fatalf("woken, but nothing to receive after 10s")
			return nil, false
		}
	}
	if p, ok := receive(); !ok || p.UploadID != first.ID {
		t.Fatalf("snapshot: %v %v, want upload %s", p, ok, first.ID)
	}
	second := e.initOne(t, owner, mp4Spec("b.mp4", file11))
	if p, ok := receive(); !ok || p.UploadID != second.ID {
		t.Fatalf("event: %v %v, want upload %s", p, ok, second.ID)
	}
	cancel()
	if p, ok := receive(); ok {
		t.Fatalf("after cancel: event %v, want the channel closed", p)
	}
	if w.early {
		t.Errorf("woken before Attach")
	}
	if n := len(w.wakes); n != 0 {
		t.Errorf("%d Wakes more than sends and close", n)
	}
}

// inlineReceiver is an upload.Receiver that takes each value inside
// Wake, on the subscription's own goroutine, as the websocket transport
// does once its operation is running; Wakes before it has the channel
// are owed and taken by take.
type inlineReceiver struct {
	mu   sync.Mutex
	ch   <-chan *upload.Progress
	owed int
	got  chan *upload.Progress // what was received; nil for the close
}

func (r *inlineReceiver) Attach() {}

func (r *inlineReceiver) Wake() {
	r.mu.Lock()
	r.owed++
	if r.ch == nil {
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()
	r.take()
}

// take receives what is owed; the values are there already.
func (r *inlineReceiver) take() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for ; r.owed > 0; r.owed-- {
		select {
		case p := <-r.ch:
			r.got <- p
		default:
			panic("woken, but nothing to receive: the Wake came before its send")
		}
	}
}

// TestWatchReceiverTakesInWake: a Receiver may take each value inside
// Wake, so that no goroutine of its own is scheduled between the
// subscription and the client. Were Wake called before the send, the
// receive inside it would find nothing (and block the sender forever).
func TestWatchReceiverTakesInWake(t *testing.T) {
	t.Parallel()
	e := newTestService(t, testConfig())
	owner := e.user(t, "alice")
	first := e.initOne(t, owner, mp4Spec("a.mp4", file11))

	r := &inlineReceiver{got: make(chan *upload.Progress, 16)}
	ctx, cancel := context.WithCancel(upload.WithReceiver(t.Context(), r))
	defer cancel()
	ch, err := e.svc.WatchUser(ctx, owner)
	if err != nil {
		t.Fatalf("WatchUser: %v", err)
	}
	r.mu.Lock()
	r.ch = ch
	r.mu.Unlock()
	r.take() // the snapshot's Wake, if it came first
	next := func() *upload.Progress {
		t.Helper()
		select {
		case p := <-r.got:
			return p
		case <-time.After(10 * time.Second):
			t.Fatalf("nothing received in a Wake after 10s")
			return nil
		}
	}
	if p := next(); p == nil || p.UploadID != first.ID {
		t.Fatalf("snapshot: %v, want upload %s", p, first.ID)
	}
	for _, name := range []string{"b.mp4", "c.mp4", "d.mp4"} {
		sess := e.initOne(t, owner, mp4Spec(name, file11))
		if p := next(); p == nil || p.UploadID != sess.ID {
			t.Fatalf("event: %v, want upload %s", p, sess.ID)
		}
	}
	cancel()
	if p := next(); p != nil {
		t.Fatalf("after cancel: event %v, want the channel closed", p)
	}
}
