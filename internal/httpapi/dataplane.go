package httpapi

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

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
	upload.CodeInternal:           http.StatusInternalServerError,
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
	if status >= 500 {
		h.Logger.ErrorContext(r.Context(), "data plane request failed", "method", r.Method, "path", r.URL.Path, "code", code, "err", err)
	}
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": string(code), "message": upload.ErrorMessage(err)}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
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
	p, err := h.Uploads.ReceiveChunk(r.Context(), id, index, r.Body,
		upload.ReceiveOptions{ContentLength: r.ContentLength, Expect: expect})
	h.answerChunk(w, r, p, err)
}

// putRange takes PUT /uploads/{id} with a chunk-aligned Content-Range,
// authorised by the bearer token. "bytes */total" asks what is received,
// like a GCS resumable status query.
func (h *handlers) putRange(w http.ResponseWriter, r *http.Request) {
	reqlog.SetUpload(r.Context(), r.PathValue("id"))
	uid, ok := h.bearer(w, r)
	if !ok {
		return
	}
	cr, err := ParseContentRange(r.Header.Get("Content-Range"))
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
	p, err := h.Uploads.ReceiveRange(r.Context(), uid, r.PathValue("id"), cr.First, cr.Last, cr.Total, r.Body,
		upload.ReceiveOptions{ContentLength: r.ContentLength, Expect: expect})
	h.answerChunk(w, r, p, err)
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
	http.ServeContent(w, r, "", obj.ModTime(), obj)
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
	http.ServeContent(w, r, "", obj.ModTime(), obj)
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
	uid, err := h.Auth.Authenticate(r.Context(), r.Header.Get("Authorization"))
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="spool"`)
		h.writeError(w, r, upload.Errorf(upload.CodeUnauthenticated, "send a valid bearer token in the Authorization header"))
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
