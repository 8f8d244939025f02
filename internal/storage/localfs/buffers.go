package localfs

import (
	"runtime"
	"sync"
)

// keptBuffers is how many write-size buffers a Store keeps at most: the
// chunks it copies at once at full speed. Past it, chunks are copied
// through SmallWrite buffers, so a burst of hundreds of uploads costs
// 128 KiB each, not the write size.
const keptBuffers = 16

// buffers hands out the buffers chunks are copied through. Buffers of the
// write size (when it is larger than SmallWrite) are mapped outside Go's
// heap and kept for reuse, keptBuffers at most: in the heap, a few MiB of
// them going in and out of a sync.Pool raised the collector's goal, and
// the peak RSS, by more than their size. Smaller ones come from a
// sync.Pool.
type buffers struct {
	size int
	kept chan []byte // those not in use; its capacity is how many may exist

	mu   sync.Mutex
	made int // kept buffers mapped so far

	spareSize int
	spare     sync.Pool // of *[]byte, spareSize long
}

// newBuffers returns buffers of size bytes, and of min(size, SmallWrite)
// beyond keptBuffers at once. The kept ones are unmapped once owner is
// unreachable.
func newBuffers(owner *Store, size int) *buffers {
	b := &buffers{size: size, spareSize: min(size, SmallWrite)}
	if size > SmallWrite {
		b.kept = make(chan []byte, keptBuffers)
		runtime.AddCleanup(owner, unmapAll, b.kept)
	}
	b.spare.New = func() any {
		buf := make([]byte, b.spareSize)
		return &buf
	}
	return b
}

// get returns a buffer of the write size if one is free or may still be
// made, else a spare one.
func (b *buffers) get() []byte {
	select {
	case buf := <-b.kept:
		return buf
	default:
	}
	if b.kept != nil && b.reserve() {
		if buf, err := mapBuffer(b.size); err == nil {
			return buf
		}
		b.mu.Lock()
		b.made--
		b.mu.Unlock()
	}
	return *b.spare.Get().(*[]byte)
}

// reserve counts one more kept buffer, if there may be one more.
func (b *buffers) reserve() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.made == cap(b.kept) {
		return false
	}
	b.made++
	return true
}

// put takes back a buffer get returned.
func (b *buffers) put(buf []byte) {
	if b.kept != nil && len(buf) == b.size {
		b.kept <- buf // never blocks: at most cap(b.kept) exist
		return
	}
	b.spare.Put(&buf)
}

// unmapAll unmaps the kept buffers of a Store no longer reachable (none
// can be in use then).
func unmapAll(kept chan []byte) {
	for {
		select {
		case buf := <-kept:
			unmapBuffer(buf)
		default:
			return
		}
	}
}
