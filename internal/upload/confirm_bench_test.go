package upload_test

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/spoolhq/spool/internal/database"
	"github.com/spoolhq/spool/internal/database/dbtest"
	"github.com/spoolhq/spool/internal/upload"
)

// confirmBench is a service with uploads whose chunks have all arrived,
// ready to be confirmed over and over.
type confirmBench struct {
	svc     *upload.Service
	owner   string
	uploads []*upload.Session
}

const (
	benchUploads = 64
	benchChunks  = 2 // a 5 MiB chunk and a 64 KiB one
)

// prepareConfirmBench sends every chunk of benchUploads uploads on the
// database at dbURL (or the SQLite file sqlitePath). Its files and
// database live as long as tb.
func prepareConfirmBench(tb testing.TB, dbURL, sqlitePath string) (*confirmBench, error) {
	ctx := context.Background()
	e, err := newEnvOn(tb, dbURL, sqlitePath, filepath.Join(tb.TempDir(), "files"), nil, testConfig())
	if err != nil {
		return nil, err
	}
	u, err := e.svc.EnsureUser(ctx, "bench")
	if err != nil {
		return nil, err
	}
	if err := e.db.User.UpdateOneID(u.ID).SetQuotaBytes(1 << 40).Exec(ctx); err != nil {
		return nil, err
	}
	data := mp4Bytes(5*MiB+64*KiB, 3)
	b := &confirmBench{svc: e.svc, owner: u.ID}
	for i := range benchUploads {
		batch, err := e.svc.InitBatch(ctx, u.ID, upload.BatchSpec{Files: []upload.FileSpec{mp4Spec(fmt.Sprintf("%d.mp4", i), data)}})
		if err != nil {
			return nil, err
		}
		sess := batch.Uploads[0]
		for c := range sess.TotalChunks {
			chunk := e.chunk(data, c)
			if _, err := e.svc.ReceiveChunk(ctx, sess.ID, c, bytes.NewReader(chunk), upload.ReceiveOptions{ContentLength: int64(len(chunk))}); err != nil {
				return nil, err
			}
		}
		b.uploads = append(b.uploads, sess)
	}
	return b, nil
}

// benchEngine is a database a benchmark runs on: open gives the URL of a
// scratch PostgreSQL database, or the path of an embedded SQLite file.
type benchEngine struct {
	name string
	open func(sub *testing.B) (dbURL, sqlitePath string)
}

// benchEngines are the embedded SQLite and PostgreSQL, each database
// opened living (and a PostgreSQL one being dropped) as long as b.
func benchEngines(b *testing.B) []benchEngine {
	return []benchEngine{
		{"sqlite", func(*testing.B) (string, string) {
			return "", filepath.Join(b.TempDir(), database.SQLiteFile)
		}},
		{"postgres", func(sub *testing.B) (string, string) {
			dbURL, drop, err := dbtest.NewDatabase(context.Background(), dbtest.Required(sub))
			if err != nil {
				sub.Fatal(err)
			}
			b.Cleanup(func() { _ = drop(context.Background()) })
			return dbURL, ""
		}},
	}
}

// BenchmarkConfirmChunk measures confirmChunk, the mutation clients call
// after each chunk, with many uploads confirmed in parallel, on the
// embedded SQLite and on PostgreSQL. Each op is one ConfirmChunk of a
// received chunk; confirms/s is the throughput across all goroutines.
//
//	go test -run '^$' -bench ConfirmChunk -benchtime 5s ./internal/upload/
func BenchmarkConfirmChunk(b *testing.B) {
	for _, engine := range benchEngines(b) {
		// Prepared once, on the first of the sub-benchmark's runs, and
		// kept (with b's cleanups) for the longer runs that follow.
		var env *confirmBench
		b.Run(engine.name, func(sub *testing.B) {
			if env == nil {
				dbURL, path := engine.open(sub)
				var err error
				if env, err = prepareConfirmBench(b, dbURL, path); err != nil {
					sub.Fatalf("preparing: %v", err)
				}
			}
			sizes := [benchChunks]int64{5 * MiB, 64 * KiB}
			var next atomic.Int64
			sub.SetParallelism(8) // 8 × GOMAXPROCS clients at once
			sub.ResetTimer()
			sub.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					n := next.Add(1)
					sess := env.uploads[n%benchUploads]
					chunk := int(n/benchUploads) % benchChunks
					if _, err := env.svc.ConfirmChunk(ctx, env.owner, sess.ID, chunk, sizes[chunk], nil); err != nil {
						sub.Errorf("ConfirmChunk(%s, %d): %v", sess.ID, chunk, err)
						return
					}
				}
			})
			sub.ReportMetric(float64(sub.N)/sub.Elapsed().Seconds(), "confirms/s")
		})
	}
}
