package upload

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/spoolhq/spool/ent/uploadsession"
)

// watch describes one subscription: where its events come from, how to
// read its current state, which events belong to it, and when it is done.
type watch struct {
	topic Topic
	// snapshot reads the subscription's current state. unsettled lists the
	// uploads it has sent and not yet seen settle, in id order: none at
	// first, and on a resync those whose end (or their media's) may have
	// been among the events lost.
	snapshot func(ctx context.Context, unsettled []string) ([]Progress, error)
	include  func(Progress) bool
	// done reports whether the subscription is over, given the latest
	// state of every upload seen; nil means it never ends by itself.
	done func(latest map[string]sent) bool
}

// sent is what a subscription keeps of the latest event it sent for an
// upload: enough to drop older events and to know when it is over. A
// whole Progress per upload would cost every idle subscription ~1.5 KiB
// of map for its first upload alone.
type sent struct {
	version int64
	percent int
	settled bool
}

// WatchUpload streams the progress of the caller's upload: the current
// state first, then every change, closing once the upload is settled (a
// terminal state, and its media processed) or when ctx ends. Media whose
// processing is retried (storage trouble) keeps it open meanwhile. It
// returns NOT_FOUND for someone else's upload.
func (s *Service) WatchUpload(ctx context.Context, userID, uploadID string) (<-chan *Progress, error) {
	if _, err := ownedSession(ctx, s.db, userID, uploadID); err != nil {
		return nil, err
	}
	return s.watch(ctx, watch{
		topic: UploadTopic(uploadID),
		snapshot: func(ctx context.Context, _ []string) ([]Progress, error) {
			sess, err := s.Session(ctx, userID, uploadID)
			if err != nil {
				return nil, err
			}
			return []Progress{sess.Progress}, nil
		},
		include: func(p Progress) bool { return p.UploadID == uploadID },
		done: func(latest map[string]sent) bool {
			p, ok := latest[uploadID]
			return ok && p.settled
		},
	})
}

// WatchBatch streams the progress of every upload in the caller's batch,
// closing once all of them are settled, as WatchUpload does. It returns
// NOT_FOUND for someone else's batch.
func (s *Service) WatchBatch(ctx context.Context, userID, batchID string) (<-chan *Progress, error) {
	if _, err := s.Batch(ctx, userID, batchID); err != nil {
		return nil, err
	}
	return s.watch(ctx, watch{
		topic: UserTopic(userID),
		snapshot: func(ctx context.Context, _ []string) ([]Progress, error) {
			b, err := s.Batch(ctx, userID, batchID)
			if err != nil {
				return nil, err
			}
			ps := make([]Progress, len(b.Uploads))
			for i, u := range b.Uploads {
				ps[i] = u.Progress
			}
			return ps, nil
		},
		include: func(p Progress) bool { return p.BatchID == batchID },
		done: func(latest map[string]sent) bool {
			for _, p := range latest {
				if !p.settled {
					return false
				}
			}
			return true
		},
	})
}

// WatchUser streams the progress of all the caller's uploads, starting
// with the unfinished ones, until ctx ends. After events were lost (a
// resync), it reads again the unfinished uploads and those it sent that
// had not settled: an upload that finished meanwhile, or whose media was
// processed, is no longer unfinished, and would otherwise never be seen
// to end.
func (s *Service) WatchUser(ctx context.Context, userID string) (<-chan *Progress, error) {
	return s.watch(ctx, watch{
		topic: UserTopic(userID),
		snapshot: func(ctx context.Context, unsettled []string) ([]Progress, error) {
			unfinished, err := s.db.UploadSession.Query().
				Where(uploadsession.OwnerID(userID), uploadsession.StatusIn(StatusInitialized, StatusUploading, StatusAssembling)).
				Order(uploadsession.ByID()).IDs(s.plannedEachRun(ctx))
			if err != nil {
				return nil, fmt.Errorf("listing unfinished uploads: %w", err)
			}
			ids := slices.Compact(slices.Sorted(slices.Values(slices.Concat(unfinished, unsettled))))
			var ps []Progress
			for _, id := range ids {
				sess, err := s.Session(ctx, userID, id)
				if err != nil {
					return nil, err
				}
				ps = append(ps, sess.Progress)
			}
			return ps, nil
		},
		include: func(Progress) bool { return true },
	})
}

// Receiver is the consumer of a subscription's channel, told when a
// receive will find something, so that it keeps no goroutine parked on
// the channel while nothing happens (an idle subscription then costs no
// stack of its consumer either: docs/BENCHMARKS.md, "Load").
type Receiver interface {
	// Attach is called once, when the Watch* call that found the
	// receiver in its context is about to return its channel (with no
	// error), before any Wake. A receiver not attached must read the
	// channel as any other.
	Attach()
	// Wake is called after each send on the channel and after it is
	// closed: one receive per Wake finds a value or the close. It runs on
	// the sender's goroutine, which has nothing else to do meanwhile: the
	// receiver may take the value right there, inside Wake, and sending
	// it on to the client may block (the channel's one-value buffer is
	// what lets the send come first). A receiver taking its values on a
	// goroutine of its own must select on the subscription's context
	// too: the sender gives up when it ends, and closes the channel.
	Wake()
}

type receiverKey struct{}

// WithReceiver returns a context for a Watch* call whose channel r
// consumes.
func WithReceiver(ctx context.Context, r Receiver) context.Context {
	return context.WithValue(ctx, receiverKey{}, r)
}

// watch subscribes before reading the snapshot, so no change falls between
// the two, then forwards only events newer than what the client has. The
// channel holds at most one value (none without a Receiver), so a slow
// client holds back only itself; its pending events collapse in the feed
// meanwhile.
//
// No goroutine waits on the feed while nothing happens: with a feed that
// can notify (the hub's), a pump goroutine runs only while there is
// something to send, and exits once the feed is drained and the client
// has taken everything. An idle subscription then costs no stack of its
// own (docs/BENCHMARKS.md, "Load"). With a Receiver, the pump's goroutine
// is the one that sends each value on to the client (Wake): one goroutine
// per event and subscriber, not two (docs/DESIGN.md, "Websockets").
func (s *Service) watch(ctx context.Context, w watch) (<-chan *Progress, error) {
	feed, err := s.broker.Subscribe(ctx, w.topic)
	if err != nil {
		return nil, fmt.Errorf("subscribing to %s %s: %w", w.topic.Kind, w.topic.ID, err)
	}
	first, err := w.snapshot(ctx, nil)
	if err != nil {
		feed.Close()
		return nil, err
	}
	x := &watcher{s: s, w: w, ctx: ctx, feed: feed, first: first, latest: map[string]sent{}}
	if r, ok := ctx.Value(receiverKey{}).(Receiver); ok {
		r.Attach()
		x.receiver = r
		// The value is in the channel before its Wake, which may take it.
		x.out = make(chan *Progress, 1)
	} else {
		x.out = make(chan *Progress)
	}
	if nf, ok := feed.(NotifyingFeed); ok {
		nf.OnReady(x.kick)
	} else {
		x.stop = make(chan struct{})
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-x.stop:
					return
				case <-feed.Ready():
					x.kick()
				}
			}
		}()
	}
	// The end of ctx wakes the pump too, so out is closed then as it was
	// with a forwarder goroutine.
	context.AfterFunc(ctx, x.kick)
	x.kick() // sends the snapshot, and drains what arrived meanwhile
	return x.out, nil
}

// watcher is one subscription's state between pump runs.
type watcher struct {
	s    *Service
	w    watch
	ctx  context.Context
	feed Feed
	out  chan *Progress
	stop chan struct{} // closed when over, for a feed that cannot notify
	// receiver, when the caller gave one (WithReceiver), is woken after
	// each send on out and after out is closed.
	receiver Receiver

	mu       sync.Mutex
	running  bool // a pump goroutine is running
	again    bool // kicked while running: drain once more before exiting
	finished bool // out is closed

	// Touched by the pump alone; mu's hand-over orders successive pumps.
	first  []Progress // the snapshot, until sent
	latest map[string]sent
}

// kick makes sure a pump runs after this call. It never blocks: the feed
// calls it from the publisher's goroutine.
func (x *watcher) kick() {
	x.mu.Lock()
	defer x.mu.Unlock()
	switch {
	case x.finished:
	case x.running:
		x.again = true
	default:
		x.running = true
		go x.pump()
	}
}

// pump forwards until the feed is empty, then exits, unless kicked
// meanwhile; once the subscription is over it closes out.
func (x *watcher) pump() {
	for {
		if !x.step() {
			x.feed.Close()
			x.mu.Lock()
			x.finished, x.running = true, false
			x.mu.Unlock()
			if x.stop != nil {
				close(x.stop)
			}
			close(x.out)
			if x.receiver != nil {
				x.receiver.Wake()
			}
			return
		}
		x.mu.Lock()
		if !x.again {
			x.running = false
			x.mu.Unlock()
			return
		}
		x.again = false
		x.mu.Unlock()
	}
}

// step sends what is new; it returns false once the subscription is over
// (done, ctx ended, or a failed resync).
func (x *watcher) step() bool {
	if x.ctx.Err() != nil {
		return false
	}
	over := func() bool { return x.w.done != nil && x.w.done(x.latest) }
	if x.first != nil {
		first := x.first
		x.first = nil
		for _, p := range first {
			if !x.emit(p) {
				return false
			}
		}
	}
	if over() {
		return false
	}
	events, resync := x.feed.Drain()
	if resync {
		fresh, err := x.w.snapshot(x.ctx, x.unsettled())
		if err != nil {
			x.s.log.WarnContext(x.ctx, "resyncing subscription failed", "topic", x.w.topic.ID, "err", err)
			return false
		}
		events = append(fresh, events...)
	}
	for _, p := range events {
		if !x.w.include(p) {
			// An upload that stops matching (resumed into a newer
			// batch) leaves this subscription.
			delete(x.latest, p.UploadID)
		} else if !x.emit(p) {
			return false
		}
		if over() {
			return false
		}
	}
	return true
}

// unsettled lists, in id order, the uploads sent whose latest event was
// not settled.
func (x *watcher) unsettled() []string {
	var ids []string
	for id, p := range x.latest {
		if !p.settled {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// emit sends p if it is news; it returns false when the client is gone.
func (x *watcher) emit(p Progress) bool {
	prev, seen := x.latest[p.UploadID]
	if seen && p.Version <= prev.version {
		return true
	}
	if seen && p.Percent < prev.percent {
		p.Percent = prev.percent
	}
	x.latest[p.UploadID] = sent{version: p.Version, percent: p.Percent, settled: p.Settled()}
	select {
	case x.out <- &p:
	case <-x.ctx.Done():
		return false
	}
	if x.receiver != nil {
		x.receiver.Wake()
	}
	return true
}
