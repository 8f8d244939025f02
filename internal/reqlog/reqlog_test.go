package reqlog_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"github.com/spoolhq/spool/internal/reqlog"
)

// seen runs one request through Middleware and returns the request id
// the handler saw in its context and the one the response carries.
func seen(t *testing.T, header string, set bool) (inContext, inResponse string) {
	t.Helper()
	h := reqlog.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inContext = reqlog.RequestID(r.Context())
	}))
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	if set {
		req.Header.Set(reqlog.Header, header)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return inContext, rec.Header().Get(reqlog.Header)
}

func TestMiddlewareKeepsASaneRequestID(t *testing.T) {
	for _, id := range []string{"abc", "01J9ZQ4X7Y3N2B6V8C0D5E1F2G", "3fa85f64-5717-4562-b3fc-2c963f66afa6",
		"Root=1-67891233-abcdef012345678912345678", "edge:42/a.b_c+d@e", strings.Repeat("x", reqlog.MaxRequestIDLength)} {
		ctxID, respID := seen(t, id, true)
		if ctxID != id || respID != id {
			t.Errorf("X-Request-Id %q: context has %q, response %q; want it kept", id, ctxID, respID)
		}
	}
}

func TestMiddlewareReplacesAHostileRequestID(t *testing.T) {
	for name, id := range map[string]string{
		"too long":          strings.Repeat("x", reqlog.MaxRequestIDLength+1),
		"newline":           "abc\ninjected=1 level=ERROR",
		"carriage return":   "abc\rdef",
		"escape":            "abc\x1b[31mred",
		"NUL":               "abc\x00def",
		"tab":               "abc\tdef",
		"space and quote":   `abc" user_id="root`,
		"non-ASCII":         "запрос",
		"JSON breaking out": `x","user_id":"admin`,
		"empty":             "",
	} {
		ctxID, respID := seen(t, id, true)
		if ctxID == id || !reqlog.ValidRequestID(ctxID) {
			t.Errorf("%s: X-Request-Id %q became %q in the context; want a fresh valid id", name, id, ctxID)
		}
		if respID != ctxID {
			t.Errorf("%s: response says %q, context %q; want the same", name, respID, ctxID)
		}
	}
	a, _ := seen(t, "", false)
	b, _ := seen(t, "", false)
	if a == b || len(a) != 26 {
		t.Errorf("generated ids %q and %q: want two different 26-character ids", a, b)
	}
}

// logLine logs one line through a JSON handler wrapped in reqlog.Handler
// and returns it decoded.
func logLine(t *testing.T, log func(*slog.Logger)) map[string]any {
	t.Helper()
	var buf bytes.Buffer
	log(slog.New(reqlog.NewHandler(slog.NewJSONHandler(&buf, nil))))
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("log line %q: %v", buf.String(), err)
	}
	return line
}

func TestHandlerAddsWhatTheRequestLearnt(t *testing.T) {
	ctx := reqlog.WithRequestID(context.Background(), "req-7")
	before := logLine(t, func(l *slog.Logger) { l.InfoContext(ctx, "early") })
	if before["request_id"] != "req-7" || before["user_id"] != nil || before["upload_id"] != nil {
		t.Errorf("before anything is learnt: %v; want request_id only", before)
	}
	reqlog.SetUser(ctx, "u1")
	reqlog.SetUpload(ctx, "up1")
	after := logLine(t, func(l *slog.Logger) { l.InfoContext(ctx, "late") })
	for k, want := range map[string]string{"request_id": "req-7", "user_id": "u1", "upload_id": "up1"} {
		if after[k] != want {
			t.Errorf("%s = %v, want %s (line %v)", k, after[k], want, after)
		}
	}
	// A key the line has already is not written twice.
	var buf bytes.Buffer
	l := slog.New(reqlog.NewHandler(slog.NewTextHandler(&buf, nil)))
	l.InfoContext(ctx, "explicit", "upload_id", "up1")
	l.With("user_id", "u1").InfoContext(ctx, "with")
	for _, key := range []string{"upload_id=", "user_id=", "request_id="} {
		for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
			if n := strings.Count(line, key); n != 1 {
				t.Errorf("line %q has %s %d times, want once", line, key, n)
			}
		}
	}
	// No context, no fields.
	bare := logLine(t, func(l *slog.Logger) { l.Info("background") })
	if bare["request_id"] != nil {
		t.Errorf("line without a request: %v", bare)
	}
}

func TestHandlerAddsTheTraceID(t *testing.T) {
	tid, _ := trace.TraceIDFromHex("0af7651916cd43dd8448eb211c80319c")
	sid, _ := trace.SpanIDFromHex("b7ad6b7169203331")
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid}))
	line := logLine(t, func(l *slog.Logger) { l.InfoContext(ctx, "traced") })
	if line["trace_id"] != tid.String() {
		t.Errorf("trace_id = %v, want %s", line["trace_id"], tid)
	}
}

// Websocket operations share the socket's request id and user but each
// learns its own upload.
func TestForkKeepsUploadsApart(t *testing.T) {
	conn := reqlog.WithRequestID(context.Background(), "ws-1")
	reqlog.SetUser(conn, "u1")
	a, b := reqlog.Fork(conn), reqlog.Fork(conn)
	reqlog.SetUpload(a, "upload-a")
	la := logLine(t, func(l *slog.Logger) { l.InfoContext(a, "a") })
	lb := logLine(t, func(l *slog.Logger) { l.InfoContext(b, "b") })
	if la["upload_id"] != "upload-a" || lb["upload_id"] != nil || la["user_id"] != "u1" || lb["request_id"] != "ws-1" {
		t.Errorf("operation a logged %v, b %v", la, lb)
	}
}

// Resolvers of one request run concurrently and may each learn things.
func TestSetIsSafeConcurrently(t *testing.T) {
	ctx := reqlog.WithRequestID(context.Background(), "r")
	h := reqlog.NewHandler(slog.DiscardHandler)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			reqlog.SetUpload(ctx, strings.Repeat("u", i+1))
			_ = slog.New(h).Handler().Handle(ctx, slog.Record{})
		})
	}
	wg.Wait()
}
