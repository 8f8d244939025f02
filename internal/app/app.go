// Package app wires spool together: it opens the engines a Config names,
// builds the upload service and the HTTP surface, and runs them. The
// binary and the end-to-end tests both run spool through Main.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofrs/flock"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/spoolhq/spool/graph"
	"github.com/spoolhq/spool/internal/auth"
	"github.com/spoolhq/spool/internal/httpapi"
	"github.com/spoolhq/spool/internal/jobs"
	"github.com/spoolhq/spool/internal/media"
	"github.com/spoolhq/spool/internal/metrics"
	"github.com/spoolhq/spool/internal/ratelimit"
	"github.com/spoolhq/spool/internal/signing"
	"github.com/spoolhq/spool/internal/storage/gcs"
	"github.com/spoolhq/spool/internal/storage/localfs"
	"github.com/spoolhq/spool/internal/storage/storagetrace"
	"github.com/spoolhq/spool/internal/telemetry"
	"github.com/spoolhq/spool/internal/upload"
	"github.com/spoolhq/spool/web"
)

// Config is everything spool can be told; cmd/spool fills it from flags
// and the environment. Zero values take the defaults of DefaultConfig.
type Config struct {
	// Addr is where to listen, HOST:PORT (port 0 picks a free one).
	Addr string
	// DataDir holds the embedded database, the files and the secret.
	DataDir string
	// PublicURL is the base of the URLs spool hands out; empty means
	// http://<listen address>.
	PublicURL string
	// JWTSecret signs tokens and URLs; empty means the one kept in
	// DataDir (created on first start).
	JWTSecret []byte
	// AllowedOrigins may call spool from browsers (CORS, websockets).
	AllowedOrigins []string
	// SweepInterval is how often the sweep job runs (expired uploads,
	// leftovers); it overrides Jobs.SweepInterval.
	SweepInterval time.Duration
	// Jobs tunes the job queue: processing workers, timeouts.
	Jobs jobs.Config
	// PingInterval is the websocket keep-alive ping period; zero means
	// graph's default (25 s).
	PingInterval time.Duration
	// MaxSubscriptions bounds the subscriptions one websocket runs at
	// once; zero means graph's default (100).
	MaxSubscriptions int
	// DatabaseURL is a postgres:// URL; empty means SQLite in DataDir.
	DatabaseURL string
	// RedisURL is a Redis URL (redisurl.Parse) for progress fan-out and
	// rate budgets across replicas; empty means in-process fan-out.
	RedisURL string
	// RedisCAFile names a PEM file of the authorities a rediss:// URL's
	// servers are checked against, instead of the system's.
	RedisCAFile string
	// DebugAddr, HOST:PORT, serves Go's net/http/pprof profiles on a
	// listener of its own, apart from the API; empty means off. The
	// profiles need no token, so cmd/spool keeps it on loopback.
	DebugAddr string
	// MetricsAddr, HOST:PORT, serves Prometheus metrics at /metrics on a
	// listener of its own, and no longer on Addr; empty serves them at
	// Addr's /metrics.
	MetricsAddr string
	// RedisPrefix prefixes spool's Redis channels (default "spool:").
	RedisPrefix string
	// StorageURL is gs://bucket/prefix or file://DIR; empty means
	// DataDir/files on local disk.
	StorageURL string
	// FsyncChunks makes the local-disk store fsync each chunk before it
	// is acknowledged (localfs Options.SyncWrites), so an acknowledged
	// chunk survives a power loss. It has no effect on GCS.
	FsyncChunks bool
	// DiskReserve is the room chunks leave free on local storage's
	// filesystem, for the database and processing once uploads fill the
	// disk (localfs.Reserve); the zero value keeps none. It has no effect
	// on GCS.
	DiskReserve localfs.Reserve
	// GCS tunes the GCS store (credentials, signing, a client for tests).
	GCS gcs.Options
	// MediaURLs says where download URLs point; empty means
	// MediaURLsAuto.
	MediaURLs MediaURLs
	// Upload holds the upload rules; Upload.DirectUploads sends chunks
	// straight to GCS.
	Upload upload.Config
	// DeriveMedia makes processing read each completed file's facts and
	// make its thumbnails (internal/media, tuned by Media); without it
	// processing only checks the bytes. spool serve turns it on.
	DeriveMedia bool
	// Media tunes processing: where ffmpeg and ffprobe are, their time
	// limit, the largest image decoded.
	Media media.Options
	// OIDC names an OpenID Connect provider whose tokens are accepted
	// besides spool's own; the zero value accepts only spool's. Run
	// fails if the provider's keys cannot be fetched.
	OIDC auth.OIDCConfig
	// DrainGrace is how long Close keeps serving, with /readyz answering
	// 503, before it stops listening: the time a load balancer needs to
	// see the 503 and stop sending requests here. Zero stops at once
	// (tests; a server no load balancer fronts). DefaultConfig: 5 s.
	DrainGrace time.Duration
	// ShutdownTimeout bounds how long Close waits, once it stops
	// listening, for requests in flight (chunk PUTs, mutations) to
	// finish; those still running then are cut. Zero means 30 s.
	ShutdownTimeout time.Duration
	// Limits bound what one user, upload or connection may ask; a zero
	// field takes DefaultLimits' value.
	Limits Limits
	// TracerProvider traces each request (HTTP, GraphQL operation) and the
	// database, Redis and storage calls made for it, in one trace (see
	// internal/telemetry). nil or a no-op provider traces nothing and
	// installs no instrumentation at all.
	TracerProvider trace.TracerProvider
	// TracePropagator reads the trace context clients send (recorded as
	// a link); nil reads none.
	TracePropagator propagation.TextMapPropagator
}

// tracer returns the provider to trace with, or nil when tracing is off.
func (c Config) tracer() trace.TracerProvider {
	if _, off := c.TracerProvider.(noop.TracerProvider); off {
		return nil
	}
	return c.TracerProvider
}

// Limits bound what one user, one upload or one connection may ask of
// spool (docs/CONFIG.md, "Limits").
type Limits struct {
	// Mutations is each user's budget of GraphQL mutation operations,
	// shared by every replica through Redis when RedisURL is set.
	Mutations ratelimit.Rate
	// DataPlane is each user's budget of data-plane requests (chunk
	// PUTs, HEADs), shared as Mutations is.
	DataPlane ratelimit.Rate
	// MaxParallelChunksPerUpload bounds one upload's chunk PUTs running
	// at once on one replica.
	MaxParallelChunksPerUpload int
	// MaxWebsocketsPerUser bounds one user's websockets on one replica.
	MaxWebsocketsPerUser int
	// BodyIdleTimeout cuts off a chunk or GraphQL body that sends no
	// byte for this long, and a download whose client takes none.
	BodyIdleTimeout time.Duration
	// ReadHeaderTimeout bounds the time a client takes to send a
	// request's headers (slowloris).
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a keep-alive connection idle this long.
	IdleTimeout time.Duration
}

// DefaultLimits never bite a normal client: the budgets are above the
// rates one user's few parallel loops of tiny chunk PUTs or mutations
// reach on a loaded machine (docs/BENCHMARKS.md: up to ~1,200/s), and the
// parallel-chunk bound is above the clients' default of 4 parallel PUTs.
func DefaultLimits() Limits {
	return Limits{
		Mutations:                  ratelimit.Rate{Events: 2000, Per: time.Second, Burst: 10000},
		DataPlane:                  ratelimit.Rate{Events: 2000, Per: time.Second, Burst: 10000},
		MaxParallelChunksPerUpload: 16,
		MaxWebsocketsPerUser:       20,
		BodyIdleTimeout:            30 * time.Second,
		ReadHeaderTimeout:          10 * time.Second,
		IdleTimeout:                2 * time.Minute,
	}
}

// withDefaults fills l's zero fields from DefaultLimits.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.Mutations == (ratelimit.Rate{}) {
		l.Mutations = d.Mutations
	}
	if l.DataPlane == (ratelimit.Rate{}) {
		l.DataPlane = d.DataPlane
	}
	if l.MaxParallelChunksPerUpload == 0 {
		l.MaxParallelChunksPerUpload = d.MaxParallelChunksPerUpload
	}
	if l.MaxWebsocketsPerUser == 0 {
		l.MaxWebsocketsPerUser = d.MaxWebsocketsPerUser
	}
	if l.BodyIdleTimeout == 0 {
		l.BodyIdleTimeout = d.BodyIdleTimeout
	}
	if l.ReadHeaderTimeout == 0 {
		l.ReadHeaderTimeout = d.ReadHeaderTimeout
	}
	if l.IdleTimeout == 0 {
		l.IdleTimeout = d.IdleTimeout
	}
	return l
}

// defaultShutdownTimeout is Config.ShutdownTimeout's default: a 16 MiB
// chunk at 5 Mbit/s takes 27 s.
const defaultShutdownTimeout = 30 * time.Second

// MediaURLs says where the download URLs spool hands out point.
type MediaURLs string

const (
	// MediaURLsAuto is MediaURLsSigned when the store can make its own
	// URLs (GCS with credentials that sign), else MediaURLsProxy.
	MediaURLsAuto MediaURLs = "auto"
	// MediaURLsSigned points downloads at the store (GCS V4 signed URLs):
	// no byte passes through spool. Run refuses it if the store cannot
	// sign.
	MediaURLsSigned MediaURLs = "signed"
	// MediaURLsProxy points downloads at spool's own signed route, which
	// streams from the store with Range support.
	MediaURLsProxy MediaURLs = "proxy"
)

// ParseMediaURLs returns the mode s names ("" is auto), or an error
// listing the valid ones.
func ParseMediaURLs(s string) (MediaURLs, error) {
	switch m := MediaURLs(s); m {
	case "":
		return MediaURLsAuto, nil
	case MediaURLsAuto, MediaURLsSigned, MediaURLsProxy:
		return m, nil
	}
	return "", fmt.Errorf("%q is not a media URL mode: want auto, signed or proxy", s)
}

// UnmarshalText sets m from its name (see ParseMediaURLs), so that
// MediaURLs is a flag.TextVar.
func (m *MediaURLs) UnmarshalText(b []byte) error {
	v, err := ParseMediaURLs(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// MarshalText returns m's name.
func (m MediaURLs) MarshalText() ([]byte, error) { return []byte(m), nil }

// DefaultConfig returns the embedded defaults.
func DefaultConfig() Config {
	return Config{
		Addr:            "127.0.0.1:8080",
		DataDir:         "data",
		SweepInterval:   time.Minute,
		Jobs:            jobs.DefaultConfig(),
		MediaURLs:       MediaURLsAuto,
		Upload:          upload.DefaultConfig(),
		DrainGrace:      5 * time.Second,
		ShutdownTimeout: defaultShutdownTimeout,
		Limits:          DefaultLimits(),
		DiskReserve:     localfs.DefaultReserve(),
	}
}

// SecretFile is where the generated secret is kept in the data dir.
const SecretFile = "jwt-secret"

// Secret returns the configured secret, or the data dir's (creating it).
func (c Config) Secret() ([]byte, error) {
	if len(c.JWTSecret) > 0 {
		if len(c.JWTSecret) < auth.MinSecretSize {
			return nil, fmt.Errorf("the JWT secret must be at least %d bytes", auth.MinSecretSize)
		}
		return c.JWTSecret, nil
	}
	return auth.LoadOrCreateSecret(filepath.Join(c.DataDir, SecretFile))
}

// Main is one running spool server.
type Main struct {
	cfg   Config
	log   *slog.Logger
	eng   *engines
	svc   *upload.Service
	queue *jobs.Queue
	ln    net.Listener
	srv   *http.Server
	url   string
	debug *http.Server       // nil unless cfg.DebugAddr
	oidc  *auth.OIDCVerifier // nil unless cfg.OIDC.Issuer
	dbgLn net.Listener
	// metrics are this server's collectors, in a registry of its own.
	metrics    *metrics.Metrics
	metricsSrv *http.Server // nil unless cfg.MetricsAddr
	metricsLn  net.Listener
	// dirLock is held while the server runs on the embedded database
	// (lockDataDir); nil otherwise.
	dirLock *flock.Flock
	ready   atomic.Bool
	// draining is set when Close begins (see Config.DrainGrace).
	draining atomic.Bool
	// websockets are the open GraphQL websockets, closed with 1001 by
	// Close: Shutdown does not see hijacked connections.
	websockets *graph.Websockets
	done       chan struct{}
	closeOnce  sync.Once
	closeErr   error
}

// New returns a Main that will run with cfg.
func New(cfg Config, log *slog.Logger) *Main {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Main{cfg: cfg, log: log, websockets: graph.NewWebsockets(), done: make(chan struct{})}
}

// Run opens the engines, starts listening and serving, and returns once
// spool is ready; serving goes on until Close.
func (m *Main) Run(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			m.closeEngines()
		}
	}()
	cfg := m.cfg
	if cfg.DataDir == "" {
		return errors.New("a data directory is required")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("creating data dir: %w", err)
	}
	if m.dirLock, err = lockDataDir(cfg); err != nil {
		return err
	}
	secret, err := cfg.Secret()
	if err != nil {
		return err
	}
	issuer, err := auth.NewIssuer(secret)
	if err != nil {
		return err
	}
	urlSigner, err := signing.New(secret)
	if err != nil {
		return err
	}
	tokens := auth.Verifier{Own: issuer}
	if cfg.OIDC.Issuer != "" {
		if m.oidc, err = auth.NewOIDCVerifier(ctx, cfg.OIDC, m.log); err != nil {
			return err
		}
		tokens.OIDC = m.oidc
	}
	if m.metrics, err = metrics.New(prometheus.NewRegistry(), m.log); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	if m.eng, err = openEngines(ctx, cfg, m.log, m.metrics); err != nil {
		return err
	}
	if local, ok := m.eng.store.(*localfs.Store); ok {
		if err := m.metrics.WatchStorageSpace(local.Space, local.Reserve().Of); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		warnIfInReserve(m.log, local)
	}
	if err := m.metrics.WatchDatabasePool(m.eng.db.SQL(), m.eng.db.ReadSQL()); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	broker, err := m.metrics.InstrumentBroker(m.eng.broker)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	if cfg.Upload.ProxyMedia, err = m.proxyMedia(cfg); err != nil {
		return err
	}
	if m.ln, err = net.Listen("tcp", cfg.Addr); err != nil {
		return fmt.Errorf("listening on %s: %w", cfg.Addr, err)
	}
	m.url = cfg.PublicURL
	if m.url == "" {
		m.url = "http://" + m.ln.Addr().String()
	}
	urls := httpapi.NewURLSigner(m.url, urlSigner)
	jobsCfg := cfg.Jobs
	if cfg.SweepInterval != 0 {
		jobsCfg.SweepInterval = cfg.SweepInterval
	}
	jobsCfg.OnFailure = m.metrics.JobFailed
	jobsCfg.ListenPool = m.eng.db.ListenPool()
	if m.queue, err = jobs.New(m.eng.db.SQL(), m.eng.db.Dialect, jobsCfg, m.log); err != nil {
		return fmt.Errorf("job queue: %w", err)
	}
	var processor upload.Processor
	if cfg.DeriveMedia {
		if processor, err = newProcessor(cfg.Media, m.log); err != nil {
			return err
		}
	}
	store := m.eng.store
	if tp := cfg.tracer(); tp != nil {
		store = storagetrace.Wrap(store, telemetry.ChildSpansOnly(tp))
	}
	m.svc, err = upload.NewService(upload.Deps{
		DB: m.eng.db.Client, Dialect: m.eng.db.Dialect, Store: m.metrics.InstrumentStore(store), Broker: broker,
		Signer: urls, Queue: m.queue,
		Processor: processor, Logger: m.log,
		// On local disk without --fsync-chunks the chunk's bytes are not
		// synced before the answer, so its record need not be either
		// (DESIGN "Durability"). GCS has a part durable before it answers.
		AsyncReceipts: !cfg.FsyncChunks && m.eng.storeName == "local",
		// A GCS part is replaced only by an upload that completes.
		WholeChunkWrites: m.eng.storeName == "gcs",
	}, cfg.Upload)
	if err != nil {
		return fmt.Errorf("upload rules: %w", err)
	}
	if err := m.queue.Start(ctx, m.svc); err != nil {
		m.queue = nil // nothing to stop
		return err
	}
	if err := m.watchQueues(); err != nil {
		return err
	}
	known, err := lru.New[string, string](knownSubjects)
	if err != nil {
		return err
	}
	verified, err := auth.NewCachingVerifier(tokens, knownSubjects)
	if err != nil {
		return err
	}
	authn := tokenAuth{tokens: verified, users: m.svc, known: known}
	// A multipart request is the image plus its operations and map parts,
	// which are small; the image's own limit is checked by uploadImage.
	maxMultipart := m.svc.Config().MaxInlineImageSize + 64<<10
	limits := cfg.Limits.withDefaults()
	mutations, dataPlane, err := m.budgets(cfg, limits)
	if err != nil {
		return err
	}
	gql := graph.NewServer(graph.ServerOptions{
		Uploads: m.svc, Auth: authn, Logger: m.log, AllowedOrigins: cfg.AllowedOrigins,
		PingInterval: cfg.PingInterval, MaxMultipartBody: maxMultipart, MaxSubscriptions: cfg.MaxSubscriptions,
		Websockets: m.websockets,
		Mutations:  mutations, MaxWebsocketsPerUser: limits.MaxWebsocketsPerUser,
		Metrics: m.metrics, TracerProvider: cfg.tracer(),
	})
	// Metrics go on the API's port unless they have a listener of their own.
	var publicMetrics http.Handler
	if cfg.MetricsAddr == "" {
		publicMetrics = m.metrics.Handler()
	}
	m.srv = &http.Server{
		Handler: httpapi.New(httpapi.Options{
			Uploads: m.svc, URLs: urls, Auth: authn, GraphQL: gql, Pages: web.Pages(),
			AllowedOrigins: cfg.AllowedOrigins, Ready: m.ready.Load, Draining: m.draining.Load, Checks: m.eng.checks(),
			MaxMultipartBody: maxMultipart, Metrics: m.metrics, MetricsHandler: publicMetrics, Logger: m.log,
			TracerProvider: cfg.tracer(), Propagator: cfg.TracePropagator,
			Limits: httpapi.Limits{
				Requests: dataPlane, MaxParallelChunks: limits.MaxParallelChunksPerUpload, BodyIdleTimeout: limits.BodyIdleTimeout,
			},
		}),
		// No ReadTimeout or WriteTimeout: a large chunk on a slow link, a
		// long download, may take as long as it takes. A stalled body is
		// cut by BodyIdleTimeout instead.
		ReadHeaderTimeout: limits.ReadHeaderTimeout,
		IdleTimeout:       limits.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(m.log.Handler(), slog.LevelWarn),
	}
	if cfg.MetricsAddr != "" {
		if err := m.serveMetrics(cfg.MetricsAddr); err != nil {
			_ = m.ln.Close()
			return err
		}
	}
	if cfg.DebugAddr != "" {
		if err := m.serveDebug(cfg.DebugAddr); err != nil {
			_ = m.ln.Close()
			if m.metricsSrv != nil {
				_ = m.metricsSrv.Close()
			}
			return err
		}
	}
	go func() {
		defer close(m.done)
		if err := m.srv.Serve(m.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.log.Error("serving stopped", "err", err)
		}
	}()
	m.ready.Store(true)
	m.log.Info("spool ready", "url", m.url, "data_dir", cfg.DataDir,
		"database", m.eng.db.Dialect, "storage", m.eng.storeName, "progress", m.eng.brokerName,
		"media_urls", mediaURLsName(cfg.Upload.ProxyMedia))
	return nil
}

// budgets returns each user's mutation and data-plane budgets: held in
// Redis when there is one, so they hold across replicas, and falling back
// to this process's while Redis fails; in this process otherwise.
func (m *Main) budgets(cfg Config, limits Limits) (mutations, dataPlane upload.Admitter, err error) {
	budget := func(name string, rate ratelimit.Rate) (upload.Admitter, error) {
		local, err := ratelimit.NewMemory(rate, 0)
		if err != nil {
			return nil, fmt.Errorf("%s rate limit: %w", name, err)
		}
		if m.eng.rates == nil {
			return userBudget{limiter: local, what: name}, nil
		}
		prefix := cfg.RedisPrefix
		if prefix == "" {
			prefix = "spool:"
		}
		shared, err := m.eng.rates.Limiter(prefix+name+":", rate)
		if err != nil {
			return nil, fmt.Errorf("%s rate limit: %w", name, err)
		}
		return userBudget{limiter: &ratelimit.Failover{Shared: shared, Local: local, Log: m.log, Name: name}, what: name}, nil
	}
	if mutations, err = budget("mutations", limits.Mutations); err != nil {
		return nil, nil, err
	}
	if dataPlane, err = budget("data-plane", limits.DataPlane); err != nil {
		return nil, nil, err
	}
	return mutations, dataPlane, nil
}

// userBudget is a user's budget of requests of one kind: it turns a
// limiter's refusal into RATE_LIMITED.
type userBudget struct {
	limiter ratelimit.Limiter
	what    string // "mutations", "data-plane"
}

// Admit implements upload.Admitter. A limiter that fails lets the
// request through: limits protect spool, and must not take it down.
func (b userBudget) Admit(ctx context.Context, userID string) error {
	wait, err := b.limiter.Allow(ctx, userID)
	if err != nil || wait <= 0 {
		return nil
	}
	return upload.RateLimited(wait, "this user is over its %s budget; try again in %d s (Retry-After)",
		b.what, int64((max(wait, time.Second)+time.Second-1)/time.Second))
}

// serveDebug serves net/http/pprof's handlers on a listener at addr, with
// nothing else on it: a profile is requested on purpose, by someone who
// can reach that address, never through the API's port.
func (m *Main) serveDebug(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on %s (--debug-addr): %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	m.dbgLn = ln
	m.debug = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := m.debug.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.log.Error("serving profiles stopped", "err", err)
		}
	}()
	m.log.Warn("serving Go profiles (net/http/pprof), without authentication", "addr", ln.Addr().String())
	return nil
}

// serveMetrics serves the metrics at /metrics on a listener at addr, with
// nothing else on it, so that they can be kept off the API's port (and
// out of the load balancer's reach).
func (m *Main) serveMetrics(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on %s (--metrics-addr): %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.metrics.Handler())
	m.metricsLn = ln
	m.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := m.metricsSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.log.Error("serving metrics stopped", "err", err)
		}
	}()
	m.log.Info("serving metrics", "url", "http://"+ln.Addr().String()+"/metrics")
	return nil
}

// MetricsAddr is the address of the metrics' own listener, or "" when
// Config.MetricsAddr is empty (they are served at URL()/metrics).
func (m *Main) MetricsAddr() string {
	if m.metricsLn == nil {
		return ""
	}
	return m.metricsLn.Addr().String()
}

// watchQueues adds the scrape-time counts of unfinished uploads and jobs.
func (m *Main) watchQueues() error {
	statuses := make([]string, len(upload.UnfinishedStatuses))
	for i, st := range upload.UnfinishedStatuses {
		statuses[i] = string(st)
	}
	err := m.metrics.WatchUploads(statuses, func(ctx context.Context) (map[string]int64, error) {
		counts, err := m.svc.CountUnfinished(ctx)
		byName := make(map[string]int64, len(counts))
		for st, n := range counts {
			byName[string(st)] = n
		}
		return byName, err
	})
	if err == nil {
		err = m.metrics.WatchJobs(jobs.UnfinishedStates, m.queue.CountUnfinished)
	}
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

// DebugAddr is the address profiles are served at, or "" when
// Config.DebugAddr is empty.
func (m *Main) DebugAddr() string {
	if m.dbgLn == nil {
		return ""
	}
	return m.dbgLn.Addr().String()
}

// signingFlags names the settings that let GCS sign, for error messages.
const signingFlags = "give a service account's key (--gcs-credentials-file) or an account to sign as through IAM (--gcs-signer-email)"

// proxyMedia decides whether downloads go through spool (see MediaURLs),
// and refuses settings that need URLs the store cannot sign: direct
// uploads, and MediaURLsSigned. With MediaURLsAuto and a store that cannot
// sign, it says once in the log that downloads go through spool, and why.
func (m *Main) proxyMedia(cfg Config) (bool, error) {
	mode, err := ParseMediaURLs(string(cfg.MediaURLs))
	if err != nil {
		return false, err
	}
	_, linker := m.eng.store.(upload.ObjectLinker)
	signErr := m.eng.signErr
	if cfg.Upload.DirectUploads && signErr != nil {
		return false, fmt.Errorf("direct uploads (--storage-direct) send chunks to GCS through signed URLs, and GCS cannot sign: %w; %s", signErr, signingFlags)
	}
	// A public base URL needs no signature.
	storeLinks := linker && (signErr == nil || cfg.GCS.PublicBaseURL != "")
	switch {
	case mode == MediaURLsProxy:
		return true, nil
	case mode == MediaURLsSigned && !linker:
		return false, fmt.Errorf("--media-urls signed needs storage that signs its own URLs (gs://); %s storage is served by spool (--media-urls proxy or auto)", m.eng.storeName)
	case mode == MediaURLsSigned && !storeLinks:
		return false, fmt.Errorf("--media-urls signed: GCS cannot sign download URLs: %w; %s, or serve downloads through spool with --media-urls proxy", signErr, signingFlags)
	case linker && !storeLinks:
		m.log.Warn("media downloads go through spool (--media-urls proxy): GCS cannot sign URLs; for signed URLs "+signingFlags,
			"reason", signErr)
		return true, nil
	}
	return !linker, nil
}

func mediaURLsName(proxy bool) MediaURLs {
	if proxy {
		return MediaURLsProxy
	}
	return MediaURLsSigned
}

// URL is the base URL spool serves at.
func (m *Main) URL() string { return m.url }

// Service returns the upload service (for tests and tools).
func (m *Main) Service() *upload.Service { return m.svc }

// Close drains the server and stops it, in this order:
//
//  1. /readyz answers 503 at once, and every response carries
//     Connection: close; the listener keeps accepting and requests are
//     served as before, for Config.DrainGrace, while the load balancer
//     notices and stops sending requests here;
//  2. the websockets are closed with 1001 (going away), so their clients
//     reconnect, to another replica, and subscribe afresh;
//  3. the listener closes and idle connections with it; requests in
//     flight (chunk PUTs, mutations) get Config.ShutdownTimeout to
//     finish, then are cut;
//  4. the job queue stops (running jobs get Jobs.ShutdownTimeout to
//     finish, then are handed back to the queue for another replica) and
//     the engines close.
//
// It returns an error if requests were still running at the timeout.
// Calls after the first wait for it and return its result.
func (m *Main) Close() error {
	m.closeOnce.Do(func() { m.closeErr = m.drain() })
	return m.closeErr
}

func (m *Main) drain() error {
	m.draining.Store(true)
	m.ready.Store(false)
	var err error
	if m.debug != nil {
		_ = m.debug.Close() // a profile being taken is cut short
	}
	if m.metricsSrv != nil {
		_ = m.metricsSrv.Close() // a scrape is cut short
	}
	if m.srv != nil {
		if g := m.cfg.DrainGrace; g > 0 {
			m.log.Info("draining: /readyz answers 503, still serving", "grace", g)
			time.Sleep(g)
		}
		m.srv.SetKeepAlivesEnabled(false)
		if n := m.websockets.GoAway(); n > 0 {
			m.log.Info("websockets closed: going away", "count", n)
		}
		timeout := m.cfg.ShutdownTimeout
		if timeout <= 0 {
			timeout = defaultShutdownTimeout
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		if err = m.srv.Shutdown(ctx); err != nil {
			m.log.Warn("requests still running at the shutdown timeout are cut", "timeout", timeout)
			_ = m.srv.Close()
			err = fmt.Errorf("requests still running after %v: %w", timeout, err)
		}
		<-m.done
	}
	m.closeEngines()
	return err
}

func (m *Main) closeEngines() {
	if m.queue != nil {
		// Stop returns within the shutdown timeout and the time River
		// takes to record the jobs it hands back.
		if err := m.queue.Stop(context.Background()); err != nil {
			m.log.Warn("stopping the job queue failed", "err", err)
		}
		m.queue = nil
	}
	if m.svc != nil {
		m.svc.Close()
	}
	if m.eng != nil {
		m.eng.close(m.log)
	}
	if m.oidc != nil {
		m.oidc.Close()
		m.oidc = nil
	}
	if m.ln != nil && m.srv == nil {
		_ = m.ln.Close()
	}
	if m.dirLock != nil {
		// Last: the next server on the data dir may start once the
		// database is closed.
		_ = m.dirLock.Unlock()
		m.dirLock = nil
	}
}

// tokenAuth authenticates bearer tokens and maps their subject to a user.
type tokenAuth struct {
	tokens *auth.CachingVerifier
	users  *upload.Service
	// known maps token subjects to user ids. Users are never deleted or
	// re-keyed, so a remembered subject spares a request its lookup: a
	// chunk PUT or confirmChunk by bearer token would otherwise pay one
	// more statement for it.
	known *lru.Cache[string, string]
}

// knownSubjects bounds tokenAuth's memory: as many subjects, and as many
// tokens verified (an entry is under 200 bytes for spool's subjects,
// under 1 KiB for an OIDC provider's; a token adds its SHA-256).
const knownSubjects = 10000

// Authenticate returns the token's user id. A missing or bad token is an
// error wrapping auth.ErrInvalidToken; a user lookup that met a database
// outage is UNAVAILABLE (the token may be fine: callers must not answer
// UNAUTHENTICATED), any other lookup failure INTERNAL.
func (a tokenAuth) Authenticate(ctx context.Context, header string) (string, error) {
	token, ok := auth.BearerToken(header)
	switch {
	case !ok && strings.TrimSpace(header) == "":
		return "", auth.ErrNoToken
	case !ok:
		return "", auth.ErrNotBearer
	}
	subject, err := a.tokens.Verify(ctx, token)
	if err != nil {
		return "", err
	}
	if id, ok := a.known.Get(subject); ok {
		return id, nil
	}
	u, err := a.users.EnsureUser(ctx, subject)
	if err != nil {
		err = fmt.Errorf("looking up the token's user: %w", err)
		if upload.ErrorCode(err) == upload.CodeUnavailable {
			return "", upload.Unavailable(err)
		}
		return "", err
	}
	a.known.Add(subject, u.ID)
	return u.ID, nil
}

// ValidUntil returns when the token in header, which Authenticate
// accepted, stops being accepted.
func (a tokenAuth) ValidUntil(header string) (time.Time, bool) {
	token, ok := auth.BearerToken(header)
	if !ok {
		return time.Time{}, false
	}
	return a.tokens.ValidUntil(token)
}

// newProcessor returns the media processor, warning when it lacks a tool.
func newProcessor(o media.Options, log *slog.Logger) (*media.Processor, error) {
	o.Logger = log
	p, err := media.New(o)
	if err != nil {
		return nil, fmt.Errorf("processing: %w", err)
	}
	if missing := p.MissingTools(); len(missing) > 0 {
		log.Warn("media tools not found: videos and audio get only what can be read without them (no facts without ffprobe; no poster, faststart or waveform without ffmpeg); install ffmpeg or set --ffmpeg/--ffprobe",
			"missing", strings.Join(missing, ", "))
	}
	return p, nil
}
