//go:build faults

package main

import (
	"strings"
	"sync"
	"testing"
	"time"
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

	t.Run("SIGKILL of a replica during 20 uploads", func(t *testing.T) {
		killed := make(chan time.Time, 1)
		var once sync.Once
		files := faultFiles(20, 1)
		files[5].cancel, files[10].cancel = true, true
		c := newFaultClient(e, faultHooks{acked: func(n int64) {
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

	t.Run("Redis unreachable for 10 s mid-upload", func(t *testing.T) {
		var back <-chan struct{}
		var once sync.Once
		files := faultFiles(8, 2)
		c := newFaultClient(e, faultHooks{acked: func(n int64) {
			if n == 3 {
				once.Do(func() { back = cut(t, e.redis, 10*time.Second) })
			}
		}})
		runUploads(t, e, c, files)
		if back == nil {
			t.Fatal("Redis was never cut")
		}
		<-back
		settle(t, e, c, files)
	})

	t.Run("PostgreSQL cut mid-complete", func(t *testing.T) {
		// Every file's chunks are sent, then all completes go at once;
		// 15 ms after the first leaves, the database is cut for 2 s.
		files := faultFiles(6, 3)
		var mu sync.Mutex
		ready := 0
		all := make(chan struct{})
		var back <-chan struct{}
		var once sync.Once
		c := newFaultClient(e, faultHooks{beforeComplete: func(f *faultFile) {
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
		<-b
		if c.noted("complete") == 0 {
			t.Errorf("no complete met the cut (the fault missed its target); notes:%s", c.describeNotes())
		}
		settle(t, e, c, files)
	})

	t.Run("PostgreSQL cut mid-chunk", func(t *testing.T) {
		// Bodies are sent slowly; when the fourth PUT is half sent the
		// database is cut for 2 s, under every PUT then in flight.
		files := faultFiles(6, 4)
		files[1].cancel = true
		var mu sync.Mutex
		halves := 0
		var back <-chan struct{}
		c := newFaultClient(e, faultHooks{slowBodies: true, midBody: func(*faultFile, int) {
			mu.Lock()
			defer mu.Unlock()
			halves++
			if halves == 4 {
				back = cut(t, e.pg, 2*time.Second)
			}
		}})
		runUploads(t, e, c, files)
		mu.Lock()
		b := back
		mu.Unlock()
		if b == nil {
			t.Fatal("the database was never cut")
		}
		<-b
		if c.noted("chunk PUT") == 0 {
			t.Errorf("no chunk PUT met the cut (the fault missed its target); notes:%s", c.describeNotes())
		}
		settle(t, e, c, files)
	})

	t.Run("storage answering 5xx", func(t *testing.T) {
		files := faultFiles(6, 5)
		var once sync.Once
		before := e.storage.failed.Load()
		c := newFaultClient(e, faultHooks{acked: func(n int64) {
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

	t.Run("storage with 2 s latency", func(t *testing.T) {
		files := faultFiles(4, 6)
		before := e.storage.delayed.Load()
		e.storage.slow(2 * time.Second)
		c := newFaultClient(e, faultHooks{})
		runUploads(t, e, c, files)
		e.storage.slow(0)
		held := e.storage.delayed.Load() - before
		if held == 0 {
			t.Error("no storage request was held")
		}
		t.Logf("%d storage requests held 2 s each, %.1f per upload:%s", held, float64(held)/float64(len(files)), e.storage.heldKinds())
		settle(t, e, c, files)
	})

	t.Run("client connection cut mid-chunk", func(t *testing.T) {
		files := faultFiles(4, 7)
		c := newFaultClient(e, faultHooks{cutFirstPut: true})
		runUploads(t, e, c, files)
		settle(t, e, c, files)
	})
}

// runUploads uploads files at once through c and returns when each upload
// finished or gave up.
func runUploads(t *testing.T, e *faultEnv, c *faultClient, files []*faultFile) {
	t.Helper()
	start := time.Now()
	var wg sync.WaitGroup
	for _, f := range files {
		wg.Go(func() { c.upload(f) })
	}
	wg.Wait()
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

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
