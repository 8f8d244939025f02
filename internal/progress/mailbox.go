package progress

import (
	"sync"

	"github.com/spoolhq/spool/internal/upload"
)

// feed is one subscriber's mailbox. It keeps only the latest pending event
// per upload, so its memory is bounded by the number of distinct uploads
// waiting to be read, whatever the event rate, and writing to it never
// waits for the reader.
type feed struct {
	hub   *Hub
	topic upload.Topic

	// ready holds at most one token: a reader woken once drains
	// everything, so further signals until then would carry nothing new.
	// It is made by the first Ready, under mu: a reader that is notified
	// (OnReady) never needs it, and every idle subscription would keep it.
	ready chan struct{}

	closeOnce sync.Once
	stopWatch func() bool // cancels the ctx watcher set up by Subscribe

	mu      sync.Mutex
	pending map[string]upload.Progress // upload id → latest event
	order   []string                   // upload ids in first-arrival order
	resync  bool
	notify  func() // set by OnReady: called instead of signalling ready
}

var _ upload.NotifyingFeed = (*feed)(nil)

func newFeed(h *Hub, topic upload.Topic) *feed {
	return &feed{
		hub:     h,
		topic:   topic,
		pending: make(map[string]upload.Progress),
	}
}

// Ready is signalled when Drain has something to return. After Close no
// new signal is sent, and the channel is never closed, so a reader
// selecting on it cannot spin; readers stop on their own context.
func (f *feed) Ready() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ready == nil {
		f.ready = make(chan struct{}, 1)
		if len(f.order) > 0 || f.resync {
			// What arrived before is waiting to be drained.
			f.ready <- struct{}{}
		}
	}
	return f.ready
}

// OnReady makes the feed call fn instead of signalling Ready. fn runs on
// the publisher's goroutine under the hub's read lock, so it must not
// block nor call back into the hub. A reader that sets it after events
// arrived must Drain once itself.
func (f *feed) OnReady(fn func()) {
	f.mu.Lock()
	f.notify = fn
	f.mu.Unlock()
}

// Drain returns the pending events, in the order their uploads first
// arrived since the last Drain, and whether events may have been lost since
// then, in which case the caller must read a fresh snapshot. The events
// returned alongside resync are still genuine; the snapshot decides which
// of them are newer. After Close it returns nothing.
func (f *feed) Drain() (events []upload.Progress, resync bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.order) > 0 {
		events = make([]upload.Progress, 0, len(f.order))
		for _, id := range f.order {
			events = append(events, f.pending[id])
		}
		clear(f.pending)
		f.order = f.order[:0]
	}
	resync, f.resync = f.resync, false
	return events, resync
}

// Close unregisters the feed and discards what is pending. It is safe to
// call more than once and concurrently with publishing.
func (f *feed) Close() {
	// stopWatch is set before Subscribe returns the feed, so any caller of
	// Close can read it; the ctx watcher itself calls shutdown instead.
	if f.stopWatch != nil {
		f.stopWatch()
	}
	f.shutdown()
}

func (f *feed) shutdown() {
	f.closeOnce.Do(func() {
		// Once remove returns no publisher can reach the feed (they put
		// under the hub's read lock), so what is dropped here stays dropped.
		f.hub.remove(f)
		f.mu.Lock()
		defer f.mu.Unlock()
		clear(f.pending)
		f.order = nil
		f.resync = false
	})
}

// put stores ev as the pending event of its upload unless the pending one
// is newer: events can arrive out of order (from several replicas), and an
// older one must not overwrite a newer state.
func (f *feed) put(ev upload.Progress) {
	f.mu.Lock()
	old, ok := f.pending[ev.UploadID]
	if ok {
		// One of the two events will never be read: the older.
		f.hub.superseded.Add(1)
	}
	switch {
	case !ok:
		f.order = append(f.order, ev.UploadID)
	case ev.Version < old.Version:
		f.mu.Unlock()
		return
	}
	f.pending[ev.UploadID] = ev
	notify, ready := f.notify, f.ready
	f.mu.Unlock()
	f.signal(notify, ready)
}

func (f *feed) markResync() {
	f.mu.Lock()
	f.resync = true
	notify, ready := f.notify, f.ready
	f.mu.Unlock()
	f.signal(notify, ready)
}

// signal wakes the reader without ever blocking: through notify if the
// reader set one, else through ready, where if a token is already
// waiting, the reader has yet to drain and will see this change too. A
// nil ready has no reader yet: the first Ready finds what is pending.
func (f *feed) signal(notify func(), ready chan struct{}) {
	if notify != nil {
		notify()
		return
	}
	select {
	case ready <- struct{}{}:
	default:
	}
}
