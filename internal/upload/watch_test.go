package upload_test

import (
	"bytes"
	"context"
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
}

func TestWatchUploadEndsOnExpiry(t *testing.T) {
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
	if got := latest[bb.ID].Status; got != upload.StatusCancelled {
		t.Errorf("last status of %s = %s, want CANCELLED", bb.ID, got)
	}
}

func TestWatchEndsWithContext(t *testing.T) {
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
