package jobs

import (
	"context"
	"runtime"
	"testing"
	"time"

	"entgo.io/ent/dialect"
	"github.com/riverqueue/river/riverdriver"
	"golang.org/x/sys/unix"
)

// BenchmarkSQLiteFetch is River's fetch of jobs from an empty queue, as
// an idle producer's poll runs it, on spool's SQLite (its statement
// cache included), in two ways in one run: with the same LIMIT at every
// fetch (one queue's, its free workers unchanged), and with two LIMITs
// taking turns (two queues, or one whose free workers vary), each on a
// database of its own, alternating every iteration. It reports each
// side's CPU µs a fetch (the calling thread's: modernc's SQLite runs on
// it) and turns/same, what the turns cost more.
func BenchmarkSQLiteFetch(b *testing.B) {
	ctx := context.Background()
	var execs [2]riverdriver.Executor // same LIMIT, LIMITs taking turns
	for k := range execs {
		db := migratedSQLite(b)
		d, err := driverFor(db.SQL(), dialect.SQLite, Config{}, newWakes())
		if err != nil {
			b.Fatal(err)
		}
		execs[k] = d.GetExecutor()
	}
	fetch := func(e riverdriver.Executor, limit int) {
		res, err := e.JobGetAvailable(ctx, &riverdriver.JobGetAvailableParams{
			ClientID: "bench", MaxAttemptedBy: 100, MaxToLock: limit, Queue: queueProcess,
		})
		if err != nil || len(res.Jobs) != 0 {
			b.Fatalf("fetch from an empty queue: %v, %v", res, err)
		}
	}
	for k := range execs { // prepared, both LIMITs
		fetch(execs[k], 4)
		fetch(execs[k], 2)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var cpu [2]time.Duration
	b.ResetTimer()
	for i := range b.N {
		t0 := threadCPU(b)
		fetch(execs[0], 4)
		t1 := threadCPU(b)
		fetch(execs[1], 2+2*(i%2))
		t2 := threadCPU(b)
		cpu[0] += t1 - t0
		cpu[1] += t2 - t1
	}
	same := float64(cpu[0].Microseconds()) / float64(b.N)
	turns := float64(cpu[1].Microseconds()) / float64(b.N)
	b.ReportMetric(same, "same-cpu-µs/fetch")
	b.ReportMetric(turns, "turns-cpu-µs/fetch")
	b.ReportMetric(turns/same, "turns/same")
}

// threadCPU is the CPU time of the calling thread.
func threadCPU(b *testing.B) time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ts.Nano())
}
