package upload_test

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
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

// afterFirstWrite is a Store that runs then once, after its first
// WriteChunk has written and before the service records what it wrote.
type afterFirstWrite struct {
	upload.Store
	done atomic.Bool
	then func()
}

func (a *afterFirstWrite) WriteChunk(ctx context.Context, key string, chunk upload.ChunkRef, body io.Reader) (int64, error) {
	n, err := a.Store.WriteChunk(ctx, key, chunk, body)
	// Not a sync.Once: then writes the chunk again through this store,
	// and a Once would make that wait for then to return.
	if a.done.CompareAndSwap(false, true) {
		a.then()
	}
	return n, err
}

// cutBody sends first, then fails: a client cut off.
func cutBody(first []byte) *stallingBody {
	b := &stallingBody{first: first, started: make(chan struct{}), release: make(chan struct{})}
	close(b.release)
	return b
}

// On the local disk two arrivals of a chunk write one at a time, but each
// records its outcome after its write, so a client cut off halfway that
// sent the chunk again could have the whole copy written and acknowledged
// between the cut copy's write and its record: the cut copy, recorded
// then and counted as touching the chunk, marked the acknowledged chunk
// FAILED. Its bytes lie under the whole copy's; the chunk stays RECEIVED.
func TestCutArrivalRecordedLateKeepsTheChunkOnLocalDisk(t *testing.T) {
	t.Parallel()
	hook := &afterFirstWrite{}
	e := newTestServiceThrough(t, testConfig(), func(s upload.Store) upload.Store {
		hook.Store = s
		return hook
	})
	owner := e.user(t, "alice")
	data := mp4Bytes(11*MiB, 43)
	sess := e.initOne(t, owner, mp4Spec("v.mp4", data))
	chunk := e.chunk(data, 1)
	hook.then = func() {
		if p := e.mustSend(t, sess.ID, 1, data); p.UploadedChunks != 1 {
			t.Errorf("the whole copy: %d chunks received, want 1", p.UploadedChunks)
		}
	}
	_, err := e.svc.ReceiveChunk(context.Background(), sess.ID, 1, cutBody(chunk[:len(chunk)/2]), upload.ReceiveOptions{ContentLength: int64(len(chunk))})
	wantCode(t, err, upload.CodeChunkTooSmall)
	got := e.stored(t, sess.ID)
	if got.ReceivedChunks != 1 || got.FailedChunks != 0 {
		t.Errorf("after the cut copy's answer: %d received, %d failed; want the acknowledged chunk still received", got.ReceivedChunks, got.FailedChunks)
	}
}
