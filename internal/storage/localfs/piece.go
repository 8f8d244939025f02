package localfs

import (
	"context"
	"fmt"
	"io"

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

// SealChunk has nothing to do: pieces are written in place, so the chunk
// is whole as soon as its last piece is. The CRC32C is not checked: the
// caller computed it from the bytes as they were written, and reading
// the chunk back would cost a second pass over every byte a tus client
// sends.
func (s *Store) SealChunk(ctx context.Context, key string, chunk upload.ChunkRef, crc32c uint32) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if chunk.Index < 0 || chunk.Offset < 0 || chunk.Size < 0 {
		return fmt.Errorf("localfs: seal %q: invalid chunk %+v", key, chunk)
	}
	return ctx.Err()
}
