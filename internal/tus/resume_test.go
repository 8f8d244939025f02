package tus_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spoolhq/spool/internal/app"
	"github.com/spoolhq/spool/internal/eventually"
	"github.com/spoolhq/spool/internal/ratelimit"
	"github.com/spoolhq/spool/internal/upload"
)

// rawPatch opens a connection and sends a PATCH declaring the rest of
// the upload (declared bytes) but only sent; it returns the connection
// for the test to close or read from.
func (s *server) rawPatch(url, token string, offset, declared int, sent []byte) net.Conn {
	s.t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		s.t.Fatal(err)
	}
	path := strings.TrimPrefix(url, s.url)
	fmt.Fprintf(conn, "PATCH %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nTus-Resumable: 1.0.0\r\n"+
		"Content-Type: application/offset+octet-stream\r\nUpload-Offset: %d\r\nContent-Length: %d\r\n\r\n",
		path, strings.TrimPrefix(s.url, "http://"), token, offset, declared)
	if _, err := conn.Write(sent); err != nil {
		s.t.Fatal(err)
	}
	return conn
}

// readStatus reads the status of the answer on conn.
func readStatus(t *testing.T, conn net.Conn) int {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second)) // a hang guard
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// A PATCH whose connection breaks keeps every byte that arrived, also
// inside a chunk, so the offset a resuming client is told is exactly what
// is stored, and the file completes byte-exact from there.
func TestBrokenPatchKeepsItsBytes(t *testing.T) {
	t.Parallel()
	s := start(t, nil)
	tok := s.token("alice")
	data, meta := video("clip.mp4", 12*mib, 11)
	url := s.create(tok, len(data), meta)
	at := 0
	for _, sent := range []int{7*mib + 333, 2*mib + 1} { // ends inside chunk 1, then inside chunk 1 again
		conn := s.rawPatch(url, tok, at, len(data)-at, data[at:at+sent])
		// The body ends early (the client's half of the connection
		// closes); the answer says the server is done with it.
		if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		status := readStatus(t, conn)
		conn.Close()
		if status < 400 {
			t.Errorf("PATCH cut short: got %d, want an error", status)
		}
		at += sent
		if got := s.offset(url, tok); got != at {
			t.Fatalf("offset after a PATCH cut short: %d, want %d (every byte sent)", got, at)
		}
	}
	a := s.patch(url, tok, at, data[at:])
	if a.status != http.StatusNoContent || a.header.Get("Spool-Media-Id") == "" {
		t.Fatalf("PATCH of the rest from %d: %v, Spool-Media-Id %q", at, a, a.header.Get("Spool-Media-Id"))
	}
	s.download(s.media(tok, a.header.Get("Spool-Media-Id")), data)
}

// A PATCH body that stalls is cut off after the body idle timeout; what
// arrived before is kept and the upload goes on from there.
func TestStalledPatchIsCutAndKeepsItsBytes(t *testing.T) {
	t.Parallel()
	s := start(t, func(c *app.Config) { c.Limits.BodyIdleTimeout = 300 * time.Millisecond })
	tok := s.token("alice")
	data, meta := video("clip.mp4", 6*mib, 12)
	url := s.create(tok, len(data), meta)
	sent := 3*mib + 17
	conn := s.rawPatch(url, tok, 0, len(data), data[:sent])
	defer conn.Close()
	if status := readStatus(t, conn); status < 400 {
		t.Errorf("stalled PATCH: got %d, want an error (the body was cut)", status)
	}
	if got := s.offset(url, tok); got != sent {
		t.Fatalf("offset after the stalled PATCH: %d, want %d", got, sent)
	}
	a := s.patch(url, tok, sent, data[sent:])
	if a.status != http.StatusNoContent || a.header.Get("Spool-Media-Id") == "" {
		t.Fatalf("PATCH of the rest: %v", a)
	}
	s.download(s.media(tok, a.header.Get("Spool-Media-Id")), data)
}

// Partial uploads sent in parallel, joined by a final POST (tus
// concatenation, as tus-js-client's parallelUploads does).
func TestConcatenation(t *testing.T) {
	t.Parallel()
	s := start(t, nil)
	alice, bob := s.token("alice"), s.token("bob")
	data, meta := video("clip.mp4", 17*mib+5, 13)
	bounds := []int{0, 4*mib + 1, 9 * mib, 13*mib + 77, len(data)}
	parts := make([]string, 4)
	var wg sync.WaitGroup
	for i := range parts {
		parts[i] = s.create(alice, bounds[i+1]-bounds[i], "", "Upload-Concat", "partial")
		wg.Go(func() {
			piece := data[bounds[i]:bounds[i+1]]
			half := len(piece) / 2
			for _, r := range [][2]int{{0, half}, {half, len(piece)}} {
				if a := s.patch(parts[i], alice, r[0], piece[r[0]:r[1]]); a.status != http.StatusNoContent {
					t.Errorf("part %d PATCH %d..%d: %v", i, r[0], r[1], a)
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	h := s.do(http.MethodHead, parts[0], alice, nil)
	if h.header.Get("Upload-Concat") != "partial" || h.header.Get("Spool-Media-Id") != "" {
		t.Errorf("HEAD of a finished part: Upload-Concat %q, Spool-Media-Id %q; want partial, none",
			h.header.Get("Upload-Concat"), h.header.Get("Spool-Media-Id"))
	}

	// Refusals first: bob cannot join alice's parts; a final needs a type.
	final := "final;" + strings.Join(parts, " ")
	wantError(t, "bob joins alice's parts", s.do(http.MethodPost, "/files/", bob, nil,
		"Upload-Concat", final, "Upload-Metadata", meta), 404, "NOT_FOUND")
	wantError(t, "final without filetype", s.do(http.MethodPost, "/files/", alice, nil,
		"Upload-Concat", final, "Upload-Metadata", metadata("filename", "clip.mp4")), 400, "BAD_USER_INPUT")

	// Relative part URLs work too.
	relative := make([]string, len(parts))
	for i, p := range parts {
		relative[i] = strings.TrimPrefix(p, s.url)
	}
	a := s.do(http.MethodPost, "/files/", alice, nil, "Upload-Concat", "final;"+strings.Join(relative, " "), "Upload-Metadata", meta)
	if a.status != http.StatusCreated || a.header.Get("Spool-Media-Id") == "" {
		t.Fatalf("final POST: %v, Spool-Media-Id %q", a, a.header.Get("Spool-Media-Id"))
	}
	finalURL := a.header.Get("Location")
	if got := s.offset(finalURL, alice); got != len(data) {
		t.Errorf("HEAD of the final upload: offset %d, want %d", got, len(data))
	}
	s.download(s.media(alice, a.header.Get("Spool-Media-Id")), data)
	// The parts are gone once joined.
	wantError(t, "HEAD of a joined part", s.do(http.MethodHead, parts[0], alice, nil), 404, "")

	// A part that is not finished cannot be joined.
	unfinished := s.create(alice, 2*mib, "", "Upload-Concat", "partial")
	if a := s.patch(unfinished, alice, 0, data[:mib]); a.status != http.StatusNoContent {
		t.Fatalf("PATCH of a part: %v", a)
	}
	wantError(t, "final of an unfinished part", s.do(http.MethodPost, "/files/", alice, nil,
		"Upload-Concat", "final;"+unfinished, "Upload-Metadata", meta), 400, "ERR_UPLOAD_NOT_FINISHED")
}

// A second request for an upload interrupts a PATCH running on the same
// server (tusd's lock, for a client that resumed before the server saw
// its first request break); the interrupted PATCH keeps what it stored,
// and HEAD, answered once it has, says exactly that.
func TestPatchInterruptedByHead(t *testing.T) {
	t.Parallel()
	s := start(t, nil)
	tok := s.token("alice")
	data, meta := video("clip.mp4", 8*mib, 14)
	url := s.create(tok, len(data), meta)
	sent := 6*mib + 5
	conn := s.rawPatch(url, tok, 0, len(data), data[:sent]) // and then nothing
	defer conn.Close()
	// GraphQL (which takes no tus lock) shows chunk 0 recorded: the PATCH
	// is running, its body stalled after the bytes sent.
	eventually.Holds(t, "the PATCH to fill chunk 0", func() bool {
		var out struct {
			Upload struct{ Progress struct{ UploadedBytes int } }
		}
		s.gql(tok, `query($id: ID!) { upload(id: $id) { progress { uploadedBytes } } }`, map[string]any{"id": idOf(url)}, &out)
		return out.Upload.Progress.UploadedBytes >= 5*mib
	})
	at := s.offset(url, tok) // interrupts the PATCH, and waits for it to end
	if at < 5*mib || at > sent {
		t.Fatalf("offset after the interrupting HEAD: %d, want %d to %d", at, 5*mib, sent)
	}
	if status := readStatus(t, conn); status != http.StatusBadRequest {
		t.Errorf("interrupted PATCH: got %d, want 400 (ERR_UPLOAD_INTERRUPTED)", status)
	}
	if again := s.offset(url, tok); again != at || at > sent {
		t.Fatalf("offset %d after the interrupted PATCH answered, %d before; want the same, at most %d", again, at, sent)
	}
	a := s.patch(url, tok, at, data[at:])
	if a.status != http.StatusNoContent || a.header.Get("Spool-Media-Id") == "" {
		t.Fatalf("PATCH of the rest from %d: %v", at, a)
	}
	s.download(s.media(tok, a.header.Get("Spool-Media-Id")), data)
}

// Every tus request but OPTIONS counts against the user's data-plane
// budget.
func TestRequestBudget(t *testing.T) {
	t.Parallel()
	s := start(t, func(c *app.Config) {
		c.Limits.DataPlane = ratelimit.Rate{Events: 1, Per: time.Hour, Burst: 2}
	})
	tok := s.token("alice")
	url := s.create(tok, 2*mib, metadata("filename", "a.mp4", "filetype", "video/mp4"))
	s.offset(url, tok)
	a := s.patch(url, tok, 0, []byte("x"))
	wantError(t, "third request", a, http.StatusTooManyRequests, "RATE_LIMITED")
	if secs, err := strconv.Atoi(a.header.Get("Retry-After")); err != nil || secs < 1 {
		t.Errorf("Retry-After %q, want whole seconds", a.header.Get("Retry-After"))
	}
	if a := s.do(http.MethodOptions, "/files/", "", nil); a.status != http.StatusNoContent {
		t.Errorf("OPTIONS over the budget: %v, want 204", a)
	}
	// Another user has a budget of their own.
	s.create(s.token("bob"), 2*mib, metadata("filename", "a.mp4", "filetype", "video/mp4"))
}

// An upload whose bytes are all stored but which the last PATCH did not
// complete (its completion failed) completes on the client's next HEAD:
// a tus client takes an upload whose offset is its length as done.
func TestHeadCompletesAFullUpload(t *testing.T) {
	t.Parallel()
	s := start(t, nil)
	tok := s.token("alice")
	data, meta := video("clip.mp4", 6*mib, 15)
	url := s.create(tok, len(data), meta)
	// The bytes arrive through the service alone, as if the endpoint's
	// completion had failed after them.
	svc := s.srv.Main.Service()
	ctx := context.Background()
	user, err := svc.EnsureUser(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Append(ctx, user.ID, idOf(url), 0, bytes.NewReader(data), upload.AppendOptions{ContentLength: int64(len(data))}); err != nil {
		t.Fatalf("Append: %v", err)
	}
	h := s.do(http.MethodHead, url, tok, nil)
	if h.status != http.StatusOK || h.header.Get("Upload-Offset") != strconv.Itoa(len(data)) || h.header.Get("Spool-Media-Id") == "" {
		t.Fatalf("HEAD of a full upload: %v, Upload-Offset %q, Spool-Media-Id %q; want 200, %d, a media id",
			h, h.header.Get("Upload-Offset"), h.header.Get("Spool-Media-Id"), len(data))
	}
	if h.header.Get("Upload-Expires") != "" {
		t.Errorf("HEAD of a completed upload: Upload-Expires %q, want none", h.header.Get("Upload-Expires"))
	}
	s.download(s.media(tok, h.header.Get("Spool-Media-Id")), data)
}
