package upload

import (
	"context"
	"errors"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/spoolhq/spool/ent"
)

// TestVerifyFileMemoryIsFlat checks that processing's read of a stored
// file allocates the same for 8 chunks as for 64: the read buffer is the
// file's, not a chunk's. It allocated 32 KiB more per chunk before, which
// showed in a replica's peak RSS while it processed a 1 GiB upload.
func TestVerifyFileMemoryIsFlat(t *testing.T) {
	const chunkSize = 256 << 10
	// The fewest bytes of three runs: TotalAlloc counts the whole
	// process, and a goroutine another test left may allocate meanwhile.
	allocated := func(n int) uint64 {
		name, chunks := writeChunkedFile(t, n, chunkSize)
		least := uint64(math.MaxUint64)
		for range 3 {
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, bad, err := verifyFile(context.Background(), name, chunks)
			runtime.ReadMemStats(&after)
			if err != nil || bad != -1 {
				t.Fatalf("verifyFile of %d chunks: bad chunk %d, %v", n, bad, err)
			}
			least = min(least, after.TotalAlloc-before.TotalAlloc)
		}
		return least
	}
	few, many := allocated(8), allocated(64)
	t.Logf("bytes allocated: 8 chunks %d, 64 chunks %d", few, many)
	if many > few+64<<10 {
		t.Errorf("reading 64 chunks allocated %d bytes, 8 chunks %d: memory grows with the file", many, few)
	}
	if few > 2*verifyReadSize {
		t.Errorf("reading 8 chunks allocated %d bytes, more than two read buffers (%d)", few, 2*verifyReadSize)
	}
}

// TestVerifyFileFindsAChangedChunk checks the other half of verifyFile's
// job beside the hash: a chunk whose bytes no longer match its recorded
// CRC32C is named, and a file shorter than its chunks fails.
func TestVerifyFileFindsAChangedChunk(t *testing.T) {
	name, chunks := writeChunkedFile(t, 4, 1000)
	chunks[2].Crc32c++
	if _, bad, err := verifyFile(context.Background(), name, chunks); err != nil || bad != 2 {
		t.Fatalf("bad chunk %d, %v; want 2", bad, err)
	}
	chunks[2].Crc32c--
	if err := os.Truncate(name, 3500); err != nil {
		t.Fatal(err)
	}
	if _, _, err := verifyFile(context.Background(), name, chunks); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("a file 500 bytes short of its chunks: %v, want %v", err, io.ErrUnexpectedEOF)
	}
}

// writeChunkedFile writes n chunks of size bytes, each different, and
// returns the file and the chunk rows recording their CRC32C.
func writeChunkedFile(t *testing.T, n, size int) (string, []*ent.UploadChunk) {
	t.Helper()
	table := crc32.MakeTable(crc32.Castagnoli)
	buf := make([]byte, size*n)
	chunks := make([]*ent.UploadChunk, n)
	for i := range n {
		part := buf[i*size : (i+1)*size]
		for j := range part {
			part[j] = byte(i*31 + j)
		}
		chunks[i] = &ent.UploadChunk{Index: i, Size: int64(size), Crc32c: int64(crc32.Checksum(part, table))}
	}
	name := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(name, buf, 0o600); err != nil {
		t.Fatal(err)
	}
	return name, chunks
}
