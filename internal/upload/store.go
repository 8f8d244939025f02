package upload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// Store keeps the bytes of unfinished uploads and of the files they become.
// Keys are built by spool, never taken from clients. Implementations live in
// internal/storage/...; the conformance suite in internal/storage/storagetest
// runs against each of them.
type Store interface {
	// Prepare readies storage for a new upload of size bytes under key.
	Prepare(ctx context.Context, key string, size int64) error

	// WriteChunk streams body into the chunk's byte range of the upload.
	// It returns the number of bytes written, which is less than
	// chunk.Size when body ends early; it returns body's error when body
	// fails (the chunk is then unusable). Memory use is bounded whatever the
	// chunk size. Writing a chunk again replaces it.
	WriteChunk(ctx context.Context, key string, chunk ChunkRef, body io.Reader) (int64, error)

	// WritePiece streams body into the chunk from the chunk's byte at on
	// (earlier pieces stored its bytes before at) and keeps what arrives,
	// also when body ends or fails before the chunk's end: a tus PATCH may
	// stop anywhere (docs/DESIGN.md §tus). It returns the bytes stored,
	// at most chunk.Size-at. Writing a piece at the same at again replaces
	// it. The chunk's bytes are readable as a chunk's only after
	// SealChunk.
	WritePiece(ctx context.Context, key string, chunk ChunkRef, at int64, body io.Reader) (int64, error)

	// SealChunk makes the chunk whole from its pieces, which start at 0
	// and each where the one before ended, up to chunk.Size: afterwards
	// it is as if WriteChunk had written it, and the pieces are gone.
	// crc32c is the CRC32C of the chunk's bytes as they were sent; a
	// store that can check what it holds against it does, and fails on a
	// mismatch. Sealing a sealed chunk again succeeds.
	SealChunk(ctx context.Context, key string, chunk ChunkRef, crc32c uint32) error

	// Join writes, as upload key's only chunk (chunk 0, size bytes), the
	// bytes of other uploads whose chunks are all written, parts[0]'s
	// first, without copying them through spool where the store can (GCS
	// composes them). It returns the chunk's CRC32C. The parts stay as
	// they are; the caller discards them. tus concatenation joins the
	// partial uploads a client sent in parallel with it.
	Join(ctx context.Context, key string, size int64, parts []JoinPart) (crc32c uint32, err error)

	// Assemble makes the finished object from an upload whose chunks are all
	// written and returns its key. It never copies the bytes through spool.
	// Calling it again after success returns the same object.
	Assemble(ctx context.Context, key string, totalChunks int, size int64) (objectKey string, err error)

	// Open returns the object's bytes for reading. It returns ErrNotExist
	// when there is no such object.
	Open(ctx context.Context, objectKey string) (Object, error)

	// Discard frees everything stored for an unfinished upload. It is not
	// an error if nothing is stored.
	Discard(ctx context.Context, key string) error

	// Delete removes a finished object. It is not an error if it is gone.
	Delete(ctx context.Context, objectKey string) error

	// Put stores body, whole, as the finished object objectKey,
	// replacing any object of that key at once: readers see the old
	// bytes or the new, never a mix. Processing stores derivatives
	// (thumbnails, a faststart copy) with it.
	Put(ctx context.Context, objectKey string, body io.Reader, contentType string) error

	// Walk calls fn for everything the store holds: each unfinished
	// upload's bytes once (Upload set, Key the upload's key) and each
	// finished object. It stops at fn's first error and returns it. The
	// sweeper walks the store to find bytes no record owns.
	Walk(ctx context.Context, fn func(StoredItem) error) error
}

// StoredItem is one thing a Store holds, as Walk reports it.
type StoredItem struct {
	// Key is the upload's key (Discard frees it) or the object's (Delete
	// removes it).
	Key string
	// Upload is true for an unfinished upload's bytes.
	Upload bool
	// ModTime is when it last changed: the sweeper leaves young items
	// alone, since their record may be in a transaction not yet
	// committed.
	ModTime time.Time
}

// LocalFiler is a Store whose objects are files on this machine:
// processing reads them in place instead of copying them out first.
type LocalFiler interface {
	// LocalPath returns the file holding the object, or an error
	// wrapping ErrNotExist.
	LocalPath(objectKey string) (string, error)
}

// ErrNotExist is returned by a Store for an object that does not exist.
var ErrNotExist = errors.New("object does not exist")

// JoinPart is one upload whose bytes Join takes.
type JoinPart struct {
	Key         string
	TotalChunks int
	Size        int64
}

// CheckJoin refuses Join arguments that cannot make upload key of size
// bytes: no parts, key among them, a part without chunks or of negative
// size, or sizes that do not add up to size. Stores call it so that they
// refuse the same; each checks the keys by its own rule.
func CheckJoin(key string, size int64, parts []JoinPart) error {
	if len(parts) == 0 {
		return errors.New("no uploads to join")
	}
	var sum int64
	for _, p := range parts {
		if p.Key == key {
			return fmt.Errorf("upload %q cannot be joined into itself", p.Key)
		}
		if p.TotalChunks < 1 || p.Size < 0 {
			return fmt.Errorf("upload %q: invalid totalChunks %d or size %d", p.Key, p.TotalChunks, p.Size)
		}
		sum += p.Size
	}
	if sum != size {
		return fmt.Errorf("the uploads hold %d bytes, want %d", sum, size)
	}
	return nil
}

// ChunkRef says where a chunk lies in its upload.
type ChunkRef struct {
	Index  int
	Offset int64
	Size   int64
}

// Object is a stored file opened for reading; it supports Seek so HTTP
// range requests can be served from it.
type Object interface {
	io.ReadSeekCloser
	Size() int64
	ModTime() time.Time
}

// DirectStore is a Store that clients can send chunk bytes to without
// passing through spool (GCS with V4 signed URLs). The service uses it
// only when configured for direct uploads.
type DirectStore interface {
	Store
	// ChunkUploadURL returns where and how a client sends one chunk's
	// bytes itself, valid until expires.
	ChunkUploadURL(ctx context.Context, key string, chunk ChunkRef, expires time.Time) (DirectURL, error)
	// StatChunk returns what is stored for a chunk, or an error wrapping
	// ErrNotExist when nothing is.
	StatChunk(ctx context.Context, key string, chunk ChunkRef) (ChunkInfo, error)
	// ReadChunkHead returns up to n of the chunk's first bytes, for
	// checking a file's type.
	ReadChunkHead(ctx context.Context, key string, chunk ChunkRef, n int) ([]byte, error)
}

// ResumableStore is a DirectStore that takes the bytes of a SINGLE upload
// through a resumable session: the client sends them to the session's URL
// and, after a broken connection, goes on from the last byte the store
// kept (GCS resumable uploads). StatChunk and ReadChunkHead see the
// chunk once the session has all of it.
type ResumableStore interface {
	DirectStore
	// StartResumable opens a session for the chunk's bytes, chunk.Size of
	// them, and returns its URL: a bearer capability to write the chunk,
	// valid about a week, to be given to the upload's owner only. A
	// non-empty origin is the browser origin the session answers CORS
	// requests from. It returns an error wrapping ErrNotExist if the
	// upload was never prepared or is gone.
	StartResumable(ctx context.Context, key string, chunk ChunkRef, origin string) (sessionURL string, err error)
	// ResumableOffset asks a session of a chunk of size bytes how many
	// of them it has kept (the client sends the rest, from there), and
	// whether it is done: the chunk is stored whole and the session takes
	// no more. It returns an error wrapping ErrNotExist if the session is
	// gone (expired, cancelled or unknown to the store).
	ResumableOffset(ctx context.Context, sessionURL string, size int64) (persisted int64, done bool, err error)
}

// DirectURL is a request a client makes to the store itself.
type DirectURL struct {
	URL     string
	Method  string
	Headers []Header
}

// ChunkInfo is what a store holds for one chunk.
type ChunkInfo struct {
	Size   int64
	CRC32C uint32
}

// ObjectLinker is a Store that can hand out download URLs for its
// objects itself (GCS V4 signed GET URLs, or public URLs).
type ObjectLinker interface {
	ObjectURL(ctx context.Context, objectKey, fileName string, expires time.Time) (string, error)
}

// ConcurrentPreparer is a Store whose Prepare is a network round trip,
// worth overlapping within a batch; PrepareConcurrency says how many at
// once. Other stores are prepared one file at a time: on a local disk,
// files created in one directory from several goroutines wait for each
// other in the kernel, and cost more CPU than they save.
type ConcurrentPreparer interface {
	PrepareConcurrency() int
}

// Pinger is an engine that can tell whether it is reachable, for /readyz.
type Pinger interface {
	Ping(ctx context.Context) error
}
