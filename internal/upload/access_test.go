package upload_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/spoolhq/spool/internal/upload"
)

func TestTypeMismatch(t *testing.T) {
	t.Parallel()
	e := newTestService(t, testConfig())
	owner := e.user(t, "alice")
	ctx := context.Background()
	sess := e.initOne(t, owner, mp4Spec("fake.mp4", file11))
	png := pngBytes(5 * MiB)

	p, err := e.svc.ReceiveChunk(ctx, sess.ID, 0, bytes.NewReader(png), upload.ReceiveOptions{ContentLength: int64(len(png))})
	wantCode(t, err, upload.CodeTypeMismatch)
	if msg := upload.ErrorMessage(err); !bytes.Contains([]byte(msg), []byte("image/png")) {
		t.Errorf("message = %q, want it to name what the bytes look like (image/png)", msg)
	}
	checkCounts(t, p, 0, 0, []int{0})
	_, err = e.svc.ConfirmChunk(ctx, owner, sess.ID, 0, 5*MiB, nil)
	wantCode(t, err, upload.CodeTypeMismatch)
	s, err := e.svc.Session(ctx, owner, sess.ID)
	if err != nil {
		t.Fatal(err)
	}
	checkCounts(t, s.Progress, 0, 0, []int{0})

	// Sniffing looks at chunk 0 only: other chunks carry any bytes.
	e.mustSend(t, sess.ID, 1, file11)
	// The real first chunk clears the failure.
	p = e.mustSend(t, sess.ID, 0, file11)
	checkCounts(t, p, 10*MiB, 2, []int{})
	if _, err := e.svc.ConfirmChunk(ctx, owner, sess.ID, 0, 5*MiB, nil); err != nil {
		t.Fatalf("ConfirmChunk after the right bytes = %v, want success", err)
	}

	// A real PNG declared as one goes up as a SINGLE chunk.
	img := pngBytes(300 * KiB)
	pngSess := e.initOne(t, owner, upload.FileSpec{FileName: "a.png", Size: int64(len(img)), MimeType: "image/png"})
	if _, err := e.svc.ReceiveChunk(ctx, pngSess.ID, 0, bytes.NewReader(img), upload.ReceiveOptions{ContentLength: -1}); err != nil {
		t.Fatalf("ReceiveChunk of a real PNG = %v, want success", err)
	}
	// An MP4 declared as a PNG is refused too.
	fake := e.initOne(t, owner, upload.FileSpec{FileName: "b.png", Size: 300 * KiB, MimeType: "image/png"})
	_, err = e.svc.ReceiveChunk(ctx, fake.ID, 0, bytes.NewReader(file11[:300*KiB]), upload.ReceiveOptions{ContentLength: 300 * KiB})
	wantCode(t, err, upload.CodeTypeMismatch)
}

// TestOwnership: every method answers NOT_FOUND for another user's
// upload, batch or media file, exactly as for an id that does not exist,
// and changes nothing.
func TestOwnership(t *testing.T) {
	t.Parallel()
	e := newTestService(t, testConfig())
	alice := e.user(t, "alice")
	mallory := e.user(t, "mallory")
	ctx := context.Background()

	done, media := e.uploadProcessed(t, alice, "done.mp4")
	open := e.initOne(t, alice, mp4Spec("open.mp4", file11))
	e.mustSend(t, open.ID, 0, file11)
	before := e.stored(t, open.ID)
	reserved := e.reserved(t, alice)

	chunk1 := e.chunk(file11, 1)
	calls := []struct {
		name string
		call func(user, uploadID, batchID, mediaID string) error
	}{
		{"Session", func(u, id, _, _ string) error { _, err := e.svc.Session(ctx, u, id); return err }},
		{"ReceiveChunk", func(u, id, _, _ string) error {
			_, err := e.svc.ReceiveChunk(ctx, id, 1, bytes.NewReader(chunk1), upload.ReceiveOptions{OwnerID: u, ContentLength: 5 * MiB})
			return err
		}},
		{"ReceiveRange", func(u, id, _, _ string) error {
			_, err := e.svc.ReceiveRange(ctx, u, id, 5*MiB, 10*MiB-1, 11*MiB, bytes.NewReader(chunk1), upload.ReceiveOptions{ContentLength: 5 * MiB})
			return err
		}},
		{"ConfirmChunk", func(u, id, _, _ string) error { _, err := e.svc.ConfirmChunk(ctx, u, id, 0, 5*MiB, nil); return err }},
		{"ChunkURL", func(u, id, _, _ string) error { _, err := e.svc.ChunkURL(ctx, u, id, 1); return err }},
		{"Retry", func(u, id, _, _ string) error { _, err := e.svc.Retry(ctx, u, id); return err }},
		{"Complete", func(u, id, _, _ string) error { _, err := e.svc.Complete(ctx, u, id); return err }},
		{"Complete (completed upload)", func(u, _, _, _ string) error { _, err := e.svc.Complete(ctx, u, done.ID); return err }},
		{"Cancel", func(u, id, _, _ string) error { _, err := e.svc.Cancel(ctx, u, id); return err }},
		{"WatchUpload", func(u, id, _, _ string) error { _, err := e.svc.WatchUpload(ctx, u, id); return err }},
		{"Batch", func(u, _, b, _ string) error { _, err := e.svc.Batch(ctx, u, b); return err }},
		{"WatchBatch", func(u, _, b, _ string) error { _, err := e.svc.WatchBatch(ctx, u, b); return err }},
		{"Media", func(u, _, _, m string) error { _, err := e.svc.Media(ctx, u, m); return err }},
		{"Node", func(u, _, _, m string) error { _, err := e.svc.Node(ctx, u, m); return err }},
		{"DeleteMedia", func(u, _, _, m string) error { return e.svc.DeleteMedia(ctx, u, m) }},
	}
	targets := []struct {
		name                       string
		uploadID, batchID, mediaID string
	}{
		{"someone else's", open.ID, open.BatchID, media.ID},
		{"missing", "upl_doesnotexist", "bat_doesnotexist", "med_doesnotexist"},
	}
	for _, target := range targets {
		for _, c := range calls {
			t.Run(target.name+"/"+c.name, func(t *testing.T) {
				err := c.call(mallory, target.uploadID, target.batchID, target.mediaID)
				wantCode(t, err, upload.CodeNotFound)
			})
		}
	}

	if m, err := e.svc.UploadMedia(ctx, mallory, done.ID); m != nil || err != nil {
		t.Errorf("UploadMedia for another user = %v, %v; want nil, nil", m, err)
	}
	// Nothing changed for alice.
	after := e.stored(t, open.ID)
	if after.Status != before.Status || after.Version != before.Version {
		t.Errorf("alice's upload went from %s v%d to %s v%d", before.Status, before.Version, after.Status, after.Version)
	}
	if got := e.reserved(t, alice); got != reserved {
		t.Errorf("alice's reservation = %d, want %d", got, reserved)
	}
	if got := e.reserved(t, mallory); got != 0 {
		t.Errorf("mallory's reservation = %d, want 0", got)
	}
	if _, err := e.svc.Media(ctx, alice, media.ID); err != nil {
		t.Errorf("alice's media after mallory's delete = %v, want it still there", err)
	}
	s, err := e.svc.Session(ctx, alice, open.ID)
	if err != nil {
		t.Fatal(err)
	}
	checkCounts(t, s.Progress, 5*MiB, 1, []int{})
}
