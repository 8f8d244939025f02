// Writing chunks, and deleting what uploads leave.

package gcs

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strconv"

	"cloud.google.com/go/storage"
	"google.golang.org/api/iterator"

	"github.com/spoolhq/spool/internal/upload"
)

// Prepare opens key for chunks of an upload of size bytes by writing its
// marker; no space is allocated. Preparing again keeps the chunks already
// written. It fails if key is not a valid key, size is negative or GCS
// cannot be written.
func (s *Store) Prepare(ctx context.Context, key string, size int64) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("gcs: prepare %q: negative size %d", key, size)
	}
	w := s.bucket.Object(s.markerName(key)).NewWriter(ctx)
	w.ChunkSize = markerChunkSize
	w.ContentType = "text/plain"
	w.Metadata = map[string]string{sizeMetadataKey: strconv.FormatInt(size, 10)}
	if err := w.Close(); err != nil {
		return fmt.Errorf("gcs: prepare %q: %w", key, translate(err))
	}
	return nil
}

// preparedSize returns the size key was prepared for, or an error
// wrapping upload.ErrNotExist if it was never prepared or has since been
// discarded or assembled.
func (s *Store) preparedSize(ctx context.Context, key string) (int64, error) {
	attrs, err := s.bucket.Object(s.markerName(key)).Attrs(ctx)
	if err != nil {
		return 0, translate(err)
	}
	size, err := strconv.ParseInt(attrs.Metadata[sizeMetadataKey], 10, 64)
	if err != nil || size < 0 {
		return 0, fmt.Errorf("marker %s has no valid %s metadata", attrs.Name, sizeMetadataKey)
	}
	return size, nil
}

// WriteChunk streams body into the chunk's part object, replacing any
// earlier copy, and checks the stored object's size and CRC32C against
// those of the bytes read. It reads at most chunk.Size bytes and one more
// to find a body that is too long.
//
// When body ends early it returns the count read and a nil error; when it
// fails it returns body's error unwrapped; when it is longer than
// chunk.Size it returns an error. In those three cases nothing is stored:
// the upload is abandoned before it is finalised, so an earlier copy of
// the chunk, if any, stays as it was. It returns an error wrapping
// upload.ErrNotExist if the upload was never prepared or has been
// discarded or assembled (deleting what it wrote), an error if the chunk
// lies outside the prepared size, and an error after deleting the object
// if GCS stored other bytes than were sent.
func (s *Store) WriteChunk(ctx context.Context, key string, chunk upload.ChunkRef, body io.Reader) (int64, error) {
	if err := checkKey(key); err != nil {
		return 0, err
	}
	if err := checkChunk("write", key, chunk); err != nil {
		return 0, err
	}
	size, err := s.preparedSize(ctx, key)
	if err != nil {
		return 0, fmt.Errorf("gcs: write %q: upload: %w", key, err)
	}
	if chunk.Offset > size || chunk.Size > size-chunk.Offset {
		return 0, fmt.Errorf("gcs: write %q: chunk %d [%d, +%d) outside upload of %d bytes",
			key, chunk.Index, chunk.Offset, chunk.Size, size)
	}

	part := s.bucket.Object(s.partName(key, chunk.Index))
	n, crc, attrs, err := s.writePart(ctx, part, chunk.Size, body)
	if err != nil || n < chunk.Size {
		return n, err
	}
	if attrs.Size != n || attrs.CRC32C != crc {
		err := fmt.Errorf("gcs: write %q chunk %d: %w: GCS stored %d bytes with CRC32C %08x, spool sent %d bytes with CRC32C %08x",
			key, chunk.Index, errChecksumMismatch, attrs.Size, attrs.CRC32C, n, crc)
		return n, errors.Join(err, s.deleteGeneration(ctx, attrs))
	}
	// Discard or Assemble may have run while the bytes streamed; they
	// delete the marker before they list the parts, so either they saw
	// this part or this sees the marker gone.
	if _, err := s.preparedSize(ctx, key); err != nil {
		if errors.Is(err, upload.ErrNotExist) {
			err = fmt.Errorf("gcs: write %q: upload: %w (it went while chunk %d was written)", key, err, chunk.Index)
			return n, errors.Join(err, s.deleteGeneration(ctx, attrs))
		}
		return n, fmt.Errorf("gcs: write %q: upload: %w", key, err)
	}
	return n, nil
}

// writePart streams body into part, reading at most size bytes plus one
// probe byte, and returns the count read, their CRC32C and, when exactly
// size bytes were read and stored, the object's attributes. Errors of body
// come back unwrapped.
func (s *Store) writePart(ctx context.Context, part *storage.ObjectHandle, size int64, body io.Reader) (int64, uint32, *storage.ObjectAttrs, error) {
	// Cancelling the Writer's context before Close abandons the upload
	// without finalising the object.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := part.NewWriter(wctx)
	w.ChunkSize = s.writeBufferSize
	w.ContentType = partContentType
	abandon := func() {
		cancel()
		_ = w.Close() // waits for the upload goroutine; the error is the cancellation
	}

	bufp := s.buffers.Get().(*[]byte)
	defer s.buffers.Put(bufp)
	buf := *bufp
	var n int64
	var crc uint32
	for {
		want := int64(len(buf))
		if left := size - n; left < want {
			want = left + 1 // the probe byte past the chunk
		}
		m, rerr := body.Read(buf[:want])
		over := int64(m) > size-n
		if over {
			m = int(size - n)
		}
		if m > 0 {
			if _, err := w.Write(buf[:m]); err != nil {
				abandon()
				return n, 0, nil, fmt.Errorf("gcs: write %s: %w", part.ObjectName(), translate(err))
			}
			crc = crc32.Update(crc, castagnoli, buf[:m])
			n += int64(m)
		}
		if over {
			abandon()
			return n, 0, nil, fmt.Errorf("gcs: write %s: %w (%d bytes)", part.ObjectName(), errChunkOverflow, size)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			abandon()
			return n, 0, nil, rerr
		}
	}
	if n < size {
		abandon()
		return n, 0, nil, nil
	}
	if err := w.Close(); err != nil {
		return n, 0, nil, fmt.Errorf("gcs: write %s: %w", part.ObjectName(), translate(err))
	}
	return n, crc, w.Attrs(), nil
}

// deleteGeneration deletes the generation of an object this Store wrote,
// and not a newer one a concurrent write may have made since. It runs
// even if ctx is done: it cleans up after a failed call.
func (s *Store) deleteGeneration(ctx context.Context, attrs *storage.ObjectAttrs) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	err := s.bucket.Object(attrs.Name).Generation(attrs.Generation).Delete(ctx)
	if err != nil && !errors.Is(translate(err), upload.ErrNotExist) {
		return fmt.Errorf("gcs: delete %s#%d: %w", attrs.Name, attrs.Generation, translate(err))
	}
	return nil
}

// Discard deletes everything stored for the unfinished upload key: its
// marker first, so chunks still being written delete themselves, then
// its parts and temporary objects. It is not an error if nothing is
// stored. It fails if key is not a valid key or GCS fails.
func (s *Store) Discard(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := s.removeUpload(ctx, key); err != nil {
		return fmt.Errorf("gcs: discard %q: %w", key, err)
	}
	return nil
}

// removeUpload deletes the marker of key, then every object under its
// parts and temporary directories.
func (s *Store) removeUpload(ctx context.Context, key string) error {
	if err := s.deleteObject(ctx, s.markerName(key)); err != nil {
		return err
	}
	var names []string
	for _, dir := range []string{s.partsDir(key), s.tmpDir(key)} {
		objs, err := s.list(ctx, dir)
		if err != nil {
			return err
		}
		for _, o := range objs {
			names = append(names, o.Name)
		}
	}
	return s.deleteObjects(ctx, names)
}

// removeTemporaries deletes the compose intermediates one Assemble of key
// made, even if ctx is done: it cleans up after a failed Assemble.
func (s *Store) removeTemporaries(ctx context.Context, key, run string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	objs, err := s.list(ctx, s.tmpDir(key)+run+"-")
	if err != nil {
		return err
	}
	names := make([]string, len(objs))
	for i, o := range objs {
		names[i] = o.Name
	}
	return s.deleteObjects(ctx, names)
}

// list returns the objects whose names start with prefix and have no "/"
// after it: those directly in a "directory", not in deeper ones, which
// belong to other keys.
func (s *Store) list(ctx context.Context, prefix string) ([]*storage.ObjectAttrs, error) {
	q := &storage.Query{Prefix: prefix, Delimiter: "/"}
	if err := q.SetAttrSelection([]string{"Name", "Size", "CRC32C", "Generation"}); err != nil {
		return nil, fmt.Errorf("gcs: list %s: %w", prefix, err)
	}
	var objs []*storage.ObjectAttrs
	it := s.bucket.Objects(ctx, q)
	for {
		attrs, err := it.Next()
		if err == iterator.Done {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("gcs: list %s: %w", prefix, translate(err))
		}
		if attrs.Name != "" { // not a "directory" prefix
			objs = append(objs, attrs)
		}
	}
}

func (s *Store) deleteObjects(ctx context.Context, names []string) error {
	return forEach(ctx, len(names), func(ctx context.Context, i int) error {
		return s.deleteObject(ctx, names[i])
	})
}

// deleteObject deletes an object; it is not an error if it is gone.
func (s *Store) deleteObject(ctx context.Context, name string) error {
	err := s.bucket.Object(name).Delete(ctx)
	if err != nil && !errors.Is(translate(err), upload.ErrNotExist) {
		return fmt.Errorf("gcs: delete %s: %w", name, translate(err))
	}
	return nil
}

// Delete deletes a finished object. It is not an error if it is gone.
// Readers that already opened it may fail. It fails if objectKey is not
// a valid key or GCS fails.
func (s *Store) Delete(ctx context.Context, objectKey string) error {
	if err := checkKey(objectKey); err != nil {
		return err
	}
	return s.deleteObject(ctx, s.objectName(objectKey))
}

// WritePiece is not written yet.
func (s *Store) WritePiece(ctx context.Context, key string, chunk upload.ChunkRef, at int64, body io.Reader) (int64, error) {
	return 0, errors.New("gcs: WritePiece: not implemented yet")
}

// SealChunk is not written yet.
func (s *Store) SealChunk(ctx context.Context, key string, chunk upload.ChunkRef, crc32c uint32) error {
	return errors.New("gcs: SealChunk: not implemented yet")
}

// Join is not written yet.
func (s *Store) Join(ctx context.Context, key string, size int64, parts []upload.JoinPart) (uint32, error) {
	return 0, errors.New("gcs: Join: not implemented yet")
}
