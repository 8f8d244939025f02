// Package storagetest is the conformance suite for upload.Store engines.
// Every engine's tests call Run, so the domain can rely on the same
// behaviour from local disk and from object storage.
package storagetest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/spoolhq/spool/internal/upload"
)

// chunkSize is small so the suite stays fast; engines must not depend on
// chunk sizes seen in production.
const chunkSize = 1 << 10

// Option adds an engine-specific check to the suite.
type Option func(*config)

type config struct {
	leftovers     func(t *testing.T, s upload.Store, key string) []string
	invalidKeys   []string
	sealChecksCRC bool
}

// WithLeftovers lets the suite check that Discard and Assemble free
// everything an unfinished upload held. leftovers returns the names of
// whatever s still keeps for the upload key (a staging file, chunk
// objects, temporary objects), and none once that is all gone; it fails
// t if it cannot tell. Without it the suite checks only what the Store
// interface shows.
func WithLeftovers(leftovers func(t *testing.T, s upload.Store, key string) []string) Option {
	return func(c *config) { c.leftovers = leftovers }
}

// WithInvalidKeys adds keys that the engine refuses beyond the rule every
// engine shares (storagekey.Check), such as names its storage cannot hold.
// The suite checks that every method refuses them.
func WithInvalidKeys(keys ...string) Option {
	return func(c *config) { c.invalidKeys = append(c.invalidKeys, keys...) }
}

// Run runs the suite. newStore returns an empty store for one subtest and
// arranges its cleanup with t.Cleanup.
func Run(t *testing.T, newStore func(t *testing.T) upload.Store, opts ...Option) {
	var c config
	for _, o := range opts {
		o(&c)
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, s upload.Store)
	}{
		{"WriteOutOfOrderInParallel", testWriteOutOfOrderInParallel},
		{"ChunkCounts", func(t *testing.T, s upload.Store) { testChunkCounts(t, s, c) }},
		{"RewriteReplacesChunk", testRewriteReplacesChunk},
		{"ConcurrentSendsOfOneChunk", testConcurrentSendsOfOneChunk},
		{"DifferentChunksWriteTogether", testDifferentChunksWriteTogether},
		{"ShortBody", testShortBody},
		{"BodyError", testBodyError},
		{"AssembleIdempotent", func(t *testing.T, s upload.Store) { testAssembleIdempotent(t, s, c) }},
		{"AssembleWrongSize", testAssembleWrongSize},
		{"NotFound", testNotFound},
		{"OpenMissing", testOpenMissing},
		{"Discard", func(t *testing.T, s upload.Store) { testDiscard(t, s, c) }},
		{"Delete", testDelete},
		{"SeekAndRangeRead", testSeekAndRangeRead},
		{"SeekEdges", testSeekEdges},
		{"InvalidKeys", func(t *testing.T, s upload.Store) { testInvalidKeys(t, s, c) }},
		{"InvalidChunks", testInvalidChunks},
		{"LongBody", testLongBody},
		{"PutReplacesWhole", testPutReplacesWhole},
		{"WalkSeesEverything", testWalkSeesEverything},
		{"PiecesMakeChunks", func(t *testing.T, s upload.Store) { testPiecesMakeChunks(t, s, c) }},
		{"PieceKeepsWhatArrives", testPieceKeepsWhatArrives},
		{"PieceRewrite", testPieceRewrite},
		{"SealChecksumAndTwice", func(t *testing.T, s upload.Store) { testSealChecksumAndTwice(t, s, c) }},
		{"SealEmptyChunk", testSealEmptyChunk},
		{"PieceErrors", func(t *testing.T, s upload.Store) { testPieceErrors(t, s, c) }},
		{"Join", func(t *testing.T, s upload.Store) { testJoin(t, s, c) }},
		{"JoinErrors", testJoinErrors},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, newStore(t))
		})
	}
}

func testWriteOutOfOrderInParallel(t *testing.T, s upload.Store) {
	data := randomBytes(t, 9*chunkSize+100)
	key := "usr_suite/upl_parallel"
	prepare(t, s, key, len(data))
	writeChunks(t, s, key, data, rand.Perm(chunkCount(len(data))))
	checkObject(t, s, assemble(t, s, key, data), data)
}

// testChunkCounts assembles uploads around the limits of object stores
// that compose at most 32 objects at once (GCS): one level, two levels,
// and a wide tree (100 chunks).
func testChunkCounts(t *testing.T, s upload.Store, c config) {
	tests := []struct {
		name string
		size int
	}{
		{"OneByte", 1},
		{"OneChunk", chunkSize},
		{"32Chunks", 32 * chunkSize},
		{"33ChunksLastShort", 32*chunkSize + 7},
		{"33Chunks", 33 * chunkSize},
		{"100Chunks", 100 * chunkSize},
		{"100ChunksLastShort", 99*chunkSize + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := randomBytes(t, tt.size)
			key := "usr_suite/upl_count_" + tt.name
			prepare(t, s, key, len(data))
			writeChunks(t, s, key, data, rand.Perm(chunkCount(len(data))))
			checkObject(t, s, assemble(t, s, key, data), data)
			checkNoLeftovers(t, s, c, key, "after Assemble")
		})
	}
}

func testRewriteReplacesChunk(t *testing.T, s upload.Store) {
	data := randomBytes(t, 3*chunkSize)
	key := "usr_suite/upl_rewrite"
	prepare(t, s, key, len(data))
	stale := bytes.Repeat([]byte{'x'}, chunkSize)
	writeChunk(t, s, key, chunkAt(1, len(data)), stale)
	writeChunks(t, s, key, data, []int{0, 1, 2})
	checkObject(t, s, assemble(t, s, key, data), data)
}

// testConcurrentSendsOfOneChunk sends one chunk twice at once, the first
// send pausing halfway so the second can start. The chunk must then hold
// one whole send, never half of each.
func testConcurrentSendsOfOneChunk(t *testing.T, s upload.Store) {
	const size = 2 * chunkSize
	key := "usr_suite/upl_samechunk"
	prepare(t, s, key, size)
	chunk := chunkAt(0, size)
	first, second := bytes.Repeat([]byte{'a'}, chunkSize), bytes.Repeat([]byte{'b'}, chunkSize)

	firstStarted, secondStarted := make(chan struct{}), make(chan struct{})
	firstBody := &pausingReader{
		first:  first[:chunkSize/2],
		rest:   first[chunkSize/2:],
		begun:  firstStarted,
		resume: secondStarted,
		// With a lock the second send cannot start until the first ends,
		// so the first gives up waiting.
		maxWait: 200 * time.Millisecond,
	}
	secondBody := &signalingReader{r: bytes.NewReader(second), begun: secondStarted}

	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Go(func() { _, errs[0] = s.WriteChunk(t.Context(), key, chunk, firstBody) })
	<-firstStarted
	wg.Go(func() { _, errs[1] = s.WriteChunk(t.Context(), key, chunk, secondBody) })
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("send %d: WriteChunk: %v", i, err)
		}
	}
	rest := make([]byte, size-chunkSize)
	writeChunk(t, s, key, chunkAt(1, size), rest)

	got := readObject(t, s, assembleSize(t, s, key, 2, size))[:chunkSize]
	if !bytes.Equal(got, first) && !bytes.Equal(got, second) {
		t.Errorf("chunk after two concurrent sends starts %q and ends %q, want all 'a' or all 'b'",
			got[:8], got[len(got)-8:])
	}
}

// testDifferentChunksWriteTogether holds chunk 0's body open until chunk 1
// is written: an engine that serialises a whole upload would never finish.
func testDifferentChunksWriteTogether(t *testing.T, s upload.Store) {
	data := randomBytes(t, 2*chunkSize)
	key := "usr_suite/upl_together"
	prepare(t, s, key, len(data))

	secondDone := make(chan struct{})
	body := &pausingReader{
		first:   data[:chunkSize/2],
		rest:    data[chunkSize/2 : chunkSize],
		begun:   make(chan struct{}),
		resume:  secondDone,
		maxWait: 10 * time.Second,
	}
	errc := make(chan error, 1)
	go func() {
		_, err := s.WriteChunk(t.Context(), key, chunkAt(0, len(data)), body)
		errc <- err
	}()
	<-body.begun
	writeChunk(t, s, key, chunkAt(1, len(data)), data[chunkSize:])
	close(secondDone)
	if err := <-errc; err != nil {
		t.Fatalf("WriteChunk of chunk 0: %v", err)
	}
	if body.timedOut {
		t.Fatalf("chunk 1 was not written while chunk 0 was being written")
	}
	checkObject(t, s, assemble(t, s, key, data), data)
}

// testShortBody checks that a body ending early is reported by the count,
// not as an error, and that the chunk can then be sent again in full.
func testShortBody(t *testing.T, s upload.Store) {
	data := randomBytes(t, 2*chunkSize)
	key := "usr_suite/upl_short"
	prepare(t, s, key, len(data))
	chunk := chunkAt(0, len(data))
	short := data[:chunkSize-10]

	n, err := s.WriteChunk(t.Context(), key, chunk, bytes.NewReader(short))
	if err != nil {
		t.Fatalf("WriteChunk of a short body: %v", err)
	}
	if got, want := n, int64(len(short)); got != want {
		t.Errorf("WriteChunk of a short body wrote %d bytes, want %d", got, want)
	}
	writeChunks(t, s, key, data, []int{0, 1})
	checkObject(t, s, assemble(t, s, key, data), data)
}

func testBodyError(t *testing.T, s upload.Store) {
	key := "usr_suite/upl_bodyerr"
	prepare(t, s, key, 2*chunkSize)
	bodyErr := errors.New("connection reset by test")
	const sent = 100
	body := io.MultiReader(bytes.NewReader(make([]byte, sent)), &failingReader{err: bodyErr})

	n, err := s.WriteChunk(t.Context(), key, chunkAt(0, 2*chunkSize), body)
	if !errors.Is(err, bodyErr) {
		t.Errorf("WriteChunk of a failing body: got error %v, want %v", err, bodyErr)
	}
	if n > sent {
		t.Errorf("WriteChunk of a failing body wrote %d bytes, want at most the %d it read", n, sent)
	}
}

func testAssembleIdempotent(t *testing.T, s upload.Store, c config) {
	data := randomBytes(t, 3*chunkSize-1)
	key := "usr_suite/upl_idem"
	prepare(t, s, key, len(data))
	writeChunks(t, s, key, data, []int{2, 0, 1})
	first := assemble(t, s, key, data)
	second := assemble(t, s, key, data)
	if first != second {
		t.Errorf("second Assemble returned object %q, want %q as the first", second, first)
	}
	checkObject(t, s, second, data)
	checkNoLeftovers(t, s, c, key, "after two Assembles")
}

// testAssembleWrongSize checks that Assemble refuses a size other than the
// upload's, and that the upload can still be assembled afterwards.
func testAssembleWrongSize(t *testing.T, s upload.Store) {
	data := randomBytes(t, 2*chunkSize)
	key := "usr_suite/upl_wrongsize"
	prepare(t, s, key, len(data))
	writeChunks(t, s, key, data, []int{0, 1})
	for _, size := range []int{len(data) + 1, len(data) - 1} {
		if objKey, err := s.Assemble(t.Context(), key, 2, int64(size)); err == nil {
			t.Errorf("Assemble of %d bytes as %d returned object %q, want an error", len(data), size, objKey)
		}
	}
	objKey := assemble(t, s, key, data)
	checkObject(t, s, objKey, data)
	// And through the already-assembled path.
	if objKey, err := s.Assemble(t.Context(), key, 2, int64(len(data)+1)); err == nil {
		t.Errorf("Assemble again with the wrong size returned object %q, want an error", objKey)
	}
}

// testNotFound checks the errors that tell the domain an upload is gone
// (it answers ALREADY_FINISHED or NOT_FOUND from them).
func testNotFound(t *testing.T, s upload.Store) {
	ctx := t.Context()
	key := "usr_suite/upl_never"
	if n, err := s.WriteChunk(ctx, key, chunkAt(0, chunkSize), bytes.NewReader(make([]byte, chunkSize))); !errors.Is(err, upload.ErrNotExist) {
		t.Errorf("WriteChunk of an upload never prepared: wrote %d bytes, got error %v, want %v", n, err, upload.ErrNotExist)
	}
	if objKey, err := s.Assemble(ctx, key, 1, chunkSize); !errors.Is(err, upload.ErrNotExist) {
		t.Errorf("Assemble of an upload never prepared: returned %q, got error %v, want %v", objKey, err, upload.ErrNotExist)
	}
	obj, err := s.Open(ctx, key)
	if !errors.Is(err, upload.ErrNotExist) {
		if err == nil {
			obj.Close()
		}
		t.Errorf("Open of an object never made: got error %v, want %v", err, upload.ErrNotExist)
	}
}

func testOpenMissing(t *testing.T, s upload.Store) {
	data := randomBytes(t, chunkSize)
	assembled, staged := "usr_suite/upl_assembled", "usr_suite/upl_staged"
	for _, key := range []string{assembled, staged} {
		prepare(t, s, key, len(data))
		writeChunks(t, s, key, data, []int{0})
	}
	assemble(t, s, assembled, data)

	for _, key := range []string{
		"usr_suite/upl_never",
		staged,      // not assembled yet
		"usr_suite", // a prefix of existing keys
	} {
		obj, err := s.Open(t.Context(), key)
		if !errors.Is(err, upload.ErrNotExist) {
			if err == nil {
				obj.Close()
			}
			t.Errorf("Open(%q): got error %v, want %v", key, err, upload.ErrNotExist)
		}
	}
}

func testDiscard(t *testing.T, s upload.Store, c config) {
	ctx := t.Context()
	if err := s.Discard(ctx, "usr_suite/upl_never"); err != nil {
		t.Errorf("Discard of an upload never prepared: %v", err)
	}
	key := "usr_suite/upl_discard"
	// A neighbour whose key extends this one's must survive the Discard.
	neighbour := key + "_2"
	neighbourData := randomBytes(t, chunkSize)
	prepare(t, s, key, 2*chunkSize)
	prepare(t, s, neighbour, chunkSize)
	writeChunk(t, s, key, chunkAt(0, 2*chunkSize), randomBytes(t, chunkSize))
	writeChunk(t, s, neighbour, chunkAt(0, chunkSize), neighbourData)
	for i := range 2 {
		if err := s.Discard(ctx, key); err != nil {
			t.Fatalf("Discard %d: %v", i+1, err)
		}
	}
	checkNoLeftovers(t, s, c, key, "after Discard")
	if n, err := s.WriteChunk(ctx, key, chunkAt(1, 2*chunkSize), bytes.NewReader(make([]byte, chunkSize))); !errors.Is(err, upload.ErrNotExist) {
		t.Errorf("WriteChunk after Discard: wrote %d bytes, got error %v, want %v", n, err, upload.ErrNotExist)
	}
	checkNoLeftovers(t, s, c, key, "after a WriteChunk refused for a discarded upload")
	if objKey, err := s.Assemble(ctx, key, 2, 2*chunkSize); !errors.Is(err, upload.ErrNotExist) {
		t.Errorf("Assemble after Discard: returned object %q, got error %v, want %v", objKey, err, upload.ErrNotExist)
	}
	checkObject(t, s, assembleSize(t, s, neighbour, 1, chunkSize), neighbourData)
}

// checkNoLeftovers fails t if the engine says it still keeps something
// for the upload key; when is for the message.
func checkNoLeftovers(t *testing.T, s upload.Store, c config, key, when string) {
	t.Helper()
	if c.leftovers == nil {
		return
	}
	if left := c.leftovers(t, s, key); len(left) > 0 {
		t.Errorf("%s, the store still keeps %q for upload %q; want nothing", when, left, key)
	}
}

func testDelete(t *testing.T, s upload.Store) {
	ctx := t.Context()
	if err := s.Delete(ctx, "usr_suite/upl_never"); err != nil {
		t.Errorf("Delete of a missing object: %v", err)
	}
	data := randomBytes(t, chunkSize)
	key := "usr_suite/upl_delete"
	prepare(t, s, key, len(data))
	writeChunks(t, s, key, data, []int{0})
	objKey := assemble(t, s, key, data)
	checkObject(t, s, objKey, data)
	for i := range 2 {
		if err := s.Delete(ctx, objKey); err != nil {
			t.Fatalf("Delete %d: %v", i+1, err)
		}
	}
	obj, err := s.Open(ctx, objKey)
	if !errors.Is(err, upload.ErrNotExist) {
		if err == nil {
			obj.Close()
		}
		t.Errorf("Open after Delete: got error %v, want %v", err, upload.ErrNotExist)
	}
}

func testSeekAndRangeRead(t *testing.T, s upload.Store) {
	data := randomBytes(t, 5*chunkSize+3)
	key := "usr_suite/upl_range"
	prepare(t, s, key, len(data))
	writeChunks(t, s, key, data, []int{4, 3, 2, 1, 0, 5})
	obj, err := s.Open(t.Context(), assemble(t, s, key, data))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer obj.Close()

	if got, want := obj.Size(), int64(len(data)); got != want {
		t.Errorf("Size() = %d, want %d", got, want)
	}
	if obj.ModTime().IsZero() {
		t.Errorf("ModTime() is zero, want the time the object was written")
	}
	tests := []struct {
		name   string
		offset int64
		whence int
		n      int
		start  int // where the read must start in data
	}{
		{"FromStart", 1500, io.SeekStart, 700, 1500},
		{"FromCurrent", 10, io.SeekCurrent, 100, 1500 + 700 + 10},
		{"FromEnd", -50, io.SeekEnd, 50, len(data) - 50},
		{"BackToStart", 0, io.SeekStart, 10, 0},
	}
	for _, tt := range tests {
		pos, err := obj.Seek(tt.offset, tt.whence)
		if err != nil {
			t.Fatalf("%s: Seek: %v", tt.name, err)
		}
		if got, want := pos, int64(tt.start); got != want {
			t.Errorf("%s: Seek returned position %d, want %d", tt.name, got, want)
		}
		got := make([]byte, tt.n)
		if _, err := io.ReadFull(obj, got); err != nil {
			t.Fatalf("%s: reading %d bytes: %v", tt.name, tt.n, err)
		}
		if want := data[tt.start : tt.start+tt.n]; !bytes.Equal(got, want) {
			t.Errorf("%s: read bytes [%d, %d) differ from what was written", tt.name, tt.start, tt.start+tt.n)
		}
	}
	if _, err := obj.Seek(0, io.SeekEnd); err != nil {
		t.Fatalf("Seek to end: %v", err)
	}
	if n, err := obj.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("Read at end = %d, %v; want 0, io.EOF", n, err)
	}
}

// testSeekEdges checks seeking to the end, past it and before the start,
// and that reads after a seek continue exactly where it left them.
func testSeekEdges(t *testing.T, s upload.Store) {
	data := randomBytes(t, 3*chunkSize+5)
	key := "usr_suite/upl_seekedges"
	prepare(t, s, key, len(data))
	writeChunks(t, s, key, data, []int{0, 1, 2, 3})
	obj, err := s.Open(t.Context(), assemble(t, s, key, data))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer obj.Close()

	if pos, err := obj.Seek(int64(len(data))+100, io.SeekStart); err != nil || pos != int64(len(data))+100 {
		t.Errorf("Seek past the end = %d, %v; want %d, nil", pos, err, len(data)+100)
	}
	if n, err := obj.Read(make([]byte, 10)); n != 0 || err != io.EOF {
		t.Errorf("Read past the end = %d, %v; want 0, io.EOF", n, err)
	}
	if _, err := obj.Seek(-1, io.SeekStart); err == nil {
		t.Errorf("Seek to -1 succeeded, want an error")
	}
	// Reads in odd sizes, with a seek back over what was read, must
	// give the object's bytes in order.
	if _, err := obj.Seek(7, io.SeekStart); err != nil {
		t.Fatalf("Seek to 7: %v", err)
	}
	var got []byte
	buf := make([]byte, 333)
	seekedBack := false
	for {
		n, err := obj.Read(buf)
		got = append(got, buf[:n]...)
		if !seekedBack && len(got) >= 1000 {
			seekedBack = true
			if _, err := obj.Seek(-400, io.SeekCurrent); err != nil {
				t.Fatalf("Seek back: %v", err)
			}
			got = got[:len(got)-400]
			continue
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Read after %d bytes: %v", len(got), err)
		}
	}
	if want := data[7:]; !bytes.Equal(got, want) {
		t.Errorf("reading from offset 7 with a seek back gave %d bytes differing from the %d written", len(got), len(want))
	}
}

// invalidKeys break the rule every engine shares: they would name
// something outside the store or alias another key.
var invalidKeys = []string{
	"", ".", "/etc/passwd", "../escape", "usr/../x", "usr/../../escape", "usr/..", "a..b",
	`usr\upl`, "usr/upl\x00", "usr//upl", "usr/./upl", "usr/upl/",
}

// testInvalidKeys checks that every method, the optional abilities'
// included, refuses a key that breaks the rule. Open says the object does
// not exist, as it does for any key it has nothing for.
func testInvalidKeys(t *testing.T, s upload.Store, c config) {
	ctx := t.Context()
	expires := time.Now().Add(time.Hour)
	chunk := chunkAt(0, chunkSize)
	for _, key := range append(slices.Clone(invalidKeys), c.invalidKeys...) {
		if err := s.Prepare(ctx, key, chunkSize); err == nil {
			t.Errorf("Prepare(%q) succeeded, want an error", key)
		}
		if n, err := s.WriteChunk(ctx, key, chunk, bytes.NewReader(make([]byte, chunkSize))); err == nil {
			t.Errorf("WriteChunk(%q) wrote %d bytes, want an error", key, n)
		}
		if n, err := s.WritePiece(ctx, key, chunk, 0, bytes.NewReader(make([]byte, chunkSize))); err == nil {
			t.Errorf("WritePiece(%q) stored %d bytes, want an error", key, n)
		}
		if err := s.SealChunk(ctx, key, chunk, 0); err == nil {
			t.Errorf("SealChunk(%q) succeeded, want an error", key)
		}
		if crc, err := s.Join(ctx, key, chunkSize, []upload.JoinPart{{Key: "usr_suite/upl_part", TotalChunks: 1, Size: chunkSize}}); err == nil {
			t.Errorf("Join into %q returned CRC32C %08x, want an error", key, crc)
		}
		if crc, err := s.Join(ctx, "usr_suite/upl_join", chunkSize, []upload.JoinPart{{Key: key, TotalChunks: 1, Size: chunkSize}}); err == nil {
			t.Errorf("Join of %q returned CRC32C %08x, want an error", key, crc)
		}
		if objKey, err := s.Assemble(ctx, key, 1, chunkSize); err == nil {
			t.Errorf("Assemble(%q) returned object %q, want an error", key, objKey)
		}
		if obj, err := s.Open(ctx, key); !errors.Is(err, upload.ErrNotExist) {
			if err == nil {
				obj.Close()
			}
			t.Errorf("Open(%q): got error %v, want %v", key, err, upload.ErrNotExist)
		}
		if err := s.Discard(ctx, key); err == nil {
			t.Errorf("Discard(%q) succeeded, want an error", key)
		}
		if err := s.Delete(ctx, key); err == nil {
			t.Errorf("Delete(%q) succeeded, want an error", key)
		}
		if err := s.Put(ctx, key, bytes.NewReader([]byte("x")), "text/plain"); err == nil {
			t.Errorf("Put(%q) succeeded, want an error", key)
		}
		if ds, ok := s.(upload.DirectStore); ok {
			if d, err := ds.ChunkUploadURL(ctx, key, chunk, expires); err == nil {
				t.Errorf("ChunkUploadURL(%q) = %q, want an error", key, d.URL)
			}
			if info, err := ds.StatChunk(ctx, key, chunk); err == nil {
				t.Errorf("StatChunk(%q) = %+v, want an error", key, info)
			}
			if head, err := ds.ReadChunkHead(ctx, key, chunk, 10); err == nil {
				t.Errorf("ReadChunkHead(%q) = %d bytes, want an error", key, len(head))
			}
		}
		if l, ok := s.(upload.ObjectLinker); ok {
			if u, err := l.ObjectURL(ctx, key, "file.bin", expires); err == nil {
				t.Errorf("ObjectURL(%q) = %q, want an error", key, u)
			}
		}
	}
}

// testInvalidChunks checks that chunks outside the upload or with negative
// fields, and negative sizes or counts, are refused, and that the upload
// is unharmed by them.
func testInvalidChunks(t *testing.T, s upload.Store) {
	ctx := t.Context()
	data := randomBytes(t, 2*chunkSize)
	key := "usr_suite/upl_invalidchunks"
	if err := s.Prepare(ctx, "usr_suite/upl_negative", -1); err == nil {
		t.Errorf("Prepare of -1 bytes succeeded, want an error")
	}
	prepare(t, s, key, len(data))
	outside := []upload.ChunkRef{
		{Index: 1, Offset: chunkSize, Size: chunkSize + 1}, // past the end
		{Index: 2, Offset: 2 * chunkSize, Size: chunkSize}, // after the end
		{Index: 1, Offset: chunkSize, Size: 1<<63 - 1},     // offset+size overflows
	}
	negative := []upload.ChunkRef{
		{Index: -1, Offset: 0, Size: chunkSize},
		{Index: 0, Offset: -chunkSize, Size: chunkSize},
		{Index: 0, Offset: 0, Size: -1},
	}
	for _, chunk := range append(slices.Clone(outside), negative...) {
		// A body as long as the chunk (up to a bound), so that only the
		// chunk's fields can be refused.
		body := make([]byte, min(max(chunk.Size, 0), 2*chunkSize))
		if n, err := s.WriteChunk(ctx, key, chunk, bytes.NewReader(body)); err == nil {
			t.Errorf("WriteChunk(%+v) into an upload of %d bytes wrote %d bytes, want an error", chunk, len(data), n)
		}
	}
	if ds, ok := s.(upload.DirectStore); ok {
		expires := time.Now().Add(time.Hour)
		for _, chunk := range negative {
			if d, err := ds.ChunkUploadURL(ctx, key, chunk, expires); err == nil {
				t.Errorf("ChunkUploadURL(%+v) = %q, want an error", chunk, d.URL)
			}
			if info, err := ds.StatChunk(ctx, key, chunk); err == nil {
				t.Errorf("StatChunk(%+v) = %+v, want an error", chunk, info)
			}
			if head, err := ds.ReadChunkHead(ctx, key, chunk, 10); err == nil {
				t.Errorf("ReadChunkHead(%+v) = %d bytes, want an error", chunk, len(head))
			}
		}
	}
	for _, args := range []struct {
		totalChunks int
		size        int64
	}{{-1, int64(len(data))}, {2, -1}} {
		if objKey, err := s.Assemble(ctx, key, args.totalChunks, args.size); err == nil {
			t.Errorf("Assemble(%d chunks, %d bytes) returned object %q, want an error", args.totalChunks, args.size, objKey)
		}
	}
	writeChunks(t, s, key, data, []int{0, 1})
	checkObject(t, s, assemble(t, s, key, data), data)
}

// testLongBody sends a chunk a body longer than the chunk: the write must
// fail without storing more than the chunk (nothing spills into the next
// one), and the chunk can then be sent again.
func testLongBody(t *testing.T, s upload.Store) {
	data := randomBytes(t, 2*chunkSize)
	key := "usr_suite/upl_long"
	prepare(t, s, key, len(data))
	writeChunks(t, s, key, data, []int{1})
	long := bytes.Repeat([]byte{'x'}, 2*chunkSize)
	n, err := s.WriteChunk(t.Context(), key, chunkAt(0, len(data)), bytes.NewReader(long))
	if err == nil {
		t.Errorf("WriteChunk of a %d-byte body into a %d-byte chunk succeeded, want an error", len(long), chunkSize)
	}
	if n > chunkSize {
		t.Errorf("WriteChunk of a %d-byte body into a %d-byte chunk wrote %d bytes, want at most the chunk", len(long), chunkSize, n)
	}
	writeChunks(t, s, key, data, []int{0})
	checkObject(t, s, assemble(t, s, key, data), data)
}

// chunkCount is the number of chunkSize chunks in size bytes.
func chunkCount(size int) int {
	return (size + chunkSize - 1) / chunkSize
}

// chunkAt returns the ChunkRef of chunk i of an upload of size bytes; the
// last chunk may be short.
func chunkAt(i, size int) upload.ChunkRef {
	offset := i * chunkSize
	return upload.ChunkRef{Index: i, Offset: int64(offset), Size: int64(min(chunkSize, size-offset))}
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	// Seeded by the test's name so a failure reproduces with the same bytes.
	if _, err := rand.NewChaCha8(sha256.Sum256([]byte(t.Name()))).Read(b); err != nil {
		t.Fatalf("generating test data: %v", err)
	}
	return b
}

func prepare(t *testing.T, s upload.Store, key string, size int) {
	t.Helper()
	if err := s.Prepare(t.Context(), key, int64(size)); err != nil {
		t.Fatalf("Prepare(%q, %d): %v", key, size, err)
	}
}

func writeChunk(t *testing.T, s upload.Store, key string, chunk upload.ChunkRef, b []byte) {
	t.Helper()
	n, err := s.WriteChunk(t.Context(), key, chunk, bytes.NewReader(b))
	if err != nil {
		t.Fatalf("WriteChunk(%q, chunk %d): %v", key, chunk.Index, err)
	}
	if got, want := n, int64(len(b)); got != want {
		t.Fatalf("WriteChunk(%q, chunk %d) wrote %d bytes, want %d", key, chunk.Index, got, want)
	}
}

// writeChunks writes the chunks of data named by order, all at once.
func writeChunks(t *testing.T, s upload.Store, key string, data []byte, order []int) {
	t.Helper()
	errs := make([]error, len(order))
	var wg sync.WaitGroup
	for i, index := range order {
		chunk := chunkAt(index, len(data))
		b := data[chunk.Offset : chunk.Offset+chunk.Size]
		wg.Go(func() {
			n, err := s.WriteChunk(t.Context(), key, chunk, bytes.NewReader(b))
			if err == nil && n != chunk.Size {
				err = fmt.Errorf("wrote %d bytes, want %d", n, chunk.Size)
			}
			if err != nil {
				errs[i] = fmt.Errorf("WriteChunk(%q, chunk %d): %w", key, index, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

func assemble(t *testing.T, s upload.Store, key string, data []byte) string {
	t.Helper()
	return assembleSize(t, s, key, chunkCount(len(data)), len(data))
}

func assembleSize(t *testing.T, s upload.Store, key string, totalChunks, size int) string {
	t.Helper()
	objKey, err := s.Assemble(t.Context(), key, totalChunks, int64(size))
	if err != nil {
		t.Fatalf("Assemble(%q, %d, %d): %v", key, totalChunks, size, err)
	}
	return objKey
}

func readObject(t *testing.T, s upload.Store, objKey string) []byte {
	t.Helper()
	obj, err := s.Open(t.Context(), objKey)
	if err != nil {
		t.Fatalf("Open(%q): %v", objKey, err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		t.Fatalf("reading %q: %v", objKey, err)
	}
	if got, want := obj.Size(), int64(len(b)); got != want {
		t.Errorf("object %q: Size() = %d, want the %d bytes read", objKey, got, want)
	}
	return b
}

// checkObject compares digests rather than bytes so a failure prints
// something a person can read.
func checkObject(t *testing.T, s upload.Store, objKey string, want []byte) {
	t.Helper()
	got := readObject(t, s, objKey)
	if len(got) != len(want) {
		t.Errorf("object %q has %d bytes, want %d", objKey, len(got), len(want))
	}
	gotSum, wantSum := sha256.Sum256(got), sha256.Sum256(want)
	if gotSum != wantSum {
		t.Errorf("object %q has SHA-256 %s, want %s", objKey, hex.EncodeToString(gotSum[:]), hex.EncodeToString(wantSum[:]))
	}
}

// pausingReader yields first, closes begun, then waits for resume (or
// maxWait) before yielding rest.
type pausingReader struct {
	first, rest []byte
	begun       chan struct{}
	resume      <-chan struct{}
	maxWait     time.Duration

	paused   bool
	timedOut bool
}

func (r *pausingReader) Read(p []byte) (int, error) {
	if len(r.first) > 0 {
		n := copy(p, r.first)
		r.first = r.first[n:]
		return n, nil
	}
	if !r.paused {
		r.paused = true
		close(r.begun)
		select {
		case <-r.resume:
		case <-time.After(r.maxWait):
			r.timedOut = true
		}
	}
	if len(r.rest) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.rest)
	r.rest = r.rest[n:]
	return n, nil
}

// signalingReader closes begun on its first Read.
type signalingReader struct {
	r     io.Reader
	begun chan struct{}
	once  sync.Once
}

func (r *signalingReader) Read(p []byte) (int, error) {
	r.once.Do(func() { close(r.begun) })
	return r.r.Read(p)
}

type failingReader struct{ err error }

func (r *failingReader) Read([]byte) (int, error) { return 0, r.err }

// testPutReplacesWhole checks that Put stores an object readers can open,
// that a second Put replaces it, and that a Put whose body fails leaves
// the object it would have replaced as it was.
func testPutReplacesWhole(t *testing.T, s upload.Store) {
	ctx := t.Context()
	key := "usr_suite/med_put/thumb-320.jpg"
	first, second := randomBytes(t, 3*chunkSize+5), randomBytes(t, chunkSize)
	if err := s.Put(ctx, key, bytes.NewReader(first), "image/jpeg"); err != nil {
		t.Fatalf("Put: %v", err)
	}
	checkObject(t, s, key, first)
	if err := s.Put(ctx, key, bytes.NewReader(second), "image/jpeg"); err != nil {
		t.Fatalf("Put again: %v", err)
	}
	checkObject(t, s, key, second)
	broken := io.MultiReader(bytes.NewReader(first[:chunkSize]), &failingReader{err: errors.New("disk on fire")})
	if err := s.Put(ctx, key, broken, "image/jpeg"); err == nil {
		t.Fatal("Put with a failing body succeeded, want its error")
	}
	checkObject(t, s, key, second)
	if err := s.Delete(ctx, key); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if items := walk(t, s); len(items) != 0 {
		t.Errorf("after Delete the store holds %v, want nothing (a failed Put must not leave a temporary)", items)
	}
}

// testWalkSeesEverything checks that Walk reports an unfinished upload
// once, by its key, and every finished object, and stops reporting each
// once it is gone.
func testWalkSeesEverything(t *testing.T, s upload.Store) {
	ctx := t.Context()
	before := time.Now().Add(-time.Minute)
	data := randomBytes(t, 3*chunkSize)
	unfinished, finished, derived := "usr_suite/upl_walk1", "usr_suite/upl_walk2", "usr_suite/med_walk/poster.jpg"
	prepare(t, s, unfinished, len(data))
	writeChunks(t, s, unfinished, data, []int{0, 2})
	prepare(t, s, finished, len(data))
	writeChunks(t, s, finished, data, []int{0, 1, 2})
	objKey := assemble(t, s, finished, data)
	if err := s.Put(ctx, derived, bytes.NewReader(data[:10]), "image/jpeg"); err != nil {
		t.Fatalf("Put: %v", err)
	}
	got := walk(t, s)
	want := []string{"object " + derived, "object " + objKey, "upload " + unfinished}
	if !slices.Equal(names(got), want) {
		t.Fatalf("Walk reported %v, want %v", names(got), want)
	}
	for _, it := range got {
		if it.ModTime.Before(before) || it.ModTime.After(time.Now().Add(time.Minute)) {
			t.Errorf("Walk reported %s modified at %v, want about now", it.Key, it.ModTime)
		}
	}
	if err := s.Discard(ctx, unfinished); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, derived); err != nil {
		t.Fatal(err)
	}
	if got, want := names(walk(t, s)), []string{"object " + objKey}; !slices.Equal(got, want) {
		t.Errorf("after Discard and Delete, Walk reported %v, want %v", got, want)
	}
	stop := errors.New("enough")
	calls := 0
	err := s.Walk(ctx, func(upload.StoredItem) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("Walk with fn failing: %d calls, error %v; want 1 call and fn's error", calls, err)
	}
}

func walk(t *testing.T, s upload.Store) []upload.StoredItem {
	t.Helper()
	var items []upload.StoredItem
	if err := s.Walk(t.Context(), func(it upload.StoredItem) error {
		items = append(items, it)
		return nil
	}); err != nil {
		t.Fatalf("Walk: %v", err)
	}
	return items
}

// names describes walked items, sorted, as "upload KEY" or "object KEY".
func names(items []upload.StoredItem) []string {
	out := make([]string, len(items))
	for i, it := range items {
		kind := "object "
		if it.Upload {
			kind = "upload "
		}
		out[i] = kind + it.Key
	}
	slices.Sort(out)
	return out
}
