package localfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/spoolhq/spool/internal/upload"
)

// WritePiece writes body in place from the chunk's byte at on, as
// WriteChunk writes a chunk from its first byte: every byte read is in
// the staging file when it returns, also when body fails, and it returns
// body's error unchanged then. A body longer than the rest of the chunk
// fails before the bytes past it are written.
func (s *Store) WritePiece(ctx context.Context, key string, chunk upload.ChunkRef, at int64, body io.Reader) (int64, error) {
	return s.writeAt(ctx, "write piece", key, chunk, at, body)
}

// SealChunk has nothing to make, since pieces are written in place: the
// chunk is whole as soon as its last piece is. It starts the chunk's
// writeback (sync_file_range, no wait): a tus upload completes in the
// answer to its last PATCH, where Assemble's fsync would otherwise write
// the whole file. Chunk PUTs do without it, as it costs CPU (docs/DESIGN.md
// §Durability: what a crash and a power loss can cost), and their
// complete is a request of its own. The CRC32C is not checked: the caller
// computed it from the bytes as they were written, and reading the chunk
// back would cost a second pass over every byte.
func (s *Store) SealChunk(ctx context.Context, key string, chunk upload.ChunkRef, crc32c uint32) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if chunk.Index < 0 || chunk.Offset < 0 || chunk.Size < 0 {
		return fmt.Errorf("localfs: seal %q: invalid chunk %+v", key, chunk)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.opts.SyncWrites {
		return nil // each piece was synced as it was written
	}
	defer s.uploads.rlock(key)()
	f, err := os.Open(s.stagingPath(key))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("localfs: seal %q: upload %w", key, upload.ErrNotExist)
	}
	if err != nil {
		return fmt.Errorf("localfs: seal %q: %w", key, err)
	}
	startWriteback(f, chunk.Offset, chunk.Size)
	return f.Close()
}
