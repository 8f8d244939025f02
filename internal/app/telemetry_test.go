package app_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/spoolhq/spool/internal/app"
	"github.com/spoolhq/spool/internal/app/apptest"
	"github.com/spoolhq/spool/internal/reqlog"
	"github.com/spoolhq/spool/internal/telemetry"
)

// spans is what a traced server exported, for questions about it.
type spans struct {
	t        *testing.T
	exporter *tracetest.InMemoryExporter
}

// waitFor returns the first exported span that matches, waiting for it:
// a request's span ends after its answer has reached the client. The
// wait is a hang guard, not a timing assertion.
func (s spans) waitFor(what string, match func(tracetest.SpanStub) bool) tracetest.SpanStub {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, sp := range s.exporter.GetSpans() {
			if match(sp) {
				return sp
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("no span %s among %s", what, s.names())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s spans) named(name string) tracetest.SpanStub {
	s.t.Helper()
	return s.waitFor(fmt.Sprintf("named %q", name), func(sp tracetest.SpanStub) bool { return sp.Name == name })
}

// under returns the spans whose chain of parents reaches root.
func (s spans) under(root tracetest.SpanStub) []tracetest.SpanStub {
	all := s.exporter.GetSpans()
	byID := map[trace.SpanID]tracetest.SpanStub{}
	for _, sp := range all {
		byID[sp.SpanContext.SpanID()] = sp
	}
	var out []tracetest.SpanStub
	for _, sp := range all {
		for p := sp; p.Parent.IsValid(); {
			parent, ok := byID[p.Parent.SpanID()]
			if !ok {
				break
			}
			if parent.SpanContext.SpanID() == root.SpanContext.SpanID() {
				out = append(out, sp)
				break
			}
			p = parent
		}
	}
	return out
}

func (s spans) names() string {
	var n []string
	for _, sp := range s.exporter.GetSpans() {
		n = append(n, sp.Name)
	}
	return strings.Join(n, ", ")
}

// wantUnder checks that root has descendants whose names start with
// each prefix, all in root's trace.
func (s spans) wantUnder(root tracetest.SpanStub, prefixes ...string) {
	s.t.Helper()
	for _, prefix := range prefixes {
		s.waitFor(fmt.Sprintf("%q… under %q", prefix, root.Name), func(sp tracetest.SpanStub) bool {
			if !strings.HasPrefix(sp.Name, prefix) {
				return false
			}
			for _, d := range s.under(root) {
				if d.SpanContext.SpanID() == sp.SpanContext.SpanID() {
					return true
				}
			}
			return false
		})
	}
	for _, d := range s.under(root) {
		if d.SpanContext.TraceID() != root.SpanContext.TraceID() {
			s.t.Errorf("span %q under %q is in trace %s, want %s", d.Name, root.Name, d.SpanContext.TraceID(), root.SpanContext.TraceID())
		}
	}
}

func attr(sp tracetest.SpanStub, key string) string {
	for _, kv := range sp.Attributes {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

// TestTracingLinksEachRequest runs a GraphQL mutation and a chunk PUT
// through a traced server and checks each is one trace: HTTP span →
// GraphQL operation span → database spans; chunk PUT → database and
// storage spans (and, with Redis, the publish of its progress). No
// attribute may carry the mutation's variables.
func TestTracingLinksEachRequest(t *testing.T) {
	for _, set := range engineSets {
		t.Run(set.name, func(t *testing.T) {
			exporter := tracetest.NewInMemoryExporter()
			tracing := telemetry.NewWithExporter(exporter)
			setup := set.setup(t)
			s := startSpool(t, func(c *app.Config) {
				if setup != nil {
					setup(c)
				}
				c.TracerProvider, c.TracePropagator = tracing.Provider, tracing.Propagator
			})
			testTracing(t, s, spans{t: t, exporter: exporter}, set.name != "embedded")
		})
	}
}

func testTracing(t *testing.T, s *spool, sp spans, redis bool) {
	tok := s.token("tracer")
	// Distinctive values, to be found in no span.
	const secretName = "q7Zx-never-in-a-trace.png"
	image := fileBytes("image/png", 200<<10, 41)
	secretHash := sha256hex(image)
	var out struct{ InitBatch batch }
	s.mustGQL(tok, `mutation PlanUpload($input: InitBatchInput!) { initBatch(input: $input) { id uploads { `+uploadFields+` } } }`,
		map[string]any{"input": map[string]any{"files": []map[string]any{
			{"fileName": secretName, "size": len(image), "mimeType": "image/png", "sha256": secretHash}}}}, &out)
	up := out.InitBatch.Uploads[0]

	op := sp.named("mutation PlanUpload")
	if got := attr(op, "graphql.operation.name"); got != "PlanUpload" {
		t.Errorf("graphql.operation.name = %q, want PlanUpload", got)
	}
	if got := attr(op, "graphql.operation.type"); got != "mutation" {
		t.Errorf("graphql.operation.type = %q, want mutation", got)
	}
	httpSpan := sp.waitFor("HTTP parent of the operation", func(s tracetest.SpanStub) bool {
		return s.SpanContext.SpanID() == op.Parent.SpanID()
	})
	if httpSpan.Name != "POST /graphql" || httpSpan.SpanKind != trace.SpanKindServer {
		t.Errorf("the operation's parent is %q (%v), want the server span POST /graphql", httpSpan.Name, httpSpan.SpanKind)
	}
	if httpSpan.SpanContext.TraceID() != op.SpanContext.TraceID() {
		t.Errorf("operation and request are in different traces")
	}
	sp.wantUnder(op, "sql.", "storage.Prepare")

	// A chunk PUT, sent with a client's own trace context: spool starts
	// its own trace and only links the client's.
	clientTrace := "4bf92f3577b34da6a3ce929d0e0e4736"
	status, body := put(t, up.ChunkURLs[0].URL, image, http.Header{
		"Traceparent": {"00-" + clientTrace + "-00f067aa0ba902b7-01"}})
	if status != http.StatusOK {
		t.Fatalf("PUT chunk: %d %s", status, body)
	}
	chunk := sp.named("PUT /uploads/{id}/chunks/{index}")
	if chunk.SpanContext.TraceID() == op.SpanContext.TraceID() {
		t.Error("the chunk PUT joined the mutation's trace; want one trace per request")
	}
	if chunk.SpanContext.TraceID().String() == clientTrace || chunk.Parent.IsValid() {
		t.Errorf("the chunk PUT's span continues the client's trace (parent %v); want a new root", chunk.Parent)
	}
	if len(chunk.Links) != 1 || chunk.Links[0].SpanContext.TraceID().String() != clientTrace {
		t.Errorf("links %v, want one to the client's trace", chunk.Links)
	}
	want := []string{"sql.", "storage.WriteChunk"}
	if redis {
		want = append(want, "redis.")
	}
	sp.wantUnder(chunk, want...)

	// Nothing anywhere carries the variables' values.
	for _, s := range sp.exporter.GetSpans() {
		check := func(where, v string) {
			if strings.Contains(v, secretName) || strings.Contains(v, secretHash) || strings.Contains(v, "never-in-a-trace") {
				t.Errorf("span %q %s holds a variable's value: %q", s.Name, where, v)
			}
		}
		check("name", s.Name)
		check("status", s.Status.Description)
		for _, kv := range s.Attributes {
			check("attribute "+string(kv.Key), kv.Value.String())
		}
		for _, ev := range s.Events {
			for _, kv := range ev.Attributes {
				check("event "+ev.Name+" attribute "+string(kv.Key), kv.Value.String())
			}
		}
	}
}

// TestTracingWebsocketOperations checks that an operation over a
// websocket is a span of its own trace, linked to the upgrade request,
// with the database calls of its snapshot under it.
func TestTracingWebsocketOperations(t *testing.T) {
	exporter := tracetest.NewInMemoryExporter()
	tracing := telemetry.NewWithExporter(exporter)
	s := startSpool(t, func(c *app.Config) { c.TracerProvider = tracing.Provider })
	sp := spans{t: t, exporter: exporter}
	tok := s.token("watcher")
	ws := s.dialWS(tok, nil)
	ws.subscribe("1", `subscription Watch { myUploads { uploadId status } }`, nil)
	op := sp.named("subscription Watch")
	upgrade := sp.named("GET /graphql")
	if op.SpanContext.TraceID() == upgrade.SpanContext.TraceID() || op.Parent.IsValid() {
		t.Errorf("the operation continues the upgrade's trace; want a trace of its own")
	}
	if len(op.Links) != 1 || op.Links[0].SpanContext.SpanID() != upgrade.SpanContext.SpanID() {
		t.Errorf("links %v, want one to the upgrade request", op.Links)
	}
	if op.SpanKind != trace.SpanKindServer {
		t.Errorf("kind %v, want server", op.SpanKind)
	}
	sp.wantUnder(op, "sql.")
}

// syncBuffer is a log destination safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines returns the JSON lines logged so far whose msg is msg.
func (b *syncBuffer) lines(t *testing.T, msg string) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range bytes.Split(b.buf.Bytes(), []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", l, err)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// TestRequestLogFields checks that lines logged while serving a request
// carry its request id, its user and its upload: a chunk PUT on a signed
// URL (no token: the user is the upload's owner) whose checksum is wrong,
// and a cancel mutation.
func TestRequestLogFields(t *testing.T) {
	var logs syncBuffer
	log := slog.New(reqlog.NewHandler(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	srv := apptest.StartLogged(t, log, nil)
	s := &spool{t: t, main: srv.Main, url: srv.URL, srv: srv}
	tok := s.token("logger")
	image := fileBytes("image/png", 100<<10, 7)
	b := s.initBatch(tok, map[string]any{"fileName": "a.png", "size": len(image), "mimeType": "image/png"})
	up := b.Uploads[0]
	inits := logs.lines(t, "batch initialised")
	if len(inits) != 1 || inits[0]["user_id"] == nil || inits[0]["request_id"] == nil {
		t.Fatalf("batch initialised lines: %v; want one with user_id and request_id", inits)
	}
	userID := inits[0]["user_id"]

	resp, body := send(t, http.MethodPut, up.ChunkURLs[0].URL, bytes.NewReader(image), http.Header{
		"X-Goog-Hash": {"crc32c=AAAAAA=="},
		reqlog.Header: {"lb-7f3a9c"},
	})
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("PUT with a wrong checksum: %d %s, want 400", resp.StatusCode, body)
	}
	if got := resp.Header.Get(reqlog.Header); got != "lb-7f3a9c" {
		t.Errorf("X-Request-Id answered %q, want the one sent", got)
	}
	failed := logs.lines(t, "chunk failed")
	if len(failed) != 1 {
		t.Fatalf("chunk failed lines: %v, want 1", failed)
	}
	for k, want := range map[string]any{"request_id": "lb-7f3a9c", "user_id": userID, "upload_id": up.ID} {
		if failed[0][k] != want {
			t.Errorf("chunk failed: %s = %v, want %v (line %v)", k, failed[0][k], want, failed[0])
		}
	}

	// A hostile request id is replaced, in the answer and in the log.
	hostile := strings.Repeat("A", 300)
	req, _ := http.NewRequest(http.MethodPost, s.url+"/graphql", strings.NewReader(
		fmt.Sprintf(`{"query":"mutation Stop($id: ID!) { cancel(uploadId: $id) { id status } }","variables":{"id":%q}}`, up.ID)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set(reqlog.Header, hostile)
	cresp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	cresp.Body.Close()
	given := cresp.Header.Get(reqlog.Header)
	if given == hostile || !reqlog.ValidRequestID(given) {
		t.Errorf("X-Request-Id of 300 bytes answered with %q; want a fresh id", given)
	}
	stopped := logs.lines(t, "upload stopped")
	if len(stopped) != 1 {
		t.Fatalf("upload stopped lines: %v, want 1", stopped)
	}
	for k, want := range map[string]any{"request_id": given, "user_id": userID, "upload_id": up.ID} {
		if stopped[0][k] != want {
			t.Errorf("upload stopped: %s = %v, want %v (line %v)", k, stopped[0][k], want, stopped[0])
		}
	}
}
