// Package storagetrace wraps an upload.Store so that each of its calls is
// an OpenTelemetry span ("storage.WriteChunk", …), whatever the engine:
// local disk has no instrumentation of its own, and GCS's client traces
// only through the global provider. Keys and sizes are recorded; bytes
// and file names are not (keys are built by spool from ids).
package storagetrace

import (
	"context"
	"errors"
	"io"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/spoolhq/spool/internal/upload"
)

// TracerName names the tracer of the spans made here.
const TracerName = "github.com/spoolhq/spool/internal/storage/storagetrace"

// Wrap returns s with every call traced by tp, keeping the optional
// abilities the domain asks for by type assertion (upload.LocalFiler,
// upload.DirectStore, upload.ResumableStore, upload.ObjectLinker,
// upload.Pinger) in the combinations spool's engines have: local disk
// (LocalFiler) and GCS (ResumableStore, ObjectLinker, Pinger). A store
// with another combination is returned unwrapped, so that no ability is
// ever hidden by tracing.
func Wrap(s upload.Store, tp trace.TracerProvider) upload.Store {
	t := &Store{inner: s, tracer: tp.Tracer(TracerName)}
	_, local := s.(upload.LocalFiler)
	_, direct := s.(upload.DirectStore)
	_, resumable := s.(upload.ResumableStore)
	_, linker := s.(upload.ObjectLinker)
	_, pinger := s.(upload.Pinger)
	switch {
	case !local && !direct && !linker && !pinger:
		return t
	case local && !direct && !linker && !pinger:
		return localStore{t}
	case resumable && linker && pinger && !local:
		return gcsStore{t}
	}
	return s
}

// Store traces the core upload.Store methods of the store it wraps.
type Store struct {
	inner  upload.Store
	tracer trace.Tracer
}

var _ upload.Store = (*Store)(nil)

// Attribute keys of the storage spans.
const (
	keyAttr   = attribute.Key("spool.storage.key")
	chunkAttr = attribute.Key("spool.storage.chunk")
	sizeAttr  = attribute.Key("spool.storage.size")
)

func (s *Store) start(ctx context.Context, op string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	return s.tracer.Start(ctx, "storage."+op, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
}

// end ends span, marking it failed for err unless err is one the domain
// expects (an object that does not exist).
func end(span trace.Span, err error) {
	if err != nil && !errors.Is(err, upload.ErrNotExist) {
		span.RecordError(err)
		span.SetStatus(codes.Error, "storage call failed")
	}
	span.End()
}

func chunkAttrs(key string, c upload.ChunkRef) []attribute.KeyValue {
	return []attribute.KeyValue{keyAttr.String(key), chunkAttr.Int(c.Index), sizeAttr.Int64(c.Size)}
}

func (s *Store) Prepare(ctx context.Context, key string, size int64) (err error) {
	ctx, span := s.start(ctx, "Prepare", keyAttr.String(key), sizeAttr.Int64(size))
	defer func() { end(span, err) }()
	return s.inner.Prepare(ctx, key, size)
}

func (s *Store) WriteChunk(ctx context.Context, key string, c upload.ChunkRef, body io.Reader) (n int64, err error) {
	ctx, span := s.start(ctx, "WriteChunk", chunkAttrs(key, c)...)
	defer func() {
		span.SetAttributes(attribute.Int64("spool.storage.written", n))
		end(span, err)
	}()
	return s.inner.WriteChunk(ctx, key, c, body)
}

func (s *Store) WritePiece(ctx context.Context, key string, c upload.ChunkRef, at int64, body io.Reader) (n int64, err error) {
	ctx, span := s.start(ctx, "WritePiece", append(chunkAttrs(key, c), attribute.Int64("spool.storage.at", at))...)
	defer func() {
		span.SetAttributes(attribute.Int64("spool.storage.written", n))
		end(span, err)
	}()
	return s.inner.WritePiece(ctx, key, c, at, body)
}

func (s *Store) SealChunk(ctx context.Context, key string, c upload.ChunkRef, crc32c uint32) (err error) {
	ctx, span := s.start(ctx, "SealChunk", chunkAttrs(key, c)...)
	defer func() { end(span, err) }()
	return s.inner.SealChunk(ctx, key, c, crc32c)
}

func (s *Store) Join(ctx context.Context, key string, size int64, parts []upload.JoinPart) (_ uint32, err error) {
	ctx, span := s.start(ctx, "Join", keyAttr.String(key), sizeAttr.Int64(size), attribute.Int("spool.storage.parts", len(parts)))
	defer func() { end(span, err) }()
	return s.inner.Join(ctx, key, size, parts)
}

func (s *Store) Assemble(ctx context.Context, key string, totalChunks int, size int64) (_ string, err error) {
	ctx, span := s.start(ctx, "Assemble", keyAttr.String(key), sizeAttr.Int64(size), attribute.Int("spool.storage.chunks", totalChunks))
	defer func() { end(span, err) }()
	return s.inner.Assemble(ctx, key, totalChunks, size)
}

func (s *Store) Open(ctx context.Context, objectKey string) (_ upload.Object, err error) {
	ctx, span := s.start(ctx, "Open", keyAttr.String(objectKey))
	defer func() { end(span, err) }()
	return s.inner.Open(ctx, objectKey)
}

func (s *Store) Discard(ctx context.Context, key string) (err error) {
	ctx, span := s.start(ctx, "Discard", keyAttr.String(key))
	defer func() { end(span, err) }()
	return s.inner.Discard(ctx, key)
}

func (s *Store) Delete(ctx context.Context, objectKey string) (err error) {
	ctx, span := s.start(ctx, "Delete", keyAttr.String(objectKey))
	defer func() { end(span, err) }()
	return s.inner.Delete(ctx, objectKey)
}

func (s *Store) Put(ctx context.Context, objectKey string, body io.Reader, contentType string) (err error) {
	ctx, span := s.start(ctx, "Put", keyAttr.String(objectKey))
	defer func() { end(span, err) }()
	return s.inner.Put(ctx, objectKey, body, contentType)
}

func (s *Store) Walk(ctx context.Context, fn func(upload.StoredItem) error) (err error) {
	ctx, span := s.start(ctx, "Walk")
	defer func() { end(span, err) }()
	return s.inner.Walk(ctx, fn)
}

// localStore is a traced local-disk store: LocalPath only names a file,
// so it is passed through untraced.
type localStore struct{ *Store }

var _ upload.LocalFiler = localStore{}

func (s localStore) LocalPath(objectKey string) (string, error) {
	return s.inner.(upload.LocalFiler).LocalPath(objectKey)
}

// gcsStore is a traced store with GCS's abilities.
type gcsStore struct{ *Store }

var (
	_ upload.ResumableStore     = gcsStore{}
	_ upload.ObjectLinker       = gcsStore{}
	_ upload.Pinger             = gcsStore{}
	_ upload.ConcurrentPreparer = gcsStore{}
)

// PrepareConcurrency is the wrapped store's, or 1 if it has none.
func (s gcsStore) PrepareConcurrency() int {
	if cp, ok := s.inner.(upload.ConcurrentPreparer); ok {
		return cp.PrepareConcurrency()
	}
	return 1
}

func (s gcsStore) ChunkUploadURL(ctx context.Context, key string, c upload.ChunkRef, expires time.Time) (_ upload.DirectURL, err error) {
	ctx, span := s.start(ctx, "ChunkUploadURL", chunkAttrs(key, c)...)
	defer func() { end(span, err) }()
	return s.inner.(upload.DirectStore).ChunkUploadURL(ctx, key, c, expires)
}

func (s gcsStore) StatChunk(ctx context.Context, key string, c upload.ChunkRef) (_ upload.ChunkInfo, err error) {
	ctx, span := s.start(ctx, "StatChunk", chunkAttrs(key, c)...)
	defer func() { end(span, err) }()
	return s.inner.(upload.DirectStore).StatChunk(ctx, key, c)
}

func (s gcsStore) ReadChunkHead(ctx context.Context, key string, c upload.ChunkRef, n int) (_ []byte, err error) {
	ctx, span := s.start(ctx, "ReadChunkHead", chunkAttrs(key, c)...)
	defer func() { end(span, err) }()
	return s.inner.(upload.DirectStore).ReadChunkHead(ctx, key, c, n)
}

func (s gcsStore) StartResumable(ctx context.Context, key string, c upload.ChunkRef, origin string) (_ string, err error) {
	ctx, span := s.start(ctx, "StartResumable", chunkAttrs(key, c)...)
	defer func() { end(span, err) }()
	return s.inner.(upload.ResumableStore).StartResumable(ctx, key, c, origin)
}

// ResumableOffset records no attribute: the session URL is a bearer
// capability.
func (s gcsStore) ResumableOffset(ctx context.Context, sessionURL string, size int64) (_ int64, _ bool, err error) {
	ctx, span := s.start(ctx, "ResumableOffset", sizeAttr.Int64(size))
	defer func() { end(span, err) }()
	return s.inner.(upload.ResumableStore).ResumableOffset(ctx, sessionURL, size)
}

// ObjectURL records the key but not the file name, which is the user's.
func (s gcsStore) ObjectURL(ctx context.Context, objectKey, fileName string, expires time.Time) (_ string, err error) {
	ctx, span := s.start(ctx, "ObjectURL", keyAttr.String(objectKey))
	defer func() { end(span, err) }()
	return s.inner.(upload.ObjectLinker).ObjectURL(ctx, objectKey, fileName, expires)
}

func (s gcsStore) Ping(ctx context.Context) (err error) {
	ctx, span := s.start(ctx, "Ping")
	defer func() { end(span, err) }()
	return s.inner.(upload.Pinger).Ping(ctx)
}
