// Package telemetry sets up spool's OpenTelemetry tracing: an SDK tracer
// provider exporting over OTLP/HTTP when the operator asks for it through
// the standard OTEL_* environment, and a no-op provider otherwise. It sets
// no global state: the provider is handed to whatever traces.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Tracing is the tracer provider spool traces with, and how to flush it.
type Tracing struct {
	// Provider makes spool's tracers; a no-op one when tracing is off.
	Provider trace.TracerProvider
	// Propagator reads and writes trace context in HTTP headers (W3C
	// traceparent and baggage).
	Propagator propagation.TextMapPropagator
	// shutdown flushes the spans not exported yet; nil when off.
	shutdown func(context.Context) error
}

// Enabled reports whether spans are recorded and exported.
func (t *Tracing) Enabled() bool { return t.shutdown != nil }

// Shutdown exports the spans still buffered and stops the exporter; it is
// a no-op when tracing is off.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t.shutdown == nil {
		return nil
	}
	return t.shutdown(ctx)
}

// EndpointVariables turn tracing on: the generic OTLP endpoint or the
// traces-only one (the OpenTelemetry specification's names). The other
// OTEL_EXPORTER_OTLP_* variables (headers, timeout, compression, TLS) and
// OTEL_TRACES_SAMPLER, OTEL_BSP_*, OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES are read by the SDK itself.
var EndpointVariables = []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"}

// New returns spool's tracing as getenv describes it. Without an OTLP
// endpoint, or with OTEL_SDK_DISABLED=true, it returns a no-op provider:
// no exporter, no goroutine, nothing recorded. With one, spans go in
// batches to an OTLP/HTTP exporter (otlptracehttp); the service is named
// by OTEL_SERVICE_NAME, else "spool". version is the binary's version,
// recorded as service.version when not empty.
func New(ctx context.Context, getenv func(string) string, version string) (*Tracing, error) {
	propagator := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	off := &Tracing{Provider: noop.NewTracerProvider(), Propagator: propagator}
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return off, nil
	}
	endpoint := ""
	for _, name := range EndpointVariables {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			endpoint = v
		}
	}
	if endpoint == "" {
		return off, nil
	}
	if !strings.HasPrefix(endpoint, "http://") && !strings.HasPrefix(endpoint, "https://") {
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_ENDPOINT %q: want an http:// or https:// URL (spool exports OTLP over HTTP)", endpoint)
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"} {
		if p := strings.TrimSpace(getenv(name)); p != "" && p != "http/protobuf" {
			return nil, fmt.Errorf("%s=%q: spool exports traces as http/protobuf only (OTLP over HTTP, port 4318 of a collector)", name, p)
		}
	}
	// otlptracehttp reads the OTEL_EXPORTER_OTLP_* variables itself.
	exporter, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	return withExporter(ctx, exporter, version, propagator)
}

// NewWithExporter returns tracing that hands every span to exporter as it
// ends (synchronously), for tests: tracetest.NewInMemoryExporter.
func NewWithExporter(exporter sdktrace.SpanExporter) *Tracing {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter))
	return &Tracing{
		Provider:   tp,
		Propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		shutdown:   tp.Shutdown,
	}
}

func withExporter(ctx context.Context, exporter sdktrace.SpanExporter, version string, propagator propagation.TextMapPropagator) (*Tracing, error) {
	attrs := []attribute.KeyValue{semconv.ServiceName("spool")}
	if version != "" {
		attrs = append(attrs, semconv.ServiceVersion(version))
	}
	// Later detectors win: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
	// override the defaults above.
	res, err := resource.New(ctx, resource.WithAttributes(attrs...), resource.WithFromEnv(),
		resource.WithTelemetrySDK(), resource.WithHost(), resource.WithProcessPID())
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		_ = exporter.Shutdown(ctx)
		return nil, fmt.Errorf("tracing resource: %w", err)
	}
	// The sampler is the SDK's default, parent-based always-on, unless
	// OTEL_TRACES_SAMPLER says otherwise (the SDK reads it).
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res))
	return &Tracing{Provider: tp, Propagator: propagator, shutdown: tp.Shutdown}, nil
}
