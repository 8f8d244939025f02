package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
)

// ChildSpansOnly returns a provider whose tracers start spans only under
// a span already in the context, and otherwise start nothing. Engine
// instrumentation (database, Redis, storage) gets it: their calls made
// on behalf of a request join that request's trace, while background
// work (the job queue polling the database, the progress broker's
// keep-alive pings) makes no root spans of its own, which would drown
// the requests' traces.
func ChildSpansOnly(tp trace.TracerProvider) trace.TracerProvider {
	return childOnlyProvider{tp: tp}
}

type childOnlyProvider struct {
	embedded.TracerProvider
	tp trace.TracerProvider
}

func (p childOnlyProvider) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	return childOnlyTracer{tracer: p.tp.Tracer(name, opts...)}
}

type childOnlyTracer struct {
	embedded.Tracer
	tracer trace.Tracer
}

// Start starts a span if ctx holds one (local or remote) to be its
// parent; otherwise it returns ctx and the non-recording span of an
// empty context.
func (t childOnlyTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx, trace.SpanFromContext(ctx)
	}
	return t.tracer.Start(ctx, name, opts...)
}
