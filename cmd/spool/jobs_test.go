package main

import (
	"context"
	"database/sql"
	"net/http"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
)

// The tests here stop spool processes in the middle of processing a file
// and check that another process finishes it. Processing is held at its
// save step by a trigger on media_files that waits for an advisory lock
// the test holds: the job is then running, and stays so until the test
// lets go.

// holdLockID is the advisory lock the test's trigger waits for.
const holdLockID = 4242

// processingHold holds processing at its save step on the database.
type processingHold struct {
	db   *sql.DB
	conn *sql.Conn // holds the lock while open
}

// holdProcessing installs the trigger on the database (whose schema a
// running spool has migrated) and takes the lock.
func holdProcessing(t *testing.T, dbURL string) *processingHold {
	t.Helper()
	db, err := sql.Open("pgx", dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ctx := context.Background()
	for _, q := range []string{
		`CREATE FUNCTION spool_test_hold() RETURNS trigger LANGUAGE plpgsql AS $$
		 BEGIN PERFORM pg_advisory_lock(4242); PERFORM pg_advisory_unlock(4242); RETURN NEW; END $$`,
		`CREATE TRIGGER spool_test_hold BEFORE UPDATE ON media_files FOR EACH ROW
		 WHEN (OLD.status = 'PROCESSING' AND NEW.status <> 'PROCESSING') EXECUTE FUNCTION spool_test_hold()`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("installing the hold: %v", err)
		}
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", holdLockID); err != nil {
		t.Fatal(err)
	}
	h := &processingHold{db: db, conn: conn}
	t.Cleanup(h.release)
	return h
}

// release lets held processing go on.
func (h *processingHold) release() {
	if h.conn != nil {
		_, _ = h.conn.ExecContext(context.Background(), "SELECT pg_advisory_unlock($1)", holdLockID)
		_ = h.conn.Close()
		h.conn = nil
	}
}

// processingJob is River's row for a media file's processing.
type processingJob struct {
	state     string
	attempt   int
	runs      int // entries in attempted_by: one per replica that took it
	errors    int
	attempted time.Time
}

func (h *processingHold) job(t *testing.T, mediaID string) processingJob {
	t.Helper()
	var j processingJob
	var at sql.NullTime
	err := h.db.QueryRowContext(context.Background(),
		`SELECT state, attempt, coalesce(array_length(attempted_by, 1), 0), coalesce(array_length(errors, 1), 0), attempted_at
		 FROM river_job WHERE kind = 'spool_process_media' AND args->>'media_id' = $1`, mediaID).
		Scan(&j.state, &j.attempt, &j.runs, &j.errors, &at)
	if err != nil {
		t.Fatalf("reading the processing job of %s: %v", mediaID, err)
	}
	j.attempted = at.Time
	return j
}

// waiting reports whether a session waits for the hold's lock: some
// replica's processing reached the save step.
func (h *processingHold) waiting(t *testing.T) bool {
	t.Helper()
	var n int
	err := h.db.QueryRowContext(context.Background(),
		`SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND NOT granted`, holdLockID).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n > 0
}

// mediaStatus reads a media file's status from the database.
func (h *processingHold) mediaStatus(t *testing.T, mediaID string) string {
	t.Helper()
	var st string
	if err := h.db.QueryRowContext(context.Background(), `SELECT status FROM media_files WHERE id = $1`, mediaID).Scan(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// poll waits until cond holds, failing after a generous deadline that
// only guards against hanging.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	pollExplained(t, what, cond, nil)
}

// pollExplained is poll that, if it times out, adds explain's account
// of what is still missing (if explain is not nil).
func pollExplained(t *testing.T, what string, cond func() bool, explain func() string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			if explain != nil {
				t.Fatalf("timed out waiting for %s; still open:\n%s", what, explain())
			}
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// uploadOne uploads a 6 MiB video through r and completes it; it
// returns the media file's id.
func uploadOne(t *testing.T, token string, r *replica) string {
	t.Helper()
	video := randomVideo(6<<20, 9)
	up := planVideo(t, r.url, token, video)
	for i, c := range up.ChunkUrls {
		if status, body := fetch(t, http.MethodPut, c.URL, video[c.Offset:c.Offset+c.Size], nil); status != http.StatusOK {
			t.Fatalf("PUT chunk %d: got %d %s", i, status, body)
		}
	}
	var done struct{ Complete struct{ ID string } }
	gql(t, r.url, token, `mutation($id: ID!) { complete(uploadId: $id) { id } }`, map[string]any{"id": up.ID}, &done)
	return done.Complete.ID
}

// stop sends sig to the replica and waits for it to exit; it returns
// the exit code.
func (r *replica) stop(t *testing.T, sig syscall.Signal) int {
	t.Helper()
	r.stopped = true
	if err := r.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	<-r.done
	return r.cmd.ProcessState.ExitCode()
}

// TestSIGTERMHandsProcessingOver: a replica stopped with SIGTERM while
// it processes a file (held past --job-shutdown-timeout) hands the job
// back to the queue at once, and another replica finishes it, long
// before the stuck-job rescue (35 minutes by default) would.
func TestSIGTERMHandsProcessingOver(t *testing.T) {
	w := newWalkthrough(t)
	a := w.serve(t, append(w.engines, "--job-shutdown-timeout", "1s")...)
	hold := holdProcessing(t, w.database)
	mediaID := uploadOne(t, w.token(t, "alice"), a)
	poll(t, "A's processing to reach its save step", func() bool { return hold.waiting(t) })
	b := w.serve(t, w.engines...)

	if code := a.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("A exited %d after SIGTERM; its log:\n%s", code, a.log)
	}
	stopped := time.Now()
	poll(t, "B to take the job over", func() bool { return hold.job(t, mediaID).runs == 2 && hold.waiting(t) })
	took := time.Since(stopped)
	hold.release()
	poll(t, "the media to be READY", func() bool { return hold.mediaStatus(t, mediaID) == "READY" })
	poll(t, "the job to complete", func() bool { return hold.job(t, mediaID).state == "completed" })
	j := hold.job(t, mediaID)
	t.Logf("B took the job over %v after A exited; job: attempt %d, %d errors recorded", took.Round(time.Millisecond), j.attempt, j.errors)
	_ = b
}

// The job settings of the tests that kill a replica mid-job: its jobs are
// rescued testRescueAfter after they started, and an attempt times out
// just before that. At 2 s, in a cold CI run with the race run and the
// fuzz targets on the same 2 CPUs, ffmpeg on the crash test's clip hit
// the timeout on all 18 attempts in 2 minutes, and the media stayed
// PROCESSING past poll's deadline. The longer rescue delay makes the
// crash test take 38-45 s alone here, not 16-19 s.
const (
	testJobTimeout  = 15 * time.Second
	testRescueAfter = 16 * time.Second
)

// TestSIGKILLDuringProcessing: a replica killed while it processes a
// file leaves the job running in River's table; a replica started after
// it rescues the job once --job-rescue-after has passed, and finishes
// the file.
func TestSIGKILLDuringProcessing(t *testing.T) {
	w := newWalkthrough(t)
	a := w.serve(t, w.engines...)
	hold := holdProcessing(t, w.database)
	mediaID := uploadOne(t, w.token(t, "alice"), a)
	poll(t, "A's processing to reach its save step", func() bool { return hold.waiting(t) })
	a.stop(t, syscall.SIGKILL)
	killed := time.Now()
	hold.release()
	if j := hold.job(t, mediaID); j.state != "running" {
		t.Fatalf("after the kill the job is %+v, want still running", j)
	}
	// The rescuer runs when a replica starts and every 30 s after: let
	// the rescue delay pass first, so the first run finds the job.
	poll(t, "the rescue delay to pass", func() bool { return time.Since(hold.job(t, mediaID).attempted) > testRescueAfter })
	w.serve(t, append(w.engines, "--job-timeout", testJobTimeout.String(), "--job-rescue-after", testRescueAfter.String())...)
	poll(t, "the media to be READY", func() bool { return hold.mediaStatus(t, mediaID) == "READY" })
	ready := time.Since(killed)
	poll(t, "the job to complete", func() bool { return hold.job(t, mediaID).state == "completed" })
	if j := hold.job(t, mediaID); j.runs != 2 {
		t.Errorf("processing job %+v, want two runs (the killed one and the rescue)", j)
	}
	j := hold.job(t, mediaID)
	t.Logf("READY %v after the kill; job: attempt %d, %d errors recorded", ready.Round(time.Millisecond), j.attempt, j.errors)
}
