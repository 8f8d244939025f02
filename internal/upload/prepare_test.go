package upload_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spoolhq/spool/internal/upload"
)

// preparesSeen passes a store's calls through, watching Prepare: it
// records the most calls in flight at once (the first call waits up to a
// second for a second one, so calls that may overlap are seen to), and
// fails the failAt-th call (counting from 1; 0 fails none).
type preparesSeen struct {
	upload.Store
	failAt int32

	calls, inFlight, most atomic.Int32
	second                chan struct{}
	once                  sync.Once
}

func newPreparesSeen(failAt int32) *preparesSeen {
	return &preparesSeen{failAt: failAt, second: make(chan struct{})}
}

// concurrentPrepares is preparesSeen on a store that asks for its
// Prepare calls to overlap, as GCS does.
type concurrentPrepares struct{ *preparesSeen }

func (concurrentPrepares) PrepareConcurrency() int { return 4 }

func (p *preparesSeen) Prepare(ctx context.Context, key string, size int64) error {
	n := p.calls.Add(1)
	now := p.inFlight.Add(1)
	defer p.inFlight.Add(-1)
	for m := p.most.Load(); now > m && !p.most.CompareAndSwap(m, now); m = p.most.Load() {
	}
	if now >= 2 {
		p.once.Do(func() { close(p.second) })
	}
	if n == 1 {
		select {
		case <-p.second:
		case <-time.After(time.Second):
		}
	}
	if n == p.failAt {
		return errors.New("storage is down")
	}
	return p.Store.Prepare(ctx, key, size)
}

// newPreparingService is a Service taking batches of up to 20 files, on a
// local disk seen through seen, which asks for concurrent preparation if
// concurrent is set.
func newPreparingService(t *testing.T, seen *preparesSeen, concurrent bool) *testEnv {
	t.Helper()
	cfg := testConfig()
	cfg.MaxBatchFiles = 20
	return newTestServiceThrough(t, cfg, func(s upload.Store) upload.Store {
		seen.Store = s
		if concurrent {
			return concurrentPrepares{seen}
		}
		return seen
	})
}

func tinyFiles(n int) []upload.FileSpec {
	files := make([]upload.FileSpec, n)
	for i := range files {
		files[i] = upload.FileSpec{FileName: fmt.Sprintf("%d.mp3", i), Size: 2, MimeType: "audio/mpeg"}
	}
	return files
}

// TestBatchPreparesStorageConcurrently: on a store that asks for it (GCS:
// each Prepare is a round trip, made while the batch holds the user's
// quota row) a batch's files are prepared several at a time, never more
// than it asks; on one that does not (a local disk) one at a time. Every
// file is prepared either way: each upload takes its chunk.
func TestBatchPreparesStorageConcurrently(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		concurrent bool
	}{{"GCS-like", true}, {"local disk", false}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			seen := newPreparesSeen(0)
			preparesAll(t, newPreparingService(t, seen, tc.concurrent), seen, tc.concurrent)
		})
	}
}

func preparesAll(t *testing.T, e *testEnv, seen *preparesSeen, concurrent bool) {
	t.Helper()
	owner := e.user(t, "alice")
	b, err := e.svc.InitBatch(context.Background(), owner, upload.BatchSpec{Files: tinyFiles(20)})
	if err != nil {
		t.Fatalf("InitBatch: %v", err)
	}
	switch most := seen.most.Load(); {
	case concurrent && (most < 2 || most > 4):
		t.Errorf("at most %d Prepare calls ran at once, want 2 to 4", most)
	case !concurrent && most != 1:
		t.Errorf("at most %d Prepare calls ran at once, want one at a time", most)
	}
	if calls := seen.calls.Load(); calls != 20 {
		t.Errorf("%d Prepare calls for 20 files", calls)
	}
	for _, u := range b.Uploads {
		e.mustSend(t, u.ID, 0, []byte{0xFF, 0xFB})
	}
}

// TestBatchPrepareFailureLeavesNothing: when storage fails one file of a
// batch, the batch is refused with STORAGE_UNAVAILABLE and leaves no
// upload, no reservation and no staging file of the files prepared
// before or beside it.
func TestBatchPrepareFailureLeavesNothing(t *testing.T) {
	t.Parallel()
	seen := newPreparesSeen(5)
	e := newPreparingService(t, seen, true)
	owner := e.user(t, "alice")
	ctx := context.Background()
	_, err := e.svc.InitBatch(ctx, owner, upload.BatchSpec{Files: tinyFiles(20)})
	wantCode(t, err, upload.CodeStorageUnavailable)
	if n := e.db.UploadSession.Query().CountX(ctx); n != 0 {
		t.Errorf("a refused batch left %d uploads", n)
	}
	if got := e.reserved(t, owner); got != 0 {
		t.Errorf("a refused batch left %d bytes reserved", got)
	}
	var left []string
	err = filepath.WalkDir(e.dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			left = append(left, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen.calls.Load() < 2 {
		t.Errorf("only %d Prepare calls: the test needs some to succeed", seen.calls.Load())
	}
	if len(left) > 0 {
		t.Errorf("a refused batch left %d staging files: %v", len(left), left)
	}
}
