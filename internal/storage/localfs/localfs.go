// Package localfs is the embedded storage engine: it keeps uploads and the
// files they become on the local disk.
//
// Each upload is one file in the staging tree, created at its full size, and
// every chunk is written at its own offset in it, so assembling is a rename
// into the objects tree and no byte is ever copied twice. Both trees live
// under one root directory so the rename never crosses file systems.
package localfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/spoolhq/spool/internal/storage/storagekey"
	"github.com/spoolhq/spool/internal/upload"
)

const (
	stagingDirName = "staging"
	objectsDirName = "objects"

	dirPerm  = 0o750
	filePerm = 0o640
)

// Options tunes a Store. The zero value is the default.
type Options struct {
	// SyncWrites makes WriteChunk fdatasync the chunk before returning,
	// so an acknowledged chunk survives a power loss; the writeback of
	// every 2 MiB written starts at once (writebackWriter). The disk's
	// write speed then bounds chunk throughput; without it a power loss
	// can lose chunks written in the last few seconds, which the client
	// then sends again.
	SyncWrites bool
	// WriteSize is the size of each write into a staging file, and of
	// the buffer each chunk in flight is copied through: 0 for
	// DefaultWriteSize, else between 4 KiB and 16 MiB.
	WriteSize int
	// Reserve is the room chunks leave free on the filesystem (Reserve);
	// the zero value keeps none.
	Reserve Reserve
}

// Store is an upload.Store on the local disk. It is safe for concurrent use
// within one process; two processes must not share a directory.
type Store struct {
	stagingDir string
	objectsDir string
	opts       Options

	buffers *buffers // of opts.WriteSize, while they last

	// uploads lets writes of one upload run together but keeps them apart
	// from Prepare, Assemble and Discard: a write still running when its
	// staging file is renamed would otherwise change a finished object.
	uploads lockTable[string]
	// chunks keeps two sends of one chunk from interleaving their bytes.
	chunks lockTable[chunkID]

	room room // what roomFor last found of the free space
}

type chunkID struct {
	key   string
	index int
}

var _ upload.Store = (*Store)(nil)

// New returns a Store keeping its files under dir, with default options.
func New(dir string) (*Store, error) {
	return NewWithOptions(dir, Options{})
}

// NewWithOptions returns a Store keeping its files under dir, creating dir
// and its layout if needed. It fails if they cannot be created.
func NewWithOptions(dir string, opts Options) (*Store, error) {
	switch {
	case opts.WriteSize == 0:
		opts.WriteSize = DefaultWriteSize()
	case opts.WriteSize < minWriteSize || opts.WriteSize > maxWriteSize:
		return nil, fmt.Errorf("localfs: write size %d bytes outside [%d, %d]", opts.WriteSize, minWriteSize, maxWriteSize)
	}
	if r := opts.Reserve; r.Bytes < 0 || !(r.Percent >= 0 && r.Percent <= MaxReservePercent) {
		return nil, fmt.Errorf("localfs: reserve %s: bytes and percent may not be negative, nor the percent over %d", r, MaxReservePercent)
	}
	s := &Store{
		stagingDir: filepath.Join(dir, stagingDirName),
		objectsDir: filepath.Join(dir, objectsDirName),
		opts:       opts,
	}
	s.buffers = newBuffers(s, opts.WriteSize)
	for _, d := range []string{s.stagingDir, s.objectsDir} {
		if err := os.MkdirAll(d, dirPerm); err != nil {
			return nil, fmt.Errorf("localfs: create layout: %w", err)
		}
	}
	return s, nil
}

// Prepare creates the staging file for key with size bytes. The file is
// sparse, so this costs no disk space until chunks arrive. Preparing an
// upload again keeps the bytes already written (resized to size), so a
// retried Prepare cannot lose acknowledged chunks. It fails if key is not a
// valid key or size is negative.
func (s *Store) Prepare(ctx context.Context, key string, size int64) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("localfs: prepare %q: negative size %d", key, size)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	defer s.uploads.lock(key)()

	p := s.stagingPath(key)
	if err := os.MkdirAll(filepath.Dir(p), dirPerm); err != nil {
		return fmt.Errorf("localfs: prepare %q: %w", key, err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE, filePerm)
	if err != nil {
		return fmt.Errorf("localfs: prepare %q: %w", key, err)
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("localfs: prepare %q: %w", key, err)
	}
	return nil
}

// WriteChunk writes body at the chunk's offset in the staging file. It
// returns body's error unchanged when body fails. It returns an error
// wrapping upload.ErrNotExist if the upload was never prepared or has been
// discarded or assembled, and an error if the chunk lies outside the
// prepared size or body holds more than chunk.Size bytes; the bytes past
// chunk.Size are never written.
func (s *Store) WriteChunk(ctx context.Context, key string, chunk upload.ChunkRef, body io.Reader) (int64, error) {
	return s.writeAt(ctx, "write", key, chunk, 0, body)
}

// writeAt writes body into the chunk from its byte at on, in place in the
// staging file; WriteChunk writes from 0, WritePiece from anywhere.
func (s *Store) writeAt(ctx context.Context, op, key string, chunk upload.ChunkRef, at int64, body io.Reader) (int64, error) {
	if err := checkKey(key); err != nil {
		return 0, err
	}
	if chunk.Index < 0 || chunk.Offset < 0 || chunk.Size < 0 || at < 0 || at > chunk.Size {
		return 0, fmt.Errorf("localfs: %s %q: invalid chunk %+v from byte %d", op, key, chunk, at)
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	defer s.uploads.rlock(key)()
	defer s.chunks.lock(chunkID{key, chunk.Index})()
	// The request may have been abandoned while it waited for the locks.
	if err := ctx.Err(); err != nil {
		return 0, err
	}

	f, err := os.OpenFile(s.stagingPath(key), os.O_WRONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("localfs: %s %q: upload %w", op, key, upload.ErrNotExist)
	}
	if err != nil {
		return 0, fmt.Errorf("localfs: %s %q: %w", op, key, err)
	}
	defer f.Close()

	info, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("localfs: %s %q: %w", op, key, err)
	}
	// Writing past the prepared size would grow the file and make Assemble
	// fail on its size check, long after the faulty request.
	if chunk.Offset > info.Size() || chunk.Size > info.Size()-chunk.Offset {
		return 0, fmt.Errorf("localfs: %s %q: chunk %d [%d, +%d) outside upload of %d bytes",
			op, key, chunk.Index, chunk.Offset, chunk.Size, info.Size())
	}

	if err := s.roomFor(f, chunk.Offset+at, chunk.Size-at); err != nil {
		return 0, fmt.Errorf("localfs: %s %q: chunk %d: %w", op, key, chunk.Index, err)
	}
	n, err := s.copyChunk(f, chunk, at, body)
	if err != nil {
		return n, err
	}
	if s.opts.SyncWrites {
		// fdatasync, not fsync: the file's size was set by Prepare, so
		// only the blocks just allocated need their metadata written, not
		// the inode's times.
		if err := fdatasync(f); err != nil {
			return n, fmt.Errorf("localfs: %s %q: sync: %w", op, key, err)
		}
	}
	// Without SyncWrites the bytes stay in the page cache until the
	// kernel writes them back or Assemble fsyncs the file: a SIGKILL loses
	// nothing acknowledged, a power loss may (docs/DESIGN.md,
	// "Durability"). Starting writeback per chunk (sync_file_range) was
	// tried: it charged the disk's work to spool's CPU and still left
	// complete() waiting on a busy disk.
	if err := f.Close(); err != nil {
		return n, fmt.Errorf("localfs: %s %q: %w", op, key, err)
	}
	return n, nil
}

// fillAndWrite copies r to w through buf, writing only full buffers,
// except over the last buffer's worth of the expected bytes (size), where
// each fill is half of what is left, down to tailFill. A sequential
// client waits for the answer before it sends the next chunk, and the
// write of the last fill stands between the body's last byte and the
// answer: with a whole buffer there, the body's last byte → the chunk
// written took 80 µs of an 8 MiB chunk at the median, with shrinking
// fills 23 (docs/BENCHMARKS.md, "The chunk's last write"). Errors of r
// come back unwrapped.
func fillAndWrite(w io.Writer, r io.Reader, buf []byte, size int64) (int64, error) {
	var written int64
	for {
		n, rerr := io.ReadFull(r, buf[:fillSize(len(buf), size-written)])
		if n > 0 {
			m, werr := w.Write(buf[:n])
			written += int64(m)
			if werr != nil {
				return written, werr
			}
		}
		switch rerr {
		case nil:
		case io.EOF, io.ErrUnexpectedEOF:
			return written, nil
		default:
			return written, rerr
		}
	}
}

// tailFill is the smallest fill fillAndWrite shrinks to near a chunk's end.
const tailFill = 64 << 10

// fillSize is how much of a buffer of bufSize to fill when left bytes are
// still expected: all of it while more than a buffer is left (and once
// nothing is, to read the body's end), else half of what is left, but not
// less than tailFill.
func fillSize(bufSize int, left int64) int {
	if left <= 0 || left > int64(bufSize) {
		return bufSize
	}
	return int(min(left, max(left/2, tailFill)))
}

// copyChunk streams body into f at the chunk's byte at. Errors from body
// come back unwrapped so callers can tell a failed request from a failed
// disk; the bytes read before them are written.
func (s *Store) copyChunk(f *os.File, chunk upload.ChunkRef, at int64, body io.Reader) (int64, error) {
	buf := s.buffers.get()
	defer s.buffers.put(buf)

	var to io.Writer = io.NewOffsetWriter(f, chunk.Offset+at)
	if s.opts.SyncWrites {
		to = &writebackWriter{w: f, off: chunk.Offset + at, from: chunk.Offset + at,
			start: func(off, n int64) { startWriteback(f, off, n) }}
	}
	w := &boundedWriter{w: to, left: chunk.Size - at}
	// Fill the buffer before each write: a socket read returns a few tens
	// of KiB, and the page cache's cost depends on the write's size
	// (writesize.go). Memory stays bounded by the one pooled buffer.
	n, err := fillAndWrite(w, body, buf, chunk.Size-at)
	switch {
	case err == nil:
		return n, nil
	case w.err != nil && errors.Is(err, w.err):
		if !errors.Is(err, errChunkOverflow) {
			// The disk failed, not the body. What this write put down
			// is not a chunk's bytes (the caller records none of it), and
			// on a full disk it holds the space that other uploads, the
			// database and the sweep that would free space all need: a
			// failing upload left the disk full until it expired. So its
			// blocks go back at once; the chunk's bytes before at (a tus
			// upload's earlier pieces) stay.
			releaseRange(f, chunk.Offset+at, n)
		}
		return n, fmt.Errorf("localfs: write chunk %d: %w", chunk.Index, err)
	default:
		return n, err
	}
}

// writebackWriter writes at its offset in w and starts the writeback of
// what it wrote (start: sync_file_range, no wait) every writebackStride
// bytes.
// With SyncWrites the chunk is fdatasynced before it is acknowledged:
// started this way, the disk writes the chunk while the rest of it is
// still arriving, and the fdatasync waits for the last stride only, not
// for all 8 MiB after the last byte (docs/DESIGN.md, "Durability"). Every
// byte is synced before the answer either way, so the disk's work is the
// same, only earlier.
type writebackWriter struct {
	w     io.WriterAt
	off   int64 // where the next write goes
	from  int64 // the first byte whose writeback has not been started
	start func(off, n int64)
}

// writebackStride is how much writebackWriter writes between starts of
// writeback. Smaller strides (one per 512 KiB write) cost more CPU in the
// block layer for no more speed (docs/BENCHMARKS.md).
const writebackStride = 2 << 20

func (w *writebackWriter) Write(p []byte) (int, error) {
	n, err := w.w.WriteAt(p, w.off)
	w.off += int64(n)
	if w.off-w.from >= writebackStride {
		w.start(w.from, w.off-w.from)
		w.from = w.off
	}
	return n, err
}

var errChunkOverflow = errors.New("body is longer than the chunk")

// boundedWriter writes at most left bytes, then fails, so a body longer than
// its chunk cannot overwrite the next chunk.
type boundedWriter struct {
	w    io.Writer
	left int64
	err  error // the last error Write returned
}

func (b *boundedWriter) Write(p []byte) (int, error) {
	over := int64(len(p)) > b.left
	if over {
		p = p[:b.left]
	}
	n, err := b.w.Write(p)
	b.left -= int64(n)
	if err == nil && over {
		err = errChunkOverflow
	}
	b.err = err
	return n, err
}

// Assemble renames the staging file of key to its object and returns the
// object's key, which is key. It syncs the file first, so a finished object
// survives a crash. If the upload was already assembled it returns the same
// object. It returns an error wrapping upload.ErrNotExist if there is
// neither a staging file nor an object, and an error if the file does not
// hold size bytes. totalChunks is not needed: the chunks already lie in
// place.
func (s *Store) Assemble(ctx context.Context, key string, totalChunks int, size int64) (string, error) {
	if err := checkKey(key); err != nil {
		return "", err
	}
	if totalChunks < 0 || size < 0 {
		return "", fmt.Errorf("localfs: assemble %q: invalid totalChunks %d or size %d", key, totalChunks, size)
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	defer s.uploads.lock(key)()

	staging, object := s.stagingPath(key), s.objectPath(key)
	info, err := os.Stat(staging)
	if errors.Is(err, fs.ErrNotExist) {
		return s.assembled(key, size)
	}
	if err != nil {
		return "", fmt.Errorf("localfs: assemble %q: %w", key, err)
	}
	if info.Size() != size {
		return "", fmt.Errorf("localfs: assemble %q: staging file has %d bytes, want %d", key, info.Size(), size)
	}
	// The lock above serializes Assemble within this process; another
	// process sharing the directory (a second replica) may move the
	// staging file first, and then its result is the answer.
	if err := syncFile(staging); errors.Is(err, fs.ErrNotExist) {
		return s.assembled(key, size)
	} else if err != nil {
		return "", fmt.Errorf("localfs: assemble %q: %w", key, err)
	}
	if err := os.MkdirAll(filepath.Dir(object), dirPerm); err != nil {
		return "", fmt.Errorf("localfs: assemble %q: %w", key, err)
	}
	if err := os.Rename(staging, object); errors.Is(err, fs.ErrNotExist) {
		return s.assembled(key, size)
	} else if err != nil {
		return "", fmt.Errorf("localfs: assemble %q: %w", key, err)
	}
	if err := syncFile(filepath.Dir(object)); err != nil {
		return "", fmt.Errorf("localfs: assemble %q: %w", key, err)
	}
	return key, nil
}

// assembled returns key if its object already exists with size bytes: the
// staging file is gone because an earlier Assemble succeeded.
func (s *Store) assembled(key string, size int64) (string, error) {
	info, err := os.Stat(s.objectPath(key))
	if errors.Is(err, fs.ErrNotExist) || (err == nil && !info.Mode().IsRegular()) {
		return "", fmt.Errorf("localfs: assemble %q: upload %w", key, upload.ErrNotExist)
	}
	if err != nil {
		return "", fmt.Errorf("localfs: assemble %q: %w", key, err)
	}
	if info.Size() != size {
		return "", fmt.Errorf("localfs: assemble %q: object has %d bytes, want %d", key, info.Size(), size)
	}
	return key, nil
}

// Open opens the object for reading. It returns an error wrapping
// upload.ErrNotExist if there is no such object, including when objectKey is
// not a valid key.
func (s *Store) Open(ctx context.Context, objectKey string) (upload.Object, error) {
	if err := checkKey(objectKey); err != nil {
		return nil, fmt.Errorf("%w: %w", err, upload.ErrNotExist)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.Open(s.objectPath(objectKey))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("localfs: open %q: %w", objectKey, upload.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("localfs: open %q: %w", objectKey, err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("localfs: open %q: %w", objectKey, err)
	}
	// A key that is a prefix of other keys names a directory, not an object.
	if !info.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("localfs: open %q: %w", objectKey, upload.ErrNotExist)
	}
	return &object{f: f, size: info.Size(), modTime: info.ModTime()}, nil
}

// Discard removes the staging file of key. It is not an error if there is
// none. It fails if key is not a valid key or the file cannot be removed.
func (s *Store) Discard(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	defer s.uploads.lock(key)()
	return removeFile(s.stagingPath(key))
}

// Delete removes the object. It is not an error if there is none. Readers
// that already opened it can finish. It fails if objectKey is not a valid
// key or the file cannot be removed.
//
// Neither Delete nor Discard removes emptied parent directories: they are
// shared by a user's uploads and come back with the next one, and removing
// them would race with a Prepare or Assemble creating a file inside.
func (s *Store) Delete(ctx context.Context, objectKey string) error {
	if err := checkKey(objectKey); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return removeFile(s.objectPath(objectKey))
}

func (s *Store) stagingPath(key string) string {
	return filepath.Join(s.stagingDir, filepath.FromSlash(key))
}

func (s *Store) objectPath(key string) string {
	return filepath.Join(s.objectsDir, filepath.FromSlash(key))
}

// checkKey applies storagekey's rule.
func checkKey(key string) error {
	if err := storagekey.Check(key); err != nil {
		return fmt.Errorf("localfs: %w", err)
	}
	return nil
}

func removeFile(name string) error {
	err := os.Remove(name)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("localfs: %w", err)
	}
	return nil
}

// syncFile fsyncs a file or directory by name.
func syncFile(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// object is an upload.Object. It wraps the file rather than embedding it so
// callers cannot write through a type assertion.
type object struct {
	f       *os.File
	size    int64
	modTime time.Time
}

func (o *object) Read(p []byte) (int, error)                   { return o.f.Read(p) }
func (o *object) ReadAt(p []byte, off int64) (int, error)      { return o.f.ReadAt(p, off) }
func (o *object) Seek(offset int64, whence int) (int64, error) { return o.f.Seek(offset, whence) }
func (o *object) Close() error                                 { return o.f.Close() }
func (o *object) Size() int64                                  { return o.size }
func (o *object) ModTime() time.Time                           { return o.modTime }

// lockTable holds one RWMutex per key, only while someone holds or waits
// for it, so it does not grow with the number of uploads ever seen.
type lockTable[K comparable] struct {
	mu    sync.Mutex
	locks map[K]*refLock
}

type refLock struct {
	sync.RWMutex
	refs int // holders and waiters; guarded by lockTable.mu
}

// lock takes k exclusively and returns the function that releases it.
func (t *lockTable[K]) lock(k K) (unlock func()) {
	l := t.acquire(k)
	l.Lock()
	return func() { l.Unlock(); t.release(k, l) }
}

// rlock takes k shared and returns the function that releases it.
func (t *lockTable[K]) rlock(k K) (unlock func()) {
	l := t.acquire(k)
	l.RLock()
	return func() { l.RUnlock(); t.release(k, l) }
}

func (t *lockTable[K]) acquire(k K) *refLock {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.locks == nil {
		t.locks = make(map[K]*refLock)
	}
	l := t.locks[k]
	if l == nil {
		l = &refLock{}
		t.locks[k] = l
	}
	l.refs++
	return l
}

func (t *lockTable[K]) release(k K, l *refLock) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l.refs--
	if l.refs == 0 {
		delete(t.locks, k)
	}
}

// Put writes body to a temporary file beside the object, syncs it and
// renames it into place, so readers see the old object or the new one
// whole, and a crash leaves at worst a temporary file (which Walk reports,
// as an object no record owns). It fails if objectKey is not a valid key.
func (s *Store) Put(ctx context.Context, objectKey string, body io.Reader, contentType string) error {
	if err := checkKey(objectKey); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	final := s.objectPath(objectKey)
	if err := os.MkdirAll(filepath.Dir(final), dirPerm); err != nil {
		return fmt.Errorf("localfs: put %q: %w", objectKey, err)
	}
	f, err := os.CreateTemp(filepath.Dir(final), "."+filepath.Base(final)+".put-*")
	if err != nil {
		return fmt.Errorf("localfs: put %q: %w", objectKey, err)
	}
	tmp := f.Name()
	buf := s.buffers.get()
	_, err = io.CopyBuffer(onlyWriter{f}, body, buf)
	s.buffers.put(buf)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, filePerm)
	}
	if err == nil {
		err = os.Rename(tmp, final)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("localfs: put %q: %w", objectKey, err)
	}
	if err := syncFile(filepath.Dir(final)); err != nil {
		return fmt.Errorf("localfs: put %q: %w", objectKey, err)
	}
	return nil
}

// onlyWriter hides *os.File's ReadFrom, so io.CopyBuffer uses the pooled
// buffer instead of allocating its own.
type onlyWriter struct{ io.Writer }

// Walk reports every staging file (an unfinished upload) and every file
// in the objects tree, temporaries of an interrupted Put included.
func (s *Store) Walk(ctx context.Context, fn func(upload.StoredItem) error) error {
	for _, tree := range []struct {
		dir    string
		upload bool
	}{{s.stagingDir, true}, {s.objectsDir, false}} {
		err := filepath.WalkDir(tree.dir, func(name string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			if !d.Type().IsRegular() {
				return nil
			}
			info, err := d.Info()
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while we walked
			}
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(tree.dir, name)
			if err != nil {
				return err
			}
			return fn(upload.StoredItem{Key: filepath.ToSlash(rel), Upload: tree.upload, ModTime: info.ModTime()})
		})
		if err != nil {
			return fmt.Errorf("localfs: walk: %w", err)
		}
	}
	return nil
}

// LocalPath returns the file of a finished object, so processing can read
// it in place.
func (s *Store) LocalPath(objectKey string) (string, error) {
	if err := checkKey(objectKey); err != nil {
		return "", fmt.Errorf("%w: %w", err, upload.ErrNotExist)
	}
	name := s.objectPath(objectKey)
	info, err := os.Stat(name)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && !info.Mode().IsRegular()) {
		return "", fmt.Errorf("localfs: %q: %w", objectKey, upload.ErrNotExist)
	}
	if err != nil {
		return "", fmt.Errorf("localfs: %q: %w", objectKey, err)
	}
	return name, nil
}
