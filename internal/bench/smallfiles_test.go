//go:build linux

package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"os"
	"slices"
	"testing"
	"text/tabwriter"
	"time"
)

// BenchmarkSmallFileRates measures what a user of small files waits for:
// each file's whole upload, in alternating windows of the same run. For
// spool that is initBatch of the one file, the PUT of its only chunk and
// complete (three requests, then the job that checks the stored bytes);
// for tusd, the tus client's default, a POST that creates the upload and
// a PATCH with its bytes (two requests). Files are smallFile's 10
// bytes, each file's its own, on both sides. It reports files per second
// and server CPU per file, the CPU counted until the server is idle
// again after the window, so that work a window left behind (spool's
// jobs) is charged to its files.
//
//	make bench-small     # or: go test -run '^$' -bench SmallFileRates -benchtime 1x ./internal/bench/
//
// BenchmarkControlRates measures single requests against tusd's PATCH;
// this one is the flow those requests are part of.
func BenchmarkSmallFileRates(b *testing.B) {
	if testing.Short() {
		b.Skip("runs spool and tusd under load for a few minutes; skipped under -short (run `make bench-small`)")
	}
	// --media-processing=false (startRatesPeers): a file's job then only
	// checks its bytes, as tusd does nothing after the last byte.
	peers := startRatesPeers(b)
	ctx, c, tusd, sqlite, pg := peers.ctx, peers.client, peers.tusd, peers.sqlite, peers.pg
	sqliteProf, pgProf := peers.sqliteProf, peers.pgProf // the first window's, if -rates-cpuprofile

	type round struct {
		tusdBefore, tusdAfter rate
		sqlite, postgres      rate
	}
	rounds := make([]round, *ratesRounds)
	tusdWindow := measureTusdFiles(ctx, b, c, tusd, 0, "tusd POST + PATCH (before round 1)")
	for i := range rounds {
		r := &rounds[i]
		r.tusdBefore = tusdWindow
		if i > 0 {
			sqliteProf, pgProf = nil, nil
		}
		r.sqlite = measureSpoolFiles(ctx, b, c, sqlite, i, "spool SQLite initBatch + PUT + complete", sqliteProf.as("files"))
		r.postgres = measureSpoolFiles(ctx, b, c, pg, i, "spool PostgreSQL initBatch + PUT + complete", pgProf.as("files"))
		tusdWindow = measureTusdFiles(ctx, b, c, tusd, i+1, fmt.Sprintf("tusd POST + PATCH (after round %d)", i+1))
		r.tusdAfter = tusdWindow
	}

	b.ReportMetric(0, "ns/op") // the wall time of the whole benchmark means nothing
	fmt.Printf("\n%d clients, %v per measurement, %d rounds, files of %d bytes, load average %s\n",
		*ratesClients, *ratesDuration, len(rounds), len(smallFile(0, 0)), loadAverage(b))
	var sqliteRatios, pgRatios, sqliteCPU, pgCPU []float64
	for i, r := range rounds {
		t := tusdBest(r.tusdBefore, r.tusdAfter)
		fmt.Printf("\nround %d: ratios against tusd's faster window, %.0f files/s\n", i+1, t.perSec())
		w := tabwriter.NewWriter(os.Stdout, 0, 0, 3, ' ', 0)
		fmt.Fprintln(w, "measurement\tfiles\tseconds\tfiles/s\tserver CPU µs/file\tfiles/s vs tusd\t")
		for _, m := range []rate{r.tusdBefore, r.sqlite, r.postgres, r.tusdAfter} {
			fmt.Fprintf(w, "%s\t%d\t%.2f\t%.0f\t%.0f\t%.2f\t\n", m.name, m.requests, m.elapsed.Seconds(), m.perSec(), m.cpuPerReq(), m.perSec()/t.perSec())
		}
		w.Flush()
		sqliteRatios = append(sqliteRatios, r.sqlite.perSec()/t.perSec())
		pgRatios = append(pgRatios, r.postgres.perSec()/t.perSec())
		sqliteCPU = append(sqliteCPU, r.sqlite.cpuPerReq())
		pgCPU = append(pgCPU, r.postgres.cpuPerReq())
	}
	fmt.Printf("\nmedians over the rounds: spool SQLite %.2f of tusd's files/s (%.0f µs a file), PostgreSQL %.2f (%.0f µs)\n",
		median(sqliteRatios), median(sqliteCPU), median(pgRatios), median(pgCPU))
	b.ReportMetric(median(sqliteRatios), "sqlite-files/tusd")
	b.ReportMetric(median(pgRatios), "pg-files/tusd")
	b.ReportMetric(median(sqliteCPU), "sqlite-cpu-µs/file")
	b.ReportMetric(median(pgCPU), "pg-cpu-µs/file")
}

// smallFile is the n-th file of a window: tinyFile's two bytes, which
// spool takes for audio/mpeg, then n, so that no two files have the same
// bytes. Same bytes would have spool share one stored object among them
// after processing (dedup.go), work a user's distinct files do not cause.
func smallFile(round, n int) []byte {
	return binary.BigEndian.AppendUint64(slices.Clone(tinyFile), uint64(round)<<40|uint64(n))
}

// measureSpoolFiles measures files uploaded whole: each client, in a
// loop, asks initBatch for one file, PUTs its only chunk to the URL it
// got and completes it; one file is one "request" of the rate.
func measureSpoolFiles(ctx context.Context, b *testing.B, c *http.Client, s *spoolServer, round int, name string, prof *cpuProfile) rate {
	b.Helper()
	r := measureWindow(ctx, b, s.process, name, prof, func(ctx context.Context, _, n int) (bool, error) {
		data := smallFile(round, n)
		id, puts, err := s.initUploadOf(ctx, c, fmt.Sprintf("small-%d-%d.mp3", round, n), tinyMIME, int64(len(data)), "")
		if err != nil {
			return false, err
		}
		if len(puts) != 1 {
			return false, fmt.Errorf("initBatch: %d chunks for a file of %d bytes, want 1", len(puts), len(data))
		}
		if err := sendChunk(ctx, c, puts[0], data); err != nil {
			return false, err
		}
		_, err = s.complete(ctx, c, id)
		return err == nil, err
	})
	r.cpu += cpuUntilIdle(b, s.process)
	return r
}

// measureTusdFiles measures files uploaded whole to tusd: each client,
// in a loop, creates an upload of the file's length with POST and sends
// its bytes with one PATCH, which completes it.
func measureTusdFiles(ctx context.Context, b *testing.B, c *http.Client, s *tusdServer, round int, name string) rate {
	b.Helper()
	r := measureWindow(ctx, b, s.process, name, nil, func(ctx context.Context, _, n int) (bool, error) {
		data := smallFile(round, n)
		u, err := tusdCreate(ctx, c, s.url, len(data))
		if err != nil {
			return false, err
		}
		return true, sendChunk(ctx, c, chunkPUT{method: http.MethodPatch, url: u, headers: map[string]string{
			"Tus-Resumable": "1.0.0",
			"Upload-Offset": "0",
			"Content-Type":  "application/offset+octet-stream",
		}}, data)
	})
	r.cpu += cpuUntilIdle(b, s.process)
	return r
}

// cpuUntilIdle waits, after a window, until p's CPU time stops moving
// for a tenth of a second (the kernel counts it in ticks of 10 ms; at
// most 30 s), and returns the CPU it used meanwhile: work the window
// queued and the server ran after it.
func cpuUntilIdle(b *testing.B, p *process) time.Duration {
	b.Helper()
	const step = 100 * time.Millisecond
	start := p.cpuTime(b)
	last := start
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		time.Sleep(step)
		now := p.cpuTime(b)
		if now == last {
			return now - start
		}
		last = now
	}
	p.fail(b, "still busy 30 s after its window")
	return 0
}
