// Package reqlog ties log lines to the request they were written for.
// Middleware gives each HTTP request an id and a holder in its context;
// the code that learns who the caller is, or which upload the request is
// about, records it there (SetUser, SetUpload); and Handler, wrapped
// around the process's slog.Handler, adds request_id, user_id, upload_id
// and the trace's trace_id to every line logged with that context
// (log.InfoContext(ctx, …)), including lines written after those facts
// were learnt deeper in the call.
package reqlog

import (
	"context"
	"crypto/rand"
	"log/slog"
	"net/http"
	"sync"

	"go.opentelemetry.io/otel/trace"
)

// Log attribute keys added from the context.
const (
	KeyRequestID = "request_id"
	KeyUserID    = "user_id"
	KeyUploadID  = "upload_id"
	KeyTraceID   = "trace_id"
)

// Header carries the request id: taken from the request when it is sane,
// and always set on the response.
const Header = "X-Request-Id"

// MaxRequestIDLength bounds a request id taken from a client; a longer
// one is replaced.
const MaxRequestIDLength = 128

// fields is one request's holder. The request id never changes; the user
// and upload are learnt as the request goes, possibly from concurrently
// running resolvers, hence the lock.
type fields struct {
	requestID string
	mu        sync.Mutex
	userID    string
	uploadID  string
}

type fieldsKey struct{}

func from(ctx context.Context) *fields {
	f, _ := ctx.Value(fieldsKey{}).(*fields)
	return f
}

// WithRequestID returns a context with a fresh holder for the request id.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, fieldsKey{}, &fields{requestID: id})
}

// Fork returns a context with a holder of its own that starts with the
// request id and user of ctx's: the operations of one websocket each
// learn their own upload, while sharing the socket's request id and
// user.
func Fork(ctx context.Context) context.Context {
	f := from(ctx)
	if f == nil {
		return ctx
	}
	f.mu.Lock()
	child := &fields{requestID: f.requestID, userID: f.userID}
	f.mu.Unlock()
	return context.WithValue(ctx, fieldsKey{}, child)
}

// RequestID returns the request id in ctx, or "".
func RequestID(ctx context.Context) string {
	if f := from(ctx); f != nil {
		return f.requestID
	}
	return ""
}

// SetUser records the authenticated (or owning) user of the request in
// ctx's holder, so lines logged from then on carry user_id. Without a
// holder (background work) it does nothing.
func SetUser(ctx context.Context, userID string) {
	if f := from(ctx); f != nil && userID != "" {
		f.mu.Lock()
		f.userID = userID
		f.mu.Unlock()
	}
}

// SetUpload records the upload the request is about, so lines logged from
// then on carry upload_id. Without a holder it does nothing.
func SetUpload(ctx context.Context, uploadID string) {
	if f := from(ctx); f != nil && uploadID != "" {
		f.mu.Lock()
		f.uploadID = uploadID
		f.mu.Unlock()
	}
}

// Middleware gives each request a request id, in its context (with an
// empty holder for user and upload) and in the response's X-Request-Id
// header. A client's own X-Request-Id is kept when it is sane (see
// ValidRequestID), so a proxy's id runs through; otherwise a new one is
// made.
func Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(Header)
		if !ValidRequestID(id) {
			id = NewRequestID()
		}
		w.Header().Set(Header, id)
		next.ServeHTTP(w, r.WithContext(WithRequestID(r.Context(), id)))
	})
}

// NewRequestID returns a random id: 26 base32 characters, 128 bits.
func NewRequestID() string { return rand.Text() }

// ValidRequestID reports whether a client's request id may be logged as
// it is: 1 to MaxRequestIDLength characters of letters, digits and
// - _ . : = + / @ (enough for UUIDs, ULIDs and the ids of common proxies
// and load balancers). Anything else (control characters, spaces,
// quotes, non-ASCII) could forge or garble log lines, and is replaced.
func ValidRequestID(id string) bool {
	if id == "" || len(id) > MaxRequestIDLength {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-', c == '_', c == '.', c == ':', c == '=', c == '+', c == '/', c == '@':
		default:
			return false
		}
	}
	return true
}

// Handler adds the context's request fields to each record it passes on.
// A key the line already has (from the call or from Logger.With) is not
// added again.
type Handler struct {
	inner slog.Handler
	// has marks the request keys that WithAttrs already attached.
	has keySet
}

// keySet marks which of the four request keys are present.
type keySet uint8

const (
	hasRequestID keySet = 1 << iota
	hasUserID
	hasUploadID
	hasTraceID
)

func keyBit(k string) keySet {
	switch k {
	case KeyRequestID:
		return hasRequestID
	case KeyUserID:
		return hasUserID
	case KeyUploadID:
		return hasUploadID
	case KeyTraceID:
		return hasTraceID
	}
	return 0
}

// NewHandler wraps inner.
func NewHandler(inner slog.Handler) *Handler { return &Handler{inner: inner} }

// Enabled reports inner's answer.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

// Handle adds request_id, user_id, upload_id (those known) and trace_id
// (when a span is recording the request) and passes the record on.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	f := from(ctx)
	sc := trace.SpanContextFromContext(ctx)
	if f == nil && !sc.IsValid() {
		return h.inner.Handle(ctx, r)
	}
	has := h.has
	r.Attrs(func(a slog.Attr) bool {
		has |= keyBit(a.Key)
		return true
	})
	add := func(bit keySet, key, value string) {
		if value != "" && has&bit == 0 {
			r.AddAttrs(slog.String(key, value))
		}
	}
	if f != nil {
		f.mu.Lock()
		user, upload := f.userID, f.uploadID
		f.mu.Unlock()
		add(hasRequestID, KeyRequestID, f.requestID)
		add(hasUserID, KeyUserID, user)
		add(hasUploadID, KeyUploadID, upload)
	}
	if sc.IsValid() {
		add(hasTraceID, KeyTraceID, sc.TraceID().String())
	}
	return h.inner.Handle(ctx, r)
}

// WithAttrs returns a Handler whose inner handler has attrs.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	has := h.has
	for _, a := range attrs {
		has |= keyBit(a.Key)
	}
	return &Handler{inner: h.inner.WithAttrs(attrs), has: has}
}

// WithGroup returns a Handler whose inner handler opens group; the
// request fields of later lines then land in that group.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{inner: h.inner.WithGroup(name), has: h.has}
}
