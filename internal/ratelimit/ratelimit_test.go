package ratelimit

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseRate(t *testing.T) {
	good := []struct {
		in     string
		events int
		per    time.Duration
	}{
		{"20/s", 20, time.Second},
		{" 300 / m ", 300, time.Minute},
		{"1/h", 1, time.Hour},
		{"5/10s", 5, 10 * time.Second},
		{"1000/1ms", 1000, time.Millisecond},
	}
	for _, c := range good {
		events, per, err := ParseRate(c.in)
		if err != nil || events != c.events || per != c.per {
			t.Errorf("ParseRate(%q) = %d, %v, %v; want %d, %v", c.in, events, per, err, c.events, c.per)
		}
	}
	for _, in := range []string{"", "20", "/s", "0/s", "-1/s", "1.5/s", "x/s", "20/", "20/d", "20/0s", "20/-1s", "2000/1us", "99999999999999999999/s"} {
		if _, _, err := ParseRate(in); err == nil {
			t.Errorf("ParseRate(%q): got no error", in)
		}
	}
}

func TestRateValid(t *testing.T) {
	for _, r := range []Rate{{}, {Events: 1, Per: time.Second}, {Events: 0, Per: time.Second, Burst: 1}, {Events: 1, Burst: 1}, {Events: -1, Per: time.Second, Burst: 1}} {
		if err := r.Valid(); err == nil {
			t.Errorf("%+v: valid, want an error", r)
		}
		if _, err := NewMemory(r, 0); err == nil {
			t.Errorf("NewMemory(%+v): no error", r)
		}
	}
}

// clock is a settable time for Memory and Failover.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock                   { return &clock{t: time.Unix(1_700_000_000, 0)} }
func allow(t *testing.T, l Limiter, key string) time.Duration {
	t.Helper()
	wait, err := l.Allow(context.Background(), key)
	if err != nil {
		t.Fatalf("Allow(%q): %v", key, err)
	}
	return wait
}

// The bucket lets Burst through at once, then one per interval, telling
// the refused how long until the next token; keys are apart.
func TestMemoryTokenBucket(t *testing.T) {
	clk := newClock()
	m, err := NewMemory(Rate{Events: 2, Per: time.Second, Burst: 3}, 0)
	if err != nil {
		t.Fatal(err)
	}
	m.now = clk.now
	for i := range 3 {
		if w := allow(t, m, "a"); w != 0 {
			t.Fatalf("request %d of the burst: refused for %v", i+1, w)
		}
	}
	if w := allow(t, m, "a"); w != 500*time.Millisecond {
		t.Fatalf("request over the burst: wait %v, want 500ms (one token at 2/s)", w)
	}
	if w := allow(t, m, "b"); w != 0 {
		t.Fatalf("another key: refused for %v", w)
	}
	clk.advance(499 * time.Millisecond)
	if w := allow(t, m, "a"); w != time.Millisecond {
		t.Fatalf("1 ms early: wait %v, want 1ms", w)
	}
	clk.advance(time.Millisecond)
	if w := allow(t, m, "a"); w != 0 {
		t.Fatalf("after the wait: refused for %v", w)
	}
	if w := allow(t, m, "a"); w == 0 {
		t.Fatal("the token that came back was spent, yet another request went through")
	}
	// A long quiet spell fills the bucket, and no more than that.
	clk.advance(time.Hour)
	for i := range 3 {
		if w := allow(t, m, "a"); w != 0 {
			t.Fatalf("after a quiet hour, request %d: refused for %v", i+1, w)
		}
	}
	if w := allow(t, m, "a"); w == 0 {
		t.Fatal("after a quiet hour, more than the burst went through")
	}
}

// TestMemoryLateReaderOfTheClock: a request is judged at the time it
// reads the clock, under the lock, so one that waited is not refused for
// the arrivals of those that overtook it. Here the first caller's clock
// read waits (at most 200 ms) for a second caller to be admitted first:
// when the clock was read outside the lock, the second went through at
// a later time, and the first was then refused for arriving "before" it.
// With the read under the lock the second waits for the first instead.
func TestMemoryLateReaderOfTheClock(t *testing.T) {
	m, err := NewMemory(Rate{Events: 1, Per: time.Millisecond, Burst: 1}, 0)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	secondDone := make(chan struct{})
	var mu sync.Mutex
	calls := 0
	m.now = func() time.Time {
		mu.Lock()
		calls++
		first := calls == 1
		mu.Unlock()
		if !first {
			return t0.Add(time.Second)
		}
		select {
		case <-secondDone:
		case <-time.After(200 * time.Millisecond):
		}
		return t0
	}
	firstWait := make(chan time.Duration, 1)
	go func() {
		wait, _ := m.Allow(context.Background(), "k")
		firstWait <- wait
	}()
	for { // the first caller is in m.now before the second calls
		mu.Lock()
		started := calls == 1
		mu.Unlock()
		if started {
			break
		}
		runtime.Gosched()
	}
	secondWait, _ := m.Allow(context.Background(), "k")
	close(secondDone)
	if w := <-firstWait; w != 0 || secondWait != 0 {
		t.Errorf("refused: the first caller to wait %v, the second %v; want both admitted (they came 1 s apart at 1/ms)", w, secondWait)
	}
}

// Memory keeps at most its number of keys: the least recently used are
// forgotten (and start again with a full bucket).
func TestMemoryBounded(t *testing.T) {
	m, err := NewMemory(Rate{Events: 1, Per: time.Hour, Burst: 1}, 10)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		allow(t, m, fmt.Sprint("user-", i))
	}
	if n := m.tat.Len(); n != 10 {
		t.Errorf("keys held: %d, want 10", n)
	}
	if w := allow(t, m, "user-999"); w == 0 {
		t.Error("a recent key was forgotten")
	}
	if w := allow(t, m, "user-0"); w != 0 {
		t.Error("the oldest key is still held")
	}
}

func TestSlots(t *testing.T) {
	s := NewSlots(2)
	for i := range 2 {
		if !s.Acquire("u") {
			t.Fatalf("slot %d of 2 was refused", i+1)
		}
	}
	if s.Acquire("u") {
		t.Fatal("a third slot was given")
	}
	if !s.Acquire("v") {
		t.Fatal("another key was refused")
	}
	s.Release("u")
	if !s.Acquire("u") {
		t.Fatal("a released slot was not given again")
	}
	s.Release("u")
	s.Release("u")
	s.Release("v")
	if len(s.held) != 0 {
		t.Errorf("keys holding nothing still take memory: %v", s.held)
	}
	unbounded := NewSlots(0)
	for range 100 {
		if !unbounded.Acquire("u") {
			t.Fatal("Slots(0) refused")
		}
	}
}

// failing is a shared limiter whose engine is down.
type failing struct{ calls int }

func (f *failing) Allow(context.Context, string) (time.Duration, error) {
	f.calls++
	return 0, fmt.Errorf("connection refused")
}

// A failing shared limiter is not asked again for a moment, the local one
// decides meanwhile (its limits still bite), and the log says so once per
// LogEvery.
func TestFailover(t *testing.T) {
	clk := newClock()
	shared := &failing{}
	local, err := NewMemory(Rate{Events: 1, Per: time.Hour, Burst: 2}, 0)
	if err != nil {
		t.Fatal(err)
	}
	local.now = clk.now
	var logs bytes.Buffer
	f := &Failover{Shared: shared, Local: local, Log: slog.New(slog.NewTextHandler(&logs, nil)), Name: "test", now: clk.now}
	if w := allow(t, f, "a"); w != 0 {
		t.Fatalf("first request: refused for %v", w)
	}
	if w := allow(t, f, "a"); w != 0 {
		t.Fatalf("second request: refused for %v", w)
	}
	if w := allow(t, f, "a"); w == 0 {
		t.Fatal("the local budget did not bite")
	}
	if shared.calls != 1 {
		t.Errorf("the failed shared limiter was asked %d times within RetryShared, want once", shared.calls)
	}
	clk.advance(RetryShared)
	allow(t, f, "b")
	if shared.calls != 2 {
		t.Errorf("after RetryShared the shared limiter was asked %d times in all, want 2", shared.calls)
	}
	if n := strings.Count(logs.String(), "rate limits held per replica"); n != 1 {
		t.Errorf("warnings within LogEvery: %d, want 1:\n%s", n, logs.String())
	}
	clk.advance(LogEvery)
	allow(t, f, "c")
	if n := strings.Count(logs.String(), "rate limits held per replica"); n != 2 {
		t.Errorf("warnings after LogEvery: %d, want 2", n)
	}
}
