package graph

import (
	"context"

	"github.com/99designs/gqlgen/graphql"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/spoolhq/spool/internal/reqlog"
)

// tracerName names the tracer of the GraphQL operation spans.
const tracerName = "github.com/spoolhq/spool/graph"

// Attribute keys of the operation spans (OpenTelemetry's GraphQL
// semantic conventions).
const (
	attrOperationType = attribute.Key("graphql.operation.type")
	attrOperationName = attribute.Key("graphql.operation.name")
)

// operationSpans is a gqlgen extension that makes each GraphQL operation,
// over HTTP or a websocket, a span named "<type> <name>" ("mutation
// Complete"; "mutation" for an anonymous one). It records the operation's
// type and name and nothing of its input: not the variables, and not the
// query text either, which can hold the same values written inline. For
// a query or mutation the span lasts until its response is made, so the
// resolvers' database and storage calls are its children; for a
// subscription it covers the root resolver (opening the feed, reading
// the snapshot) and not the events, which may come hours later or never.
//
// ravilushqa/otelgqlgen was the ready-made choice, but it records the
// query text unconditionally and the arguments of every field.
type operationSpans struct{ tracer trace.Tracer }

var _ interface {
	graphql.HandlerExtension
	graphql.OperationInterceptor
} = operationSpans{}

func (operationSpans) ExtensionName() string                          { return "OperationSpans" }
func (operationSpans) Validate(schema graphql.ExecutableSchema) error { return nil }

func (t operationSpans) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	oc := graphql.GetOperationContext(ctx)
	opType, name := "operation", oc.OperationName
	if oc.Operation != nil {
		opType = string(oc.Operation.Operation)
		if name == "" {
			name = oc.Operation.Name
		}
	}
	spanName := opType
	if name != "" {
		spanName += " " + name
	}
	opts := []trace.SpanStartOption{trace.WithAttributes(attrOperationType.String(opType))}
	if name != "" {
		opts = append(opts, trace.WithAttributes(attrOperationName.String(name)))
	}
	if upgrade, ok := ctx.Value(websocketSpanKey{}).(trace.SpanContext); ok {
		// An operation on a websocket starts a trace of its own, linked
		// to the request that opened the socket (long over by now).
		opts = append(opts, trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindServer))
		if upgrade.IsValid() {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: upgrade}))
		}
	}
	ctx, span := t.tracer.Start(ctx, spanName, opts...)
	responses := next(ctx)
	if opType == "subscription" {
		// The root resolver has run (the feed is open, the snapshot
		// read); events may be hours away, or never come.
		span.End()
		return responses
	}
	ended := false
	return func(ctx context.Context) *graphql.Response {
		resp := responses(ctx)
		if !ended {
			ended = true
			if resp != nil && len(resp.Errors) > 0 {
				// The code only: messages can quote the client's input.
				code, _ := resp.Errors[0].Extensions["code"].(string)
				span.SetStatus(codes.Error, code)
			}
			span.End()
		}
		return resp
	}
}

// websocketSpanKey marks the context of a websocket's operations with
// the span context of the request that opened the socket.
type websocketSpanKey struct{}

// uploadLogField is a gqlgen extension that records the upload a root
// field names in its uploadId argument (complete, cancel, confirmChunk,
// uploadProgress, …) as the request's upload_id for its log lines.
type uploadLogField struct{}

var _ interface {
	graphql.HandlerExtension
	graphql.RootFieldInterceptor
} = uploadLogField{}

func (uploadLogField) ExtensionName() string                          { return "UploadLogField" }
func (uploadLogField) Validate(schema graphql.ExecutableSchema) error { return nil }

func (uploadLogField) InterceptRootField(ctx context.Context, next graphql.RootResolver) graphql.Marshaler {
	if fc := graphql.GetRootFieldContext(ctx); fc != nil && fc.Field.Field != nil {
		if arg := fc.Field.Arguments.ForName("uploadId"); arg != nil && arg.Value != nil {
			if v, err := arg.Value.Value(graphql.GetOperationContext(ctx).Variables); err == nil {
				if id, ok := v.(string); ok {
					reqlog.SetUpload(ctx, id)
				}
			}
		}
	}
	return next(ctx)
}
