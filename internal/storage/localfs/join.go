package localfs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"slices"

	"github.com/spoolhq/spool/internal/upload"
)

// castagnoli is the CRC32C table.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Join copies the staging files of the uploads in parts, in order, into
// the staging file of key from its first byte, and returns the CRC32C of
// the bytes copied, computed as they pass through one pooled buffer. The
// parts' files stay as they are. Like WriteChunk it writes chunk 0 of key
// while no Prepare, Assemble or Discard of key runs, and reads each part
// while none of that part runs; it checks every part before it copies
// anything.
//
// It returns an error wrapping upload.ErrNotExist if key or one of parts
// was never prepared or has been discarded or assembled, and an error if
// a part's file does not hold its Size, the sizes do not add up to size,
// or key was prepared for another size.
func (s *Store) Join(ctx context.Context, key string, size int64, parts []upload.JoinPart) (uint32, error) {
	if err := checkKey(key); err != nil {
		return 0, err
	}
	if err := upload.CheckJoin(key, size, parts); err != nil {
		return 0, fmt.Errorf("localfs: join into %q: %w", key, err)
	}
	for _, p := range parts {
		if err := checkKey(p.Key); err != nil {
			return 0, err
		}
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	defer s.rlockUploads(key, parts)()
	defer s.chunks.lock(chunkID{key, 0})()
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	crc, err := s.join(ctx, key, size, parts)
	if err != nil {
		return 0, fmt.Errorf("localfs: join into %q: %w", key, err)
	}
	return crc, nil
}

// rlockUploads takes key and the parts' keys shared, in the order of the
// keys, so two Joins sharing uploads cannot each hold one the other waits
// for (a waiting Discard makes a shared lock wait too).
func (s *Store) rlockUploads(key string, parts []upload.JoinPart) (unlock func()) {
	keys := []string{key}
	for _, p := range parts {
		keys = append(keys, p.Key)
	}
	slices.SortFunc(keys, cmp.Compare)
	keys = slices.Compact(keys)
	unlocks := make([]func(), len(keys))
	for i, k := range keys {
		unlocks[i] = s.uploads.rlock(k)
	}
	return func() {
		for _, u := range slices.Backward(unlocks) {
			u()
		}
	}
}

func (s *Store) join(ctx context.Context, key string, size int64, parts []upload.JoinPart) (uint32, error) {
	dst, err := os.OpenFile(s.stagingPath(key), os.O_WRONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("upload %w", upload.ErrNotExist)
	}
	if err != nil {
		return 0, err
	}
	defer dst.Close()
	if info, err := dst.Stat(); err != nil {
		return 0, err
	} else if info.Size() != size {
		return 0, fmt.Errorf("upload was prepared for %d bytes, not %d", info.Size(), size)
	}

	srcs := make([]*os.File, 0, len(parts))
	defer func() {
		for _, f := range srcs {
			f.Close()
		}
	}()
	for _, p := range parts {
		f, err := s.openPart(p)
		if err != nil {
			return 0, err
		}
		srcs = append(srcs, f)
	}

	buf := s.buffers.get()
	defer s.buffers.put(buf)
	crc := crc32.New(castagnoli)
	var off int64
	for i, p := range parts {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		if err := copyPart(dst, off, srcs[i], p, crc, buf); err != nil {
			return 0, err
		}
		off += p.Size
	}
	if s.opts.SyncWrites {
		if err := fdatasync(dst); err != nil {
			return 0, fmt.Errorf("sync: %w", err)
		}
	}
	if err := dst.Close(); err != nil {
		return 0, err
	}
	return crc.Sum32(), nil
}

// openPart opens the staging file of a part to join, checking it holds
// the part's size.
func (s *Store) openPart(p upload.JoinPart) (*os.File, error) {
	f, err := os.Open(s.stagingPath(p.Key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("upload %q: %w", p.Key, upload.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("upload %q: %w", p.Key, err)
	}
	info, err := f.Stat()
	switch {
	case err != nil:
		err = fmt.Errorf("upload %q: %w", p.Key, err)
	case !info.Mode().IsRegular():
		// A key that is a prefix of other keys names a directory.
		err = fmt.Errorf("upload %q: %w", p.Key, upload.ErrNotExist)
	case info.Size() != p.Size:
		err = fmt.Errorf("upload %q has %d bytes, want %d", p.Key, info.Size(), p.Size)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// copyPart copies the part's bytes from src into dst at off through buf,
// adding them to crc.
func copyPart(dst *os.File, off int64, src *os.File, p upload.JoinPart, crc hash.Hash32, buf []byte) error {
	// Neither side offers ReadFrom or WriteTo here, so CopyBuffer uses buf
	// and every byte passes crc once.
	w := io.MultiWriter(io.NewOffsetWriter(dst, off), crc)
	n, err := io.CopyBuffer(w, io.LimitReader(src, p.Size), buf)
	if err != nil {
		return fmt.Errorf("copying upload %q: %w", p.Key, err)
	}
	if n != p.Size {
		return fmt.Errorf("copying upload %q: %d of its %d bytes read", p.Key, n, p.Size)
	}
	return nil
}
