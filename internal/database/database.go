// Package database opens spool's database: the embedded SQLite file by
// default, PostgreSQL when given a postgres:// URL. It owns the schema's
// versioned migrations (SQL files generated from ent/schema, embedded in
// the binary and applied with goose), so a database keeps its data from
// one spool release to the next.
package database

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"github.com/XSAM/otelsql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"go.opentelemetry.io/otel/attribute"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	"modernc.org/sqlite"

	"github.com/spoolhq/spool/ent"
	"github.com/spoolhq/spool/internal/database/sqltx"
)

// SQLiteFile is the embedded database's file name in the data directory.
const SQLiteFile = "spool.db"

// DB is an open database: the ent client spool runs on and the
// connection pool under it.
type DB struct {
	// Client is the ent client over the pool.
	Client *ent.Client
	// Dialect is ent's name of the engine: dialect.SQLite or dialect.Postgres.
	Dialect string

	sql *sql.DB
	// readers are SQLite's read-only connections, which the ent client's
	// SELECTs outside a transaction run on; nil on PostgreSQL.
	readers *sql.DB
	stmts   *stmtCacheStats // SQLite's statement cache; nil on PostgreSQL
	// checkpointer copies SQLite's WAL into the file; nil on PostgreSQL.
	checkpointer *checkpointer
	migrations   fs.FS
	log          *slog.Logger
	where        string // the file or the redacted URL, for messages
	// listen is PostgreSQL's pool for River's LISTEN connection (see
	// ListenPool); nil on SQLite.
	listen *pgxpool.Pool
	// pooled is set when PostgreSQL was found behind a pooler that names
	// backends of its own as it was opened (findPooler), and so is sent
	// statements unprepared.
	pooled bool
}

// Option changes how Open opens a database.
type Option func(*options)

type options struct {
	migrate      bool
	log          *slog.Logger
	maxOpenConns int
	migrations   fs.FS
	stmtCache    int // SQLite statements kept prepared per connection; 0 for none
	readConns    int // SQLite's read connections; 0 for none, -1 for readConns(GOMAXPROCS)
	durable      bool
	onError      func(op string, err error)
	tracer       trace.TracerProvider // nil: statements are not traced
}

// WithErrorObserver makes the ent client call fn for each of its calls
// that fails (see sqltx.OnError for op and what is left out), for
// metrics. River's own statements are not observed.
func WithErrorObserver(fn func(op string, err error)) Option {
	return func(o *options) { o.onError = fn }
}

// WithTracerProvider traces every statement, transaction and row scan
// through the pool as OpenTelemetry spans of tp (otelsql: the SQL text
// with its placeholders, never the arguments). Pass a provider that
// starts spans only under a parent (telemetry.ChildSpansOnly), or the job
// queue's polling makes a trace of its own every second. A nil tp traces
// nothing and adds no wrapper.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) { o.tracer = tp }
}

// traced returns otelsql's options for the system named, or nil when
// nothing is traced.
func (o *options) traced(system string) []otelsql.Option {
	if o.tracer == nil {
		return nil
	}
	return []otelsql.Option{
		otelsql.WithTracerProvider(o.tracer),
		// Metrics are not spool's through otelsql: a meter of its own
		// would need the global provider.
		otelsql.WithMeterProvider(metricnoop.NewMeterProvider()),
		otelsql.WithAttributes(attribute.String("db.system.name", system)),
		otelsql.WithSpanOptions(otelsql.SpanOptions{
			// Every connection taken from the pool would add one.
			OmitConnResetSession: true,
		}),
	}
}

// WithDurableCommits makes SQLite fsync its WAL at every commit
// (synchronous=FULL), so a committed transaction survives a power loss,
// as on PostgreSQL; spool serve --fsync-chunks asks for it. Without it
// SQLite runs with synchronous=NORMAL (docs/CONFIG.md says what that can
// lose).
func WithDurableCommits() Option { return func(o *options) { o.durable = true } }

// WithoutMigrate makes Open leave the schema alone; call Up yourself
// (spool migrate does, to report what it applied).
func WithoutMigrate() Option { return func(o *options) { o.migrate = false } }

// WithLogger logs applied migrations to l, and a pooler found in front of
// PostgreSQL (by default nothing is logged).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithMaxOpenConns bounds the PostgreSQL pool at n connections (at least
// 2); n <= 0 keeps the default, poolSize(GOMAXPROCS). SQLite always uses
// one.
func WithMaxOpenConns(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.maxOpenConns = n
		}
	}
}

// poolSize is the PostgreSQL pool's default size for procs CPUs (GOMAXPROCS):
// four connections a CPU, at least 8 and at most 64.
//
// A connection is held for a whole transaction, and most of that time it
// waits on round trips to the server (BEGIN, each statement, COMMIT), not
// on spool's CPU. pgxpool's default, max(4, NumCPU), gives one connection
// a CPU; with spool's short, round-trip-bound transactions that leaves
// the CPUs idle behind the network, so four a CPU keep them busy. The
// floor leaves room for River's maintenance and a migration's lock (held
// on one connection while another works) on a small machine. The ceiling
// keeps one replica well under PostgreSQL's default max_connections
// (100): the server itself gains nothing past about twice its own cores
// of active connections (the PostgreSQL wiki on the number of database
// connections; HikariCP's "About Pool Sizing"), so bigger servers or
// many replicas call for an explicit size.
func poolSize(procs int) int { return min(max(4*procs, 8), 64) }

// WithReadConns gives SQLite n connections of its own for reads outside
// a transaction; 0 runs them on the writer's one connection, as spool did
// before it had them. By default there is one a CPU, two at least. It is
// for benchmarks that compare the two; PostgreSQL ignores it.
func WithReadConns(n int) Option { return func(o *options) { o.readConns = max(n, 0) } }

// WithMigrations replaces the embedded migrations of the database's
// dialect with the .sql files at the top of fsys. It is for the migration
// generator and for tests of upgrades.
func WithMigrations(fsys fs.FS) Option { return func(o *options) { o.migrations = fsys } }

// withStmtCache sets how many statements each SQLite connection keeps
// prepared (stmtCacheSize by default); 0 prepares every statement anew,
// as the driver alone does. For tests and benchmarks.
func withStmtCache(n int) Option { return func(o *options) { o.stmtCache = n } }

// Open opens the database at dbURL and, unless WithoutMigrate is given,
// applies its pending migrations. An empty dbURL opens the SQLite file at
// sqlitePath (creating it and its directory); postgres:// and
// postgresql:// URLs open PostgreSQL through pgx. It returns an error for
// any other scheme, for a server it cannot reach, for a migration file
// whose name has no version and for a failed migration; the error never
// shows the URL's password.
func Open(ctx context.Context, dbURL, sqlitePath string, opts ...Option) (*DB, error) {
	o := options{migrate: true, maxOpenConns: poolSize(runtime.GOMAXPROCS(0)), stmtCache: stmtCacheSize, readConns: -1}
	for _, opt := range opts {
		opt(&o)
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	var (
		db  *DB
		err error
	)
	if dbURL == "" {
		db, err = openSQLite(ctx, sqlitePath, &o)
	} else {
		db, err = openPostgres(ctx, dbURL, &o)
	}
	if err != nil {
		return nil, err
	}
	var wrap []sqltx.Option
	if o.onError != nil {
		wrap = append(wrap, sqltx.OnError(o.onError))
	}
	if db.readers != nil {
		wrap = append(wrap, sqltx.ReadsOn(entsql.OpenDB(db.Dialect, db.readers)))
	}
	if db.Dialect == dialect.SQLite {
		// PostgreSQL's receipt is one statement, no transaction
		// (internal/upload/chunkrow.go).
		wrap = append(wrap, sqltx.TxOnConn())
	}
	db.Client = ent.NewClient(ent.Driver(sqltx.Wrap(entsql.OpenDB(db.Dialect, db.sql), wrap...)))
	db.log = o.log
	db.migrations = o.migrations
	if db.migrations == nil {
		if db.migrations, err = fs.Sub(Migrations(), migrationDir(db.Dialect)); err != nil {
			_ = db.Close()
			return nil, err
		}
	}
	if err := checkMigrationNames(db.migrations); err != nil {
		_ = db.Close()
		return nil, err
	}
	if o.migrate {
		if _, err := db.Up(ctx); err != nil {
			_ = db.Close()
			return nil, err
		}
	}
	if db.Dialect == dialect.SQLite {
		if err := writePlannerStats(ctx, db.sql); err != nil {
			_ = db.Close()
			return nil, fmt.Errorf("opening %s: %w", sqlitePath, err)
		}
	}
	return db, nil
}

// openSQLite opens the embedded database file.
func openSQLite(ctx context.Context, path string, o *options) (*DB, error) {
	if path == "" {
		return nil, errors.New("database: no database URL and no SQLite file given")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating the database's directory: %w", err)
	}
	// Times are written in one zone and one format ("2006-01-02
	// 15:04:05.999999999+00:00"), so comparing them as SQLite text (cursors,
	// expiry) compares instants. The driver's default, time.Time.String,
	// carries the monotonic clock reading ("m=+1.2") and the local zone,
	// and then a stored time never equals the same time read back.
	synchronous := "NORMAL"
	if o.durable {
		synchronous = "FULL"
	}
	dsn := "file:" + path + "?_pragma=foreign_keys(1)&_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(" + synchronous + ")" +
		"&_time_format=sqlite&_timezone=UTC"
	// Checkpoints run on a connection of their own (checkpoint.go);
	// SQLite's own, inside a commit, become a backstop.
	base, err := sqlite.NewConnector(dsn + fmt.Sprintf("&_pragma=wal_autocheckpoint(%d)", autoCheckpointPages))
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	// The driver prepares every statement anew each time; the cache
	// keeps them prepared (see stmtcache.go).
	cached := newStmtCacheConnector(base, o.stmtCache)
	sqldb := o.openPool(cached, "sqlite")
	// One connection writes: SQLite has one writer anyway, and a single
	// writing connection rules out SQLITE_BUSY between our own
	// transactions.
	sqldb.SetMaxOpenConns(1)
	if err := sqldb.PingContext(ctx); err != nil {
		_ = sqldb.Close()
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	readers, err := o.openReaders(dsn, cached.stats)
	if err != nil {
		_ = sqldb.Close()
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	ckpt, err := startCheckpointer(ctx, func() (*sql.DB, error) { return sql.Open("sqlite", dsn) }, o.log)
	if err != nil {
		_ = sqldb.Close()
		if readers != nil {
			_ = readers.Close()
		}
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	db := newDB(dialect.SQLite, sqldb, path)
	db.readers = readers
	db.stmts = cached.stats
	db.checkpointer = ckpt
	return db, nil
}

// openReaders opens SQLite's read connections, or returns nil when o
// asks for none. Reads outside a transaction (a request's look at its
// session, confirmChunk) run on them, as WAL lets them read while the one
// writer writes: on a single connection every request's read waited
// behind other requests' commits, and handing that connection from
// goroutine to goroutine cost CPU of its own (docs/BENCHMARKS.md,
// BenchmarkSmallChunkReceipts). They cannot write (query_only), so a
// write sent to them by mistake fails loudly. Their statements are kept
// prepared too, counted in stats.
func (o *options) openReaders(dsn string, stats *stmtCacheStats) (*sql.DB, error) {
	n := o.readConns
	if n < 0 {
		n = readConns(runtime.GOMAXPROCS(0))
	}
	if n == 0 {
		return nil, nil
	}
	base, err := sqlite.NewConnector(dsn + "&_pragma=query_only(1)")
	if err != nil {
		return nil, err
	}
	readers := o.openPool(&stmtCacheConnector{base: base, size: o.stmtCache, stats: stats}, "sqlite")
	readers.SetMaxOpenConns(n)
	readers.SetMaxIdleConns(n)
	return readers, nil
}

// readConns is how many read connections SQLite gets with procs CPUs: a
// read is CPU work inside the process (the file is in the page cache), so
// one a CPU, and two at least so that one slow read does not hold up the
// rest.
func readConns(procs int) int { return max(procs, 2) }

// openPool opens a database/sql pool over c, traced if o says so.
func (o *options) openPool(c driver.Connector, system string) *sql.DB {
	if opts := o.traced(system); opts != nil {
		return otelsql.OpenDB(c, opts...)
	}
	return sql.OpenDB(c)
}

// openPostgres opens a pool to the PostgreSQL database at rawURL and
// checks that the server answers.
func openPostgres(ctx context.Context, rawURL string, o *options) (*DB, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// url's error quotes the whole URL, password and all.
		return nil, errors.New("database: the database URL is not a valid URL")
	}
	switch strings.ToLower(u.Scheme) {
	case "postgres", "postgresql":
	case "":
		return nil, errors.New("database: the database URL has no scheme; use postgres://USER@HOST:PORT/DATABASE, or no URL for the embedded SQLite")
	default:
		return nil, fmt.Errorf("database: unsupported database URL scheme %q; use postgres:// or postgresql://, or no URL for the embedded SQLite", u.Scheme)
	}
	where := u.Redacted()
	// pgx's stdlib driver runs statements in QueryExecModeCacheStatement
	// (pgx.ParseConfig's default, kept unless the URL says
	// default_query_exec_mode=…): each connection prepares a statement
	// the first time it sees its text and keeps it in an LRU of 512
	// (statement_cache_capacity), so PostgreSQL statements are prepared
	// once per connection already, except behind a pooler (below).
	cfg, err := pgConnConfig(rawURL, transactionPooler)
	if err != nil {
		return nil, err
	}
	pingCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	// Behind a pooler in transaction mode, pgx's prepared statements fail
	// (findPooler): unless the URL says how to send statements, they go
	// unprepared through any pooler that names backends of its own, and
	// by the simple protocol through pgpool-II. The look goes as through
	// a pooler that names backends of its own, asking the server nothing
	// but what only pgpool-II answers.
	found := direct
	if !u.Query().Has(execModeParam) { // a URL that names the mode is taken at its word
		if found, err = findPooler(pingCtx, cfg); err != nil {
			return nil, fmt.Errorf("connecting to PostgreSQL at %s: %w", where, err)
		}
	}
	switch found {
	case transactionPooler:
		o.log.Info(poolerNote(where))
	case pgpoolII:
		o.log.Info(pgpoolNote(where))
	}
	if found != transactionPooler {
		if cfg, err = pgConnConfig(rawURL, found); err != nil {
			return nil, err
		}
	}
	pooled := found == transactionPooler
	sqldb, err := o.openPostgresPool(pingCtx, cfg, where)
	if err != nil {
		return nil, err
	}
	listen, err := listenPool(ctx, rawURL, found)
	if err != nil {
		_ = sqldb.Close()
		return nil, fmt.Errorf("opening %s for LISTEN: %w", where, err)
	}
	db := newDB(dialect.Postgres, sqldb, where)
	db.listen = listen
	db.pooled = pooled
	return db, nil
}

// openPostgresPool opens spool's pool of connections configured by cfg,
// and checks that the server answers.
func (o *options) openPostgresPool(ctx context.Context, cfg *pgx.ConnConfig, where string) (*sql.DB, error) {
	sqldb := o.openPool(stdlib.GetConnector(*cfg), "postgresql")
	// Two at least: migrating holds a lock on one connection and works on another.
	maxOpen := max(o.maxOpenConns, 2)
	sqldb.SetMaxOpenConns(maxOpen)
	sqldb.SetMaxIdleConns(maxOpen)
	sqldb.SetConnMaxIdleTime(5 * time.Minute)
	sqldb.SetConnMaxLifetime(time.Hour)
	if err := sqldb.PingContext(ctx); err != nil {
		_ = sqldb.Close()
		return nil, fmt.Errorf("connecting to PostgreSQL at %s: %w", where, err)
	}
	return sqldb, nil
}

// ListenApplicationName is the application_name of the connection the
// job queue LISTENs on (ListenPool), unless the database URL names one:
// the connection held for as long as a replica runs, told apart in
// pg_stat_activity.
const ListenApplicationName = "spool job queue listener"

// listenPool is a pgx pool of one connection to the database at rawURL
// (through what p names), opened when first used.
func listenPool(ctx context.Context, rawURL string, p pooler) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(rawURL)
	if err != nil {
		return nil, err
	}
	if err := configure(cfg.ConnConfig, p); err != nil {
		return nil, err
	}
	cfg.MaxConns, cfg.MinConns = 1, 0
	if _, named := cfg.ConnConfig.RuntimeParams["application_name"]; !named {
		cfg.ConnConfig.RuntimeParams["application_name"] = ListenApplicationName
	}
	return pgxpool.NewWithConfig(ctx, cfg)
}

func newDB(name string, sqldb *sql.DB, where string) *DB {
	// Open makes the ent client, with its options.
	return &DB{
		Dialect: name,
		sql:     sqldb,
		where:   where,
	}
}

// SQL returns the connection pool under the ent client: on SQLite, its
// one writing connection.
func (db *DB) SQL() *sql.DB { return db.sql }

// ReadSQL returns SQLite's pool of read connections, which the ent
// client's reads outside a transaction use; nil on PostgreSQL or when
// opened WithReadConns(0).
func (db *DB) ReadSQL() *sql.DB { return db.readers }

// ListenPool returns, on PostgreSQL, a pgx pool of one connection to the
// same database, for the job queue's LISTEN (River takes its connection
// for good, outside database/sql, which cannot wait for notifications);
// nil on SQLite. Close closes it.
func (db *DB) ListenPool() *pgxpool.Pool { return db.listen }

// String names the database: its file, or its URL without the password.
func (db *DB) String() string { return db.where }

// Ping reports whether the database answers, for readiness checks.
func (db *DB) Ping(ctx context.Context) error { return db.sql.PingContext(ctx) }

// Close closes the client and its pool.
func (db *DB) Close() error {
	err := db.Client.Close()
	if db.readers != nil {
		if rerr := db.readers.Close(); err == nil {
			err = rerr
		}
	}
	if db.checkpointer != nil {
		if cerr := db.checkpointer.close(); err == nil {
			err = cerr
		}
	}
	if db.listen != nil {
		db.listen.Close()
	}
	return err
}

// entSchemaMu serialises ent's schema operations (auto-migration and
// diffs) within the process: ent's migrate writes to the package-level
// table definitions of ent/migrate, so two at once would race. Only the
// adoption of a pre-migrations database and Drift use them; Open's
// versioned migrations do not.
var entSchemaMu sync.Mutex
