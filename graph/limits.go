package graph

import (
	"context"
	"net/http"
	"strconv"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/spoolhq/spool/internal/upload"
)

// mutationBudget draws one request from the caller's mutation budget for
// each mutation operation (however many fields it has: the complexity
// limit bounds those), before any of it runs. A refused operation answers
// RATE_LIMITED with extensions.retryAfter, and over HTTP a Retry-After
// header. Anonymous operations are not counted: every field of theirs
// answers UNAUTHENTICATED without work.
type mutationBudget struct {
	admit   upload.Admitter
	present graphql.ErrorPresenterFunc
}

var (
	_ graphql.HandlerExtension     = mutationBudget{}
	_ graphql.OperationInterceptor = mutationBudget{}
)

func (mutationBudget) ExtensionName() string                   { return "MutationBudget" }
func (mutationBudget) Validate(graphql.ExecutableSchema) error { return nil }
func (b mutationBudget) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	oc := graphql.GetOperationContext(ctx)
	if oc == nil || oc.Operation == nil || oc.Operation.Operation != ast.Mutation {
		return next(ctx)
	}
	userID, err := upload.CallerFrom(ctx)
	if err != nil {
		return next(ctx)
	}
	if err := b.admit.Admit(ctx, userID); err != nil {
		if h, ok := ctx.Value(responseHeaderKey{}).(http.Header); ok {
			if wait := upload.RetryAfterSeconds(err); wait > 0 {
				h.Set("Retry-After", strconv.FormatInt(wait, 10))
			}
		}
		return graphql.OneShot(&graphql.Response{Errors: gqlerror.List{b.present(ctx, err)}})
	}
	return next(ctx)
}

// responseHeaderKey holds, in a GraphQL HTTP request's context, the
// response's headers, which are still open while the operation runs:
// gqlgen writes its answer after.
type responseHeaderKey struct{}

// withResponseHeader lets operations set response headers (Retry-After).
// Websocket upgrades get none: the socket would keep the map for its life.
func withResponseHeader(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "" {
			r = r.WithContext(context.WithValue(r.Context(), responseHeaderKey{}, w.Header()))
		}
		next.ServeHTTP(w, r)
	})
}
