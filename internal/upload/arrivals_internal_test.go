package upload

import "testing"

// TestArrivalsTellWhoWasOvertaken: an arrival of a chunk is overtaken by
// one of the same chunk that began after it, not by one of another
// chunk; nothing is kept once all end, and a chunk's next arrival then
// starts afresh.
func TestArrivalsTellWhoWasOvertaken(t *testing.T) {
	var set arrivals
	overtakenBy := func(a arrival) bool {
		var got bool
		if err := a.settle(func(overtaken bool) error { got = overtaken; return nil }); err != nil {
			t.Fatal(err)
		}
		return got
	}
	first := set.begin("upl_1", 3)
	other := set.begin("upl_1", 4)
	second := set.begin("upl_1", 3)
	if !overtakenBy(first) {
		t.Error("the first arrival was not overtaken by the second")
	}
	if overtakenBy(second) {
		t.Error("the last arrival was overtaken")
	}
	if overtakenBy(other) {
		t.Error("an arrival of another chunk was overtaken")
	}
	var never arrival
	if overtakenBy(never) {
		t.Error("an arrival that never began was overtaken")
	}
	never.end()

	for _, a := range []arrival{first, other, second} {
		a.end()
	}
	if n := len(set.chunks); n != 0 {
		t.Errorf("%d chunks still tracked after every arrival ended", n)
	}
	again := set.begin("upl_1", 3)
	defer again.end()
	if overtakenBy(again) {
		t.Error("a new arrival after the others ended was overtaken")
	}
}

// BenchmarkArrivals is what a chunk arrival on local disk pays for its
// turn: begin, settle and end.
func BenchmarkArrivals(b *testing.B) {
	var set arrivals
	for i := 0; b.Loop(); i++ {
		a := set.begin("upl_1", i)
		_ = a.settle(func(bool) error { return nil })
		a.end()
	}
}
