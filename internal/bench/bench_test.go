//go:build linux

package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"text/tabwriter"
	"time"
)

var rounds = flag.Int("rounds", 5, "rounds of runs per mode and server (go test … -args -rounds N)")

const (
	mib       = 1 << 20
	gib       = 1 << 30
	chunkSize = 8 * mib
	bigSize   = 1 * gib   // the file of the throughput runs
	smallSize = 256 * mib // the file of the fresh process whose RSS is compared
)

// mode is a pattern of sending chunks.
type mode struct {
	name    string
	workers int
}

var modes = []mode{{"sequential", 1}, {"parallel-4", 4}}

// run is one upload's measurement.
type run struct {
	elapsed  time.Duration // first PUT sent to last response read
	cpu      time.Duration // the server's CPU time meanwhile
	client   time.Duration // the client's (this process's) CPU time meanwhile
	complete time.Duration // spool only: the complete mutation's wall time
}

func (r run) mibPerSec(size int64) float64 { return float64(size) / mib / r.elapsed.Seconds() }

// BenchmarkDataPlane uploads 1 GiB in 8 MiB chunks, one at a time and 4 at
// once, to spool (signed chunk URLs) and to a bare handler that only writes
// the chunks to disk, taking turns, and reports both throughputs, their
// ratio, spool's peak RSS after 256 MiB and 1 GiB uploads, and the wall
// time of complete. A second bare handler that also computes CRC32C, as
// spool does, tells that cost apart from the rest. The servers are child
// processes writing under one temporary directory; the client is this
// process. It asserts nothing about speed: the numbers are for
// docs/BENCHMARKS.md.
func BenchmarkDataPlane(b *testing.B) {
	if testing.Short() {
		b.Skip("uploads several GiB through three servers; skipped under -short (run `make bench`)")
	}
	if *rounds < 1 {
		b.Fatalf("-rounds must be at least 1, got %d", *rounds)
	}
	dir := b.TempDir()
	// Every run deletes its file before the next starts, so one 1 GiB file
	// is on disk at a time.
	if free := freeBytes(b, dir); free < 3*gib {
		b.Skipf("needs 3 GiB free under %s (a 1 GiB file at a time, plus slack); %d MiB free", dir, free/mib)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()

	spoolBin, bareBin := buildBinaries(b, mkdir(b, dir, "bin"))
	data := chunkData()
	sums := fileSums(data, smallSize, bigSize)
	client := newClient()
	bare := startBare(b, "bareserver", bareBin, mkdir(b, dir, "bare"))
	bareCRC := startBare(b, "bareserver -crc32c", bareBin, mkdir(b, dir, "bare-crc32c"), "-crc32c")
	spool := startSpool(ctx, b, spoolBin, mkdir(b, dir, "spool"))
	var rss rssReport
	rss.bigIdle = spool.peakRSS(b)

	targets := []target{
		{"bare", func(workers int) run { return bareUpload(ctx, b, client, bare, bigSize, workers, data) }},
		{"bare+crc32c", func(workers int) run { return bareUpload(ctx, b, client, bareCRC, bigSize, workers, data) }},
		{"spool", func(workers int) run {
			got, _ := spoolUpload(ctx, b, client, spool, bigSize, sums[bigSize], workers, data, false)
			return got
		}},
	}
	// One untimed upload each first, so no timed run pays for the first
	// use of connections, the servers' heaps or page-cache memory (on a VM
	// the first touch of guest memory is markedly slower).
	for _, t := range targets {
		t.upload(4)
	}
	b.ResetTimer()

	fmt.Printf("\nspool vs bare handler: %d MiB in %d MiB chunks, %d rounds, servers taking turns\n", bigSize/mib, chunkSize/mib, *rounds)
	runs := map[string]map[string][]run{}
	for _, t := range targets {
		runs[t.name] = map[string][]run{}
	}
	for r := range *rounds {
		for _, m := range modes {
			// Who goes first rotates, so no one always meets the same
			// leftovers (writeback, a busy neighbour).
			for i := range targets {
				t := targets[(i+r)%len(targets)]
				got := t.upload(m.workers)
				runs[t.name][m.name] = append(runs[t.name][m.name], got)
				fmt.Printf("  round %d %-10s %-11s %6.0f MiB/s  CPU s/GiB: server %.2f, client %.2f", r+1, m.name, t.name,
					got.mibPerSec(bigSize), cpuPerGiB(got.cpu, bigSize), cpuPerGiB(got.client, bigSize))
				if t.name == "spool" {
					fmt.Printf("  complete %v", got.complete.Round(time.Millisecond))
				}
				fmt.Println()
			}
		}
		if r == 0 {
			rss.bigFirst = spool.peakRSS(b) // after uploads like the small process's
		}
	}
	rss.bigAll = spool.peakRSS(b)
	rss.bare = bare.peakRSS(b)

	// Diagnostic: flushing the staged file ourselves first shows what
	// complete costs beyond writing back the page cache.
	synced, syncTook := spoolUpload(ctx, b, client, spool, bigSize, sums[bigSize], 1, data, true)
	spool.stop()
	bare.stop()
	bareCRC.stop()

	// A fresh process doing the same uploads as the first round with a
	// quarter of the size: peak RSS should not depend on the file's size.
	small := startSpool(ctx, b, spoolBin, mkdir(b, dir, "spool-small"))
	rss.smallIdle = small.peakRSS(b)
	var smallRuns []run
	for _, workers := range []int{4, 1, 4} {
		got, _ := spoolUpload(ctx, b, client, small, smallSize, sums[smallSize], workers, data, false)
		smallRuns = append(smallRuns, got)
	}
	rss.small = small.peakRSS(b)
	small.stop()
	b.StopTimer()

	report(b, runs, rss, smallRuns, synced, syncTook)
}

// target is one server under comparison and how to upload a file to it.
type target struct {
	name   string
	upload func(workers int) run
}

// rssReport holds peak RSS (VmHWM) readings, in bytes.
type rssReport struct {
	bigIdle, bigFirst, bigAll int64 // the 1 GiB process: started; after warm-up and round 1; at the end
	smallIdle, small          int64 // the 256 MiB process: started; after the same pattern of uploads
	bare                      int64
}

// bareUpload sends one file to the bare server and removes it again.
func bareUpload(ctx context.Context, b *testing.B, c *http.Client, s *bareServer, size int64, workers int, data []byte) run {
	b.Helper()
	if err := call(ctx, c, http.MethodPost, fmt.Sprintf("%s/reset?size=%d", s.url, size)); err != nil {
		s.fail(b, "%v", err)
	}
	cpu, client := s.cpuTime(b), clientCPUTime(b)
	elapsed, err := sendChunks(ctx, c, bareChunks(s.url, size, chunkSize), workers, data)
	if err != nil {
		s.fail(b, "%v", err)
	}
	got := run{elapsed: elapsed, cpu: s.cpuTime(b) - cpu, client: clientCPUTime(b) - client}
	if err := call(ctx, c, http.MethodDelete, s.url+"/file"); err != nil {
		s.fail(b, "%v", err)
	}
	return got
}

// spoolUpload uploads one file through spool's data plane, completes it,
// waits for spool to check its SHA-256 and deletes it. With preSync it
// fsyncs the staged file before complete and also returns how long that
// took.
func spoolUpload(ctx context.Context, b *testing.B, c *http.Client, s *spoolServer, size int64, sum string, workers int, data []byte, preSync bool) (run, time.Duration) {
	b.Helper()
	id, puts, err := s.initUpload(ctx, c, size, sum)
	if err != nil {
		s.fail(b, "%v", err)
	}
	cpu, client := s.cpuTime(b), clientCPUTime(b)
	elapsed, err := sendChunks(ctx, c, puts, workers, data)
	if err != nil {
		s.fail(b, "%v", err)
	}
	got := run{elapsed: elapsed, cpu: s.cpuTime(b) - cpu, client: clientCPUTime(b) - client}
	var synced time.Duration
	if preSync {
		if synced, err = s.syncStaged(); err != nil {
			s.fail(b, "syncing the staged file: %v", err)
		}
	}
	began := time.Now()
	mediaID, err := s.complete(ctx, c, id)
	got.complete = time.Since(began)
	if err != nil {
		s.fail(b, "%v", err)
	}
	if err := s.awaitProcessed(ctx, c, mediaID); err != nil {
		s.fail(b, "%v", err)
	}
	if err := s.deleteMedia(ctx, c, mediaID); err != nil {
		s.fail(b, "%v", err)
	}
	return got, synced
}

// chunkData is the body of every chunk: random bytes behind an MP4 header,
// because spool checks chunk 0 against the declared type video/mp4.
func chunkData() []byte {
	data := make([]byte, chunkSize)
	rng := rand.NewChaCha8([32]byte{'s', 'p', 'o', 'o', 'l'})
	_, _ = rng.Read(data)
	copy(data, "\x00\x00\x00\x18ftypmp42")
	return data
}

// fileSums returns the hex SHA-256 of each file size made of data
// repeated, which spool checks after complete.
func fileSums(data []byte, sizes ...int64) map[int64]string {
	slices.Sort(sizes)
	sums := map[int64]string{}
	h := sha256.New()
	var written int64
	for _, size := range sizes {
		for written < size {
			n := min(int64(len(data)), size-written)
			h.Write(data[:n])
			written += n
		}
		sums[size] = hex.EncodeToString(h.Sum(nil))
	}
	return sums
}

func mkdir(tb testing.TB, parts ...string) string {
	tb.Helper()
	d := filepath.Join(parts...)
	if err := os.MkdirAll(d, 0o750); err != nil {
		tb.Fatal(err)
	}
	return d
}

func cpuPerGiB(d time.Duration, size int64) float64 { return d.Seconds() / (float64(size) / gib) }

// report prints the results table and reports the headline numbers as
// benchmark metrics.
func report(b *testing.B, runs map[string]map[string][]run, rss rssReport, smallRuns []run, synced run, syncTook time.Duration) {
	b.ReportMetric(0, "ns/op") // the wall time of the whole benchmark means nothing
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "mode\tbare MiB/s\tspool MiB/s\tspool/bare\tserver CPU s/GiB\tclient CPU s/GiB\tbare+crc32c")
	fmt.Fprintln(tw, "\tmedian / best\tmedian / best\tby round: median / best\tbare, spool\tbare, spool\tMiB/s, server CPU s/GiB")
	for _, m := range modes {
		bare, spool, crc := throughputs(runs["bare"][m.name], bigSize), throughputs(runs["spool"][m.name], bigSize), throughputs(runs["bare+crc32c"][m.name], bigSize)
		// The runs of one round follow each other within seconds, so their
		// ratio is less exposed to the machine's swings than a ratio of
		// medians.
		var paired []float64
		for i := range spool {
			paired = append(paired, spool[i]/bare[i])
		}
		ratioMed, ratioBest := median(paired), slices.Max(spool)/slices.Max(bare)
		fmt.Fprintf(tw, "%s\t%.0f / %.0f\t%.0f / %.0f\t%.2f / %.2f\t%.2f, %.2f\t%.2f, %.2f\t%.0f, %.2f\n", m.name,
			median(bare), slices.Max(bare), median(spool), slices.Max(spool), ratioMed, ratioBest,
			medianCPU(runs["bare"][m.name], bigSize, serverCPU), medianCPU(runs["spool"][m.name], bigSize, serverCPU),
			medianCPU(runs["bare"][m.name], bigSize, clientCPU), medianCPU(runs["spool"][m.name], bigSize, clientCPU),
			median(crc), medianCPU(runs["bare+crc32c"][m.name], bigSize, serverCPU))
		b.ReportMetric(median(bare), m.name+"-bare-MiB/s")
		b.ReportMetric(median(spool), m.name+"-spool-MiB/s")
		b.ReportMetric(ratioMed, m.name+"-ratio")
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "spool peak RSS (VmHWM), MiB\tstarted\tafter 4+1+4-worker uploads\tafter all runs")
	fmt.Fprintf(tw, "%d MiB file, fresh process\t%.1f\t%.1f\t\n", smallSize/mib, mibOf(rss.smallIdle), mibOf(rss.small))
	fmt.Fprintf(tw, "%d MiB file\t%.1f\t%.1f\t%.1f\n", bigSize/mib, mibOf(rss.bigIdle), mibOf(rss.bigFirst), mibOf(rss.bigAll))
	fmt.Fprintf(tw, "(bare server)\t\t\t%.1f\n", mibOf(rss.bare))
	_ = tw.Flush()

	var completes []float64
	for _, m := range modes {
		for _, r := range runs["spool"][m.name] {
			completes = append(completes, msOf(r.complete))
		}
	}
	var smallCompletes []float64
	for _, r := range smallRuns {
		smallCompletes = append(smallCompletes, msOf(r.complete))
	}
	fmt.Printf("\ncomplete, %4d MiB: median %.0f ms, max %.0f ms over %d uploads\n",
		bigSize/mib, median(completes), slices.Max(completes), len(completes))
	fmt.Printf("complete, %4d MiB: median %.0f ms, max %.0f ms over %d uploads (fresh process)\n",
		smallSize/mib, median(smallCompletes), slices.Max(smallCompletes), len(smallCompletes))
	fmt.Printf("complete, %4d MiB, staged file fsynced from outside first (the fsync took %.0f ms): %.0f ms\n",
		bigSize/mib, msOf(syncTook), msOf(synced.complete))
	b.ReportMetric(mibOf(rss.small), "rss-256MiB-MiB")
	b.ReportMetric(mibOf(rss.bigFirst), "rss-1GiB-MiB")
	b.ReportMetric(median(completes), "complete-1GiB-ms")
}

func mibOf(bytes int64) float64    { return float64(bytes) / mib }
func msOf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func throughputs(runs []run, size int64) []float64 {
	var out []float64
	for _, r := range runs {
		out = append(out, r.mibPerSec(size))
	}
	return out
}

// medianCPU is the median over runs of the CPU time which picks, per GiB.
func medianCPU(runs []run, size int64, which func(run) time.Duration) float64 {
	var out []float64
	for _, r := range runs {
		out = append(out, cpuPerGiB(which(r), size))
	}
	return median(out)
}

func serverCPU(r run) time.Duration { return r.cpu }
func clientCPU(r run) time.Duration { return r.client }

func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
