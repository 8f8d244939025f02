//go:build linux

package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// cpuProfile is where to take a CPU profile from (a spool's --debug-addr),
// how many seconds it covers and where to write it.
type cpuProfile struct {
	addr, path string
	secs       int
}

// debugProfile returns args with --debug-addr on a free port, and a
// profile of secs seconds (at least one) to take from the spool started
// with them, written to path (as names the file for one window). The
// directory path names is made if missing.
func debugProfile(tb testing.TB, path string, secs int, args []string) (*cpuProfile, []string) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		tb.Fatalf("CPU profiles: %v", err)
	}
	p := &cpuProfile{addr: freeAddr(tb), path: path, secs: max(1, secs)}
	return p, append(slices.Clone(args), "--debug-addr", p.addr)
}

// as is p for one window, what: written to path-what.pprof.
func (p *cpuProfile) as(what string) *cpuProfile {
	if p == nil {
		return nil
	}
	return &cpuProfile{addr: p.addr, path: p.path + "-" + what + ".pprof", secs: p.secs}
}

// start asks for a CPU profile of p's seconds from now and returns a
// function that waits for it and writes it out. A nil p does nothing.
func (p *cpuProfile) start(ctx context.Context) (wait func() error) {
	if p == nil {
		return func() error { return nil }
	}
	done := make(chan error, 1)
	go func() {
		done <- func() error {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", p.addr, p.secs), nil)
			if err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				return err
			}
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s: %s", resp.Status, body)
			}
			return os.WriteFile(p.path, body, 0o644)
		}()
	}()
	return func() error { return <-done }
}
