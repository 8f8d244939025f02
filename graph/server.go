package graph

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/gorilla/websocket"
	"github.com/vektah/gqlparser/v2/ast"
	"go.opentelemetry.io/otel/trace"

	"github.com/spoolhq/spool/internal/auth"
	"github.com/spoolhq/spool/internal/metrics"
	"github.com/spoolhq/spool/internal/ratelimit"
	"github.com/spoolhq/spool/internal/reqlog"
	"github.com/spoolhq/spool/internal/upload"
)

// Authenticator turns an Authorization header value ("Bearer …") into
// the caller's user id. A missing or bad token is an error wrapping
// auth.ErrInvalidToken; any other error is the server's failure.
type Authenticator interface {
	Authenticate(ctx context.Context, authorization string) (userID string, err error)
	// ValidUntil returns when a token Authenticate accepted stops being
	// accepted (ok is false if never): a websocket authenticated with it
	// is closed then (wstransport.go).
	ValidUntil(authorization string) (until time.Time, ok bool)
}

// ServerOptions configure the GraphQL endpoint.
type ServerOptions struct {
	Uploads *upload.Service
	Auth    Authenticator
	Logger  *slog.Logger
	// AllowedOrigins lists the browser origins allowed to open websockets
	// besides the server's own; "*" allows any.
	AllowedOrigins []string
	// PingInterval is the graphql-transport-ws keep-alive ping period.
	PingInterval time.Duration
	// ComplexityLimit bounds the cost of one operation.
	ComplexityLimit int
	// MaxMultipartBody bounds a multipart request (uploadImage) as a
	// whole; zero means 11 MiB.
	MaxMultipartBody int64
	// MaxSubscriptions bounds the subscriptions one websocket runs at
	// once; zero means 100.
	MaxSubscriptions int
	// MaxWebsocketMessage bounds each message a client sends over a
	// websocket, in bytes; zero (or less) means 1 MiB, as for a JSON POST.
	// A larger message closes the connection with status 1009 (Message
	// Too Big) before the server reads its payload.
	MaxWebsocketMessage int64
	// Websockets tracks the open websockets so that a draining server can
	// close them (Websockets.GoAway); nil means a set of the server's own.
	Websockets *Websockets
	// Mutations is each user's budget of mutation operations (over HTTP
	// and websockets alike); nil means no budget.
	Mutations upload.Admitter
	// MaxWebsocketsPerUser bounds the websockets one user keeps open on
	// this replica, counted once connection_init has authenticated them;
	// one more is closed with 4429. Zero means no bound.
	MaxWebsocketsPerUser int
	// Metrics records mutation times, websockets and subscriptions; nil
	// records nothing.
	Metrics *metrics.Metrics
	// TracerProvider, when set, makes each operation a span (see
	// operationSpans); nil traces nothing.
	TracerProvider trace.TracerProvider
}

// maxGraphQLMessage is the default MaxWebsocketMessage: httpapi bounds a
// GraphQL POST body to the same.
const maxGraphQLMessage = 1 << 20

// NewServer returns the GraphQL handler for POST, GET, multipart and
// websockets (graphql-transport-ws and legacy graphql-ws).
func NewServer(o ServerOptions) http.Handler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.PingInterval == 0 {
		o.PingInterval = 25 * time.Second
	}
	if o.ComplexityLimit == 0 {
		o.ComplexityLimit = 500
	}
	if o.MaxMultipartBody == 0 {
		o.MaxMultipartBody = 11 << 20
	}
	if o.MaxSubscriptions == 0 {
		o.MaxSubscriptions = 100
	}
	if o.Websockets == nil {
		o.Websockets = NewWebsockets()
	}
	if o.MaxWebsocketMessage <= 0 {
		o.MaxWebsocketMessage = maxGraphQLMessage
	}
	srv := handler.New(NewExecutableSchema(Config{Resolvers: &Resolver{Uploads: o.Uploads}}))
	// websockets are served by a transport of spool's own (wstransport.go):
	// gqlgen's keeps each socket inside its net/http handler, with five
	// goroutines per subscription (docs/BENCHMARKS.md, "Load").
	srv.AddTransport(&wsTransport{
		upgrader: websocket.Upgrader{
			CheckOrigin: originChecker(o.AllowedOrigins),
		},
		log:          o.Logger,
		initFunc:     websocketAuth(o.Auth, o.Uploads, o.MaxSubscriptions, o.Metrics),
		initTimeout:  10 * time.Second,
		pingInterval: o.PingInterval,
		readLimit:    o.MaxWebsocketMessage,
		sockets:      o.Websockets,
		userSockets:  ratelimit.NewSlots(o.MaxWebsocketsPerUser),
		metrics:      o.Metrics,
	})
	srv.AddTransport(transport.Options{})
	srv.AddTransport(transport.GET{})
	srv.AddTransport(transport.POST{})
	srv.AddTransport(transport.MultipartForm{MaxUploadSize: o.MaxMultipartBody, MaxMemory: 1 << 20})
	srv.SetQueryCache(lru.New[*ast.QueryDocument](1000))
	srv.Use(extension.Introspection{})
	srv.Use(extension.AutomaticPersistedQuery{Cache: lru.New[string](100)})
	srv.Use(extension.FixedComplexityLimit(o.ComplexityLimit))
	if o.Metrics != nil {
		srv.Use(&mutationTimer{m: o.Metrics})
	}
	if o.TracerProvider != nil {
		srv.Use(operationSpans{tracer: o.TracerProvider.Tracer(tracerName)})
	}
	srv.Use(uploadLogField{})
	srv.SetValidationRulesFn(validationRules)
	present := presentError(o.Logger, o.Uploads)
	if o.Mutations != nil {
		srv.Use(mutationBudget{admit: o.Mutations, present: present})
	}
	srv.SetErrorPresenter(present)
	srv.SetRecoverFunc(recoverPanic(o.Logger))
	return withResponseHeader(srv)
}

// websocketAuth reads the token from the connection_init payload. A bad
// or missing token does not refuse the connection: gqlgen would close it
// with code 1000, which graphql-ws clients retry at once, forever. The
// connection is accepted unauthenticated instead, and every operation on
// it answers UNAUTHENTICATED (saying why a token sent was refused), which
// clients do not retry. A token that could not be checked (the database
// is down) is the server's failure, returned as the error: the transport
// closes the socket with 1013 (try again later), which graphql-ws clients
// retry with back-off, and the retry authenticates once the database is
// back. The context it returns is every operation's on the connection,
// so it also carries the connection's subscription budget.
func websocketAuth(authn Authenticator, uploads *upload.Service, maxSubscriptions int, m *metrics.Metrics) transport.WebsocketInitFunc {
	return func(ctx context.Context, p transport.InitPayload) (context.Context, *transport.InitPayload, error) {
		ctx = withSubscriptionSlots(ctx, maxSubscriptions, m)
		header := p.Authorization()
		if header == "" {
			header, _ = p["authorization"].(string)
		}
		userID, err := authn.Authenticate(ctx, header)
		switch {
		case errors.Is(err, auth.ErrInvalidToken):
			if reason := auth.Refusal(err); reason != "" {
				ctx = upload.WithRefusedToken(ctx, reason)
			}
			return ctx, nil, nil
		case err != nil:
			if upload.ErrorCode(err) == upload.CodeUnavailable {
				uploads.NoteUnavailable("websocket connection_init", err)
			}
			return ctx, nil, err
		}
		reqlog.SetUser(ctx, userID)
		if until, ok := authn.ValidUntil(header); ok {
			ctx = withTokenValidUntil(ctx, until)
		}
		return upload.WithCaller(ctx, userID), nil, nil
	}
}

// originChecker allows websocket upgrades from no Origin (non-browser
// clients), the server's own origin, and the allow-list.
func originChecker(allowed []string) func(r *http.Request) bool {
	return func(r *http.Request) bool {
		origin := r.Header.Get("Origin")
		if origin == "" {
			return true
		}
		if slices.Contains(allowed, "*") || slices.Contains(allowed, origin) {
			return true
		}
		u, err := url.Parse(origin)
		return err == nil && strings.EqualFold(u.Host, r.Host)
	}
}
