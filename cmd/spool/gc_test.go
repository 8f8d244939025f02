package main

import (
	"bufio"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	"github.com/spoolhq/spool/internal/eventually"
)

// TestServeGCHeadroom runs spool serve as a process and reads the GOGC
// its collector runs at from /metrics (go_gc_gogc_percent): paced by
// --gc-headroom by default, Go's own with --gc-headroom 0, and the
// operator's when GOGC is set, which wins over the flag.
func TestServeGCHeadroom(t *testing.T) {
	var base []string
	for _, kv := range userEnv() {
		if !strings.HasPrefix(kv, "GOGC=") && !strings.HasPrefix(kv, "GOMEMLIMIT=") {
			base = append(base, kv)
		}
	}
	base = append(base, runMainEnv+"=1")
	for _, c := range []struct {
		name string
		env  []string
		args []string
		log  string
		want func(int) bool
	}{
		{"default", nil, nil, "paced by headroom", func(p int) bool { return p > 100 }},
		{"headroom 0", nil, []string{"--gc-headroom", "0"}, "paced by Go's default", func(p int) bool { return p == 100 }},
		{"GOGC set", []string{"GOGC=50"}, []string{"--gc-headroom", "64MiB"}, "paced by GOGC from the environment", func(p int) bool { return p == 50 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := &walkthrough{env: append(append([]string(nil), base...), c.env...)}
			r := w.serve(t, c.args...)
			// Pacing starts once spool is ready, and logs how.
			eventually.Holds(t, "spool logs how its collector is paced", func() bool {
				return strings.Contains(r.log.String(), "garbage collection "+c.log)
			})
			// Pacing sets GOGC from what each collection found live, so a
			// collection during start-up that met a heap beyond the
			// headroom leaves GOGC at 100 until the next one (on a loaded
			// machine it did). Each scrape of /metrics allocates, so the
			// next collection comes while this asks.
			eventually.Holds(t, "go_gc_gogc_percent as "+c.name+" sets it", func() bool {
				return c.want(gogcOf(t, r.url))
			})
		})
	}
}

// gogcOf reads go_gc_gogc_percent from the server's /metrics.
func gogcOf(t *testing.T, url string) int {
	t.Helper()
	res, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	lines := bufio.NewScanner(res.Body)
	for lines.Scan() {
		if v, ok := strings.CutPrefix(lines.Text(), "go_gc_gogc_percent "); ok {
			p, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("go_gc_gogc_percent %q: %v", v, err)
			}
			return p
		}
	}
	t.Fatalf("no go_gc_gogc_percent in /metrics (%v)", lines.Err())
	return 0
}

// paceGC in this process: GOGC set in the environment or a headroom of 0
// leave the collector as it is, and stop puts back what pacing changed.
func TestPaceGC(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	gogc := func() int {
		p := debug.SetGCPercent(100)
		debug.SetGCPercent(p)
		return p
	}
	for _, c := range []struct {
		name     string
		headroom int64
		env      map[string]string
	}{
		{"GOGC set", 64 << 20, map[string]string{"GOGC": "100"}},
		{"headroom 0", 0, nil},
	} {
		stop := paceGC(c.headroom, func(k string) string { return c.env[k] }, log)
		runtime.GC()
		runtime.GC()
		if p := gogc(); p != 100 {
			t.Errorf("%s: GOGC = %d after collections, want 100, untouched", c.name, p)
		}
		stop()
	}
	stop := paceGC(64<<20, func(string) string { return "" }, log)
	if p := gogc(); p <= 100 {
		t.Errorf("paced by 64 MiB: GOGC = %d, want more than 100", p)
	}
	stop()
	if p := gogc(); p != 100 {
		t.Errorf("after stop: GOGC = %d, want 100 again", p)
	}
}
