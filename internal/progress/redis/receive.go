package redis

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/spoolhq/spool/internal/upload"
)

// pingPrefix starts the payload of every PING the Broker sends, which Redis
// echoes back so the answer can be matched to its ping.
const pingPrefix = "spool-progress-"

// syncChannels makes the subscription connection listen on exactly the
// channels that have local feeds. Being the only goroutine that subscribes
// and unsubscribes, it can never reorder a SUBSCRIBE and an UNSUBSCRIBE of
// the same channel, and feeds that come and go never wait for Redis.
func (b *Broker) syncChannels() {
	defer b.wg.Done()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-b.wake:
		}
		b.syncOnce()
	}
}

func (b *Broker) syncOnce() {
	ctx, cancel := context.WithTimeout(b.ctx, commandTimeout)
	defer cancel()

	b.psMu.Lock()
	b.mu.Lock()
	var add, drop []string
	for name := range b.channels {
		if !b.subscribed[name] {
			add = append(add, name)
		}
	}
	for name := range b.subscribed {
		if b.channels[name] == nil {
			drop = append(drop, name)
		}
	}
	b.mu.Unlock()
	var err error
	if len(drop) > 0 {
		// go-redis forgets the channels even when the command fails, so
		// they are not subscribed again on its next connection.
		err = b.pubsub.Load().Unsubscribe(ctx, drop...)
		for _, name := range drop {
			delete(b.subscribed, name)
		}
	}
	if len(add) > 0 {
		// go-redis remembers the channels even when the command fails, and
		// subscribes them again first thing on its next connection.
		err = errors.Join(err, b.pubsub.Load().Subscribe(ctx, add...))
		for _, name := range add {
			b.subscribed[name] = true
		}
	}
	b.psMu.Unlock()

	if err != nil {
		b.connectionLost(err)
		return
	}
	// A channel may be new to the feeds but not to go-redis (its last feed
	// left and a new one came before this ran), so look at them all.
	if b.awaitsPing() {
		_ = b.sendPing() // a failure is handled inside
	}
}

// awaitsPing reports whether a local channel waits for a ping to be
// confirmed, while the connection is up; when it is down, the ping that
// brings it back confirms them all.
func (b *Broker) awaitsPing() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.down {
		return false
	}
	for _, ch := range b.channels {
		if !ch.confirmed {
			return true
		}
	}
	return false
}

// sendPing writes a PING that, once answered, confirms every channel
// subscribed so far and, if the connection was down, resyncs the hub. If
// the PubSub has no connection, go-redis dials one and subscribes all its
// channels before writing the PING. A failure counts as a lost connection.
func (b *Broker) sendPing() error {
	ctx, cancel := context.WithTimeout(b.ctx, commandTimeout)
	defer cancel()
	b.psMu.Lock()
	defer b.psMu.Unlock()

	b.mu.Lock()
	b.seq++
	payload := pingPrefix + strconv.FormatUint(b.seq, 10)
	p := ping{resync: b.down}
	for name := range b.subscribed {
		if ch := b.channels[name]; ch != nil && !ch.confirmed {
			p.cover = append(p.cover, ch)
		}
	}
	b.pings[payload] = p
	if p.resync {
		b.resyncing = true
	}
	b.mu.Unlock()

	if err := b.pubsub.Load().Ping(ctx, payload); err != nil {
		b.connectionLost(err)
		return err
	}
	return nil
}

// answered handles Redis's answer to a ping: the channels it covers are
// confirmed, and if the connection had been lost, or a feed stopped waiting
// for one of these channels, every local feed is told to resync.
func (b *Broker) answered(payload string) {
	b.mu.Lock()
	p, ok := b.pings[payload]
	if !ok { // a ping of a connection since lost
		b.mu.Unlock()
		return
	}
	delete(b.pings, payload)
	resync := p.resync
	for _, ch := range p.cover {
		if ch.confirmed {
			continue
		}
		ch.confirmed = true
		close(ch.ready)
		if ch.late {
			ch.late = false
			resync = true
		}
	}
	restored := p.resync && b.down
	if p.resync {
		b.down, b.resyncing = false, false
	}
	b.mu.Unlock()

	if restored {
		b.log.Info("redis progress connection restored; resyncing subscribers", "subscribers", b.hub.Subscribers())
	}
	if resync {
		// Only now: a snapshot read before the channels were subscribed
		// again could miss a change published in between.
		b.hub.Resync()
	}
}

// connectionLost records that events may have been lost (markDown), and
// logs it if the connection was up.
func (b *Broker) connectionLost(err error) {
	if b.markDown() {
		b.log.Warn("redis progress connection lost; reconnecting", "err", err)
	}
}

// markDown records that events may have been lost: no channel counts as
// confirmed until a ping on a new connection is answered, and the answer
// to that ping resyncs the hub. It reports whether the connection was up
// (and the Broker open) until now.
func (b *Broker) markDown() (wasUp bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	wasUp = !b.down
	if wasUp {
		b.losses.Add(1)
	}
	b.down, b.resyncing = true, false
	clear(b.pings)
	for _, ch := range b.channels {
		if ch.confirmed {
			ch.confirmed = false
			ch.ready = make(chan struct{})
		}
	}
	return wasUp
}

// needsResyncPing reports whether the connection is down with no ping
// underway to bring it back.
func (b *Broker) needsResyncPing() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.down && !b.resyncing
}

// confirmedChannel reports whether name is a local channel confirmed on the
// current connection.
func (b *Broker) confirmedChannel(name string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	ch := b.channels[name]
	return ch != nil && ch.confirmed
}

// receive is the one goroutine that reads the subscription connection. It
// hands events to the hub, matches ping answers, pings the connection when
// it is quiet, and after a loss pings until go-redis has reconnected (it
// does so on the next command) so the answer can resync the hub.
func (b *Broker) receive() {
	defer b.wg.Done()
	if b.cluster != nil {
		// Before the first read, which would connect without a channel.
		// go-redis keeps the channel even if this fails, and subscribes it
		// on each connection it makes.
		b.psMu.Lock()
		ctx, cancel := context.WithTimeout(b.ctx, commandTimeout)
		_ = b.pubsub.Load().Subscribe(ctx, b.anchor())
		cancel()
		b.psMu.Unlock()
	}
	backoff := minBackoff
	awaiting := false // a ping of ours is unanswered and nothing came since
	var last struct { // the last well-formed message, its event and origin
		payload string
		ev      upload.Progress
		origin  string
		ok      bool
	}
	for b.ctx.Err() == nil {
		if b.needsResyncPing() {
			if err := b.sendPing(); err != nil {
				b.renewSlots()
				if !sleep(b.ctx, backoff) {
					return
				}
				backoff = min(2*backoff, maxBackoff)
				continue
			}
			backoff = minBackoff
			awaiting = true
		}

		msg, err := b.receiveOne(awaiting)
		switch {
		case err == nil:
			awaiting = false
		case b.ctx.Err() != nil:
			return
		case !awaiting && isTimeout(err):
			// Quiet for a while: ask for a sign of life.
			awaiting = b.sendPing() == nil
			continue
		default:
			awaiting = false
			b.connectionLost(err)
			b.renewSlots()
			continue
		}

		switch m := msg.(type) {
		case *goredis.Message:
			// A replica listening on both the upload's and the owner's
			// channel hears each event twice in a row: decode it once.
			if !last.ok || m.Payload != last.payload {
				ev, origin, err := decodeEvent([]byte(m.Payload))
				if err != nil {
					last.ok = false
					b.log.Warn("dropping malformed progress event", "channel", m.Channel, "err", err)
					continue
				}
				last.payload, last.ev, last.origin, last.ok = m.Payload, ev, origin, true
			}
			if last.origin == b.origin {
				continue // delivered by Publish already
			}
			b.deliver(m.Channel, last.ev)
		case *goredis.Pong:
			b.answered(m.Payload)
		case *goredis.Subscription:
			// go-redis subscribes its channels again when it reconnects. If
			// it did so without any of our calls failing, a confirmed
			// channel is subscribed a second time: treat it as the loss it
			// was.
			if m.Kind == "subscribe" && b.confirmedChannel(m.Channel) {
				b.connectionLost(errors.New("redis connection was replaced"))
			}
		}
	}
}

// deliver hands ev, received on channel, to the local feeds of that
// channel's topic if ev is about that topic's upload or user, and drops
// it otherwise: the channel Redis routed the message by decides who hears
// it, so a message from another writer cannot reach other subscribers by
// what it says inside.
func (b *Broker) deliver(channel string, ev upload.Progress) {
	topic, ok := b.topicOf(channel)
	if !ok || !belongs(ev, topic) {
		b.log.Warn("dropping progress event of another channel", "channel", channel, "upload_id", ev.UploadID, "owner_id", ev.OwnerID)
		return
	}
	b.hub.Deliver(topic, ev)
}

// belongs reports whether ev is one of topic's events: its upload's or
// its owner's.
func belongs(ev upload.Progress, topic upload.Topic) bool {
	switch topic.Kind {
	case upload.TopicUpload:
		return ev.UploadID == topic.ID
	case upload.TopicUser:
		return ev.OwnerID == topic.ID
	}
	return false
}

// topicOf is the inverse of channelName.
func (b *Broker) topicOf(channel string) (upload.Topic, bool) {
	rest, ok := strings.CutPrefix(channel, b.prefix)
	if !ok {
		return upload.Topic{}, false
	}
	kind, id, ok := strings.Cut(rest, ":")
	return upload.Topic{Kind: upload.TopicKind(kind), ID: id}, ok
}

// receiveOne reads the next message. While a ping is unanswered the read is
// bounded by a context deadline and no timeout of its own, which go-redis
// treats as a broken connection (it closes it and dials again); otherwise a
// timeout just means the connection was quiet.
//
// Either way the context has a deadline: go-redis dials (and redials after
// a failure) inside ReceiveTimeout holding the lock PubSub.Close needs, and
// bounds the handshake by the context's deadline, or else by DialTimeout
// for each attempt; cancelling the context does not stop a handshake.
// Without it, Close waited 5 to 17 s on a Redis that accepts connections
// and never answers.
func (b *Broker) receiveOne(awaiting bool) (any, error) {
	if !awaiting {
		ctx, cancel := context.WithTimeout(b.ctx, idleTimeout)
		defer cancel()
		return b.pubsub.Load().ReceiveTimeout(ctx, idleTimeout)
	}
	ctx, cancel := context.WithTimeout(b.ctx, pongTimeout)
	defer cancel()
	return b.pubsub.Load().ReceiveTimeout(ctx, 0)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// sleep waits for d or until ctx ends, reporting whether it waited in full.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// resubscribe moves the subscription to a new connection, dialled
// afresh, and resyncs every local feed once that connection answers a
// ping, as after a loss: the sentinels have named a new primary (at
// address primary, logged). The client dials whichever server they
// name; the old subscription connection may still be up on a server
// that is primary no more and hears nothing of what the new one
// publishes.
//
// The new subscription has the channels before anyone can write on it
// (psMu), so the ping that resyncs the feeds follows their SUBSCRIBE on
// the new connection. Closing the old one ends receive's read of it.
func (b *Broker) resubscribe(primary string) {
	ctx, cancel := context.WithTimeout(b.ctx, commandTimeout)
	defer cancel()
	b.psMu.Lock()
	fresh := b.client.Subscribe(b.ctx)
	old := b.pubsub.Swap(fresh)
	b.markDown()
	b.log.Info("the sentinels named a new redis primary; subscribing there and resyncing subscribers", "primary", primary)
	channels := make([]string, 0, len(b.subscribed))
	for name := range b.subscribed {
		channels = append(channels, name)
	}
	if b.cluster != nil {
		channels = append(channels, b.anchor())
	}
	var err error
	if len(channels) > 0 {
		// go-redis keeps the channels even if this fails, and subscribes
		// them first thing on the connection it dials next.
		err = fresh.Subscribe(ctx, channels...)
	}
	b.psMu.Unlock()
	_ = old.Close()
	if b.ctx.Err() != nil {
		// Close may have taken the old subscription to close, not this.
		_ = fresh.Close()
		return
	}
	if err != nil {
		b.connectionLost(err)
	}
}
