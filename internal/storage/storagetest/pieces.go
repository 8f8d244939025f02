package storagetest

// Cases for chunks written in pieces (tus PATCHes that end anywhere) and
// for joining uploads (tus concatenation).

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/spoolhq/spool/internal/upload"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// WithSealChecksCRC32C says the engine checks what it holds against the
// CRC32C SealChunk is given (the contract lets an engine that cannot
// check skip it); the suite then checks that a wrong one fails.
func WithSealChecksCRC32C() Option {
	return func(c *config) { c.sealChecksCRC = true }
}

// testPiecesMakeChunks writes each chunk of an upload in pieces of odd
// sizes, one chunk in more pieces than GCS composes at once, one as a
// whole chunk, seals them and assembles the upload.
func testPiecesMakeChunks(t *testing.T, s upload.Store, c config) {
	data := randomBytes(t, 3*chunkSize+300)
	key := "usr_suite/upl_pieces"
	prepare(t, s, key, len(data))
	pieceSizes := map[int][]int{
		0: {1, 7, 333, 500, 183},
		1: slices.Repeat([]int{27}, 37), // 999 bytes in 37 pieces, then 25
		3: {299, 1},
	}
	for index, sizes := range pieceSizes {
		chunk := chunkAt(index, len(data))
		writePieces(t, s, key, chunk, data, sizes)
		seal(t, s, key, chunk, data)
	}
	writeChunks(t, s, key, data, []int{2})
	// Walk sees an upload in pieces as one upload.
	if got, want := names(walk(t, s)), []string{"upload " + key}; !slices.Equal(got, want) {
		t.Errorf("Walk reported %v, want %v", got, want)
	}
	checkObject(t, s, assemble(t, s, key, data), data)
	checkNoLeftovers(t, s, c, key, "after Assemble of sealed chunks")
}

// writePieces writes the chunk's bytes of data in pieces of the sizes
// given, in order, and a last piece with the rest.
func writePieces(t *testing.T, s upload.Store, key string, chunk upload.ChunkRef, data []byte, sizes []int) {
	t.Helper()
	b := data[chunk.Offset : chunk.Offset+chunk.Size]
	at := 0
	for _, n := range sizes {
		writePiece(t, s, key, chunk, at, b[at:at+n])
		at += n
	}
	if at < len(b) {
		writePiece(t, s, key, chunk, at, b[at:])
	}
}

func writePiece(t *testing.T, s upload.Store, key string, chunk upload.ChunkRef, at int, b []byte) {
	t.Helper()
	n, err := s.WritePiece(t.Context(), key, chunk, int64(at), bytes.NewReader(b))
	if err != nil {
		t.Fatalf("WritePiece(%q, chunk %d, at %d): %v", key, chunk.Index, at, err)
	}
	if got, want := n, int64(len(b)); got != want {
		t.Fatalf("WritePiece(%q, chunk %d, at %d) stored %d bytes, want %d", key, chunk.Index, at, got, want)
	}
}

// seal seals the chunk with the CRC32C of its bytes in data.
func seal(t *testing.T, s upload.Store, key string, chunk upload.ChunkRef, data []byte) {
	t.Helper()
	if err := s.SealChunk(t.Context(), key, chunk, chunkCRC(chunk, data)); err != nil {
		t.Fatalf("SealChunk(%q, chunk %d): %v", key, chunk.Index, err)
	}
}

func chunkCRC(chunk upload.ChunkRef, data []byte) uint32 {
	return crc32.Checksum(data[chunk.Offset:chunk.Offset+chunk.Size], castagnoli)
}

// testPieceKeepsWhatArrives sends pieces whose bodies fail or end
// midway: what they delivered is stored, and the chunk goes on from
// there.
func testPieceKeepsWhatArrives(t *testing.T, s upload.Store) {
	data := randomBytes(t, 2*chunkSize)
	key := "usr_suite/upl_piecebreak"
	prepare(t, s, key, len(data))
	chunk := chunkAt(0, len(data))
	bodyErr := errors.New("connection reset by test")

	broken := io.MultiReader(bytes.NewReader(data[:100]), &failingReader{err: bodyErr})
	n, err := s.WritePiece(t.Context(), key, chunk, 0, broken)
	if !errors.Is(err, bodyErr) {
		t.Errorf("WritePiece of a failing body: got error %v, want %v", err, bodyErr)
	}
	if n != 100 {
		t.Fatalf("WritePiece of a body failing after 100 bytes stored %d, want 100", n)
	}
	n, err = s.WritePiece(t.Context(), key, chunk, 100, bytes.NewReader(data[100:613]))
	if err != nil || n != 513 {
		t.Fatalf("WritePiece of a body ending before the chunk's end = %d, %v; want 513, nil", n, err)
	}
	// A body failing before it gives anything stores nothing.
	n, err = s.WritePiece(t.Context(), key, chunk, 613, &failingReader{err: bodyErr})
	if !errors.Is(err, bodyErr) || n != 0 {
		t.Errorf("WritePiece of a body failing at once = %d, %v; want 0, %v", n, err, bodyErr)
	}
	writePiece(t, s, key, chunk, 613, data[613:chunkSize])
	seal(t, s, key, chunk, data)
	writeChunks(t, s, key, data, []int{1})
	checkObject(t, s, assemble(t, s, key, data), data)
}

// testPieceRewrite writes pieces that are then written again: a piece
// written at the same byte replaces the one there, and one left off the
// chain of pieces that make the chunk does not count.
func testPieceRewrite(t *testing.T, s upload.Store) {
	data := randomBytes(t, chunkSize+10)
	key := "usr_suite/upl_piecerewrite"
	prepare(t, s, key, len(data))
	chunk := chunkAt(0, len(data))
	b := data[:chunkSize]
	junk := bytes.Repeat([]byte{'x'}, chunkSize)

	writePiece(t, s, key, chunk, 0, junk[:300])
	writePiece(t, s, key, chunk, 300, junk[:400]) // left off the chain below
	writePiece(t, s, key, chunk, 0, b[:500])      // replaces the first
	writePiece(t, s, key, chunk, 500, junk[:100])
	writePiece(t, s, key, chunk, 500, b[500:]) // replaces the one before
	seal(t, s, key, chunk, data)
	writeChunks(t, s, key, data, []int{1})
	checkObject(t, s, assemble(t, s, key, data), data)
}

// testSealChecksumAndTwice seals a chunk with a wrong CRC32C (which an
// engine that checks refuses, keeping the pieces), then with the right
// one, twice.
func testSealChecksumAndTwice(t *testing.T, s upload.Store, c config) {
	data := randomBytes(t, 2*chunkSize-1)
	key := "usr_suite/upl_sealcrc"
	prepare(t, s, key, len(data))
	for i := range 2 {
		chunk := chunkAt(i, len(data))
		writePieces(t, s, key, chunk, data, []int{chunkSize / 3})
		wrong := chunkCRC(chunk, data) ^ 1
		err := s.SealChunk(t.Context(), key, chunk, wrong)
		if c.sealChecksCRC && err == nil {
			t.Errorf("SealChunk of chunk %d with a wrong CRC32C succeeded, want an error", i)
		}
		seal(t, s, key, chunk, data)
		seal(t, s, key, chunk, data)
	}
	checkObject(t, s, assemble(t, s, key, data), data)
}

// testSealEmptyChunk seals the one chunk of an empty upload, which no
// piece can hold.
func testSealEmptyChunk(t *testing.T, s upload.Store) {
	key := "usr_suite/upl_sealempty"
	prepare(t, s, key, 0)
	for range 2 {
		seal(t, s, key, chunkAt(0, 0), nil)
	}
	checkObject(t, s, assembleSize(t, s, key, 1, 0), nil)
}

// testPieceErrors checks the pieces that must be refused: outside the
// chunk or the upload, longer than the rest of the chunk, and of uploads
// never prepared or discarded.
func testPieceErrors(t *testing.T, s upload.Store, c config) {
	ctx := t.Context()
	data := randomBytes(t, 2*chunkSize)
	key := "usr_suite/upl_pieceerr"
	prepare(t, s, key, len(data))
	chunk := chunkAt(1, len(data))
	for _, at := range []int64{-1, chunk.Size + 1} {
		if n, err := s.WritePiece(ctx, key, chunk, at, bytes.NewReader(data[:10])); err == nil {
			t.Errorf("WritePiece at byte %d of a %d-byte chunk stored %d bytes, want an error", at, chunk.Size, n)
		}
	}
	for _, bad := range []upload.ChunkRef{
		{Index: 2, Offset: 2 * chunkSize, Size: chunkSize}, // after the end
		{Index: 1, Offset: chunkSize, Size: chunkSize + 1}, // past the end
		{Index: -1, Offset: 0, Size: chunkSize},
		{Index: 0, Offset: 0, Size: -1},
	} {
		if n, err := s.WritePiece(ctx, key, bad, 0, bytes.NewReader(data[:10])); err == nil {
			t.Errorf("WritePiece into chunk %+v of an upload of %d bytes stored %d bytes, want an error", bad, len(data), n)
		}
	}
	for _, bad := range []upload.ChunkRef{{Index: -1, Offset: 0, Size: chunkSize}, {Index: 0, Offset: -1, Size: chunkSize}} {
		if err := s.SealChunk(ctx, key, bad, 0); err == nil {
			t.Errorf("SealChunk(%+v) succeeded, want an error", bad)
		}
	}
	// Longer than the rest of the chunk: nothing spills into the next.
	writePieces(t, s, key, chunk, data, []int{10})
	seal(t, s, key, chunk, data)
	if n, err := s.WritePiece(ctx, key, chunkAt(0, len(data)), chunkSize-24, bytes.NewReader(make([]byte, 100))); err == nil || n > 24 {
		t.Errorf("WritePiece of 100 bytes 24 before the chunk's end = %d, %v; want at most 24 and an error", n, err)
	}
	writeChunks(t, s, key, data, []int{0})
	checkObject(t, s, assemble(t, s, key, data), data)

	if n, err := s.WritePiece(ctx, "usr_suite/upl_never", chunkAt(0, chunkSize), 0, bytes.NewReader(data[:10])); !errors.Is(err, upload.ErrNotExist) {
		t.Errorf("WritePiece into an upload never prepared = %d, %v; want an error wrapping %v", n, err, upload.ErrNotExist)
	}
	discarded := "usr_suite/upl_piecediscard"
	prepare(t, s, discarded, len(data))
	writePiece(t, s, discarded, chunkAt(0, len(data)), 0, data[:10])
	if err := s.Discard(ctx, discarded); err != nil {
		t.Fatalf("Discard: %v", err)
	}
	checkNoLeftovers(t, s, c, discarded, "after Discard of an upload with a piece")
	if n, err := s.WritePiece(ctx, discarded, chunkAt(0, len(data)), 10, bytes.NewReader(data[10:20])); !errors.Is(err, upload.ErrNotExist) {
		t.Errorf("WritePiece after Discard = %d, %v; want an error wrapping %v", n, err, upload.ErrNotExist)
	}
	checkNoLeftovers(t, s, c, discarded, "after a WritePiece refused for a discarded upload")
}

// joinSizes are the uploads testJoin joins: several chunks each, last
// ones short, more chunks in all (41) than GCS composes at once.
var joinSizes = []int{3*chunkSize + 17, 2*chunkSize + 1, 33*chunkSize + 5}

// testJoin joins uploads into one, checks the CRC32C Join returns and
// the bytes of the assembled upload, and that the parts stay as they
// were.
func testJoin(t *testing.T, s upload.Store, c config) {
	ctx := t.Context()
	var total int
	for _, size := range joinSizes {
		total += size
	}
	all := randomBytes(t, total)
	var parts []upload.JoinPart
	var off int
	for i, size := range joinSizes {
		data := all[off : off+size]
		off += size
		key := fmt.Sprintf("usr_suite/upl_joinpart%d", i)
		prepare(t, s, key, len(data))
		writeChunks(t, s, key, data, rand.Perm(chunkCount(len(data))))
		parts = append(parts, upload.JoinPart{Key: key, TotalChunks: chunkCount(len(data)), Size: int64(len(data))})
	}
	key := "usr_suite/upl_joined"
	prepare(t, s, key, len(all))
	crc, err := s.Join(ctx, key, int64(len(all)), parts)
	if err != nil {
		t.Fatalf("Join: %v", err)
	}
	if want := crc32.Checksum(all, castagnoli); crc != want {
		t.Errorf("Join returned CRC32C %08x, want %08x", crc, want)
	}
	checkObject(t, s, assembleSize(t, s, key, 1, len(all)), all)
	checkNoLeftovers(t, s, c, key, "after Assemble of a joined upload")
	// The parts stay as they are.
	first := parts[0]
	checkObject(t, s, assembleSize(t, s, first.Key, first.TotalChunks, int(first.Size)), all[:first.Size])
}

// testJoinErrors checks Join's refusals: parts that are gone or never
// were, sizes that do not add up or are not what is stored, and a
// destination never prepared.
func testJoinErrors(t *testing.T, s upload.Store) {
	ctx := t.Context()
	data := randomBytes(t, 2*chunkSize+3)
	part := func(key string) upload.JoinPart {
		prepare(t, s, key, len(data))
		writeChunks(t, s, key, data, []int{0, 1, 2})
		return upload.JoinPart{Key: key, TotalChunks: 3, Size: int64(len(data))}
	}
	a, b := part("usr_suite/upl_joinerr_a"), part("usr_suite/upl_joinerr_b")
	dst := "usr_suite/upl_joinerr_dst"
	size := 2 * int64(len(data))
	prepare(t, s, dst, int(size))

	never := upload.JoinPart{Key: "usr_suite/upl_never", TotalChunks: 3, Size: int64(len(data))}
	if _, err := s.Join(ctx, dst, size, []upload.JoinPart{a, never}); !errors.Is(err, upload.ErrNotExist) {
		t.Errorf("Join of an upload never prepared: got error %v, want %v", err, upload.ErrNotExist)
	}
	if _, err := s.Join(ctx, "usr_suite/upl_never", size, []upload.JoinPart{a, b}); !errors.Is(err, upload.ErrNotExist) {
		t.Errorf("Join into an upload never prepared: got error %v, want %v", err, upload.ErrNotExist)
	}
	wrong := []struct {
		name  string
		size  int64
		parts []upload.JoinPart
	}{
		{"NoParts", 0, nil},
		{"SizesDoNotAddUp", size - 1, []upload.JoinPart{a, b}},
		{"PartSmallerThanStored", size - 1, []upload.JoinPart{a, {Key: b.Key, TotalChunks: 3, Size: b.Size - 1}}},
		{"PartLargerThanStored", size + 1, []upload.JoinPart{a, {Key: b.Key, TotalChunks: 3, Size: b.Size + 1}}},
		{"IntoItself", size, []upload.JoinPart{a, {Key: dst, TotalChunks: 3, Size: b.Size}}},
		{"InvalidKey", size, []upload.JoinPart{a, {Key: "../escape", TotalChunks: 3, Size: b.Size}}},
		{"NegativeSize", size, []upload.JoinPart{a, {Key: b.Key, TotalChunks: 3, Size: -1}}},
		{"NoChunks", size, []upload.JoinPart{a, {Key: b.Key, TotalChunks: 0, Size: b.Size}}},
	}
	for _, tt := range wrong {
		if crc, err := s.Join(ctx, dst, tt.size, tt.parts); err == nil {
			t.Errorf("%s: Join returned CRC32C %08x, want an error", tt.name, crc)
		}
	}
	if _, err := s.Join(ctx, dst, size, []upload.JoinPart{a, b}); err != nil {
		t.Fatalf("Join after the refusals: %v", err)
	}
	checkObject(t, s, assembleSize(t, s, dst, 1, int(size)), append(slices.Clone(data), data...))

	// A part assembled or discarded meanwhile is gone.
	assembleSize(t, s, a.Key, a.TotalChunks, int(a.Size))
	if err := s.Discard(ctx, b.Key); err != nil {
		t.Fatalf("Discard: %v", err)
	}
	dst2 := "usr_suite/upl_joinerr_dst2"
	prepare(t, s, dst2, len(data))
	for _, p := range []upload.JoinPart{a, b} {
		if _, err := s.Join(ctx, dst2, p.Size, []upload.JoinPart{p}); !errors.Is(err, upload.ErrNotExist) {
			t.Errorf("Join of %s, assembled or discarded: got error %v, want %v", p.Key, err, upload.ErrNotExist)
		}
	}
}
