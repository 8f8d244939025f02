package localfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spoolhq/spool/internal/storage/storagetest"
	"github.com/spoolhq/spool/internal/upload"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) upload.Store { return newStore(t, Options{}) })
}

func TestConformanceSyncWrites(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) upload.Store { return newStore(t, Options{SyncWrites: true}) })
}

func newStore(t *testing.T, opts Options) *Store {
	t.Helper()
	s, err := NewWithOptions(t.TempDir(), opts)
	if err != nil {
		t.Fatalf("NewWithOptions: %v", err)
	}
	t.Cleanup(func() {
		// Every lock taken must have been released and forgotten.
		if got := len(s.uploads.locks) + len(s.chunks.locks); got != 0 {
			t.Errorf("%d locks left in the lock tables, want 0", got)
		}
	})
	return s
}

func TestKeys(t *testing.T) {
	tests := []struct {
		key   string
		valid bool
	}{
		{"usr_01J9ZQ/upl_01J9ZR", true},
		{"upl_01J9ZR", true},
		{"usr_a/b/c.bin", true},
		{"", false},
		{".", false},
		{"/etc/passwd", false},
		{"../escape", false},
		{"usr/../../escape", false},
		{"usr/..", false},
		{"a..b", false},
		{`usr\upl`, false},
		{"usr/upl\x00", false},
		{"usr//upl", false},
		{"usr/./upl", false},
		{"usr/upl/", false},
	}
	root := t.TempDir()
	s, err := New(filepath.Join(root, "store"))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx := t.Context()
	for _, tt := range tests {
		err := s.Prepare(ctx, tt.key, 10)
		if got, want := err == nil, tt.valid; got != want {
			t.Errorf("Prepare(%q): got error %v, want valid=%v", tt.key, err, want)
		}
		if tt.valid {
			continue
		}
		if _, err := s.WriteChunk(ctx, tt.key, upload.ChunkRef{Size: 1}, strings.NewReader("x")); err == nil {
			t.Errorf("WriteChunk(%q) succeeded, want an error", tt.key)
		}
		if _, err := s.Assemble(ctx, tt.key, 1, 10); err == nil {
			t.Errorf("Assemble(%q) succeeded, want an error", tt.key)
		}
		if _, err := s.Open(ctx, tt.key); !errors.Is(err, upload.ErrNotExist) {
			t.Errorf("Open(%q): got error %v, want %v", tt.key, err, upload.ErrNotExist)
		}
		if err := s.Discard(ctx, tt.key); err == nil {
			t.Errorf("Discard(%q) succeeded, want an error", tt.key)
		}
		if err := s.Delete(ctx, tt.key); err == nil {
			t.Errorf("Delete(%q) succeeded, want an error", tt.key)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "escape")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a file appeared outside the store: Stat error %v, want %v", err, os.ErrNotExist)
	}
}

func TestAssembleIsRename(t *testing.T) {
	s := newStore(t, Options{})
	ctx := t.Context()
	key := "usr_a/upl_rename"
	if err := s.Prepare(ctx, key, 4); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	writeChunk(t, s, key, upload.ChunkRef{Size: 4}, "abcd")
	staging, err := os.Stat(s.stagingPath(key))
	if err != nil {
		t.Fatalf("Stat staging file: %v", err)
	}
	objKey, err := s.Assemble(ctx, key, 1, 4)
	if err != nil {
		t.Fatalf("Assemble: %v", err)
	}
	object, err := os.Stat(s.objectPath(objKey))
	if err != nil {
		t.Fatalf("Stat object: %v", err)
	}
	if !os.SameFile(staging, object) {
		t.Errorf("object is not the staging file renamed: %v and %v are different files", staging, object)
	}
	if _, err := os.Stat(s.stagingPath(key)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("staging file after Assemble: Stat error %v, want %v", err, os.ErrNotExist)
	}
}

func TestLongBodyCannotClobberNextChunk(t *testing.T) {
	// SyncWrites writes through writebackWriter, which must stop at the
	// chunk's end all the same.
	for _, opts := range []Options{{}, {SyncWrites: true}} {
		t.Run(fmt.Sprintf("SyncWrites=%v", opts.SyncWrites), func(t *testing.T) { testLongBodyCannotClobberNextChunk(t, opts) })
	}
}

func testLongBodyCannotClobberNextChunk(t *testing.T, opts Options) {
	s := newStore(t, opts)
	ctx := t.Context()
	key := "usr_a/upl_long"
	if err := s.Prepare(ctx, key, 8); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	writeChunk(t, s, key, upload.ChunkRef{Index: 1, Offset: 4, Size: 4}, "BBBB")

	n, err := s.WriteChunk(ctx, key, upload.ChunkRef{Index: 0, Offset: 0, Size: 4}, strings.NewReader("aaaaaaa"))
	if !errors.Is(err, errChunkOverflow) {
		t.Errorf("WriteChunk of a body longer than its chunk: got error %v, want %v", err, errChunkOverflow)
	}
	if got, want := n, int64(4); got != want {
		t.Errorf("WriteChunk of a body longer than its chunk wrote %d bytes, want %d", got, want)
	}
	if got, want := assembleAndRead(t, s, key, 2, 8), "aaaaBBBB"; got != want {
		t.Errorf("upload holds %q, want %q", got, want)
	}
}

// TestSyncWritesInManyWrites writes chunks of several buffers each with
// SyncWrites, whose writer keeps its own offset: every write must land
// after the one before, inside its chunk.
func TestSyncWritesInManyWrites(t *testing.T) {
	s := newStore(t, Options{SyncWrites: true, WriteSize: minWriteSize})
	key := "usr_a/upl_many"
	const chunkSize = 5*minWriteSize + 123
	if err := s.Prepare(t.Context(), key, 2*chunkSize); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	a := strings.Repeat("0123456789abcdef", chunkSize/16+1)[:chunkSize]
	b := strings.ToUpper(a)
	writeChunk(t, s, key, upload.ChunkRef{Index: 1, Offset: chunkSize, Size: chunkSize}, b)
	writeChunk(t, s, key, upload.ChunkRef{Index: 0, Offset: 0, Size: chunkSize}, a)
	if got := assembleAndRead(t, s, key, 2, 2*chunkSize); got != a+b {
		t.Errorf("upload of %d bytes differs from what was written (first differing byte %d)", len(got), firstDiff(got, a+b))
	}
}

// TestWritebackInStrides writes 5 MiB and a bit in 512 KiB writes: the
// writeback of each 2 MiB must start once, in order, right after it is
// written, and the tail is left to the chunk's fdatasync.
func TestWritebackInStrides(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "chunk")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const base = 1000
	var started [][2]int64
	w := &writebackWriter{w: f, off: base, from: base, start: func(off, n int64) { started = append(started, [2]int64{off, n}) }}
	data := bytes.Repeat([]byte("spool"), (5<<20+100)/5)
	for p := data; len(p) > 0; {
		n := min(len(p), LargeWrite)
		if _, err := w.Write(p[:n]); err != nil {
			t.Fatalf("Write: %v", err)
		}
		p = p[n:]
		if written := int64(len(data) - len(p)); written == 2<<20 && len(started) != 1 {
			t.Fatalf("after 2 MiB written, writeback started for %v, want the first 2 MiB", started)
		}
	}
	want := [][2]int64{{base, 2 << 20}, {base + 2<<20, 2 << 20}}
	if fmt.Sprint(started) != fmt.Sprint(want) {
		t.Errorf("writeback started for (offset, length) %v, want %v", started, want)
	}
	got := make([]byte, len(data))
	if _, err := f.ReadAt(got, base); err != nil {
		t.Fatalf("ReadAt: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Errorf("the file differs from what was written from byte %d on", firstDiff(string(got), string(data)))
	}
}

// firstDiff is the index of the first byte where a and b differ.
func firstDiff(a, b string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestChunkOutsideUpload(t *testing.T) {
	s := newStore(t, Options{})
	ctx := t.Context()
	key := "usr_a/upl_outside"
	if err := s.Prepare(ctx, key, 8); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	for _, chunk := range []upload.ChunkRef{
		{Index: 1, Offset: 4, Size: 5},
		{Index: 3, Offset: 12, Size: 4},
		{Index: 0, Offset: -4, Size: 4},
		{Index: 1, Offset: 4, Size: 1<<63 - 1},
	} {
		if n, err := s.WriteChunk(ctx, key, chunk, bytes.NewReader(make([]byte, 5))); err == nil {
			t.Errorf("WriteChunk(%+v) wrote %d bytes, want an error", chunk, n)
		}
	}
	info, err := os.Stat(s.stagingPath(key))
	if err != nil {
		t.Fatalf("Stat staging file: %v", err)
	}
	if got, want := info.Size(), int64(8); got != want {
		t.Errorf("staging file has %d bytes, want %d", got, want)
	}
}

func TestWriteChunkNotPrepared(t *testing.T) {
	s := newStore(t, Options{})
	_, err := s.WriteChunk(t.Context(), "usr_a/upl_none", upload.ChunkRef{Size: 1}, strings.NewReader("x"))
	if !errors.Is(err, upload.ErrNotExist) {
		t.Errorf("WriteChunk of an upload never prepared: got error %v, want %v", err, upload.ErrNotExist)
	}
}

func TestAssembleWrongSize(t *testing.T) {
	s := newStore(t, Options{})
	ctx := t.Context()
	key := "usr_a/upl_size"
	if err := s.Prepare(ctx, key, 4); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	writeChunk(t, s, key, upload.ChunkRef{Size: 4}, "abcd")
	if objKey, err := s.Assemble(ctx, key, 1, 5); err == nil {
		t.Errorf("Assemble with the wrong size returned object %q, want an error", objKey)
	}
	if got, want := assembleAndRead(t, s, key, 1, 4), "abcd"; got != want {
		t.Errorf("upload holds %q, want %q", got, want)
	}
	// Now through the already-assembled path.
	if objKey, err := s.Assemble(ctx, key, 1, 5); err == nil {
		t.Errorf("Assemble again with the wrong size returned object %q, want an error", objKey)
	}
}

func TestPrepareAgainKeepsBytes(t *testing.T) {
	s := newStore(t, Options{})
	ctx := t.Context()
	key := "usr_a/upl_again"
	if err := s.Prepare(ctx, key, 4); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	writeChunk(t, s, key, upload.ChunkRef{Size: 4}, "abcd")
	if err := s.Prepare(ctx, key, 4); err != nil {
		t.Fatalf("Prepare again: %v", err)
	}
	if got, want := assembleAndRead(t, s, key, 1, 4), "abcd"; got != want {
		t.Errorf("upload holds %q, want %q", got, want)
	}
}

// TestAssembleWaitsForWrites checks that a chunk still being written when
// Assemble is called lands before the rename, not in the finished object
// afterwards.
func TestAssembleWaitsForWrites(t *testing.T) {
	s := newStore(t, Options{})
	ctx := t.Context()
	key := "usr_a/upl_wait"
	if err := s.Prepare(ctx, key, 4); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	body, bodyW := io.Pipe()
	writeDone := make(chan error, 1)
	go func() {
		_, err := s.WriteChunk(ctx, key, upload.ChunkRef{Size: 4}, body)
		writeDone <- err
	}()
	if _, err := bodyW.Write([]byte("ab")); err != nil { // returns once WriteChunk reads it
		t.Fatalf("writing body: %v", err)
	}

	assembleDone := make(chan error, 1)
	go func() {
		_, err := s.Assemble(ctx, key, 1, 4)
		assembleDone <- err
	}()
	select {
	case err := <-assembleDone:
		t.Fatalf("Assemble returned (error %v) while a chunk was still being written", err)
	case <-time.After(100 * time.Millisecond):
	}
	if _, err := bodyW.Write([]byte("cd")); err != nil {
		t.Fatalf("writing body: %v", err)
	}
	bodyW.Close()
	if err := <-writeDone; err != nil {
		t.Fatalf("WriteChunk: %v", err)
	}
	if err := <-assembleDone; err != nil {
		t.Fatalf("Assemble: %v", err)
	}
	obj, err := s.Open(ctx, key)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer obj.Close()
	got, err := io.ReadAll(obj)
	if err != nil {
		t.Fatalf("reading object: %v", err)
	}
	if want := "abcd"; string(got) != want {
		t.Errorf("object holds %q, want %q", got, want)
	}
}

func writeChunk(t *testing.T, s *Store, key string, chunk upload.ChunkRef, body string) {
	t.Helper()
	n, err := s.WriteChunk(t.Context(), key, chunk, strings.NewReader(body))
	if err != nil {
		t.Fatalf("WriteChunk(%q, %+v): %v", key, chunk, err)
	}
	if got, want := n, int64(len(body)); got != want {
		t.Fatalf("WriteChunk(%q, %+v) wrote %d bytes, want %d", key, chunk, got, want)
	}
}

func assembleAndRead(t *testing.T, s *Store, key string, totalChunks int, size int64) string {
	t.Helper()
	objKey, err := s.Assemble(t.Context(), key, totalChunks, size)
	if err != nil {
		t.Fatalf("Assemble(%q): %v", key, err)
	}
	obj, err := s.Open(t.Context(), objKey)
	if err != nil {
		t.Fatalf("Open(%q): %v", objKey, err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		t.Fatalf("reading %q: %v", objKey, err)
	}
	return string(b)
}

// Two stores on one directory are two replicas sharing a disk: their
// locks do not see each other, so both may assemble the same upload at
// once. Each must answer with the one object, never an error.
func TestAssembleRacesAnotherProcess(t *testing.T) {
	dir := t.TempDir()
	var stores [2]*Store
	for i := range stores {
		s, err := NewWithOptions(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		stores[i] = s
	}
	ctx := t.Context()
	for round := range 200 {
		key := "usr_a/upl_race" + strconv.Itoa(round)
		if err := stores[0].Prepare(ctx, key, 4); err != nil {
			t.Fatal(err)
		}
		writeChunk(t, stores[0], key, upload.ChunkRef{Size: 4}, "abcd")
		var wg sync.WaitGroup
		var errs [2]error
		for i, s := range stores {
			wg.Go(func() { _, errs[i] = s.Assemble(ctx, key, 1, 4) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d: Assemble on store %d: %v", round, i, err)
			}
		}
	}
}
