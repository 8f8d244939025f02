package gcs

// The emulator keeps a resumable session's bytes and answers its chunks
// with 308 and Range as GCS does, but not its status queries: gcstest
// answers those in front of it (see its package comment). It also ignores
// the session's declared size and Origin, so TestSessionStatus checks the
// reading of GCS's documented answers against a server that gives them,
// and TestResumableSession checks what the session was opened with.

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/spoolhq/spool/internal/storage/gcs/gcstest"
	"github.com/spoolhq/spool/internal/upload"
)

func wantOffset(t *testing.T, s *Store, sessionURL string, size, wantPersisted int64, wantDone bool) {
	t.Helper()
	got, done, err := s.ResumableOffset(t.Context(), sessionURL, size)
	if err != nil || got != wantPersisted || done != wantDone {
		t.Fatalf("ResumableOffset = %d, %v, %v; want %d, %v, nil", got, done, err, wantPersisted, wantDone)
	}
}

// A session takes part of the chunk, tells how much it kept, takes the
// rest from there and makes the part object that StatChunk and Assemble
// see, byte for byte.
func TestResumableSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	const key = "single/resumed"
	data := patternBytes(3<<18 + 1000) // 768 KiB and a bit
	size := int64(len(data))
	prepare(t, e.store, key, len(data))
	chunk := upload.ChunkRef{Index: 0, Size: size}

	const origin = "https://app.example"
	sessionURL, err := e.store.StartResumable(t.Context(), key, chunk, origin)
	if err != nil {
		t.Fatalf("StartResumable: %v", err)
	}
	if got, ok := e.srv.SessionOrigin(sessionURL); !ok || got != origin {
		t.Errorf("session opened with Origin %q (known: %v), want %q", got, ok, origin)
	}
	wantOffset(t, e.store, sessionURL, size, 0, false)

	const first = 2 << 18 // a multiple of 256 KiB, as GCS wants of all but the last piece
	if got := gcstest.PutToSession(t, sessionURL, data[:first], 0, "*"); got != http.StatusPermanentRedirect {
		t.Fatalf("first piece: HTTP %d, want 308", got)
	}
	if _, err := e.store.StatChunk(t.Context(), key, chunk); !errors.Is(err, upload.ErrNotExist) {
		t.Fatalf("StatChunk of an unfinished session: %v, want ErrNotExist", err)
	}
	wantOffset(t, e.store, sessionURL, size, first, false)
	wantOffset(t, e.store, sessionURL, size, first, false) // asking changes nothing

	if got := gcstest.PutToSession(t, sessionURL, data[first:], first, fmt.Sprint(size)); got != http.StatusOK && got != http.StatusCreated {
		t.Fatalf("the rest: HTTP %d, want 200 or 201", got)
	}
	wantOffset(t, e.store, sessionURL, size, size, true)
	info, err := e.store.StatChunk(t.Context(), key, chunk)
	want := crc32.Checksum(data, castagnoli)
	if err != nil || info.Size != size || info.CRC32C != want {
		t.Fatalf("StatChunk = %+v, %v; want %d bytes, CRC32C %08x", info, err, size, want)
	}
	if got := readAll(t, e.store, assemble(t, e.store, key, 1, len(data))); !bytes.Equal(got, data) {
		t.Errorf("assembled object: %d bytes, differing from the %d sent", len(got), len(data))
	}

	// Without an origin the session is opened without one.
	prepare(t, e.store, "single/cli", 10)
	plain, err := e.store.StartResumable(t.Context(), "single/cli", upload.ChunkRef{Size: 10}, "")
	if err != nil {
		t.Fatalf("StartResumable without origin: %v", err)
	}
	if got, ok := e.srv.SessionOrigin(plain); !ok || got != "" {
		t.Errorf("session opened with Origin %q (known: %v), want none", got, ok)
	}
}

func TestResumableRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	ctx := t.Context()
	if _, err := e.store.StartResumable(ctx, "never/prepared", upload.ChunkRef{Size: 10}, ""); !errors.Is(err, upload.ErrNotExist) {
		t.Errorf("StartResumable of an upload never prepared: %v, want ErrNotExist", err)
	}
	prepare(t, e.store, "small", 10)
	if _, err := e.store.StartResumable(ctx, "small", upload.ChunkRef{Size: 11}, ""); err == nil {
		t.Error("StartResumable of a chunk past the upload's size: no error")
	}
	if _, err := e.store.StartResumable(ctx, "../escape", upload.ChunkRef{Size: 1}, ""); err == nil {
		t.Error("StartResumable of an invalid key: no error")
	}
	if err := e.store.Discard(ctx, "small"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.StartResumable(ctx, "small", upload.ChunkRef{Size: 10}, ""); !errors.Is(err, upload.ErrNotExist) {
		t.Errorf("StartResumable of a discarded upload: %v, want ErrNotExist", err)
	}

	// A session the emulator does not know is gone.
	gone := e.srv.URL + "/upload/storage/v1/b/" + e.bucket + "/o?uploadType=resumable&name=x&upload_id=nosuch"
	if _, _, err := e.store.ResumableOffset(ctx, gone, 10); !errors.Is(err, upload.ErrNotExist) {
		t.Errorf("ResumableOffset of an unknown session: %v, want ErrNotExist", err)
	}
	for _, bad := range []string{"", "not a url", "ftp://host/x", "/relative"} {
		if _, _, err := e.store.ResumableOffset(ctx, bad, 10); err == nil {
			t.Errorf("ResumableOffset(%q): no error", bad)
		}
	}
}

// Without Options.Sessions a Store opens sessions as the client library
// would: at the emulator of STORAGE_EMULATOR_HOST, without credentials.
func TestDefaultSessionsEmulator(t *testing.T) {
	e := newEnv(t, Options{})
	t.Setenv("STORAGE_EMULATOR_HOST", strings.TrimPrefix(e.srv.URL, "http://"))
	s := New(e.client, e.bucket, testPrefix, Options{SignedURLs: testSigning(t)})
	prepare(t, s, "env/key", 10)
	sessionURL, err := s.StartResumable(t.Context(), "env/key", upload.ChunkRef{Size: 10}, "")
	if err != nil {
		t.Fatalf("StartResumable: %v", err)
	}
	if !strings.HasPrefix(sessionURL, e.srv.URL+"/") {
		t.Errorf("session URL %s is not at the emulator %s", sessionURL, e.srv.URL)
	}
}

// TestSessionStatus reads the answers GCS documents for a status query
// (https://cloud.google.com/storage/docs/performing-resumable-uploads),
// from a server that gives them: the emulator gives none of them as GCS
// does. It also checks the query itself: a bodiless PUT asking about the
// whole size, without spool's credentials.
func TestSessionStatus(t *testing.T) {
	t.Parallel()
	const size = 1000
	store := newEnv(t, Options{}).store // its emulator plays no part
	tests := []struct {
		name          string
		status        int
		rangeHeader   string
		wantPersisted int64
		wantDone      bool
		wantGone      bool
		wantErr       bool
	}{
		{name: "nothing kept", status: 308, wantPersisted: 0},
		{name: "some kept", status: 308, rangeHeader: "bytes=0-511", wantPersisted: 512},
		{name: "all but the last byte", status: 308, rangeHeader: "bytes=0-998", wantPersisted: 999},
		{name: "finished 200", status: 200, wantPersisted: size, wantDone: true},
		{name: "finished 201", status: 201, wantPersisted: size, wantDone: true},
		{name: "gone 404", status: 404, wantGone: true},
		{name: "gone 410", status: 410, wantGone: true},
		{name: "cancelled 499", status: 499, wantGone: true},
		{name: "range past the size", status: 308, rangeHeader: "bytes=0-1000", wantErr: true},
		{name: "range not from 0", status: 308, rangeHeader: "bytes=10-99", wantErr: true},
		{name: "range malformed", status: 308, rangeHeader: "bytes=0-x", wantErr: true},
		{name: "GCS failing", status: 503, wantErr: true},
		{name: "refused", status: 400, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var bad []string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				if r.Method != http.MethodPut || len(body) != 0 || r.Header.Get("Content-Range") != "bytes */1000" || r.Header.Get("Authorization") != "" {
					bad = append(bad, fmt.Sprintf("%s %d bytes Content-Range %q Authorization %q", r.Method, len(body), r.Header.Get("Content-Range"), r.Header.Get("Authorization")))
				}
				if tt.rangeHeader != "" {
					w.Header().Set("Range", tt.rangeHeader)
				}
				w.WriteHeader(tt.status)
			}))
			defer srv.Close()
			got, done, err := store.ResumableOffset(t.Context(), srv.URL+"/upload?upload_id=abc", size)
			if len(bad) > 0 {
				t.Errorf("status query: got %v, want PUT with no body, Content-Range bytes */1000, no Authorization", bad)
			}
			switch {
			case tt.wantGone:
				if !errors.Is(err, upload.ErrNotExist) {
					t.Errorf("got %d, %v, %v; want ErrNotExist", got, done, err)
				}
			case tt.wantErr:
				if err == nil || errors.Is(err, upload.ErrNotExist) {
					t.Errorf("got %d, %v, %v; want an error other than ErrNotExist", got, done, err)
				}
			case err != nil || got != tt.wantPersisted || done != tt.wantDone:
				t.Errorf("got %d, %v, %v; want %d, %v, nil", got, done, err, tt.wantPersisted, tt.wantDone)
			}
		})
	}
}

// A failed status query does not quote the session's URL: it is a
// capability to write the object.
func TestSessionStatusErrorHidesURL(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close() // nothing listens there now
	_, _, err := newEnv(t, Options{}).store.ResumableOffset(t.Context(), srv.URL+"/upload?upload_id=SECRET", 10)
	if err == nil || strings.Contains(err.Error(), "SECRET") {
		t.Errorf("status query to a closed server: %v; want an error without the session URL", err)
	}
}
