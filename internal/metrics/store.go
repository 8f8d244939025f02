package metrics

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spoolhq/spool/internal/upload"
)

// storageOps label spool_storage_errors_total, one per store method,
// indexed by the op constants below.
var storageOps = [opCount]string{
	"prepare", "write_chunk", "assemble", "open", "discard", "delete", "put", "walk",
	"chunk_upload_url", "stat_chunk", "read_chunk_head", "start_resumable", "resumable_offset", "object_url",
	"write_piece", "seal_chunk", "join",
}

// InstrumentStore returns s counting its failed calls in
// spool_storage_errors_total{op}. The result has the same optional
// abilities as s (DirectStore, ResumableStore, ObjectLinker, LocalFiler),
// since the upload service asks for them with type assertions; Pinger is
// left out, as /readyz probes the store itself.
func (m *Metrics) InstrumentStore(s upload.Store) upload.Store {
	if m == nil {
		return s
	}
	c := &storeCounters{}
	for i, op := range storageOps {
		c.byOp[i] = m.storageErrors.WithLabelValues(op)
	}
	base := &countingStore{s: s, c: c}
	var core upload.Store = base
	if ds, ok := s.(upload.DirectStore); ok {
		direct := &countingDirectStore{countingStore: base, ds: ds}
		core = direct
		if rs, ok := s.(upload.ResumableStore); ok {
			core = &countingResumableStore{countingDirectStore: direct, rs: rs}
		}
	}
	linker, isLinker := s.(upload.ObjectLinker)
	local, isLocal := s.(upload.LocalFiler)
	var l *countingLinker
	if isLinker {
		l = &countingLinker{l: linker, c: c}
	}
	switch core := core.(type) {
	case *countingResumableStore:
		switch {
		case isLinker && isLocal:
			return struct {
				*countingResumableStore
				*countingLinker
				upload.LocalFiler
			}{core, l, local}
		case isLinker:
			return struct {
				*countingResumableStore
				*countingLinker
			}{core, l}
		case isLocal:
			return struct {
				*countingResumableStore
				upload.LocalFiler
			}{core, local}
		}
	case *countingDirectStore:
		switch {
		case isLinker && isLocal:
			return struct {
				*countingDirectStore
				*countingLinker
				upload.LocalFiler
			}{core, l, local}
		case isLinker:
			return struct {
				*countingDirectStore
				*countingLinker
			}{core, l}
		case isLocal:
			return struct {
				*countingDirectStore
				upload.LocalFiler
			}{core, local}
		}
	default:
		switch {
		case isLinker && isLocal:
			return struct {
				*countingStore
				*countingLinker
				upload.LocalFiler
			}{base, l, local}
		case isLinker:
			return struct {
				*countingStore
				*countingLinker
			}{base, l}
		case isLocal:
			return struct {
				*countingStore
				upload.LocalFiler
			}{base, local}
		}
	}
	return core
}

// Indexes into storageOps and storeCounters.byOp.
const (
	opPrepare = iota
	opWriteChunk
	opAssemble
	opOpen
	opDiscard
	opDelete
	opPut
	opWalk
	opChunkUploadURL
	opStatChunk
	opReadChunkHead
	opStartResumable
	opResumableOffset
	opObjectURL
	opWritePiece
	opSealChunk
	opJoin
	opCount
)

// storeCounters are the error counters of one store, resolved once.
type storeCounters struct {
	byOp [opCount]prometheus.Counter
}

// count counts err for op unless it is no failure of the store's: a
// missing object (which callers ask about on purpose) or a cancelled
// request.
func (c *storeCounters) count(op int, err error) {
	if err == nil || errors.Is(err, upload.ErrNotExist) || errors.Is(err, context.Canceled) {
		return
	}
	c.byOp[op].Inc()
}

type countingStore struct {
	s upload.Store
	c *storeCounters
}

func (s *countingStore) Prepare(ctx context.Context, key string, size int64) error {
	err := s.s.Prepare(ctx, key, size)
	s.c.count(opPrepare, err)
	return err
}

func (s *countingStore) WriteChunk(ctx context.Context, key string, chunk upload.ChunkRef, body io.Reader) (int64, error) {
	wb := &watchedBody{r: body}
	n, err := s.s.WriteChunk(ctx, key, chunk, wb)
	if wb.err == nil {
		// A body that failed (a client gone, a chunk too long) fails
		// the write through no fault of the store's.
		s.c.count(opWriteChunk, err)
	}
	return n, err
}

func (s *countingStore) WritePiece(ctx context.Context, key string, chunk upload.ChunkRef, at int64, body io.Reader) (int64, error) {
	wb := &watchedBody{r: body}
	n, err := s.s.WritePiece(ctx, key, chunk, at, wb)
	if wb.err == nil {
		s.c.count(opWritePiece, err)
	}
	return n, err
}

func (s *countingStore) SealChunk(ctx context.Context, key string, chunk upload.ChunkRef, crc32c uint32) error {
	err := s.s.SealChunk(ctx, key, chunk, crc32c)
	s.c.count(opSealChunk, err)
	return err
}

func (s *countingStore) Join(ctx context.Context, key string, size int64, parts []upload.JoinPart) (uint32, error) {
	crc, err := s.s.Join(ctx, key, size, parts)
	s.c.count(opJoin, err)
	return crc, err
}

// watchedBody remembers the error other than io.EOF its reader returned.
type watchedBody struct {
	r   io.Reader
	err error
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

func (s *countingStore) Assemble(ctx context.Context, key string, totalChunks int, size int64) (string, error) {
	k, err := s.s.Assemble(ctx, key, totalChunks, size)
	s.c.count(opAssemble, err)
	return k, err
}

func (s *countingStore) Open(ctx context.Context, objectKey string) (upload.Object, error) {
	o, err := s.s.Open(ctx, objectKey)
	s.c.count(opOpen, err)
	return o, err
}

func (s *countingStore) Discard(ctx context.Context, key string) error {
	err := s.s.Discard(ctx, key)
	s.c.count(opDiscard, err)
	return err
}

func (s *countingStore) Delete(ctx context.Context, objectKey string) error {
	err := s.s.Delete(ctx, objectKey)
	s.c.count(opDelete, err)
	return err
}

func (s *countingStore) Put(ctx context.Context, objectKey string, body io.Reader, contentType string) error {
	wb := &watchedBody{r: body}
	err := s.s.Put(ctx, objectKey, wb, contentType)
	if wb.err == nil {
		s.c.count(opPut, err)
	}
	return err
}

func (s *countingStore) Walk(ctx context.Context, fn func(upload.StoredItem) error) error {
	var fnErr error
	err := s.s.Walk(ctx, func(it upload.StoredItem) error {
		fnErr = fn(it)
		return fnErr
	})
	if fnErr == nil {
		// An error of fn's stops the walk through no fault of the store's.
		s.c.count(opWalk, err)
	}
	return err
}

type countingDirectStore struct {
	*countingStore
	ds upload.DirectStore
}

func (s *countingDirectStore) ChunkUploadURL(ctx context.Context, key string, chunk upload.ChunkRef, expires time.Time) (upload.DirectURL, error) {
	u, err := s.ds.ChunkUploadURL(ctx, key, chunk, expires)
	s.c.count(opChunkUploadURL, err)
	return u, err
}

func (s *countingDirectStore) StatChunk(ctx context.Context, key string, chunk upload.ChunkRef) (upload.ChunkInfo, error) {
	info, err := s.ds.StatChunk(ctx, key, chunk)
	s.c.count(opStatChunk, err)
	return info, err
}

func (s *countingDirectStore) ReadChunkHead(ctx context.Context, key string, chunk upload.ChunkRef, n int) ([]byte, error) {
	b, err := s.ds.ReadChunkHead(ctx, key, chunk, n)
	s.c.count(opReadChunkHead, err)
	return b, err
}

type countingResumableStore struct {
	*countingDirectStore
	rs upload.ResumableStore
}

func (s *countingResumableStore) StartResumable(ctx context.Context, key string, chunk upload.ChunkRef, origin string) (string, error) {
	u, err := s.rs.StartResumable(ctx, key, chunk, origin)
	s.c.count(opStartResumable, err)
	return u, err
}

func (s *countingResumableStore) ResumableOffset(ctx context.Context, sessionURL string, size int64) (int64, bool, error) {
	n, done, err := s.rs.ResumableOffset(ctx, sessionURL, size)
	s.c.count(opResumableOffset, err)
	return n, done, err
}

type countingLinker struct {
	l upload.ObjectLinker
	c *storeCounters
}

func (l *countingLinker) ObjectURL(ctx context.Context, objectKey, fileName string, expires time.Time) (string, error) {
	u, err := l.l.ObjectURL(ctx, objectKey, fileName, expires)
	l.c.count(opObjectURL, err)
	return u, err
}

// Compile-time checks that each layer has the abilities it claims.
var (
	_ upload.Store          = (*countingStore)(nil)
	_ upload.DirectStore    = (*countingDirectStore)(nil)
	_ upload.ResumableStore = (*countingResumableStore)(nil)
	_ upload.ObjectLinker   = (*countingLinker)(nil)
)
