// Package jobs runs the upload service's deferred work as durable jobs
// in River, a queue kept in spool's own database and shared by every
// replica: processing completed files, removing deleted files' bytes,
// the periodic sweep and orphan sweep (docs/DESIGN.md §Jobs).
//
// One code path serves both databases: River's database/sql drivers,
// riverdatabasesql on PostgreSQL (spool's pool is pgx's stdlib) and
// riversqlite on the embedded SQLite (spool's single connection, which
// riversqlite asks for), its listener woken by the notifications it
// writes rather than polling (sqlitelistener.go). Queue implements upload.Queue; jobs join the
// caller's *sql.Tx, so a job exists if and only if the change that needs
// it commits.
package jobs

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"entgo.io/ent/dialect"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverdatabasesql"
	"github.com/riverqueue/river/rivertype"
	"golang.org/x/sync/semaphore"

	"github.com/spoolhq/spool/internal/database"
	"github.com/spoolhq/spool/internal/upload"
)

// Config tunes the queue. Zero fields take the defaults of
// DefaultConfig; Validate refuses values spool cannot run with.
type Config struct {
	// ProcessingWorkers bounds how many files' bytes one replica reads,
	// hashes and derives from at once (--processing-workers): the CPU
	// processing takes. The replica runs jobsPerProcessingWorker times
	// as many processing jobs, whose database steps need no CPU slot.
	ProcessingWorkers int
	// JobTimeout cancels a job running longer (--job-timeout).
	JobTimeout time.Duration
	// RescueAfter is how long a job may stay running before River takes
	// it for dead (its replica was killed) and retries it
	// (--job-rescue-after). It must exceed JobTimeout.
	RescueAfter time.Duration
	// ShutdownTimeout is how long Stop lets running jobs finish; those
	// still running are then cancelled and made available at once, for
	// another replica (--job-shutdown-timeout).
	ShutdownTimeout time.Duration
	// SweepInterval is how often the sweep job runs (--sweep-interval).
	SweepInterval time.Duration
	// OrphanInterval is how often stored bytes no record owns are looked
	// for and removed (--orphan-interval).
	OrphanInterval time.Duration
	// PollInterval is how often an idle replica looks for new jobs it
	// was not woken for.
	PollInterval time.Duration
	// ListenPool, on PostgreSQL, is where River takes the connection it
	// LISTENs on (database.DB.ListenPool), so that a replica is woken by
	// other replicas' inserts, and by its own as their transactions
	// commit (localwake.go). Nil leaves the replica to find jobs by its
	// poll alone.
	ListenPool *pgxpool.Pool
	// LostFetchAfter is how long a job this replica fetched may be
	// running in the database with no worker of this replica on it
	// before the replica makes it available again (PostgreSQL only;
	// lostfetch.go).
	LostFetchAfter time.Duration
	// MaxAttempts is how often processing is tried before the media
	// file is FAILED.
	MaxAttempts int
	// ManualSweeps leaves the periodic sweeps out, for tests that call
	// Sweep and SweepOrphans themselves and must be their only caller
	// (a periodic run that starts late races them).
	ManualSweeps bool
	// OnFailure, if set, is told the kind of each job attempt that fails
	// (an error, a timeout or a panic; not a stop or a snooze), for
	// metrics. It must be safe for concurrent use.
	OnFailure func(kind string)

	// listenerFallback, if set, replaces listenerFallback on SQLite
	// (tests that must see the listener woken, not polled).
	listenerFallback time.Duration
}

// MaxProcessingWorkers is the most ProcessingWorkers accepts: processing
// reads whole files and hashes them, so more workers than this on one
// replica only thrash.
const MaxProcessingWorkers = 256

// DefaultConfig returns the defaults: half the CPUs process files (the
// rest serve requests), a job may run 30 minutes (hashing a large file
// from remote storage), a killed replica's jobs are retried 5 minutes
// after that, and a stopping replica waits 10 seconds for its jobs.
func DefaultConfig() Config {
	return Config{
		ProcessingWorkers: max(1, runtime.NumCPU()/2),
		JobTimeout:        30 * time.Minute,
		RescueAfter:       35 * time.Minute,
		ShutdownTimeout:   10 * time.Second,
		SweepInterval:     time.Minute,
		OrphanInterval:    time.Hour,
		PollInterval:      time.Second,
		LostFetchAfter:    20 * time.Second,
		MaxAttempts:       25,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.ProcessingWorkers == 0 {
		c.ProcessingWorkers = d.ProcessingWorkers
	}
	if c.JobTimeout == 0 {
		c.JobTimeout = d.JobTimeout
	}
	if c.RescueAfter == 0 {
		c.RescueAfter = max(d.RescueAfter, c.JobTimeout+5*time.Minute)
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = d.ShutdownTimeout
	}
	if c.SweepInterval == 0 {
		c.SweepInterval = d.SweepInterval
	}
	if c.OrphanInterval == 0 {
		c.OrphanInterval = d.OrphanInterval
	}
	if c.PollInterval == 0 {
		c.PollInterval = d.PollInterval
	}
	if c.LostFetchAfter == 0 {
		c.LostFetchAfter = d.LostFetchAfter
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = d.MaxAttempts
	}
	return c
}

// Validate returns an error naming the first setting spool cannot run
// with; zero fields are valid (they take the defaults).
func (c Config) Validate() error {
	switch {
	case c.ProcessingWorkers < 0 || c.ProcessingWorkers > MaxProcessingWorkers:
		return fmt.Errorf("processing workers must be between 1 and %d, got %d", MaxProcessingWorkers, c.ProcessingWorkers)
	case c.JobTimeout < 0 || c.RescueAfter < 0 || c.ShutdownTimeout < 0 || c.SweepInterval < 0 || c.OrphanInterval < 0 || c.PollInterval < 0 || c.LostFetchAfter < 0:
		return errors.New("job timeout, rescue delay, shutdown timeout, sweep and orphan intervals, poll interval and lost-fetch delay must not be negative")
	case c.MaxAttempts < 0:
		return fmt.Errorf("processing attempts must be positive, got %d", c.MaxAttempts)
	}
	d := c.withDefaults()
	if d.RescueAfter <= d.JobTimeout {
		return fmt.Errorf("the job rescue delay (%v) must be longer than the job timeout (%v): a job still running would be started a second time", d.RescueAfter, d.JobTimeout)
	}
	return nil
}

// Service is the work the jobs do: *upload.Service.
type Service interface {
	ProcessMedia(ctx context.Context, mediaID string, slots *semaphore.Weighted) error
	FailProcessing(ctx context.Context, mediaID, problem string) error
	PurgeMedia(ctx context.Context, mediaID string) error
	Sweep(ctx context.Context) (upload.SweepResult, error)
	RemoveOrphans(ctx context.Context) (int, error)
}

var _ Service = (*upload.Service)(nil)

// Queue is spool's job queue: River over spool's database.
type Queue struct {
	db     *sql.DB
	client *river.Client[*sql.Tx]
	cfg    Config
	log    *slog.Logger
	svc    Service
	// processingSlots are the ProcessingWorkers slots each processing
	// job takes for its work on the file's bytes.
	processingSlots *semaphore.Weighted
	// held is what this replica's workers have, kept on PostgreSQL only
	// (lostfetch.go); stopLost ends the watch for lost jobs, which
	// lostDone then closes.
	held     *held
	stopLost context.CancelFunc
	lostDone chan struct{}
	// pg is set on PostgreSQL.
	pg bool
	// wakes are the queues of this replica's own jobs, woken as their
	// transactions commit (localwake.go); nil where River has no
	// listener of this package's to deliver them.
	wakes *wakes
}

// plannedEachRun is args for a statement on River's table that runs
// every few seconds (the count for metrics, the look for lost jobs),
// led on PostgreSQL by database.PlannedEachRun. Prepared, the count kept
// the plan made while the table held three jobs, a sequential scan, and
// read all 20,003 once River kept 20,000 finished ones (it keeps a
// day's); planned at each run it goes by River's index on state.
func (q *Queue) plannedEachRun(args ...any) []any {
	if !q.pg {
		return args
	}
	return append([]any{database.PlannedEachRun}, args...)
}

var _ upload.Queue = (*Queue)(nil)

// queueProcess holds processing jobs, bounded by ProcessingWorkers; the
// others (purges, sweeps) share River's default queue.
const queueProcess = "process"

// jobsPerProcessingWorker is how many processing jobs a replica runs
// for each of its ProcessingWorkers. A job holds a worker's slot only
// while it reads, hashes and derives from the file's bytes
// (upload.Service.ProcessMedia); its rows are read and its outcome
// committed and published outside it. A small file's job is mostly
// those round trips: with one job per slot, a 2-CPU replica's one
// worker got through 73–110 small files a second on PostgreSQL, its jobs
// ending seconds after their uploads. Four jobs a slot overlap the round
// trips, and processing keeps up (docs/BENCHMARKS.md, "four processing
// jobs a worker").
const jobsPerProcessingWorker = 4

// workerFetchCooldown is the least time between two fetches of a
// queue's producer. A producer fetches at most as many jobs as it has
// free workers, and a worker that finishes in a full queue asks for the
// next fetch, so River's default of 100 ms capped a queue at its workers
// ten times a second: one processing worker (a 2-CPU replica's) checked
// 10 files a second while small files arrived at 200–400, and left them
// PROCESSING for minutes (docs/BENCHMARKS.md, "small files"). A fetch
// runs only when a worker is free and something asked (a wake, an insert
// notification, the poll, a job finishing in a full queue), so a short
// cooldown costs a fetch per job, not a spin.
// The client's own FetchCooldown stays River's default: it also spaces
// the insert notifications each replica sends other replicas on
// PostgreSQL, which wake every idle one to fetch.
const workerFetchCooldown = time.Millisecond

// New returns a queue over the database db of ent's dialect d
// (dialect.SQLite or dialect.Postgres), whose schema Migrate brought up
// to date. It inserts jobs at once; it works them once Start gives it the
// service. It returns an error for an invalid cfg or another dialect.
func New(db *sql.DB, d string, cfg Config, log *slog.Logger) (*Queue, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := newWakes()
	driver, err := driverFor(db, d, cfg, w)
	if err != nil {
		return nil, err
	}
	q := &Queue{db: db, cfg: cfg, log: log, processingSlots: semaphore.NewWeighted(int64(cfg.ProcessingWorkers))}
	switch driver.(type) {
	case *sqliteDriver, *pgDriver:
		q.wakes = w
	}
	if d == dialect.Postgres {
		q.held = newHeld()
		q.pg = true
	}
	workers := river.NewWorkers()
	river.AddWorker(workers, &processWorker{q: q})
	river.AddWorker(workers, &purgeWorker{q: q})
	river.AddWorker(workers, &sweepWorker{q: q})
	river.AddWorker(workers, &orphansWorker{q: q})
	q.client, err = river.NewClient(driver, &river.Config{
		Logger: riverLogger(log),
		Queues: map[string]river.QueueConfig{
			queueProcess:       {MaxWorkers: cfg.ProcessingWorkers * jobsPerProcessingWorker, FetchCooldown: workerFetchCooldown},
			river.QueueDefault: {MaxWorkers: 2, FetchCooldown: workerFetchCooldown},
		},
		Workers:              workers,
		JobTimeout:           cfg.JobTimeout,
		RescueStuckJobsAfter: cfg.RescueAfter,
		SoftStopTimeout:      cfg.ShutdownTimeout,
		FetchPollInterval:    cfg.PollInterval,
		FetchCooldown:        min(cfg.PollInterval, river.FetchCooldownDefault),
		PeriodicJobs:         periodicJobs(cfg),
		Middleware:           middleware(cfg, q.held),
	})
	if err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	return q, nil
}

// middleware is what wraps every job's work: the record of what this
// replica's workers hold, if kept (h, on PostgreSQL: lostfetch.go), and
// the failure counter if asked for.
func middleware(cfg Config, h *held) []rivertype.Middleware {
	var m []rivertype.Middleware
	if h != nil {
		m = append(m, &holder{held: h})
	}
	if cfg.OnFailure != nil {
		m = append(m, &failureCounter{onFailure: cfg.OnFailure})
	}
	return m
}

// failureCounter tells onFailure of each job attempt that fails.
type failureCounter struct {
	river.WorkerMiddlewareDefaults
	onFailure func(kind string)
}

func (f *failureCounter) Work(ctx context.Context, job *rivertype.JobRow, doInner func(context.Context) error) error {
	// River recovers a worker's panic further out, and fails the attempt.
	failed := true
	defer func() {
		if failed {
			f.onFailure(job.Kind)
		}
	}()
	err := doInner(ctx)
	// A cancelled context is a stop: River makes the job available again
	// without counting the attempt. A snooze (a processing job that found
	// every slot busy) is not a failure either.
	var snooze *river.JobSnoozeError
	failed = err != nil && !(errors.Is(err, context.Canceled) && ctx.Err() != nil) && !errors.As(err, &snooze)
	return err
}

// driverFor returns River's driver for spool's database, configured by
// cfg, whose listener, if it has one, delivers w's wakes.
func driverFor(db *sql.DB, d string, cfg Config, w *wakes) (riverdriver.Driver[*sql.Tx], error) {
	switch d {
	case dialect.Postgres:
		if cfg.ListenPool == nil {
			return riverdatabasesql.New(db), nil
		}
		return &pgDriver{Driver: riverdatabasesql.NewWithPgxListener(db, cfg.ListenPool), wakes: w}, nil
	case dialect.SQLite:
		return newSQLiteDriver(db, cmp.Or(cfg.listenerFallback, listenerFallback), w), nil
	}
	return nil, fmt.Errorf("jobs: no queue for database dialect %q", d)
}

// Start starts working jobs with svc, until Stop.
func (q *Queue) Start(ctx context.Context, svc Service) error {
	q.svc = svc
	if err := q.client.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("starting the job queue: %w", err)
	}
	if q.held != nil {
		lostCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
		q.stopLost, q.lostDone = stop, make(chan struct{})
		go func() {
			defer close(q.lostDone)
			q.watchLost(lostCtx)
		}()
	}
	return nil
}

// ID is this replica's name in River's table: the attempted_by of the
// jobs it takes.
func (q *Queue) ID() string { return q.client.ID() }

// Stop stops fetching jobs and lets running ones finish for up to
// Config.ShutdownTimeout. River then cancels those still running and
// makes them available again at once, without counting the attempt
// (a soft stop), so another replica takes them over instead of waiting
// for the rescue. It returns ctx's error if ctx ends first.
func (q *Queue) Stop(ctx context.Context) error {
	if q.stopLost != nil {
		q.stopLost()
		<-q.lostDone
	}
	return q.client.Stop(ctx)
}

// UnfinishedStates are the states of jobs not done yet that
// CountUnfinished counts: waiting for a worker (available), running,
// failed and waiting to retry (retryable), and due later (scheduled).
var UnfinishedStates = []string{
	string(rivertype.JobStateAvailable), string(rivertype.JobStateRunning),
	string(rivertype.JobStateRetryable), string(rivertype.JobStateScheduled),
}

// countUnfinished is one GROUP BY over River's fetch index
// (state, queue, priority, scheduled_at, id), which finished jobs leave
// out of the range read; the states are literals, the same text on both
// databases (an enum on PostgreSQL, text on SQLite).
const countUnfinished = `SELECT state, count(*) FROM river_job
WHERE state IN ('available', 'running', 'retryable', 'scheduled') GROUP BY state`

// CountUnfinished returns how many jobs of every replica are in each of
// UnfinishedStates (states with none are absent), for metrics. It
// returns the database's error.
func (q *Queue) CountUnfinished(ctx context.Context) (map[string]int64, error) {
	rows, err := q.db.QueryContext(ctx, countUnfinished, q.plannedEachRun()...)
	if err != nil {
		return nil, fmt.Errorf("counting jobs: %w", err)
	}
	defer rows.Close()
	counts := map[string]int64{}
	for rows.Next() {
		var (
			state string
			n     int64
		)
		if err := rows.Scan(&state, &n); err != nil {
			return nil, fmt.Errorf("counting jobs: %w", err)
		}
		counts[state] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("counting jobs: %w", err)
	}
	return counts, nil
}

// EnqueueProcessing queues the processing of a media file (see
// upload.Queue).
func (q *Queue) EnqueueProcessing(ctx context.Context, tx *sql.Tx, mediaID string) error {
	return q.insert(ctx, tx, ProcessArgs{MediaID: mediaID}, &river.InsertOpts{MaxAttempts: q.cfg.MaxAttempts})
}

// EnqueuePurge queues the removal of a deleted media file's bytes (see
// upload.Queue).
func (q *Queue) EnqueuePurge(ctx context.Context, tx *sql.Tx, mediaID string) error {
	return q.insert(ctx, tx, PurgeArgs{MediaID: mediaID}, nil)
}

func (q *Queue) insert(ctx context.Context, tx *sql.Tx, args river.JobArgs, opts *river.InsertOpts) error {
	var err error
	if tx != nil {
		_, err = q.client.InsertTx(ctx, tx, args, opts)
	} else {
		_, err = q.client.Insert(ctx, args, opts)
	}
	if err != nil {
		return fmt.Errorf("queueing %s: %w", args.Kind(), err)
	}
	if q.wakes != nil {
		q.wakes.inserted(tx, queueOf(args))
	}
	return nil
}

// TxDone wakes this replica's queues for the jobs tx inserted, if it
// committed, so that they are taken now rather than at the next poll
// (see upload.Queue).
func (q *Queue) TxDone(tx *sql.Tx, committed bool) {
	if q.wakes != nil {
		q.wakes.ended(tx, committed)
	}
}

// liveStates are the states in which a job makes another of the same
// kind and arguments a duplicate: waiting, retrying or running. A
// completed job does not, so the sweeper can queue a file again that
// something put back to PROCESSING; River requires the other four.
var liveStates = []rivertype.JobState{
	rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRetryable,
	rivertype.JobStateRunning, rivertype.JobStateScheduled,
}

// periodicJobs are the sweeps cfg asks for, each run once at start so a
// restarted replica catches up at once.
func periodicJobs(cfg Config) []*river.PeriodicJob {
	if cfg.ManualSweeps {
		return nil
	}
	return []*river.PeriodicJob{
		river.NewPeriodicJob(river.PeriodicInterval(cfg.SweepInterval),
			func() (river.JobArgs, *river.InsertOpts) { return SweepArgs{}, nil },
			&river.PeriodicJobOpts{ID: "sweep", RunOnStart: true}),
		river.NewPeriodicJob(river.PeriodicInterval(cfg.OrphanInterval),
			func() (river.JobArgs, *river.InsertOpts) { return OrphansArgs{}, nil },
			&river.PeriodicJobOpts{ID: "orphans", RunOnStart: true}),
	}
}
