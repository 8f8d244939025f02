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

// PrepareConcurrency is how many Prepare calls of one batch initBatch
// makes at once (upload.ConcurrentPreparer): each writes a small marker
// object, one round trip, so up to 16 files cost the time of one.
func (s *Store) PrepareConcurrency() int { return 16 }

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
	w := s.newWriter(ctx, s.bucket.Object(s.markerName(key)), markerChunkSize)
	w.ContentType = "text/plain"
	w.Metadata = map[string]string{sizeMetadataKey: strconv.FormatInt(size, 10)}
	if err := w.Close(); err != nil {
		return fmt.Errorf("gcs: prepare %q: %w", key, w.err(err))
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
	if err := s.checkPrepared(ctx, key, chunk); err != nil {
		return 0, fmt.Errorf("gcs: write %q: %w", key, err)
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
	if err := s.keepIfPrepared(ctx, key, attrs); err != nil {
		return n, fmt.Errorf("gcs: write %q chunk %d: %w", key, chunk.Index, err)
	}
	return n, nil
}

// checkPrepared returns an error wrapping upload.ErrNotExist if key was
// never prepared or has since been discarded or assembled, and an error
// if the chunk lies outside the size it was prepared for.
func (s *Store) checkPrepared(ctx context.Context, key string, chunk upload.ChunkRef) error {
	size, err := s.preparedSize(ctx, key)
	if err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	if chunk.Offset > size || chunk.Size > size-chunk.Offset {
		return fmt.Errorf("chunk %d [%d, +%d) outside upload of %d bytes", chunk.Index, chunk.Offset, chunk.Size, size)
	}
	return nil
}

// keepIfPrepared checks that key is still prepared after attrs, an object
// of its, was written, and deletes that object if not, returning an error
// wrapping upload.ErrNotExist. Discard and Assemble may have run while it
// was written; they delete the marker before they list the upload's
// objects, so either they saw this one or this sees the marker gone.
func (s *Store) keepIfPrepared(ctx context.Context, key string, attrs *storage.ObjectAttrs) error {
	if _, err := s.preparedSize(ctx, key); err != nil {
		if errors.Is(err, upload.ErrNotExist) {
			err = fmt.Errorf("upload: %w (it went while %s was written)", err, attrs.Name)
			return errors.Join(err, s.deleteGeneration(ctx, attrs))
		}
		return fmt.Errorf("upload: %w", err)
	}
	return nil
}

// writePart streams body into part, reading at most size bytes plus one
// probe byte, and returns the count read, their CRC32C and, when exactly
// size bytes were read and stored, the object's attributes. Errors of body
// come back unwrapped.
func (s *Store) writePart(ctx context.Context, part *storage.ObjectHandle, size int64, body io.Reader) (int64, uint32, *storage.ObjectAttrs, error) {
	w := s.newPartWriter(ctx, part)
	c := s.copyBounded(w, size, body)
	switch {
	case c.writeErr != nil:
		w.Abandon()
		return c.n, 0, nil, fmt.Errorf("gcs: write %s: %w", part.ObjectName(), w.err(c.writeErr))
	case c.over:
		w.Abandon()
		return c.n, 0, nil, fmt.Errorf("gcs: write %s: %w (%d bytes)", part.ObjectName(), errChunkOverflow, size)
	case c.bodyErr != nil:
		w.Abandon()
		return c.n, 0, nil, c.bodyErr
	case c.n < size:
		w.Abandon()
		return c.n, 0, nil, nil
	}
	if err := w.Close(); err != nil {
		return c.n, 0, nil, fmt.Errorf("gcs: write %s: %w", part.ObjectName(), w.err(err))
	}
	return c.n, c.crc, w.Attrs(), nil
}

func (s *Store) newPartWriter(ctx context.Context, obj *storage.ObjectHandle) *writer {
	w := s.newWriter(ctx, obj, s.writeBufferSize)
	w.ContentType = partContentType
	return w
}

// copied is what copyBounded read and wrote.
type copied struct {
	n        int64  // bytes written, never more than the bound
	crc      uint32 // their CRC32C
	over     bool   // body held more bytes than the bound
	bodyErr  error  // body's error, other than io.EOF
	writeErr error  // w's error
}

// copyBounded copies body into w through a pooled buffer until body ends,
// fails or has given size bytes, reading one probe byte past size to find
// a body that is longer. Bytes past size are never written.
func (s *Store) copyBounded(w io.Writer, size int64, body io.Reader) copied {
	bufp := s.buffers.Get().(*[]byte)
	defer s.buffers.Put(bufp)
	buf := *bufp
	var c copied
	for {
		want := int64(len(buf))
		if left := size - c.n; left < want {
			want = left + 1 // the probe byte past the bound
		}
		m, rerr := body.Read(buf[:want])
		if int64(m) > size-c.n {
			c.over = true
			m = int(size - c.n)
		}
		if m > 0 {
			if _, err := w.Write(buf[:m]); err != nil {
				c.writeErr = err
				return c
			}
			c.crc = crc32.Update(c.crc, castagnoli, buf[:m])
			c.n += int64(m)
		}
		switch {
		case c.over:
			return c
		case rerr == io.EOF:
			return c
		case rerr != nil:
			c.bodyErr = rerr
			return c
		}
	}
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

// removeTemporaries deletes the compose intermediates one compose for key
// made (run names it), even if ctx is done: it cleans up after a failed
// Assemble, SealChunk or Join.
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
