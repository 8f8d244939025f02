package database

import (
	"context"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spoolhq/spool/ent"
	"github.com/spoolhq/spool/ent/uploadchunk"
)

// threadCPU is the CPU time of the calling thread. modernc's SQLite runs
// on the calling goroutine, so with the goroutine locked to its thread
// this is the statements' CPU (GC assists included, background GC
// workers not).
func threadCPU(b *testing.B) time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ts.Nano())
}

// BenchmarkChunkStatements runs the chunk table's statements through ent
// on two SQLite databases in the same run, one with the statement cache
// and one without (every statement prepared anew, as the driver alone
// does), alternating between them each iteration so that machine noise
// hits both alike. It reports each side's CPU µs per statement and per
// chunk, and plain/cached, the CPU the cache saves as a ratio.
//
// upsert+select is a chunk receipt's share of the chunk table, in one
// transaction: BEGIN, ent's INSERT … ON CONFLICT DO UPDATE, a SELECT of
// the row, COMMIT (4 statements; BEGIN and COMMIT the driver runs itself,
// uncached on both sides). select is the SELECT alone, outside a
// transaction.
func BenchmarkChunkStatements(b *testing.B) {
	for _, w := range []struct {
		name  string
		stmts int
		run   func(ctx context.Context, c *ent.Client, sid string, i int) error
	}{
		{"upsert+select", 4, receiveChunk},
		{"select", 1, func(ctx context.Context, c *ent.Client, sid string, i int) error {
			_, err := c.UploadChunk.Query().Where(uploadchunk.SessionID(sid), uploadchunk.Index(i)).Only(ctx)
			return err
		}},
	} {
		b.Run(w.name, func(b *testing.B) {
			ctx := context.Background()
			var (
				clients [2]*ent.Client // cached, plain
				sids    [2]string
			)
			for k, size := range []int{stmtCacheSize, 0} {
				db, err := Open(ctx, "", filepath.Join(b.TempDir(), SQLiteFile), withStmtCache(size))
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { db.Close() })
				clients[k], sids[k] = db.Client, chunkFixture(b, db.Client)
				for i := range chunks {
					if err := receiveChunk(ctx, db.Client, sids[k], i); err != nil {
						b.Fatal(err)
					}
				}
			}
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var cpu, wall [2]time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for j := range 2 {
					k := (i + j) % 2 // alternate which side goes first
					c0, w0 := threadCPU(b), time.Now()
					if err := w.run(ctx, clients[k], sids[k], i%chunks); err != nil {
						b.Fatal(err)
					}
					wall[k] += time.Since(w0)
					cpu[k] += threadCPU(b) - c0
				}
			}
			b.StopTimer()
			per := func(d time.Duration, n int) float64 { return float64(d.Nanoseconds()) / 1e3 / float64(b.N*n) }
			b.ReportMetric(per(cpu[0], w.stmts), "cached-cpu-µs/stmt")
			b.ReportMetric(per(cpu[1], w.stmts), "plain-cpu-µs/stmt")
			b.ReportMetric(per(cpu[0], 1), "cached-cpu-µs/op")
			b.ReportMetric(per(cpu[1], 1), "plain-cpu-µs/op")
			b.ReportMetric(per(wall[0], 1), "cached-µs/op")
			b.ReportMetric(per(wall[1], 1), "plain-µs/op")
			b.ReportMetric(float64(cpu[1])/float64(cpu[0]), "plain/cached-cpu")
		})
	}
}

// chunks is how many chunk rows the benchmark cycles through.
const chunks = 64
