//go:build linux

package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"text/tabwriter"
	"time"
)

var smallSizes = flag.String("small-sizes", "10,1MiB", "BenchmarkSmallFileRates: the files' sizes, comma-separated, in bytes or with a KiB or MiB suffix, from 10 bytes to one 8 MiB chunk (go test … -args -small-sizes 10,1MiB)")

// BenchmarkSmallFileRates measures what a user of small files waits for:
// each file's whole upload, in alternating windows of the same run.
// Two flows a side:
//
//   - spool's GraphQL flow, initBatch of the one file, the PUT of its
//     only chunk and complete (three requests), against a tus client's
//     default with tusd, a POST that creates the upload and a PATCH with
//     its bytes (two requests);
//   - one tus request each, a POST carrying the file's bytes
//     (creation-with-upload), to spool's tus endpoint and to tusd.
//
// spool's flows end in the job that checks the stored bytes. Every file
// has bytes of its own. It reports files per second and server CPU per
// file, the CPU counted until the server is idle again after the window,
// so that work a window left behind (spool's jobs) is charged to its
// files. -small-sizes sets the files' sizes (10 bytes and 1 MiB by
// default, a photo's order of size), each size a run of -rates-rounds
// rounds.
//
//	make bench-small     # or: go test -run '^$' -bench SmallFileRates -benchtime 1x ./internal/bench/
//
// BenchmarkControlRates measures single requests against tusd's PATCH;
// this one is the flow those requests are part of.
func BenchmarkSmallFileRates(b *testing.B) {
	if testing.Short() {
		b.Skip("runs spool and tusd under load for a few minutes; skipped under -short (run `make bench-small`)")
	}
	sizes, err := parseSizes(*smallSizes)
	if err != nil {
		b.Fatalf("-small-sizes: %v", err)
	}
	// --media-processing=false (startRatesPeers): a file's job then only
	// checks its bytes, as tusd does nothing after the last byte.
	peers := startRatesPeers(b)
	b.ReportMetric(0, "ns/op") // the wall time of the whole benchmark means nothing
	for _, size := range sizes {
		runSmallFiles(b, peers, size)
	}
}

// smallFileWindows are one round's windows of BenchmarkSmallFileRates,
// in the order they run.
type smallFileWindows struct {
	tusdBefore, tusdOne, sqlite, sqliteTus, postgres, pgTus, tusdAfter rate
}

// runSmallFiles runs BenchmarkSmallFileRates' rounds for one file size
// and prints them.
func runSmallFiles(b *testing.B, peers *ratesPeers, size int) {
	ctx, c, tusd, sqlite, pg := peers.ctx, peers.client, peers.tusd, peers.sqlite, peers.pg
	sqliteProf, pgProf := peers.sqliteProf, peers.pgProf // the first round's, if -rates-cpuprofile
	// A profile is named by its flow, and its size unless the default.
	flow := func(name string) string {
		if size == minSmallFile {
			return name
		}
		return sizeName(size) + "-" + name
	}
	files := newFileMaker(size, *ratesClients)
	// Each window's files are deleted after it, outside its measurement:
	// a window of 1 MiB files stores GiBs.
	tusdFiles := func(name string) rate {
		r := measureTusdFiles(ctx, b, c, tusd, files, name)
		removeTusdUploads(b, tusd)
		return r
	}
	tusdOne := func() rate {
		r, _ := measureTusFiles(ctx, b, c, tusd.url, tusd.process, nil, files, "tusd POST with the bytes", nil)
		removeTusdUploads(b, tusd)
		return r
	}
	spoolFiles := func(s *spoolServer, name string, prof *cpuProfile) rate {
		r, media := measureSpoolFiles(ctx, b, c, s, files, name, prof)
		deleteAllMedia(ctx, b, c, s, media)
		return r
	}
	spoolTus := func(s *spoolServer, name string, prof *cpuProfile) rate {
		r, media := measureTusFiles(ctx, b, c, s.url+"/files/", s.process, s, files, name, prof)
		deleteAllMedia(ctx, b, c, s, media)
		return r
	}
	rounds := make([]smallFileWindows, *ratesRounds)
	tusdWindow := tusdFiles("tusd POST + PATCH (before round 1)")
	for i := range rounds {
		r := &rounds[i]
		r.tusdBefore = tusdWindow
		if i > 0 {
			sqliteProf, pgProf = nil, nil
		}
		r.tusdOne = tusdOne()
		r.sqlite = spoolFiles(sqlite, "spool SQLite initBatch + PUT + complete", sqliteProf.as(flow("files")))
		r.sqliteTus = spoolTus(sqlite, "spool SQLite tus POST with the bytes", sqliteProf.as(flow("tus")))
		r.postgres = spoolFiles(pg, "spool PostgreSQL initBatch + PUT + complete", pgProf.as(flow("files")))
		r.pgTus = spoolTus(pg, "spool PostgreSQL tus POST with the bytes", pgProf.as(flow("tus")))
		tusdWindow = tusdFiles(fmt.Sprintf("tusd POST + PATCH (after round %d)", i+1))
		r.tusdAfter = tusdWindow
	}

	fmt.Printf("\n%d clients, %v per measurement, %d rounds, files of %s, load average %s\n",
		*ratesClients, *ratesDuration, len(rounds), sizeName(size), loadAverage(b))
	// Each spool flow against tusd's flow of the same shape: three
	// requests against tusd's two (its faster window of the round), one
	// against one.
	var graphQL, tus [2]struct{ ratio, cpu []float64 } // [SQLite, PostgreSQL]
	for i, r := range rounds {
		t := tusdBest(r.tusdBefore, r.tusdAfter)
		fmt.Printf("\nround %d: ratios against tusd's flow of the same shape (POST + PATCH: its faster window, %.0f files/s)\n", i+1, t.perSec())
		w := tabwriter.NewWriter(os.Stdout, 0, 0, 3, ' ', 0)
		fmt.Fprintln(w, "measurement\tfiles\tseconds\tfiles/s\tMiB/s\tserver CPU µs/file\tfiles/s vs tusd\tjobs done after s (files/s)\t")
		for _, m := range []struct {
			rate
			tusd rate
		}{
			{r.tusdBefore, t}, {r.tusdOne, r.tusdOne}, {r.sqlite, t}, {r.sqliteTus, r.tusdOne},
			{r.postgres, t}, {r.pgTus, r.tusdOne}, {r.tusdAfter, t},
		} {
			processed := "" // tusd has no jobs
			if m.done > 0 {
				processed = fmt.Sprintf("%.1f (%.0f)", m.done.Seconds(), float64(m.requests)/m.done.Seconds())
			}
			fmt.Fprintf(w, "%s\t%d\t%.2f\t%.0f\t%.1f\t%.0f\t%.2f\t%s\t\n", m.name, m.requests, m.elapsed.Seconds(), m.perSec(),
				m.perSec()*float64(size)/mib, m.cpuPerReq(), m.perSec()/m.tusd.perSec(), processed)
		}
		_ = w.Flush()
		for e, spool := range [2][2]rate{{r.sqlite, r.sqliteTus}, {r.postgres, r.pgTus}} {
			graphQL[e].ratio = append(graphQL[e].ratio, spool[0].perSec()/t.perSec())
			graphQL[e].cpu = append(graphQL[e].cpu, spool[0].cpuPerReq())
			tus[e].ratio = append(tus[e].ratio, spool[1].perSec()/r.tusdOne.perSec())
			tus[e].cpu = append(tus[e].cpu, spool[1].cpuPerReq())
		}
	}
	fmt.Printf("\nmedians over the rounds, files of %s, spool's files/s ÷ tusd's (server CPU a file):\n", sizeName(size))
	fmt.Printf("  initBatch + PUT + complete ÷ POST + PATCH: SQLite %.2f (%.0f µs), PostgreSQL %.2f (%.0f µs)\n",
		median(graphQL[0].ratio), median(graphQL[0].cpu), median(graphQL[1].ratio), median(graphQL[1].cpu))
	fmt.Printf("  tus POST with the bytes ÷ tusd's:          SQLite %.2f (%.0f µs), PostgreSQL %.2f (%.0f µs)\n",
		median(tus[0].ratio), median(tus[0].cpu), median(tus[1].ratio), median(tus[1].cpu))
	unit := ""
	if size != minSmallFile {
		unit = "-" + sizeName(size)
	}
	b.ReportMetric(median(graphQL[0].ratio), "sqlite-files/tusd"+unit)
	b.ReportMetric(median(graphQL[1].ratio), "pg-files/tusd"+unit)
	b.ReportMetric(median(tus[0].ratio), "sqlite-tus-files/tusd"+unit)
	b.ReportMetric(median(tus[1].ratio), "pg-tus-files/tusd"+unit)
	b.ReportMetric(median(graphQL[0].cpu), "sqlite-cpu-µs/file"+unit)
	b.ReportMetric(median(graphQL[1].cpu), "pg-cpu-µs/file"+unit)
}

// fileMaker makes the files of BenchmarkSmallFileRates: every file of
// one size has its own bytes (same bytes would have spool share one
// stored object among them after processing, dedup.go, work a user's
// distinct files do not cause). Each is tinyFile's two bytes, which
// spool takes for audio/mpeg, then a number no other file of the run
// has, then fixed pseudo-random bytes. Each client reuses one buffer:
// its requests run one after another.
type fileMaker struct {
	next    atomic.Uint64
	buffers [][]byte
}

func newFileMaker(size, clients int) *fileMaker {
	filler := make([]byte, size)
	chacha := rand.NewChaCha8([32]byte{'s', 'p', 'o', 'o', 'l'})
	_, _ = chacha.Read(filler)
	copy(filler, tinyFile)
	m := &fileMaker{buffers: make([][]byte, clients)}
	for i := range m.buffers {
		m.buffers[i] = slices.Clone(filler)
	}
	return m
}

// file returns the client's next file, in the client's buffer.
func (m *fileMaker) file(client int) []byte {
	buf := m.buffers[client]
	binary.BigEndian.PutUint64(buf[len(tinyFile):], m.next.Add(1))
	return buf
}

// minSmallFile is the smallest size fileMaker makes: tinyFile and the
// file's number.
const minSmallFile = 10

// parseSizes reads -small-sizes: sizes in bytes, or with a KiB or MiB
// suffix, each from minSmallFile bytes to a chunk (the flows send one).
func parseSizes(list string) ([]int, error) {
	var sizes []int
	for _, field := range strings.Split(list, ",") {
		field = strings.TrimSpace(field)
		unit := 1
		for suffix, u := range map[string]int{"KiB": 1 << 10, "MiB": mib} {
			if n, ok := strings.CutSuffix(field, suffix); ok {
				field, unit = n, u
			}
		}
		n, err := strconv.Atoi(field)
		if err != nil {
			return nil, fmt.Errorf("%q is not a size (bytes, or a number of KiB or MiB)", field)
		}
		if n*unit < minSmallFile || n*unit > chunkSize {
			return nil, fmt.Errorf("%d bytes: want %d bytes to %d (one chunk)", n*unit, minSmallFile, chunkSize)
		}
		sizes = append(sizes, n*unit)
	}
	return sizes, nil
}

// sizeName says a size in bytes, KiB or MiB, whichever divides it.
func sizeName(size int) string {
	switch {
	case size%mib == 0:
		return fmt.Sprintf("%dMiB", size/mib)
	case size%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", size>>10)
	}
	return fmt.Sprintf("%dB", size)
}

// measureSpoolFiles measures files uploaded whole: each client, in a
// loop, asks initBatch for one file, PUTs its only chunk to the URL it
// got and completes it; one file is one "request" of the rate. It
// returns the files' media ids too.
func measureSpoolFiles(ctx context.Context, b *testing.B, c *http.Client, s *spoolServer, files *fileMaker, name string, prof *cpuProfile) (rate, []string) {
	b.Helper()
	var media mediaIDs
	r := measureWindow(ctx, b, s.process, name, prof, func(ctx context.Context, client, n int) (bool, error) {
		data := files.file(client)
		id, puts, err := s.initUploadOf(ctx, c, fmt.Sprintf("small-%d.mp3", n), tinyMIME, int64(len(data)), "")
		if err != nil {
			return false, err
		}
		if len(puts) != 1 {
			return false, fmt.Errorf("initBatch: %d chunks for a file of %d bytes, want 1", len(puts), len(data))
		}
		if err := sendChunk(ctx, c, puts[0], data); err != nil {
			return false, err
		}
		mediaID, err := s.complete(ctx, c, id)
		media.add(mediaID)
		return err == nil, err
	})
	r.done, r.cpu = afterWindow(ctx, b, c, s, r)
	return r, media.ids
}

// afterWindow waits, after a spool window, until the job queue is empty
// (every file's job ran) and then until spool is idle, and returns the
// time from the window's start until the queue emptied, and r's CPU with
// what spool used meanwhile: the jobs the window queued are its files'
// work. Idle alone is not enough: a worker waiting for its next fetch
// is idle too.
func afterWindow(ctx context.Context, b *testing.B, c *http.Client, s *spoolServer, r rate) (done, cpu time.Duration) {
	b.Helper()
	cpu0 := s.cpuTime(b)
	waited := time.Now()
	for deadline := waited.Add(10 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		queued, err := s.queuedJobs(ctx, c)
		if err != nil {
			s.fail(b, "%s: %v", r.name, err)
		}
		if queued == 0 {
			break
		}
		if time.Now().After(deadline) {
			s.fail(b, "%s: %d jobs still queued 10 minutes after the window", r.name, queued)
		}
	}
	done = r.elapsed + time.Since(waited)
	return done, r.cpu + s.cpuTime(b) - cpu0 + cpuUntilIdle(b, s.process)
}

// queuedJobs reads spool_jobs{state="available"} and {state="running"}
// from spool's /metrics: the jobs not done yet.
func (s *spoolServer) queuedJobs(ctx context.Context, c *http.Client) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET /metrics: %s, %v", resp.Status, err)
	}
	queued, found := 0, 0
	for line := range strings.Lines(string(body)) {
		for _, state := range []string{"available", "running"} {
			if v, ok := strings.CutPrefix(line, `spool_jobs{state="`+state+`"} `); ok {
				n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				if err != nil {
					return 0, fmt.Errorf("GET /metrics: %q: %w", line, err)
				}
				queued += int(n)
				found++
			}
		}
	}
	if found != 2 {
		return 0, fmt.Errorf("GET /metrics: no spool_jobs{state=\"available\"} and {state=\"running\"}")
	}
	return queued, nil
}

// mediaIDs collects a window's media ids from its clients.
type mediaIDs struct {
	mu  sync.Mutex
	ids []string
}

func (m *mediaIDs) add(id string) {
	if id == "" {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ids = append(m.ids, id)
}

// deleteAllMedia deletes a window's media files through the API; the
// last deletion waits until their purges removed every stored file
// (deleteMedia). It then waits until spool is idle again, so that the
// next window's CPU holds none of their deletion.
func deleteAllMedia(ctx context.Context, b *testing.B, c *http.Client, s *spoolServer, ids []string) {
	b.Helper()
	if len(ids) == 0 {
		return // a window that stored nothing (its measurement says so)
	}
	last := len(ids) - 1
	err := parallel(ctx, *ratesClients, last, func(ctx context.Context, i int) error {
		var out struct {
			DeleteMedia string `json:"deleteMedia"`
		}
		return s.graphQL(ctx, c, `mutation($id: ID!) { deleteMedia(id: $id) }`, map[string]any{"id": ids[i]}, &out)
	})
	if err == nil {
		err = s.deleteMedia(ctx, c, ids[last])
	}
	if err != nil {
		s.fail(b, "deleting a window's media: %v", err)
	}
	cpuUntilIdle(b, s.process)
}

// removeTusdUploads removes what tusd stored in a window (its uploads
// are finished: nothing reads them again).
func removeTusdUploads(b *testing.B, s *tusdServer) {
	b.Helper()
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		s.fail(b, "listing its uploads: %v", err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(s.dir, e.Name())); err != nil {
			s.fail(b, "removing its uploads: %v", err)
		}
	}
}

// measureTusdFiles measures files uploaded whole to tusd: each client,
// in a loop, creates an upload of the file's length with POST and sends
// its bytes with one PATCH, which completes it.
func measureTusdFiles(ctx context.Context, b *testing.B, c *http.Client, s *tusdServer, files *fileMaker, name string) rate {
	b.Helper()
	r := measureWindow(ctx, b, s.process, name, nil, func(ctx context.Context, client, _ int) (bool, error) {
		data := files.file(client)
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

// measureTusFiles measures files uploaded whole in one tus request each:
// a creation-with-upload POST carrying all of the file's bytes, which
// completes the upload before its answer; it returns spool's media ids
// from the answers (none from tusd). spool is the server behind url if
// it is spool's endpoint (nil for tusd): its token goes with each
// request, and afterWindow waits for the files' jobs.
func measureTusFiles(ctx context.Context, b *testing.B, c *http.Client, url string, p *process, spool *spoolServer, files *fileMaker, name string, prof *cpuProfile) (rate, []string) {
	b.Helper()
	var media mediaIDs
	r := measureWindow(ctx, b, p, name, prof, func(ctx context.Context, client, n int) (bool, error) {
		data := files.file(client)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(data))
		if err != nil {
			return false, err
		}
		req.Header.Set("Tus-Resumable", "1.0.0")
		req.Header.Set("Upload-Length", strconv.Itoa(len(data)))
		req.Header.Set("Upload-Metadata", tusMetadata(fmt.Sprintf("small-%d.mp3", n), tinyMIME))
		req.Header.Set("Content-Type", "application/offset+octet-stream")
		if spool != nil {
			req.Header.Set("Authorization", "Bearer "+spool.token)
		}
		resp, err := c.Do(req)
		if err != nil {
			return false, err
		}
		answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated || resp.Header.Get("Upload-Offset") != strconv.Itoa(len(data)) {
			return false, fmt.Errorf("POST %s with %d bytes: %s, Upload-Offset %q: %s", url, len(data), resp.Status, resp.Header.Get("Upload-Offset"), answer)
		}
		media.add(resp.Header.Get("Spool-Media-Id")) // spool's; tusd sends none
		return true, nil
	})
	if spool != nil {
		r.done, r.cpu = afterWindow(ctx, b, c, spool, r)
	} else {
		r.cpu += cpuUntilIdle(b, p)
	}
	return r, media.ids
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

func TestParseSizes(t *testing.T) {
	got, err := parseSizes("10, 256KiB,1MiB,8MiB")
	if want := []int{10, 256 << 10, mib, chunkSize}; err != nil || !slices.Equal(got, want) {
		t.Errorf("parseSizes: %v, %v; want %v", got, err, want)
	}
	for _, bad := range []string{"", "9", "0", "-1MiB", "9MiB", "1GiB", "ten", "1 MiB", "10,"} {
		if got, err := parseSizes(bad); err == nil {
			t.Errorf("parseSizes(%q) = %v, want an error", bad, got)
		}
	}
	if name := sizeName(10) + " " + sizeName(256<<10) + " " + sizeName(mib); name != "10B 256KiB 1MiB" {
		t.Errorf("sizeName: %q", name)
	}
}
