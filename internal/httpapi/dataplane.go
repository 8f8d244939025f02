package httpapi

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/spoolhq/spool/internal/contentrange"
	"github.com/spoolhq/spool/internal/reqlog"
	"github.com/spoolhq/spool/internal/signing"
	"github.com/spoolhq/spool/internal/upload"
)

// Signed URL purposes, part of what is signed so a chunk URL can never be
// replayed as a download URL or the other way round.
const (
	purposeChunk = "chunk"
	purposeMedia = "media"
)

// ChunkURL returns the signed URL that takes one chunk's bytes.
func (u *URLSigner) ChunkURL(uploadID string, index int, expires time.Time) string {
	q := url.Values{}
	u.signer.SignQuery(q, expires, purposeChunk, uploadID, strconv.Itoa(index))
	return fmt.Sprintf("%s/uploads/%s/chunks/%d?%s", u.base, url.PathEscape(uploadID), index, q.Encode())
}

// MediaURL returns the signed URL that serves a finished file.
func (u *URLSigner) MediaURL(mediaID, fileName string, expires time.Time) string {
	q := url.Values{}
	u.signer.SignQuery(q, expires, purposeMedia, mediaID)
	return fmt.Sprintf("%s/media/%s/%s?%s", u.base, url.PathEscape(mediaID), url.PathEscape(fileName), q.Encode())
}

// ThumbnailURL is where GET returns the media's thumbnail number n.
func (u *URLSigner) ThumbnailURL(mediaID string, n int, expires time.Time) string {
	q := url.Values{}
	u.signer.SignQuery(q, expires, purposeMedia, mediaID)
	return fmt.Sprintf("%s/media/%s/thumbnails/%d?%s", u.base, url.PathEscape(mediaID), n, q.Encode())
}

// statusOf is the one table from codes to HTTP statuses, for the data
// plane's answers and for GraphQL requests refused before GraphQL runs.
// Codes missing here are met only inside GraphQL answers (HTTP 200);
// docs/API.md lists the same statuses.
var statusOf = map[upload.Code]int{
	upload.CodeUnauthenticated:    http.StatusUnauthorized,
	upload.CodeForbidden:          http.StatusForbidden,
	upload.CodeNotFound:           http.StatusNotFound,
	upload.CodeBadUserInput:       http.StatusBadRequest,
	upload.CodeInvalidChunk:       http.StatusRequestedRangeNotSatisfiable,
	upload.CodeChunkTooLarge:      http.StatusRequestEntityTooLarge,
	upload.CodeChunkTooSmall:      http.StatusBadRequest,
	upload.CodeChecksumMismatch:   http.StatusBadRequest,
	upload.CodeTypeMismatch:       http.StatusUnsupportedMediaType,
	upload.CodeSessionExpired:     http.StatusGone,
	upload.CodeAlreadyFinished:    http.StatusConflict,
	upload.CodeStorageUnavailable: http.StatusServiceUnavailable,
	upload.CodePreflightRequired:  http.StatusBadRequest,
	upload.CodeRequestTooLarge:    http.StatusRequestEntityTooLarge,
	upload.CodeUnavailable:        http.StatusServiceUnavailable,
	upload.CodeRateLimited:        http.StatusTooManyRequests,
	upload.CodeRequestTimeout:     http.StatusRequestTimeout,
	upload.CodeOffsetMismatch:     http.StatusConflict,
	// Met on the data plane by tus creation (POST /files/).
	upload.CodeInvalidType:   http.StatusUnsupportedMediaType,
	upload.CodeFileTooLarge:  http.StatusRequestEntityTooLarge,
	upload.CodeQuotaExceeded: http.StatusForbidden,
	// Completing a tus upload whose bytes are not all stored.
	upload.CodeIncomplete: http.StatusConflict,
	upload.CodeInternal:   http.StatusInternalServerError,
}

// httpStatus is code's status; a code without one is a server bug, 500.
func httpStatus(code upload.Code) int {
	if status, ok := statusOf[code]; ok {
		return status
	}
	return http.StatusInternalServerError
}

// writeError answers with the error's status and a JSON body
// {"error":{"code":…,"message":…}}. Failures of the server (5xx) are
// logged here, once, with their cause; clients see only the code and
// message, and "internal error" for an uncoded err.
func (h *handlers) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := upload.ErrorCode(err)
	status := httpStatus(code)
	switch {
	case code == upload.CodeUnavailable:
		// Every request fails alike during an outage: logged at a
		// bounded rate, and the client told when to come back.
		h.Uploads.NoteUnavailable(r.Method+" "+r.URL.Path, err)
	case status >= 500:
		h.Logger.ErrorContext(r.Context(), "data plane request failed", "method", r.Method, "path", r.URL.Path, "code", code, "err", err)
	}
	setRetryAfter(w, err)
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": string(code), "message": upload.ErrorMessage(err)}})
}

// writeJSON answers v with status. The answer carries its length, so one
// flushed before the handler returns (flushAndYield) is not sent chunked.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// The values answered are spool's own plain structs.
		panic(fmt.Sprintf("httpapi: encoding an answer: %v", err))
	}
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// flushAndYield sends a chunk's answer, then lets the goroutines the
// chunk woke run before this one goes on. The receipt started the watch
// pumps of the upload's subscribers, next in line on this CPU; net/http,
// finishing the request once the handler returns, wakes its own
// background reader next in line instead, which sends the pumps to the
// back of the queue. With 200 uploads on 2 CPUs they waited 10 ms at the
// median and 100 ms at p99 there, most of an event's lag
// (docs/BENCHMARKS.md, "event lag"). Yielding once the client has its
// answer lets them go first; the handler then waits its turn, as it
// would have for its next request. yieldAfterBytes calls it.
func flushAndYield(w http.ResponseWriter) {
	if err := http.NewResponseController(w).Flush(); err != nil {
		return // not sent: yielding would hold the answer back
	}
	runtime.Gosched()
}

// progressJSON is the data plane's answer to a chunk: the upload's progress.
type progressJSON struct {
	UploadID       string `json:"uploadId"`
	Status         string `json:"status"`
	UploadedBytes  int64  `json:"uploadedBytes"`
	TotalBytes     int64  `json:"totalBytes"`
	Percent        int    `json:"percent"`
	UploadedChunks int    `json:"uploadedChunks"`
	TotalChunks    int    `json:"totalChunks"`
	FailedChunks   []int  `json:"failedChunks"`
}

func toJSON(p upload.Progress) progressJSON {
	return progressJSON{p.UploadID, string(p.Status), p.UploadedBytes, p.TotalBytes, p.Percent,
		p.UploadedChunks, p.TotalChunks, p.FailedChunks}
}

// putSignedChunk takes PUT /uploads/{id}/chunks/{index}?exp=…&sig=….
func (h *handlers) putSignedChunk(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id, rawIndex := r.PathValue("id"), r.PathValue("index")
	reqlog.SetUpload(r.Context(), id)
	if err := h.URLs.signer.VerifyQuery(r.URL.Query(), time.Now(), purposeChunk, id, rawIndex); err != nil {
		h.refuseSignature(w, r, err)
		return
	}
	// The signature covers the index's exact text, so it is a canonical
	// decimal here.
	index, err := strconv.Atoi(rawIndex)
	if err != nil {
		h.writeError(w, r, upload.Errorf(upload.CodeInvalidChunk, "chunk index %q is not a number", rawIndex))
		return
	}
	expect, err := declaredDigests(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if !h.startChunk(w, r, id) {
		return
	}
	defer h.chunksRunning.Release(id)
	watched := h.watchBody(w, r)
	defer watched.stop()
	body, counted := h.countBody(watched)
	p, err := h.Uploads.ReceiveChunk(r.Context(), id, index, body,
		upload.ReceiveOptions{ContentLength: r.ContentLength, Expect: expect, Admit: h.Limits.Requests, Hurry: watched.hurry})
	err = watched.cut(err)
	h.answerChunk(w, r, p, err)
	h.recordChunk(start, counted, err)
}

// putRange takes PUT /uploads/{id} with a chunk-aligned Content-Range,
// authorised by the bearer token. "bytes */total" asks what is received,
// like a GCS resumable status query.
func (h *handlers) putRange(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	reqlog.SetUpload(r.Context(), r.PathValue("id"))
	uid, ok := h.bearer(w, r)
	if !ok {
		return
	}
	cr, err := contentrange.Parse(r.Header.Get("Content-Range"))
	if err != nil {
		h.writeError(w, r, upload.Errorf(upload.CodeInvalidChunk, "%v", err))
		return
	}
	if cr.First < 0 {
		h.headUpload(w, r)
		return
	}
	expect, err := declaredDigests(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	id := r.PathValue("id")
	if !h.startChunk(w, r, id) {
		return
	}
	defer h.chunksRunning.Release(id)
	watched := h.watchBody(w, r)
	defer watched.stop()
	body, counted := h.countBody(watched)
	p, err := h.Uploads.ReceiveRange(r.Context(), uid, id, cr.First, cr.Last, cr.Total, body,
		upload.ReceiveOptions{ContentLength: r.ContentLength, Expect: expect, Admit: h.Limits.Requests, Hurry: watched.hurry})
	err = watched.cut(err)
	h.answerChunk(w, r, p, err)
	h.recordChunk(start, counted, err)
}

// startChunk takes one of the upload's chunk PUT slots, or answers 429
// RATE_LIMITED when they are all taken. A slot taken must be released
// when the request ends.
func (h *handlers) startChunk(w http.ResponseWriter, r *http.Request, uploadID string) bool {
	if h.chunksRunning.Acquire(uploadID) {
		return true
	}
	h.writeError(w, r, upload.RateLimited(time.Second,
		"upload %s already has %d chunk PUTs running; send this one when one of them ends", uploadID, h.Limits.MaxParallelChunks))
	return false
}

// watchBody returns the request's body, cut off if it sends no byte for
// the body idle timeout (if one is set).
func (h *handlers) watchBody(w http.ResponseWriter, r *http.Request) *idleBody {
	return newIdleBody(w, r, h.Limits.BodyIdleTimeout)
}

func newIdleBody(w http.ResponseWriter, r *http.Request, timeout time.Duration) *idleBody {
	return &idleBody{r: r.Body, rc: http.NewResponseController(w), timeout: timeout}
}

// idleBodies cuts off request bodies that stall for timeout (GraphQL
// POSTs; chunk PUTs watch their own). Requests without a body, websocket
// upgrades among them, are left alone: a deadline set on a connection
// about to be hijacked would outlive the request.
func idleBodies(next http.Handler, timeout time.Duration) http.Handler {
	if timeout <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength == 0 || r.Header.Get("Upgrade") != "" {
			next.ServeHTTP(w, r)
			return
		}
		body := newIdleBody(w, r, timeout)
		defer body.stop()
		r.Body = body
		next.ServeHTTP(w, r)
	})
}

// yieldAfterBytes runs flushAndYield after each request that carried a
// body (a chunk PUT; a tus PATCH, or POST creating an upload with its
// first bytes), once next has returned: after the handler's deferred
// calls, so the chunk's slot, or tusd's lock, is free before the client
// has its answer and sends the next request.
func yieldAfterBytes(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != 0 { // -1, unknown, may carry bytes too
			defer flushAndYield(w)
		}
		next.ServeHTTP(w, r)
	})
}

// idleBody reads a request body under a read deadline that each read
// pushes forward: a body may take as long as it likes in all, but not
// stall. A slow link only makes reads smaller, never absent. The deadline
// is set on every read, not now and then: tusd sets its own on each read
// of a PATCH body (internal/tus's handler), and spool's must be the last.
type idleBody struct {
	r       io.ReadCloser
	rc      *http.ResponseController
	timeout time.Duration
	// mu keeps hurry, from another request's goroutine, apart from the
	// deadlines Read sets and from the body's end.
	mu sync.Mutex
	// ended is set once a read failed or met the body's end: from then
	// on no deadline is set. net/http reads the connection itself after a
	// body's end (to notice a client that goes away), and a deadline set
	// under that read would end it: net/http would take the client for
	// gone and cancel the connection's context, failing the request's
	// remaining work and every later request on the connection.
	ended bool
	// timedOut is set once a read ran into the deadline.
	timedOut bool
	// hurried is set by hurry, which shortened timeout.
	hurried bool
	// unsupported is set when the connection takes no deadline (a
	// ResponseWriter wrapped without Unwrap): the body is then read
	// unwatched.
	unsupported bool
}

// hurriedTimeout is a body's idle timeout once a later request for the
// same chunk waits for it: long enough for a live client's next bytes,
// short beside the 30 s that client's resend waited before.
const hurriedTimeout = 2 * time.Second

func (b *idleBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	if b.timeout > 0 && !b.unsupported && !b.ended {
		if err := b.rc.SetReadDeadline(time.Now().Add(b.timeout)); err != nil {
			b.unsupported = true
		}
	}
	b.mu.Unlock()
	n, err := b.r.Read(p)
	if err != nil {
		b.mu.Lock()
		// At io.EOF net/http has lifted the deadline as it began its own
		// read; a failed read leaves the connection to be closed.
		b.ended = true
		if errors.Is(err, os.ErrDeadlineExceeded) {
			b.timedOut = true
		}
		b.mu.Unlock()
	}
	return n, err
}

// hurry cuts the body off after hurriedTimeout of silence from now on:
// the upload service calls it when a later request for the same chunk
// arrives and waits for this one (upload.ReceiveOptions.Hurry). A read
// under way gets the short deadline at once. A body that has ended is
// left alone (a deadline would cut net/http's own read, see ended).
func (b *idleBody) hurry() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ended || b.hurried || b.unsupported {
		return
	}
	b.hurried = true
	if b.timeout == 0 || b.timeout > hurriedTimeout {
		b.timeout = hurriedTimeout
	}
	_ = b.rc.SetReadDeadline(time.Now().Add(b.timeout))
}

// stop lifts the read deadline of a body the handler is done with before
// its end, so that what net/http still reads of it is not cut short.
func (b *idleBody) stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.timeout > 0 && !b.unsupported && !b.ended {
		b.ended = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
}

func (b *idleBody) Close() error { return b.r.Close() }

// cut replaces the answer to a chunk whose body stalled (the chunk has
// been recorded failed) with REQUEST_TIMEOUT, which clients retry, and
// says so when a later request for the chunk hurried it.
func (b *idleBody) cut(err error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case err == nil:
		return nil
	case b.timedOut && b.hurried:
		return upload.Errorf(upload.CodeRequestTimeout,
			"the chunk's body sent nothing for %v while the same chunk arrived on another request, and was cut off; that one replaces it", b.timeout)
	case b.timedOut:
		return upload.Errorf(upload.CodeRequestTimeout,
			"the chunk's body sent nothing for %v and was cut off; the chunk is recorded failed: send it again", b.timeout)
	}
	return err
}

// idleDownload is a response whose every write must start moving within
// timeout: each write pushes the connection's write deadline forward.
type idleDownload struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	// unsupported is set when the connection takes no deadline.
	unsupported bool
}

func (d *idleDownload) Write(p []byte) (int, error) {
	if !d.unsupported {
		if err := d.rc.SetWriteDeadline(time.Now().Add(d.timeout)); err != nil {
			d.unsupported = true
		}
	}
	return d.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection.
func (d *idleDownload) Unwrap() http.ResponseWriter { return d.ResponseWriter }

// countBody returns the request body to hand the service, counting what
// is read of it when metrics are kept (counted is then not nil).
func (h *handlers) countBody(r io.Reader) (body io.Reader, counted *countingReader) {
	if h.Metrics == nil {
		return r, nil
	}
	counted = &countingReader{r: r}
	return counted, counted
}

// recordChunk records a chunk PUT that reached the service: its time
// since start, the body bytes read and its error code, if any. Requests
// refused before (signature, token, headers) carried no chunk.
func (h *handlers) recordChunk(start time.Time, body *countingReader, err error) {
	if body == nil {
		return
	}
	code := ""
	if err != nil {
		code = string(upload.ErrorCode(err))
	}
	h.Metrics.ChunkPut(time.Since(start), body.n, code)
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (h *handlers) answerChunk(w http.ResponseWriter, r *http.Request, p upload.Progress, err error) {
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toJSON(p))
}

// headUpload answers HEAD /uploads/{id} (bearer) with what is received:
// Range gives the contiguous prefix, Spool-Received-Chunks every chunk.
func (h *handlers) headUpload(w http.ResponseWriter, r *http.Request) {
	reqlog.SetUpload(r.Context(), r.PathValue("id"))
	uid, ok := h.bearer(w, r)
	if !ok {
		return
	}
	if h.Limits.Requests != nil {
		if err := h.Limits.Requests.Admit(r.Context(), uid); err != nil {
			h.writeError(w, r, err)
			return
		}
	}
	sess, err := h.Uploads.Session(r.Context(), uid, r.PathValue("id"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	received := sess.ReceivedChunks()
	hd := w.Header()
	hd.Set("Cache-Control", "no-store")
	hd.Set("Spool-Upload-Status", string(sess.Status))
	hd.Set("Spool-Uploaded-Bytes", strconv.FormatInt(sess.Progress.UploadedBytes, 10))
	hd.Set("Spool-Total-Bytes", strconv.FormatInt(sess.TotalSize, 10))
	hd.Set("Spool-Chunk-Size", strconv.FormatInt(sess.ChunkSize, 10))
	hd.Set("Spool-Received-Chunks", formatRanges(received))
	if prefix := contiguousBytes(received, sess.ChunkSize, sess.TotalSize); prefix > 0 {
		hd.Set("Range", fmt.Sprintf("bytes=0-%d", prefix-1))
	}
	status := http.StatusOK
	if r.Method == http.MethodPut && sess.Status != upload.StatusCompleted {
		status = http.StatusPermanentRedirect // 308 "resume incomplete", as GCS answers
	}
	w.WriteHeader(status)
}

// contiguousBytes is how many bytes from the start are received.
func contiguousBytes(received []int, chunkSize, total int64) int64 {
	n := int64(0)
	for i, idx := range received {
		if idx != i {
			break
		}
		n = min(total, int64(i+1)*chunkSize)
	}
	return n
}

// formatRanges writes sorted indexes compactly: 0-3,5,7-8.
func formatRanges(idx []int) string {
	var b strings.Builder
	for i := 0; i < len(idx); {
		j := i
		for j+1 < len(idx) && idx[j+1] == idx[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(idx[i]))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(idx[j]))
		}
		i = j + 1
	}
	return b.String()
}

// getMedia serves GET (and HEAD) /media/{id}/{name}?exp=…&sig=… with
// Range, If-Range, If-None-Match and If-Modified-Since, streaming from the
// store: a GCS object is read in ranges on demand, never held whole.
func (h *handlers) getMedia(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	// The path ends in the file's name, the user's words: the request's
	// span keeps the route instead.
	trace.SpanFromContext(r.Context()).SetAttributes(attribute.String("url.path", "/media/"+id+"/{name}"))
	if err := h.URLs.signer.VerifyQuery(r.URL.Query(), time.Now(), purposeMedia, id); err != nil {
		h.refuseSignature(w, r, err)
		return
	}
	m, obj, err := h.Uploads.OpenMedia(r.Context(), id)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	defer obj.Close()
	w.Header().Set("Content-Type", m.MimeType)
	w.Header().Set("Cache-Control", "private, max-age=300")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Disposition", "inline; filename*=UTF-8''"+url.PathEscape(m.FileName))
	// A media file's bytes never change, so its id is a strong validator.
	w.Header().Set("ETag", `"`+m.ID+`"`)
	h.serveObject(w, r, obj)
}

// serveObject serves an object's bytes (ranges, conditionals) under the
// body idle timeout: a client that takes nothing for that long is cut
// off. A client that stops reading holds the request's goroutine, its
// connection and the open object for as long as it likes otherwise (the
// kernel's persist probes keep a zero window alive for ever; seen from
// outside with 2.8 MB queued), and one whose network path died silently
// for the quarter of an hour the kernel's retransmissions take.
func (h *handlers) serveObject(w http.ResponseWriter, r *http.Request, obj upload.Object) {
	if h.Limits.BodyIdleTimeout <= 0 {
		http.ServeContent(w, r, "", obj.ModTime(), obj)
		return
	}
	// net/http flushes what is left under the last write's deadline and
	// then lifts it, before the connection's next request.
	http.ServeContent(&idleDownload{ResponseWriter: w, rc: http.NewResponseController(w), timeout: h.Limits.BodyIdleTimeout}, r, "", obj.ModTime(), obj)
}

// getThumbnail serves one of a media file's thumbnails, under the
// media's own signature.
func (h *handlers) getThumbnail(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := h.URLs.signer.VerifyQuery(r.URL.Query(), time.Now(), purposeMedia, id); err != nil {
		h.refuseSignature(w, r, err)
		return
	}
	n, err := strconv.Atoi(r.PathValue("n"))
	if err != nil {
		h.writeError(w, r, upload.Errorf(upload.CodeNotFound, "no thumbnail %q", r.PathValue("n")))
		return
	}
	t, obj, err := h.Uploads.OpenThumbnail(r.Context(), id, n)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	defer obj.Close()
	w.Header().Set("Content-Type", t.MimeType)
	w.Header().Set("Cache-Control", "private, max-age=300")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("ETag", `"`+path.Base(t.Key)+`"`)
	h.serveObject(w, r, obj)
}

func (h *handlers) refuseSignature(w http.ResponseWriter, r *http.Request, err error) {
	msg := "this URL's signature is not valid; request a new URL"
	if errors.Is(err, signing.ErrExpired) {
		msg = "this URL has expired; request a new one"
	}
	h.writeError(w, r, upload.Errorf(upload.CodeForbidden, "%s", msg))
}

// bearer authenticates a data-plane request by its bearer token.
func (h *handlers) bearer(w http.ResponseWriter, r *http.Request) (string, bool) {
	uid, err := h.tokenUser(r)
	if err != nil {
		if upload.ErrorCode(err) == upload.CodeUnauthenticated {
			w.Header().Set("WWW-Authenticate", `Bearer realm="spool"`)
		}
		h.writeError(w, r, err)
		return "", false
	}
	reqlog.SetUser(r.Context(), uid)
	return uid, true
}

// declaredDigests collects the checksums a chunk request declares:
// Content-MD5, X-Goog-Hash (crc32c=…, md5=…) and a checksum=alg:value
// query parameter. A malformed one is BAD_USER_INPUT, never ignored.
func declaredDigests(r *http.Request) ([]upload.Digest, error) {
	var out []upload.Digest
	add := func(s string) error {
		d, err := upload.ParseDigest(s)
		if err != nil {
			return err
		}
		out = append(out, d)
		return nil
	}
	if v := r.Header.Get("Content-MD5"); v != "" {
		sum, err := base64.StdEncoding.DecodeString(v)
		if err != nil || len(sum) != 16 {
			return nil, upload.Errorf(upload.CodeBadUserInput, "Content-MD5 must be the base64 of 16 bytes")
		}
		out = append(out, upload.Digest{Alg: "md5", Sum: sum})
	}
	for _, h := range r.Header.Values("X-Goog-Hash") {
		for part := range strings.SplitSeq(h, ",") {
			if err := add(strings.TrimSpace(part)); err != nil {
				return nil, err
			}
		}
	}
	for _, v := range r.URL.Query()["checksum"] {
		if err := add(v); err != nil {
			return nil, err
		}
	}
	if len(out) > 4 {
		return nil, upload.Errorf(upload.CodeBadUserInput, "at most 4 checksums per chunk")
	}
	return out, nil
}
