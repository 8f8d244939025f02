package upload_test

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"runtime/metrics"
	"testing"

	"github.com/spoolhq/spool/internal/database"
	"github.com/spoolhq/spool/internal/database/dbtest"
	"github.com/spoolhq/spool/internal/upload"
)

// TestSQLiteChunkStartsNoGoroutine: on SQLite a chunk's session read and
// receipt start no goroutine, even with a request's context, which can be
// cancelled (docs/DESIGN.md, "Nothing watches SQLite's chunk path for
// cancellation"). They started four, each waking an idle CPU.
func TestSQLiteChunkStartsNoGoroutine(t *testing.T) {
	dir := t.TempDir()
	chunksStartNoGoroutine(t, "", filepath.Join(dir, database.SQLiteFile), filepath.Join(dir, "files"))
}

// TestPostgresChunkStartsNoGoroutine: on PostgreSQL neither does a
// chunk's session read, which database/sql watched for its context's
// end with a goroutine, though nothing ends a chunk PUT's context before
// its body is read (docs/DESIGN.md, "Nothing watches SQLite's chunk path
// for cancellation"). The receipt's context cannot be cancelled anyway.
func TestPostgresChunkStartsNoGoroutine(t *testing.T) {
	chunksStartNoGoroutine(t, dbtest.Postgres(t), "", t.TempDir())
}

// chunksStartNoGoroutine receives 2-byte chunks, each its upload's only
// one, each with a context that can be cancelled, as a request's, and
// fails if most of them start a goroutine. The count is the process's,
// so what else it does meanwhile (River's start, its polls) lands in
// some chunks' counts, in bursts of up to a few dozen: a chunk that
// starts one of its own does so every time.
func chunksStartNoGoroutine(t *testing.T, dbURL, sqlitePath, dir string) {
	ctx := context.Background()
	cfg := testConfig()
	const n, warm = 50, 5
	cfg.MaxBatchFiles = n + warm
	e, err := newEnvOn(t, dbURL, sqlitePath, dir, nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	u, err := e.svc.EnsureUser(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	files := make([]upload.FileSpec, n+warm)
	for i := range files {
		// 0xFF 0xFB opens an MPEG audio frame: the smallest chunk 0
		// that passes the type check.
		files[i] = upload.FileSpec{FileName: fmt.Sprintf("%d.mp3", i), Size: 2, MimeType: "audio/mpeg"}
	}
	batch, err := e.svc.InitBatch(ctx, u.ID, upload.BatchSpec{Files: files})
	if err != nil {
		t.Fatal(err)
	}
	var started, starting uint64 // goroutines, and chunks that saw any
	for i, s := range batch.Uploads {
		before := goroutinesCreated()
		request, cancel := context.WithCancel(ctx)
		_, err := e.svc.ReceiveChunk(request, s.ID, 0, bytes.NewReader([]byte{0xFF, 0xFB}), upload.ReceiveOptions{ContentLength: 2})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if got := goroutinesCreated() - before; i >= warm && got > 0 { // the pool's connections are open after warm
			started += got
			starting++
		}
	}
	if starting >= n/2 {
		t.Errorf("%d of %d chunks started goroutines (%d in all), want none", starting, n, started)
	} else {
		t.Logf("%d of %d chunks started goroutines (%d in all), as the process did other work", starting, n, started)
	}
}

// goroutinesCreated is how many goroutines this process has started.
func goroutinesCreated() uint64 {
	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
