package upload_test

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"runtime/metrics"
	"testing"

	"github.com/spoolhq/spool/internal/database"
	"github.com/spoolhq/spool/internal/upload"
)

// TestSQLiteChunkStartsNoGoroutine: on SQLite a chunk's session read and
// receipt start no goroutine, even with a request's context, which can be
// cancelled (docs/DESIGN.md, "Nothing watches SQLite's chunk path for
// cancellation"). They started four, each waking an idle CPU.
func TestSQLiteChunkStartsNoGoroutine(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig()
	const n = 50
	cfg.MaxBatchFiles = n
	dir := t.TempDir()
	e, err := newEnvOn(t, "", filepath.Join(dir, database.SQLiteFile), filepath.Join(dir, "files"), nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	u, err := e.svc.EnsureUser(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	files := make([]upload.FileSpec, n)
	for i := range files {
		// 0xFF 0xFB opens an MPEG audio frame: the smallest chunk 0
		// that passes the type check.
		files[i] = upload.FileSpec{FileName: fmt.Sprintf("%d.mp3", i), Size: 2, MimeType: "audio/mpeg"}
	}
	batch, err := e.svc.InitBatch(ctx, u.ID, upload.BatchSpec{Files: files})
	if err != nil {
		t.Fatal(err)
	}
	before := goroutinesCreated()
	for _, s := range batch.Uploads {
		request, cancel := context.WithCancel(ctx)
		_, err := e.svc.ReceiveChunk(request, s.ID, 0, bytes.NewReader([]byte{0xFF, 0xFB}), upload.ReceiveOptions{ContentLength: 2})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := goroutinesCreated() - before; got >= n/2 {
		t.Errorf("%d chunks started %d goroutines, want none", n, got)
	}
}

// goroutinesCreated is how many goroutines this process has started.
func goroutinesCreated() uint64 {
	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
