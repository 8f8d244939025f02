package upload_test

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/procfs"

	"github.com/spoolhq/spool/internal/database"
	"github.com/spoolhq/spool/internal/database/dbtest"
	"github.com/spoolhq/spool/internal/upload"
)

// BenchmarkSmallChunkReceipts measures the receipt of small files' only
// chunks on the embedded SQLite, in process (no HTTP): 8 goroutines each
// send 2-byte chunks, each to an upload of its own, as fast as they can.
// It compares SQLite's reads on connections of their own (spool's
// default) with every statement on the writer's one connection, in
// alternating rounds of the same run, and reports each one's receipts
// per second and CPU per receipt (this process's, from getrusage), and
// their ratio by medians over the rounds.
//
//	go test -run '^$' -bench SmallChunkReceipts -benchtime 20000x ./internal/upload/
//
// b.N is the number of receipts per round and configuration.
func BenchmarkSmallChunkReceipts(b *testing.B) {
	const rounds, senders = 3, 8
	configs := []struct {
		name string
		opts []database.Option
	}{
		{"one connection", []database.Option{database.WithReadConns(0)}},
		{"read connections", nil},
	}
	rates := make([][]float64, len(configs))
	cpus := make([][]float64, len(configs))
	for range rounds {
		for i, c := range configs {
			rate, cpu, _ := smallChunkReceipts(b, b.N, senders, "", c.opts...)
			rates[i] = append(rates[i], rate)
			cpus[i] = append(cpus[i], cpu)
		}
	}
	b.ReportMetric(0, "ns/op") // rounds and set-up: meaningless
	if b.N == 1 {
		return // the framework's probe run
	}
	for i, c := range configs {
		fmt.Printf("%-17s receipts/s %v  CPU µs/receipt %v\n", c.name, rounded(rates[i]), rounded(cpus[i]))
	}
	b.ReportMetric(median(rates[1])/median(rates[0]), "rate-read-conns/one-conn")
	b.ReportMetric(median(cpus[1])/median(cpus[0]), "cpu-read-conns/one-conn")
	b.ReportMetric(median(rates[1]), "receipts/s")
	b.ReportMetric(median(cpus[1]), "cpu-µs/receipt")
}

// BenchmarkPostgresReceipts is BenchmarkSmallChunkReceipts on
// PostgreSQL, one configuration: receipts per second, this process's CPU
// per receipt, and the machine's (PostgreSQL's backends are most of a
// receipt's cost there), by round and their medians.
//
//	go test -run '^$' -bench PostgresReceipts -benchtime 10000x ./internal/upload/
func BenchmarkPostgresReceipts(b *testing.B) {
	const rounds, senders = 5, 8
	var rates, cpus, machine []float64
	for range rounds {
		rate, cpu, all := smallChunkReceipts(b, b.N, senders, dbtest.Postgres(b))
		rates, cpus, machine = append(rates, rate), append(cpus, cpu), append(machine, all)
	}
	b.ReportMetric(0, "ns/op")
	if b.N == 1 {
		return
	}
	fmt.Printf("receipts/s %v  CPU µs/receipt %v  machine CPU µs/receipt %v\n", rounded(rates), rounded(cpus), rounded(machine))
	b.ReportMetric(median(rates), "receipts/s")
	b.ReportMetric(median(cpus), "cpu-µs/receipt")
	b.ReportMetric(median(machine), "machine-cpu-µs/receipt")
}

// smallChunkReceipts plans n one-chunk uploads of 2 bytes on a fresh
// database (PostgreSQL at dbURL, else SQLite) opened with opts, then
// sends their chunks from senders goroutines and returns receipts per
// second, this process's CPU µs per receipt and the machine's.
func smallChunkReceipts(b *testing.B, n, senders int, dbURL string, opts ...database.Option) (perSec, cpuPerReceipt, machinePerReceipt float64) {
	b.Helper()
	ctx := context.Background()
	cfg := testConfig()
	cfg.MaxBatchFiles = 200
	dir := b.TempDir()
	e, err := newEnvOn(b, dbURL, filepath.Join(dir, database.SQLiteFile), filepath.Join(dir, "files"), nil, cfg, opts...)
	if err != nil {
		b.Fatal(err)
	}
	u, err := e.svc.EnsureUser(ctx, "bench")
	if err != nil {
		b.Fatal(err)
	}
	if err := e.db.User.UpdateOneID(u.ID).SetQuotaBytes(1 << 40).Exec(ctx); err != nil {
		b.Fatal(err)
	}
	// 0xFF 0xFB opens an MPEG audio frame: the smallest chunk 0 that
	// passes the type check.
	tiny := []byte{0xFF, 0xFB}
	ids := make([]string, 0, n)
	for len(ids) < n {
		files := make([]upload.FileSpec, 0, cfg.MaxBatchFiles)
		for i := len(ids); i < n && len(files) < cfg.MaxBatchFiles; i++ {
			files = append(files, upload.FileSpec{FileName: fmt.Sprintf("%d.mp3", i), Size: int64(len(tiny)), MimeType: "audio/mpeg"})
		}
		batch, err := e.svc.InitBatch(ctx, u.ID, upload.BatchSpec{Files: files})
		if err != nil {
			b.Fatal(err)
		}
		for _, s := range batch.Uploads {
			ids = append(ids, s.ID)
		}
	}

	var (
		next   atomic.Int64
		failed atomic.Pointer[error]
		wg     sync.WaitGroup
	)
	cpu0, all0 := processCPU(b), machineCPU(b)
	began := time.Now()
	for range senders {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n && failed.Load() == nil; i = int(next.Add(1) - 1) {
				if _, err := e.svc.ReceiveChunk(ctx, ids[i], 0, bytes.NewReader(tiny), upload.ReceiveOptions{ContentLength: int64(len(tiny))}); err != nil {
					failed.Store(&err)
				}
			}
		})
	}
	wg.Wait()
	elapsed, cpu, all := time.Since(began), processCPU(b)-cpu0, machineCPU(b)-all0
	if err := failed.Load(); err != nil {
		b.Fatalf("receiving a chunk: %v", *err)
	}
	return float64(n) / elapsed.Seconds(), float64(cpu.Microseconds()) / float64(n), float64(all.Microseconds()) / float64(n)
}

// machineCPU is the CPU time every process of the machine has used
// (user, nice, system, interrupts), from /proc/stat.
func machineCPU(b *testing.B) time.Duration {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		b.Fatal(err)
	}
	st, err := fs.Stat()
	if err != nil {
		b.Fatal(err)
	}
	c := st.CPUTotal
	return time.Duration((c.User + c.Nice + c.System + c.IRQ + c.SoftIRQ) * float64(time.Second))
}

// processCPU is the CPU time (user and system) this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func rounded(xs []float64) []int {
	out := make([]int, len(xs))
	for i, x := range xs {
		out[i] = int(x + 0.5)
	}
	return out
}
