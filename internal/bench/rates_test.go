//go:build linux

package bench

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/spoolhq/spool/internal/database/dbtest"
)

var (
	ratesDuration = flag.Duration("rates-duration", 5*time.Second, "BenchmarkControlRates and BenchmarkSmallFileRates: how long each measurement runs (go test … -args -rates-duration 5s)")
	ratesClients  = flag.Int("rates-clients", 8, "BenchmarkControlRates and BenchmarkSmallFileRates: concurrent clients per measurement")
	ratesRounds   = flag.Int("rates-rounds", 3, "BenchmarkControlRates and BenchmarkSmallFileRates: rounds of every measurement, alternating with tusd's; the summary gives the medians")
	ratesProfile  = flag.String("rates-cpuprofile", "", "BenchmarkControlRates and BenchmarkSmallFileRates: write a CPU profile of spool during each spool measurement of the first round to `PREFIX`-<engine>-<measurement>.pprof (spool runs with --debug-addr)")
)

// tinyFile is the smallest file spool accepts: spool checks chunk 0's
// first bytes against the declared type (internal/sniff), and no type's
// signature fits in one byte. Two bytes do: 0xFF 0xFB is an MPEG-1
// Layer III frame header, which sniff accepts as audio/mpeg from its
// first two bytes. tusd has no such check and gets one-byte PATCHes, as
// the target names them; one byte more or less costs neither side
// anything measurable.
var tinyFile = []byte{0xFF, 0xFB}

const tinyMIME = "audio/mpeg"

// ratesBatchFiles is --max-batch-files for BenchmarkControlRates: the
// setup creates thousands of one-chunk uploads, and 5 per initBatch (the
// default) makes that slow. It changes nothing in the measured requests.
const ratesBatchFiles = 200

// rate is one measurement: requests done by the clients over a window,
// and the server's and client's CPU time meanwhile.
type rate struct {
	name     string
	requests int
	elapsed  time.Duration
	cpu      time.Duration // the server's
	client   time.Duration // this process's
	machine  machineCPU    // every process's, and what the hypervisor took
	short    bool          // the prepared requests ran out before the window ended
	setup    time.Duration // preparing the requests (uploads planned or created)
	// done is, for BenchmarkSmallFileRates' spool windows, the time from
	// the window's start until its files' jobs had all run (the job
	// queue empty); 0 elsewhere.
	done time.Duration
}

func (r rate) perSec() float64 { return float64(r.requests) / r.elapsed.Seconds() }

func (r rate) cpuPerReq() float64 { return float64(r.cpu.Microseconds()) / float64(r.requests) }

func (r rate) clientPerReq() float64 { return float64(r.client.Microseconds()) / float64(r.requests) }

// othersPerReq is the CPU time the machine spent per request outside the
// server and the client: other processes, and the kernel's own work.
func (r rate) othersPerReq() float64 {
	return float64((r.machine.busy - r.cpu - r.client).Microseconds()) / float64(r.requests)
}

// BenchmarkControlRates measures what spool's control path costs per
// request, against tusd's: in one run, ratesClients clients each send
// requests back to back for ratesDuration to
//
//   - spool's confirmChunk of a chunk already received (each client
//     confirms its own upload's only chunk);
//   - spool's chunk PUT of a 2-byte file, each to a distinct upload whose
//     only chunk it is (the uploads are planned with initBatch first);
//   - tusd's one-byte PATCH, each client appending to its own upload
//     (created with POST first) at the offset it has reached;
//
// and reports requests per second and the server's CPU time per request
// (utime+stime from /proc/PID/stat over the window). spool runs on
// embedded SQLite and on a scratch PostgreSQL database. The measurements
// run in ratesRounds rounds, each round's spool windows between two of
// tusd's (the last window of a round is the first of the next), and a
// round's spool/tusd ratios divide by the faster of its two tusd windows
// (tusdBest says why). One window's ratio swings by a third from run to
// run on these machines; the median of the rounds' is what the summary
// and the reported metrics give. It asserts nothing about speed: the
// numbers are for docs/BENCHMARKS.md.
func BenchmarkControlRates(b *testing.B) {
	if testing.Short() {
		b.Skip("runs spool and tusd under load for a few minutes; skipped under -short (run `make bench-rates`)")
	}
	peers := startRatesPeers(b, "--max-batch-files", strconv.Itoa(ratesBatchFiles))
	ctx, c, tusd, sqlite, pg, began := peers.ctx, peers.client, peers.tusd, peers.sqlite, peers.pg, peers.began
	sqliteProf, pgProf := peers.sqliteProf, peers.pgProf

	rounds := make([]ratesRound, *ratesRounds)
	tusdWindow := measureTusdPatches(ctx, b, c, tusd, "tusd PATCH (before round 1)")
	for i := range rounds {
		r := &rounds[i]
		r.tusdBefore = tusdWindow
		// Only the first round is profiled: the profiles' file names
		// are one per measurement.
		sqliteProf, pgProf := sqliteProf, pgProf
		if i > 0 {
			sqliteProf, pgProf = nil, nil
		}
		r.spool[0] = measureConfirms(ctx, b, c, sqlite, "spool SQLite confirmChunk", sqliteProf.as("confirm"))
		r.spool[1] = measureTinyPuts(ctx, b, c, sqlite, "spool SQLite chunk PUT", sqliteProf.as("put"))
		r.spool[2] = measureConfirms(ctx, b, c, pg, "spool PostgreSQL confirmChunk", pgProf.as("confirm"))
		r.spool[3] = measureTinyPuts(ctx, b, c, pg, "spool PostgreSQL chunk PUT", pgProf.as("put"))
		tusdWindow = measureTusdPatches(ctx, b, c, tusd, fmt.Sprintf("tusd PATCH (after round %d)", i+1))
		r.tusdAfter = tusdWindow
	}

	b.ReportMetric(0, "ns/op") // the wall time of the whole benchmark means nothing
	fmt.Printf("\n%d clients, %v per measurement, %d rounds, spool's files %d bytes, tusd's PATCHes 1 byte, load average %s\n",
		*ratesClients, *ratesDuration, len(rounds), len(tinyFile), loadAverage(b))
	for i, r := range rounds {
		r.print(i + 1)
	}
	summary := summarize(rounds)
	summary.print()
	fmt.Printf("setup and measurements took %.0f s after the builds\n", time.Since(began).Seconds())

	for i, key := range []string{"sqlite-confirm", "sqlite-put", "pg-confirm", "pg-put"} {
		b.ReportMetric(summary.ratio[i], key+"/tusd")
	}
	b.ReportMetric(summary.tusdRate, "tusd-patch/s")
	b.ReportMetric(summary.cpu[0], "sqlite-confirm-cpu-µs")
	b.ReportMetric(summary.cpu[1], "sqlite-put-cpu-µs")
	b.ReportMetric(summary.tusdCPU, "tusd-patch-cpu-µs")
}

// ratesPeers are the servers a rates benchmark measures, started for its
// whole run and idle outside their windows (a spool at rest uses a few
// ms of CPU a second): tusd, and spool on SQLite and on a scratch
// PostgreSQL database, each spool with -rates-cpuprofile's profile if set.
type ratesPeers struct {
	ctx                context.Context
	client             *http.Client
	tusd               *tusdServer
	sqlite, pg         *spoolServer
	sqliteProf, pgProf *cpuProfile
	// began is when the servers started, after the builds.
	began time.Time
}

// startRatesPeers checks the rates flags, builds spool and the tusd peer
// and starts them until b's end; every spool gets spoolArgs after the arguments all
// rates benchmarks share: no media processing, and the per-user limits
// raised, as one user sends every request, faster than the limits allow
// a user (raised, not removed, so their cost is measured with the rest).
func startRatesPeers(b *testing.B, spoolArgs ...string) *ratesPeers {
	b.Helper()
	if *ratesDuration <= 0 || *ratesClients < 1 || *ratesRounds < 1 {
		b.Fatalf("-rates-duration must be positive, -rates-clients and -rates-rounds at least 1, got %v, %d and %d",
			*ratesDuration, *ratesClients, *ratesRounds)
	}
	// First, so that without a PostgreSQL server the benchmark skips (or
	// fails, with CI=true as the make targets set it) before measuring.
	pgURL := dbtest.Postgres(b)
	dir := b.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	binDir := mkdir(b, dir, "bin")
	spoolBin := buildBinary(b, binDir, "./cmd/spool")
	tusdBin := buildTusdPeer(b, binDir)
	args := append([]string{"--media-processing=false", "--rate-mutations", "1000000/s", "--rate-chunks", "1000000/s"}, spoolArgs...)

	b.Cleanup(cancel)

	// Each stopped by a cleanup registered once it runs, so that a start
	// that fails leaves none of the others running.
	p := &ratesPeers{ctx: ctx, client: newClient(), began: time.Now()}
	p.tusd = startTusd(b, tusdBin, mkdir(b, dir, "tusd"))
	b.Cleanup(p.tusd.stop)
	var sqliteArgs, pgArgs []string
	p.sqliteProf, sqliteArgs = profiled(b, "sqlite", args)
	p.sqlite = startSpool(ctx, b, spoolBin, mkdir(b, dir, "spool-sqlite"), sqliteArgs...)
	b.Cleanup(p.sqlite.stop)
	p.pgProf, pgArgs = profiled(b, "postgres", append(args, "--database-url", pgURL))
	p.pg = startSpool(ctx, b, spoolBin, mkdir(b, dir, "spool-postgres"), pgArgs...)
	b.Cleanup(p.pg.stop)
	return p
}

// ratesRound is one round of BenchmarkControlRates: spool's four
// measurements (SQLite confirmChunk and chunk PUT, then PostgreSQL's)
// between two windows of tusd's.
type ratesRound struct {
	tusdBefore, tusdAfter rate
	spool                 [4]rate
}

// tusd is the window the round's ratios divide by.
func (r ratesRound) tusd() rate { return tusdBest(r.tusdBefore, r.tusdAfter) }

// print writes the round's windows as a table, each with its ratio to
// the round's tusd.
func (r ratesRound) print(n int) {
	tusdRate := r.tusd().perSec()
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 3, ' ', 0)
	fmt.Fprintf(tw, "\nround %d: ratios against tusd's faster window, %.0f PATCH/s\n", n, tusdRate)
	fmt.Fprintln(tw, "measurement\trequests\tseconds\treq/s\tserver CPU µs/req\tclient CPU µs/req\tother CPU µs/req\tsteal %\treq/s vs tusd\tsetup s")
	for _, w := range append(append([]rate{r.tusdBefore}, r.spool[:]...), r.tusdAfter) {
		name := w.name
		if w.short {
			name += " (ran out of prepared uploads early)"
		}
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.0f\t%.0f\t%.0f\t%.0f\t%.1f\t%.2f\t%.1f\n", name, w.requests, w.elapsed.Seconds(),
			w.perSec(), w.cpuPerReq(), w.clientPerReq(), w.othersPerReq(), w.machine.stealPercent(w.elapsed),
			w.perSec()/tusdRate, w.setup.Seconds())
	}
	_ = tw.Flush()
}

// ratesSummary is the median over rounds of each of spool's measurements:
// its ratio to its round's tusd, its requests a second, its server CPU
// and the machine's other CPU per request; and tusd's faster windows'
// median rate and CPU per PATCH.
type ratesSummary struct {
	names                      [4]string
	ratio, lo, hi, perSec, cpu [4]float64
	others                     [4]float64
	tusdRate, tusdCPU          float64
}

func summarize(rounds []ratesRound) ratesSummary {
	var s ratesSummary
	var tusdRates, tusdCPUs []float64
	for _, r := range rounds {
		tusdRates = append(tusdRates, r.tusd().perSec())
		tusdCPUs = append(tusdCPUs, r.tusd().cpuPerReq())
	}
	s.tusdRate, s.tusdCPU = median(tusdRates), median(tusdCPUs)
	for i := range s.names {
		var ratios, perSec, cpu, others []float64
		for _, r := range rounds {
			w := r.spool[i]
			ratios = append(ratios, w.perSec()/r.tusd().perSec())
			perSec = append(perSec, w.perSec())
			cpu = append(cpu, w.cpuPerReq())
			others = append(others, w.othersPerReq())
		}
		s.names[i] = rounds[0].spool[i].name
		s.ratio[i], s.lo[i], s.hi[i] = median(ratios), slices.Min(ratios), slices.Max(ratios)
		s.perSec[i], s.cpu[i], s.others[i] = median(perSec), median(cpu), median(others)
	}
	return s
}

func (s ratesSummary) print() {
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 3, ' ', 0)
	fmt.Fprintf(tw, "\nmedians over the rounds; tusd's faster windows: %.0f PATCH/s at %.0f µs of server CPU\n", s.tusdRate, s.tusdCPU)
	fmt.Fprintln(tw, "measurement\treq/s vs tusd\t(rounds' range)\treq/s\tserver CPU µs/req\tother CPU µs/req")
	for i, name := range s.names {
		fmt.Fprintf(tw, "%s\t%.2f\t%.2f–%.2f\t%.0f\t%.0f\t%.0f\n", name, s.ratio[i], s.lo[i], s.hi[i], s.perSec[i], s.cpu[i], s.others[i])
	}
	_ = tw.Flush()
}

// tusdBest is the rate the spool/tusd ratios divide by: the faster of
// tusd's two windows, which favours tusd. Its first window, right after
// the benchmark's `go build`s, can run at a fifth of its later rate with
// five times the CPU per PATCH, nearly all of it in the kernel: tusd's
// file locker creates a pid file and a hard link per PATCH, and an ext4
// file system without a journal (as on these benchmark machines) skips
// every inode deleted in the last minute when it allocates one, and the
// builds have just deleted thousands (perf: rwsem_spin_on_owner,
// recently_deleted and find_inode_bit, under linkat and openat in
// lockfile.TryLock). spool creates no file per chunk, so that is not a
// cost of the comparison's subject, and a mean of the two windows let it
// swing the ratios by 1.7 times from run to run.
func tusdBest(windows ...rate) rate {
	best := windows[0]
	for _, w := range windows[1:] {
		if w.perSec() > best.perSec() {
			best = w
		}
	}
	return best
}

// measureWindow runs ratesClients clients for ratesDuration. Each calls
// do with its client number and the next request number from 0 up, until
// the window ends or do reports that it has no request left (false);
// it returns the requests done and the server's CPU time meanwhile. Any
// error fails the benchmark. A non-nil prof takes a CPU profile of the
// server over the window.
func measureWindow(ctx context.Context, b *testing.B, p *process, name string, prof *cpuProfile, do func(ctx context.Context, client, n int) (bool, error)) rate {
	b.Helper()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next  atomic.Int64
		done  atomic.Int64
		short atomic.Bool
		wg    sync.WaitGroup
		errMu sync.Mutex
		first error
	)
	profiled := prof.start(ctx)
	cpu0, client0, machine0 := p.cpuTime(b), clientCPUTime(b), readMachineCPU(b)
	began := time.Now()
	deadline := began.Add(*ratesDuration)
	for i := range *ratesClients {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				ok, err := do(ctx, i, int(next.Add(1)-1))
				if err != nil {
					errMu.Lock()
					if first == nil {
						first = err
					}
					errMu.Unlock()
					cancel()
					return
				}
				if !ok {
					short.Store(true)
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(began)
	r := rate{
		name:     name,
		requests: int(done.Load()),
		elapsed:  elapsed,
		cpu:      p.cpuTime(b) - cpu0,
		client:   clientCPUTime(b) - client0,
		machine:  readMachineCPU(b).since(machine0),
		short:    short.Load(),
	}
	if err := profiled(); err != nil {
		p.fail(b, "%s: CPU profile: %v", name, err)
	}
	if first != nil {
		p.fail(b, "%s: %v", name, first)
	}
	if r.requests == 0 {
		p.fail(b, "%s: no request done", name)
	}
	return r
}

// measureConfirms gives each client an upload whose only chunk has
// arrived, then measures confirmChunk of that chunk.
func measureConfirms(ctx context.Context, b *testing.B, c *http.Client, s *spoolServer, name string, prof *cpuProfile) rate {
	b.Helper()
	began := time.Now()
	puts, ids := planTiny(ctx, b, c, s, *ratesClients)
	for _, put := range puts {
		if err := sendChunk(ctx, c, put, tinyFile); err != nil {
			s.fail(b, "sending a chunk to confirm: %v", err)
		}
	}
	setup := time.Since(began)
	const mutation = `mutation($id: ID!, $size: Int64!) { confirmChunk(uploadId: $id, chunkIndex: 0, size: $size) { uploadedChunks } }`
	r := measureWindow(ctx, b, s.process, name, prof, func(ctx context.Context, client, _ int) (bool, error) {
		var out struct {
			ConfirmChunk struct {
				UploadedChunks int `json:"uploadedChunks"`
			} `json:"confirmChunk"`
		}
		if err := s.graphQL(ctx, c, mutation, map[string]any{"id": ids[client], "size": len(tinyFile)}, &out); err != nil {
			return false, fmt.Errorf("confirmChunk: %w", err)
		}
		if out.ConfirmChunk.UploadedChunks != 1 {
			return false, fmt.Errorf("confirmChunk: %d chunks received, want 1", out.ConfirmChunk.UploadedChunks)
		}
		return true, nil
	})
	r.setup = setup
	return r
}

// measureTinyPuts measures PUTs of one-chunk uploads' chunks, each
// upload's once. A pilot of 50 uploads per client, planned and sent
// first, tells how many to plan for the window: 2.5 times what the
// pilot's rate would send. Should they run out, the window ends there and
// the report says so.
func measureTinyPuts(ctx context.Context, b *testing.B, c *http.Client, s *spoolServer, name string, prof *cpuProfile) rate {
	b.Helper()
	began := time.Now()
	pilot, _ := planTiny(ctx, b, c, s, 50**ratesClients)
	took, err := sendChunks(ctx, c, pilot, *ratesClients, tinyFile)
	if err != nil {
		s.fail(b, "pilot PUTs: %v", err)
	}
	n := max(1000, int(2.5*float64(len(pilot))/took.Seconds()*ratesDuration.Seconds()))
	puts, _ := planTiny(ctx, b, c, s, n)
	setup := time.Since(began)
	r := measureWindow(ctx, b, s.process, name, prof, func(ctx context.Context, _, i int) (bool, error) {
		if i >= len(puts) {
			return false, nil
		}
		return true, sendChunk(ctx, c, puts[i], tinyFile)
	})
	r.setup = setup
	return r
}

// planTiny plans n uploads of tinyFile with initBatch, ratesBatchFiles
// at a time from ratesClients workers, and returns the PUT of each one's only chunk
// and the upload ids.
func planTiny(ctx context.Context, b *testing.B, c *http.Client, s *spoolServer, n int) ([]chunkPUT, []string) {
	b.Helper()
	puts, ids := make([]chunkPUT, n), make([]string, n)
	const query = `mutation($input: InitBatchInput!) {
		initBatch(input: $input) { uploads { id totalChunks chunkUrls { ` + chunkURLFields + ` } } } }`
	err := parallel(ctx, *ratesClients, (n+ratesBatchFiles-1)/ratesBatchFiles, func(ctx context.Context, batch int) error {
		from, to := batch*ratesBatchFiles, min(n, (batch+1)*ratesBatchFiles)
		files := make([]map[string]any, 0, to-from)
		for i := from; i < to; i++ {
			files = append(files, map[string]any{"fileName": fmt.Sprintf("tiny-%d.mp3", i), "size": len(tinyFile), "mimeType": tinyMIME})
		}
		var out struct {
			InitBatch struct {
				Uploads []struct {
					ID          string     `json:"id"`
					TotalChunks int        `json:"totalChunks"`
					ChunkURLs   []chunkURL `json:"chunkUrls"`
				} `json:"uploads"`
			} `json:"initBatch"`
		}
		if err := s.graphQL(ctx, c, query, map[string]any{"input": map[string]any{"files": files}}, &out); err != nil {
			return fmt.Errorf("initBatch: %w", err)
		}
		if len(out.InitBatch.Uploads) != to-from {
			return fmt.Errorf("initBatch: %d uploads for %d files", len(out.InitBatch.Uploads), to-from)
		}
		for j, up := range out.InitBatch.Uploads {
			if up.TotalChunks != 1 || len(up.ChunkURLs) != 1 {
				return fmt.Errorf("initBatch: upload %s has %d chunks and %d URLs, want 1 and 1", up.ID, up.TotalChunks, len(up.ChunkURLs))
			}
			puts[from+j], ids[from+j] = up.ChunkURLs[0].put(), up.ID
		}
		return nil
	})
	if err != nil {
		s.fail(b, "planning %d uploads: %v", n, err)
	}
	return puts, ids
}

// tusdPatchUpload is the length of each client's tusd upload: more
// one-byte PATCHes than a client can send in a window.
const tusdPatchUpload = 1 << 20

// measureTusdPatches creates an upload for each client with POST, then
// measures one-byte PATCHes, each at the upload's current offset.
func measureTusdPatches(ctx context.Context, b *testing.B, c *http.Client, s *tusdServer, name string) rate {
	b.Helper()
	began := time.Now()
	urls := make([]string, *ratesClients)
	offsets := make([]int, *ratesClients) // each client's own
	for i := range urls {
		u, err := tusdCreate(ctx, c, s.url, tusdPatchUpload)
		if err != nil {
			s.fail(b, "creating an upload: %v", err)
		}
		urls[i] = u
	}
	setup := time.Since(began)
	r := measureWindow(ctx, b, s.process, name, nil, func(ctx context.Context, client, _ int) (bool, error) {
		if offsets[client] >= tusdPatchUpload {
			return false, nil
		}
		err := sendChunk(ctx, c, chunkPUT{method: http.MethodPatch, url: urls[client], headers: map[string]string{
			"Tus-Resumable": "1.0.0",
			"Upload-Offset": strconv.Itoa(offsets[client]),
			"Content-Type":  "application/offset+octet-stream",
		}}, tinyFile[:1])
		offsets[client]++
		return true, err
	})
	r.setup = setup
	return r
}

// tusdCreate creates an upload of size bytes and returns its URL.
func tusdCreate(ctx context.Context, c *http.Client, base string, size int) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Upload-Length", strconv.Itoa(size))
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusCreated || loc == "" {
		return "", fmt.Errorf("POST %s: %s, Location %q", base, resp.Status, loc)
	}
	return loc, nil
}

// parallel calls fn for 0 … n-1 from the given number of workers and
// returns the first error, after which it starts no more calls.
func parallel(ctx context.Context, workers, n int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, i); err != nil {
					once.Do(func() { first = err })
					cancel()
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

// profiled returns args with --debug-addr on a free port when
// -rates-cpuprofile is set, and the profile to take from it (nil if not).
// Profiles are written to PREFIX-engine-what.pprof.
func profiled(tb testing.TB, engine string, args []string) (*cpuProfile, []string) {
	if *ratesProfile == "" {
		return nil, args
	}
	return debugProfile(tb, *ratesProfile+"-"+engine, int(ratesDuration.Seconds()), args)
}
