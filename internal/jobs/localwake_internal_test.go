package jobs

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/riverqueue/river/riverdriver"
)

// blockingListener is a listener whose waits end only with their
// context, with a notification sent on sent, or with an error sent on
// failed (its connection's).
type blockingListener struct {
	riverdriver.Listener // unused methods panic
	sent                 chan *riverdriver.Notification
	failed               chan error
}

func (l *blockingListener) Listen(context.Context, string) error   { return nil }
func (l *blockingListener) Unlisten(context.Context, string) error { return nil }

func (l *blockingListener) WaitForNotification(ctx context.Context) (*riverdriver.Notification, error) {
	select {
	case n := <-l.sent:
		return n, nil
	case err := <-l.failed:
		return nil, err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// waitResult is what one WaitForNotification returned.
type waitResult struct {
	n   *riverdriver.Notification
	err error
}

func waitIn(ctx context.Context, l riverdriver.Listener) <-chan waitResult {
	ch := make(chan waitResult, 1)
	go func() {
		n, err := l.WaitForNotification(ctx)
		ch <- waitResult{n, err}
	}()
	return ch
}

// The waking listener hands River a wake as an insert notification of
// its queue, cutting short a wait for the listener under it, and only
// once the transaction that inserted the job has committed; River's own
// interruption of a wait still ends it with its context's error, the
// connection's failure with its own, and River's own notifications pass
// through.
func TestWakingListener(t *testing.T) {
	ctx := context.Background()
	inner := &blockingListener{sent: make(chan *riverdriver.Notification, 1), failed: make(chan error, 1)}
	w := newWakes()
	l := &wakingListener{Listener: inner, wakes: w}
	if err := l.Listen(ctx, insertTopic); err != nil {
		t.Fatal(err)
	}
	expect := func(ch <-chan waitResult, topic, payload string) {
		t.Helper()
		select {
		case r := <-ch:
			if r.err != nil || r.n == nil || r.n.Topic != topic || r.n.Payload != payload {
				t.Fatalf("WaitForNotification = %+v, %v; want %s %s", r.n, r.err, topic, payload)
			}
		case <-time.After(30 * time.Second): // hang guard
			t.Fatalf("no notification; want %s %s", topic, payload)
		}
	}
	// quiet checks that a wait returns nothing for a while, then
	// interrupts it as River does, which must end it with ctx's error.
	quiet := func() {
		t.Helper()
		waitCtx, interrupt := context.WithCancel(ctx)
		wait := waitIn(waitCtx, l)
		select {
		case r := <-wait:
			t.Fatalf("WaitForNotification = %+v, %v; want it still waiting", r.n, r.err)
		case <-time.After(100 * time.Millisecond):
		}
		interrupt()
		if r := <-wait; !errors.Is(r.err, context.Canceled) || r.n != nil {
			t.Fatalf("an interrupted wait returned %+v, %v; want context.Canceled", r.n, r.err)
		}
	}

	// Nothing is woken before a commit, nor by a rollback.
	txA, txB := new(sql.Tx), new(sql.Tx)
	w.inserted(txA, queueProcess)
	w.inserted(txA, queueProcess)
	w.inserted(txB, "default")
	quiet()
	w.ended(txB, false)
	quiet()
	// A commit while River waits: the wait under it is cut, the wake
	// delivered, once for the two jobs of its queue.
	wait := waitIn(ctx, l)
	time.Sleep(10 * time.Millisecond)
	w.ended(txA, true)
	expect(wait, insertTopic, `{"queue":"process"}`)
	quiet()

	// A job inserted without a transaction has committed already, and a
	// wake ready before the wait is delivered without waiting.
	w.inserted(nil, "default")
	expect(waitIn(ctx, l), insertTopic, `{"queue":"default"}`)

	// River's notifications pass through.
	wait = waitIn(ctx, l)
	inner.sent <- &riverdriver.Notification{Topic: "river_leadership", Payload: "{}"}
	expect(wait, "river_leadership", "{}")

	// The connection's failure is River's to see, at once, so that it
	// connects again (it was taken for a wake's cut, and the wait begun
	// again, on a connection already closed).
	wait = waitIn(ctx, l)
	lost := errors.New("the connection was closed")
	inner.failed <- lost
	select {
	case r := <-wait:
		if !errors.Is(r.err, lost) || r.n != nil {
			t.Fatalf("a wait whose connection failed returned %+v, %v; want its error", r.n, r.err)
		}
	case <-time.After(30 * time.Second): // hang guard
		t.Fatal("a wait whose connection failed did not return")
	}

	// A wake no producer listens to is dropped, not held for later.
	if err := l.Unlisten(ctx, insertTopic); err != nil {
		t.Fatal(err)
	}
	w.inserted(nil, queueProcess)
	wait = waitIn(ctx, l)
	inner.sent <- &riverdriver.Notification{Topic: "river_leadership", Payload: "{}"}
	expect(wait, "river_leadership", "{}")
	if err := l.Listen(ctx, insertTopic); err != nil {
		t.Fatal(err)
	}
	quiet()
	if len(w.pending) != 0 || len(w.ready) != 0 {
		t.Errorf("wakes kept %d transactions and %d queues, want none", len(w.pending), len(w.ready))
	}
}
