package upload_test

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spoolhq/spool/internal/upload"
)

// smFile is the file the state machine tests upload: chunks of 5 MiB,
// 5 MiB and 4 KiB.
var smFile = mp4Bytes(10*MiB+4*KiB, 1)

// smCase is an upload brought into a starting state.
type smCase struct {
	id      string
	mediaID string // set when the setup completed the upload
}

type smSetup func(t *testing.T, e *testEnv, owner string) smCase

func smStates() []struct {
	name  string
	setup smSetup
} {
	start := func(t *testing.T, e *testEnv, owner string, chunks ...int) smCase {
		t.Helper()
		sess := e.initOne(t, owner, mp4Spec("clip.mp4", smFile))
		for _, i := range chunks {
			e.mustSend(t, sess.ID, i, smFile)
		}
		return smCase{id: sess.ID}
	}
	return []struct {
		name  string
		setup smSetup
	}{
		{"INITIALIZED", func(t *testing.T, e *testEnv, owner string) smCase {
			return start(t, e, owner)
		}},
		{"UPLOADING", func(t *testing.T, e *testEnv, owner string) smCase {
			return start(t, e, owner, 0, 1)
		}},
		{"UPLOADING all received", func(t *testing.T, e *testEnv, owner string) smCase {
			return start(t, e, owner, 0, 1, 2)
		}},
		{"ASSEMBLING", func(t *testing.T, e *testEnv, owner string) smCase {
			c := start(t, e, owner, 0, 1, 2)
			e.force(t, c.id, upload.StatusAssembling)
			return c
		}},
		{"COMPLETED", func(t *testing.T, e *testEnv, owner string) smCase {
			c := start(t, e, owner, 0, 1, 2)
			m, err := e.svc.Complete(context.Background(), owner, c.id)
			if err != nil {
				t.Fatalf("Complete: %v", err)
			}
			c.mediaID = m.ID
			// Processing's result bumps the version: let it land before
			// the operation under test is tried.
			e.waitMedia(t, owner, m.ID)
			return c
		}},
		{"CANCELLED", func(t *testing.T, e *testEnv, owner string) smCase {
			c := start(t, e, owner, 0)
			if _, err := e.svc.Cancel(context.Background(), owner, c.id); err != nil {
				t.Fatalf("Cancel: %v", err)
			}
			return c
		}},
		{"EXPIRED", func(t *testing.T, e *testEnv, owner string) smCase {
			c := start(t, e, owner, 0)
			// Its time runs out; reading it is what expires it.
			err := e.db.UploadSession.UpdateOneID(c.id).SetExpiresAt(e.clock.Now().Add(-time.Second)).Exec(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			s, err := e.svc.Session(context.Background(), owner, c.id)
			if err != nil {
				t.Fatalf("Session: %v", err)
			}
			if s.Status != upload.StatusExpired {
				t.Fatalf("status after expiry = %s, want EXPIRED", s.Status)
			}
			return c
		}},
		{"FAILED", func(t *testing.T, e *testEnv, owner string) smCase {
			c := start(t, e, owner, 0)
			e.force(t, c.id, upload.StatusFailed)
			return c
		}},
	}
}

// smOps are the operations tried in every state. Each returns the media
// id Complete produced, if any.
var smOps = []struct {
	name string
	run  func(e *testEnv, owner, id string) (mediaID string, err error)
}{
	{"ReceiveChunk", func(e *testEnv, owner, id string) (string, error) {
		_, err := e.send(id, 2, smFile)
		return "", err
	}},
	{"ConfirmChunk", func(e *testEnv, owner, id string) (string, error) {
		_, err := e.svc.ConfirmChunk(context.Background(), owner, id, 0, 5*MiB, nil)
		return "", err
	}},
	{"ChunkURL", func(e *testEnv, owner, id string) (string, error) {
		_, err := e.svc.ChunkURL(context.Background(), owner, id, 2)
		return "", err
	}},
	{"Retry", func(e *testEnv, owner, id string) (string, error) {
		_, err := e.svc.Retry(context.Background(), owner, id)
		return "", err
	}},
	{"Complete", func(e *testEnv, owner, id string) (string, error) {
		m, err := e.svc.Complete(context.Background(), owner, id)
		if err != nil {
			return "", err
		}
		return m.ID, nil
	}},
	{"Cancel", func(e *testEnv, owner, id string) (string, error) {
		_, err := e.svc.Cancel(context.Background(), owner, id)
		return "", err
	}},
}

type smWant struct {
	code   upload.Code // "" for success
	status upload.Status
}

func TestStateMachine(t *testing.T) {
	t.Parallel()
	const (
		ok       = upload.Code("")
		finished = upload.CodeAlreadyFinished
		expired  = upload.CodeSessionExpired
	)
	var (
		initialized = upload.StatusInitialized
		uploading   = upload.StatusUploading
		assembling  = upload.StatusAssembling
		completed   = upload.StatusCompleted
		cancelled   = upload.StatusCancelled
		expiredSt   = upload.StatusExpired
		failedSt    = upload.StatusFailed
	)
	// want[state][op]
	want := map[string]map[string]smWant{
		"INITIALIZED": {
			"ReceiveChunk": {ok, uploading},
			"ConfirmChunk": {upload.CodeChunkMissing, initialized},
			"ChunkURL":     {ok, initialized},
			"Retry":        {ok, initialized},
			"Complete":     {upload.CodeIncomplete, initialized},
			"Cancel":       {ok, cancelled},
		},
		"UPLOADING": {
			"ReceiveChunk": {ok, uploading},
			"ConfirmChunk": {ok, uploading},
			"ChunkURL":     {ok, uploading},
			"Retry":        {ok, uploading},
			"Complete":     {upload.CodeIncomplete, uploading},
			"Cancel":       {ok, cancelled},
		},
		"UPLOADING all received": {
			"ReceiveChunk": {ok, uploading},
			"ConfirmChunk": {ok, uploading},
			"ChunkURL":     {ok, uploading},
			"Retry":        {ok, uploading},
			"Complete":     {ok, completed},
			"Cancel":       {ok, cancelled},
		},
		"ASSEMBLING": {
			"ReceiveChunk": {finished, assembling},
			"ConfirmChunk": {finished, assembling},
			"ChunkURL":     {finished, assembling},
			"Retry":        {finished, assembling},
			"Complete":     {ok, completed}, // finishes an interrupted assembly
			"Cancel":       {finished, assembling},
		},
		"COMPLETED": {
			"ReceiveChunk": {finished, completed},
			"ConfirmChunk": {finished, completed},
			"ChunkURL":     {finished, completed},
			"Retry":        {finished, completed},
			"Complete":     {ok, completed}, // the same media file again
			"Cancel":       {finished, completed},
		},
		"CANCELLED": {
			"ReceiveChunk": {finished, cancelled},
			"ConfirmChunk": {finished, cancelled},
			"ChunkURL":     {finished, cancelled},
			"Retry":        {finished, cancelled},
			"Complete":     {finished, cancelled},
			"Cancel":       {finished, cancelled},
		},
		"EXPIRED": {
			"ReceiveChunk": {expired, expiredSt},
			"ConfirmChunk": {expired, expiredSt},
			"ChunkURL":     {expired, expiredSt},
			"Retry":        {expired, expiredSt},
			"Complete":     {expired, expiredSt},
			"Cancel":       {expired, expiredSt},
		},
		"FAILED": {
			"ReceiveChunk": {finished, failedSt},
			"ConfirmChunk": {finished, failedSt},
			"ChunkURL":     {finished, failedSt},
			"Retry":        {finished, failedSt},
			"Complete":     {finished, failedSt},
			"Cancel":       {finished, failedSt},
		},
	}

	e := newTestService(t, testConfig())
	owner := e.user(t, "alice")
	for _, st := range smStates() {
		for _, op := range smOps {
			w, found := want[st.name][op.name]
			if !found {
				t.Fatalf("no expectation for %s × %s", st.name, op.name)
			}
			t.Run(st.name+"/"+op.name, func(t *testing.T) {
				c := st.setup(t, e, owner)
				before := e.stored(t, c.id)
				mediaID, err := op.run(e, owner, c.id)
				if w.code == ok {
					if err != nil {
						t.Fatalf("%s on %s = %v, want success", op.name, st.name, err)
					}
				} else {
					wantCode(t, err, w.code)
				}
				after := e.stored(t, c.id)
				if after.Status != w.status {
					t.Fatalf("status after %s on %s = %s, want %s", op.name, st.name, after.Status, w.status)
				}
				if err != nil && after.Version != before.Version {
					t.Errorf("a refused %s changed the version from %d to %d", op.name, before.Version, after.Version)
				}
				if c.mediaID != "" && op.name == "Complete" && mediaID != c.mediaID {
					t.Errorf("Complete again returned media %s, want the first one %s", mediaID, c.mediaID)
				}
				if after.Status == upload.StatusCompleted {
					if n := e.mediaCount(t, c.id); n != 1 {
						t.Errorf("media files of a completed upload = %d, want 1", n)
					}
				}
			})
		}
	}
}

// TestOperationsAfterExpiry runs every operation on an unfinished upload
// whose time ran out: each answers SESSION_EXPIRED and expires the upload
// on the way, freeing its bytes and its quota.
func TestOperationsAfterExpiry(t *testing.T) {
	t.Parallel()
	e := newTestService(t, testConfig())
	owner := e.user(t, "alice")
	for _, chunks := range [][]int{{}, {0, 2}} {
		for _, op := range smOps {
			name := "INITIALIZED/" + op.name
			if len(chunks) > 0 {
				name = "UPLOADING/" + op.name
			}
			t.Run(name, func(t *testing.T) {
				reservedBefore := e.reserved(t, owner)
				sess := e.initOne(t, owner, mp4Spec("clip.mp4", smFile))
				for _, i := range chunks {
					e.mustSend(t, sess.ID, i, smFile)
				}
				staging := e.stagingPath(t, sess.ID)
				if !exists(t, staging) {
					t.Fatalf("staging file %s missing before expiry", staging)
				}
				if got, want := e.reserved(t, owner), reservedBefore+int64(len(smFile)); got != want {
					t.Fatalf("reserved before expiry = %d, want %d", got, want)
				}

				e.clock.Advance(time.Hour) // exactly the TTL: expires_at is not in the future
				_, err := op.run(e, owner, sess.ID)
				wantCode(t, err, upload.CodeSessionExpired)

				after := e.stored(t, sess.ID)
				if after.Status != upload.StatusExpired {
					t.Fatalf("status = %s, want EXPIRED", after.Status)
				}
				if !after.BytesFreed {
					t.Errorf("bytes_freed = false, want true")
				}
				if exists(t, staging) {
					t.Errorf("staging file %s still exists after expiry", staging)
				}
				if got := e.reserved(t, owner); got != reservedBefore {
					t.Errorf("reserved after expiry = %d, want %d", got, reservedBefore)
				}
				// And it stays expired for the next call.
				_, err = e.svc.Retry(context.Background(), owner, sess.ID)
				wantCode(t, err, upload.CodeSessionExpired)
			})
		}
	}
}

// assembleHook is a Store that runs after once its first Assemble has
// put the file together.
type assembleHook struct {
	upload.Store
	once  sync.Once
	after func()
}

func (h *assembleHook) Assemble(ctx context.Context, key string, total int, size int64) (string, error) {
	obj, err := h.Store.Assemble(ctx, key, total, size)
	h.once.Do(h.after)
	return obj, err
}

// TestExpiryDuringAssembly expires an upload while the store assembles it
// (the sweeper of another replica, when the session's time runs out):
// complete answers SESSION_EXPIRED and leaves no media file, no assembled
// object and the quota given back once, not a file nobody pays for.
func TestExpiryDuringAssembly(t *testing.T) {
	t.Parallel()
	hook := &assembleHook{}
	e := newTestServiceThrough(t, testConfig(), func(s upload.Store) upload.Store {
		hook.Store = s
		return hook
	})
	ctx := context.Background()
	owner := e.user(t, "alice")
	sess := e.initOne(t, owner, mp4Spec("clip.mp4", smFile))
	e.sendAll(t, sess, smFile)
	hook.after = func() {
		e.clock.Advance(time.Hour)
		if r, err := e.svc.Sweep(ctx); err != nil || r.Expired != 1 {
			t.Errorf("sweep during assembly = %+v, %v; want 1 expired", r, err)
		}
	}

	_, err := e.svc.Complete(ctx, owner, sess.ID)
	wantCode(t, err, upload.CodeSessionExpired)
	if got := e.stored(t, sess.ID).Status; got != upload.StatusExpired {
		t.Errorf("status = %s, want EXPIRED", got)
	}
	if n := e.mediaCount(t, sess.ID); n != 0 {
		t.Errorf("media files = %d, want 0", n)
	}
	if got := e.reserved(t, owner); got != 0 {
		t.Errorf("reserved = %d, want 0", got)
	}
	if files := e.filesUnder(t, ""); len(files) != 0 {
		t.Errorf("files left in storage: %v", files)
	}
}

// failingWrites is a Store whose WriteChunk fails, as storage that went
// down, while failing is set.
type failingWrites struct {
	upload.Store
	failing atomic.Bool
}

func (f *failingWrites) WriteChunk(ctx context.Context, key string, chunk upload.ChunkRef, body io.Reader) (int64, error) {
	if f.failing.Load() {
		return 0, errors.New("storage is down")
	}
	return f.Store.WriteChunk(ctx, key, chunk, body)
}

// TestResendIntoFailingStorageIsPublished re-sends a received chunk while
// storage is down: the chunk no longer counts (its old bytes may be half
// overwritten), and subscribers hear so, not only the next caller.
func TestResendIntoFailingStorageIsPublished(t *testing.T) {
	t.Parallel()
	flaky := &failingWrites{}
	e := newTestServiceThrough(t, testConfig(), func(s upload.Store) upload.Store {
		flaky.Store = s
		return flaky
	})
	owner := e.user(t, "alice")
	sess := e.initOne(t, owner, mp4Spec("clip.mp4", smFile))
	e.mustSend(t, sess.ID, 0, smFile)
	e.mustSend(t, sess.ID, 1, smFile)

	flaky.failing.Store(true)
	_, err := e.send(sess.ID, 1, smFile)
	wantCode(t, err, upload.CodeStorageUnavailable)

	events := e.broker.eventsOf(sess.ID)
	last := events[len(events)-1]
	if last.UploadedChunks != 1 || !slices.Contains(last.FailedChunks, 1) {
		t.Errorf("last event: %d chunks received, failed %v; want 1 received and chunk 1 failed", last.UploadedChunks, last.FailedChunks)
	}
}

// cancelOnWrite is a Store that runs cancel before its first WriteChunk
// goes on: an upload cancelled elsewhere while its chunk was on the way.
type cancelOnWrite struct {
	upload.Store
	once   sync.Once
	cancel func()
}

func (c *cancelOnWrite) WriteChunk(ctx context.Context, key string, chunk upload.ChunkRef, body io.Reader) (int64, error) {
	c.once.Do(c.cancel)
	return c.Store.WriteChunk(ctx, key, chunk, body)
}

// TestChunkOfAnUploadStoppedMeanwhile: a chunk whose upload stops while
// it arrives is told why. Cancelled (by another tab, the CLI's user in a
// browser): ALREADY_FINISHED, and the message says it was cancelled.
// Expired, whether the sweeper freed its file before the write or its
// time ran out before the receipt: SESSION_EXPIRED, as before the write.
// Both once answered ALREADY_FINISHED, "no longer takes chunks".
func TestChunkOfAnUploadStoppedMeanwhile(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name     string
		stop     func(t *testing.T, e *testEnv, owner, id string)
		wantCode upload.Code
		want     string
	}{
		{"cancelled", func(t *testing.T, e *testEnv, owner, id string) {
			if _, err := e.svc.Cancel(context.Background(), owner, id); err != nil {
				t.Errorf("Cancel: %v", err)
			}
		}, upload.CodeAlreadyFinished, "is CANCELLED: it takes no more chunks"},
		{"expired and swept", func(t *testing.T, e *testEnv, owner, id string) {
			e.clock.Advance(e.cfg.SessionTTL + time.Second)
			if r, err := e.svc.Sweep(context.Background()); err != nil || r.Expired != 1 {
				t.Errorf("Sweep: %+v, %v; want 1 expired", r, err)
			}
		}, upload.CodeSessionExpired, "expired at"},
		{"expired before its receipt", func(t *testing.T, e *testEnv, owner, id string) {
			e.clock.Advance(e.cfg.SessionTTL + time.Second)
		}, upload.CodeSessionExpired, "expired at"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			hook := &cancelOnWrite{}
			e := newTestServiceThrough(t, testConfig(), func(s upload.Store) upload.Store {
				hook.Store = s
				return hook
			})
			owner := e.user(t, "alice")
			sess := e.initOne(t, owner, mp4Spec("a.mp4", file11))
			hook.cancel = func() { tt.stop(t, e, owner, sess.ID) }
			_, err := e.send(sess.ID, 0, file11)
			wantCode(t, err, tt.wantCode)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to say %q", err, tt.want)
			}
			if tt.wantCode == upload.CodeSessionExpired {
				if st := e.stored(t, sess.ID).Status; st != upload.StatusExpired {
					t.Errorf("the upload is %s after the answer, want EXPIRED", st)
				}
			}
		})
	}
}
