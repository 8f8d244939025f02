package telemetry_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/spoolhq/spool/internal/telemetry"
)

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

// Without an OTLP endpoint nothing is exported: the provider is the
// no-op one (no SDK, no exporter, no batching goroutine).
func TestOffWithoutEndpoint(t *testing.T) {
	for name, getenv := range map[string]func(string) string{
		"no variables":     env(),
		"blank endpoint":   env("OTEL_EXPORTER_OTLP_ENDPOINT", "  "),
		"only the service": env("OTEL_SERVICE_NAME", "spool-eu"),
		"SDK disabled":     env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318", "OTEL_SDK_DISABLED", "true"),
	} {
		tr, err := telemetry.New(context.Background(), getenv, "")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if tr.Enabled() {
			t.Errorf("%s: tracing is on, want off", name)
		}
		if _, ok := tr.Provider.(noop.TracerProvider); !ok {
			t.Errorf("%s: provider is %T, want the no-op provider", name, tr.Provider)
		}
		if err := tr.Shutdown(context.Background()); err != nil {
			t.Errorf("%s: Shutdown: %v", name, err)
		}
	}
}

func TestRefusesAnEndpointThatIsNotHTTP(t *testing.T) {
	for _, endpoint := range []string{"127.0.0.1:4317", "grpc://collector:4317", "collector"} {
		if _, err := telemetry.New(context.Background(), env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint), ""); err == nil {
			t.Errorf("endpoint %q: got tracing, want an error", endpoint)
		}
	}
	for _, protocol := range []string{"grpc", "http/json"} {
		_, err := telemetry.New(context.Background(), env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318", "OTEL_EXPORTER_OTLP_PROTOCOL", protocol), "")
		if err == nil || !strings.Contains(err.Error(), "http/protobuf") {
			t.Errorf("protocol %q: got %v, want an error naming http/protobuf", protocol, err)
		}
	}
}

// With an endpoint, spans reach it over OTLP/HTTP: here a local
// collector stand-in that counts what it is sent.
func TestExportsToTheEndpoint(t *testing.T) {
	var posts atomic.Int32
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Method == http.MethodPost && r.URL.Path == "/v1/traces" && len(b) > 0 {
			posts.Add(1)
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer collector.Close()
	// otlptracehttp reads the variables from the process environment.
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	tr, err := telemetry.New(context.Background(), env("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL), "v1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	if !tr.Enabled() {
		t.Fatal("tracing is off with an endpoint set")
	}
	if _, ok := tr.Provider.(*sdktrace.TracerProvider); !ok {
		t.Fatalf("provider is %T, want the SDK's", tr.Provider)
	}
	_, span := tr.Provider.Tracer("test").Start(context.Background(), "work")
	span.End()
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown (flushes): %v", err)
	}
	if posts.Load() == 0 {
		t.Fatal("the collector received no spans")
	}
}

func TestChildSpansOnly(t *testing.T) {
	exporter := tracetest.NewInMemoryExporter()
	tr := telemetry.NewWithExporter(exporter)
	tracer := telemetry.ChildSpansOnly(tr.Provider).Tracer("engine")
	_, orphan := tracer.Start(context.Background(), "background")
	orphan.End()
	if orphan.IsRecording() || len(exporter.GetSpans()) != 0 {
		t.Fatalf("a span without a parent was recorded: %v", exporter.GetSpans())
	}
	ctx, parent := tr.Provider.Tracer("request").Start(context.Background(), "request")
	_, child := tracer.Start(ctx, "query")
	child.End()
	parent.End()
	spans := exporter.GetSpans()
	if len(spans) != 2 || spans[0].Name != "query" || spans[0].Parent.SpanID() != parent.SpanContext().SpanID() {
		t.Fatalf("got %v, want the query as a child of the request", spans)
	}
}
