// Package progress owns the fan-out of upload progress events to
// subscribers: the in-process Hub, and the per-subscriber mailbox (Feed)
// that collapses pending events to the latest per upload so a slow reader
// costs bounded memory and never holds up a publisher.
//
// A broker that crosses replicas (Redis) is meant to wrap a Hub: it hands
// each message it receives to Hub.Deliver for the topic it came on, calls
// Hub.Resync after a reconnect, and keeps the fan-out and mailbox
// semantics defined here.
package progress

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/spoolhq/spool/internal/upload"
)

// Hub fans progress events out to the feeds of this process. The zero Hub
// is ready to use; it starts no goroutines of its own.
type Hub struct {
	// mu guards topics and live. Publishers only take it for reading, so
	// they never wait for each other, and a feed's own lock is held only
	// for a map write, so they never wait for a subscriber to read either.
	mu     sync.RWMutex
	topics map[upload.Topic]map[*feed]struct{}
	live   int
	// superseded counts events a mailbox let go unread for a newer one.
	superseded atomic.Int64
}

var _ upload.Broker = (*Hub)(nil)

// NewHub returns an empty Hub.
func NewHub() *Hub {
	return &Hub{topics: make(map[upload.Topic]map[*feed]struct{})}
}

// Publish delivers ev to the feeds of its upload and of its owner in this
// process, without waiting for any of them to read. It never blocks and
// never fails: ctx is accepted for the Broker contract but deliberately
// ignored, because an event published after a commit must reach
// subscribers even if the request that made the change has just been
// cancelled.
//
// Events are shared between feeds: readers must treat their slices and
// pointers (FailedChunks, MediaID, MediaStatus, Error) as read-only.
func (h *Hub) Publish(_ context.Context, ev upload.Progress) error {
	// Putting while holding the read lock, rather than copying the feeds
	// out first, is what lets Close promise that nothing arrives after it
	// returns; put never waits for a reader, so the lock is held briefly.
	h.mu.RLock()
	defer h.mu.RUnlock()
	h.putLocked(upload.UploadTopic(ev.UploadID), ev)
	h.putLocked(upload.UserTopic(ev.OwnerID), ev)
	return nil
}

// Deliver hands ev to every live feed of topic alone, as Publish does for
// both of ev's topics. It is for a wrapping broker that hears each event
// once per topic it listens on (Redis: one channel per topic), so the
// channel an event came on, not the event, decides who gets it.
func (h *Hub) Deliver(topic upload.Topic, ev upload.Progress) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	h.putLocked(topic, ev)
}

// putLocked puts ev in the feeds of topic; h.mu must be held.
func (h *Hub) putLocked(topic upload.Topic, ev upload.Progress) {
	for f := range h.topics[topic] {
		f.put(ev)
	}
}

// Subscribe registers a feed for topic before returning, so a caller that
// reads its snapshot afterwards misses no event. The feed lives until it is
// closed or ctx is done, whichever comes first.
//
// It returns ctx.Err() without registering anything if ctx is already done.
func (h *Hub) Subscribe(ctx context.Context, topic upload.Topic) (upload.Feed, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f := newFeed(h, topic)
	h.add(f)
	// AfterFunc rather than a goroutine parked on ctx.Done(): it costs
	// nothing until ctx ends, and Close can cancel it so a feed closed
	// first leaves nothing behind.
	f.stopWatch = context.AfterFunc(ctx, f.shutdown)
	return f, nil
}

// Resync marks every live feed as having possibly missed events, so its
// next Drain reports resync once, and wakes its reader. A wrapping broker
// calls it after its connection to other replicas was lost and restored.
func (h *Hub) Resync() {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, feeds := range h.topics {
		for f := range feeds {
			f.markResync()
		}
	}
}

// Subscribers returns the number of live feeds, for tests and metrics.
func (h *Hub) Subscribers() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.live
}

// Superseded returns how many events were never read because a newer
// event of the same upload took their place in a subscriber's mailbox
// first (a reader slower than the events), for metrics.
func (h *Hub) Superseded() int64 { return h.superseded.Load() }

func (h *Hub) add(f *feed) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.topics == nil {
		h.topics = make(map[upload.Topic]map[*feed]struct{})
	}
	feeds := h.topics[f.topic]
	if feeds == nil {
		feeds = make(map[*feed]struct{})
		h.topics[f.topic] = feeds
	}
	feeds[f] = struct{}{}
	h.live++
}

func (h *Hub) remove(f *feed) {
	h.mu.Lock()
	defer h.mu.Unlock()
	feeds, ok := h.topics[f.topic]
	if !ok {
		return
	}
	if _, ok := feeds[f]; !ok {
		return
	}
	delete(feeds, f)
	h.live--
	// Drop empty topics so the map tracks live subscriptions, not every
	// upload that was ever watched.
	if len(feeds) == 0 {
		delete(h.topics, f.topic)
	}
}
