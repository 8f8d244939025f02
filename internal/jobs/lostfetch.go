package jobs

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// A lost fetch. River takes jobs with one UPDATE that marks them running,
// attempted by this replica's client, and returns them; it commits by
// itself. When the connection dies after PostgreSQL committed it and
// before its answer arrived (a cut, a restart, a failover), the jobs are
// running in the database and no worker has them. River's rescuer takes
// such a job back only after RescueAfter (35 minutes by default), since
// it cannot tell it from one still working, and a media file stays
// PROCESSING all that time. This replica can tell: it knows what its own
// workers hold. So every LostFetchAfter/2 it makes available again the
// jobs that its client attempted over LostFetchAfter ago and that none of
// its workers has held for that long. The same takes back a job whose
// worker ended but whose end River could not record during an outage
// (it gives up after ~7 s: see rideOutFor). Only on PostgreSQL: SQLite
// lives in this process, where a commit and its answer are not parted.

// held tracks the jobs this replica's workers run or ran lately: a job's
// id maps to the zero time while a worker has it, then to when it let go.
type held struct {
	mu  sync.Mutex
	ids map[int64]time.Time
}

func newHeld() *held { return &held{ids: map[int64]time.Time{}} }

func (h *held) take(id int64) {
	h.mu.Lock()
	h.ids[id] = time.Time{}
	h.mu.Unlock()
}

func (h *held) letGo(id int64, at time.Time) {
	h.mu.Lock()
	h.ids[id] = at
	h.mu.Unlock()
}

// heldSince reports whether a worker has the job, or let it go after
// since.
func (h *held) heldSince(id int64, since time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	at, ok := h.ids[id]
	return ok && (at.IsZero() || !at.Before(since))
}

// forget drops the jobs let go before since, so the record holds only
// the jobs of the last LostFetchAfter.
func (h *held) forget(since time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, at := range h.ids {
		if !at.IsZero() && at.Before(since) {
			delete(h.ids, id)
		}
	}
}

// holder is the middleware that tells held which jobs a worker has.
type holder struct {
	river.WorkerMiddlewareDefaults
	held *held
}

func (m *holder) Work(ctx context.Context, job *rivertype.JobRow, doInner func(context.Context) error) error {
	m.held.take(job.ID)
	defer func() { m.held.letGo(job.ID, time.Now()) }()
	return doInner(ctx)
}

// lostRunning lists the running jobs whose last attempt is clientID's
// and began over the given seconds ago, by the database's clock (River's
// fetch sets attempted_at by it too). River's index on state serves it:
// few jobs are running at a time.
const lostRunning = `SELECT id, kind, attempted_at FROM river_job
WHERE state = 'running' AND attempted_by[array_upper(attempted_by, 1)] = $1
AND attempted_at < now() - make_interval(secs => $2)`

// makeAvailable puts a job back in line, if it is still the attempt that
// was found lost.
const makeAvailable = `UPDATE river_job SET state = 'available', scheduled_at = now()
WHERE id = $1 AND state = 'running' AND attempted_at = $2`

// lostJob is a running job found lost: its attempt began at attemptedAt.
type lostJob struct {
	id          int64
	kind        string
	attemptedAt time.Time
}

// takeBackLost makes available again the jobs lost to this replica (see
// above).
func (q *Queue) takeBackLost(ctx context.Context) error {
	since := time.Now().Add(-q.cfg.LostFetchAfter)
	q.held.forget(since)
	lost, err := q.lostJobs(ctx, since)
	if err != nil {
		return fmt.Errorf("looking for lost jobs: %w", err)
	}
	for _, j := range lost {
		res, err := q.db.ExecContext(ctx, makeAvailable, j.id, j.attemptedAt)
		if err != nil {
			return fmt.Errorf("making job %d available again: %w", j.id, err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			q.log.Warn("a running job of this replica had no worker here for a while (the answer to its fetch, or the record of its end, was lost); made it available again",
				"job_id", j.id, "kind", j.kind, "attempted_at", j.attemptedAt)
		}
	}
	return nil
}

// lostJobs returns the running jobs this replica's client attempted
// before since that none of its workers has held since then.
func (q *Queue) lostJobs(ctx context.Context, since time.Time) ([]lostJob, error) {
	rows, err := q.db.QueryContext(ctx, lostRunning, q.plannedEachRun(q.client.ID(), q.cfg.LostFetchAfter.Seconds())...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var lost []lostJob
	for rows.Next() {
		var j lostJob
		if err := rows.Scan(&j.id, &j.kind, &j.attemptedAt); err != nil {
			return nil, err
		}
		if !q.held.heldSince(j.id, since) {
			lost = append(lost, j)
		}
	}
	return lost, rows.Err()
}

// watchLost runs takeBackLost every LostFetchAfter/2 until ctx ends.
func (q *Queue) watchLost(ctx context.Context) {
	t := time.NewTicker(q.cfg.LostFetchAfter / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := q.takeBackLost(ctx); err != nil && ctx.Err() == nil {
				// The database is away: the next tick tries again.
				q.log.Debug("taking back lost jobs failed", "err", err)
			}
		}
	}
}
