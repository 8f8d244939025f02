//go:build faults

package main

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spoolhq/spool/internal/required"
)

// TestFaults is issue 11's fault suite (`make test-faults`): two spool
// replicas on PostgreSQL, Redis and the GCS emulator, each reached
// through something the test breaks. Under each fault, uploads go on
// with a client that retries as a real one does (faultClient); after
// it, whatever the fault did:
//
//   - every upload finishes (a retry succeeds), and the file downloaded
//     has the SHA-256 of the file sent; an upload the client cancels
//     midway ends CANCELLED;
//   - no chunk spool acknowledged is later missing;
//   - each upload's subscriber (graphql-transport-ws, reconnecting as
//     graphql-ws clients do) ends at the state the record holds:
//     COMPLETED with its media READY, or CANCELLED;
//   - after a sweep and an orphan pass, every object in the bucket
//     belongs to a record and every READY file's object is whole
//     (checkStore, as in the crash test).
//
// The subtests share the replicas and engines and run one after another;
// each leaves the replicas up and the engines reachable.
func TestFaults(t *testing.T) {
	e := newFaultEnv(t)

	e.run(t, "SIGKILL of a replica during 20 uploads", func(t *testing.T) {
		killed := make(chan time.Time, 1)
		var once sync.Once
		files := faultFiles(20, 1)
		files[5].cancel, files[10].cancel = true, true
		c := newFaultClient(t, e, faultHooks{acked: func(n int64) {
			// About a third of the way: many PUTs and subscribers are
			// on the replica when it dies.
			if n == 12 {
				once.Do(func() {
					e.kill(0)
					killed <- time.Now()
				})
			}
		}})
		restarted := make(chan struct{})
		go func() {
			defer close(restarted)
			select {
			case at := <-killed:
				e.restart(t, 0, at)
			case <-time.After(giveUpAfter):
			}
		}()
		runUploads(t, e, c, files)
		<-restarted
		if len(e.bases()) != 2 {
			t.Fatalf("replica 0 was not killed and restarted (%d up)", len(e.bases()))
		}
		settle(t, e, c, files)
	})

	e.run(t, "Redis unreachable for 10 s mid-upload", func(t *testing.T) {
		var back <-chan struct{}
		var once sync.Once
		files := faultFiles(8, 2)
		c := newFaultClient(t, e, faultHooks{acked: func(n int64) {
			if n == 3 {
				once.Do(func() { back = cut(t, e.redis, 10*time.Second) })
			}
		}})
		runUploads(t, e, c, files)
		if back == nil {
			t.Fatal("Redis was never cut")
		}
		waitBack(t, e, back, "Redis")
		settle(t, e, c, files)
	})

	e.run(t, "PostgreSQL cut mid-complete", func(t *testing.T) {
		// Every file's chunks are sent, then all completes go at once;
		// 15 ms after the first leaves, the database is cut for 2 s.
		files := faultFiles(6, 3)
		var mu sync.Mutex
		ready := 0
		all := make(chan struct{})
		var back <-chan struct{}
		var once sync.Once
		c := newFaultClient(t, e, faultHooks{beforeComplete: func(f *faultFile) {
			mu.Lock()
			ready++
			if ready == len(files) {
				close(all)
			}
			mu.Unlock()
			select {
			case <-all:
			case <-time.After(giveUpAfter):
			}
			once.Do(func() {
				time.AfterFunc(15*time.Millisecond, func() {
					mu.Lock()
					defer mu.Unlock()
					back = cut(t, e.pg, 2*time.Second)
				})
			})
		}})
		runUploads(t, e, c, files)
		mu.Lock()
		b := back
		mu.Unlock()
		if b == nil {
			t.Fatal("the database was never cut")
		}
		waitBack(t, e, b, "PostgreSQL")
		if c.noted("complete") == 0 {
			t.Errorf("no complete met the cut (the fault missed its target); notes:%s", c.describeNotes())
		}
		settle(t, e, c, files)
	})

	e.run(t, "PostgreSQL cut mid-chunk", func(t *testing.T) {
		// Bodies are sent slowly; when the fourth PUT is half sent the
		// database is cut for 2 s, under every PUT then in flight.
		files := faultFiles(6, 4)
		files[1].cancel = true
		databaseMidChunk(t, e, files, "cut", func() <-chan struct{} { return cut(t, e.pg, 2*time.Second) })
	})

	e.run(t, "PostgreSQL partitioned mid-chunk", func(t *testing.T) {
		// As the cut above, but nothing answers: every packet between the
		// replicas and PostgreSQL is dropped for 5 s. Statements then in
		// flight fail once tcp_user_timeout (faultTCPUserTimeout) passes,
		// receipts among them that PostgreSQL may have committed, and new
		// connections fail; the suite's promises must hold through those
		// ambiguous answers. (A partition this short heals within TCP's
		// retransmissions even unbounded, and this fault passes so too;
		// that statements end at the bound is TestPostgresPartition's.)
		if e.pgPath == nil {
			required.Missing(t, "%v", e.pgPathErr)
		}
		files := faultFiles(6, 7)
		files[2].cancel = true
		databaseMidChunk(t, e, files, "partition", func() <-chan struct{} { return partition(t, e.pgPath, 5*time.Second) })
	})

	e.run(t, "storage answering 5xx", func(t *testing.T) {
		files := faultFiles(6, 5)
		var once sync.Once
		before := e.storage.failed.Load()
		c := newFaultClient(t, e, faultHooks{acked: func(n int64) {
			if n == 3 {
				once.Do(func() { e.storage.fail(3 * time.Second) })
			}
		}})
		runUploads(t, e, c, files)
		if e.storage.failed.Load() == before {
			t.Error("no storage request met an injected 5xx")
		}
		settle(t, e, c, files)
	})

	e.run(t, "storage with 2 s latency", func(t *testing.T) {
		files := faultFiles(4, 6)
		before := e.storage.delayed.Load()
		e.storage.slow(2 * time.Second)
		c := newFaultClient(t, e, faultHooks{})
		runUploads(t, e, c, files)
		e.storage.slow(0)
		held := e.storage.delayed.Load() - before
		if held == 0 {
			t.Error("no storage request was held")
		}
		t.Logf("%d storage requests held 2 s each, %.1f per upload:%s", held, float64(held)/float64(len(files)), e.storage.heldKinds())
		settle(t, e, c, files)
	})

	e.run(t, "client connection cut mid-chunk", func(t *testing.T) {
		files := faultFiles(4, 7)
		c := newFaultClient(t, e, faultHooks{cutFirstPut: true})
		runUploads(t, e, c, files)
		settle(t, e, c, files)
	})
}

// run runs one fault subtest, unless an earlier one ran out of its
// budget: the replicas and engines it shares with them may be stuck, so
// it fails at once, which ends the suite in minutes, not at -timeout.
func (e *faultEnv) run(t *testing.T, name string, test func(t *testing.T)) {
	t.Run(name, func(t *testing.T) {
		if e.stuck.Load() {
			t.Fatal("not run: an earlier subtest ran out of its budget, and the subtests share the replicas")
		}
		test(t)
	})
}

// databaseMidChunk uploads files with bodies sent slowly, breaks the
// database with fault (what, for messages) when the fourth PUT is half
// sent, under every PUT then in flight, and checks the suite's promises
// once fault's channel says the database is back.
func databaseMidChunk(t *testing.T, e *faultEnv, files []*faultFile, what string, fault func() <-chan struct{}) {
	t.Helper()
	var mu sync.Mutex
	halves := 0
	var back <-chan struct{}
	c := newFaultClient(t, e, faultHooks{slowBodies: true, midBody: func(*faultFile, int) {
		mu.Lock()
		defer mu.Unlock()
		halves++
		if halves == 4 {
			back = fault()
		}
	}})
	runUploads(t, e, c, files)
	mu.Lock()
	b := back
	mu.Unlock()
	if b == nil {
		t.Fatalf("the database never met its %s", what)
	}
	waitBack(t, e, b, "PostgreSQL")
	if c.noted("chunk PUT") == 0 {
		t.Errorf("no chunk PUT met the %s (the fault missed its target); notes:%s", what, c.describeNotes())
	}
	settle(t, e, c, files)
}

// runUploads uploads files at once through c and returns when each upload
// finished or gave up. When c's budget runs out first, it fails the
// subtest, and the suite (whose subtests share the replicas), with what
// each upload was doing.
func runUploads(t *testing.T, e *faultEnv, c *faultClient, files []*faultFile) {
	t.Helper()
	start := time.Now()
	var wg sync.WaitGroup
	for _, f := range files {
		wg.Go(func() { c.upload(f) })
	}
	ended := make(chan struct{})
	go func() {
		wg.Wait()
		close(ended)
	}()
	select {
	case <-ended:
	case <-c.ctx.Done():
		select {
		case <-ended:
		case <-time.After(time.Minute):
			// Something the budget does not reach is stuck: a hook, a
			// proxy, a replica that will not die. A panic on a goroutine
			// of its own ends the binary at once, without the cleanups
			// (which a stuck proxy would hang too), and its message is
			// the last lines CI keeps: what each upload was doing, after
			// the stacks of the suite's own goroutines.
			msg := fmt.Sprintf("%s\n\n%s: uploads still running a minute after the subtest's budget (%v) ran out:%s",
				testGoroutines(), t.Name(), subtestBudget, describeSteps(files))
			go func() { panic(msg) }()
			select {}
		}
	}
	if c.ctx.Err() != nil {
		e.stuck.Store(true)
		t.Fatalf("the uploads ran past the subtest's budget (%v):%s\nretryable answers met:%s", subtestBudget, describeSteps(files), c.describeNotes())
	}
	t.Logf("%d uploads ended in %v; retryable answers met:%s", len(files), time.Since(start).Round(time.Millisecond), c.describeNotes())
}

// settle checks the suite's promises once the fault is over: every
// upload finished with its bytes whole and nothing acknowledged lost,
// every subscriber ended at the record's state, and after a sweep and
// an orphan pass nothing in the bucket is orphaned.
func settle(t *testing.T, e *faultEnv, c *faultClient, files []*faultFile) {
	t.Helper()
	acked := map[string]string{}
	for _, f := range files {
		if f.err != nil {
			t.Errorf("%s (upload %q): gave up: %v", f.name, f.id, f.err)
			continue
		}
		if !f.cancel {
			acked[f.id] = f.mediaID
		}
		if len(f.lost) > 0 {
			t.Errorf("%s: chunks %v were acknowledged, then missing", f.name, f.lost)
		}
		last, err := f.sub.wait()
		f.sub.mu.Lock()
		events, reconnects, early := f.sub.events, f.sub.reconnects, f.sub.early
		f.sub.mu.Unlock()
		if err != nil {
			t.Errorf("%s: subscriber: %v (last event %v, %d events)", f.name, err, last, events)
		}
		rec, err := c.record(f.id)
		if err != nil {
			t.Errorf("%s: reading its record: %v", f.name, err)
			continue
		}
		recMedia := "-"
		if rec.Media != nil {
			recMedia = rec.Media.Status
		}
		lastMedia := "-"
		if last.MediaStatus != nil {
			lastMedia = *last.MediaStatus
		}
		want, wantMedia := "COMPLETED", "READY"
		if f.cancel {
			want, wantMedia = "CANCELLED", "-"
		}
		if rec.Status != want || recMedia != wantMedia {
			t.Errorf("%s: the record says %s with media %s, want %s and %s", f.name, rec.Status, recMedia, want, wantMedia)
		}
		if last.Status != rec.Status || lastMedia != recMedia {
			t.Errorf("%s: the subscriber ended at %v (%d events, %d reconnects, %d early completes); the record says %s with media %s",
				f.name, last, events, reconnects, early, rec.Status, recMedia)
		}
		if early > 0 {
			t.Logf("%s: the subscription was completed %d times before a final event (the subscriber resubscribed)", f.name, early)
		}
		if f.cancel {
			continue
		}
		got, err := c.download(f)
		if err != nil {
			t.Errorf("%s: download: %v", f.name, err)
			continue
		}
		if sum := sha256hex(got); sum != f.sum {
			t.Errorf("%s: downloaded %d bytes with SHA-256 %s, sent %d with %s", f.name, len(got), sum, len(f.data), f.sum)
		}
	}
	// Bytes a fault left behind are removed once faultOrphanAge old:
	// wait until that has passed, then for a sweep and an orphan pass
	// that started after it.
	waitSettled(t, e.db)
	time.Sleep(faultOrphanAge + 500*time.Millisecond)
	waitStartupPasses(t, e.db, maxJobID(t, e.db))
	checkStore(t, e.db, e.engines, acked)
	if t.Failed() {
		for i, b := range e.bases() {
			t.Logf("replica %d at %s", i, b)
		}
		e.mu.Lock()
		for i, r := range e.replicas {
			if r != nil {
				t.Logf("replica %d's log (last 40 lines):\n%s", i, lastLines(r.log.String(), 40))
			}
		}
		e.mu.Unlock()
	}
}

// describeSteps says what each upload that did not finish was doing.
func describeSteps(files []*faultFile) string {
	var b strings.Builder
	for _, f := range files {
		if step := f.doing(); step != "done" {
			fmt.Fprintf(&b, "\n  %s: %s", f.name, step)
		}
	}
	return b.String()
}

// testGoroutines returns the stacks of the goroutines running the
// suite's own code (this package's functions), without toxiproxy's, the
// HTTP servers' and the database drivers' idle ones, nor the testing
// package's main goroutine.
func testGoroutines() string {
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var keep []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "spool/cmd/spool.") && !strings.Contains(g, "testing.(*M).Run") &&
			!strings.Contains(g, "spool/cmd/spool.testGoroutines") {
			keep = append(keep, g)
		}
	}
	return strings.Join(keep, "\n\n")
}

// waitBack waits for the proxy of a cut engine to listen again.
func waitBack(t *testing.T, e *faultEnv, back <-chan struct{}, engine string) {
	t.Helper()
	select {
	case <-back:
	case <-time.After(time.Minute):
		e.stuck.Store(true)
		t.Fatalf("the %s proxy was not back a minute after the uploads ended", engine)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
