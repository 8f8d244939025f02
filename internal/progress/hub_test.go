package progress

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spoolhq/spool/internal/progress/brokertest"
	"github.com/spoolhq/spool/internal/upload"
)

// deadline bounds TestConcurrentUse's wait so a broken hub fails the test
// instead of hanging it; no test measures time.
const deadline = 10 * time.Second

func subscribe(tb testing.TB, h *Hub, topic upload.Topic) *feed {
	tb.Helper()
	f, err := h.Subscribe(tb.Context(), topic)
	if err != nil {
		tb.Fatalf("Subscribe(%v): %v", topic, err)
	}
	tb.Cleanup(f.Close)
	return f.(*feed)
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

// TestConformance runs the broker suite on one hub standing for both
// replicas; Resync is what a wrapping broker calls after an interruption.
func TestConformance(t *testing.T) {
	brokertest.Run(t, func(t *testing.T) brokertest.Replicas {
		h := NewHub()
		return brokertest.Replicas{A: h, B: h, Interrupt: func(*testing.T) { h.Resync() }}
	})
}

// Deliver reaches the feeds of the topic it is given and no others, not
// even those of the event's other topic.
func TestDeliverReachesOnlyItsTopic(t *testing.T) {
	h := NewHub()
	target := subscribe(t, h, upload.UserTopic("alice"))
	sameUpload := subscribe(t, h, upload.UploadTopic("u1"))

	h.Deliver(upload.UserTopic("alice"), brokertest.Event("u1", "alice", 1))

	brokertest.WaitReady(t, target, "user feed")
	assertDrain(t, target, []idVersion{{"u1", 1}}, false)
	brokertest.AssertNothing(t, sameUpload, "upload feed")
}

// The suite (CollapsesToLatest) checks what a slow reader drains; this
// checks the mailbox's memory while it waits: one event per upload.
func TestPendingCollapsesToLatestPerUpload(t *testing.T) {
	h := NewHub()
	f := subscribe(t, h, upload.UserTopic("alice"))
	uploads := []string{"u1", "u2", "u3"}

	const n = 10_000
	latest := make([]idVersion, len(uploads))
	for i := range n {
		id := uploads[i%len(uploads)]
		brokertest.Publish(t, h, brokertest.Event(id, "alice", int64(i)))
		latest[i%len(uploads)] = idVersion{id, int64(i)}
		if got, limit := f.pendingLen(), min(i+1, len(uploads)); got > limit {
			t.Fatalf("after %d events: %d pending, want at most %d", i+1, got, limit)
		}
	}

	assertDrain(t, f, latest, false)
}

// The hub forgets a topic with its last feed, so its map tracks live
// subscriptions, not every upload ever watched.
func TestClosingLastFeedDropsTopic(t *testing.T) {
	h := NewHub()
	first := subscribe(t, h, upload.UploadTopic("u1"))
	second := subscribe(t, h, upload.UploadTopic("u1"))

	first.Close()
	if got := len(h.topics); got != 1 {
		t.Errorf("after closing one of two feeds: %d topics kept, want 1", got)
	}
	second.Close()
	if got := len(h.topics); got != 0 {
		t.Errorf("after closing both: %d topics kept, want 0", got)
	}
}

func TestZeroHubIsUsable(t *testing.T) {
	var h Hub
	f := subscribe(t, &h, upload.UploadTopic("u1"))
	brokertest.Publish(t, &h, brokertest.Event("u1", "alice", 1))
	assertDrain(t, f, []idVersion{{"u1", 1}}, false)
}

// TestConcurrentUse runs publishers, subscribers that come and go, double
// closers and resyncs at once; `make test-race` runs it under the race detector.
// Each upload has one publisher with rising versions, so every feed must
// see each upload's versions rise, and a feed that stays to the end must
// end on the last one.
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
					_ = h.Publish(context.Background(), brokertest.Event(fmt.Sprintf("p%d-u%d", p, u), "alice", v))
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
	brokertest.Eventually(t, "all churned feeds unregistered", func() bool { return h.Subscribers() == 1 })
}

func BenchmarkPublish(b *testing.B) {
	for _, subscribers := range []int{1, 100} {
		b.Run(fmt.Sprintf("subscribers=%d", subscribers), func(b *testing.B) {
			h := NewHub()
			for range subscribers {
				subscribe(b, h, upload.UploadTopic("u1"))
			}
			ctx := b.Context()
			ev := brokertest.Event("u1", "alice", 0)
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

// TestSuperseded counts the events a mailbox let go unread for a newer
// one of the same upload, whichever arrived first, and only those.
func TestSuperseded(t *testing.T) {
	h := NewHub()
	f := subscribe(t, h, upload.UserTopic("u"))
	publish := func(id string, v int64) {
		t.Helper()
		if err := h.Publish(context.Background(), upload.Progress{UploadID: id, OwnerID: "u", Version: v}); err != nil {
			t.Fatal(err)
		}
	}
	publish("a", 1)
	publish("b", 1)
	if got := h.Superseded(); got != 0 {
		t.Fatalf("Superseded after one event per upload: %d, want 0", got)
	}
	publish("a", 3) // replaces a@1
	publish("a", 2) // older than a@3: dropped
	if got := h.Superseded(); got != 2 {
		t.Errorf("Superseded: %d, want 2", got)
	}
	events, _ := f.Drain()
	if got := summary(events); fmt.Sprint(got) != "[{a 3} {b 1}]" {
		t.Errorf("drained %v, want a@3 and b@1", got)
	}
	publish("a", 4) // the mailbox is empty again
	if got := h.Superseded(); got != 2 {
		t.Errorf("Superseded after a drain: %d, want still 2", got)
	}
}
