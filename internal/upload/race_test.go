package upload_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/spoolhq/spool/ent/mediafile"
	"github.com/spoolhq/spool/internal/upload"
)

// TestCompleteWaitsOutResend holds a re-send of a received chunk open
// mid-body while complete() runs: complete must not judge the upload whole
// (the chunk is being overwritten), and the re-send's bytes must never end
// up in a completed file.
func TestCompleteWaitsOutResend(t *testing.T) {
	t.Parallel()
	e := newTestService(t, testConfig())
	alice := e.user(t, "alice")
	sess := e.initOne(t, alice, mp4Spec("a.mp4", file11))
	e.sendAll(t, sess, file11)

	pr, pw := io.Pipe()
	resent := make(chan error, 1)
	go func() {
		c := e.chunk(file11, 1)
		_, err := e.svc.ReceiveChunk(context.Background(), sess.ID, 1, pr,
			upload.ReceiveOptions{ContentLength: int64(len(c))})
		resent <- err
	}()
	// Half the chunk goes in; the write is now under way.
	if _, err := pw.Write(make([]byte, 2*MiB)); err != nil {
		t.Fatal(err)
	}
	completed := make(chan error, 1)
	go func() {
		_, err := e.svc.Complete(context.Background(), alice, sess.ID)
		completed <- err
	}()
	var err error
	select {
	case err = <-completed:
		pw.CloseWithError(errors.New("client went away"))
	case <-time.After(5 * time.Second):
		// complete() is waiting for the write to finish, which is the bug;
		// end the write so the test reports it instead of hanging.
		pw.CloseWithError(errors.New("client went away"))
		err = <-completed
	}
	wantCode(t, err, upload.CodeIncomplete)
	wantCode(t, <-resent, upload.CodeChunkTooSmall)

	e.mustSend(t, sess.ID, 1, file11)
	m, err := e.svc.Complete(context.Background(), alice, sess.ID)
	if err != nil {
		t.Fatalf("complete after the good re-send: %v", err)
	}
	if got := e.waitMedia(t, alice, m.ID); got.Status != mediafile.StatusREADY || *got.ContentHash != sha256Hex(file11) {
		t.Errorf("media: got %s with hash %v, want READY with %s", got.Status, got.ContentHash, sha256Hex(file11))
	}
}
