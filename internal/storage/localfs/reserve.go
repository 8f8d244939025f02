package localfs

import (
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

// Reserve is the room on local storage's filesystem that clients' chunks
// leave free. When uploads fill the disk, what must still be written
// needs it: the database's records (the sweep that frees space updates
// rows before it deletes files, and a failed chunk is recorded), and
// processing's thumbnails and scratch files. A chunk that would take the
// free space below the reserve is refused before its first byte, as on a
// full disk ("storage is full"), and its client sends it again later.
// spool's own writes (assembly, thumbnails, remuxed videos) may use the
// reserve; that is what it is for.
//
// It is Bytes, or Percent of the filesystem's size, or the smaller of the
// two when both are set (so a small disk does not give most of itself to
// the reserve); the zero Reserve keeps nothing.
type Reserve struct {
	Bytes   int64
	Percent float64
}

// DefaultReserve is 256 MiB, and at most 5% of a filesystem smaller than
// 5 GiB: room for the database and processing's small files while the
// disk stays full, not for a remux of a large video (which, without
// room, leaves the video as it came: docs/DESIGN.md).
func DefaultReserve() Reserve { return Reserve{Bytes: 256 << 20, Percent: 5} }

// MaxReservePercent is the largest percentage a Reserve may keep: beyond
// it the reserve would be most of the disk.
const MaxReservePercent = 50

// Of returns the bytes the reserve keeps free on a filesystem of size
// bytes.
func (r Reserve) Of(size int64) int64 {
	switch {
	case r.Percent <= 0:
		return max(r.Bytes, 0)
	case r.Bytes <= 0:
		return int64(float64(size) * r.Percent / 100)
	default:
		return min(r.Bytes, int64(float64(size)*r.Percent/100))
	}
}

// String is the reserve as --disk-reserve's help shows it.
func (r Reserve) String() string {
	pct := strconv.FormatFloat(r.Percent, 'f', -1, 64) + "%"
	switch {
	case r.Percent <= 0:
		return sizeString(max(r.Bytes, 0))
	case r.Bytes <= 0:
		return pct
	default:
		return sizeString(r.Bytes) + " (at most " + pct + ")"
	}
}

// sizeString writes n with the largest binary unit that divides it.
func sizeString(n int64) string {
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}} {
		if n > 0 && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// Reserve returns the store's reserve.
func (s *Store) Reserve() Reserve { return s.opts.Reserve }

// ReserveError is a chunk refused because writing it would eat into the
// reserve. It is a full disk to the caller: it wraps ENOSPC.
type ReserveError struct {
	Free, Need, Reserve int64
}

func (e *ReserveError) Error() string {
	return fmt.Sprintf("%d bytes free, the chunk needs up to %d more and %d are kept in reserve (--disk-reserve): %v",
		e.Free, e.Need, e.Reserve, syscall.ENOSPC)
}

func (e *ReserveError) Unwrap() error { return syscall.ENOSPC }

// roomFor refuses a write of f's range [off, off+n) that would take the
// free space below the reserve. Near the reserve only the range's blocks
// not yet on disk count: a chunk sent again overwrites its blocks and
// needs no new space, and refusing it would stall an upload that takes
// nothing more.
//
// A statfs and a seek cost 4 µs a chunk on a VM, about 1.5% of a tiny
// chunk's PUT, so roomFor asks the filesystem only when the room it last
// found beyond the reserve may be used up by the chunks checked since, or
// after roomMaxAge, to see what others (the database, processing, other
// programs) took or freed meanwhile. Chunks checked at once may together
// pass the reserve by a chunk each, and others' writes within roomMaxAge
// go unseen; that is the reserve's slack, and a write that then finds the
// disk full gives its blocks back (copyChunk). Where the free space
// cannot be read the write goes ahead and finds out.
func (s *Store) roomFor(f *os.File, off, n int64) error {
	if s.opts.Reserve == (Reserve{}) || n <= 0 {
		return nil
	}
	now := time.Now().UnixNano()
	if s.room.left.Add(-n) >= 0 && now-s.room.at.Load() < int64(roomMaxAge) {
		return nil
	}
	free, size, err := s.Space()
	if err != nil {
		return nil
	}
	reserve := s.opts.Reserve.Of(size)
	need := n
	if free-need < reserve {
		if hole, err := firstHole(f, off); err == nil {
			need = max(off+n-max(hole, off), 0)
		}
	}
	s.room.left.Store(max(free-need-reserve, 0))
	s.room.at.Store(now)
	if need > 0 && free-need < reserve {
		return &ReserveError{Free: free, Need: need, Reserve: reserve}
	}
	return nil
}

// roomMaxAge is how long roomFor trusts the free space it last read.
const roomMaxAge = time.Second

// room is what roomFor last found: the bytes chunks may still take before
// the reserve, less those checked since, and when it looked (Unix ns).
type room struct {
	left atomic.Int64
	at   atomic.Int64
}
