//go:build linux

package bench

import (
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// tusdPeerDir is the tusd peer's module, relative to spool's module root.
// It is a module of its own (spool's go.mod does not depend on tusd), so
// it is built from its own directory rather than as a package path.
const tusdPeerDir = "internal/bench/tusdpeer"

// buildTusdPeer builds the tusd peer into dir, evicts it from the page
// cache as buildBinary does spool's, and returns its path. The first build
// downloads tusd v2 through the module proxy into the module cache.
func buildTusdPeer(tb testing.TB, dir string) string {
	tb.Helper()
	bin := filepath.Join(dir, "tusdpeer")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = filepath.Join(moduleRoot(tb), tusdPeerDir)
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build (in %s): %v\n%s", tusdPeerDir, err, out)
	}
	evictFromPageCache(tb, bin)
	return bin
}

// tusdServer is a running tusd peer; url is its uploads' base, ending in
// "/files/".
type tusdServer struct {
	*process
	url string
	dir string // where it stores uploads
}

// startTusd runs the tusd peer storing uploads under dir, and waits for
// its address.
func startTusd(tb testing.TB, bin, dir string) *tusdServer {
	tb.Helper()
	stdout := &firstLine{line: make(chan string, 1)}
	p := start(tb, "tusd", bin, stdout, "-addr", "127.0.0.1:0", "-dir", dir)
	select {
	case addr := <-stdout.line:
		return &tusdServer{process: p, url: "http://" + addr + "/files/", dir: dir}
	case <-p.done:
		p.fail(tb, "exited while starting: %v", p.err)
	case <-time.After(30 * time.Second):
		p.fail(tb, "printed no address in 30 s")
	}
	return nil
}
