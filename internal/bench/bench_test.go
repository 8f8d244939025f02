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
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/spoolhq/spool/internal/database/dbtest"
	"github.com/spoolhq/spool/internal/storage/localfs"
)

var (
	rounds      = flag.Int("rounds", 3, "rounds of every data-plane configuration (go test … -args -rounds N)")
	benchPG     = flag.Bool("postgres", true, "also run spool on PostgreSQL (a scratch database on dbtest's server; skipped with a note if none answers)")
	benchTusd   = flag.Bool("tusd", true, "also run the tusd peer")
	benchVarOff = flag.Bool("no-variants", false, "leave out the bare handler's variants (open per chunk, sync_file_range, CRC32C)")
	benchOnly   = flag.String("configs", "", "run only the configurations whose name (e.g. \"fresh 512 MiB parallel-4\") matches this `regexp`")
	benchProf   = flag.String("dataplane-cpuprofile", "", "write a CPU profile of spool over each timed spool upload's chunk PUTs to `PREFIX`-<configuration>-<target>-round<N>.pprof (spool runs with --debug-addr; the upload's complete waits for the profile's end)")
	benchProfS  = flag.Int("dataplane-cpuprofile-seconds", 2, "seconds each -dataplane-cpuprofile profile covers from the first chunk PUT on (a note is printed when the PUTs took longer)")
)

const (
	mib       = 1 << 20
	gib       = 1 << 30
	chunkSize = 8 * mib
	bigSize   = 1 * gib   // the larger file of the throughput runs
	smallSize = 512 * mib // the smaller one
)

// mode is a pattern of sending chunks.
type mode struct {
	name    string
	workers int
}

var (
	sequential = mode{"sequential", 1}
	parallel4  = mode{"parallel-4", 4}
)

// run is one upload's measurement.
type run struct {
	elapsed   time.Duration // first PUT sent to last response read
	cpu       time.Duration // the server's CPU time meanwhile
	client    time.Duration // the client's (this process's) CPU time meanwhile
	machine   time.Duration // the machine's busy CPU time meanwhile: also the kernel's threads', and PostgreSQL's for spool on it
	complete  time.Duration // spool only: the complete mutation's wall time
	uploadRSS int64         // fresh spool only: its VmHWM once the last chunk was answered (the target's)
	rss       int64         // fresh spool only: its VmHWM once complete and processing ended
	pid       int           // fresh spool only: the process's id, for matching a profile
}

func (r run) mibPerSec(size int64) float64 { return float64(size) / mib / r.elapsed.Seconds() }

// Conditions under which a configuration is measured.
const (
	// warm: one long-lived server per side, uploads back to back, no
	// sync; spool's processing of each file (its SHA-256) is awaited and
	// the file deleted before the next upload. The setup `make bench` had
	// before issue 10.
	warm = "warm"
	// warm+sync: the long-lived servers of warm, with `sync` before every
	// upload as in fresh. Against warm and fresh it tells what the page
	// cache's state costs from what a new process costs.
	warmSync = "warm+sync"
	// fresh: for every spool upload a new `spool serve` on a new data dir
	// (and a new database on PostgreSQL), stopped once its processing is
	// done and the file deleted; every side's upload writes a new file;
	// `sync` before every upload, outside the window. The conditions of
	// issue 10's outside measurement.
	fresh = "fresh"
	// durable: fresh, with spool --fsync-chunks (on SQLite and on
	// PostgreSQL) against a bare handler that fsyncs each chunk.
	durable = "durable"
)

// target is one server under comparison and how to send it a file.
type target struct {
	name   string
	upload func(size int64, workers int) run
}

// group is one configuration: targets that receive the same file in the
// same way, one after the other within a round. targets[0] is the baseline
// the others' ratios are taken against.
type group struct {
	cond    string
	size    int64
	mode    mode
	targets []target
}

func (g group) String() string {
	return fmt.Sprintf("%s %d MiB %s", g.cond, g.size/mib, g.mode.name)
}

// benchEnv is what the targets share.
type benchEnv struct {
	b      *testing.B
	ctx    context.Context
	dir    string
	client *http.Client
	data   []byte
	sums   map[int64]string
	spool  string // the spool binary
	pgURL  string // the PostgreSQL server, or "" to leave it out
	fresh  int    // fresh data dirs made so far
	// profileAs names the profile of the next spool upload (with
	// -dataplane-cpuprofile); "" takes none.
	profileAs string
}

// BenchmarkDataPlane compares spool's data plane with a bare handler that
// only writes the chunks to disk, with the tusd peer and with variants of
// the bare handler that add, one at a time, what spool's local-disk
// engine does per chunk. Files of 512 MiB and 1 GiB go in 8 MiB chunks,
// one at a time and 4 at once, under the conditions above (warm, fresh,
// durable), on SQLite and PostgreSQL. Every configuration runs once per
// round, its targets back to back in an order that rotates each round; the
// ratios are taken within a round and their median reported. The servers
// are child processes; the client is this process. It asserts nothing
// about speed: the numbers are for docs/BENCHMARKS.md.
func BenchmarkDataPlane(b *testing.B) {
	if testing.Short() {
		b.Skip("uploads tens of GiB through several servers; skipped under -short (run `make bench`)")
	}
	if *rounds < 1 {
		b.Fatalf("-rounds must be at least 1, got %d", *rounds)
	}
	dir := b.TempDir()
	// Every upload deletes its file before the next starts.
	if free := freeBytes(b, dir); free < 3*gib {
		b.Skipf("needs 3 GiB free under %s (a 1 GiB file at a time, plus slack); %d MiB free", dir, free/mib)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()

	binDir := mkdir(b, dir, "bin")
	spoolBin, bareBin := buildBinaries(b, binDir)
	var tusdBin string
	if *benchTusd {
		tusdBin = buildTusdPeer(b, binDir)
	}
	data := chunkData()
	e := &benchEnv{b: b, ctx: ctx, dir: dir, client: newClient(), data: data,
		sums: fileSums(data, smallSize, bigSize), spool: spoolBin}
	if *benchPG {
		e.pgURL = dbtest.ServerURL()
		if _, drop, err := dbtest.NewDatabase(ctx, e.pgURL); err != nil {
			fmt.Printf("PostgreSQL: %v; its runs are left out\n", err)
			e.pgURL = ""
		} else {
			_ = drop(ctx)
		}
	}

	bares := map[string]*bareServer{}
	bareT := func(name string, flags ...string) target {
		s := startBare(b, name, bareBin, mkdir(b, dir, strings.NewReplacer("+", "-", "/", "-").Replace(name)), flags...)
		bares[name] = s
		return target{name, func(size int64, workers int) run { return e.bareUpload(s, size, workers) }}
	}
	bare := bareT("bare")
	spoolWrites := strconv.Itoa(localfs.DefaultWriteSize())
	variants := []target{
		bareT("bare+crc32c", "-crc32c"),
		bareT("bare+open/close", "-open-per-chunk"),
		bareT("bare+filled", "-fill", "-fill-size", spoolWrites),
		bareT("bare+all-spool's", "-crc32c", "-open-per-chunk", "-fill", "-fill-size", spoolWrites),
		// Not what spool's chunk PUT does: sync_file_range is its tus
		// pieces'. The two write sizes localfs chooses between
		// (localfs.DefaultWriteSize), whichever this machine gets.
		bareT("bare+sync_range", "-sync-range"),
		bareT("bare+all+128KiB-fill", "-crc32c", "-open-per-chunk", "-fill", "-fill-size", strconv.Itoa(localfs.SmallWrite)),
		bareT("bare+all+512KiB-fill", "-crc32c", "-open-per-chunk", "-fill", "-fill-size", strconv.Itoa(localfs.LargeWrite)),
		bareT("bare+all+1MiB-fill", "-crc32c", "-open-per-chunk", "-fill", "-fill-size", strconv.Itoa(1<<20)),
	}
	if *benchVarOff {
		variants = nil
	}
	bareFsync := bareT("bare+fsync", "-fsync")

	warmSQLite := e.startProfiledSpool(mkdir(b, dir, "spool"))
	fmt.Printf("warm spool (SQLite): pid %d\n", warmSQLite.cmd.Process.Pid)
	warmRSS := []int64{warmSQLite.peakRSS(b)}
	spoolWarm := []target{{"spool", func(size int64, workers int) run { return e.spoolUpload(warmSQLite, size, workers) }}}
	spoolFresh := []target{{"spool", func(size int64, workers int) run { return e.freshSpoolUpload(false, size, workers) }}}
	spoolDurable := []target{{"spool --fsync-chunks", func(size int64, workers int) run {
		return e.freshSpoolUpload(false, size, workers, "--fsync-chunks")
	}}}
	if e.pgURL != "" {
		pgURL, drop, err := dbtest.NewDatabase(ctx, e.pgURL)
		if err != nil {
			b.Fatalf("creating a scratch database: %v", err)
		}
		b.Cleanup(func() { _ = drop(context.Background()) })
		warmPG := e.startProfiledSpool(mkdir(b, dir, "spool-pg"), "--database-url", pgURL)
		spoolWarm = append(spoolWarm, target{"spool-pg", func(size int64, workers int) run { return e.spoolUpload(warmPG, size, workers) }})
		spoolFresh = append(spoolFresh, target{"spool-pg", func(size int64, workers int) run { return e.freshSpoolUpload(true, size, workers) }})
		spoolDurable = append(spoolDurable, target{"spool-pg --fsync-chunks", func(size int64, workers int) run {
			return e.freshSpoolUpload(true, size, workers, "--fsync-chunks")
		}})
	}
	var peers []target
	if tusdBin != "" {
		tusd := startTusd(b, tusdBin, mkdir(b, dir, "tusd"))
		peers = append(peers, target{"tusd", func(size int64, workers int) run { return e.tusdUpload(tusd, size, workers) }})
	}

	join := func(ts ...[]target) []target { return slices.Concat(ts...) }
	groups := []group{
		{warm, bigSize, sequential, join([]target{bare}, spoolWarm, peers)},
		{warm, bigSize, parallel4, join([]target{bare}, spoolWarm, peers, variants)},
		{warmSync, smallSize, parallel4, join([]target{bare}, spoolWarm[:1], variants)},
		{fresh, smallSize, sequential, join([]target{bare}, spoolFresh, peers, variants)},
		{fresh, smallSize, parallel4, join([]target{bare}, spoolFresh, peers, variants)},
		{fresh, bigSize, sequential, join([]target{bare}, spoolFresh, peers)},
		{fresh, bigSize, parallel4, join([]target{bare}, spoolFresh, peers)},
		{durable, smallSize, sequential, join([]target{bareFsync}, spoolDurable)},
		{durable, smallSize, parallel4, join([]target{bareFsync}, spoolDurable)},
	}

	if *benchOnly != "" {
		re, err := regexp.Compile(*benchOnly)
		if err != nil {
			b.Fatalf("-configs: %v", err)
		}
		groups = slices.DeleteFunc(groups, func(g group) bool { return !re.MatchString(g.String()) })
		if len(groups) == 0 {
			b.Fatalf("-configs %q matches no configuration", *benchOnly)
		}
	}

	// One untimed upload to each long-lived server first, so no timed run
	// pays for the first use of connections, the servers' heaps or
	// page-cache memory (on a VM the first touch of guest memory is
	// markedly slower).
	warmedUp := map[string]bool{}
	for _, g := range groups {
		for _, t := range g.targets {
			if (g.cond == warm || g.cond == warmSync) && !warmedUp[t.name] {
				t.upload(smallSize, 4)
				warmedUp[t.name] = true
			}
		}
	}
	warmRSS = append(warmRSS, warmSQLite.peakRSS(b))
	touchFreeMemory()
	b.ResetTimer()

	fmt.Printf("\ndata plane: %d rounds of %d configurations, %d MiB chunks, load average %s\n", *rounds, len(groups), chunkSize/mib, loadAverage(b))
	fmt.Printf("spool's local engine: %s\n", writeSizeNote())
	reportedBefore, reportedKnown := reportedToHost()
	defer func() {
		if after, ok := reportedToHost(); ok && reportedKnown {
			fmt.Printf("freed memory the kernel handed back to the host during the rounds: %d MiB\n", (after-reportedBefore)/mib)
		}
	}()
	results := make([]map[string][]run, len(groups))
	for i := range results {
		results[i] = map[string][]run{}
	}
	began := time.Now()
	for r := range *rounds {
		// Which configuration goes first, and within it who goes first,
		// rotates, so no one always meets the same leftovers (writeback, a
		// busy neighbour).
		for i := range groups {
			gi := (i + r) % len(groups)
			g := groups[gi]
			for j := range g.targets {
				t := g.targets[(j+r)%len(g.targets)]
				if g.cond != warm {
					syscall.Sync()
				}
				if *benchProf != "" {
					e.profileAs = strings.ReplaceAll(fmt.Sprintf("%s-%s-round%d", g, t.name, r+1), " ", "_")
				}
				got := t.upload(g.size, g.mode.workers)
				e.profileAs = ""
				results[gi][t.name] = append(results[gi][t.name], got)
				fmt.Printf("  round %d  %-26s %-22s %6.0f MiB/s  CPU s/GiB: server %.2f, client %.2f", r+1, g, t.name,
					got.mibPerSec(g.size), cpuPerGiB(got.cpu, g.size), cpuPerGiB(got.client, g.size))
				if got.complete > 0 {
					fmt.Printf("  complete %v", got.complete.Round(time.Millisecond))
				}
				if got.rss > 0 {
					fmt.Printf("  VmHWM %.1f MiB (upload %.1f)", mibOf(got.rss), mibOf(got.uploadRSS))
				}
				if got.pid > 0 {
					fmt.Printf("  pid %d", got.pid)
				}
				fmt.Println()
			}
		}
		fmt.Printf("  round %d done after %v, load average %s\n", r+1, time.Since(began).Round(time.Second), loadAverage(b))
	}
	warmRSS = append(warmRSS, warmSQLite.peakRSS(b))
	b.StopTimer()

	reportDataPlane(b, groups, results, warmRSS, bares["bare"].peakRSS(b))
}

// measure reads the CPU time of server, of this process (the client)
// and of the machine now, and returns what ends the measurement: a run
// of elapsed with the CPU each used meanwhile.
func measure(b *testing.B, server *process) func(elapsed time.Duration) run {
	cpu, client, machine := server.cpuTime(b), clientCPUTime(b), readMachineCPU(b)
	return func(elapsed time.Duration) run {
		return run{elapsed: elapsed, cpu: server.cpuTime(b) - cpu, client: clientCPUTime(b) - client,
			machine: readMachineCPU(b).since(machine).busy}
	}
}

// bareUpload sends one file to the bare server and removes it again.
func (e *benchEnv) bareUpload(s *bareServer, size int64, workers int) run {
	b, ctx, c := e.b, e.ctx, e.client
	b.Helper()
	if err := call(ctx, c, http.MethodPost, fmt.Sprintf("%s/reset?size=%d", s.url, size)); err != nil {
		s.fail(b, "%v", err)
	}
	measured := measure(b, s.process)
	elapsed, err := sendChunks(ctx, c, bareChunks(s.url, size, chunkSize), workers, e.data)
	if err != nil {
		s.fail(b, "%v", err)
	}
	got := measured(elapsed)
	if err := call(ctx, c, http.MethodDelete, s.url+"/file"); err != nil {
		s.fail(b, "%v", err)
	}
	return got
}

// tusdUpload sends one file to the tusd peer in 8 MiB PATCHes and
// terminates the upload. With more than one worker it sends that many
// uploads of an equal share of the file at once, each in order, since one
// tus upload takes its PATCHes one at a time.
func (e *benchEnv) tusdUpload(s *tusdServer, size int64, workers int) run {
	b, ctx, c := e.b, e.ctx, e.client
	b.Helper()
	var uploads []string
	var streams [][]chunkPUT
	for range workers {
		u, err := tusCreate(ctx, c, s.url, size/int64(workers))
		if err != nil {
			s.fail(b, "%v", err)
		}
		uploads = append(uploads, u)
		streams = append(streams, tusChunks(u, size/int64(workers), chunkSize))
	}
	measured := measure(b, s.process)
	elapsed, err := sendStreams(ctx, c, streams, e.data)
	if err != nil {
		s.fail(b, "%v", err)
	}
	got := measured(elapsed)
	for _, u := range uploads {
		if err := tusDelete(ctx, c, u, nil); err != nil {
			s.fail(b, "%v", err)
		}
	}
	return got
}

// startProfiledSpool is startSpool with the benchmark's binary, and a
// --debug-addr to take profiles from if -dataplane-cpuprofile is set.
func (e *benchEnv) startProfiledSpool(dataDir string, flags ...string) *spoolServer {
	var prof *cpuProfile
	if *benchProf != "" {
		prof, flags = debugProfile(e.b, *benchProf, *benchProfS, flags)
	}
	s := startSpool(e.ctx, e.b, e.spool, dataDir, flags...)
	s.prof = prof
	return s
}

// freshSpoolUpload starts a spool serve on a new data dir (and, onPG, a new
// database), sends it one file, waits for its processing, deletes the file
// and stops the server, whose CPU is read over the PUTs only.
func (e *benchEnv) freshSpoolUpload(onPG bool, size int64, workers int, flags ...string) run {
	b := e.b
	b.Helper()
	e.fresh++
	dataDir := mkdir(b, e.dir, fmt.Sprintf("fresh-%d", e.fresh))
	defer os.RemoveAll(dataDir)
	if onPG {
		dbURL, drop, err := dbtest.NewDatabase(e.ctx, e.pgURL)
		if err != nil {
			b.Fatalf("creating a scratch database: %v", err)
		}
		defer func() {
			if err := drop(context.Background()); err != nil {
				b.Errorf("%v", err)
			}
		}()
		flags = append(flags, "--database-url", dbURL)
	}
	s := e.startProfiledSpool(dataDir, flags...)
	defer e.client.CloseIdleConnections()
	defer s.stop()
	syscall.Sync() // what starting wrote (the database) is not this upload's
	got := e.spoolUpload(s, size, workers)
	got.rss, got.pid = s.peakRSS(b), s.cmd.Process.Pid
	return got
}

// spoolUpload uploads one file through spool's data plane, completes it,
// waits for spool to check its SHA-256 and deletes it.
func (e *benchEnv) spoolUpload(s *spoolServer, size int64, workers int) run {
	b, ctx, c := e.b, e.ctx, e.client
	b.Helper()
	id, puts, err := s.initUpload(ctx, c, size, e.sums[size])
	if err != nil {
		s.fail(b, "%v", err)
	}
	var prof *cpuProfile
	if e.profileAs != "" {
		prof = s.prof.as(e.profileAs)
	}
	profiled := prof.start(ctx)
	measured := measure(b, s.process)
	elapsed, err := sendChunks(ctx, c, puts, workers, e.data)
	if err != nil {
		s.fail(b, "%v", err)
	}
	got := measured(elapsed)
	got.uploadRSS = s.peakRSS(b)
	if err := profiled(); err != nil {
		s.fail(b, "CPU profile: %v", err)
	}
	if prof != nil && elapsed > time.Duration(prof.secs)*time.Second {
		fmt.Printf("  note: the PUTs took %v; %s covers their first %d s\n", elapsed.Round(time.Millisecond), prof.path, prof.secs)
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
	return got
}

// reportDataPlane prints one table row per configuration and target, and
// reports the headline numbers as benchmark metrics.
func reportDataPlane(b *testing.B, groups []group, results []map[string][]run, warmRSS []int64, bareRSS int64) {
	b.ReportMetric(0, "ns/op") // the wall time of the whole benchmark means nothing
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "configuration\ttarget\tMiB/s\t÷ baseline\t÷ tusd\tserver CPU s/GiB\tCPU ÷ baseline\tCPU ms/chunk\tmachine CPU\tclient CPU\tcomplete ms\tVmHWM MiB, max\t")
	fmt.Fprintln(tw, "\t\tmedian / best\tby round: median (min–max)\tby round\tmedian\tby round: median\tbeyond baseline\t÷ baseline\ts/GiB\tmedian\tupload\t+ processing")
	for gi, g := range groups {
		base, tusd := results[gi][g.targets[0].name], results[gi]["tusd"]
		chunks := float64(g.size / chunkSize)
		for _, t := range g.targets {
			runs := results[gi][t.name]
			var rates, cpus, clients, ratios, cpuRatios, machineRatios, extra, completes, vsTusd []float64
			var rss, uploadRSS int64
			for i, r := range runs {
				rates = append(rates, r.mibPerSec(g.size))
				cpus = append(cpus, cpuPerGiB(r.cpu, g.size))
				clients = append(clients, cpuPerGiB(r.client, g.size))
				ratios = append(ratios, r.mibPerSec(g.size)/base[i].mibPerSec(g.size))
				if len(tusd) > i {
					vsTusd = append(vsTusd, r.mibPerSec(g.size)/tusd[i].mibPerSec(g.size))
				}
				cpuRatios = append(cpuRatios, r.cpu.Seconds()/base[i].cpu.Seconds())
				machineRatios = append(machineRatios, r.machine.Seconds()/base[i].machine.Seconds())
				extra = append(extra, msOf(r.cpu-base[i].cpu)/chunks)
				if r.complete > 0 {
					completes = append(completes, msOf(r.complete))
				}
				rss = max(rss, r.rss)
				if r.rss > 0 {
					uploadRSS = max(uploadRSS, r.uploadRSS)
				}
			}
			ratio, cpuRatio, machineRatio, perChunk, complete, hwm, uploadHWM, tusdRatio := "", "", "", "", "", "", "", ""
			if strings.HasPrefix(t.name, "spool") && len(vsTusd) > 0 {
				tusdRatio = fmt.Sprintf("%.2f", median(vsTusd))
			}
			if t.name != g.targets[0].name {
				ratio = fmt.Sprintf("%.2f (%.2f–%.2f)", median(ratios), slices.Min(ratios), slices.Max(ratios))
				cpuRatio = fmt.Sprintf("%.2f", median(cpuRatios))
				machineRatio = fmt.Sprintf("%.2f", median(machineRatios))
				perChunk = fmt.Sprintf("%.1f", median(extra))
			}
			if len(completes) > 0 {
				complete = fmt.Sprintf("%.0f", median(completes))
			}
			if rss > 0 {
				hwm, uploadHWM = fmt.Sprintf("%.1f", mibOf(rss)), fmt.Sprintf("%.1f", mibOf(uploadRSS))
			}
			fmt.Fprintf(tw, "%s\t%s\t%.0f / %.0f\t%s\t%s\t%.2f\t%s\t%s\t%s\t%.2f\t%s\t%s\t%s\n", g, t.name,
				median(rates), slices.Max(rates), ratio, tusdRatio, median(cpus), cpuRatio, perChunk, machineRatio, median(clients), complete, uploadHWM, hwm)
			key := strings.NewReplacer(" ", "-", "/", "-").Replace(fmt.Sprintf("%s-%s", g, t.name))
			if t.name != g.targets[0].name {
				b.ReportMetric(median(ratios), key+"-ratio")
			}
		}
	}
	_ = tw.Flush()
	fmt.Printf("\nwarm spool (SQLite) VmHWM: started %.1f MiB, after the warm-up %.1f MiB, after all rounds %.1f MiB; bare handler %.1f MiB\n",
		mibOf(warmRSS[0]), mibOf(warmRSS[1]), mibOf(warmRSS[2]), mibOf(bareRSS))
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

func mibOf(bytes int64) float64    { return float64(bytes) / mib }
func msOf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// writeSizeNote says which write size spool's local engine picks on this
// machine, and why it matters to the figures.
func writeSizeNote() string {
	if localfs.DefaultWriteSize() == localfs.SmallWrite {
		return "128 KiB writes: this kernel hands freed memory back to its hypervisor (free page reporting), " +
			"so the page cache's cost swings from run to run; compare alternating runs only, or turn reporting " +
			"off for the run (docs/BENCHMARKS.md, \"Write size and the VM's free page reporting\")"
	}
	return "512 KiB writes (no free page reporting to a hypervisor)"
}

// reportedToHost is how much freed memory the kernel has handed back to its
// hypervisor since boot, in bytes, where the kernel counts it (a counter of
// the Firecracker guest kernels these benchmarks ran on; upstream has none).
func reportedToHost() (int64, bool) {
	b, err := os.ReadFile("/sys/module/page_reporting/parameters/reported_kib")
	if err != nil {
		return 0, false
	}
	kib, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return kib << 10, err == nil
}
