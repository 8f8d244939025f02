// Package redis fans upload progress out across spool replicas through
// Redis pub/sub (docs/DESIGN.md §Progress fan-out). Events go to one
// channel per upload and one per user (<prefix>upload:<id>,
// <prefix>user:<id>). Each Broker holds one Redis connection for all the
// subscribers of its process, listens only on the channels they need, and
// hands what it hears from other replicas to an in-process progress.Hub,
// which owns the per-subscriber mailboxes and their collapse to the latest
// state per upload. Its own events go to that hub directly.
//
// Pub/sub is at most once and the database stays the truth. Publish does
// not wait for Redis: it queues the event for one publishing goroutine,
// which sends what has queued in one round trip, in order (only a burst
// that fills the bounded queue waits for room). While Redis is
// unreachable the events it cannot send, and those that find the queue
// full, are dropped and counted (uploads go on at full speed);
// Subscribe still succeeds, and once the connection is back every local
// subscriber is told to read a fresh snapshot, so no change, terminal
// states included, is missed for good.
package redis

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/extra/redisotel/v9"
	goredis "github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

	"github.com/spoolhq/spool/internal/progress"
	"github.com/spoolhq/spool/internal/redisurl"
	"github.com/spoolhq/spool/internal/upload"
)

const (
	// publishTimeout bounds one round trip of the publishing goroutine,
	// including dialing; no request waits for it.
	publishTimeout = 2 * time.Second
	// outboxSize bounds the events queued for publishing (about 1 KiB
	// each): what Redis cannot take meanwhile is dropped, and subscribers
	// resync from the database when it is back.
	outboxSize = 4096
	// publishBatch is the most events sent in one round trip.
	publishBatch = 256
	// confirmTimeout bounds how long Subscribe waits for Redis to confirm a
	// new channel. Past it Subscribe returns anyway and the feed is told to
	// resync once the confirmation comes.
	confirmTimeout = 2 * time.Second
	// commandTimeout bounds each SUBSCRIBE, UNSUBSCRIBE and PING written on
	// the subscription connection, including dialing it.
	commandTimeout = 2 * time.Second
	// idleTimeout is how long the subscription connection may stay silent
	// before it is pinged, and pongTimeout how long that ping may go
	// unanswered before the connection counts as dead. Together they bound
	// how long a connection that died without closing (a network partition)
	// goes unnoticed.
	idleTimeout = 2 * time.Second
	pongTimeout = 2 * time.Second
	// Reconnection attempts back off from minBackoff to maxBackoff.
	minBackoff = 50 * time.Millisecond
	maxBackoff = time.Second
	// closeTimeout bounds Close. Its steps are each bounded already (the
	// last publishes by publishTimeout, then a command or a dial holding
	// go-redis's PubSub lock by commandTimeout or idleTimeout), but a read
	// inside go-redis that has no deadline (a client without
	// ContextTimeoutEnabled and with no read timeout, or a path of go-redis
	// that sets none) would otherwise hold a replica's shutdown for as long
	// as Redis stays silent.
	closeTimeout = publishTimeout + commandTimeout + 2*time.Second
)

var (
	errClosed = errors.New("progress/redis: broker is closed")
	// errCloseTimedOut is Close giving up on Redis after closeTimeout.
	errCloseTimedOut = errors.New("redis did not let the broker stop within " + closeTimeout.String())
)

// Options configures a Broker. The zero value is usable.
type Options struct {
	// Prefix starts the name of every channel, so several deployments can
	// share one Redis. Default "spool:". On a cluster it is put in braces
	// ("{spool:}") unless it holds a hash tag already.
	Prefix string
	// Logger receives connection losses and recoveries and dropped
	// messages. Default slog.Default().
	Logger *slog.Logger
	// TracerProvider, when set, traces the commands of the client Open
	// makes (redisotel, without their arguments: a PUBLISH's are the
	// event). A batch of publishes is traced as a child of the request
	// that published its first event; give a provider that starts spans
	// only under a parent (telemetry.ChildSpansOnly) so the connection's
	// own pings are not traced.
	TracerProvider trace.TracerProvider
}

// Broker is an upload.Broker that crosses replicas through Redis pub/sub.
// Its methods are safe for concurrent use.
type Broker struct {
	client     goredis.UniversalClient
	ownsClient bool
	// pubsub is the subscription: replaced (under psMu) when the
	// sentinels name a new primary, see resubscribe.
	pubsub atomic.Pointer[goredis.PubSub]
	hub    *progress.Hub
	prefix string
	log    *slog.Logger
	// origin names this Broker in the events it publishes, so it can
	// skip them when Redis echoes them back: Publish has delivered them
	// to this replica's subscribers already.
	origin string
	// cluster is client when it is a Redis Cluster's, nil otherwise: see
	// publisher, renewSlots and anchor.
	cluster *goredis.ClusterClient

	ctx    context.Context // done once Close is called
	cancel context.CancelFunc
	wg     sync.WaitGroup
	wake   chan struct{} // holds at most one token: the channels needed changed

	// outbox holds the events Publish queued for publishLoop, which sends
	// them in order; stopPublishing makes it send what is left and end.
	// publishMu guards the queue's entry: Publish holds it to read, and
	// Close sets publishClosed under it, after which no event enters, so
	// the last drain ends however busy the publishers are.
	outbox         chan queued
	publishMu      sync.RWMutex
	publishClosed  bool
	stopPublishing chan struct{}
	published      sync.WaitGroup
	// dropped counts events never sent: the queue was full or Redis failed.
	dropped atomic.Int64
	// dropping is set while events are being dropped, so an outage is
	// logged when it starts and when it ends, not per event.
	dropping atomic.Bool
	// losses counts the subscription connection's losses and moves to a
	// new primary (markDown), after each of which the feeds resync.
	losses atomic.Int64

	// psMu serialises what is written on the subscription connection, so
	// that the channels a ping covers are exactly those go-redis holds when
	// the ping is written. subscribed mirrors that set.
	psMu       sync.Mutex
	subscribed map[string]bool

	mu       sync.Mutex
	closed   bool
	channels map[string]*channel // channels with at least one local feed
	pings    map[string]ping     // unanswered pings by payload
	seq      uint64              // numbers the pings
	// down is set when the connection was lost, and cleared when a ping
	// sent since is answered; every ping sent meanwhile resyncs the hub.
	down      bool
	resyncing bool // a ping sent while down is unanswered
}

// channel is one Redis channel that local feeds listen on.
type channel struct {
	refs int
	// confirmed is set once Redis has answered a ping written after the
	// channel was subscribed on the current connection: from then on no
	// event published to it can miss this replica. ready is closed then.
	confirmed bool
	ready     chan struct{}
	// late records that a feed stopped waiting for the confirmation, so its
	// owner may have read its snapshot too early; the hub is resynced when
	// the confirmation comes.
	late bool
}

// ping is a PING written on the subscription connection. Redis answers
// commands in order, so its answer proves every channel subscribed before
// it is in effect.
type ping struct {
	cover  []*channel // channels it confirms
	resync bool       // sent while down: its answer means the connection is back
}

var (
	_ upload.Broker = (*Broker)(nil)
	_ upload.Pinger = (*Broker)(nil)
)

// Open connects to the Redis u names (redisurl.Open) and returns a
// Broker that owns the client and closes it with itself. Commands are
// bounded by their context's deadline. It fails if Redis does not answer
// a PING within ctx.
//
// Through sentinels, the publishing connections and the subscription
// move to a new primary as the sentinels announce it (the subscription
// through a watch of the broker's own, redisurl.WatchPrimary, and a
// resync of its feeds: resubscribe). On a cluster the
// broker publishes and subscribes on the master of one slot (publisher),
// and follows it to its replica when it fails (docs/DESIGN.md, "A Redis
// that fails over").
func Open(ctx context.Context, u *redisurl.URL, opts Options) (*Broker, error) {
	// Without ContextTimeout go-redis ignores deadlines while waiting for
	// a reply, and Publish's timeout would not hold when Redis stops
	// answering.
	client := u.NewClient(redisurl.Tuning{ContextTimeout: true})
	if opts.TracerProvider != nil {
		if err := redisotel.InstrumentTracing(client, redisotel.WithTracerProvider(opts.TracerProvider),
			redisotel.WithDBStatement(false)); err != nil {
			_ = client.Close()
			return nil, fmt.Errorf("progress/redis: tracing: %w", err)
		}
	}
	if err := client.Ping(ctx).Err(); err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("progress/redis: reaching redis at %s: %w", u.Where(), err)
	}
	b, err := New(client, opts)
	if err != nil {
		_ = client.Close()
		return nil, err
	}
	b.ownsClient = true
	if u.Kind() == "sentinel" {
		b.wg.Go(func() {
			u.WatchPrimary(b.ctx, b.log, b.resubscribe)
		})
	}
	return b, nil
}

// New returns a Broker that publishes with client (of one server, a
// primary found through sentinels, or a cluster) and opens one more
// connection of client's for all its subscribers. The caller keeps
// ownership of client and closes it after the Broker. Publish's timeout
// bounds waits for replies only if client has ContextTimeoutEnabled (Open
// sets it); otherwise the client's read timeout does.
//
// New does no I/O: a Redis that is down at start is handled like an
// outage. Given a sentinels' client, its subscription leaves an old
// primary only once that server drops it: Open also watches the
// sentinels.
func New(client goredis.UniversalClient, opts Options) (*Broker, error) {
	if client == nil {
		return nil, errors.New("progress/redis: nil client")
	}
	if opts.Prefix == "" {
		opts.Prefix = "spool:"
	}
	cluster, _ := client.(*goredis.ClusterClient)
	if cluster != nil && !hashTagged(opts.Prefix) {
		// Every channel in one slot, so on one node: see publisher.
		opts.Prefix = "{" + opts.Prefix + "}"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	origin := make([]byte, 12)
	if _, err := rand.Read(origin); err != nil {
		return nil, fmt.Errorf("progress/redis: naming the broker: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Broker{
		origin:     base64.RawURLEncoding.EncodeToString(origin),
		client:     client,
		cluster:    cluster,
		hub:        progress.NewHub(),
		prefix:     opts.Prefix,
		log:        opts.Logger.With("component", "progress/redis"),
		ctx:        ctx,
		cancel:     cancel,
		wake:       make(chan struct{}, 1),
		subscribed: make(map[string]bool),
		channels:   make(map[string]*channel),
		pings:      make(map[string]ping),

		outbox:         make(chan queued, outboxSize),
		stopPublishing: make(chan struct{}),
	}
	b.pubsub.Store(client.Subscribe(ctx)) // no channel yet: does not connect
	b.wg.Add(2)
	go b.receive()
	go b.syncChannels()
	b.published.Go(b.publishLoop)
	return b, nil
}

// Close stops the Broker: it closes the subscription connection, waits for
// the Broker's goroutines to end, and closes the client if Open made it.
// Feeds stay open but receive nothing more; Subscribe and Publish fail.
// It returns within closeTimeout whatever Redis does: past it, it closes
// the client if it owns it (which ends the reads on its connections) and
// returns an error, leaving the goroutines still inside go-redis to end
// when their reads do. It is safe to call more than once; later calls
// return nil.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()

	// No event enters the queue from now on (a Publish waiting for room
	// holds this off for at most publishTimeout). What was published
	// before goes out first, within one publishTimeout: a replica that
	// stops must not swallow the last events of the uploads it served.
	b.publishMu.Lock()
	b.publishClosed = true
	b.publishMu.Unlock()
	close(b.stopPublishing)
	stopped := make(chan error, 1)
	go func() {
		b.published.Wait()
		b.cancel() // ends waits, backoffs, dials and the primary's watch
		err := b.pubsub.Load().Close()
		if errors.Is(err, goredis.ErrClosed) {
			err = nil // closed by a resubscribe that saw Close begin
		}
		b.wg.Wait()
		stopped <- err
	}()
	timer := time.NewTimer(closeTimeout)
	defer timer.Stop()
	var err error
	select {
	case err = <-stopped:
	case <-timer.C:
		b.cancel()
		err = errCloseTimedOut
		b.log.Warn("gave up waiting for Redis while closing", "err", err)
	}
	if b.ownsClient {
		err = errors.Join(err, b.client.Close())
	}
	if err != nil {
		return fmt.Errorf("progress/redis: closing: %w", err)
	}
	return nil
}

// Ping reports whether Redis answers, for /readyz. It returns the client's
// error, wrapped, if not.
func (b *Broker) Ping(ctx context.Context) error {
	if err := b.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("progress/redis: pinging redis: %w", err)
	}
	return nil
}

// Subscribers returns the number of live feeds of this replica, for tests
// and metrics.
func (b *Broker) Subscribers() int { return b.hub.Subscribers() }

// Publish hands ev to this replica's subscribers at once, as the
// in-process hub does, then queues it for the channels of its upload and
// of its owner, for the other replicas, and returns: no request waits for
// Redis while the queue has room. Redis's echo of it is skipped
// (docs/DESIGN.md §Progress fan-out: a hop through Redis and back cost a
// local subscriber a goroutine wake-up queued behind every busy request). Events go
// out in the order they were published, several in one round trip. A full
// queue while Redis answers is a burst: Publish waits for room, at most
// publishTimeout, since an event dropped while the connection stays up
// would never be made up by a resync. While Redis is failing, ev is
// dropped at once and counted (Dropped); subscribers resync from the
// database when the connection is back. It returns an error once Close
// has begun.
func (b *Broker) Publish(ctx context.Context, ev upload.Progress) error {
	b.publishMu.RLock()
	defer b.publishMu.RUnlock()
	if b.publishClosed {
		return errClosed
	}
	_ = b.hub.Publish(ctx, ev) // never fails nor blocks
	q := queued{ev: ev, span: trace.SpanContextFromContext(ctx)}
	select {
	case b.outbox <- q:
		return nil
	default:
	}
	if b.dropping.Load() {
		b.drop(1, errors.New("the publish queue is full"))
		return nil
	}
	wait := time.NewTimer(publishTimeout)
	defer wait.Stop()
	select {
	case b.outbox <- q:
	case <-wait.C:
		b.drop(1, errors.New("the publish queue stayed full"))
	}
	return nil
}

// Superseded returns how many events this replica's subscribers never
// read because a newer one of the same upload replaced them (see
// progress.Hub.Superseded), for metrics.
func (b *Broker) Superseded() int64 { return b.hub.Superseded() }

// Dropped returns how many events were never sent to Redis, for tests and
// metrics.
func (b *Broker) Dropped() int64 { return b.dropped.Load() }

// SubscriptionUp reports whether the subscription connection is up, as
// far as the Broker knows: false from its loss (or a move to a new
// primary) until a ping on the next one is answered. Events of other
// replicas reach this replica's subscribers only while it is up, and
// publishing may succeed meanwhile, so Dropped does not show it. For
// metrics and tests.
func (b *Broker) SubscriptionUp() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.down
}

// SubscriptionLosses returns how many times the subscription connection
// was lost or moved to a new primary; after each, every local feed was
// told to resync from the database. For metrics and tests.
func (b *Broker) SubscriptionLosses() int64 { return b.losses.Load() }

// queued is an event waiting to be published, with the span of the
// request that published it (invalid when none was traced).
type queued struct {
	ev   upload.Progress
	span trace.SpanContext
}

// publishLoop sends the queued events until Close, then what is left.
func (b *Broker) publishLoop() {
	batch := make([]queued, 0, publishBatch)
	for {
		select {
		case q := <-b.outbox:
			batch = b.fill(append(batch[:0], q))
			// The round trip joins the trace of the first event's request
			// (the others' requests went on without waiting for it).
			ctx, cancel := context.WithTimeout(trace.ContextWithSpanContext(context.Background(), q.span), publishTimeout)
			b.send(ctx, batch)
			cancel()
		case <-b.stopPublishing:
			// Nothing enters the queue any more. One publishTimeout for
			// all that is left: what Redis has not taken by then is
			// dropped without trying (a client without
			// ContextTimeoutEnabled would wait out its read timeout on
			// every batch).
			ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
			defer cancel()
			for {
				batch = b.fill(batch[:0])
				if len(batch) == 0 {
					return
				}
				if err := ctx.Err(); err != nil {
					b.drop(len(batch), fmt.Errorf("closing: %w", err))
					continue
				}
				b.send(ctx, batch)
			}
		}
	}
}

// fill adds what is waiting in the queue to batch, up to publishBatch.
func (b *Broker) fill(batch []queued) []queued {
	for len(batch) < publishBatch {
		select {
		case q := <-b.outbox:
			batch = append(batch, q)
		default:
			return batch
		}
	}
	return batch
}

// send publishes batch in one round trip within ctx, or drops it.
func (b *Broker) send(ctx context.Context, batch []queued) {
	publisher, err := b.publisher(ctx)
	if err != nil {
		b.renewSlots()
		b.drop(len(batch), err)
		return
	}
	_, err = publisher.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for _, q := range batch {
			ev := q.ev
			payload, err := encodeEvent(ev, b.origin)
			if err != nil {
				b.log.Error("encoding a progress event failed", "upload_id", ev.UploadID, "err", err)
				continue
			}
			p.Publish(ctx, b.channelName(upload.UploadTopic(ev.UploadID)), payload)
			p.Publish(ctx, b.channelName(upload.UserTopic(ev.OwnerID)), payload)
		}
		return nil
	})
	if err != nil {
		b.renewSlots()
		b.drop(len(batch), err)
		return
	}
	if b.dropping.CompareAndSwap(true, false) {
		b.log.Info("publishing progress again", "dropped_so_far", b.dropped.Load())
	}
}

// publisher returns the client that publishes: the broker's own, or on a
// cluster the client of the master of the slot all the broker's channels
// are in. On a cluster New puts the prefix in braces (a hash tag), so
// every channel of a deployment hashes to one slot: go-redis opens the
// subscription connection on that slot's master, and publisher sends
// every PUBLISH there too. The cluster hands each PUBLISH to all its nodes
// whichever node takes it, so this costs it nothing, and it keeps what
// one server gives. Events published one after another reach a replica
// in that order (go-redis would send each PUBLISH, a command without a
// key, to a node of its choosing, and two events sent to two nodes arrive
// in either order). And a node that fails takes the publishing and the
// subscriptions with it, so the feeds resync, where events dropped while
// one node was down would be lost for good to subscribers on another
// (TestClusterFailover). The lookup reads go-redis's map of the slots,
// which renewSlots renews when a node fails.
func (b *Broker) publisher(ctx context.Context) (goredis.Cmdable, error) {
	if b.cluster != nil {
		return b.cluster.MasterForKey(ctx, b.prefix)
	}
	return b.client, nil
}

// anchor is, on a cluster, a channel in the slot of the broker's channels
// that nothing is published on, subscribed for the broker's life:
// go-redis opens a subscription connection on the master of the slot of
// a channel it has, and on a node of its choosing when it has none, as
// before the first feed or after the last (see publisher). It is not in
// subscribed, so syncOnce never drops it.
func (b *Broker) anchor() string { return b.prefix + "anchor" }

// hashTagged reports whether a Redis Cluster hashes only part of a name
// starting with prefix: the part in its first braces, when not empty.
func hashTagged(prefix string) bool {
	open := strings.IndexByte(prefix, '{')
	return open >= 0 && strings.IndexByte(prefix[open+1:], '}') > 0
}

// renewSlots has go-redis read a cluster's map of its slots again, after
// a command or a connection failed: it otherwise does so only when a node
// redirects a command (MOVED) or once a minute, and meanwhile a failed
// master's slots still lead to it, so the subscription connection dialled
// it again and again, and publishing went on failing. go-redis reads the
// map in the background, at most once at a time. Nothing for one server.
func (b *Broker) renewSlots() {
	if b.cluster != nil {
		b.cluster.ReloadState(b.ctx)
	}
}

// drop counts n events that will never be sent, logging the first of an
// outage.
func (b *Broker) drop(n int, cause error) {
	b.dropped.Add(int64(n))
	if b.dropping.CompareAndSwap(false, true) {
		b.log.Warn("dropping progress events until Redis takes them again; subscribers will resync", "err", cause)
	}
}

// Subscribe registers a feed for topic and, if it is the first local one,
// subscribes the topic's channel. It returns once Redis has confirmed the
// channel, so events published anywhere afterwards reach the feed; if Redis
// is unreachable or slow it returns sooner, and the feed reports a resync
// once the channel is confirmed. The feed lives until it is closed or ctx
// is done.
//
// It returns ctx.Err() if ctx ends first, an error for an unknown topic
// kind, and an error after Close.
func (b *Broker) Subscribe(ctx context.Context, topic upload.Topic) (upload.Feed, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if topic.Kind != upload.TopicUpload && topic.Kind != upload.TopicUser {
		return nil, fmt.Errorf("progress/redis: unknown topic kind %q", topic.Kind)
	}
	name := b.channelName(topic)
	// The hub registers the feed first, so an event that arrives as soon as
	// the channel is subscribed finds it. The hub must not end the feed
	// when ctx ends: ours does, to give the channel back exactly once.
	inner, err := b.hub.Subscribe(context.WithoutCancel(ctx), topic)
	if err != nil {
		return nil, err
	}
	ch, err := b.acquire(name)
	if err != nil {
		inner.Close()
		return nil, err
	}
	f := &feed{Feed: inner, broker: b, channel: name}
	f.stopWatch = context.AfterFunc(ctx, f.shutdown)
	b.awaitConfirmation(ctx, ch)
	if err := ctx.Err(); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func (b *Broker) channelName(t upload.Topic) string {
	return b.prefix + string(t.Kind) + ":" + t.ID
}

// acquire counts one more local feed on the channel name, creating it and
// waking the syncer if it is new.
func (b *Broker) acquire(name string) (*channel, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errClosed
	}
	ch := b.channels[name]
	if ch == nil {
		ch = &channel{ready: make(chan struct{})}
		b.channels[name] = ch
		b.signalSyncer()
	}
	ch.refs++
	return ch, nil
}

// release counts one feed less on the channel name, dropping the channel
// and waking the syncer when it was the last.
func (b *Broker) release(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ch := b.channels[name]
	ch.refs--
	if ch.refs == 0 {
		delete(b.channels, name)
		b.signalSyncer()
	}
}

// signalSyncer wakes the syncer without blocking; b.mu must be held. A
// token already waiting means the syncer has yet to read the channels and
// will see this change too.
func (b *Broker) signalSyncer() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// awaitConfirmation waits until ch is confirmed, ctx or the Broker ends,
// or confirmTimeout passes. It does not wait while the connection is known
// to be down. If it gives up, the hub is resynced when the confirmation
// comes.
func (b *Broker) awaitConfirmation(ctx context.Context, ch *channel) {
	b.mu.Lock()
	confirmed, down, ready := ch.confirmed, b.down, ch.ready
	b.mu.Unlock()
	if confirmed {
		return
	}
	if !down {
		timer := time.NewTimer(confirmTimeout)
		defer timer.Stop()
		select {
		case <-ready:
			return
		case <-timer.C:
		case <-ctx.Done():
		case <-b.ctx.Done():
		}
	}
	b.mu.Lock()
	if !ch.confirmed {
		ch.late = true
	}
	b.mu.Unlock()
}

// feed is a hub feed that gives its channel back when it ends.
type feed struct {
	upload.Feed
	broker    *Broker
	channel   string
	stopWatch func() bool // cancels the ctx watcher set up by Subscribe
	once      sync.Once
}

var _ upload.NotifyingFeed = (*feed)(nil)

// OnReady passes fn to the hub feed underneath.
func (f *feed) OnReady(fn func()) { f.Feed.(upload.NotifyingFeed).OnReady(fn) }

// Close stops the feed and, if it was the last local one on its channel,
// has the channel unsubscribed. It never waits for Redis, and is safe to
// call more than once and concurrently with the feed's ctx ending.
func (f *feed) Close() {
	f.stopWatch()
	f.shutdown()
}

func (f *feed) shutdown() {
	f.once.Do(func() {
		f.Feed.Close()
		f.broker.release(f.channel)
	})
}
