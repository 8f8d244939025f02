package gcs

import (
	"bytes"
	"errors"
	"hash/crc32"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"google.golang.org/api/option"

	"github.com/spoolhq/spool/internal/upload"
)

// TestPieceLayout checks the objects pieces make, that a chunk sealed
// from more pieces than one compose takes leaves neither pieces nor
// intermediates, and that a sealed chunk reads as WriteChunk would have
// written it.
func TestPieceLayout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	s := e.store
	key := "usr_p/upl_layout"
	data := patternBytes(400)
	prepare(t, s, key, len(data))
	chunk := upload.ChunkRef{Index: 1, Offset: 100, Size: 300}
	b := data[100:]
	writePiece(t, s, key, chunk, 0, b[:7])
	writePiece(t, s, key, chunk, 7, b[7:20])
	dir := testPrefix + "/parts/" + key + "/"
	if got, want := listNames(t, e.client, e.bucket, ""), []string{
		dir + "000001.piece-000000000000",
		dir + "000001.piece-000000000007",
		dir + "prepared",
	}; !slices.Equal(got, want) {
		t.Errorf("objects after two pieces: %q, want %q", got, want)
	}
	// 40 pieces in all: two levels of compose.
	for at := 20; at < len(b); at += 7 {
		writePiece(t, s, key, chunk, at, b[at:min(at+7, len(b))])
	}
	sealChunk(t, s, key, chunk, b)
	if got, want := listNames(t, e.client, e.bucket, ""), []string{dir + "000001", dir + "prepared"}; !slices.Equal(got, want) {
		t.Errorf("objects after SealChunk: %q, want %q", got, want)
	}
	info, err := s.StatChunk(t.Context(), key, chunk)
	if want := (upload.ChunkInfo{Size: chunk.Size, CRC32C: crc32.Checksum(b, castagnoli)}); err != nil || info != want {
		t.Errorf("StatChunk of the sealed chunk = %+v, %v; want %+v", info, err, want)
	}
	writeChunk(t, s, key, upload.ChunkRef{Size: 100}, data[:100])
	if got := readAll(t, s, assemble(t, s, key, 2, len(data))); !bytes.Equal(got, data) {
		t.Errorf("object differs from the bytes written")
	}
}

// TestSealChunkChecksumMismatch makes the composed part appear to hold
// other bytes than its pieces: SealChunk must refuse it, delete it, keep
// the pieces, and succeed when tried again.
func TestSealChunkChecksumMismatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	isCompose := func(req *http.Request) bool { return strings.HasSuffix(req.URL.Path, "/compose") }
	bad := e.storeWith(t, option.WithHTTPClient(&http.Client{Transport: &crcRewriter{match: isCompose}}))
	key := "usr_p/upl_sealcrc"
	data := patternBytes(100)
	chunk := upload.ChunkRef{Size: 100}
	prepare(t, e.store, key, len(data))
	writePiece(t, e.store, key, chunk, 0, data[:33])
	writePiece(t, e.store, key, chunk, 33, data[33:])

	err := bad.SealChunk(t.Context(), key, chunk, crc32.Checksum(data, castagnoli))
	if !errors.Is(err, errChecksumMismatch) {
		t.Fatalf("SealChunk whose part's CRC32C differs: got error %v, want %v", err, errChecksumMismatch)
	}
	if info, err := e.store.StatChunk(t.Context(), key, chunk); !errors.Is(err, upload.ErrNotExist) {
		t.Errorf("StatChunk after a checksum mismatch = %+v, %v; want the part deleted (%v)", info, err, upload.ErrNotExist)
	}
	sealChunk(t, e.store, key, chunk, data)
	if got := readAll(t, e.store, assemble(t, e.store, key, 1, len(data))); !bytes.Equal(got, data) {
		t.Errorf("object sealed after a failed attempt differs from the bytes written")
	}
}

// TestWritePieceChecksumMismatch makes GCS appear to store other bytes
// than were sent: WritePiece must say it kept nothing, and delete them.
func TestWritePieceChecksumMismatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	isPiece := func(req *http.Request) bool {
		return strings.HasPrefix(req.URL.Path, "/upload/") && strings.Contains(req.URL.Query().Get("name"), pieceInfix)
	}
	bad := e.storeWith(t, option.WithHTTPClient(&http.Client{Transport: &crcRewriter{match: isPiece}}))
	key := "usr_p/upl_piececrc"
	prepare(t, e.store, key, 100)
	bodyErr := errors.New("connection reset by test")
	body := io.MultiReader(bytes.NewReader(patternBytes(60)), &failingReader{err: bodyErr})
	n, err := bad.WritePiece(t.Context(), key, upload.ChunkRef{Size: 100}, 0, body)
	if !errors.Is(err, errChecksumMismatch) || !errors.Is(err, bodyErr) || n != 0 {
		t.Errorf("WritePiece whose stored CRC32C differs, body failing = %d, %v; want 0 and both %v and %v", n, err, errChecksumMismatch, bodyErr)
	}
	if left := listNames(t, e.client, e.bucket, e.store.piecePrefix(key, 0)); len(left) > 0 {
		t.Errorf("pieces %q remain after a checksum mismatch, want none", left)
	}
}

// TestWritePieceRacingDiscard discards an upload while a piece is being
// written: the piece must not outlive the upload, and SealChunk then
// says the upload is gone.
func TestWritePieceRacingDiscard(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	s := e.store
	key := "usr_p/upl_race"
	chunk := upload.ChunkRef{Size: 100}
	prepare(t, s, key, 100)
	body, bodyW := io.Pipe()
	type result struct {
		n   int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := s.WritePiece(t.Context(), key, chunk, 0, body)
		body.Close() // a write that stopped reading fails the test, not hangs it
		done <- result{n, err}
	}()
	// A pipe's Write returns once WritePiece has read the bytes, so it is
	// past its first look at the upload when Discard runs.
	if _, err := bodyW.Write(make([]byte, 50)); err != nil {
		t.Fatalf("writing the first half of the body: %v", err)
	}
	if err := s.Discard(t.Context(), key); err != nil {
		t.Fatalf("Discard: %v", err)
	}
	bodyW.CloseWithError(errors.New("client went away"))
	if r := <-done; !errors.Is(r.err, upload.ErrNotExist) || r.n != 0 {
		t.Errorf("WritePiece that outlived its upload = %d, %v; want 0 and %v", r.n, r.err, upload.ErrNotExist)
	}
	if left := leftovers(t, s, key); len(left) > 0 {
		t.Errorf("after Discard and the racing piece, %q remain; want nothing", left)
	}
	if err := s.SealChunk(t.Context(), key, chunk, 0); !errors.Is(err, upload.ErrNotExist) {
		t.Errorf("SealChunk of a discarded upload: got error %v, want %v", err, upload.ErrNotExist)
	}
}

// TestSealChunkIncomplete checks that a chunk whose pieces leave a gap is
// not sealed, and that the error does not claim the upload is gone.
func TestSealChunkIncomplete(t *testing.T) {
	t.Parallel()
	s := newEnv(t, Options{}).store
	key := "usr_p/upl_gap"
	data := patternBytes(100)
	chunk := upload.ChunkRef{Size: 100}
	prepare(t, s, key, len(data))
	writePiece(t, s, key, chunk, 0, data[:30])
	writePiece(t, s, key, chunk, 40, data[40:])
	err := s.SealChunk(t.Context(), key, chunk, crc32.Checksum(data, castagnoli))
	if err == nil || errors.Is(err, upload.ErrNotExist) {
		t.Fatalf("SealChunk with a gap after byte 30: got error %v, want one not wrapping %v", err, upload.ErrNotExist)
	}
	writePiece(t, s, key, chunk, 30, data[30:40])
	sealChunk(t, s, key, chunk, data)
}

// TestJoinChunkMissing joins an upload one of whose chunks was never
// written (on GCS a prepared upload has no bytes until they arrive).
func TestJoinChunkMissing(t *testing.T) {
	t.Parallel()
	s := newEnv(t, Options{}).store
	part, key := "usr_p/upl_part", "usr_p/upl_joined"
	prepare(t, s, part, 20)
	writeChunk(t, s, part, upload.ChunkRef{Size: 10}, patternBytes(10))
	prepare(t, s, key, 20)
	_, err := s.Join(t.Context(), key, 20, []upload.JoinPart{{Key: part, TotalChunks: 2, Size: 20}})
	if !errors.Is(err, upload.ErrNotExist) {
		t.Errorf("Join of an upload missing chunk 1: got error %v, want %v", err, upload.ErrNotExist)
	}
	if left := listNames(t, s.client, s.Bucket(), s.partName(key, 0)); len(left) > 0 {
		t.Errorf("Join that failed left %q", left)
	}
}

func writePiece(t *testing.T, s *Store, key string, chunk upload.ChunkRef, at int, b []byte) {
	t.Helper()
	n, err := s.WritePiece(t.Context(), key, chunk, int64(at), bytes.NewReader(b))
	if err != nil || n != int64(len(b)) {
		t.Fatalf("WritePiece(%q, %+v, %d) = %d, %v; want %d, nil", key, chunk, at, n, err, len(b))
	}
}

func sealChunk(t *testing.T, s *Store, key string, chunk upload.ChunkRef, b []byte) {
	t.Helper()
	if err := s.SealChunk(t.Context(), key, chunk, crc32.Checksum(b, castagnoli)); err != nil {
		t.Fatalf("SealChunk(%q, %+v): %v", key, chunk, err)
	}
}

type failingReader struct{ err error }

func (r *failingReader) Read([]byte) (int, error) { return 0, r.err }
