// Package brokertest is the conformance suite for upload.Broker engines.
// The in-process hub's tests and the Redis broker's call Run, so the
// subscriptions of package upload (watch.go) can rely on the same fan-out
// rules from both: per-topic delivery, pending events collapsing to the
// latest per upload, an older version never replacing a newer one,
// subscribe before snapshot, feeds ending with their context, and resync.
package brokertest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/spoolhq/spool/internal/upload"
)

// deadline bounds every wait so a broken broker fails the test instead of
// hanging it; no assertion measures time.
const deadline = 20 * time.Second

// Replicas is one deployment for one subtest: two brokers that share a
// fan-out, as two spool replicas do (two Redis brokers on one prefix; for
// the in-process hub, the same hub twice). The suite subscribes on B and
// publishes mostly on A.
type Replicas struct {
	A, B upload.Broker
	// Interrupt makes B lose touch with the fan-out, as a dropped
	// connection to the other replicas does, and returns. Once B can
	// deliver again, each of its live feeds must report a resync once.
	Interrupt func(t *testing.T)
}

// Counter is what the suite needs of B besides upload.Broker: the number
// of its live feeds, to see a feed end when its context does.
type Counter interface {
	Subscribers() int
}

// Run runs the suite. newReplicas returns a fresh deployment for one
// subtest and arranges its cleanup with t.Cleanup.
//
// Run must not be called from a parallel test: NothingLeftRunning counts
// the process's goroutines.
//
// The suite relies on one ordering every engine keeps: events published
// one after another (each Publish returned before the next began) reach a
// replica in that order. That is how it knows nothing is still on its way
// before it checks that a feed got nothing.
func Run(t *testing.T, newReplicas func(t *testing.T) Replicas) {
	tests := []struct {
		name string
		fn   func(t *testing.T, d *deployment)
	}{
		{"DeliversPerTopic", testDeliversPerTopic},
		{"CollapsesToLatest", testCollapsesToLatest},
		{"OlderNeverReplacesNewer", testOlderNeverReplacesNewer},
		{"SameVersionReplacesPending", testSameVersionReplacesPending},
		{"SubscribeBeforeSnapshot", testSubscribeBeforeSnapshot},
		{"CloseUnsubscribes", testCloseUnsubscribes},
		{"ContextEndUnsubscribes", testContextEndUnsubscribes},
		{"SubscribeWithDoneContext", testSubscribeWithDoneContext},
		{"NothingLeftRunning", testNothingLeftRunning},
		{"Resync", testResync},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newReplicas(t)
			counter, ok := r.B.(Counter)
			if !ok {
				t.Fatalf("%T has no Subscribers() int; the suite counts live feeds with it", r.B)
			}
			tt.fn(t, &deployment{Replicas: r, counter: counter})
		})
	}
}

// deployment is the Replicas of one subtest, with the suite's helpers.
type deployment struct {
	Replicas
	counter Counter
	markers int // numbers the topics settle uses
}

func testDeliversPerTopic(t *testing.T, d *deployment) {
	want := FullEvent("u1", "alice", 1)
	targets := map[string]upload.Feed{
		"upload topic":               Subscribe(t, d.B, upload.UploadTopic("u1")),
		"user topic":                 Subscribe(t, d.B, upload.UserTopic("alice")),
		"upload topic, same replica": Subscribe(t, d.A, upload.UploadTopic("u1")),
		"user topic, same replica":   Subscribe(t, d.A, upload.UserTopic("alice")),
	}
	others := map[string]upload.Feed{
		"other upload": Subscribe(t, d.B, upload.UploadTopic("u2")),
		"other user":   Subscribe(t, d.B, upload.UserTopic("bob")),
		// Same id, other kind: a user's id must not match an upload topic.
		"upload topic named like the owner": Subscribe(t, d.B, upload.UploadTopic("alice")),
		"user topic named like the upload":  Subscribe(t, d.B, upload.UserTopic("u1")),
	}

	// No wait between Subscribe and Publish: see SubscribeBeforeSnapshot.
	Publish(t, d.A, want)

	for name, f := range targets {
		r := ReadUntil(t, f, name, func(r Reading) bool { return len(r.Events) > 0 })
		if len(r.Events) != 1 || r.Resync || !reflect.DeepEqual(r.Events[0], want) {
			t.Errorf("%s: read %+v, resync %v; want [%+v]", name, r.Events, r.Resync, want)
		}
	}
	d.settle(t, d.A, d.B)
	for name, f := range others {
		AssertNothing(t, f, name)
	}
}

// testCollapsesToLatest has subscribers that never read while many events
// come: publishing does not wait for them, and each drains the latest
// event per upload, in the order the uploads first arrived, after a single
// wake-up.
func testCollapsesToLatest(t *testing.T, d *deployment) {
	const rounds = 400 // events per upload; more than any buffer would hold
	byUser := Subscribe(t, d.B, upload.UserTopic("alice"))
	byUpload := Subscribe(t, d.B, upload.UploadTopic("u1"))

	Within(t, "publishing to feeds nobody reads", func() {
		// The first round sets the order the uploads arrive in.
		for v := int64(1); v <= rounds; v++ {
			ids := []string{"u1", "u2", "u3"}
			if v == 1 {
				ids = []string{"u3", "u1", "u2"}
			}
			for _, id := range ids {
				if err := d.A.Publish(context.Background(), Event(id, "alice", v)); err != nil {
					t.Errorf("Publish(%s v%d): %v", id, v, err)
					return
				}
			}
		}
	})
	d.settle(t, d.A, d.B)

	WaitReady(t, byUser, "user feed")
	assertDrain(t, byUser, "user feed", fmt.Sprintf("[u3 v%[1]d, u1 v%[1]d, u2 v%[1]d] resync=false", rounds))
	AssertNotReady(t, byUser, "user feed, drained") // one wake-up for all of them
	assertDrain(t, byUser, "user feed, drained", "[] resync=false")
	assertDrain(t, byUpload, "upload feed", fmt.Sprintf("[u1 v%d] resync=false", rounds))

	// A drained feed orders the uploads by their next arrival.
	Publish(t, d.A, Event("u2", "alice", rounds+1))
	Publish(t, d.A, Event("u1", "alice", rounds+1))
	d.settle(t, d.A, d.B)
	assertDrain(t, byUser, "user feed, next events", fmt.Sprintf("[u2 v%[1]d, u1 v%[1]d] resync=false", rounds+1))
}

// testOlderNeverReplacesNewer sends versions out of order, from both
// replicas, as a replica that commits first may publish last.
func testOlderNeverReplacesNewer(t *testing.T, d *deployment) {
	f := Subscribe(t, d.B, upload.UploadTopic("u1"))

	newer := Event("u1", "alice", 5)
	newer.UploadedBytes = 500
	Publish(t, d.A, newer)
	for _, pub := range []upload.Broker{d.B, d.A} {
		older := Event("u1", "alice", 3)
		older.UploadedBytes = 300
		Publish(t, pub, older)
	}
	d.settle(t, d.A, d.B)

	events, _ := f.Drain()
	if len(events) != 1 || events[0].Version != 5 || events[0].UploadedBytes != 500 {
		t.Errorf("Drain() = %s, want only v5 with 500 bytes", Reading{Events: events})
	}
}

// testSameVersionReplacesPending: equal versions replace, since a
// throttled in-flight byte count may be published again without a
// committed change.
func testSameVersionReplacesPending(t *testing.T, d *deployment) {
	f := Subscribe(t, d.B, upload.UploadTopic("u1"))

	first := Event("u1", "alice", 5)
	first.UploadedBytes = 100
	second := Event("u1", "alice", 5)
	second.UploadedBytes = 200
	Publish(t, d.A, first)
	Publish(t, d.A, second)
	d.settle(t, d.A, d.B)

	events, _ := f.Drain()
	if len(events) != 1 || events[0].UploadedBytes != 200 {
		t.Errorf("Drain() = %s, want the second v5 event (200 bytes)", Reading{Events: events})
	}
}

// testSubscribeBeforeSnapshot checks the rule subscriptions rest on
// (Broker.Subscribe, upload's watch): once Subscribe has returned, an event
// published on any replica reaches the feed, so a subscriber that reads its
// snapshot after subscribing misses no change. Each topic is new to the
// broker, subscribed from several goroutines at once, and published to as
// soon as its Subscribe returns; one is closed and subscribed again.
func testSubscribeBeforeSnapshot(t *testing.T, d *deployment) {
	const subscribers = 8
	feeds := make([]upload.Feed, subscribers)
	var wg sync.WaitGroup
	for i := range subscribers {
		wg.Go(func() {
			id := fmt.Sprintf("snap%d", i)
			f, err := d.B.Subscribe(t.Context(), upload.UploadTopic(id))
			if err != nil {
				t.Errorf("Subscribe(%s): %v", id, err)
				return
			}
			feeds[i] = f
			if err := d.A.Publish(context.Background(), Event(id, "alice", 1)); err != nil {
				t.Errorf("Publish(%s): %v", id, err)
			}
		})
	}
	Within(t, "subscribing and publishing", wg.Wait)
	for i, f := range feeds {
		if f == nil {
			continue // reported above
		}
		t.Cleanup(f.Close)
		id := fmt.Sprintf("snap%d", i)
		if r := ReadEvent(t, f, id, 1); r.Resync {
			t.Errorf("feed of %s read %s, want no resync", id, r)
		}
	}

	// The topic's last feed leaves and a new one comes at once.
	feeds[0].Close()
	again := Subscribe(t, d.B, upload.UploadTopic("snap0"))
	Publish(t, d.A, Event("snap0", "alice", 2))
	if r := ReadEvent(t, again, "snap0", 2); r.Resync {
		t.Errorf("feed subscribed again read %s, want no resync", r)
	}
}

func testCloseUnsubscribes(t *testing.T, d *deployment) {
	closed := Subscribe(t, d.B, upload.UploadTopic("u1"))
	kept := Subscribe(t, d.B, upload.UploadTopic("u1"))
	d.assertSubscribers(t, 2)

	Publish(t, d.A, Event("u1", "alice", 1))
	d.settle(t, d.A, d.B)
	WaitReady(t, closed, "feed to be closed") // its signal for v1, sent before Close
	closed.Close()
	closed.Close()
	d.assertSubscribers(t, 1)

	Publish(t, d.A, Event("u1", "alice", 2))
	d.settle(t, d.A, d.B)
	// What was pending at Close is gone too.
	AssertNothing(t, closed, "closed feed")
	assertDrain(t, kept, "kept feed", "[u1 v2] resync=false")

	kept.Close()
	d.assertSubscribers(t, 0)
}

// testContextEndUnsubscribes: a feed ends when its Subscribe's context
// does, without anyone calling Close, and Close stays safe after that and
// while it happens.
func testContextEndUnsubscribes(t *testing.T, d *deployment) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ended, err := d.B.Subscribe(ctx, upload.UploadTopic("u1"))
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	kept := Subscribe(t, d.B, upload.UploadTopic("u1"))
	Publish(t, d.A, Event("u1", "alice", 1))
	d.settle(t, d.A, d.B)
	WaitReady(t, ended, "feed to be ended")

	cancel()
	// The feed ends asynchronously; the wait fails only if it never does.
	Eventually(t, "the feed ended with its context", func() bool { return d.counter.Subscribers() == 1 })

	Publish(t, d.A, Event("u1", "alice", 2))
	d.settle(t, d.A, d.B)
	AssertNothing(t, ended, "feed whose context ended")
	assertDrain(t, kept, "kept feed", "[u1 v2] resync=false")
	ended.Close() // still safe after its context closed it
	d.assertSubscribers(t, 1)

	// Close racing the context's end (`make test-race` runs it under the race
	// detector).
	for range 20 {
		ctx, cancel := context.WithCancel(t.Context())
		f, err := d.B.Subscribe(ctx, upload.UploadTopic("u1"))
		if err != nil {
			cancel()
			t.Fatalf("Subscribe: %v", err)
		}
		go cancel()
		f.Close()
		cancel()
	}
	Eventually(t, "every racing feed ended", func() bool { return d.counter.Subscribers() == 1 })
}

func testSubscribeWithDoneContext(t *testing.T, d *deployment) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	f, err := d.B.Subscribe(ctx, upload.UploadTopic("u1"))
	if !errors.Is(err, context.Canceled) {
		if f != nil {
			f.Close()
		}
		t.Errorf("Subscribe with a done context: err = %v, want context.Canceled", err)
	}
	d.assertSubscribers(t, 0)
}

// openContext is a context that is never done and cannot be cancelled:
// watching it takes a goroutine (context.AfterFunc starts one for a
// context it does not know), which only Close can stop.
type openContext struct {
	context.Context
	done chan struct{}
}

func (c openContext) Done() <-chan struct{} { return c.done }

// testNothingLeftRunning subscribes feeds and ends them by Close and by
// their context, and checks the process's goroutines come back to their
// number before: a feed that leaves a watcher behind leaks one each.
func testNothingLeftRunning(t *testing.T, d *deployment) {
	const feeds = 50
	// Warm up whatever the broker starts once (a connection, a dialer).
	Subscribe(t, d.B, upload.UploadTopic("warm")).Close()
	before := runtime.NumGoroutine()

	open := openContext{context.Background(), make(chan struct{})}
	for i := range feeds {
		f, err := d.B.Subscribe(open, upload.UploadTopic(fmt.Sprintf("u%d", i%3)))
		if err != nil {
			t.Fatalf("Subscribe: %v", err)
		}
		f.Close()
	}
	for i := range feeds {
		ctx, cancel := context.WithCancel(context.Background())
		if _, err := d.B.Subscribe(ctx, upload.UploadTopic(fmt.Sprintf("u%d", i%3))); err != nil {
			cancel()
			t.Fatalf("Subscribe: %v", err)
		}
		cancel()
	}

	Eventually(t, "every feed ended", func() bool { return d.counter.Subscribers() == 0 })
	Eventually(t, "goroutines back to their number before the feeds", func() bool {
		return runtime.NumGoroutine() <= before
	})
}

// testResync interrupts B: each live feed reports a resync exactly once,
// with the events pending before it still handed over, wakes its reader
// even with nothing pending, and gets events again afterwards. A closed
// feed hears nothing of it.
func testResync(t *testing.T, d *deployment) {
	byUpload := Subscribe(t, d.B, upload.UploadTopic("u1"))
	byUser := Subscribe(t, d.B, upload.UserTopic("alice"))
	closed := Subscribe(t, d.B, upload.UploadTopic("u1"))
	closed.Close()

	Publish(t, d.A, Event("u1", "alice", 1))
	d.settle(t, d.A, d.B)
	d.Interrupt(t)

	for name, f := range map[string]upload.Feed{"upload feed": byUpload, "user feed": byUser} {
		r := ReadUntil(t, f, name+": resync", func(r Reading) bool { return r.Resync })
		if !r.Has("u1", 1) {
			t.Errorf("%s read %s, want u1 v1 (pending before the resync) too", name, r)
		}
		assertDrain(t, f, name+", after the resync", "[] resync=false")
	}
	AssertNothing(t, closed, "closed feed")

	// Events flow again, with no second resync for the same interruption.
	Publish(t, d.A, Event("u1", "alice", 2))
	for name, f := range map[string]upload.Feed{"upload feed": byUpload, "user feed": byUser} {
		if r := ReadEvent(t, f, "u1", 2); r.Resync || len(r.Events) != 1 {
			t.Errorf("%s after the resync read %s, want only u1 v2", name, r)
		}
	}

	// A resync with nothing pending wakes the reader too.
	d.Interrupt(t)
	WaitReady(t, byUpload, "upload feed, second interruption")
	assertDrain(t, byUpload, "upload feed, second interruption", "[] resync=true")
}

// --- the suite's own helpers ------------------------------------------------

// settle returns once every event published so far on pub has reached
// the feeds of on: it publishes a marker on a topic of its own and reads
// it there. Events published one after another reach a replica in that
// order, so nothing published before the marker is still on its way.
func (d *deployment) settle(t *testing.T, pub, on upload.Broker) {
	t.Helper()
	d.markers++
	owner := fmt.Sprintf("brokertest-marker-%d", d.markers)
	f := Subscribe(t, on, upload.UserTopic(owner))
	defer f.Close()
	Publish(t, pub, Event("marker", owner, 1))
	ReadEvent(t, f, "marker", 1)
}

func (d *deployment) assertSubscribers(t *testing.T, want int) {
	t.Helper()
	if got := d.counter.Subscribers(); got != want {
		t.Fatalf("Subscribers() = %d, want %d", got, want)
	}
}

// assertDrain drains f once; want is the Reading's String form.
func assertDrain(t *testing.T, f upload.Feed, name, want string) {
	t.Helper()
	events, resync := f.Drain()
	if got := (Reading{events, resync}).String(); got != want {
		t.Errorf("%s: Drain() = %s, want %s", name, got, want)
	}
}
