package upload

import "context"

type callerKey struct{}

// WithCaller returns a context carrying the id of the authenticated user
// on whose behalf a request runs.
func WithCaller(ctx context.Context, userID string) context.Context {
	return context.WithValue(ctx, callerKey{}, userID)
}

// CallerFrom returns the authenticated user's id, or UNAUTHENTICATED:
// saying why the token was refused when one was (WithRefusedToken).
func CallerFrom(ctx context.Context) (string, error) {
	if id, ok := ctx.Value(callerKey{}).(string); ok && id != "" {
		return id, nil
	}
	if reason, ok := ctx.Value(refusedKey{}).(string); ok {
		return "", RefusedToken(reason)
	}
	return "", Errorf(CodeUnauthenticated, "sign in: send a bearer token (for websockets, in the connection_init payload as Authorization)")
}

type refusedKey struct{}

// WithRefusedToken returns a context of a request that sent a bearer
// token the server refused, for reason (auth.Refusal). The request goes
// on without a caller, as one without a token does, and what needs a
// caller answers UNAUTHENTICATED saying why: a client told only "send a
// token" while it sent one cannot tell an expired token from a token of
// another server.
func WithRefusedToken(ctx context.Context, reason string) context.Context {
	return context.WithValue(ctx, refusedKey{}, reason)
}

// RefusedToken is the UNAUTHENTICATED error of a refused token.
func RefusedToken(reason string) error {
	return Errorf(CodeUnauthenticated, "the bearer token was refused: %s", reason)
}

type originKey struct{}

// WithOrigin returns a context carrying the browser origin a request came
// from, which the transport has checked against the allowed origins. A
// direct SINGLE upload's resumable session is opened for it, so the
// store answers that page's CORS requests.
func WithOrigin(ctx context.Context, origin string) context.Context {
	return context.WithValue(ctx, originKey{}, origin)
}

// originFrom returns the request's checked browser origin, or "".
func originFrom(ctx context.Context) string {
	o, _ := ctx.Value(originKey{}).(string)
	return o
}
