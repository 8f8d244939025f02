package upload_test

// Direct SINGLE uploads through the store's resumable sessions, on the GCS
// emulator. gcstest answers the sessions' status queries as GCS does (the
// emulator alone would finish the object instead); everything else is
// the emulator's.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/spoolhq/spool/internal/storage/gcs"
	"github.com/spoolhq/spool/internal/storage/gcs/gcstest"
	"github.com/spoolhq/spool/internal/upload"
)

const testOrigin = "https://app.example"

// newResumableEnv is a Service in direct mode on the GCS emulator.
func newResumableEnv(t *testing.T) (*testEnv, *gcstest.Server) {
	e, srv, _ := newResumableStore(t)
	return e, srv
}

// newResumableStore is newResumableEnv, with the store the Service uses.
func newResumableStore(t *testing.T) (*testEnv, *gcstest.Server, *gcs.Store) {
	t.Helper()
	srv := gcstest.Start(t)
	store := gcs.New(srv.Client(t), srv.CreateBucket(t), "spool", gcs.Options{
		SignedURLs: &gcs.SignedURLs{GoogleAccessID: gcstest.GoogleAccessID, PrivateKey: gcstest.SigningKey(t), Insecure: true},
		Sessions:   &gcs.Sessions{HTTPClient: http.DefaultClient, Endpoint: srv.URL},
	})
	cfg := testConfig()
	cfg.DirectUploads = true
	return newTestServiceOn(t, cfg, store), srv, store
}

// sendAsTold sends what a ChunkURL asks for, as a client knowing nothing
// of GCS would: the file's bytes at Offset, Size long, with its headers.
func sendAsTold(t *testing.T, u upload.ChunkURL, data []byte) int {
	t.Helper()
	req, err := http.NewRequest(u.Method, u.URL, bytes.NewReader(data[u.Offset:u.Offset+u.Size]))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range u.Headers {
		req.Header.Set(h.Name, h.Value)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("PUT as told: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func wantResumeAt(t *testing.T, u upload.ChunkURL, offset, size int64) {
	t.Helper()
	wantRange := fmt.Sprintf("bytes %d-%d/%d", offset, size-1, size)
	if u.Method != "PUT" || u.Offset != offset || u.Size != size-offset ||
		len(u.Headers) != 1 || u.Headers[0].Name != "Content-Range" || u.Headers[0].Value != wantRange {
		t.Fatalf("ChunkURL: %s offset %d size %d headers %v; want PUT offset %d size %d, Content-Range %s",
			u.Method, u.Offset, u.Size, u.Headers, offset, size-offset, wantRange)
	}
}

func crc32cChecksum(b []byte) string {
	sum := crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli))
	return "crc32c:" + base64.StdEncoding.EncodeToString(binary.BigEndian.AppendUint32(nil, sum))
}

func wantCodeOf(t *testing.T, what string, err error, code upload.Code) {
	t.Helper()
	if got := upload.ErrorCode(err); got != code {
		t.Fatalf("%s: got %v, want %s", what, err, code)
	}
}

// A SINGLE upload broken off after part of its bytes resumes from where
// the store got to: requestChunkUrl and retry say so, the client sends
// the rest as told, and the file completes byte for byte.
func TestResumableSingle(t *testing.T) {
	t.Parallel()
	e, srv := newResumableEnv(t)
	alice, bob := e.user(t, "alice"), e.user(t, "bob")
	data := pngBytes(900 << 10)
	size := int64(len(data))
	ctx := upload.WithOrigin(context.Background(), testOrigin)

	b, err := e.svc.InitBatch(ctx, alice, upload.BatchSpec{Files: []upload.FileSpec{{FileName: "p.png", Size: size, MimeType: "image/png"}}})
	if err != nil {
		t.Fatal(err)
	}
	sess := b.Uploads[0]
	urls, err := e.svc.ChunkURLs(ctx, sess)
	if err != nil || len(urls) != 1 {
		t.Fatalf("ChunkURLs: %v, %v; want one", urls, err)
	}
	first := urls[0]
	wantResumeAt(t, first, 0, size)
	if got, ok := srv.SessionOrigin(first.URL); !ok || got != testOrigin {
		t.Errorf("session opened with Origin %q (known %v), want %q", got, ok, testOrigin)
	}
	if stored := e.stored(t, sess.ID); stored.ResumableURL == nil || *stored.ResumableURL != first.URL {
		t.Errorf("stored session URL %v, want %s", stored.ResumableURL, first.URL)
	}

	// The first 512 KiB arrive, then the connection "breaks".
	const k = 512 << 10
	if got := gcstest.PutToSession(t, first.URL, data[:k], 0, "*"); got != http.StatusPermanentRedirect {
		t.Fatalf("first part: HTTP %d, want 308", got)
	}
	_, err = e.svc.ConfirmChunk(ctx, alice, sess.ID, 0, size, nil)
	wantCodeOf(t, "confirmChunk of a file half sent", err, upload.CodeChunkMissing)

	again, err := e.svc.ChunkURL(ctx, alice, sess.ID, 0)
	if err != nil {
		t.Fatalf("ChunkURL after the break: %v", err)
	}
	wantResumeAt(t, again, k, size)
	if again.URL != first.URL {
		t.Errorf("resumed at another session")
	}
	retried, err := e.svc.Retry(context.Background(), alice, sess.ID) // a client without origin (the CLI) gets the same session
	if err != nil || len(retried) != 1 || retried[0].URL != first.URL {
		t.Fatalf("Retry: %+v, %v; want the same session", retried, err)
	}
	wantResumeAt(t, retried[0], k, size)

	_, err = e.svc.ChunkURL(ctx, bob, sess.ID, 0)
	wantCodeOf(t, "ChunkURL of another user's upload", err, upload.CodeNotFound)
	_, err = e.svc.Retry(ctx, bob, sess.ID)
	wantCodeOf(t, "Retry of another user's upload", err, upload.CodeNotFound)

	if got := sendAsTold(t, again, data); got != http.StatusOK && got != http.StatusCreated {
		t.Fatalf("the rest: HTTP %d", got)
	}
	p, err := e.svc.ConfirmChunk(ctx, alice, sess.ID, 0, size, ptr(crc32cChecksum(data)))
	if err != nil || p.UploadedChunks != 1 {
		t.Fatalf("ConfirmChunk with the file's CRC32C: %+v, %v", p, err)
	}
	_, err = e.svc.ConfirmChunk(ctx, alice, sess.ID, 0, size, ptr(crc32cChecksum(data[1:])))
	wantCodeOf(t, "ConfirmChunk with another CRC32C", err, upload.CodeChecksumMismatch)
	m, err := e.svc.Complete(ctx, alice, sess.ID)
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	if got := readObject(t, e, m.ID); !bytes.Equal(got, data) {
		t.Errorf("stored file: %d bytes, not the %d sent", len(got), len(data))
	}
}

func readObject(t *testing.T, e *testEnv, mediaID string) []byte {
	t.Helper()
	_, obj, err := e.svc.OpenMedia(context.Background(), mediaID)
	if err != nil {
		t.Fatalf("opening media %s: %v", mediaID, err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A browser on another allowed origin gets a session of its own (GCS
// answers CORS for one origin per session); a client without one keeps
// the session there is.
func TestResumableOrigins(t *testing.T) {
	t.Parallel()
	e, srv := newResumableEnv(t)
	alice := e.user(t, "alice")
	data := pngBytes(100 << 10)
	sess := e.initOne(t, alice, upload.FileSpec{FileName: "p.png", Size: int64(len(data)), MimeType: "image/png"})
	plain, err := e.svc.ChunkURL(context.Background(), alice, sess.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := srv.SessionOrigin(plain.URL); got != "" {
		t.Errorf("session for a client without origin opened with Origin %q", got)
	}
	browser, err := e.svc.ChunkURL(upload.WithOrigin(context.Background(), testOrigin), alice, sess.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := srv.SessionOrigin(browser.URL); browser.URL == plain.URL || got != testOrigin {
		t.Errorf("browser got session %v with Origin %q; want a new one with %q", browser.URL == plain.URL, got, testOrigin)
	}
	cli, err := e.svc.ChunkURL(context.Background(), alice, sess.ID, 0)
	if err != nil || cli.URL != browser.URL {
		t.Errorf("a client without origin after the browser: new session %v, %v; want the browser's", cli.URL != browser.URL, err)
	}
}

// What the store holds is judged, not trusted: a file of the wrong size
// or type is refused with a code and the upload stays open for the right
// bytes, and a file replaced after it was checked is judged again.
func TestResumableRefusals(t *testing.T) {
	t.Parallel()
	e, _, store := newResumableStore(t)
	alice := e.user(t, "alice")
	ctx := context.Background()
	data := pngBytes(600 << 10)
	size := int64(len(data))
	spec := upload.FileSpec{FileName: "p.png", Size: size, MimeType: "image/png"}

	t.Run("wrong size", func(t *testing.T) {
		sess := e.initOne(t, alice, spec)
		u, err := e.svc.ChunkURL(ctx, alice, sess.ID, 0)
		if err != nil {
			t.Fatal(err)
		}
		// The emulator finishes a session at any size (GCS would hold it
		// to the declared one).
		const k = 256 << 10
		if got := gcstest.PutToSession(t, u.URL, data[:k], 0, fmt.Sprint(k)); got != http.StatusOK {
			t.Fatalf("short file: HTTP %d", got)
		}
		_, err = e.svc.Complete(ctx, alice, sess.ID)
		wantCodeOf(t, "Complete with a short file", err, upload.CodeIncomplete)
		_, err = e.svc.ConfirmChunk(ctx, alice, sess.ID, 0, size, nil)
		wantCodeOf(t, "ConfirmChunk with a short file", err, upload.CodeChunkTooSmall)
		got, err := e.svc.Session(ctx, alice, sess.ID)
		if err != nil || got.Status != upload.StatusUploading || len(got.Progress.FailedChunks) != 1 {
			t.Fatalf("after refusal: %+v, %v; want UPLOADING with chunk 0 failed", got, err)
		}
		// Nothing is lost: a new session takes the whole file.
		fresh, err := e.svc.ChunkURL(ctx, alice, sess.ID, 0)
		if err != nil {
			t.Fatal(err)
		}
		wantResumeAt(t, fresh, 0, size)
		if fresh.URL == u.URL {
			t.Error("a finished session was handed out again")
		}
		if got := sendAsTold(t, fresh, data); got != http.StatusOK {
			t.Fatalf("whole file: HTTP %d", got)
		}
		m, err := e.svc.Complete(ctx, alice, sess.ID)
		if err != nil {
			t.Fatalf("Complete after sending again: %v", err)
		}
		if got := readObject(t, e, m.ID); !bytes.Equal(got, data) {
			t.Errorf("stored file: %d bytes, not the %d sent", len(got), len(data))
		}
	})

	t.Run("type mismatch", func(t *testing.T) {
		sess := e.initOne(t, alice, spec)
		u, err := e.svc.ChunkURL(ctx, alice, sess.ID, 0)
		if err != nil {
			t.Fatal(err)
		}
		notPNG := mp4Bytes(size, 5)
		if got := sendAsTold(t, u, notPNG); got != http.StatusOK {
			t.Fatalf("HTTP %d", got)
		}
		_, err = e.svc.ConfirmChunk(ctx, alice, sess.ID, 0, size, nil)
		wantCodeOf(t, "ConfirmChunk of a file that is not the declared type", err, upload.CodeTypeMismatch)
		_, err = e.svc.Complete(ctx, alice, sess.ID)
		wantCodeOf(t, "Complete", err, upload.CodeIncomplete)
	})

	t.Run("replaced after the check", func(t *testing.T) {
		sess := e.initOne(t, alice, spec)
		u, err := e.svc.ChunkURL(ctx, alice, sess.ID, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got := sendAsTold(t, u, data); got != http.StatusOK {
			t.Fatalf("HTTP %d", got)
		}
		if _, err := e.svc.ConfirmChunk(ctx, alice, sess.ID, 0, size, nil); err != nil {
			t.Fatal(err)
		}
		// Someone holding a session spool no longer hands out writes
		// other bytes over the object.
		otherURL, err := store.StartResumable(ctx, e.stored(t, sess.ID).StorageKey, upload.ChunkRef{Size: size}, "")
		if err != nil {
			t.Fatal(err)
		}
		other := upload.ChunkURL{URL: otherURL, Method: "PUT", Size: size,
			Headers: []upload.Header{{Name: "Content-Range", Value: fmt.Sprintf("bytes 0-%d/%d", size-1, size)}}}
		if got := sendAsTold(t, other, mp4Bytes(size, 6)); got != http.StatusOK {
			t.Fatalf("HTTP %d", got)
		}
		_, err = e.svc.Complete(ctx, alice, sess.ID)
		wantCodeOf(t, "Complete of a replaced file", err, upload.CodeIncomplete)
	})

	t.Run("expired", func(t *testing.T) {
		sess := e.initOne(t, alice, spec)
		u, err := e.svc.ChunkURL(ctx, alice, sess.ID, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got := gcstest.PutToSession(t, u.URL, data[:256<<10], 0, "*"); got != http.StatusPermanentRedirect {
			t.Fatalf("HTTP %d", got)
		}
		e.clock.Advance(e.cfg.SessionTTL + time.Second)
		_, err = e.svc.ChunkURL(ctx, alice, sess.ID, 0)
		wantCodeOf(t, "ChunkURL", err, upload.CodeSessionExpired)
		_, err = e.svc.Retry(ctx, alice, sess.ID)
		wantCodeOf(t, "Retry", err, upload.CodeSessionExpired)
		_, err = e.svc.Complete(ctx, alice, sess.ID)
		wantCodeOf(t, "Complete", err, upload.CodeSessionExpired)
	})
}

// stallingBody sends its first bytes, tells started, and then fails once
// release is closed: a client cut off halfway through a chunk.
type stallingBody struct {
	first   []byte
	started chan struct{}
	release chan struct{}
}

func (b *stallingBody) Read(p []byte) (int, error) {
	if len(b.first) > 0 {
		n := copy(p, b.first)
		b.first = b.first[n:]
		return n, nil
	}
	close(b.started)
	<-b.release
	return 0, errors.New("connection reset by peer (test)")
}

// On GCS a chunk arrival cut off halfway stores nothing (the part is
// replaced only by an upload that completes), so when a whole arrival of
// the same chunk overtook it and was acknowledged, the cut one, recorded
// after, leaves the chunk RECEIVED. It marked it FAILED: an acknowledged
// chunk missing at complete (the fault suite's "client connection cut
// mid-chunk" met it on two replicas).
func TestCutArrivalRecordedLateKeepsTheChunkOnGCS(t *testing.T) {
	t.Parallel()
	srv := gcstest.Start(t)
	e := newTestServiceOn(t, testConfig(), gcs.New(srv.Client(t), srv.CreateBucket(t), "spool", gcs.Options{}))
	owner := e.user(t, "alice")
	data := mp4Bytes(11*MiB, 41)
	sess := e.initOne(t, owner, mp4Spec("v.mp4", data))
	chunk := e.chunk(data, 1)

	cut := &stallingBody{first: chunk[:len(chunk)/2], started: make(chan struct{}), release: make(chan struct{})}
	cutDone := make(chan error, 1)
	go func() {
		_, err := e.svc.ReceiveChunk(context.Background(), sess.ID, 1, cut, upload.ReceiveOptions{ContentLength: int64(len(chunk))})
		cutDone <- err
	}()
	<-cut.started // its session read is done, and half its bytes sent
	if p := e.mustSend(t, sess.ID, 1, data); p.UploadedChunks != 1 {
		t.Fatalf("the whole arrival: %d chunks received, want 1", p.UploadedChunks)
	}
	close(cut.release)
	if err := <-cutDone; upload.ErrorCode(err) != upload.CodeChunkTooSmall {
		t.Errorf("the cut arrival: %v, want CHUNK_TOO_SMALL", err)
	}

	got, err := e.svc.Session(context.Background(), owner, sess.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Progress.UploadedChunks != 1 || len(got.Progress.FailedChunks) != 0 {
		t.Errorf("after the cut arrival: %d received, failed %v; want chunk 1 still received", got.Progress.UploadedChunks, got.Progress.FailedChunks)
	}
}
