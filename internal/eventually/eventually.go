// Package eventually waits, in tests, for a condition that another
// goroutine or process makes true: a job that runs, a URL that expires,
// media that turns READY.
package eventually

import (
	"testing"
	"time"
)

const (
	// deadline only guards against a hang. Tests never time how long a
	// condition takes to hold: CI machines are slow and noisy.
	deadline = 30 * time.Second
	// every is how often the condition is asked.
	every = 20 * time.Millisecond
)

// Holds asks cond every 20 ms until it returns true, and fails t if it
// has not after 30 s. what names the awaited condition in that failure
// ("timed out waiting for <what>").
func Holds(t testing.TB, what string, cond func() bool) {
	t.Helper()
	holds(t, what, cond, deadline, every)
}

func holds(t testing.TB, what string, cond func() bool, within, every time.Duration) {
	t.Helper()
	end := time.Now().Add(within)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(every)
	}
}
