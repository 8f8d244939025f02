//go:build linux

package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/procfs"
	"golang.org/x/sys/unix"

	"github.com/spoolhq/spool/internal/buildtags"
)

// moduleRoot returns the directory of spool's go.mod.
func moduleRoot(tb testing.TB) string {
	tb.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		tb.Fatalf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		tb.Fatal("go env GOMOD: not inside a module")
	}
	return filepath.Dir(gomod)
}

// buildBinaries builds spool and the bare server into dir and returns
// their paths.
func buildBinaries(tb testing.TB, dir string) (spool, bare string) {
	tb.Helper()
	return buildBinary(tb, dir, "./cmd/spool"), buildBinary(tb, dir, "./internal/bench/bareserver")
}

// buildBinary builds the command in package pkg (relative to the module
// root) into dir, with the Makefile's build tags, evicts it from the page
// cache and returns its path. The tags are passed, not left to GOFLAGS:
// a bench binary built with go test -c and run without GOFLAGS measured
// a spool that linked gRPC, 8 MiB more RSS than the one make build makes
// (docs/BENCHMARKS.md, evening of 2026-12-03).
func buildBinary(tb testing.TB, dir, pkg string) string {
	tb.Helper()
	root := moduleRoot(tb)
	bin := filepath.Join(dir, filepath.Base(pkg))
	tags, err := buildtags.FromMakefile(root)
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-tags", tags, "-o", bin, pkg)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	evictFromPageCache(tb, bin)
	return bin
}

// evictFromPageCache writes bin to disk and drops it from the page cache,
// so the server starts as a deployed binary does, paging its code in from
// disk. Left cached as the linker wrote it, the file sits in large page
// cache folios, and a process mapping them is charged whole folios of code
// it never touches: 12 MiB more RSS for the same binary (a copy made with
// cp starts 12 MiB smaller, as does the linker's output once evicted).
func evictFromPageCache(tb testing.TB, bin string) {
	tb.Helper()
	f, err := os.Open(bin)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		tb.Fatalf("syncing %s: %v", bin, err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		tb.Fatalf("evicting %s from the page cache: %v", bin, err)
	}
}

// freeBytes is the space available to us on dir's file system.
func freeBytes(tb testing.TB, dir string) int64 {
	tb.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		tb.Fatalf("statfs %s: %v", dir, err)
	}
	return int64(st.Bavail) * st.Bsize
}

// process is a server the benchmark runs as a child process.
type process struct {
	name string
	cmd  *exec.Cmd
	logs *tailBuffer
	done chan struct{}
	err  error // set when done is closed
}

// start runs bin with args, its stderr kept for error messages. The
// environment is ours without SPOOL_* variables, so a developer's settings
// cannot change what is measured, and with an empty PATH (see cleanEnv).
func start(tb testing.TB, name, bin string, stdout io.Writer, args ...string) *process {
	tb.Helper()
	p := &process{name: name, logs: &tailBuffer{max: 64 << 10}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = cleanEnv()
	p.cmd.Stdout, p.cmd.Stderr = stdout, p.logs
	if err := p.cmd.Start(); err != nil {
		tb.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	tb.Cleanup(p.stop)
	return p
}

// cleanEnv is the servers' environment: ours without SPOOL_* variables
// and with an empty PATH, so spool finds no ffprobe or ffmpeg and skips
// their steps. The benchmark's video files are random bytes behind an MP4
// header, which ffprobe rightly refuses (the file would be FAILED); with
// the tools the measurements would time them, which is not their point.
// Image processing needs no tool.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SPOOL_") && !strings.HasPrefix(kv, "PATH=") {
			env = append(env, kv)
		}
	}
	return append(env, "PATH=")
}

// stop asks the process to exit (SIGTERM), and kills it after 10 s.
func (p *process) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// fail ends the benchmark with msg and the tail of the process's log.
func (p *process) fail(tb testing.TB, format string, args ...any) {
	tb.Helper()
	tb.Fatalf("%s: %s\n--- %s log (tail) ---\n%s", p.name, fmt.Sprintf(format, args...), p.name, p.logs.String())
}

// peakRSS is the process's peak resident set size (VmHWM), in bytes.
func (p *process) peakRSS(tb testing.TB) int64 {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		p.fail(tb, "reading VmHWM: %v", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kib, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				p.fail(tb, "parsing %q: %v", line, err)
			}
			return kib << 10
		}
	}
	p.fail(tb, "no VmHWM in /proc/%d/status", p.cmd.Process.Pid)
	return 0
}

// clockTick is the unit of /proc/<pid>/stat's CPU times: USER_HZ, 100 on
// every Linux the Go toolchain supports.
const clockTick = 10 * time.Millisecond

// cpuTime is the CPU time (user and system) the process has used so far.
func (p *process) cpuTime(tb testing.TB) time.Duration {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		p.fail(tb, "reading CPU time: %v", err)
	}
	// The command name, in parentheses, may hold spaces; fields after it
	// are numbered from 3 (state): utime is 14, stime 15.
	_, rest, ok := bytes.Cut(b, []byte(") "))
	fields := strings.Fields(string(rest))
	if !ok || len(fields) < 13 {
		p.fail(tb, "unexpected /proc/<pid>/stat: %q", b)
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		p.fail(tb, "unexpected /proc/<pid>/stat: %q", b)
	}
	return time.Duration(utime+stime) * clockTick
}

// machineCPU is the machine's CPU time over all CPUs, from /proc/stat.
type machineCPU struct {
	busy  time.Duration // user, nice, system, irq and softirq
	steal time.Duration // taken by the hypervisor for other guests
}

// readMachineCPU reads the machine's CPU time so far.
func readMachineCPU(tb testing.TB) machineCPU {
	tb.Helper()
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		tb.Fatalf("opening /proc: %v", err)
	}
	st, err := fs.Stat()
	if err != nil {
		tb.Fatalf("reading /proc/stat: %v", err)
	}
	c := st.CPUTotal
	seconds := func(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
	return machineCPU{busy: seconds(c.User + c.Nice + c.System + c.IRQ + c.SoftIRQ), steal: seconds(c.Steal)}
}

// since is the CPU time spent from then to m.
func (m machineCPU) since(then machineCPU) machineCPU {
	return machineCPU{busy: m.busy - then.busy, steal: m.steal - then.steal}
}

// stealPercent is the share of the machine's CPUs the hypervisor took
// over elapsed.
func (m machineCPU) stealPercent(elapsed time.Duration) float64 {
	return 100 * m.steal.Seconds() / (elapsed.Seconds() * float64(runtime.NumCPU()))
}

// clientCPUTime is the CPU time (user and system) this process, the
// client, has used so far.
func clientCPUTime(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// spoolServer is a running `spool serve` and what a client needs to talk
// to it.
type spoolServer struct {
	*process
	url     string
	dataDir string
	token   string
	prof    *cpuProfile // where -dataplane-cpuprofile takes profiles from, or nil
}

// spoolFlags are serve's settings for the benchmark: 8 MiB chunks, every
// chunk URL listed for a 1 GiB file, and room for the files. Every client
// of a benchmark is user "bench": the load benchmarks open thousands of
// websockets for it, far past the per-user default of 20.
var spoolFlags = []string{
	"--max-websockets-per-user", "1000000",
	"--chunk-size", "8MiB",
	"--max-chunk-urls", "200",
	"--quota", "8GiB",
	"--max-video-size", "4GiB",
	"--log-level", "warn",
}

// startSpool makes a token for user "bench" in a fresh data dir, then
// serves from it on a free port, with spoolFlags and any extra flags, and
// waits until spool is healthy.
func startSpool(ctx context.Context, tb testing.TB, bin, dataDir string, extra ...string) *spoolServer {
	tb.Helper()
	tokenCmd := exec.CommandContext(ctx, bin, "token", "--user", "bench", "--data-dir", dataDir)
	tokenCmd.Env = cleanEnv()
	out, err := tokenCmd.Output()
	if err != nil {
		tb.Fatalf("spool token: %v", err)
	}
	addr := freeAddr(tb)
	args := append(append([]string{"serve", "--addr", addr, "--data-dir", dataDir, "--drain-grace", "0s"}, spoolFlags...), extra...)
	s := &spoolServer{
		process: start(tb, "spool", bin, io.Discard, args...),
		url:     "http://" + addr,
		dataDir: dataDir,
		token:   strings.TrimSpace(string(out)),
	}
	s.waitHealthy(ctx, tb)
	return s
}

// freeAddr returns a loopback address with a port that was free a moment
// ago; spool takes it right after.
func freeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("finding a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func (s *spoolServer) waitHealthy(ctx context.Context, tb testing.TB) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/healthz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-s.done:
			s.fail(tb, "exited while starting: %v", s.err)
		default:
		}
		if time.Now().After(deadline) {
			s.fail(tb, "not healthy after 30 s (last error: %v)", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// bareServer is a running bareserver.
type bareServer struct {
	*process
	url string
}

// startBare runs a bare server writing to dir/bare.bin, with any extra
// flags, and waits for its address.
func startBare(tb testing.TB, name, bin, dir string, flags ...string) *bareServer {
	tb.Helper()
	stdout := &firstLine{line: make(chan string, 1)}
	args := append([]string{"-addr", "127.0.0.1:0", "-file", filepath.Join(dir, "bare.bin")}, flags...)
	p := start(tb, name, bin, stdout, args...)
	select {
	case addr := <-stdout.line:
		return &bareServer{process: p, url: "http://" + addr}
	case <-p.done:
		p.fail(tb, "exited while starting: %v", p.err)
	case <-time.After(30 * time.Second):
		p.fail(tb, "printed no address in 30 s")
	}
	return nil
}

// firstLine sends the first line written to it on line and drops the rest.
type firstLine struct {
	buf  []byte
	sent bool
	line chan string
}

func (f *firstLine) Write(p []byte) (int, error) {
	if !f.sent {
		f.buf = append(f.buf, p...)
		if i := bytes.IndexByte(f.buf, '\n'); i >= 0 {
			f.line <- strings.TrimSpace(string(f.buf[:i]))
			f.sent, f.buf = true, nil
		}
	}
	return len(p), nil
}
