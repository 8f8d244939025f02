package gcstest

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// statusQueries stands in front of the emulator and answers the status
// queries of resumable uploads (PUT, no body, Content-Range: bytes */N)
// as GCS documents them, which fake-gcs-server v1.56 does not: it
// finishes the object with whatever it has instead of answering 308 with
// the Range kept, and forgets a finished session (404) where GCS answers
// 200 with the object. Everything else goes to the emulator unchanged;
// the offsets come from the emulator's own 308 answers to the chunks
// before, so the stand-in invents nothing but the answer to the query.
// It also notes the Origin each session was opened with.
type statusQueries struct {
	next http.Handler

	mu        sync.Mutex
	persisted map[string]int64  // upload_id → bytes the emulator kept
	finished  map[string][]byte // upload_id → the object's JSON, once whole
	origins   map[string]string // upload_id → Origin of the opening POST
}

func newStatusQueries(next http.Handler) *statusQueries {
	return &statusQueries{next: next, persisted: map[string]int64{}, finished: map[string][]byte{}, origins: map[string]string{}}
}

var statusQueryRange = regexp.MustCompile(`^bytes \*/(\d+)$`)

func (q *statusQueries) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, "/upload/") {
		q.next.ServeHTTP(w, r)
		return
	}
	id := r.URL.Query().Get("upload_id")
	if r.Method == http.MethodPost && id == "" && r.URL.Query().Get("uploadType") == "resumable" {
		rec := &recorder{ResponseWriter: w}
		q.next.ServeHTTP(rec, r)
		if loc, err := url.Parse(rec.Header().Get("Location")); err == nil {
			if started := loc.Query().Get("upload_id"); started != "" {
				q.mu.Lock()
				q.origins[started] = r.Header.Get("Origin")
				q.mu.Unlock()
			}
		}
		return
	}
	if r.Method != http.MethodPut || id == "" {
		q.next.ServeHTTP(w, r)
		return
	}
	if m := statusQueryRange.FindStringSubmatch(r.Header.Get("Content-Range")); m != nil && r.ContentLength <= 0 {
		total, _ := strconv.ParseInt(m[1], 10, 64)
		q.mu.Lock()
		_, known := q.origins[id]
		finished, done := q.finished[id]
		kept := q.persisted[id]
		q.mu.Unlock()
		switch {
		case !known:
			// Not a session opened here: the emulator says 404.
		case done:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(finished)
			return
		case kept < total:
			if kept > 0 {
				w.Header().Set("Range", fmt.Sprintf("bytes=0-%d", kept-1))
			}
			w.WriteHeader(http.StatusPermanentRedirect)
			return
		}
		// Every byte is there (the query finishes the object, in GCS too),
		// or the session is unknown.
	}
	rec := &recorder{ResponseWriter: w, keepBody: true}
	q.next.ServeHTTP(rec, r)
	q.mu.Lock()
	defer q.mu.Unlock()
	status := rec.status
	if rec.Header().Get("X-Http-Status-Code-Override") == "308" {
		status = http.StatusPermanentRedirect
	}
	switch status {
	case http.StatusPermanentRedirect:
		if last, ok := strings.CutPrefix(rec.Header().Get("Range"), "bytes=0-"); ok {
			if n, err := strconv.ParseInt(last, 10, 64); err == nil {
				q.persisted[id] = n + 1
			}
		}
	case http.StatusOK, http.StatusCreated:
		q.finished[id] = rec.body.Bytes()
	}
}

// origin returns the Origin header a session was opened with.
func (q *statusQueries) origin(sessionURL string) (string, bool) {
	u, err := url.Parse(sessionURL)
	if err != nil {
		return "", false
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	o, ok := q.origins[u.Query().Get("upload_id")]
	return o, ok
}

// recorder passes an answer through, noting its status and, if asked,
// its body.
type recorder struct {
	http.ResponseWriter
	status   int
	keepBody bool
	body     bytes.Buffer
}

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
	r.ResponseWriter.WriteHeader(status)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if r.keepBody {
		r.body.Write(b)
	}
	return r.ResponseWriter.Write(b)
}

// PutToSession sends body to a resumable upload session as the bytes
// first to first+len(body)-1 of total ("*" while the total is not yet
// known), as a client resuming it does, and returns the status.
func PutToSession(t testing.TB, sessionURL string, body []byte, first int64, total string) int {
	t.Helper()
	return PutWithContentRange(t, sessionURL, body, fmt.Sprintf("bytes %d-%d/%s", first, first+int64(len(body))-1, total))
}

// PutWithContentRange sends body to a resumable upload session with the
// Content-Range given as is, and returns the status.
func PutWithContentRange(t testing.TB, sessionURL string, body []byte, contentRange string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, sessionURL, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Range", contentRange)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("PUT to the session: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}
