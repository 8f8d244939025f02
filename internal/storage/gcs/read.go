// Reading objects and chunks.

package gcs

import (
	"context"
	"fmt"
	"io"
	"time"

	"cloud.google.com/go/storage"

	"github.com/spoolhq/spool/internal/upload"
)

// Open returns the object for reading. Reads fetch byte ranges from GCS on
// demand, starting where Seek left off, always from the generation opened
// and with ctx, which must last as long as the reading. It returns an
// error wrapping upload.ErrNotExist if there is no such object, including
// when objectKey is not a valid key.
func (s *Store) Open(ctx context.Context, objectKey string) (upload.Object, error) {
	if err := checkKey(objectKey); err != nil {
		return nil, fmt.Errorf("%w: %w", err, upload.ErrNotExist)
	}
	name := s.objectName(objectKey)
	attrs, err := s.bucket.Object(name).Attrs(ctx)
	if err != nil {
		return nil, fmt.Errorf("gcs: open %q: %w", objectKey, translate(err))
	}
	return &object{
		ctx:     ctx,
		handle:  s.bucket.Object(name).Generation(attrs.Generation),
		size:    attrs.Size,
		modTime: modTime(attrs),
	}, nil
}

// modTime is when an object last changed (fake-gcs-server may leave
// Updated unset).
func modTime(attrs *storage.ObjectAttrs) time.Time {
	if attrs.Updated.IsZero() {
		return attrs.Created
	}
	return attrs.Updated
}

// StatChunk returns the size and CRC32C of the chunk's part object, or an
// error wrapping upload.ErrNotExist if there is none.
func (s *Store) StatChunk(ctx context.Context, key string, chunk upload.ChunkRef) (upload.ChunkInfo, error) {
	if err := checkKey(key); err != nil {
		return upload.ChunkInfo{}, err
	}
	if err := checkChunk("stat", key, chunk); err != nil {
		return upload.ChunkInfo{}, err
	}
	attrs, err := s.bucket.Object(s.partName(key, chunk.Index)).Attrs(ctx)
	if err != nil {
		return upload.ChunkInfo{}, fmt.Errorf("gcs: stat %q chunk %d: %w", key, chunk.Index, translate(err))
	}
	return upload.ChunkInfo{Size: attrs.Size, CRC32C: attrs.CRC32C}, nil
}

// ReadChunkHead returns up to n of the first bytes of the chunk's part
// object, or an error wrapping upload.ErrNotExist if there is none.
func (s *Store) ReadChunkHead(ctx context.Context, key string, chunk upload.ChunkRef, n int) ([]byte, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	if err := checkChunk("read", key, chunk); err != nil {
		return nil, err
	}
	if n <= 0 {
		return []byte{}, nil
	}
	r, err := s.bucket.Object(s.partName(key, chunk.Index)).NewRangeReader(ctx, 0, int64(n))
	if err != nil {
		return nil, fmt.Errorf("gcs: read %q chunk %d: %w", key, chunk.Index, translate(err))
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, int64(n)))
	if err != nil {
		return nil, fmt.Errorf("gcs: read %q chunk %d: %w", key, chunk.Index, translate(err))
	}
	return b, nil
}
