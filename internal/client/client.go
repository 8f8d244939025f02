// Package client talks to a spool server the way any outside program
// does: GraphQL over HTTP for the control plane, PUTs to signed chunk URLs
// for the bytes. It owns the typed operations (client.go), reading local
// files for upload (file.go) and the resumable, parallel upload of a batch
// (upload.go). It knows nothing of flags, terminals or progress bars.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Client calls one spool server as one user.
type Client struct {
	// Server is the server's base URL, e.g. http://127.0.0.1:8080.
	Server string
	// Token is the bearer token sent with every GraphQL request (never
	// with chunk PUTs: their URLs carry their own signature, and may
	// point at a storage service that must not see the token).
	Token string
	// HTTP sends the requests; nil means http.DefaultClient.
	HTTP *http.Client
	// StallTimeout abandons a chunk PUT whose body has gone out no
	// further for this long: 0 means DefaultStallTimeout, below 0 never.
	// On a network path that died silently (a laptop changing networks)
	// nothing fails a write but the kernel's retransmissions, after
	// about a quarter of an hour; this makes it a NoAnswerError, "sending
	// stalled", that is tried again on a new connection.
	StallTimeout time.Duration
}

// DefaultStallTimeout is Client.StallTimeout's default, the web
// uploader's too: a body that sends nothing for a minute is not slow.
const DefaultStallTimeout = time.Minute

// StalledError is why a chunk PUT got no answer: its body went out no
// further for After.
type StalledError struct{ After time.Duration }

func (e *StalledError) Error() string {
	return fmt.Sprintf("sending stalled: nothing went out for %v", e.After)
}

// GraphQLError is the first error a GraphQL answer carries.
type GraphQLError struct {
	Message string
	// Code is extensions.code (UNAUTHENTICATED, QUOTA_EXCEEDED, …; see
	// docs/API.md), empty when the server gave none.
	Code string
	// RetryAfter is extensions.retryAfter: how long the server asks a
	// RATE_LIMITED or UNAVAILABLE caller to wait; 0 when it did not say.
	RetryAfter time.Duration
}

func (e *GraphQLError) Error() string {
	if e.Code == "" {
		return e.Message
	}
	return e.Message + " (" + e.Code + ")"
}

// HTTPError is an answer other than 2xx that carries no GraphQL errors:
// a refused chunk, or a proxy or server failing before GraphQL ran.
type HTTPError struct {
	Status int
	// Code and Message come from the data plane's
	// {"error":{"code":…,"message":…}} body; Message is the start of
	// the body when it is not that.
	Code, Message string
	// RetryAfter is the Retry-After header in seconds (429, 503); 0 when
	// there was none.
	RetryAfter time.Duration
}

func (e *HTTPError) Error() string {
	msg := fmt.Sprintf("HTTP %d", e.Status)
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.Code != "" {
		msg += " (" + e.Code + ")"
	}
	return msg
}

// NoAnswerError is a request that got no answer: the server could not be
// reached, or the connection broke before it answered. Its words name the
// server and the cause, and not the request's URL: a chunk URL's query is
// its signature, a credential until it expires, and does not belong in
// a terminal's scrollback or a bug report.
type NoAnswerError struct {
	// Server is the scheme and host asked ("http://127.0.0.1:8080"; for a
	// direct upload, the storage service's).
	Server string
	// Err is the transport's error.
	Err error
}

func (e *NoAnswerError) Error() string {
	return "no answer from " + e.Server + ": " + e.Reason()
}

// Reason says why in a few words ("connection refused", "no such host",
// "timed out", …), without the server.
func (e *NoAnswerError) Reason() string { return noAnswerReason(e.Err) }

func (e *NoAnswerError) Unwrap() error { return e.Err }

// noAnswer wraps the transport's error for a request that got no answer;
// a request cut short by its own context returns the context's error, as
// the caller stopping is not the server failing, unless a stalled body
// cut it (StalledError).
func noAnswer(req *http.Request, err error) error {
	var stalled *StalledError
	if cause := context.Cause(req.Context()); errors.As(cause, &stalled) {
		err = stalled
	} else if ctxErr := req.Context().Err(); ctxErr != nil {
		return ctxErr
	}
	return &NoAnswerError{Server: req.URL.Scheme + "://" + req.URL.Host, Err: err}
}

// stallWatch is a chunk body that cancels its request, with a
// StalledError, when the transport has taken none of it for a while.
type stallWatch struct {
	r     io.Reader
	timer *time.Timer // nil when not watched
	after time.Duration
}

// watchStall returns a context under ctx for a request and its body,
// which cancels it when the body stops going out; bodies without bytes
// are not watched. stop must be called when the request is done.
func (c *Client) watchStall(ctx context.Context, body io.Reader, hasBytes bool) (context.Context, *stallWatch, func()) {
	after := c.StallTimeout
	if after == 0 {
		after = DefaultStallTimeout
	}
	ctx, cancel := context.WithCancelCause(ctx)
	w := &stallWatch{r: body, after: after}
	if after > 0 && hasBytes {
		w.timer = time.AfterFunc(after, func() { cancel(&StalledError{After: after}) })
	}
	return ctx, w, func() {
		if w.timer != nil {
			w.timer.Stop()
		}
		cancel(nil)
	}
}

func (w *stallWatch) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	if w.timer != nil {
		if err != nil {
			// All of it went out (or the body failed): waiting for the
			// answer is the transport's ResponseHeaderTimeout's business.
			w.timer.Stop()
		} else {
			w.timer.Reset(w.after)
		}
	}
	return n, err
}

// noAnswerReason says why a request got no answer in a few words, for the
// causes people meet; any other keeps the transport's words, less the URL
// that *url.Error would repeat.
func noAnswerReason(err error) string {
	var dns *net.DNSError
	var netErr net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.As(err, &dns) && dns.IsNotFound:
		return "no such host"
	case errors.As(err, &netErr) && netErr.Timeout():
		return "timed out"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		// Still sending the body when the server hung up: the write meets
		// the closed socket, or the connection the transport closed once
		// its reader saw the end (the caller's own ending was noAnswer's).
		errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed):
		return "the connection closed before the answer"
	}
	if u, ok := errors.AsType[*url.Error](err); ok {
		return u.Err.Error()
	}
	return err.Error()
}

// maxAnswer bounds how much of an answer is read: a page of media is far
// smaller, and a misconfigured --server could point at anything.
const maxAnswer = 16 << 20

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return http.DefaultClient
}

// Do runs one GraphQL operation and decodes its data into out; the typed
// methods below are built on it, and it serves any other operation. It returns
// a *GraphQLError when the server answered with errors, an *HTTPError when
// it answered something else than GraphQL, and a *NoAnswerError when it
// could not be reached.
func (c *Client) Do(ctx context.Context, query string, vars map[string]any, out any) error {
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.Server+"/graphql", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return noAnswer(req, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return noAnswer(req, err)
	}
	if resp.StatusCode == http.StatusNotFound {
		// spool always serves /graphql: this is another server, whose
		// page says nothing useful.
		return &HTTPError{Status: resp.StatusCode, Message: c.Server + "/graphql is not there; is --server a spool server?"}
	}
	var answer struct {
		Data   json.RawMessage `json:"data"`
		Errors []struct {
			Message    string `json:"message"`
			Extensions struct {
				Code string `json:"code"`
				// Any JSON: a retryAfter of another type than spool's
				// number is ignored, not a reason to drop the error.
				RetryAfter any `json:"retryAfter"`
			} `json:"extensions"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(raw, &answer); err != nil {
		if resp.StatusCode/100 != 2 {
			return httpError(resp, raw)
		}
		return fmt.Errorf("%s/graphql did not answer GraphQL (%v); is --server a spool server?", c.Server, err)
	}
	if len(answer.Errors) > 0 {
		e := answer.Errors[0]
		secs, _ := e.Extensions.RetryAfter.(float64)
		return &GraphQLError{Message: e.Message, Code: e.Extensions.Code, RetryAfter: seconds(secs)}
	}
	if resp.StatusCode/100 != 2 {
		return httpError(resp, raw)
	}
	if err := json.Unmarshal(answer.Data, out); err != nil {
		return fmt.Errorf("decoding the answer from %s: %w", c.Server, err)
	}
	return nil
}

// httpError reads a data-plane error body, or keeps the start of any
// other body as the message.
func httpError(resp *http.Response, body []byte) *HTTPError {
	// Retry-After in seconds, as spool sends it; an HTTP date (which
	// spool never sends) is left to the backoff.
	secs, _ := strconv.ParseFloat(resp.Header.Get("Retry-After"), 64)
	e := &HTTPError{Status: resp.StatusCode, RetryAfter: seconds(secs)}
	var coded struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if json.Unmarshal(body, &coded) == nil && coded.Error.Code != "" {
		e.Code, e.Message = coded.Error.Code, coded.Error.Message
		return e
	}
	e.Message = strings.TrimSpace(string(body))
	if len(e.Message) > 200 {
		e.Message = e.Message[:200] + "…"
	}
	return e
}

// maxRetryAfter bounds the wait a server's Retry-After may ask for: a
// proxy's or a misconfigured server's hour would otherwise hold an upload
// that long per try.
const maxRetryAfter = time.Minute

// seconds is a Retry-After of s seconds, at most maxRetryAfter; 0 for
// none or nonsense.
func seconds(s float64) time.Duration {
	switch {
	case !(s > 0):
		return 0
	case s >= maxRetryAfter.Seconds():
		return maxRetryAfter // also what would overflow a Duration
	}
	return time.Duration(s * float64(time.Second))
}

// FileInput describes one file to initBatch.
type FileInput struct {
	FileName string `json:"fileName"`
	Size     int64  `json:"size"`
	MimeType string `json:"mimeType"`
	// Fingerprint is a stable key of the file: an unfinished upload with
	// the same one is resumed instead of started again.
	Fingerprint string `json:"fingerprint,omitempty"`
	// SHA256 is the file's hex SHA-256 (see File.Hash): the server checks
	// the assembled file against it, resumes an unfinished upload with the
	// same one, and answers a file the caller already has, READY and of
	// the same size, with a Deduplicated session that needs nothing sent.
	SHA256 string `json:"sha256,omitempty"`
}

// Batch is what initBatch planned.
type Batch struct {
	ID string `json:"id"`
	// Uploads come in the order of the files given.
	Uploads []Upload `json:"uploads"`
}

// Upload is one file's upload as the server planned it.
type Upload struct {
	ID          string `json:"id"`
	FileName    string `json:"fileName"`
	MimeType    string `json:"mimeType"`
	TotalSize   int64  `json:"totalSize"`
	Strategy    string `json:"strategy"`
	ChunkSize   int64  `json:"chunkSize"`
	TotalChunks int    `json:"totalChunks"`
	Status      string `json:"status"`
	// ChunkURLs lists the chunks not yet received, up to the server's
	// cap: Retry lists them all.
	ChunkURLs []ChunkURL `json:"chunkUrls"`
	Progress  Progress   `json:"progress"`
	// Deduplicated is true when the server already had this file (same
	// SHA-256 and size, READY): the upload is COMPLETED at once, Media is
	// that file, and no byte is to be sent.
	Deduplicated bool `json:"deduplicated"`
	// Media is set once the upload is COMPLETED.
	Media *MediaFile `json:"media"`
}

// ChunkURL says where and how to send one chunk: the file's bytes at
// Offset, Size long.
type ChunkURL struct {
	ChunkIndex int       `json:"chunkIndex"`
	URL        string    `json:"url"`
	Method     string    `json:"method"`
	Headers    []Header  `json:"headers"`
	Offset     int64     `json:"offset"`
	Size       int64     `json:"size"`
	ExpiresAt  time.Time `json:"expiresAt"`
}

// Header is one HTTP header a chunk PUT must send.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Progress is how far an upload has come.
type Progress struct {
	Status         string `json:"status"`
	UploadedBytes  int64  `json:"uploadedBytes"`
	TotalBytes     int64  `json:"totalBytes"`
	UploadedChunks int    `json:"uploadedChunks"`
	TotalChunks    int    `json:"totalChunks"`
	FailedChunks   []int  `json:"failedChunks"`
}

// MediaFile is a finished file.
type MediaFile struct {
	ID        string    `json:"id"`
	FileName  string    `json:"fileName"`
	MimeType  string    `json:"mimeType"`
	MediaType string    `json:"mediaType"`
	FileSize  int64     `json:"fileSize"`
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"createdAt"`
	// URL serves the file's bytes (signed and expiring on local disk).
	URL string `json:"url"`
	// Width and Height are in pixels, for images and videos, once the
	// server processed the file; nil until then or when unknown.
	Width  *int `json:"width"`
	Height *int `json:"height"`
	// DurationSeconds is a video's or audio's length: probed once
	// processed, until then what the uploader declared; nil when unknown.
	DurationSeconds *float64 `json:"durationSeconds"`
	// ContentHash is the file's SHA-256, lowercase hex: while PROCESSING
	// the one its upload declared, once processed what the server read;
	// empty when neither is known.
	ContentHash string `json:"contentHash"`
}

const (
	chunkURLFields = `chunkIndex url method headers { name value } offset size expiresAt`
	mediaFields    = `id fileName mimeType mediaType fileSize status createdAt url width height durationSeconds contentHash`
	uploadFields   = `id fileName mimeType totalSize strategy chunkSize totalChunks status
		chunkUrls { ` + chunkURLFields + ` }
		progress { status uploadedBytes totalBytes uploadedChunks totalChunks failedChunks }
		deduplicated media { ` + mediaFields + ` }`
)

// InitBatch plans an upload for each file, resuming the unfinished ones
// whose fingerprint or SHA-256 the server knows, and answering with a
// COMPLETED, Deduplicated upload the files it already has. It returns the server's
// *GraphQLError (BAD_USER_INPUT, BATCH_TOO_LARGE, INVALID_TYPE,
// FILE_TOO_LARGE, QUOTA_EXCEEDED, UNAUTHENTICATED) when it refuses.
func (c *Client) InitBatch(ctx context.Context, files []FileInput) (*Batch, error) {
	var out struct{ InitBatch Batch }
	err := c.Do(ctx, `mutation($in: InitBatchInput!) { initBatch(input: $in) { id uploads { `+uploadFields+` } } }`,
		map[string]any{"in": map[string]any{"files": files}}, &out)
	if err != nil {
		return nil, err
	}
	return &out.InitBatch, nil
}

// RequestChunkURL signs a fresh URL for one chunk. It returns a
// *GraphQLError NOT_FOUND, INVALID_CHUNK, SESSION_EXPIRED or
// ALREADY_FINISHED when the server refuses.
func (c *Client) RequestChunkURL(ctx context.Context, uploadID string, chunkIndex int) (ChunkURL, error) {
	var out struct{ RequestChunkURL ChunkURL }
	err := c.Do(ctx, `mutation($id: ID!, $i: Int!) { requestChunkUrl(uploadId: $id, chunkIndex: $i) { `+chunkURLFields+` } }`,
		map[string]any{"id": uploadID, "i": chunkIndex}, &out)
	return out.RequestChunkURL, err
}

// Retry signs a fresh URL for every chunk the server has not received,
// however many. It returns a *GraphQLError NOT_FOUND, SESSION_EXPIRED or
// ALREADY_FINISHED when the server refuses.
func (c *Client) Retry(ctx context.Context, uploadID string) ([]ChunkURL, error) {
	var out struct{ Retry []ChunkURL }
	err := c.Do(ctx, `mutation($id: ID!) { retry(uploadId: $id) { `+chunkURLFields+` } }`,
		map[string]any{"id": uploadID}, &out)
	return out.Retry, err
}

// Complete assembles an upload whose chunks are all received and returns
// its media; calling it again returns the same media. It returns a
// *GraphQLError INCOMPLETE, NOT_FOUND, SESSION_EXPIRED, ALREADY_FINISHED
// or STORAGE_UNAVAILABLE when the server refuses.
func (c *Client) Complete(ctx context.Context, uploadID string) (MediaFile, error) {
	var out struct{ Complete MediaFile }
	err := c.Do(ctx, `mutation($id: ID!) { complete(uploadId: $id) { `+mediaFields+` } }`,
		map[string]any{"id": uploadID}, &out)
	return out.Complete, err
}

// PutChunk sends one chunk's bytes (exactly u.Size of them) as u says. It
// returns an *HTTPError when the server refuses them: 403 for an expired
// or bad signature, 4xx for a chunk that is wrong, 5xx when trying again
// may help; a *NoAnswerError when it could not be reached.
func (c *Client) PutChunk(ctx context.Context, u ChunkURL, body io.Reader) error {
	method := u.Method
	if method == "" {
		method = http.MethodPut
	}
	ctx, watched, stop := c.watchStall(ctx, body, u.Size > 0)
	defer stop()
	req, err := http.NewRequestWithContext(ctx, method, u.URL, watched)
	if err != nil {
		return err
	}
	req.ContentLength = u.Size
	if u.Size == 0 {
		req.Body = http.NoBody
	}
	for _, h := range u.Headers {
		req.Header.Set(h.Name, h.Value)
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return noAnswer(req, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if resp.StatusCode/100 != 2 {
		return httpError(resp, raw)
	}
	if err != nil {
		return noAnswer(req, err)
	}
	return nil
}

// MediaQuery selects a page of the caller's media.
type MediaQuery struct {
	// First is the page size (the server allows 1 to 100).
	First int
	// After is the cursor of the previous page's end; empty for the first.
	After string
	// MediaType is IMAGE, VIDEO or AUDIO; empty means all.
	MediaType string
	// ContentHash keeps the files with this SHA-256 (lowercase hex);
	// empty means all.
	ContentHash string
	// Statuses keeps the files in one of these (PENDING, PROCESSING,
	// READY, FAILED); empty means all.
	Statuses []string
}

// MediaPage is one page of media, newest first.
type MediaPage struct {
	Media []MediaFile
	// EndCursor continues after this page when HasNextPage.
	EndCursor   string
	HasNextPage bool
	// TotalCount counts every media of the query, not just this page.
	TotalCount int
}

// UserMedia returns a page of the caller's media. It returns a
// *GraphQLError BAD_USER_INPUT (a page size out of range, a bad cursor)
// or UNAUTHENTICATED when the server refuses.
func (c *Client) UserMedia(ctx context.Context, q MediaQuery) (MediaPage, error) {
	vars := map[string]any{"first": q.First}
	if q.After != "" {
		vars["after"] = q.After
	}
	where := map[string]any{}
	if q.MediaType != "" {
		where["mediaType"] = q.MediaType
	}
	if q.ContentHash != "" {
		where["contentHash"] = q.ContentHash
	}
	if len(q.Statuses) > 0 {
		where["statusIn"] = q.Statuses
	}
	if len(where) > 0 {
		vars["where"] = where
	}
	var out struct {
		UserMedia struct {
			Edges []struct {
				Node MediaFile `json:"node"`
			} `json:"edges"`
			PageInfo struct {
				HasNextPage bool    `json:"hasNextPage"`
				EndCursor   *string `json:"endCursor"`
			} `json:"pageInfo"`
			TotalCount int `json:"totalCount"`
		}
	}
	err := c.Do(ctx, `query($first: Int, $after: Cursor, $where: MediaFileWhereInput) {
		userMedia(first: $first, after: $after, where: $where) {
			edges { node { `+mediaFields+` } }
			pageInfo { hasNextPage endCursor }
			totalCount
		} }`, vars, &out)
	if err != nil {
		return MediaPage{}, err
	}
	page := MediaPage{HasNextPage: out.UserMedia.PageInfo.HasNextPage, TotalCount: out.UserMedia.TotalCount}
	if c := out.UserMedia.PageInfo.EndCursor; c != nil {
		page.EndCursor = *c
	}
	for _, e := range out.UserMedia.Edges {
		page.Media = append(page.Media, e.Node)
	}
	return page, nil
}

// IsCode reports whether err is a GraphQL or data-plane error with code.
func IsCode(err error, code string) bool {
	var g *GraphQLError
	var h *HTTPError
	return errors.As(err, &g) && g.Code == code || errors.As(err, &h) && h.Code == code
}
