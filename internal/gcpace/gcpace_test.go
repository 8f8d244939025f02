package gcpace

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
)

const mib = 1 << 20

func TestPercent(t *testing.T) {
	for _, c := range []struct {
		name     string
		s        sample
		headroom uint64
		want     int
	}{
		// live + (live + stacks + globals) × p/100 = live + headroom.
		{"small heap", sample{live: 6 * mib, stacks: 1 * mib, globals: 1 * mib}, 16 * mib, 200},
		// p = 800 would make the runtime's minimum heap 32 MiB, more than
		// live + headroom (18 MiB): 450 makes it 18.
		{"tiny heap", sample{live: 2 * mib}, 16 * mib, 450},
		// A heap as large as the headroom grows as at GOGC=100; a larger
		// one by the headroom, and never by less than half of itself.
		{"heap the size of the headroom", sample{live: 14 * mib, stacks: 1 * mib, globals: 1 * mib}, 16 * mib, 100},
		{"heap of 1.6 headrooms", sample{live: 24 * mib, stacks: 1 * mib, globals: 1 * mib}, 16 * mib, 61},
		{"large heap", sample{live: 800 * mib, stacks: 40 * mib}, 16 * mib, 50},
		{"no headroom", sample{live: 2 * mib}, 0, 50},
		// Before the first collection nothing is live yet.
		{"nothing read", sample{}, 16 * mib, 400},
	} {
		if got := percent(c.s, c.headroom); got != c.want {
			t.Errorf("%s: percent(%+v, %d MiB) = %d, want %d", c.name, c.s, c.headroom/mib, got, c.want)
		}
	}
}

// gogc reads the GOGC in effect from the runtime.
func gogc(t *testing.T) int {
	t.Helper()
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}

// collect runs collections until pace has run after one: its cleanup
// runs on another goroutine, after the collection that found the
// sentinel.
func collect(t *testing.T, want func(int) bool) int {
	t.Helper()
	for range 200 {
		runtime.GC()
		runtime.Gosched()
		if p := gogc(t); want(p) {
			return p
		}
	}
	p := gogc(t)
	t.Fatalf("GOGC stayed %d", p)
	return p
}

// TestStartPacesEveryCollection runs the pacing in this process: GOGC
// follows the live heap after each collection, and stop puts it back.
func TestStartPacesEveryCollection(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	stop := Start(64 * mib)
	defer stop()
	// The test binary's live heap is a few MiB: 64 MiB of headroom is
	// many times that.
	got := collect(t, func(p int) bool { return p > 400 })
	t.Logf("GOGC with a small heap: %d", got)

	// Keep more than twice the headroom live, in pieces the collector
	// must scan: the next collections let the heap grow by half of it.
	func() {
		held := make([][]*int, 0, 160)
		for range 160 {
			held = append(held, make([]*int, mib/8))
		}
		collect(t, func(p int) bool { return p == minPercent })
		runtime.KeepAlive(held)
	}()

	// And back up once the heap is small again.
	collect(t, func(p int) bool { return p > 400 })

	stop()
	if p := gogc(t); p != 100 {
		t.Errorf("GOGC after stop = %d, want 100, what it was", p)
	}
	// Stopped means stopped: a collection leaves GOGC alone.
	debug.SetGCPercent(150)
	runtime.GC()
	runtime.GC()
	if p := gogc(t); p != 150 {
		t.Errorf("GOGC set after stop = %d a collection later, want 150", p)
	}
}
