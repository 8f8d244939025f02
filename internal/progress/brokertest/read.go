package brokertest

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/spoolhq/spool/internal/upload"
)

// The helpers below read feeds as subscribers do. The suite uses them, and
// an engine's own tests may too. Each wait is bounded by a deadline that
// only keeps a broken broker from hanging the test; none measures time.

// Event returns an UPLOADING event of uploadID, owned by ownerID.
func Event(uploadID, ownerID string, version int64) upload.Progress {
	return upload.Progress{UploadID: uploadID, OwnerID: ownerID, Version: version, Status: upload.StatusUploading}
}

// FullEvent returns an event with every field set, so that delivery, or
// an encoding, is seen to keep them all.
func FullEvent(uploadID, ownerID string, version int64) upload.Progress {
	media, mediaStatus, msg := "med_01J", upload.MediaReady, "chunk 3 failed"
	return upload.Progress{
		UploadID:       uploadID,
		BatchID:        "bat_01J",
		OwnerID:        ownerID,
		Status:         upload.StatusFailed,
		UploadedBytes:  5<<30 + 1, // past 32 bits
		TotalBytes:     6 << 30,
		Percent:        83,
		UploadedChunks: 640,
		TotalChunks:    768,
		FailedChunks:   []int{3, 700},
		MediaID:        &media,
		MediaStatus:    &mediaStatus,
		Error:          &msg,
		Version:        version,
		At:             time.Date(2026, 11, 3, 10, 4, 5, 123456789, time.UTC),
	}
}

// Subscribe subscribes to topic on b for the rest of the test.
func Subscribe(tb testing.TB, b upload.Broker, topic upload.Topic) upload.Feed {
	tb.Helper()
	var (
		f   upload.Feed
		err error
	)
	Within(tb, fmt.Sprintf("Subscribe(%v)", topic), func() { f, err = b.Subscribe(tb.Context(), topic) })
	if err != nil {
		tb.Fatalf("Subscribe(%v): %v", topic, err)
	}
	tb.Cleanup(f.Close)
	return f
}

// Publish publishes ev on b, failing the test if it fails.
func Publish(tb testing.TB, b upload.Broker, ev upload.Progress) {
	tb.Helper()
	if err := b.Publish(tb.Context(), ev); err != nil {
		tb.Fatalf("Publish(%s v%d): %v", ev.UploadID, ev.Version, err)
	}
}

// Within runs fn and fails the test at once if it has not returned by the
// deadline: a hang guard, not a timing assertion. The failure shows
// spool's goroutines, so a test that hangs names the wait that hung.
func Within(tb testing.TB, what string, fn func()) {
	tb.Helper()
	if !Bounded(tb, what, fn) {
		tb.FailNow()
	}
}

// Bounded is Within for cleanups and other code that must go on after a
// hang: it marks the test failed, showing spool's goroutines, and returns
// false if fn has not returned by the deadline, leaving fn running. A
// cleanup that waits (a Close, a process's exit) waits through Bounded so
// that it cannot hold the test binary until go test's own timeout, whose
// goroutine dump would bury the test's name.
func Bounded(tb testing.TB, what string, fn func()) bool {
	tb.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	timer := time.NewTimer(deadline)
	defer timer.Stop()
	select {
	case <-done:
		return true
	case <-timer.C:
		tb.Errorf("%s did not return within %v; spool's goroutines:\n%s", what, deadline, SpoolGoroutines())
		return false
	}
}

// SpoolGoroutines returns the stacks of the process's goroutines that run
// spool's code, the tests' included, leaving out the runtime's, the
// testing package's and the libraries' own (a pool's reaper, a
// listener's accept loop).
func SpoolGoroutines() string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var b strings.Builder
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "github.com/spoolhq/spool/") && !strings.Contains(g, "brokertest.SpoolGoroutines(") {
			b.WriteString(g)
			b.WriteString("\n\n")
		}
	}
	return b.String()
}

// Eventually polls cond until it holds, for effects that happen
// asynchronously (a feed ending with its context, a channel unsubscribed).
func Eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	stop := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(stop) {
			tb.Fatalf("%s: not true within %v", what, deadline)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Reading is what a subscriber has drained from a feed so far.
type Reading struct {
	Events []upload.Progress
	Resync bool
}

// Has reports whether r holds the event of uploadID at version.
func (r Reading) Has(uploadID string, version int64) bool {
	for _, ev := range r.Events {
		if ev.UploadID == uploadID && ev.Version == version {
			return true
		}
	}
	return false
}

// String shows r as "[u1 v2, u2 v1] resync=false".
func (r Reading) String() string {
	parts := make([]string, 0, len(r.Events))
	for _, ev := range r.Events {
		parts = append(parts, fmt.Sprintf("%s v%d", ev.UploadID, ev.Version))
	}
	return fmt.Sprintf("[%s] resync=%v", strings.Join(parts, ", "), r.Resync)
}

// ReadUntil reads f as a subscriber does, waiting on Ready and draining,
// until done holds for what it has read, and returns that.
func ReadUntil(tb testing.TB, f upload.Feed, what string, done func(Reading) bool) Reading {
	tb.Helper()
	var r Reading
	timeout := time.After(deadline)
	for !done(r) {
		select {
		case <-f.Ready():
		case <-timeout:
			tb.Fatalf("%s: not read within %v; read %s", what, deadline, r)
		}
		events, resync := f.Drain()
		r.Events = append(r.Events, events...)
		r.Resync = r.Resync || resync
	}
	return r
}

// ReadEvent reads f until it has read the event of uploadID at version.
func ReadEvent(tb testing.TB, f upload.Feed, uploadID string, version int64) Reading {
	tb.Helper()
	return ReadUntil(tb, f, fmt.Sprintf("event %s v%d", uploadID, version),
		func(r Reading) bool { return r.Has(uploadID, version) })
}

// WaitReady waits for f's Ready signal.
func WaitReady(tb testing.TB, f upload.Feed, name string) {
	tb.Helper()
	select {
	case <-f.Ready():
	case <-time.After(deadline):
		tb.Fatalf("%s: not signalled within %v", name, deadline)
	}
}

// AssertNotReady checks that f has no Ready signal waiting.
func AssertNotReady(tb testing.TB, f upload.Feed, name string) {
	tb.Helper()
	select {
	case <-f.Ready():
		tb.Errorf("%s: feed signalled, want no signal", name)
	default:
	}
}

// AssertNothing checks that f has neither a signal nor anything to drain.
func AssertNothing(tb testing.TB, f upload.Feed, name string) {
	tb.Helper()
	AssertNotReady(tb, f, name)
	if events, resync := f.Drain(); len(events) > 0 || resync {
		tb.Errorf("%s: Drain() = %s, want nothing", name, Reading{events, resync})
	}
}
