// Package gcpace paces Go's garbage collector by headroom: it lets the
// heap grow by a fixed amount beyond what is live before the next
// collection, or by half of what is live where that is more; GOGC=100
// lets it grow by as much as is live.
//
// spool's live heap is small (4–8 MiB serving requests), so at GOGC=100
// the collector ran 40–60 times a second under a stream of small requests
// and took a tenth of the CPU of each confirmChunk; every cycle also
// scans the goroutine stacks and globals, whatever the heap. With 16 MiB
// of headroom the same requests cost 6–18% less CPU (docs/BENCHMARKS.md,
// "The collector paced by headroom"), and costs at most a fixed amount of
// memory, never a multiple of the heap. A large live heap (10,000 idle
// subscriptions, 120 MiB) allocates little and grows by half of itself
// (GOGC=50): it keeps half the garbage GOGC=100 keeps, and 10,000
// subscriptions took 15.4–16.0 KiB of RSS each instead of 19.3–20.7
// (docs/DESIGN.md §Running in production).
package gcpace

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// MaxHeadroom is the largest headroom Start takes: beyond it the
// collector would rarely run at all.
const MaxHeadroom = 4 << 30

// minimumHeap is the Go runtime's smallest heap goal at GOGC=100, which
// it scales with GOGC (runtime.defaultHeapMinimum).
const minimumHeap = 4 << 20

// minPercent is the least GOGC Start sets: a heap larger than twice the
// headroom may grow by half of itself before the next collection. That
// is twice the collections Go's default (100) makes for each byte
// allocated, for a heap that large; spool's large heaps are idle
// websockets, which allocate little.
const minPercent = 50

// sample is what the collector's pacer scales GOGC by after a cycle: the
// heap it marked live, the stacks and globals it scanned.
type sample struct {
	live, stacks, globals uint64
}

// percent is the GOGC that lets the heap grow by about headroom before
// the next collection, and never by less than half of what the
// collection scanned (minPercent). The runtime's heap goal is live +
// (live + stacks + globals) × GOGC/100, and at least 4 MiB × GOGC/100;
// above minPercent, the result keeps both within live + headroom.
func percent(s sample, headroom uint64) int {
	scanned := max(s.live+s.stacks+s.globals, 1)
	p := headroom * 100 / scanned
	p = min(p, (s.live+headroom)*100/minimumHeap)
	return int(max(p, minPercent))
}

// Start paces the collector by headroom bytes (at most MaxHeadroom) from
// now on: after every collection it sets GOGC to percent of what that
// collection found. It returns stop, which ends the pacing and puts GOGC
// back to what it was. GOGC is the process's, so only one pacing may run
// at a time, and the caller decides whether an operator's GOGC wins.
func Start(headroom int64) (stop func()) {
	headroom = min(max(headroom, 0), MaxHeadroom)
	p := &pacer{headroom: uint64(headroom), samples: []metrics.Sample{
		// In sample's order.
		{Name: "/gc/heap/live:bytes"}, {Name: "/gc/scan/stack:bytes"}, {Name: "/gc/scan/globals:bytes"},
	}}
	p.before = debug.SetGCPercent(p.next())
	p.arm()
	return p.stop
}

// pacer resets GOGC after each collection; arm leaves a sentinel for the
// next collection to find unreachable, and its cleanup runs pace.
type pacer struct {
	headroom uint64
	before   int

	mu      sync.Mutex
	stopped bool
	samples []metrics.Sample
}

// sentinel is allocated only to become garbage: its cleanup marks a
// finished collection. Sixteen bytes or more, so it is never packed with
// other small objects by the tiny allocator (whose blocks are freed, and
// their cleanups run, only when all their objects are).
type sentinel [16]byte

func (p *pacer) arm() {
	runtime.AddCleanup(new(sentinel), (*pacer).pace, p)
}

// pace runs on the runtime's cleanup goroutine after a collection: once
// the sentinel's span is swept, which is done before the next collection
// starts, so GOGC follows the heap at most about a cycle late.
func (p *pacer) pace() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return
	}
	debug.SetGCPercent(p.next())
	p.arm()
}

// next reads what the last collection found and returns the GOGC for it.
// The caller holds mu, or has not shared p yet.
func (p *pacer) next() int {
	metrics.Read(p.samples)
	var s sample
	for i, v := range []*uint64{&s.live, &s.stacks, &s.globals} {
		if p.samples[i].Value.Kind() == metrics.KindUint64 {
			*v = p.samples[i].Value.Uint64()
		}
	}
	return percent(s, p.headroom)
}

func (p *pacer) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return
	}
	p.stopped = true
	debug.SetGCPercent(p.before)
}
