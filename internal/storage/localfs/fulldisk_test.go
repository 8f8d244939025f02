package localfs

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strconv"
	"syscall"
	"testing"

	"github.com/spoolhq/spool/internal/tmpfs"
	"github.com/spoolhq/spool/internal/upload"
)

func freeBytes(t *testing.T, s *Store) int64 {
	t.Helper()
	free, _, err := s.Space()
	if err != nil {
		t.Fatalf("Space: %v", err)
	}
	return free
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// A chunk larger than what is left of the disk fails with ENOSPC. Its
// bytes are nobody's chunk, so they must not keep the disk full: before,
// the failing upload held the space until it expired, and every other
// upload on the server failed with "storage is full" meanwhile.
func TestFailedWriteOnAFullDiskGivesItsSpaceBack(t *testing.T) {
	const mib = 1 << 20
	for _, opts := range []Options{{}, {SyncWrites: true}} {
		t.Run("SyncWrites="+strconv.FormatBool(opts.SyncWrites), func(t *testing.T) {
			s, err := NewWithOptions(tmpfs.Mount(t, 4*mib), opts)
			if err != nil {
				t.Fatal(err)
			}
			ctx := t.Context()
			before := freeBytes(t, s)

			// One chunk of 8 MiB on a disk of 4: it cannot fit.
			big := upload.ChunkRef{Index: 0, Offset: 0, Size: 8 * mib}
			if err := s.Prepare(ctx, "big", big.Size); err != nil {
				t.Fatal(err)
			}
			n, err := s.WriteChunk(ctx, "big", big, bytes.NewReader(randomBytes(int(big.Size))))
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("WriteChunk of 8 MiB on a 4 MiB disk: %d bytes, %v; want ENOSPC", n, err)
			}
			if n == 0 {
				t.Fatal("the write failed before its first byte: the test fills nothing")
			}
			if after := freeBytes(t, s); after < before-64<<10 {
				t.Fatalf("after a failed write of %d bytes, %d bytes are free of the %d before: its blocks were kept", n, after, before)
			}

			// Another upload's chunk fits again.
			small := upload.ChunkRef{Index: 0, Offset: 0, Size: 2 * mib}
			if err := s.Prepare(ctx, "small", small.Size); err != nil {
				t.Fatal(err)
			}
			writeChunk(t, s, "small", small, string(randomBytes(int(small.Size))))
		})
	}
}

// A tus upload writes a chunk in pieces. When a later piece fails on a
// full disk, only that piece's blocks go back: the earlier piece is
// recorded as received and must read back as it was written.
func TestFailedPieceOnAFullDiskKeepsTheEarlierPieces(t *testing.T) {
	const mib = 1 << 20
	s, err := NewWithOptions(tmpfs.Mount(t, 4*mib), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	chunk := upload.ChunkRef{Index: 0, Offset: 0, Size: 8 * mib}
	if err := s.Prepare(ctx, "tus", chunk.Size); err != nil {
		t.Fatal(err)
	}
	first := randomBytes(mib)
	if n, err := s.WritePiece(ctx, "tus", chunk, 0, bytes.NewReader(first)); err != nil || n != mib {
		t.Fatalf("WritePiece of the first MiB: %d bytes, %v", n, err)
	}
	afterFirst := freeBytes(t, s)
	n, err := s.WritePiece(ctx, "tus", chunk, mib, bytes.NewReader(randomBytes(int(chunk.Size-mib))))
	if !errors.Is(err, syscall.ENOSPC) || n == 0 {
		t.Fatalf("WritePiece of the other 7 MiB on a 4 MiB disk: %d bytes, %v; want some bytes, then ENOSPC", n, err)
	}
	if after := freeBytes(t, s); after < afterFirst-64<<10 {
		t.Fatalf("after a failed piece of %d bytes, %d bytes are free of the %d before it: its blocks were kept", n, after, afterFirst)
	}
	got := assembleAndRead(t, s, "tus", 1, chunk.Size)
	if !bytes.Equal([]byte(got[:mib]), first) {
		t.Fatalf("the first piece reads back changed (first difference at byte %d)", firstDiff(got[:mib], string(first)))
	}
	if rest := []byte(got[mib:]); !bytes.Equal(rest, make([]byte, len(rest))) {
		t.Fatal("the failed piece's range reads back other than zeros")
	}
}
