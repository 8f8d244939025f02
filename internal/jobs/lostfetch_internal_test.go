package jobs

import (
	"testing"
	"time"
)

// The record of held jobs keeps what a worker has, and what one let go
// within the window, and nothing older, so it does not grow with every
// job a replica ever ran.
func TestHeldKeepsOnlyTheWindow(t *testing.T) {
	h := newHeld()
	now := time.Now()
	h.take(1)
	h.take(2)
	h.letGo(2, now.Add(-time.Minute))
	h.take(3)
	h.letGo(3, now)
	since := now.Add(-time.Second)
	h.forget(since)
	if len(h.ids) != 2 {
		t.Errorf("after forgetting what was let go before the window: %v, want jobs 1 and 3", h.ids)
	}
	for _, tc := range []struct {
		id    int64
		since time.Time
		want  bool
	}{
		{1, since, true},                 // a worker has it
		{2, since, false},                // let go a minute ago
		{3, since, true},                 // let go just now
		{3, now.Add(time.Second), false}, // … but not after that
		{4, since, false},                // never seen: a lost fetch's
	} {
		if got := h.heldSince(tc.id, tc.since); got != tc.want {
			t.Errorf("heldSince(%d, %v) = %v, want %v", tc.id, tc.since.Sub(now), got, tc.want)
		}
	}
}
