package progress

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/spoolhq/spool/internal/progress/brokertest"
	"github.com/spoolhq/spool/internal/upload"
)

// deadline bounds every wait so a broken hub fails the test instead of
// hanging it; no test measures time.
const deadline = 10 * time.Second

func event(uploadID, ownerID string, version int64) upload.Progress {
	return upload.Progress{UploadID: uploadID, OwnerID: ownerID, Version: version}
}

func subscribe(tb testing.TB, h *Hub, topic upload.Topic) *feed {
	tb.Helper()
	f, err := h.Subscribe(tb.Context(), topic)
	if err != nil {
		tb.Fatalf("Subscribe(%v): %v", topic, err)
	}
	tb.Cleanup(f.Close)
	return f.(*feed)
}

func publish(tb testing.TB, h *Hub, ev upload.Progress) {
	tb.Helper()
	if err := h.Publish(tb.Context(), ev); err != nil {
		tb.Fatalf("Publish(%+v): %v", ev, err)
	}
}

func waitReady(tb testing.TB, f upload.Feed) {
	tb.Helper()
	select {
	case <-f.Ready():
	case <-time.After(deadline):
		tb.Fatalf("feed not signalled within %v", deadline)
	}
}

func assertNotReady(tb testing.TB, f upload.Feed) {
	tb.Helper()
	select {
	case <-f.Ready():
		tb.Errorf("feed signalled, want no signal")
	default:
	}
}

// eventually polls cond until it holds; the deadline only keeps a broken
// hub from hanging the test.
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	stop := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(stop) {
			tb.Fatalf("%s: not true within %v", what, deadline)
		}
		time.Sleep(time.Millisecond)
	}
}

type idVersion struct {
	ID      string
	Version int64
}

func summary(events []upload.Progress) []idVersion {
	out := make([]idVersion, 0, len(events))
	for _, ev := range events {
		out = append(out, idVersion{ev.UploadID, ev.Version})
	}
	return out
}

func assertDrain(tb testing.TB, f upload.Feed, want []idVersion, wantResync bool) {
	tb.Helper()
	events, resync := f.Drain()
	got := summary(events)
	if fmt.Sprint(got) != fmt.Sprint(want) || resync != wantResync {
		tb.Errorf("Drain() = %v, resync %v; want %v, resync %v", got, resync, want, wantResync)
	}
}

func (f *feed) pendingLen() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.pending)
}

func TestPublishDeliversToUploadTopic(t *testing.T) {
	h := NewHub()
	f := subscribe(t, h, upload.UploadTopic("u1"))

	want := event("u1", "alice", 1)
	want.UploadedBytes = 42
	publish(t, h, want)

	waitReady(t, f)
	events, resync := f.Drain()
	if len(events) != 1 || events[0].UploadID != want.UploadID ||
		events[0].UploadedBytes != want.UploadedBytes || resync {
		t.Fatalf("Drain() = %+v, resync %v; want [%+v], resync false", events, resync, want)
	}
	assertDrain(t, f, nil, false)
}

func TestPublishDeliversToUserTopicInArrivalOrder(t *testing.T) {
	h := NewHub()
	f := subscribe(t, h, upload.UserTopic("alice"))

	publish(t, h, event("u2", "alice", 1))
	publish(t, h, event("u1", "alice", 1))
	publish(t, h, event("u2", "alice", 2))

	waitReady(t, f)
	assertDrain(t, f, []idVersion{{"u2", 2}, {"u1", 1}}, false)
}

func TestOtherTopicsGetNothing(t *testing.T) {
	h := NewHub()
	target := subscribe(t, h, upload.UploadTopic("u1"))
	others := map[string]*feed{
		"other upload": subscribe(t, h, upload.UploadTopic("u2")),
		"other user":   subscribe(t, h, upload.UserTopic("bob")),
		// Same id, other kind: a user's id must not match an upload topic.
		"upload topic named like the owner": subscribe(t, h, upload.UploadTopic("alice")),
		"user topic named like the upload":  subscribe(t, h, upload.UserTopic("u1")),
	}

	publish(t, h, event("u1", "alice", 1))

	// The control proves the event was delivered at all.
	waitReady(t, target)
	assertDrain(t, target, []idVersion{{"u1", 1}}, false)
	for name, f := range others {
		t.Run(name, func(t *testing.T) {
			assertNotReady(t, f)
			assertDrain(t, f, nil, false)
		})
	}
}

// Deliver reaches the feeds of the topic it is given and no others, not
// even those of the event's other topic.
func TestDeliverReachesOnlyItsTopic(t *testing.T) {
	h := NewHub()
	target := subscribe(t, h, upload.UserTopic("alice"))
	sameUpload := subscribe(t, h, upload.UploadTopic("u1"))

	h.Deliver(upload.UserTopic("alice"), event("u1", "alice", 1))

	waitReady(t, target)
	assertDrain(t, target, []idVersion{{"u1", 1}}, false)
	assertNotReady(t, sameUpload)
	assertDrain(t, sameUpload, nil, false)
}

func TestPendingCollapsesToLatestPerUpload(t *testing.T) {
	h := NewHub()
	f := subscribe(t, h, upload.UserTopic("alice"))
	uploads := []string{"u1", "u2", "u3"}

	const n = 10_000
	latest := make([]idVersion, len(uploads))
	for i := range n {
		id := uploads[i%len(uploads)]
		publish(t, h, event(id, "alice", int64(i)))
		latest[i%len(uploads)] = idVersion{id, int64(i)}
		if got, limit := f.pendingLen(), min(i+1, len(uploads)); got > limit {
			t.Fatalf("after %d events: %d pending, want at most %d", i+1, got, limit)
		}
	}

	assertDrain(t, f, latest, false)
}

func TestOlderVersionNeverReplacesNewer(t *testing.T) {
	h := NewHub()
	f := subscribe(t, h, upload.UploadTopic("u1"))

	newer := event("u1", "alice", 5)
	newer.UploadedBytes = 500
	older := event("u1", "alice", 3)
	older.UploadedBytes = 300
	publish(t, h, newer)
	publish(t, h, older)

	events, _ := f.Drain()
	if len(events) != 1 || events[0].Version != 5 || events[0].UploadedBytes != 500 {
		t.Fatalf("Drain() = %+v, want only version 5 with 500 bytes", events)
	}
}

func TestSameVersionReplacesPending(t *testing.T) {
	// Equal versions replace: a throttled in-flight byte count may be
	// published again without a committed change.
	h := NewHub()
	f := subscribe(t, h, upload.UploadTopic("u1"))

	first := event("u1", "alice", 5)
	first.UploadedBytes = 100
	second := event("u1", "alice", 5)
	second.UploadedBytes = 200
	publish(t, h, first)
	publish(t, h, second)

	events, _ := f.Drain()
	if len(events) != 1 || events[0].UploadedBytes != 200 {
		t.Fatalf("Drain() = %+v, want the second version-5 event (200 bytes)", events)
	}
}

func TestPublishNeverBlocksOnStuckSubscriber(t *testing.T) {
	h := NewHub()
	// Nobody ever drains these two, nor reads Ready. They are closed only
	// on success: if publishing is stuck, Close would wait for the hub's
	// lock held by the stuck publisher and hang the test instead of failing.
	stuck := func(topic upload.Topic) upload.Feed {
		f, err := h.Subscribe(context.Background(), topic)
		if err != nil {
			t.Fatalf("Subscribe(%v): %v", topic, err)
		}
		return f
	}
	byUpload := stuck(upload.UploadTopic("u0"))
	byUser := stuck(upload.UserTopic("alice"))

	const n, uploads = 100_000, 100
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			// Not publish(): t.Fatalf must not run outside the test goroutine.
			if err := h.Publish(context.Background(), event(fmt.Sprintf("u%d", i%uploads), "alice", int64(i))); err != nil {
				t.Errorf("Publish: %v", err)
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(deadline):
		t.Fatalf("publishing %d events to stuck feeds did not finish within %v", n, deadline)
	}

	assertDrain(t, byUpload, []idVersion{{"u0", n - uploads}}, false)
	events, _ := byUser.Drain()
	if len(events) != uploads {
		t.Fatalf("user feed drained %d events, want %d (one per upload)", len(events), uploads)
	}
	for i, ev := range events {
		if want := (idVersion{fmt.Sprintf("u%d", i), int64(n - uploads + i)}); (idVersion{ev.UploadID, ev.Version}) != want {
			t.Errorf("user feed event %d = %v, want %v", i, idVersion{ev.UploadID, ev.Version}, want)
		}
	}
	byUpload.Close()
	byUser.Close()
}

func TestCloseUnregistersAndIsIdempotent(t *testing.T) {
	h := NewHub()
	closed := subscribe(t, h, upload.UploadTopic("u1"))
	kept := subscribe(t, h, upload.UploadTopic("u1"))
	if got := h.Subscribers(); got != 2 {
		t.Fatalf("Subscribers() = %d, want 2", got)
	}

	publish(t, h, event("u1", "alice", 1))
	closed.Close()
	closed.Close()
	if got := h.Subscribers(); got != 1 {
		t.Fatalf("after closing one feed twice: Subscribers() = %d, want 1", got)
	}
	waitReady(t, closed) // consume the signal of the first event, sent before Close
	publish(t, h, event("u1", "alice", 2))

	assertNotReady(t, closed)
	assertDrain(t, closed, nil, false) // what was pending at Close is gone
	assertDrain(t, kept, []idVersion{{"u1", 2}}, false)

	kept.Close()
	if got := h.Subscribers(); got != 0 {
		t.Fatalf("after closing both: Subscribers() = %d, want 0", got)
	}
	if got := len(h.topics); got != 0 {
		t.Errorf("after closing both: %d topics kept, want 0", got)
	}
}

func TestContextDoneUnregisters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := NewHub()
		ctx, cancel := context.WithCancel(context.Background())
		f, err := h.Subscribe(ctx, upload.UploadTopic("u1"))
		if err != nil {
			t.Fatalf("Subscribe: %v", err)
		}
		if got := h.Subscribers(); got != 1 {
			t.Fatalf("Subscribers() = %d, want 1", got)
		}

		cancel()
		synctest.Wait() // lets the ctx watcher finish

		if got := h.Subscribers(); got != 0 {
			t.Fatalf("after cancel: Subscribers() = %d, want 0", got)
		}
		publish(t, h, event("u1", "alice", 1))
		assertDrain(t, f, nil, false)
		f.Close() // still safe after the watcher closed it
	})
}

// openContext is a context that is never done and cannot be cancelled, so
// nothing but Close can release what Subscribe set up to watch it.
type openContext struct {
	context.Context
	done chan struct{}
}

func (c openContext) Done() <-chan struct{} { return c.done }

func TestCloseBeforeContextDoneLeavesNothingRunning(t *testing.T) {
	// synctest fails the test if a goroutine started in the bubble is still
	// blocked when it ends, so a ctx watcher that Close left behind fails it.
	synctest.Test(t, func(t *testing.T) {
		h := NewHub()
		ctx := openContext{context.Background(), make(chan struct{})}
		f, err := h.Subscribe(ctx, upload.UploadTopic("u1"))
		if err != nil {
			t.Fatalf("Subscribe: %v", err)
		}
		f.Close()
		if got := h.Subscribers(); got != 0 {
			t.Fatalf("Subscribers() = %d, want 0", got)
		}
	})
}

func TestSubscribeWithDoneContextFails(t *testing.T) {
	h := NewHub()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()

	f, err := h.Subscribe(ctx, upload.UploadTopic("u1"))
	if err == nil {
		f.Close()
		t.Fatalf("Subscribe with a done context: err = nil, want context.Canceled")
	}
	if got := h.Subscribers(); got != 0 {
		t.Errorf("Subscribers() = %d, want 0", got)
	}
}

func TestResyncReportedOnce(t *testing.T) {
	h := NewHub()
	byUpload := subscribe(t, h, upload.UploadTopic("u1"))
	byUser := subscribe(t, h, upload.UserTopic("alice"))
	closed := subscribe(t, h, upload.UploadTopic("u1"))
	closed.Close()

	publish(t, h, event("u1", "alice", 1))
	h.Resync()

	waitReady(t, byUpload)
	// Events pending at the resync are still handed over with the flag.
	assertDrain(t, byUpload, []idVersion{{"u1", 1}}, true)
	assertDrain(t, byUpload, nil, false)

	waitReady(t, byUser)
	assertDrain(t, byUser, []idVersion{{"u1", 1}}, true)
	assertDrain(t, byUser, nil, false)

	assertNotReady(t, closed)
	assertDrain(t, closed, nil, false)

	// Resync alone, with nothing pending, wakes the reader too.
	h.Resync()
	waitReady(t, byUpload)
	assertDrain(t, byUpload, nil, true)
}

func TestZeroHubIsUsable(t *testing.T) {
	var h Hub
	f := subscribe(t, &h, upload.UploadTopic("u1"))
	publish(t, &h, event("u1", "alice", 1))
	assertDrain(t, f, []idVersion{{"u1", 1}}, false)
}

// TestConcurrentUse runs publishers, subscribers that come and go, double
// closers and resyncs at once; run it with -race. Each upload has one
// publisher with rising versions, so every feed must see each upload's
// versions rise, and a feed that stays to the end must end on the last one.
func TestConcurrentUse(t *testing.T) {
	h := NewHub()
	const (
		publishers            = 4
		uploadsPerPub         = 8
		eventsPerUpload       = 500
		churners              = 8
		lastVersion     int64 = eventsPerUpload
	)

	watcher := subscribe(t, h, upload.UserTopic("alice"))
	watched := make(map[string]int64)
	checkRising := func(t *testing.T, seen map[string]int64, events []upload.Progress) {
		for _, ev := range events {
			if ev.Version < seen[ev.UploadID] {
				t.Errorf("upload %s: version %d after %d", ev.UploadID, ev.Version, seen[ev.UploadID])
			}
			seen[ev.UploadID] = ev.Version
		}
	}

	var pubs sync.WaitGroup
	for p := range publishers {
		pubs.Go(func() {
			for v := int64(1); v <= lastVersion; v++ {
				for u := range uploadsPerPub {
					_ = h.Publish(context.Background(), event(fmt.Sprintf("p%d-u%d", p, u), "alice", v))
				}
			}
		})
	}
	published := make(chan struct{})
	go func() { pubs.Wait(); close(published) }()

	// churnOnce subscribes, reads a little and leaves by one of the three
	// ways a feed ends, each racing something.
	churnOnce := func(i int, topic upload.Topic) error {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		f, err := h.Subscribe(ctx, topic)
		if err != nil {
			return err
		}
		seen := make(map[string]int64)
		for range 3 {
			events, _ := f.Drain()
			checkRising(t, seen, events)
		}
		switch i % 3 {
		case 0: // two closers at once
			var closers sync.WaitGroup
			closers.Go(f.Close)
			closers.Go(f.Close)
			closers.Wait()
		case 1: // cancellation alone
			cancel()
		case 2: // cancellation racing Close
			go cancel()
			f.Close()
		}
		return nil
	}

	var stop atomic.Bool
	var others sync.WaitGroup
	for c := range churners {
		others.Go(func() {
			for i := 0; !stop.Load(); i++ {
				topic := upload.UserTopic("alice")
				if i%2 == 1 {
					topic = upload.UploadTopic(fmt.Sprintf("p%d-u%d", c%publishers, i%uploadsPerPub))
				}
				if err := churnOnce(i, topic); err != nil {
					t.Errorf("Subscribe(%v): %v", topic, err)
					return
				}
			}
		})
	}
	others.Go(func() {
		for !stop.Load() {
			h.Resync()
		}
	})

	// The long-lived watcher reads like a real subscriber until the
	// publishers finish.
	for reading := true; reading; {
		select {
		case <-published:
			reading = false
		case <-watcher.Ready():
		case <-time.After(deadline):
			t.Fatalf("publishers did not finish within %v", deadline)
		}
		events, _ := watcher.Drain()
		checkRising(t, watched, events)
	}
	events, _ := watcher.Drain()
	checkRising(t, watched, events)

	stop.Store(true)
	others.Wait()

	if got, want := len(watched), publishers*uploadsPerPub; got != want {
		t.Errorf("watcher saw %d uploads, want %d", got, want)
	}
	for id, v := range watched {
		if v != lastVersion {
			t.Errorf("watcher ended upload %s on version %d, want %d", id, v, lastVersion)
		}
	}
	eventually(t, "all churned feeds unregistered", func() bool { return h.Subscribers() == 1 })
}

func BenchmarkPublish(b *testing.B) {
	for _, subscribers := range []int{1, 100} {
		b.Run(fmt.Sprintf("subscribers=%d", subscribers), func(b *testing.B) {
			h := NewHub()
			for range subscribers {
				subscribe(b, h, upload.UploadTopic("u1"))
			}
			ctx := b.Context()
			ev := event("u1", "alice", 0)
			b.ReportAllocs()
			for b.Loop() {
				ev.Version++
				if err := h.Publish(ctx, ev); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestConformance(t *testing.T) {
	brokertest.Run(t, func(t *testing.T) brokertest.Replicas {
		h := NewHub()
		return brokertest.Replicas{A: h, B: h, Interrupt: func(*testing.T) { h.Resync() }}
	})
}
