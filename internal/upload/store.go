package upload

import (
	"context"
	"errors"
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

// Pinger is an engine that can tell whether it is reachable, for /readyz.
type Pinger interface {
	Ping(ctx context.Context) error
}
