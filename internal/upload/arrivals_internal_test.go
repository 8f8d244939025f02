package upload

import (
	"maps"
	"testing"
)

// TestArrivalsTellWhoWasOvertaken: an arrival of a chunk is overtaken by
// one of the same chunk that began writing after it, not by one of
// another chunk; one that never began writing is never overtaken; each
// hurries those of its chunk in flight; nothing is kept once all end,
// and a chunk's next arrival then starts afresh.
func TestArrivalsTellWhoWasOvertaken(t *testing.T) {
	var set arrivals
	overtakenBy := func(a *arrival) bool {
		var got bool
		if err := a.settle(func(overtaken bool) error { got = overtaken; return nil }); err != nil {
			t.Fatal(err)
		}
		return got
	}
	hurried := map[string]int{}
	hurry := func(name string) func() { return func() { hurried[name]++ } }

	first := set.arrive("upl_1", 3, hurry("first"))
	first.begin()
	other := set.arrive("upl_1", 4, hurry("other"))
	other.begin()
	idle := set.arrive("upl_1", 3, hurry("idle")) // never writes
	second := set.arrive("upl_1", 3, nil)
	second.begin()
	if want := map[string]int{"first": 2, "idle": 1}; !maps.Equal(hurried, want) {
		t.Errorf("hurried %v, want %v", hurried, want)
	}
	if !overtakenBy(first) {
		t.Error("the first arrival was not overtaken by the second")
	}
	if overtakenBy(second) {
		t.Error("the last arrival was overtaken")
	}
	if overtakenBy(other) {
		t.Error("an arrival of another chunk was overtaken")
	}
	if overtakenBy(idle) {
		t.Error("an arrival that never wrote was overtaken")
	}
	var none *arrival
	if overtakenBy(none) {
		t.Error("a nil arrival was overtaken")
	}
	none.end()

	for _, a := range []*arrival{first, other, idle, second} {
		a.end()
	}
	if n := len(set.chunks); n != 0 {
		t.Errorf("%d chunks still tracked after every arrival ended", n)
	}
	again := set.arrive("upl_1", 3, nil)
	defer again.end()
	again.begin()
	if overtakenBy(again) {
		t.Error("a new arrival after the others ended was overtaken")
	}
	if hurried["first"] != 2 {
		t.Errorf("an ended arrival was hurried: %v", hurried)
	}
}

// BenchmarkArrivals is what a chunk arrival on local disk pays for its
// turn: arrive, begin, settle and end.
func BenchmarkArrivals(b *testing.B) {
	var set arrivals
	for i := 0; b.Loop(); i++ {
		a := set.arrive("upl_1", i, nil)
		a.begin()
		_ = a.settle(func(bool) error { return nil })
		a.end()
	}
}
