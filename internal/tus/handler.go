// Package tus is spool's tus 1.0 endpoint (https://tus.io/protocols/
// resumable-upload), at /files/: tus clients (Uppy, tus-js-client, the
// tus clients for iOS, Android, Python and Go) upload to spool unchanged.
// tusd's handler (github.com/tus/tusd/v2/pkg/handler) speaks the
// protocol; Store, a tusd data store written over upload.Service, makes
// each tus upload a spool upload (docs/DESIGN.md §tus). This package
// adds around tusd what tusd lacks: the bearer token on every request, a
// strict Upload-Metadata, the checksum and expiration extensions, and
// spool's error codes.
package tus

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/tus/tusd/v2/pkg/memorylocker"
	xslog "golang.org/x/exp/slog"

	"github.com/spoolhq/spool/internal/reqlog"
	"github.com/spoolhq/spool/internal/upload"
)

// Version is the tus protocol version spool speaks.
const Version = "1.0.0"

// checksumAlgorithms are the algorithms of Upload-Checksum spool verifies
// (Tus-Checksum-Algorithm), as one comma-separated list.
const checksumAlgorithms = "crc32c,md5,sha1,sha256"

// checksumMismatchStatus is the tus checksum extension's answer to a
// body whose checksum does not match.
const checksumMismatchStatus = 460

// Response headers spool adds to tus's (CORS exposes them).
const (
	// HeaderMediaID names the MediaFile a completed upload produced, on
	// the answer to the PATCH that completed it, to a HEAD after it and
	// to the POST of a final (concatenated) upload.
	HeaderMediaID = "Spool-Media-Id"
	// HeaderExpires is the expiration extension's: when an unfinished
	// upload expires (RFC 7231 date).
	HeaderExpires = "Upload-Expires"
)

// Config is what the endpoint needs from the rest of spool.
type Config struct {
	Uploads *upload.Service
	// BaseURL is the endpoint's public URL, ending in /files/; tus
	// clients are given upload URLs under it (Location).
	BaseURL string
	// Authenticate returns the user a request's bearer token names:
	// UNAUTHENTICATED for a missing or bad token, UNAVAILABLE when it
	// could not be checked.
	Authenticate func(r *http.Request) (userID string, err error)
	// Admit, if set, is asked once per request (but OPTIONS), once its
	// user is known; RATE_LIMITED refuses it with 429 and Retry-After.
	Admit upload.Admitter
	// Status is the HTTP status of each error code (the data plane's
	// table); CHECKSUM_MISMATCH answers tus's 460 instead.
	Status func(upload.Code) int
	// Logger is for server failures (5xx), logged once each.
	Logger *slog.Logger
}

// Handler serves the tus endpoint. Mount it at /files/ with the prefix
// stripped (http.StripPrefix("/files", h)).
type Handler struct {
	cfg   Config
	store *Store
	tusd  *handler.Handler
}

// New returns the endpoint's handler. It fails only for a BaseURL tusd
// cannot parse.
func New(cfg Config) (*Handler, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	store := &Store{uploads: cfg.Uploads, status: cfg.Status, log: cfg.Logger}
	composer := handler.NewStoreComposer()
	composer.UseCore(store)
	composer.UseTerminater(store)
	composer.UseConcater(store)
	// Per replica: a PATCH arriving here for an upload another PATCH is
	// writing here interrupts that one (tusd's rule for a client that
	// resumed before the server noticed its first request broke).
	// Across replicas the service's offset check keeps appends in order.
	memorylocker.New().UseIn(composer)
	tusd, err := handler.NewHandler(handler.Config{
		StoreComposer: composer,
		BasePath:      cfg.BaseURL,
		// Finished files are served by /media/ (signed URLs from GraphQL).
		DisableDownload: true,
		// CORS is spool's (httpapi), for every route alike.
		Cors: &handler.CorsConfig{Disable: true},
		// tusd's own read deadlines are kept out of the way: spool cuts
		// stalled bodies itself (Limits.BodyIdleTimeout), and lifts its
		// deadline once a body has ended, which tusd does not.
		NetworkTimeout: 24 * time.Hour,
		// tusd logs every request at Info through golang.org/x/exp/slog;
		// spool logs the failures it answers (writeError, Store).
		Logger: xslog.New(xslog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return nil, fmt.Errorf("tus: %w", err)
	}
	return &Handler{cfg: cfg, store: store, tusd: tusd}, nil
}

// ServeHTTP checks what tusd does not (the token, the rate limit,
// Upload-Metadata, Upload-Checksum), then lets tusd run the request with
// the caller and the request's facts in its context, for Store.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Tus-Resumable", Version)
	method := r.Method
	if override := r.Header.Get("X-HTTP-Method-Override"); method == http.MethodPost && override != "" {
		method = override // tusd honours it too
	}
	if method == http.MethodOptions {
		h.discovery(w)
		return
	}
	uid, err := h.cfg.Authenticate(r)
	if err != nil {
		if upload.ErrorCode(err) == upload.CodeUnauthenticated {
			w.Header().Set("WWW-Authenticate", `Bearer realm="spool"`)
		}
		h.writeError(w, r, err)
		return
	}
	reqlog.SetUser(r.Context(), uid)
	if id := strings.Trim(r.URL.Path, "/"); id != "" {
		reqlog.SetUpload(r.Context(), id)
	}
	if h.cfg.Admit != nil {
		if err := h.cfg.Admit.Admit(r.Context(), uid); err != nil {
			h.writeError(w, r, err)
			return
		}
	}
	req := &request{method: method, header: w.Header(), contentLength: r.ContentLength}
	if method == http.MethodPost || method == http.MethodPatch {
		if req.expect, err = parseChecksum(r.Header.Get("Upload-Checksum")); err != nil {
			h.writeError(w, r, err)
			return
		}
	}
	if method == http.MethodPost {
		if _, err := ParseMetadata(r.Header.Get("Upload-Metadata")); err != nil {
			h.writeError(w, r, err)
			return
		}
		if concat := r.Header.Get("Upload-Concat"); strings.HasPrefix(concat, "final;") {
			r.Header.Set("Upload-Concat", h.finalConcat(concat))
		}
	}
	if r.Body != nil && r.Body != http.NoBody {
		req.body = &watchedBody{r: r.Body}
		r.Body = req.body
	}
	ctx := withRequest(upload.WithCaller(r.Context(), uid), req)
	h.tusd.ServeHTTP(w, r.WithContext(ctx))
}

// discovery answers OPTIONS (tus's discovery) without a token: what the
// server speaks, with the extensions spool adds to tusd's.
func (h *Handler) discovery(w http.ResponseWriter) {
	hd := w.Header()
	hd.Set("Tus-Version", Version)
	hd.Set("Tus-Extension", h.tusd.SupportedExtensions()+",checksum,expiration")
	hd.Set("Tus-Checksum-Algorithm", checksumAlgorithms)
	var largest int64
	for _, limit := range h.cfg.Uploads.Config().MaxSize {
		largest = max(largest, limit)
	}
	hd.Set("Tus-Max-Size", strconv.FormatInt(largest, 10))
	w.WriteHeader(http.StatusNoContent)
}

// finalConcat rewrites the upload URLs of an Upload-Concat: final header
// under BaseURL: tusd finds upload ids by cutting BaseURL out of them, so
// a URL naming this server otherwise (another host name, a relative path)
// would not be found.
func (h *Handler) finalConcat(header string) string {
	var urls []string
	for u := range strings.FieldsSeq(strings.TrimPrefix(header, "final;")) {
		if _, id, ok := strings.Cut(u, "/files/"); ok {
			u = strings.TrimRight(h.cfg.BaseURL, "/") + "/" + strings.Trim(id, "/")
		}
		urls = append(urls, u)
	}
	return "final;" + strings.Join(urls, " ")
}

// writeError answers a request refused before tusd ran, in tusd's shape
// ("CODE: message", text/plain, with its length, as tusd's own answers)
// with spool's code and the status of the one table.
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e := h.store.tusError(r.Context(), r.Method+" "+r.URL.Path, err)
	for k, v := range e.HTTPResponse.Header {
		w.Header().Set(k, v)
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(e.HTTPResponse.Body)))
	w.WriteHeader(e.HTTPResponse.StatusCode)
	if r.Method != http.MethodHead {
		_, _ = io.WriteString(w, e.HTTPResponse.Body)
	}
}

// request is what the endpoint learnt of one request before tusd ran,
// for Store's methods, which tusd calls with the request's context.
type request struct {
	method        string // after X-HTTP-Method-Override
	header        http.Header
	contentLength int64
	expect        []upload.Digest
	body          *watchedBody // nil without a body
}

type requestKey struct{}

func withRequest(ctx context.Context, r *request) context.Context {
	return context.WithValue(ctx, requestKey{}, r)
}

// requestOf returns the request's facts; Store is only reached through
// Handler, so a context without them is a bug.
func requestOf(ctx context.Context) (*request, error) {
	if r, ok := ctx.Value(requestKey{}).(*request); ok {
		return r, nil
	}
	return nil, errors.New("tus: store called outside tus.Handler")
}

// watchedBody notes how a request body ended. tusd hands the store a
// body that ends with io.EOF whatever happened (the client's connection
// broke, a read timed out, tusd stopped it), so this, read under tusd's,
// tells Store which.
type watchedBody struct {
	r      io.ReadCloser
	ended  bool  // the client sent all of it
	broken error // the first read error other than io.EOF
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	switch {
	case err == io.EOF:
		b.ended = true
	case err != nil && b.broken == nil:
		b.broken = err
	}
	return n, err
}

func (b *watchedBody) Close() error { return b.r.Close() }

// errBodyStopped is what the service is told when tusd stopped reading a
// body the client had not ended (another request took the upload over,
// or the body ran past the upload's size).
var errBodyStopped = errors.New("the request body was stopped before its end")

// endOf is what the service should be told when tusd's body ends: io.EOF
// if the client sent it all, else why it did not.
func (b *watchedBody) endOf() error {
	switch {
	case b == nil || b.ended:
		return io.EOF
	case b.broken != nil:
		return b.broken
	}
	return errBodyStopped
}

// ParseMetadata parses an Upload-Metadata header strictly, as the tus
// creation extension writes it: comma-separated pairs of a key (not
// empty, no spaces or commas, unique) and an optional value in standard
// base64, which must decode to UTF-8 text. tusd skips what it cannot
// parse; spool refuses it with BAD_USER_INPUT, so a client's mistake is
// not taken for a missing value.
func ParseMetadata(header string) (map[string]string, error) {
	meta := map[string]string{}
	if strings.TrimSpace(header) == "" {
		return meta, nil
	}
	for pair := range strings.SplitSeq(header, ",") {
		pair = strings.TrimSpace(pair)
		key, value, _ := strings.Cut(pair, " ")
		switch {
		case key == "":
			return nil, upload.Errorf(upload.CodeBadUserInput, "Upload-Metadata has an empty key; write it as key base64value,key2 base64value2")
		case strings.ContainsAny(value, " \t"):
			return nil, upload.Errorf(upload.CodeBadUserInput, "Upload-Metadata %q: a key and its base64 value are separated by one space, and a key has none", key)
		}
		if _, twice := meta[key]; twice {
			return nil, upload.Errorf(upload.CodeBadUserInput, "Upload-Metadata gives %q twice", key)
		}
		decoded, err := base64.StdEncoding.DecodeString(value)
		if err != nil {
			return nil, upload.Errorf(upload.CodeBadUserInput, "Upload-Metadata %q: the value is not standard base64", key)
		}
		if !utf8.Valid(decoded) {
			return nil, upload.Errorf(upload.CodeBadUserInput, "Upload-Metadata %q: the value is not UTF-8 text", key)
		}
		meta[key] = string(decoded)
	}
	return meta, nil
}

// parseChecksum parses an Upload-Checksum header (checksum extension):
// "<algorithm> <base64 sum>". An algorithm spool does not verify, or a
// malformed header, is BAD_USER_INPUT (tus: 400); no header is no digest.
func parseChecksum(header string) ([]upload.Digest, error) {
	if header == "" {
		return nil, nil
	}
	fields := strings.Fields(header)
	if len(fields) != 2 {
		return nil, upload.Errorf(upload.CodeBadUserInput, "Upload-Checksum must be \"<algorithm> <base64 checksum>\"")
	}
	alg := strings.ToLower(fields[0])
	if !slices.Contains(strings.Split(checksumAlgorithms, ","), alg) {
		return nil, upload.Errorf(upload.CodeBadUserInput, "Upload-Checksum algorithm %q is not supported; use one of %s",
			fields[0], strings.ReplaceAll(checksumAlgorithms, ",", ", "))
	}
	sum, err := base64.StdEncoding.DecodeString(fields[1])
	if err != nil {
		return nil, upload.Errorf(upload.CodeBadUserInput, "Upload-Checksum: the %s checksum is not standard base64", alg)
	}
	d, err := upload.ParseDigest(alg + ":" + hex.EncodeToString(sum))
	if err != nil {
		return nil, upload.Errorf(upload.CodeBadUserInput, "Upload-Checksum: %s", upload.ErrorMessage(err))
	}
	return []upload.Digest{d}, nil
}
