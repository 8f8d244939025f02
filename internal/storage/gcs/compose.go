// Assembling the parts of an upload into its object server-side.

package gcs

import (
	"context"
	"errors"
	"fmt"

	"cloud.google.com/go/storage"

	"github.com/spoolhq/spool/internal/upload"
)

// Assemble composes the parts of key into its object and returns the
// object's key, which is key. It checks that the object holds size bytes
// and that its CRC32C is the one the parts' checksums add up to, then
// deletes the parts. If the upload was already assembled it returns the
// same object (finishing the deletion of parts a failure interrupted).
//
// It returns an error wrapping upload.ErrNotExist if there is neither an
// unfinished upload nor an object, or if any of the chunks 0 to
// totalChunks-1 is missing; an error if the sizes do not add up to size;
// and an error, deleting the object but keeping the parts, if the
// composed object's checksum is wrong.
func (s *Store) Assemble(ctx context.Context, key string, totalChunks int, size int64) (string, error) {
	if err := checkKey(key); err != nil {
		return "", err
	}
	if totalChunks < 1 || size < 0 {
		return "", fmt.Errorf("gcs: assemble %q: invalid totalChunks %d or size %d", key, totalChunks, size)
	}
	prepared, err := s.preparedSize(ctx, key)
	if errors.Is(err, upload.ErrNotExist) {
		return s.assembled(ctx, key, size)
	}
	if err != nil {
		return "", fmt.Errorf("gcs: assemble %q: %w", key, err)
	}
	if prepared != size {
		return "", fmt.Errorf("gcs: assemble %q: upload was prepared for %d bytes, not %d", key, prepared, size)
	}
	parts, err := s.listParts(ctx, key, totalChunks)
	if err != nil {
		return "", fmt.Errorf("gcs: assemble %q: %w", key, err)
	}
	var sum int64
	var want uint32
	for _, p := range parts {
		sum += p.Size
		want = crc32cCombine(want, p.CRC32C, p.Size)
	}
	if sum != size {
		return "", fmt.Errorf("gcs: assemble %q: its %d chunks hold %d bytes, want %d", key, totalChunks, sum, size)
	}

	run, err := newRunID()
	if err != nil {
		return "", fmt.Errorf("gcs: assemble %q: %w", key, err)
	}
	final, err := s.compose(ctx, key, run, parts, s.bucket.Object(s.objectName(key)))
	if err != nil {
		// A concurrent Assemble (another replica) may have finished first
		// and deleted the parts; it deleted the marker before them.
		if _, perr := s.preparedSize(ctx, key); errors.Is(perr, upload.ErrNotExist) {
			if objKey, aerr := s.assembled(ctx, key, size); aerr == nil {
				return objKey, nil
			}
		}
		return "", err
	}
	if final.Size != size || final.CRC32C != want {
		err := fmt.Errorf("gcs: assemble %q: %w: composed object has %d bytes with CRC32C %08x, its parts %d bytes with CRC32C %08x",
			key, errChecksumMismatch, final.Size, final.CRC32C, size, want)
		return "", errors.Join(err, s.deleteGeneration(ctx, final), s.removeTemporaries(ctx, key, run))
	}
	if err := s.removeUpload(ctx, key); err != nil {
		// The object is whole; calling Assemble again finishes the cleanup.
		return "", fmt.Errorf("gcs: assemble %q: object composed, but removing its parts failed: %w", key, err)
	}
	return key, nil
}

// assembled returns key if its object already exists with size bytes,
// after removing whatever an interrupted Assemble left of the upload.
func (s *Store) assembled(ctx context.Context, key string, size int64) (string, error) {
	attrs, err := s.bucket.Object(s.objectName(key)).Attrs(ctx)
	if err != nil {
		return "", fmt.Errorf("gcs: assemble %q: upload: %w", key, translate(err))
	}
	if attrs.Size != size {
		return "", fmt.Errorf("gcs: assemble %q: object has %d bytes, want %d", key, attrs.Size, size)
	}
	if err := s.removeUpload(ctx, key); err != nil {
		return "", fmt.Errorf("gcs: assemble %q: removing its parts: %w", key, err)
	}
	return key, nil
}

// listParts returns the attributes of parts 0 to total-1 of key, in
// order, or an error wrapping upload.ErrNotExist naming those missing.
func (s *Store) listParts(ctx context.Context, key string, total int) ([]*storage.ObjectAttrs, error) {
	dir := s.partsDir(key)
	objs, err := s.list(ctx, dir)
	if err != nil {
		return nil, err
	}
	parts := make([]*storage.ObjectAttrs, total)
	for _, o := range objs {
		if i, ok := partIndex(dir, o.Name); ok && i < total {
			parts[i] = o
		}
	}
	var missing []int
	for i, p := range parts {
		if p == nil {
			missing = append(missing, i)
		}
	}
	if len(missing) > 0 {
		shown := missing[:min(len(missing), 10)]
		return nil, fmt.Errorf("%d of %d chunks (%v…): %w", len(missing), total, shown, upload.ErrNotExist)
	}
	return parts, nil
}

// compose makes dst from srcs, in order: the object of key (Assemble),
// a part of key from its pieces (SealChunk) or from other uploads' parts
// (Join). GCS takes at most 32 sources per compose, so with more it
// composes groups of 32 into intermediates under tmp/<key>/ and goes on
// with those: 100 parts make 4 intermediates, then dst. Sources are
// pinned to the generations listed, so an object replaced meanwhile
// cannot slip in unchecked. The intermediates' names start with run, so
// concurrent calls for one upload do not overwrite each other's, and they
// are deleted once dst is made.
func (s *Store) compose(ctx context.Context, key, run string, srcs []*storage.ObjectAttrs, dst *storage.ObjectHandle) (*storage.ObjectAttrs, error) {
	fanIn := s.composeFanIn
	intermediates := len(srcs) > fanIn
	for level := 1; len(srcs) > fanIn; level++ {
		groups := (len(srcs) + fanIn - 1) / fanIn
		next := make([]*storage.ObjectAttrs, groups)
		err := forEach(ctx, groups, func(ctx context.Context, g int) error {
			group := srcs[g*fanIn : min((g+1)*fanIn, len(srcs))]
			if len(group) == 1 {
				next[g] = group[0] // nothing to compose; it moves up a level
				return nil
			}
			tmp := s.bucket.Object(fmt.Sprintf("%s%s-%d-%06d", s.tmpDir(key), run, level, g))
			attrs, err := s.composeInto(ctx, tmp, group)
			next[g] = attrs
			return err
		})
		if err != nil {
			return nil, errors.Join(err, s.removeTemporaries(ctx, key, run))
		}
		srcs = next
	}
	final, err := s.composeInto(ctx, dst, srcs)
	if err != nil {
		return nil, errors.Join(err, s.removeTemporaries(ctx, key, run))
	}
	if intermediates {
		// A failure here costs only storage until the upload is
		// assembled or discarded, which removes all of tmp/<key>/.
		_ = s.removeTemporaries(ctx, key, run)
	}
	return final, nil
}

func (s *Store) composeInto(ctx context.Context, dst *storage.ObjectHandle, srcs []*storage.ObjectAttrs) (*storage.ObjectAttrs, error) {
	handles := make([]*storage.ObjectHandle, len(srcs))
	for i, a := range srcs {
		handles[i] = s.bucket.Object(a.Name).Generation(a.Generation)
	}
	attrs, err := dst.ComposerFrom(handles...).Run(ctx)
	if err != nil {
		return nil, fmt.Errorf("gcs: compose %d objects into %s: %w", len(srcs), dst.ObjectName(), translate(err))
	}
	return attrs, nil
}
