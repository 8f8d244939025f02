package upload_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spoolhq/spool/internal/database"
	"github.com/spoolhq/spool/internal/database/dbtest"
	"github.com/spoolhq/spool/internal/upload"
)

// BenchmarkInitBatch measures initBatch of large batches, as a CLI
// uploading a folder sends them: one user, initBatchClients batches in
// flight at once, initBatchFiles files each, on the embedded SQLite and
// on PostgreSQL. Each op is one batch. It reports files planned per
// second, the CPU time per file of this process and of the whole machine
// (PostgreSQL's included), and the first and last tenth of the batches' median latency, so
// that a cost growing with the user's uploads shows as a ratio above 1.
//
//	go test -run '^$' -bench InitBatch -benchtime 100x ./internal/upload/
func BenchmarkInitBatch(b *testing.B) {
	const initBatchClients, initBatchFiles = 4, 200
	engines := []struct {
		name string
		open func(sub *testing.B) (dbURL, sqlitePath string)
	}{
		{"sqlite", func(sub *testing.B) (string, string) {
			return "", filepath.Join(sub.TempDir(), database.SQLiteFile)
		}},
		{"postgres", func(sub *testing.B) (string, string) {
			dbURL, drop, err := dbtest.NewDatabase(context.Background(), dbtest.Required(sub))
			if err != nil {
				sub.Fatal(err)
			}
			sub.Cleanup(func() { _ = drop(context.Background()) })
			return dbURL, ""
		}},
	}
	for _, engine := range engines {
		b.Run(engine.name, func(sub *testing.B) {
			ctx := context.Background()
			dbURL, path := engine.open(sub)
			cfg := testConfig()
			cfg.MaxBatchFiles = initBatchFiles
			e, err := newEnvOn(sub, dbURL, path, filepath.Join(sub.TempDir(), "files"), nil, cfg)
			if err != nil {
				sub.Fatal(err)
			}
			u, err := e.svc.EnsureUser(ctx, "bench")
			if err != nil {
				sub.Fatal(err)
			}
			if err := e.db.User.UpdateOneID(u.ID).SetQuotaBytes(1 << 50).Exec(ctx); err != nil {
				sub.Fatal(err)
			}
			data := []byte{0xFF, 0xFB} // an MP3 frame's start: the smallest file spool takes
			files := make([]upload.FileSpec, initBatchFiles)
			latencies := make([]time.Duration, sub.N)
			var (
				next int
				mu   sync.Mutex
				wg   sync.WaitGroup
				errs = make(chan error, initBatchClients)
			)
			sub.ResetTimer()
			began, cpu0, all0 := time.Now(), processCPU(sub), machineCPU(sub)
			for range initBatchClients {
				wg.Go(func() {
					batch := make([]upload.FileSpec, len(files))
					for {
						mu.Lock()
						i := next
						next++
						mu.Unlock()
						if i >= sub.N {
							return
						}
						for f := range batch {
							batch[f] = upload.FileSpec{FileName: fmt.Sprintf("%d-%d.mp3", i, f), Size: int64(len(data)), MimeType: "audio/mpeg"}
						}
						t := time.Now()
						if _, err := e.svc.InitBatch(ctx, u.ID, upload.BatchSpec{Files: batch}); err != nil {
							errs <- err
							return
						}
						latencies[i] = time.Since(t)
					}
				})
			}
			wg.Wait()
			elapsed, cpu, all := time.Since(began), processCPU(sub)-cpu0, machineCPU(sub)-all0
			sub.StopTimer()
			close(errs)
			if err := <-errs; err != nil {
				sub.Fatalf("InitBatch: %v", err)
			}
			planned := float64(sub.N * initBatchFiles)
			sub.ReportMetric(planned/elapsed.Seconds(), "files/s")
			sub.ReportMetric(float64(cpu.Microseconds())/planned, "spool-cpu-µs/file")
			sub.ReportMetric(float64(all.Microseconds())/planned, "machine-cpu-µs/file")
			if tenth := sub.N / 10; tenth >= 1 {
				first, last := medianDuration(latencies[:tenth]), medianDuration(latencies[sub.N-tenth:])
				sub.ReportMetric(float64(first.Microseconds())/1000, "first-ms/batch")
				sub.ReportMetric(float64(last.Microseconds())/1000, "last-ms/batch")
				sub.ReportMetric(last.Seconds()/first.Seconds(), "last/first")
			}
		})
	}
}

func medianDuration(ds []time.Duration) time.Duration {
	xs := make([]float64, len(ds))
	for i, d := range ds {
		xs[i] = float64(d)
	}
	return time.Duration(median(xs))
}
