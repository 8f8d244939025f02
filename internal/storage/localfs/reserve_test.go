package localfs

import (
	"bytes"
	"errors"
	"math"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/spoolhq/spool/internal/tmpfs"
	"github.com/spoolhq/spool/internal/upload"
)

// With a reserve, chunks stop short of a full disk: the chunk that would
// eat into the reserve is refused before its first byte, as on a full
// disk, and the reserve stays free for the database and spool's own
// files. A chunk sent again overwrites its blocks, needs no new space,
// and is taken.
func TestChunksLeaveTheReserveFree(t *testing.T) {
	const mib = 1 << 20
	reserve := Reserve{Bytes: 3 * mib}
	s, err := NewWithOptions(tmpfs.Mount(t, 8*mib), Options{Reserve: reserve})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	const chunks = 8
	if err := s.Prepare(ctx, "up", chunks*mib); err != nil {
		t.Fatal(err)
	}
	first := string(randomBytes(mib))
	var refused int
	for i := range chunks {
		chunk := upload.ChunkRef{Index: i, Offset: int64(i) * mib, Size: mib}
		body := first
		if i > 0 {
			body = string(randomBytes(mib))
		}
		free := freeBytes(t, s)
		n, err := s.WriteChunk(ctx, "up", chunk, bytes.NewReader([]byte(body)))
		switch {
		case err == nil && free-mib < reserve.Bytes:
			t.Fatalf("chunk %d written with %d bytes free: it ate into the reserve of %d", i, free, reserve.Bytes)
		case err == nil:
			continue
		case free-mib >= reserve.Bytes:
			t.Fatalf("chunk %d refused with %d bytes free, room for it and the reserve: %v", i, free, err)
		}
		var re *ReserveError
		if !errors.As(err, &re) || !errors.Is(err, syscall.ENOSPC) || n != 0 {
			t.Fatalf("chunk %d past the reserve: %d bytes written, %v; want none and a ReserveError that is ENOSPC", i, n, err)
		}
		refused = i
		break
	}
	if refused == 0 {
		t.Fatalf("all %d chunks of a MiB fit on an 8 MiB disk with a 3 MiB reserve", chunks)
	}
	if free := freeBytes(t, s); free < reserve.Bytes {
		t.Fatalf("%d bytes free after the refusal, under the reserve of %d", free, reserve.Bytes)
	}

	// Chunk 0 again: its blocks are on disk already.
	writeChunk(t, s, "up", upload.ChunkRef{Index: 0, Offset: 0, Size: mib}, first)
	// spool's own files may use the reserve.
	if err := s.Put(ctx, "thumbs/t.webp", bytes.NewReader(randomBytes(2*mib)), "image/webp"); err != nil {
		t.Fatalf("Put of 2 MiB into the reserve: %v", err)
	}
}

func TestReserveOf(t *testing.T) {
	const gib = 1 << 30
	for _, c := range []struct {
		r    Reserve
		size int64
		want int64
	}{
		{Reserve{}, 100 * gib, 0},
		{Reserve{Bytes: 256 << 20}, 100 * gib, 256 << 20},
		{Reserve{Percent: 2}, 100 * gib, 2 * gib},
		{Reserve{Percent: 0.5}, 4 * gib, 4 * gib / 200},
		{DefaultReserve(), 100 * gib, 256 << 20},
		{DefaultReserve(), 1 * gib, gib / 20},
		{DefaultReserve(), 48 << 20, (48 << 20) / 20},
	} {
		if got := c.r.Of(c.size); got != c.want {
			t.Errorf("%v of %d bytes = %d, want %d", c.r, c.size, got, c.want)
		}
	}
}

func TestReserveOutOfRangeIsRefused(t *testing.T) {
	for _, r := range []Reserve{{Bytes: -1}, {Percent: -1}, {Percent: MaxReservePercent + 1}, {Percent: math.NaN()}} {
		if _, err := NewWithOptions(t.TempDir(), Options{Reserve: r}); err == nil {
			t.Errorf("a store with reserve %+v opened", r)
		}
	}
}

// roomFor trusts the free space it read for roomMaxAge, less what chunks
// took since; what another writer takes is seen once that has passed.
func TestReserveSeesOtherWritersSoon(t *testing.T) {
	const mib = 1 << 20
	dir := tmpfs.Mount(t, 16*mib)
	reserve := Reserve{Bytes: 4 * mib}
	s, err := NewWithOptions(dir, Options{Reserve: reserve})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := s.Prepare(ctx, "up", 4*mib); err != nil {
		t.Fatal(err)
	}
	chunk := func(i int) upload.ChunkRef { return upload.ChunkRef{Index: i, Offset: int64(i) * mib, Size: mib} }
	writeChunk(t, s, "up", chunk(0), string(randomBytes(mib)))

	// Another writer leaves room for the reserve and half a chunk.
	tmpfs.FillTo(t, dir, reserve.Bytes+mib/2)
	time.Sleep(roomMaxAge)
	n, err := s.WriteChunk(ctx, "up", chunk(1), bytes.NewReader(randomBytes(mib)))
	if !errors.Is(err, syscall.ENOSPC) || n != 0 {
		t.Fatalf("a chunk %v after another writer took the room: %d bytes, %v; want none, and ENOSPC", roomMaxAge, n, err)
	}
}

// BenchmarkRoomFor is the reserve's check on a chunk's way, with the free
// space far from the reserve: 4 µs when it asked the filesystem every
// time (a statfs and a seek on a 2 vCPU VM), 65 ns as it is.
func BenchmarkRoomFor(b *testing.B) {
	s, err := NewWithOptions(b.TempDir(), Options{Reserve: DefaultReserve()})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Prepare(b.Context(), "k", 8<<20); err != nil {
		b.Fatal(err)
	}
	f, err := os.OpenFile(s.stagingPath("k"), os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	for b.Loop() {
		if err := s.roomFor(f, 0, 2); err != nil {
			b.Fatal(err)
		}
	}
}
