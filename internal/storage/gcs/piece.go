// Pieces: a chunk written in parts, by offset, as tus PATCHes arrive.

package gcs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"

	"cloud.google.com/go/storage"

	"github.com/spoolhq/spool/internal/upload"
)

// WritePiece streams body into an object of its own, the piece of the
// chunk at at (parts/<key>/<index>.piece-<at>), replacing any earlier
// piece there, and checks the stored object's size and CRC32C against
// those of the bytes read. Unlike WriteChunk it keeps what arrives: when
// body ends early or fails, the piece is finalised with the bytes read,
// and their count comes back with body's error unwrapped. A body longer
// than the rest of the chunk keeps the bytes that fit and fails. A body
// that gives nothing stores nothing.
//
// It returns 0 with an error wrapping upload.ErrNotExist if the upload
// was never prepared or has been discarded or assembled (deleting what it
// wrote), an error if at or the chunk lies outside the prepared size, and
// 0 with an error after deleting the piece if GCS stored other bytes than
// were sent; a failure of body then comes back too, joined.
func (s *Store) WritePiece(ctx context.Context, key string, chunk upload.ChunkRef, at int64, body io.Reader) (int64, error) {
	if err := checkKey(key); err != nil {
		return 0, err
	}
	if err := checkChunk("write piece", key, chunk); err != nil {
		return 0, err
	}
	if at < 0 || at > chunk.Size {
		return 0, fmt.Errorf("gcs: write piece %q: byte %d is outside chunk %d of %d bytes", key, at, chunk.Index, chunk.Size)
	}
	if err := s.checkPrepared(ctx, key, chunk); err != nil {
		return 0, fmt.Errorf("gcs: write piece %q: %w", key, err)
	}

	piece := s.bucket.Object(s.pieceName(key, chunk.Index, at))
	c, attrs, err := s.writeKept(ctx, piece, chunk.Size-at, body)
	if err != nil {
		return 0, errors.Join(err, c.bodyErr)
	}
	bodyErr := c.bodyErr
	if c.over {
		bodyErr = fmt.Errorf("gcs: write piece %q chunk %d: %w (%d bytes from byte %d)", key, chunk.Index, errChunkOverflow, chunk.Size, at)
	}
	if attrs == nil {
		return 0, bodyErr // nothing arrived, nothing stored
	}
	if attrs.Size != c.n || attrs.CRC32C != c.crc {
		err := fmt.Errorf("gcs: write piece %q chunk %d at %d: %w: GCS stored %d bytes with CRC32C %08x, spool sent %d bytes with CRC32C %08x",
			key, chunk.Index, at, errChecksumMismatch, attrs.Size, attrs.CRC32C, c.n, c.crc)
		return 0, errors.Join(err, s.deleteGeneration(ctx, attrs), bodyErr)
	}
	if err := s.keepIfPrepared(ctx, key, attrs); err != nil {
		return 0, errors.Join(fmt.Errorf("gcs: write piece %q chunk %d: %w", key, chunk.Index, err), bodyErr)
	}
	return c.n, bodyErr
}

// writeKept streams at most size bytes of body into obj and finalises it
// with whatever was read, also when body fails or is longer, unless
// nothing was: then it stores nothing and returns nil attributes. The
// error is the Writer's; body's is in the copied.
func (s *Store) writeKept(ctx context.Context, obj *storage.ObjectHandle, size int64, body io.Reader) (copied, *storage.ObjectAttrs, error) {
	w := s.newPartWriter(ctx, obj)
	c := s.copyBounded(w, size, body)
	if c.writeErr != nil || c.n == 0 {
		w.Abandon()
		if c.writeErr != nil {
			return c, nil, fmt.Errorf("gcs: write %s: %w", obj.ObjectName(), w.err(c.writeErr))
		}
		return c, nil, nil
	}
	if err := w.Close(); err != nil {
		return c, nil, fmt.Errorf("gcs: write %s: %w", obj.ObjectName(), w.err(err))
	}
	return c, w.Attrs(), nil
}

// SealChunk composes the chunk's pieces into its part object and deletes
// them. It follows them from byte 0, each piece starting where the one
// before ended, up to chunk.Size; pieces off that chain (left by a write
// that was later replaced) are ignored, and deleted too. It checks that
// the pieces' CRC32Cs add up to crc32c before composing, and that the
// part GCS composed has chunk.Size bytes and that CRC32C after. A chunk
// already sealed (its part of chunk.Size bytes with that CRC32C, and no
// whole chain of pieces) is left as it is.
//
// It returns an error wrapping upload.ErrNotExist if the upload was never
// prepared or has been discarded or assembled (deleting the part it
// composed), an error if the pieces do not cover the chunk and it is not
// sealed, and an error if the checksums differ, keeping the pieces; the
// part is then deleted if it was composed.
func (s *Store) SealChunk(ctx context.Context, key string, chunk upload.ChunkRef, crc32c uint32) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := checkChunk("seal", key, chunk); err != nil {
		return err
	}
	if err := s.sealChunk(ctx, key, chunk, crc32c); err != nil {
		return fmt.Errorf("gcs: seal %q chunk %d: %w", key, chunk.Index, err)
	}
	return nil
}

func (s *Store) sealChunk(ctx context.Context, key string, chunk upload.ChunkRef, crc32c uint32) error {
	if err := s.checkPrepared(ctx, key, chunk); err != nil {
		return err
	}
	pieces, err := s.listPieces(ctx, key, chunk.Index)
	if err != nil {
		return err
	}
	chain, covered := pieceChain(pieces, chunk.Size)
	if covered < chunk.Size || chunk.Size == 0 {
		if err := s.checkSealed(ctx, key, chunk, crc32c, covered); err != nil {
			return err
		}
		return s.deletePieces(ctx, pieces)
	}
	var want uint32
	for _, p := range chain {
		want = crc32cCombine(want, p.CRC32C, p.Size)
	}
	if want != crc32c {
		return fmt.Errorf("%w: its pieces hold CRC32C %08x, the bytes sent %08x", errChecksumMismatch, want, crc32c)
	}

	run, err := newRunID()
	if err != nil {
		return err
	}
	part, err := s.compose(ctx, key, run, chain, s.bucket.Object(s.partName(key, chunk.Index)))
	if err != nil {
		return err
	}
	if part.Size != chunk.Size || part.CRC32C != crc32c {
		err := fmt.Errorf("%w: composed part has %d bytes with CRC32C %08x, the bytes sent %d with CRC32C %08x",
			errChecksumMismatch, part.Size, part.CRC32C, chunk.Size, crc32c)
		return errors.Join(err, s.deleteGeneration(ctx, part))
	}
	if err := s.keepIfPrepared(ctx, key, part); err != nil {
		return err
	}
	// A failure leaves the part whole; sealing again finds it sealed (or
	// composes it again if the chain is still whole) and deletes what is
	// left.
	return s.deletePieces(ctx, pieces)
}

// checkSealed returns nil if the chunk's part holds chunk.Size bytes
// with CRC32C crc32c, and an error saying what is missing otherwise;
// covered is how far the chain of pieces reached.
func (s *Store) checkSealed(ctx context.Context, key string, chunk upload.ChunkRef, crc32c uint32, covered int64) error {
	part := s.bucket.Object(s.partName(key, chunk.Index))
	attrs, err := part.Attrs(ctx)
	err = translate(err)
	if errors.Is(err, upload.ErrNotExist) && chunk.Size == 0 {
		// Nothing to compose: an empty chunk is an empty object.
		if _, _, attrs, err = s.writePart(ctx, part, 0, eofReader{}); err != nil {
			return err
		}
		return s.keepIfPrepared(ctx, key, attrs)
	}
	switch {
	case errors.Is(err, upload.ErrNotExist):
		return fmt.Errorf("its pieces hold bytes [0, %d) of %d, and it was not sealed before", covered, chunk.Size)
	case err != nil:
		return fmt.Errorf("stat part: %w", err)
	case attrs.Size != chunk.Size:
		return fmt.Errorf("its pieces hold bytes [0, %d) of %d, and its part %d", covered, chunk.Size, attrs.Size)
	case attrs.CRC32C != crc32c:
		return fmt.Errorf("%w: the sealed part has CRC32C %08x, the bytes sent %08x", errChecksumMismatch, attrs.CRC32C, crc32c)
	}
	return nil
}

// eofReader is an empty body.
type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// listPieces returns the chunk's pieces by the byte they start at.
func (s *Store) listPieces(ctx context.Context, key string, index int) (map[int64]*storage.ObjectAttrs, error) {
	prefix := s.piecePrefix(key, index)
	objs, err := s.list(ctx, prefix)
	if err != nil {
		return nil, err
	}
	pieces := make(map[int64]*storage.ObjectAttrs, len(objs))
	for _, o := range objs {
		if at, ok := pieceOffset(prefix, o.Name); ok {
			pieces[at] = o
		}
	}
	return pieces, nil
}

// pieceChain follows pieces from byte 0, each starting where the one
// before ended, and returns them in order and where the last one ends,
// stopping before a piece that would end past size.
func pieceChain(pieces map[int64]*storage.ObjectAttrs, size int64) (chain []*storage.ObjectAttrs, end int64) {
	for end < size {
		p := pieces[end]
		if p == nil || p.Size == 0 || p.Size > size-end {
			break
		}
		chain = append(chain, p)
		end += p.Size
	}
	return chain, end
}

// deletePieces deletes the generations of pieces listed, not newer ones a
// concurrent write may have made since.
func (s *Store) deletePieces(ctx context.Context, pieces map[int64]*storage.ObjectAttrs) error {
	all := slices.Collect(maps.Values(pieces))
	return forEach(ctx, len(all), func(ctx context.Context, i int) error {
		err := s.bucket.Object(all[i].Name).Generation(all[i].Generation).Delete(ctx)
		if err != nil && !errors.Is(translate(err), upload.ErrNotExist) {
			return fmt.Errorf("delete piece %s: %w", all[i].Name, translate(err))
		}
		return nil
	})
}
