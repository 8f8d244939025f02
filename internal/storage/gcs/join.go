// Joining other uploads' parts into an upload's one chunk.

package gcs

import (
	"context"
	"errors"
	"fmt"

	"cloud.google.com/go/storage"

	"github.com/spoolhq/spool/internal/upload"
)

// Join composes the part objects of the uploads in parts, in order (each
// one's chunks 0 to TotalChunks-1), into chunk 0's part of key, as
// Assemble composes an upload's parts into its object, and returns its
// CRC32C. It checks that each upload's chunks hold its Size, and that the
// joined part holds size bytes with the CRC32C its sources' add up to.
// The sources stay as they are.
//
// It returns an error wrapping upload.ErrNotExist if key was never
// prepared or has been discarded or assembled (deleting the part it
// composed), or if a chunk of one of parts is missing (never written, or
// the upload is gone); and an error if the sizes do not add up, or if the
// joined part's checksum is wrong (deleting it).
func (s *Store) Join(ctx context.Context, key string, size int64, parts []upload.JoinPart) (uint32, error) {
	if err := checkKey(key); err != nil {
		return 0, err
	}
	if err := upload.CheckJoin(key, size, parts); err != nil {
		return 0, fmt.Errorf("gcs: join into %q: %w", key, err)
	}
	for _, p := range parts {
		if err := checkKey(p.Key); err != nil {
			return 0, err
		}
	}
	crc, err := s.join(ctx, key, size, parts)
	if err != nil {
		return 0, fmt.Errorf("gcs: join into %q: %w", key, err)
	}
	return crc, nil
}

func (s *Store) join(ctx context.Context, key string, size int64, parts []upload.JoinPart) (uint32, error) {
	prepared, err := s.preparedSize(ctx, key)
	if err != nil {
		return 0, fmt.Errorf("upload: %w", err)
	}
	if prepared != size {
		return 0, fmt.Errorf("upload was prepared for %d bytes, not %d", prepared, size)
	}
	sources := make([][]*storage.ObjectAttrs, len(parts))
	err = forEach(ctx, len(parts), func(ctx context.Context, i int) error {
		p := parts[i]
		chunks, err := s.listParts(ctx, p.Key, p.TotalChunks)
		if err != nil {
			return fmt.Errorf("upload %q: %w", p.Key, err)
		}
		var sum int64
		for _, c := range chunks {
			sum += c.Size
		}
		if sum != p.Size {
			return fmt.Errorf("upload %q: its %d chunks hold %d bytes, want %d", p.Key, p.TotalChunks, sum, p.Size)
		}
		sources[i] = chunks
		return nil
	})
	if err != nil {
		return 0, err
	}
	var srcs []*storage.ObjectAttrs
	var want uint32
	for _, chunks := range sources {
		for _, c := range chunks {
			srcs = append(srcs, c)
			want = crc32cCombine(want, c.CRC32C, c.Size)
		}
	}

	run, err := newRunID()
	if err != nil {
		return 0, err
	}
	joined, err := s.compose(ctx, key, run, srcs, s.bucket.Object(s.partName(key, 0)))
	if err != nil {
		return 0, err
	}
	if joined.Size != size || joined.CRC32C != want {
		err := fmt.Errorf("%w: joined part has %d bytes with CRC32C %08x, its sources %d bytes with CRC32C %08x",
			errChecksumMismatch, joined.Size, joined.CRC32C, size, want)
		return 0, errors.Join(err, s.deleteGeneration(ctx, joined))
	}
	if err := s.keepIfPrepared(ctx, key, joined); err != nil {
		return 0, err
	}
	return joined.CRC32C, nil
}
