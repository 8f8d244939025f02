package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/spoolhq/spool/internal/progress/brokertest"
	"github.com/spoolhq/spool/internal/progress/redis/redistest"
	"github.com/spoolhq/spool/internal/redisurl"
	"github.com/spoolhq/spool/internal/upload"
)

// deadline bounds every wait so a broken broker fails the test instead of
// hanging it; no test measures time.
const deadline = 20 * time.Second

// --- Redis for the tests ----------------------------------------------------

// openURL opens rawURL as spool does (redisurl.Open), failing the test
// if it cannot.
func openURL(tb testing.TB, rawURL string) *redisurl.URL {
	tb.Helper()
	u, err := redisurl.Open(tb.Context(), rawURL, redisurl.Settings{})
	if err != nil {
		tb.Fatalf("redisurl.Open: %v", err)
	}
	return u
}

// newClient returns a client for opt, closed when the test ends, bounding
// commands by their context as Open does.
func newClient(tb testing.TB, opt *goredis.Options) *goredis.Client {
	tb.Helper()
	o := *opt
	o.ContextTimeoutEnabled = true
	c := goredis.NewClient(&o)
	tb.Cleanup(func() { brokertest.Bounded(tb, "closing a client", func() { _ = c.Close() }) })
	return c
}

// newBroker returns a Broker (a "replica") on client, closed when the test
// ends, before the client.
func newBroker(tb testing.TB, client *goredis.Client, prefix string) *Broker {
	tb.Helper()
	b, err := New(client, Options{Prefix: prefix})
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(func() { closeBroker(tb, b) })
	return b
}

// closeBroker closes b, failing the test if Close fails or hangs.
func closeBroker(tb testing.TB, b *Broker) {
	tb.Helper()
	brokertest.Bounded(tb, "Close", func() {
		if err := b.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
}

// twoReplicas returns two Brokers ("replicas") of one deployment on opt's
// Redis, each on a client of its own, and the channel prefix they share.
func twoReplicas(tb testing.TB, opt *goredis.Options) (a, b *Broker, prefix string) {
	tb.Helper()
	prefix = redistest.Prefix(tb)
	return newBroker(tb, newClient(tb, opt), prefix), newBroker(tb, newClient(tb, opt), prefix), prefix
}

// numSub returns how many connections are subscribed to channel.
func numSub(tb testing.TB, c *goredis.Client, channel string) int64 {
	tb.Helper()
	n, err := c.PubSubNumSub(tb.Context(), channel).Result()
	if err != nil {
		tb.Fatalf("PUBSUB NUMSUB %s: %v", channel, err)
	}
	return n[channel]
}

// --- the conformance suite ---------------------------------------------------

// TestConformance runs the suite on two replicas of one deployment. It is
// not parallel: the suite counts the process's goroutines.
func TestConformance(t *testing.T) {
	brokertest.Run(t, func(t *testing.T) brokertest.Replicas {
		opt := redistest.Options(t)
		prefix := redistest.Prefix(t)
		// B's client is named so that Interrupt finds its subscription
		// connection among everyone's on the shared Redis.
		named := *opt
		named.ClientName = strings.TrimSuffix(prefix, ":")
		admin := newClient(t, opt)
		return brokertest.Replicas{
			A: newBroker(t, newClient(t, opt), prefix),
			B: newBroker(t, newClient(t, &named), prefix),
			Interrupt: func(t *testing.T) {
				killSubscriptionConn(t, admin, named.ClientName)
			},
		}
	})
}

// TestClusterConformance runs the suite on two replicas of one
// deployment on a Redis Cluster of three masters, opened from one node's
// URL as spool opens it: their channels in one slot, published and
// subscribed on its master (see publisher). It caught go-redis sending
// each PUBLISH to a node of its choosing, when events reached a replica
// out of the order they were published in. Not parallel, as above.
func TestClusterConformance(t *testing.T) {
	c := redistest.StartCluster(t, 3, 0)
	brokertest.Run(t, func(t *testing.T) brokertest.Replicas {
		prefix := redistest.Prefix(t)
		name := strings.TrimSuffix(prefix, ":")
		open := func(rawURL string) *Broker {
			b, err := Open(t.Context(), openURL(t, rawURL), Options{Prefix: prefix})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			t.Cleanup(func() { closeBroker(t, b) })
			return b
		}
		return brokertest.Replicas{
			A: open(c.URL()),
			B: open(c.URL() + "?client_name=" + name),
			Interrupt: func(t *testing.T) {
				// B reconnects at once, maybe to a node not yet looked
				// at: the first connection found is the one to kill.
				for _, n := range c.Nodes() {
					admin := newClient(t, &goredis.Options{Addr: n.Addr})
					if len(subscribedConns(t, admin, name)) > 0 {
						killSubscriptionConn(t, admin, name)
						return
					}
				}
				t.Fatalf("no node of the cluster has a subscribed connection named %s", name)
			},
		}
	})
}

// TestClusterFailover kills a master of the cluster the replicas are
// on, then the master their channels' slot is on (where their
// subscription connections are, and where they publish). The first
// disturbs nothing: events published across its failover reach the feeds
// (none is dropped unsaid). After the second, each node's replica having
// taken over, the feeds resync and events reach them again.
func TestClusterFailover(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 3, 1)
	prefix := redistest.Prefix(t)
	open := func() *Broker {
		b, err := Open(t.Context(), openURL(t, c.URL()), Options{Prefix: prefix})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() { closeBroker(t, b) })
		return b
	}
	a, b := open(), open()
	f := brokertest.Subscribe(t, b, upload.UploadTopic("u1"))
	g := brokertest.Subscribe(t, b, upload.UserTopic("alice"))
	brokertest.Publish(t, a, brokertest.Event("u1", "alice", 1))
	brokertest.ReadEvent(t, f, "u1", 1)
	brokertest.ReadEvent(t, g, "u1", 1)

	key := "{" + prefix + "}"
	ours := c.MasterOf(t, key)
	var other *redistest.Server
	for _, m := range c.Masters {
		if m != ours {
			other = m
		}
	}
	other.Kill()
	for v := int64(2); !c.FailedOver(t, other); v++ {
		if v > 1000 {
			t.Fatalf("the cluster did not fail %s over", other.Addr)
		}
		brokertest.Publish(t, a, brokertest.Event("u1", "alice", v))
		if r := brokertest.ReadEvent(t, f, "u1", v); r.Resync {
			t.Errorf("the feed resynced while a master its deployment does not use failed over: %s", r)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if a.Dropped() != 0 {
		t.Errorf("%d events were dropped while a master the deployment does not use failed over, want none", a.Dropped())
	}

	ours.Kill()
	c.AwaitFailover(t, ours)
	for name, feed := range map[string]upload.Feed{"the upload's": f, "the user's": g} {
		brokertest.ReadUntil(t, feed, name+" feed's resync after its node died", func(r brokertest.Reading) bool { return r.Resync })
		publishUntilRead(t, a, feed, brokertest.Event("u1", "alice", 1000))
	}
}

// killSubscriptionConn closes, from the server's side, the one connection
// named name that listens on channels, as a dropped connection.
func killSubscriptionConn(tb testing.TB, admin *goredis.Client, name string) {
	tb.Helper()
	conns := subscribedConns(tb, admin, name)
	if len(conns) != 1 {
		tb.Fatalf("subscribed connections named %s: %v, want one", name, conns)
	}
	for id := range conns {
		if err := admin.ClientKillByFilter(tb.Context(), "ID", strconv.FormatInt(id, 10)).Err(); err != nil {
			tb.Fatalf("CLIENT KILL ID %d: %v", id, err)
		}
	}
}

// --- the wire format --------------------------------------------------------

// fullEvent is the event the wire tests pin: every field set.
func fullEvent() upload.Progress { return brokertest.FullEvent("upl_01J", "alice", 42) }

func TestWireRoundTrip(t *testing.T) {
	t.Parallel()
	empty := brokertest.Event("u1", "alice", 1)
	empty.FailedChunks = []int{}
	for name, p := range map[string]upload.Progress{
		"every field":           fullEvent(),
		"nil slice, nil ptrs":   brokertest.Event("u1", "alice", 1),
		"empty failed chunks":   empty,
		"zero version and time": {UploadID: "u1", OwnerID: "alice"},
	} {
		t.Run(name, func(t *testing.T) {
			data, err := encodeEvent(p, "b1")
			if err != nil {
				t.Fatalf("encodeEvent: %v", err)
			}
			got, origin, err := decodeEvent(data)
			if err != nil {
				t.Fatalf("decodeEvent(%s): %v", data, err)
			}
			if !reflect.DeepEqual(got, p) || origin != "b1" {
				t.Errorf("round trip of %s:\n got %+v from %q\nwant %+v from b1", data, got, origin, p)
			}
		})
	}
}

// TestWireFormatIsStable pins the field names other replicas read: renaming
// one breaks a rolling deploy.
func TestWireFormatIsStable(t *testing.T) {
	t.Parallel()
	const golden = `{"v":1,"uploadId":"upl_01J","batchId":"bat_01J","ownerId":"alice","status":"FAILED",` +
		`"uploadedBytes":5368709121,"totalBytes":6442450944,"percent":83,"uploadedChunks":640,"totalChunks":768,` +
		`"failedChunks":[3,700],"mediaId":"med_01J","mediaStatus":"READY","error":"chunk 3 failed","version":42,"at":"2026-11-03T10:04:05.123456789Z",` +
		`"origin":"b1"}`
	data, err := encodeEvent(fullEvent(), "b1")
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != golden {
		t.Errorf("encodeEvent:\n got %s\nwant %s", data, golden)
	}

	// A newer replica may add fields; this one ignores them.
	var fields map[string]any
	if err := json.Unmarshal([]byte(golden), &fields); err != nil {
		t.Fatal(err)
	}
	fields["thumbnailUrl"] = "https://example.test/t.jpg"
	newer, _ := json.Marshal(fields)
	got, _, err := decodeEvent(newer)
	if err != nil {
		t.Fatalf("decodeEvent with an unknown field: %v", err)
	}
	if want := fullEvent(); !reflect.DeepEqual(got, want) {
		t.Errorf("decodeEvent with an unknown field:\n got %+v\nwant %+v", got, want)
	}

	// An older replica sends no mediaStatus: the event names none.
	delete(fields, "mediaStatus")
	older, _ := json.Marshal(fields)
	got, _, err = decodeEvent(older)
	if err != nil {
		t.Fatalf("decodeEvent without mediaStatus: %v", err)
	}
	want := fullEvent()
	want.MediaStatus = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decodeEvent without mediaStatus:\n got %+v\nwant %+v", got, want)
	}

	// An older replica names no origin: its events are another's to every
	// broker, so they are delivered.
	delete(fields, "origin")
	older, _ = json.Marshal(fields)
	if _, origin, err := decodeEvent(older); err != nil || origin != "" {
		t.Errorf("decodeEvent without origin: origin %q, err %v; want \"\" and no error", origin, err)
	}
}

func TestWireRejectsWhatItCannotRoute(t *testing.T) {
	t.Parallel()
	for name, payload := range map[string]string{
		"not JSON":            `progress!`,
		"not an object":       `[1,2]`,
		"no format version":   `{"uploadId":"u1","ownerId":"alice","version":1}`,
		"newer format":        `{"v":2,"uploadId":"u1","ownerId":"alice","version":1}`,
		"no upload":           `{"v":1,"ownerId":"alice","version":1}`,
		"no owner":            `{"v":1,"uploadId":"u1","version":1}`,
		"wrong type of field": `{"v":1,"uploadId":"u1","ownerId":"alice","version":"1"}`,
		"origin not a string": `{"v":1,"uploadId":"u1","ownerId":"alice","version":1,"origin":7}`,
	} {
		if got, _, err := decodeEvent([]byte(payload)); err == nil {
			t.Errorf("%s: decodeEvent(%s) = %+v, want an error", name, payload, got)
		}
	}
}

// --- replicas on a shared Redis ---------------------------------------------

// TestOtherDeploymentsHearNothing: deployments sharing one Redis under
// different prefixes never hear each other's events. (The suite checks
// the topics within one deployment.)
func TestOtherDeploymentsHearNothing(t *testing.T) {
	t.Parallel()
	opt := redistest.Options(t)
	a := newBroker(t, newClient(t, opt), redistest.Prefix(t))
	otherPrefix := redistest.Prefix(t)
	other := newBroker(t, newClient(t, opt), otherPrefix)
	otherPublisher := newBroker(t, newClient(t, opt), otherPrefix)
	feeds := map[string]upload.Feed{
		"same upload": brokertest.Subscribe(t, other, upload.UploadTopic("u1")),
		"same user":   brokertest.Subscribe(t, other, upload.UserTopic("alice")),
	}
	control := brokertest.Subscribe(t, other, upload.UserTopic("carol"))

	brokertest.Publish(t, a, brokertest.Event("u1", "alice", 1))
	// A replica hears its messages in order on one connection, so once a
	// later control event is read, a's event would have arrived. (From a
	// replica of its own: a replica's own events do not come through
	// Redis.)
	brokertest.Publish(t, otherPublisher, brokertest.Event("c1", "carol", 1))
	brokertest.ReadEvent(t, control, "c1", 1)
	for name, f := range feeds {
		brokertest.AssertNothing(t, f, name)
	}
}

func TestMalformedMessagesAreDropped(t *testing.T) {
	t.Parallel()
	opt := redistest.Options(t)
	admin := newClient(t, opt)
	a, b, prefix := twoReplicas(t, opt)
	f := brokertest.Subscribe(t, b, upload.UploadTopic("u1"))

	// Another writer on the channel: junk, a format this replica does not
	// read, and, far bigger than any event, an unterminated one.
	oversized := `{"v":1,"uploadId":"u1","ownerId":"alice","version":7,"error":"` + strings.Repeat("x", 4<<20)
	for _, junk := range []string{"junk", `{"v":99,"uploadId":"u1","ownerId":"alice","version":7}`, oversized, "junk"} {
		if err := admin.Publish(t.Context(), prefix+"upload:u1", junk).Err(); err != nil {
			t.Fatal(err)
		}
	}
	brokertest.Publish(t, a, brokertest.Event("u1", "alice", 1))

	r := brokertest.ReadEvent(t, f, "u1", 1)
	if len(r.Events) != 1 || r.Resync {
		t.Errorf("read %s, want only u1 v1", r)
	}
}

// TestEventsOfAnotherChannelAreDropped: a message reaches the feeds of the
// channel it was sent on, and only if it is about that channel's upload or
// user, so another writer cannot reach other subscribers by what the
// message says inside.
func TestEventsOfAnotherChannelAreDropped(t *testing.T) {
	t.Parallel()
	opt := redistest.Options(t)
	admin := newClient(t, opt)
	a, b, prefix := twoReplicas(t, opt)
	// Each feed's control event, published after the stray one.
	controls := map[upload.Feed]upload.Progress{
		brokertest.Subscribe(t, b, upload.UploadTopic("u1")):  brokertest.Event("u1", "alice", 1), // the channel it is sent on
		brokertest.Subscribe(t, b, upload.UserTopic("alice")): brokertest.Event("u1", "alice", 1), // the other channel it is sent on
		brokertest.Subscribe(t, b, upload.UploadTopic("u2")):  brokertest.Event("u2", "bob", 1),   // the upload it names
		brokertest.Subscribe(t, b, upload.UserTopic("bob")):   brokertest.Event("u2", "bob", 1),   // the owner it names
	}
	stray, err := encodeEvent(brokertest.Event("u2", "bob", 7), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range []string{prefix + "upload:u1", prefix + "user:alice"} {
		if err := admin.Publish(t.Context(), ch, stray).Err(); err != nil {
			t.Fatal(err)
		}
	}
	brokertest.Publish(t, a, brokertest.Event("u1", "alice", 1))
	brokertest.Publish(t, a, brokertest.Event("u2", "bob", 1))

	for f, ctl := range controls {
		// Stops at the stray event too: a newer one would hide the control.
		r := brokertest.ReadUntil(t, f, "the control event", func(r brokertest.Reading) bool {
			return r.Has(ctl.UploadID, ctl.Version) || r.Has("u2", 7)
		})
		if r.Has("u2", 7) || r.Resync {
			t.Errorf("feed of %s v%d read %s, want no u2 v7", ctl.UploadID, ctl.Version, r)
		}
	}
}

func TestSubscriptionsAreCountedPerChannel(t *testing.T) {
	t.Parallel()
	opt := redistest.Options(t)
	prefix := redistest.Prefix(t)
	admin := newClient(t, opt)
	a := newBroker(t, newClient(t, opt), prefix)
	named := *opt
	named.ClientName = strings.TrimSuffix(prefix, ":")
	b := newBroker(t, newClient(t, &named), prefix)
	u1, u2, u3, alice := prefix+"upload:u1", prefix+"upload:u2", prefix+"upload:u3", prefix+"user:alice"

	first := brokertest.Subscribe(t, b, upload.UploadTopic("u1"))
	second := brokertest.Subscribe(t, b, upload.UploadTopic("u1"))
	brokertest.Subscribe(t, b, upload.UserTopic("alice"))
	// Subscribe returns once Redis has the channel: no polling needed.
	if n := numSub(t, admin, u1); n != 1 {
		t.Errorf("NUMSUB %s = %d, want 1 (one connection for both feeds)", u1, n)
	}
	if n := numSub(t, admin, alice); n != 1 {
		t.Errorf("NUMSUB %s = %d, want 1", alice, n)
	}
	if conns := slices.Collect(maps.Values(subscribedConns(t, admin, named.ClientName))); len(conns) != 1 || conns[0] != 2 {
		t.Errorf("subscribed connections of the replica (by channel count) = %v, want one with 2 channels", conns)
	}

	first.Close()
	first.Close()
	// A later Subscribe is confirmed by a PING written after the syncer
	// handled the Close, so an UNSUBSCRIBE would have been processed by now.
	brokertest.Subscribe(t, b, upload.UploadTopic("u2"))
	if n := numSub(t, admin, u1); n != 1 {
		t.Errorf("after closing one of two feeds: NUMSUB %s = %d, want 1", u1, n)
	}
	brokertest.Publish(t, a, brokertest.Event("u1", "alice", 1))
	brokertest.ReadEvent(t, second, "u1", 1)

	second.Close()
	brokertest.Eventually(t, "channel unsubscribed after its last feed closed", func() bool { return numSub(t, admin, u1) == 0 })

	ctx, cancel := context.WithCancel(t.Context())
	if _, err := b.Subscribe(ctx, upload.UploadTopic("u3")); err != nil {
		t.Fatal(err)
	}
	if n := numSub(t, admin, u3); n != 1 {
		t.Errorf("NUMSUB %s = %d, want 1", u3, n)
	}
	cancel()
	brokertest.Eventually(t, "channel unsubscribed after its feed's context ended", func() bool { return numSub(t, admin, u3) == 0 })

	again := brokertest.Subscribe(t, b, upload.UploadTopic("u1"))
	if n := numSub(t, admin, u1); n != 1 {
		t.Errorf("subscribed again: NUMSUB %s = %d, want 1", u1, n)
	}
	brokertest.Publish(t, a, brokertest.Event("u1", "alice", 2))
	brokertest.ReadEvent(t, again, "u1", 2)
	if n := numSub(t, admin, u2); n != 1 {
		t.Errorf("NUMSUB %s = %d, want 1", u2, n)
	}
}

// TestChannelReusedBeforeUnsubscribe has a channel's last feed leave and a
// new one come before the syncer runs, so go-redis never hears of either:
// the new feed must still get its confirmation rather than time out.
func TestChannelReusedBeforeUnsubscribe(t *testing.T) {
	t.Parallel()
	opt := redistest.Options(t)
	a, b, prefix := twoReplicas(t, opt)
	name := prefix + "upload:u1"

	first := brokertest.Subscribe(t, b, upload.UploadTopic("u1"))
	var (
		f   upload.Feed
		err error
	)
	subscribed := make(chan struct{})
	func() {
		b.psMu.Lock() // holds the syncer back
		// Released however this ends: a syncer left waiting would keep
		// the broker's Close, and the test, from ever ending.
		defer b.psMu.Unlock()
		first.Close()
		go func() {
			defer close(subscribed)
			f, err = b.Subscribe(t.Context(), upload.UploadTopic("u1"))
		}()
		brokertest.Eventually(t, "the new feed counted", func() bool {
			b.mu.Lock()
			defer b.mu.Unlock()
			return b.channels[name] != nil
		})
	}()
	brokertest.Within(t, "Subscribe", func() { <-subscribed })
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	defer f.Close()

	b.mu.Lock()
	ch := b.channels[name]
	confirmed, late := ch.confirmed, ch.late
	b.mu.Unlock()
	if !confirmed || late {
		t.Errorf("channel confirmed %v, gave up waiting %v; want confirmed before Subscribe returned", confirmed, late)
	}
	brokertest.Publish(t, a, brokertest.Event("u1", "alice", 1))
	if r := brokertest.ReadEvent(t, f, "u1", 1); r.Resync {
		t.Errorf("read %s, want no resync", r)
	}
}

// subscribedConns returns, for each connection named name that listens on
// channels, how many it listens on, by connection id.
func subscribedConns(tb testing.TB, admin *goredis.Client, name string) map[int64]int {
	tb.Helper()
	list, err := admin.ClientList(tb.Context()).Result()
	if err != nil {
		tb.Fatalf("CLIENT LIST: %v", err)
	}
	subs := map[int64]int{}
	for line := range strings.Lines(list) {
		fields := map[string]string{}
		for _, kv := range strings.Fields(line) {
			k, v, _ := strings.Cut(kv, "=")
			fields[k] = v
		}
		if fields["name"] != name {
			continue
		}
		id, _ := strconv.ParseInt(fields["id"], 10, 64)
		if n, _ := strconv.Atoi(fields["sub"]); n > 0 {
			subs[id] = n
		}
	}
	return subs
}

// TestConcurrentSubscribers has feeds come and go on a few channels from
// many goroutines, by Close, by cancellation and by both at once, while
// events flow; `make test-race` runs it under the race detector. Afterwards every
// channel must be unsubscribed, and subscribing again must work.
func TestConcurrentSubscribers(t *testing.T) {
	t.Parallel()
	opt := redistest.Options(t)
	admin := newClient(t, opt)
	a, b, _ := twoReplicas(t, opt)
	topics := []upload.Topic{upload.UploadTopic("u1"), upload.UploadTopic("u2"), upload.UserTopic("alice")}
	// Stays throughout: a feed whose Subscribe gave up waiting for its
	// channel would have every feed resync, this one included.
	watcher := brokertest.Subscribe(t, b, upload.UserTopic("bob"))

	var stop atomic.Bool
	var publishers, churners sync.WaitGroup
	stopPublishing := func() {
		stop.Store(true)
		brokertest.Bounded(t, "the publisher stopping", publishers.Wait)
	}
	// Registered after the brokers' cleanups, so these run before them,
	// also when the test fails half-way: a broker is not closed under
	// goroutines still using it.
	t.Cleanup(stopPublishing)
	t.Cleanup(func() { brokertest.Bounded(t, "the churners ending", churners.Wait) })
	// A steady flow, not a flood: unpaced, the publisher queued events
	// far faster than b's one connection could take them (tens of
	// thousands a second under -race), each Subscribe's confirming PING
	// queued behind that backlog, and the churn took from 0.5 s to past
	// the hang guard's 20 s, depending on the machine's load.
	publishers.Go(func() {
		pace := time.NewTicker(time.Millisecond)
		defer pace.Stop()
		for v := int64(1); !stop.Load(); v++ {
			_ = a.Publish(context.Background(), brokertest.Event(fmt.Sprintf("u%d", v%2+1), "alice", v))
			<-pace.C
		}
	})
	for g := range 8 {
		churners.Go(func() {
			for i := range 25 {
				ctx, cancel := context.WithCancel(context.Background())
				f, err := b.Subscribe(ctx, topics[(g+i)%len(topics)])
				if err != nil {
					t.Errorf("Subscribe: %v", err)
					cancel()
					return
				}
				f.Drain()
				switch i % 3 {
				case 0:
					f.Close()
					f.Close()
				case 1:
					cancel()
				case 2:
					go cancel()
					f.Close()
				}
				cancel()
			}
		})
	}
	brokertest.Within(t, "churning subscribers", churners.Wait)
	stopPublishing()

	for _, topic := range topics {
		ch := b.channelName(topic)
		brokertest.Eventually(t, "no subscription left on "+ch, func() bool { return numSub(t, admin, ch) == 0 })
	}
	b.mu.Lock()
	left := len(b.channels)
	b.mu.Unlock()
	if left != 1 {
		t.Errorf("%d channels still counted, want 1 (the watcher's)", left)
	}
	if _, resync := watcher.Drain(); resync {
		t.Errorf("a subscriber was told to resync while Redis was up: some Subscribe went unconfirmed")
	}
	f := brokertest.Subscribe(t, b, upload.UploadTopic("u1"))
	brokertest.Publish(t, a, brokertest.Event("u1", "alice", 1<<40))
	brokertest.ReadEvent(t, f, "u1", 1<<40)
}

func TestSubscribeRefusesUnknownKind(t *testing.T) {
	t.Parallel()
	opt := redistest.Options(t)
	b := newBroker(t, newClient(t, opt), redistest.Prefix(t))

	if f, err := b.Subscribe(t.Context(), upload.Topic{Kind: "batch", ID: "b1"}); err == nil {
		f.Close()
		t.Errorf("Subscribe with an unknown kind: err = nil, want an error")
	}
	if n := b.Subscribers(); n != 0 {
		t.Errorf("%d subscribers, want 0", n)
	}
}

func TestClose(t *testing.T) {
	t.Parallel()
	opt := redistest.Options(t)
	client := newClient(t, opt)
	b, err := New(client, Options{Prefix: redistest.Prefix(t)})
	if err != nil {
		t.Fatal(err)
	}
	f, err := b.Subscribe(t.Context(), upload.UploadTopic("u1"))
	if err != nil {
		t.Fatal(err)
	}
	brokertest.Within(t, "Close", func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v, want nil", err)
	}
	f.Close() // a feed outliving its broker closes cleanly
	if _, err := b.Subscribe(t.Context(), upload.UploadTopic("u1")); err == nil {
		t.Errorf("Subscribe after Close: err = nil, want an error")
	}
	if err := b.Publish(t.Context(), brokertest.Event("u1", "alice", 1)); err == nil {
		t.Errorf("Publish after Close: err = nil, want an error")
	}
	if err := client.Ping(t.Context()).Err(); err != nil {
		t.Errorf("the caller's client after Close: %v, want it still open", err)
	}
}

// TestCloseWhilePublishing closes a broker that publishers go on using, as
// requests still running during a shutdown do: Close returns all the same,
// every Publish from the moment Close begins fails, and none blocks. (Close
// used to drain the queue until it found it empty, which a busy publisher
// never let happen: it hung.)
func TestCloseWhilePublishing(t *testing.T) {
	t.Parallel()
	opt := redistest.Options(t)
	b, err := New(newClient(t, opt), Options{Prefix: redistest.Prefix(t)})
	if err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var publishers sync.WaitGroup
	t.Cleanup(func() {
		stop.Store(true) // if Close hung, so the test still ends
		brokertest.Bounded(t, "the publishers stopping", publishers.Wait)
	})
	closing := make(chan struct{})
	var refusedBeforeClose atomic.Bool
	for p := range 4 {
		publishers.Go(func() {
			for v := int64(1); !stop.Load(); v++ {
				if err := b.Publish(context.Background(), brokertest.Event(fmt.Sprintf("u%d", p), "alice", v)); err != nil {
					select {
					case <-closing:
					default:
						refusedBeforeClose.Store(true)
					}
					return // refused: Close has begun
				}
			}
		})
	}
	// Until the queue has filled up at least once, so that Close starts
	// with a backlog and publishers waiting for room.
	brokertest.Eventually(t, "the publish queue full", func() bool { return len(b.outbox) == outboxSize })
	close(closing)
	closeBroker(t, b)
	brokertest.Within(t, "every publisher seeing Publish refused after Close", publishers.Wait)
	if refusedBeforeClose.Load() {
		t.Error("Publish refused before Close began")
	}
	if err := b.Publish(t.Context(), brokertest.Event("u1", "alice", 1)); err == nil {
		t.Error("Publish after Close: err = nil, want an error")
	}
}

// TestCloseLeavesNothingRunning counts the process's goroutines, so it is
// not parallel: parallel tests start only after the sequential ones end.
func TestCloseLeavesNothingRunning(t *testing.T) {
	opt := redistest.Options(t)
	prefix := redistest.Prefix(t)
	cycle := func() {
		client := goredis.NewClient(opt)
		defer client.Close()
		b, err := New(client, Options{Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		f := brokertest.Subscribe(t, b, upload.UploadTopic("u1"))
		brokertest.Publish(t, b, brokertest.Event("u1", "alice", 1))
		brokertest.ReadEvent(t, f, "u1", 1)
		brokertest.Within(t, "Close", func() {
			if err := b.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	cycle() // starts whatever go-redis keeps for the process
	before := runtime.NumGoroutine()
	cycle()
	brokertest.Eventually(t, "goroutines back to their number before the broker", func() bool {
		return runtime.NumGoroutine() <= before
	})
	// A goroutine that has just signalled Close may not have returned yet
	// (it shows, runnable, at its last line): give it the moment; one that
	// never ends fails here.
	buf := make([]byte, 1<<20)
	for stop := time.Now().Add(deadline); ; time.Sleep(5 * time.Millisecond) {
		stacks := string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(stacks, "progress/redis.(*Broker)") {
			return
		}
		if time.Now().After(stop) {
			t.Fatalf("a Broker goroutine is still running after %v:\n%s", deadline, stacks)
		}
	}
}

func TestOpen(t *testing.T) {
	t.Parallel()
	opt := redistest.Options(t)
	prefix := redistest.Prefix(t)
	url := fmt.Sprintf("redis://%s/%d", opt.Addr, opt.DB)
	if opt.Password != "" {
		url = fmt.Sprintf("redis://%s:%s@%s/%d", opt.Username, opt.Password, opt.Addr, opt.DB)
	}
	a, err := Open(t.Context(), openURL(t, url), Options{Prefix: prefix})
	if err != nil {
		t.Fatalf("Open(%s): %v", opt.Addr, err)
	}
	t.Cleanup(func() { closeBroker(t, a) })
	b, err := Open(t.Context(), openURL(t, url), Options{Prefix: prefix})
	if err != nil {
		t.Fatalf("Open(%s): %v", opt.Addr, err)
	}
	t.Cleanup(func() { closeBroker(t, b) }) // a no-op once closed below
	if err := b.Ping(t.Context()); err != nil {
		t.Errorf("Ping: %v", err)
	}
	f := brokertest.Subscribe(t, b, upload.UserTopic("alice"))
	brokertest.Publish(t, a, brokertest.Event("u1", "alice", 1))
	brokertest.ReadEvent(t, f, "u1", 1)

	closeBroker(t, b)
	if err := b.Ping(t.Context()); err == nil {
		t.Errorf("Ping after Close: err = nil, want an error (Open's client is closed with the broker)")
	}
}

// TestOpenFailures: a Redis that does not answer fails Open, and the
// error does not show the URL's password. (redisurl's tests hold the
// URLs refused before any connection.)
func TestOpenFailures(t *testing.T) {
	t.Parallel()
	const secret = "s3cret-password"
	ctx, cancel := context.WithTimeout(t.Context(), deadline)
	defer cancel()
	u, err := redisurl.Parse("redis://user:"+secret+"@"+redistest.FreeAddr(t)+"/0", redisurl.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(ctx, u, Options{})
	if err == nil {
		b.Close()
		t.Fatalf("Open of a Redis nobody listens for = nil error, want one")
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("Open's error reveals the password: %v", err)
	}
}

// --- outages ----------------------------------------------------------------

// TestRedisOutage stops a Redis under two replicas and starts it again:
// publishing fails fast meanwhile, subscribing still works, and afterwards
// every subscriber is told to resync and events flow again, also to feeds
// subscribed during the outage. The subscription reads down meanwhile,
// one loss, and up again after.
func TestRedisOutage(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	opt := &goredis.Options{Addr: srv.Addr}
	admin := newClient(t, opt)
	a, b, prefix := twoReplicas(t, opt)

	before := brokertest.Subscribe(t, b, upload.UploadTopic("u1"))
	leaving := brokertest.Subscribe(t, b, upload.UploadTopic("u3"))
	brokertest.Publish(t, a, brokertest.Event("u1", "alice", 1))
	brokertest.ReadEvent(t, before, "u1", 1)
	if !b.SubscriptionUp() || b.SubscriptionLosses() != 0 {
		t.Errorf("before the outage: subscription up %v, %d losses; want up, none", b.SubscriptionUp(), b.SubscriptionLosses())
	}

	srv.Kill()
	brokertest.Eventually(t, "the subscription reading down", func() bool { return !b.SubscriptionUp() })

	var err error
	brokertest.Within(t, "Publish with Redis down", func() { err = a.Publish(t.Context(), brokertest.Event("u1", "alice", 2)) })
	if err != nil {
		t.Fatalf("Publish with Redis down: %v, want it queued (nil)", err)
	}
	// The publishing goroutine cannot send it, and drops it.
	brokertest.Eventually(t, "the event published while Redis is down being dropped", func() bool { return a.Dropped() >= 1 })
	during := brokertest.Subscribe(t, b, upload.UploadTopic("u2")) // hang-guarded inside
	leaving.Close()

	srv.Start()

	for name, f := range map[string]upload.Feed{"subscribed before": before, "subscribed during": during} {
		r := brokertest.ReadUntil(t, f, name+": resync after reconnecting", func(r brokertest.Reading) bool { return r.Resync })
		if r.Has("u1", 2) {
			t.Errorf("%s: read the event whose Publish failed: %s", name, r)
		}
	}
	if !b.SubscriptionUp() || b.SubscriptionLosses() != 1 {
		t.Errorf("after the outage: subscription up %v, %d losses; want up, one", b.SubscriptionUp(), b.SubscriptionLosses())
	}
	// a's pool may still refuse for a moment after the restart.
	publishUntilRead(t, a, before, brokertest.Event("u1", "alice", 3))
	publishUntilRead(t, a, during, brokertest.Event("u2", "alice", 1))

	for ch, want := range map[string]int64{prefix + "upload:u1": 1, prefix + "upload:u2": 1, prefix + "upload:u3": 0} {
		if n := numSub(t, admin, ch); n != want {
			t.Errorf("after the restart: NUMSUB %s = %d, want %d", ch, n, want)
		}
	}
}

// TestSentinelFailovers runs replicas on a Redis that Sentinel fails
// over, given to Open as a sentinel URL. First a planned failover, as a
// rolling update does it, with the old primary left a primary the
// sentinel cannot demote (it refuses REPLICAOF, as a primary the
// sentinel cannot reach would stay one): the feed subscribed there must
// be told to resync and then hear the new primary's events while the
// old primary is still up and still a primary, since nothing but the
// sentinels' word ends its subscription there (redisurl.WatchPrimary).
// Then the old primary's host shuts down, and the new primary is
// killed. After each failover, an event published on one replica
// reaches the feeds of others, one subscribed before the failovers and
// one on the second primary (which hears only what is published there:
// the publisher moved too), and each feed whose subscription moved is
// told to resync.
func TestSentinelFailovers(t *testing.T) {
	t.Parallel()
	s := redistest.StartSentinels(t)
	prefix := redistest.Prefix(t)
	open := func() *Broker {
		b, err := Open(t.Context(), openURL(t, s.URL()), Options{Prefix: prefix})
		if err != nil {
			t.Fatalf("Open(%s): %v", s.URL(), err)
		}
		t.Cleanup(func() { closeBroker(t, b) })
		return b
	}
	a, b := open(), open()
	before := brokertest.Subscribe(t, b, upload.UploadTopic("u1"))
	brokertest.Publish(t, a, brokertest.Event("u1", "alice", 1))
	brokertest.ReadEvent(t, before, "u1", 1)

	first := s.Primary(t)
	old := redistest.Client(t, first.Addr)
	if err := old.Do(t.Context(), "ACL", "SETUSER", "default", "-replicaof", "-slaveof").Err(); err != nil {
		t.Fatalf("keeping %s from being demoted: %v", first.Addr, err)
	}
	start := time.Now()
	second, _ := s.FailOver(t)
	failedOver := time.Since(start)
	brokertest.ReadUntil(t, before, "a resync once the sentinel named a new primary", func(r brokertest.Reading) bool { return r.Resync })
	t.Logf("planned failover: ended %.1f s after SENTINEL FAILOVER, the feed's resync read %.1f s after it",
		failedOver.Seconds(), time.Since(start).Seconds())
	after := brokertest.Subscribe(t, open(), upload.UploadTopic("u1"))
	publishUntilRead(t, a, after, brokertest.Event("u1", "alice", 2))
	publishUntilRead(t, a, before, brokertest.Event("u1", "alice", 2))
	if role, err := old.Do(t.Context(), "ROLE").Slice(); err != nil || len(role) == 0 || role[0] != "master" {
		t.Fatalf("the old primary's ROLE: %v, %v; want it a primary still, or the test proves nothing", role, err)
	}
	if n := b.SubscriptionLosses(); n != 1 {
		t.Errorf("the subscription's losses after a move to a new primary: %d, want 1", n)
	}
	first.Stop()

	second.Kill()
	s.AwaitFailover(t, second)
	for name, f := range map[string]upload.Feed{"subscribed before": before, "subscribed on the second primary": after} {
		brokertest.ReadUntil(t, f, name+": a resync, its connection gone with the killed primary",
			func(r brokertest.Reading) bool { return r.Resync })
		publishUntilRead(t, a, f, brokertest.Event("u1", "alice", 3))
	}
	if err := a.Ping(t.Context()); err != nil {
		t.Errorf("Ping after the failovers: %v", err)
	}
}

// publishUntilRead publishes ev until f reads it: a broker's pool may
// still refuse for a moment after Redis restarts, and Publish only queues,
// so an event sent into the refusal is dropped.
func publishUntilRead(tb testing.TB, b *Broker, f upload.Feed, ev upload.Progress) {
	tb.Helper()
	brokertest.Eventually(tb, fmt.Sprintf("%s v%d published and read", ev.UploadID, ev.Version), func() bool {
		if err := b.Publish(tb.Context(), ev); err != nil {
			tb.Fatalf("Publish: %v", err)
		}
		select {
		case <-f.Ready():
			events, _ := f.Drain()
			for _, got := range events {
				if got.UploadID == ev.UploadID && got.Version == ev.Version {
					return true
				}
			}
		case <-time.After(200 * time.Millisecond):
		}
		return false
	})
}

// TestOwnEventsSkipRedis: a replica's subscribers hear its own events
// from Publish, at once, even from a Redis that never answers; and once,
// not again when Redis echoes them back, while the other replicas hear
// them through Redis.
func TestOwnEventsSkipRedis(t *testing.T) {
	t.Parallel()
	t.Run("a Redis that never answers", func(t *testing.T) {
		t.Parallel()
		b := newBroker(t, newClient(t, &goredis.Options{Addr: silentRedis(t), MaxRetries: -1}), redistest.Prefix(t))
		f := brokertest.Subscribe(t, b, upload.UploadTopic("u1"))
		brokertest.Publish(t, b, brokertest.Event("u1", "alice", 1))
		brokertest.ReadEvent(t, f, "u1", 1)
	})
	t.Run("the echo", func(t *testing.T) {
		t.Parallel()
		a, b, _ := twoReplicas(t, redistest.Options(t))
		own := brokertest.Subscribe(t, a, upload.UploadTopic("u1"))
		other := brokertest.Subscribe(t, b, upload.UploadTopic("u1"))
		brokertest.Publish(t, a, brokertest.Event("u1", "alice", 1))
		brokertest.ReadEvent(t, own, "u1", 1)
		brokertest.ReadEvent(t, other, "u1", 1)
		// Redis sends a the echo of v1 before b's v2 (one connection, in
		// order), so once own reads v2 the echo has been handled.
		brokertest.Publish(t, b, brokertest.Event("u1", "alice", 2))
		r := brokertest.ReadEvent(t, own, "u1", 2)
		if r.Has("u1", 1) || len(r.Events) != 1 || r.Resync {
			t.Errorf("after its own v1, a's subscriber read %s; want only b's v2", r)
		}
	})
}

// silentRedis returns the address of a server that accepts connections
// and never answers.
func silentRedis(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered
		}
	}()
	return ln.Addr().String()
}

// TestPublishDoesNotWaitForRedis: against a Redis that accepts
// connections and never answers, Publish returns without an error, every
// time, within the deadline: the event waits in the queue, not the
// request (only the call that finds the queue full before the first
// round trip has failed waits, up to one publishTimeout). The events
// Redis never took are dropped and counted, and Close gives up on what is
// left after one bounded round trip.
func TestPublishDoesNotWaitForRedis(t *testing.T) {
	t.Parallel()
	client := newClient(t, &goredis.Options{Addr: silentRedis(t), MaxRetries: -1})
	b, err := New(client, Options{Prefix: redistest.Prefix(t)})
	if err != nil {
		t.Fatal(err)
	}
	n := outboxSize + publishBatch + 100
	brokertest.Within(t, fmt.Sprintf("%d Publish calls to a Redis that never answers", n), func() {
		for v := range n {
			if err := b.Publish(t.Context(), brokertest.Event("u1", "alice", int64(v+1))); err != nil {
				t.Errorf("Publish %d: %v, want it queued", v, err)
				return
			}
		}
	})
	if d := b.Dropped(); d < 100 {
		t.Errorf("dropped %d events, want at least 100: the queue holds %d and a round trip %d", d, outboxSize, publishBatch)
	}
	brokertest.Within(t, "Close", func() {
		// Giving up on the silent Redis at Close's bound is allowed: a
		// go-redis read that outlasts the broker's own deadlines has been
		// seen here under load.
		if err := b.Close(); err != nil && !errors.Is(err, errCloseTimedOut) {
			t.Errorf("Close: %v", err)
		}
	})
	if err := b.Publish(t.Context(), brokertest.Event("u1", "alice", 1)); err == nil {
		t.Error("Publish after Close: err = nil, want an error")
	}
}

// TestCloseIsBounded: with a client whose reads have no deadline at all
// (no context deadline honoured, no read timeout), a Redis that accepts
// connections and never answers holds go-redis inside a read forever: the
// subscription connection's handshake, under the PubSub's lock Close
// needs, and the last publishes' round trip. Close still returns within
// its bound, and says it gave up.
func TestCloseIsBounded(t *testing.T) {
	t.Parallel()
	addr := silentRedis(t)
	client := goredis.NewClient(&goredis.Options{Addr: addr, MaxRetries: -1, ReadTimeout: -2, WriteTimeout: -2})
	t.Cleanup(func() { brokertest.Bounded(t, "closing the client", func() { _ = client.Close() }) })
	b, err := New(client, Options{Prefix: redistest.Prefix(t)})
	if err != nil {
		t.Fatal(err)
	}
	brokertest.Subscribe(t, b, upload.UploadTopic("u1")) // dials and stays in the handshake
	brokertest.Publish(t, b, brokertest.Event("u1", "alice", 1))
	brokertest.Within(t, "Close", func() { err = b.Close() })
	if !errors.Is(err, errCloseTimedOut) {
		t.Errorf("Close = %v, want an error saying it gave up on Redis", err)
	}
}

// TestDeadConnectionIsNoticed cuts the subscription connection without
// closing it, as a network partition does: the health ping goes
// unanswered, the broker reconnects, and its subscribers resync.
func TestDeadConnectionIsNoticed(t *testing.T) {
	t.Parallel()
	opt := redistest.Options(t)
	prefix := redistest.Prefix(t)
	px := startProxy(t, opt.Addr)
	a := newBroker(t, newClient(t, opt), prefix)
	viaProxy := *opt
	viaProxy.Addr = px.addr()
	b := newBroker(t, newClient(t, &viaProxy), prefix)

	f := brokertest.Subscribe(t, b, upload.UploadTopic("u1"))
	brokertest.Publish(t, a, brokertest.Event("u1", "alice", 1))
	brokertest.ReadEvent(t, f, "u1", 1)

	px.partition()
	brokertest.Publish(t, a, brokertest.Event("u1", "alice", 2)) // lost on the way to b

	r := brokertest.ReadUntil(t, f, "resync after the partition", func(r brokertest.Reading) bool { return r.Resync })
	if r.Has("u1", 2) {
		t.Errorf("read an event sent into the partition: %s", r)
	}
	brokertest.Publish(t, a, brokertest.Event("u1", "alice", 3))
	brokertest.ReadEvent(t, f, "u1", 3)
}

// proxy forwards TCP connections to a target; partition makes the
// connections open so far silently drop everything, both ways, while new
// ones work.
type proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	links []*link
}

type link struct {
	client, server net.Conn
	cut            atomic.Bool
}

func startProxy(tb testing.TB, target string) *proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			l := &link{client: c, server: s}
			p.mu.Lock()
			p.links = append(p.links, l)
			p.mu.Unlock()
			wg.Go(func() { l.pipe(s, c) })
			wg.Go(func() { l.pipe(c, s) })
		}
	})
	tb.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, l := range p.links {
			l.client.Close()
			l.server.Close()
		}
		p.mu.Unlock()
		brokertest.Bounded(tb, "the proxy's goroutines ending", wg.Wait)
	})
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) partition() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.links {
		l.cut.Store(true)
	}
}

// pipe copies from src to dst until either closes, dropping what it reads
// once the link is cut. A side closing closes the whole link.
func (l *link) pipe(dst, src net.Conn) {
	defer l.client.Close()
	defer l.server.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !l.cut.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
