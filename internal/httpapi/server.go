// Package httpapi is spool's HTTP surface: the data plane that takes chunk
// bytes and serves finished files (docs/DESIGN.md §Data plane), the
// GraphQL endpoint's middleware (auth, CORS, body limits) and health
// checks. It maps domain errors to HTTP statuses in one table.
package httpapi

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/cors"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/spoolhq/spool/internal/auth"
	"github.com/spoolhq/spool/internal/metrics"
	"github.com/spoolhq/spool/internal/ratelimit"
	"github.com/spoolhq/spool/internal/reqlog"
	"github.com/spoolhq/spool/internal/signing"
	"github.com/spoolhq/spool/internal/tus"
	"github.com/spoolhq/spool/internal/upload"
)

// Authenticator turns an Authorization header value into a user id. A
// missing or bad token is an error wrapping auth.ErrInvalidToken; any
// other error is the server's failure (UNAVAILABLE when the database
// could not be reached), never the caller's.
type Authenticator interface {
	Authenticate(ctx context.Context, authorization string) (userID string, err error)
}

// Options configure the HTTP surface.
type Options struct {
	Uploads *upload.Service
	URLs    *URLSigner
	Auth    Authenticator
	// GraphQL serves /graphql; requests reach it with the caller (if any)
	// in their context.
	GraphQL http.Handler
	// AllowedOrigins are the browser origins allowed cross-origin (CORS);
	// "*" allows any. The server's own origin needs no entry.
	AllowedOrigins []string
	// Ready reports whether the server can take requests (for /healthz).
	Ready func() bool
	// Draining reports whether the server is draining before it stops:
	// /readyz answers 503 ("draining") so load balancers stop sending
	// requests here, /healthz stays 200 (the process is alive and
	// finishing its work), and every response carries Connection: close
	// so clients open their next connection elsewhere. Nil means never.
	Draining func() bool
	// Checks probe each engine for /readyz, by name ("database", …).
	Checks map[string]func(ctx context.Context) error
	// MaxMultipartBody bounds a GraphQL multipart request (uploadImage)
	// as a whole; zero means 11 MiB.
	MaxMultipartBody int64
	// Pages serves the web pages (the uploader at /, GraphiQL at
	// /graphiql and their assets); nil serves none.
	Pages http.Handler
	// Metrics records the data plane's chunk PUTs; nil records nothing.
	Metrics *metrics.Metrics
	// MetricsHandler serves GET /metrics; nil serves none there (metrics
	// served on a listener of their own, or not at all).
	MetricsHandler http.Handler
	// Logger is for lines about requests; they are written with the
	// request's context, which carries its request id (reqlog).
	Logger *slog.Logger
	// TracerProvider, when set, makes each request a span (otelhttp),
	// the parent of everything done for it; nil traces nothing.
	TracerProvider trace.TracerProvider
	// Propagator reads an incoming trace context (W3C traceparent); nil
	// reads none.
	Propagator propagation.TextMapPropagator
	// Limits bound what one user or one upload may ask of the data
	// plane; the zero value bounds nothing.
	Limits Limits
}

// Limits bound the data plane's requests (docs/CONFIG.md, "Limits").
type Limits struct {
	// Requests is each user's budget of data-plane requests: chunk PUTs
	// (asked once the upload's owner is known, before the body is read)
	// and HEADs. Nil means no budget.
	Requests upload.Admitter
	// MaxParallelChunks bounds the chunk PUTs running at once for one
	// upload, in this process; one more is refused with 429 RATE_LIMITED,
	// not queued. Zero means no bound.
	MaxParallelChunks int
	// BodyIdleTimeout cuts off a chunk body that sends no byte for this
	// long: the chunk is recorded failed and the answer is 408
	// REQUEST_TIMEOUT. A media or thumbnail download whose client takes
	// no byte for this long is cut off too. Zero means never.
	BodyIdleTimeout time.Duration
}

// maxGraphQLBody bounds a GraphQL request that is not multipart; chunk
// bodies are bounded by their chunk size instead.
const maxGraphQLBody = 1 << 20

// New returns the handler for every route spool serves.
func New(o Options) http.Handler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxMultipartBody == 0 {
		o.MaxMultipartBody = 11 << 20
	}
	h := &handlers{Options: o, chunksRunning: ratelimit.NewSlots(o.Limits.MaxParallelChunks)}
	mux := http.NewServeMux()
	mux.Handle("PUT /uploads/{id}/chunks/{index}", yieldAfterBytes(http.HandlerFunc(h.putSignedChunk)))
	mux.Handle("PUT /uploads/{id}", yieldAfterBytes(http.HandlerFunc(h.putRange)))
	mux.HandleFunc("HEAD /uploads/{id}", h.headUpload)
	mux.HandleFunc("GET /media/{id}/{name}", h.getMedia)
	mux.HandleFunc("GET /media/{id}/thumbnails/{n}", h.getThumbnail)
	// tus (docs/API.md, "tus"): every method, under /files/ and at
	// /files itself (a POST must not be redirected).
	tusEndpoint := yieldAfterBytes(idleBodies(http.StripPrefix("/files", h.tusEndpoint()), o.Limits.BodyIdleTimeout))
	mux.Handle("/files/", tusEndpoint)
	mux.Handle("/files", tusEndpoint)
	mux.HandleFunc("GET /healthz", h.healthz)
	mux.HandleFunc("GET /readyz", h.readyz)
	if o.MetricsHandler != nil {
		mux.Handle("GET /metrics", o.MetricsHandler)
	}
	graphQL := idleBodies(limitBody(o.GraphQL, o.MaxMultipartBody), o.Limits.BodyIdleTimeout)
	mux.Handle("/graphql", requirePreflight(h.withCaller(graphQL)))
	if o.Pages != nil {
		// Every path no route above claims; Pages answers 404 itself.
		mux.Handle("/", o.Pages)
	}
	var root http.Handler = closeWhileDraining(corsFor(o.AllowedOrigins).Handler(mux), o.Draining)
	if o.TracerProvider != nil {
		root = traced(root, o.TracerProvider, o.Propagator)
	}
	return reqlog.Middleware(root)
}

// tusEndpoint is the tus endpoint (internal/tus) with the data plane's
// token check, request budget and status table.
func (h *handlers) tusEndpoint() http.Handler {
	base := "/files/"
	if h.URLs != nil {
		base = h.URLs.base + base
	}
	endpoint, err := tus.New(tus.Config{
		Uploads: h.Uploads, BaseURL: base, Authenticate: h.tokenUser, Admit: h.Limits.Requests,
		Status: httpStatus, Logger: h.Logger,
	})
	if err != nil {
		// base is the public URL, checked when the config was read.
		panic(err)
	}
	return endpoint
}

// tokenUser returns the user of a request's bearer token:
// UNAUTHENTICATED for a missing or bad token, or the error that kept it
// from being checked (UNAVAILABLE: 503 with Retry-After), which says
// nothing about the token.
func (h *handlers) tokenUser(r *http.Request) (string, error) {
	uid, err := h.Auth.Authenticate(r.Context(), r.Header.Get("Authorization"))
	if err != nil && errors.Is(err, auth.ErrInvalidToken) {
		if reason := auth.Refusal(err); reason != "" {
			return "", upload.RefusedToken(reason)
		}
		return "", upload.Errorf(upload.CodeUnauthenticated, "send a bearer token in the Authorization header")
	}
	return uid, err
}

// traced makes each request a span named after its route ("PUT
// /uploads/{id}/chunks/{index}"). spool faces browsers and scripts, not
// only services of its own: a client's traceparent is recorded as a link,
// not taken as the parent, so a client can neither join spool's spans to
// its own trace nor force them to be sampled.
func traced(next http.Handler, tp trace.TracerProvider, prop propagation.TextMapPropagator) http.Handler {
	if prop == nil {
		prop = propagation.NewCompositeTextMapPropagator()
	}
	return otelhttp.NewHandler(next, "spool",
		otelhttp.WithTracerProvider(tp),
		otelhttp.WithPropagators(prop),
		otelhttp.WithPublicEndpointFn(func(*http.Request) bool { return true }),
		// Request metrics are not collected through OpenTelemetry.
		otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()),
	)
}

// closeWhileDraining sets Connection: close on every response while
// draining, so net/http closes each connection after its response and
// the client's next request opens a new connection, which the load
// balancer sends elsewhere. Idle connections are left open until the
// drain's grace ends (http.Server.SetKeepAlivesEnabled(false) would close
// them at once, under a request a client may have just sent on one).
func closeWhileDraining(next http.Handler, draining func() bool) http.Handler {
	if draining == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if draining() {
			w.Header().Set("Connection", "close")
		}
		next.ServeHTTP(w, r)
	})
}

type handlers struct {
	Options
	// chunksRunning counts the chunk PUTs running per upload id.
	chunksRunning *ratelimit.Slots
}

// withCaller puts the bearer token's user into the request context. A
// missing or bad token leaves the request anonymous: every GraphQL field
// then answers UNAUTHENTICATED, as over websockets, saying why a token
// sent was refused. It also passes on the request's browser origin, if
// allowed, for the storage sessions opened for that page (direct
// uploads).
func (h *handlers) withCaller(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if header := r.Header.Get("Authorization"); header != "" {
			uid, err := h.Auth.Authenticate(r.Context(), header)
			switch {
			case err == nil:
				reqlog.SetUser(r.Context(), uid)
				r = r.WithContext(upload.WithCaller(r.Context(), uid))
			case errors.Is(err, auth.ErrInvalidToken):
				if reason := auth.Refusal(err); reason != "" {
					r = r.WithContext(upload.WithRefusedToken(r.Context(), reason))
				}
			default:
				// The token could not be checked (the database is
				// down): answering as if it were bad would tell the
				// client to drop a good one.
				h.refuseGraphQL(w, r, err)
				return
			}
		}
		if origin := r.Header.Get("Origin"); origin != "" && originAllowed(origin, r.Host, h.AllowedOrigins) {
			r = r.WithContext(upload.WithOrigin(r.Context(), origin))
		}
		next.ServeHTTP(w, r)
	})
}

// originAllowed reports whether a browser origin may use spool: the
// server's own, or one of the allowed ("*" allows any). The rule is the
// one CORS and websocket upgrades apply.
func originAllowed(origin, host string, allowed []string) bool {
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" {
		return false // "null" (sandboxed pages, files) among others
	}
	return slices.Contains(allowed, "*") || slices.Contains(allowed, origin) || strings.EqualFold(u.Host, host)
}

// limitBody bounds GraphQL request bodies: one over the limit is refused
// with 413 REQUEST_TOO_LARGE, whether its length is declared (before a
// byte is read) or not (chunked: once reading runs past the limit). The
// GraphQL handler reads the whole body before it runs an operation, so
// none runs; what it would answer to the failed read (a GraphQL error
// with HTTP 200 or 422) is replaced by the 413.
func limitBody(next http.Handler, maxMultipart int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit := int64(maxGraphQLBody)
		if isMultipart(r) {
			limit = maxMultipart
		}
		if r.ContentLength > limit {
			writeGraphQLError(w, upload.Errorf(upload.CodeRequestTooLarge,
				"the request body is %d bytes; at most %d are taken here", r.ContentLength, limit))
			return
		}
		body := &limitedBody{ReadCloser: http.MaxBytesReader(w, r.Body, limit)}
		r.Body = body
		if r.ContentLength >= 0 {
			// A declared length within the limit cannot run past it.
			next.ServeHTTP(w, r)
			return
		}
		ow := &overLimitWriter{ResponseWriter: w, body: body, refusal: upload.Errorf(upload.CodeRequestTooLarge,
			"the request body is over the %d bytes taken here", limit)}
		next.ServeHTTP(ow, r)
		ow.refuse() // in case the handler answered nothing
	})
}

// limitedBody notes when the body it reads runs past its limit.
type limitedBody struct {
	io.ReadCloser // an http.MaxBytesReader
	overLimit     bool
}

func (b *limitedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		b.overLimit = true
	}
	return n, err
}

// overLimitWriter answers refusal in place of the handler's answer once
// body has run past its limit, unless the handler had already begun
// answering.
type overLimitWriter struct {
	http.ResponseWriter
	body    *limitedBody
	refusal *upload.Error
	wrote   bool // the handler's answer, or the refusal, has begun
	refused bool
}

func (w *overLimitWriter) WriteHeader(status int) {
	if w.refuse() {
		return
	}
	w.wrote = true
	w.ResponseWriter.WriteHeader(status)
}

func (w *overLimitWriter) Write(p []byte) (int, error) {
	if w.refuse() {
		return len(p), nil // dropped: the client gets the refusal
	}
	w.wrote = true
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *overLimitWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// refuse writes the refusal if the body ran past its limit before
// anything was answered, and reports whether the refusal is the answer.
func (w *overLimitWriter) refuse() bool {
	if w.refused {
		return true
	}
	if w.wrote || !w.body.overLimit {
		return false
	}
	w.refused, w.wrote = true, true
	writeGraphQLError(w.ResponseWriter, w.refusal)
	return true
}

// requirePreflight refuses the GraphQL POSTs that any web page can make a
// browser send without asking first (a form's multipart/form-data,
// application/x-www-form-urlencoded or text/plain), unless they carry a
// header that only a CORS-preflighted request can have. spool's bearer
// tokens are not sent by browsers on their own, but deployments that put
// a cookie-checking proxy in front would be open to cross-site uploads
// without this; it is the rule Apollo Server applies, so Apollo and
// apollo-upload-client users already send the header.
func requirePreflight(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && isSimpleContentType(r) && !hasPreflightHeader(r) {
			writeGraphQLError(w, upload.Errorf(upload.CodePreflightRequired,
				"this request could have been sent by any web page (CSRF): send it with an "+
					"Apollo-Require-Preflight: true (or X-Apollo-Operation-Name) header"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func isMultipart(r *http.Request) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return strings.HasPrefix(mt, "multipart/")
}

// isSimpleContentType reports a content type a cross-site form or fetch
// may send without a CORS preflight; a missing or unparsable one counts,
// as browsers send text/plain then.
func isSimpleContentType(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return true
	}
	switch strings.ToLower(mt) {
	case "multipart/form-data", "application/x-www-form-urlencoded", "text/plain":
		return true
	}
	return false
}

func hasPreflightHeader(r *http.Request) bool {
	for _, name := range []string{"Apollo-Require-Preflight", "X-Apollo-Operation-Name", "GraphQL-Preflight"} {
		if r.Header.Get(name) != "" {
			return true
		}
	}
	return false
}

// refuseGraphQL answers a GraphQL request that failed before GraphQL ran
// for the server's reason err: UNAVAILABLE with Retry-After (and
// extensions.retryAfter) when the database could not be reached, else
// INTERNAL, logged.
func (h *handlers) refuseGraphQL(w http.ResponseWriter, r *http.Request, err error) {
	code := upload.ErrorCode(err)
	if code != upload.CodeUnavailable {
		h.Logger.Error("GraphQL request failed before it ran", "path", r.URL.Path, "err", err)
		writeGraphQLError(w, upload.Errorf(upload.CodeInternal, "internal error"))
		return
	}
	h.Uploads.NoteUnavailable("authenticating "+r.Method+" "+r.URL.Path, err)
	retry := setRetryAfter(w, err)
	writeJSON(w, httpStatus(code), map[string]any{"errors": []map[string]any{{
		"message":    upload.ErrorMessage(err),
		"extensions": map[string]any{"code": string(code), "retryAfter": retry},
	}}})
}

// setRetryAfter sets the Retry-After header to err's wait, in whole
// seconds rounded up, and returns it; zero (no header) when err has none.
func setRetryAfter(w http.ResponseWriter, err error) int64 {
	secs := upload.RetryAfterSeconds(err)
	if secs > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	return secs
}

// writeGraphQLError answers a request refused before it reached GraphQL
// in the GraphQL response shape, so GraphQL clients show the message and
// code like any other error; the status comes from the one table.
func writeGraphQLError(w http.ResponseWriter, e *upload.Error) {
	setRetryAfter(w, e)
	writeJSON(w, httpStatus(e.Code), map[string]any{"errors": []map[string]any{
		{"message": e.Message, "extensions": map[string]string{"code": string(e.Code)}},
	}})
}

func corsFor(allowed []string) *cors.Cors {
	var onlyListed func(string) bool
	if len(allowed) == 0 {
		// rs/cors takes an empty list as "allow any origin"; ours means
		// none besides the server's own, as for websockets.
		onlyListed = func(string) bool { return false }
	}
	return cors.New(cors.Options{
		AllowedOrigins:  allowed,
		AllowOriginFunc: onlyListed,
		AllowedMethods: []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodOptions,
			http.MethodPatch, http.MethodDelete},
		AllowedHeaders: []string{"Authorization", "Content-Type", "Content-Range", "Content-MD5", "X-Goog-Hash",
			"Apollo-Require-Preflight", "X-Apollo-Operation-Name", "Graphql-Preflight", reqlog.Header,
			// tus
			"Tus-Resumable", "Upload-Length", "Upload-Offset", "Upload-Metadata", "Upload-Concat",
			"Upload-Checksum", "Upload-Defer-Length", "X-HTTP-Method-Override", "X-Requested-With"},
		ExposedHeaders: []string{"Range", "Spool-Upload-Status", "Spool-Uploaded-Bytes", "Spool-Total-Bytes",
			"Spool-Received-Chunks", "Spool-Chunk-Size", "Content-Range", "Content-Length", "Retry-After", reqlog.Header,
			// tus
			"Location", "Tus-Resumable", "Tus-Version", "Tus-Extension", "Tus-Max-Size", "Tus-Checksum-Algorithm",
			"Upload-Offset", "Upload-Length", "Upload-Metadata", "Upload-Concat", tus.HeaderExpires, tus.HeaderMediaID},
		AllowCredentials: false,
		MaxAge:           600,
	})
}

func (h *handlers) healthz(w http.ResponseWriter, r *http.Request) {
	if h.Ready != nil && !h.Ready() && !h.draining() {
		http.Error(w, "starting", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

// readyz reports each engine's health and answers 503 when one is down,
// so a load balancer stops sending traffic to this replica; /healthz
// stays a liveness check.
func (h *handlers) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if h.draining() {
		// At once, without probing the engines: this replica is going.
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"server": "draining"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	report := map[string]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, check := range h.Checks {
		wg.Go(func() {
			state := "ok"
			if err := check(ctx); err != nil {
				state = "down: " + err.Error()
			}
			mu.Lock()
			report[name] = state
			mu.Unlock()
		})
	}
	wg.Wait()
	status := http.StatusOK
	if h.Ready != nil && !h.Ready() {
		report["server"], status = "starting", http.StatusServiceUnavailable
	}
	for _, state := range report {
		if state != "ok" {
			status = http.StatusServiceUnavailable
		}
	}
	writeJSON(w, status, report)
}

func (h *handlers) draining() bool { return h.Draining != nil && h.Draining() }

// URLSigner makes and checks the signed URLs of spool's data plane. It
// implements upload.Signer.
type URLSigner struct {
	base   string // e.g. "http://127.0.0.1:8080", no trailing slash
	signer *signing.Signer
}

var _ upload.Signer = (*URLSigner)(nil)

// NewURLSigner signs URLs under base (the server's public URL).
func NewURLSigner(base string, signer *signing.Signer) *URLSigner {
	return &URLSigner{base: strings.TrimRight(base, "/"), signer: signer}
}
