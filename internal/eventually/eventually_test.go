package eventually

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

func TestHoldsReturnsOnceTheConditionHolds(t *testing.T) {
	var asked atomic.Int32
	Holds(t, "the third ask", func() bool { return asked.Add(1) == 3 })
	if n := asked.Load(); n != 3 {
		t.Errorf("cond was asked %d times, want 3 (Holds must stop asking once it holds)", n)
	}
}

// fatalRecorder is a testing.TB whose Fatalf records the failure and
// ends the goroutine, as testing's does.
type fatalRecorder struct {
	testing.TB
	failure string
}

func (f *fatalRecorder) Helper() {}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.failure = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestHoldsFailsAfterTheDeadline(t *testing.T) {
	rec := &fatalRecorder{TB: t}
	var asked atomic.Int32
	returned := false
	done := make(chan struct{})
	go func() {
		defer close(done)
		holds(rec, "a condition that never holds", func() bool { asked.Add(1); return false }, 50*time.Millisecond, time.Millisecond)
		returned = true
	}()
	<-done
	if returned {
		t.Fatal("holds returned although its condition never held")
	}
	if want := "timed out waiting for a condition that never holds"; rec.failure != want {
		t.Errorf("failure %q, want %q", rec.failure, want)
	}
	if asked.Load() < 2 {
		t.Errorf("cond was asked %d times before the deadline, want it asked again and again", asked.Load())
	}
}
