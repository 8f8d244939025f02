package graph

import (
	"context"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/spoolhq/spool/internal/metrics"
	"github.com/spoolhq/spool/internal/upload"
)

// mutationTimer is a gqlgen extension that times each mutation field
// (initBatch, confirmChunk, complete, …) and counts its errors by code.
// The histograms are resolved once per field of the schema, so timing a
// call costs a map read and no allocation.
type mutationTimer struct {
	m         *metrics.Metrics
	observers map[string]prometheus.Observer // by mutation field
}

var (
	_ graphql.HandlerExtension = (*mutationTimer)(nil)
	_ graphql.FieldInterceptor = (*mutationTimer)(nil)
)

func (t *mutationTimer) ExtensionName() string { return "MutationTimer" }

// Validate resolves the histogram of every mutation field of the schema.
func (t *mutationTimer) Validate(schema graphql.ExecutableSchema) error {
	t.observers = map[string]prometheus.Observer{}
	if mutation := schema.Schema().Mutation; mutation != nil {
		for _, f := range mutation.Fields {
			t.observers[f.Name] = t.m.MutationObserver(f.Name)
		}
	}
	return nil
}

// mutationObject is the name gqlgen gives the mutation root's fields'
// object.
const mutationObject = "Mutation"

func (t *mutationTimer) InterceptField(ctx context.Context, next graphql.Resolver) (any, error) {
	fc := graphql.GetFieldContext(ctx)
	if fc == nil || fc.Object != mutationObject {
		return next(ctx)
	}
	observer, ok := t.observers[fc.Field.Name]
	if !ok {
		return next(ctx)
	}
	start := time.Now()
	res, err := next(ctx)
	observer.Observe(time.Since(start).Seconds())
	if err != nil {
		t.m.MutationError(fc.Field.Name, string(upload.ErrorCode(err)))
	}
	return res, err
}
