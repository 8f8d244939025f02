package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"

	"go.opentelemetry.io/otel/trace"

	"github.com/spoolhq/spool/internal/database"
	"github.com/spoolhq/spool/internal/jobs"
	"github.com/spoolhq/spool/internal/metrics"
	"github.com/spoolhq/spool/internal/progress"
	"github.com/spoolhq/spool/internal/progress/redis"
	"github.com/spoolhq/spool/internal/ratelimit/redisrate"
	"github.com/spoolhq/spool/internal/redisurl"
	"github.com/spoolhq/spool/internal/storage/gcs"
	"github.com/spoolhq/spool/internal/storage/localfs"
	"github.com/spoolhq/spool/internal/telemetry"
	"github.com/spoolhq/spool/internal/upload"
)

// engines are the database, storage and progress broker a Config names,
// each chosen by one setting: this is the one place that names concrete
// adapters.
type engines struct {
	db         *database.DB
	store      upload.Store
	storeName  string
	broker     upload.Broker
	brokerName string
	// signErr says why the store cannot sign URLs (nil if it can, and
	// for stores that make no URLs of their own).
	signErr error
	// rates holds the users' request budgets in Redis; nil without Redis.
	rates   *redisrate.Client
	closers []func() error
}

func openEngines(ctx context.Context, cfg Config, log *slog.Logger, mt *metrics.Metrics) (_ *engines, err error) {
	// e is not the named result: returning nil on failure must not stop
	// the deferred close from closing what was already opened.
	e := &engines{}
	defer func() {
		if err != nil {
			e.close(log)
		}
	}()
	dbOpts := []database.Option{database.WithLogger(log), database.WithErrorObserver(mt.DatabaseError)}
	// Engines trace only the calls made for a traced request: the job
	// queue and the broker's own traffic would otherwise be traces of
	// their own, several a second.
	var engineTracer trace.TracerProvider
	if tp := cfg.tracer(); tp != nil {
		engineTracer = telemetry.ChildSpansOnly(tp)
		dbOpts = append(dbOpts, database.WithTracerProvider(engineTracer))
	}
	if cfg.FsyncChunks {
		// An acknowledged chunk survives a power loss only if its record
		// does too.
		dbOpts = append(dbOpts, database.WithDurableCommits())
	}
	e.db, err = database.Open(ctx, cfg.DatabaseURL, filepath.Join(cfg.DataDir, database.SQLiteFile), dbOpts...)
	if err != nil {
		return nil, err
	}
	e.closers = append(e.closers, e.db.Close)
	applied, err := jobs.Migrate(ctx, e.db.SQL(), e.db.Dialect)
	if err != nil {
		return nil, err
	}
	for _, a := range applied {
		log.Info("job queue migration applied", "database", e.db.String(), "version", a.Version, "name", a.Name)
	}

	switch u := cfg.StorageURL; {
	case u == "":
		err = e.openLocal(filepath.Join(cfg.DataDir, "files"), cfg)
	case strings.HasPrefix(u, "file://"):
		p, perr := url.Parse(u)
		// file://data/files is host "data" and directory /files: refuse it
		// rather than store somewhere the operator did not mean.
		if perr != nil || p.Path == "" || (p.Host != "" && p.Host != "localhost") {
			return nil, fmt.Errorf("storage URL %q: want file:///absolute/dir", u)
		}
		err = e.openLocal(p.Path, cfg)
	case strings.HasPrefix(u, "gs://"):
		s, gerr := gcs.Open(ctx, u, cfg.GCS)
		if gerr != nil {
			return nil, fmt.Errorf("opening GCS storage: %w", gerr)
		}
		e.store, e.storeName = s, "gcs"
		e.closers = append(e.closers, s.Close)
		e.signErr = s.CanSign(ctx)
	default:
		return nil, fmt.Errorf("storage URL %q: want gs://bucket/prefix or file://dir", u)
	}
	if err != nil {
		return nil, err
	}

	if cfg.RedisURL == "" {
		e.broker, e.brokerName = progress.NewHub(), "in-process"
		return e, nil
	}
	ru, err := redisurl.Open(ctx, cfg.RedisURL, redisurl.Settings{CAFile: cfg.RedisCAFile})
	if err != nil {
		return nil, fmt.Errorf("opening Redis: %w", err)
	}
	b, err := redis.Open(ctx, ru, redis.Options{Prefix: cfg.RedisPrefix, Logger: log, TracerProvider: engineTracer})
	if err != nil {
		return nil, fmt.Errorf("opening Redis: %w", err)
	}
	e.broker, e.brokerName = b, "redis "+ru.Kind()
	e.closers = append(e.closers, b.Close)
	e.rates = redisrate.New(ru)
	e.closers = append(e.closers, e.rates.Close)
	return e, nil
}

func (e *engines) openLocal(dir string, cfg Config) error {
	s, err := localfs.NewWithOptions(dir, localfs.Options{SyncWrites: cfg.FsyncChunks, Reserve: cfg.DiskReserve})
	if err != nil {
		return fmt.Errorf("opening file store: %w", err)
	}
	e.store, e.storeName = s, "local"
	return nil
}

// checks are /readyz's probes, one per engine that can tell its health.
func (e *engines) checks() map[string]func(context.Context) error {
	c := map[string]func(context.Context) error{"database": e.db.Ping}
	if p, ok := e.store.(upload.Pinger); ok {
		c["storage"] = p.Ping
	}
	if p, ok := e.broker.(upload.Pinger); ok {
		c["redis"] = p.Ping
	}
	return c
}

// close closes the engines in the reverse order of opening.
func (e *engines) close(log *slog.Logger) {
	for i := len(e.closers) - 1; i >= 0; i-- {
		if err := e.closers[i](); err != nil {
			log.Warn("closing an engine failed", "err", err)
		}
	}
	e.closers = nil
}

// warnIfInReserve says at start when local storage's free space is
// already inside its reserve: every new chunk is refused "storage is
// full" until space is freed, and the operator should hear why before
// the clients do.
func warnIfInReserve(log *slog.Logger, s *localfs.Store) {
	free, size, err := s.Space()
	if err != nil {
		return
	}
	if reserve := s.Reserve().Of(size); free < reserve {
		log.Warn("local storage has less free space than its reserve: new chunks are refused as \"storage is full\" until space is freed (--disk-reserve)",
			"free_bytes", free, "reserve_bytes", reserve, "size_bytes", size)
	}
}
