package upload_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"entgo.io/ent/dialect"

	"github.com/spoolhq/spool/ent/mediafile"
	"github.com/spoolhq/spool/internal/database/dbtest"
	"github.com/spoolhq/spool/internal/eventually"
	"github.com/spoolhq/spool/internal/storage/localfs"
	"github.com/spoolhq/spool/internal/upload"
)

// processingJob is the row River keeps for a media file's processing.
type processingJob struct {
	count       int // rows for the media file
	state       string
	attempt     int
	attemptedBy int // how many clients (replicas) ran it
	by          string
}

// processingJobOf reads the River rows of the media file's processing
// jobs (the latest one's state, attempts and worker).
func (e *testEnv) processingJobOf(t *testing.T, mediaID string) processingJob {
	t.Helper()
	var j processingJob
	q := `SELECT count(*) OVER (), state, attempt FROM river_job WHERE kind = 'spool_process_media' AND json_extract(args, '$.media_id') = ? ORDER BY id DESC LIMIT 1`
	arg := any(mediaID)
	if isPostgres(e) {
		q = `SELECT count(*) OVER (), state, attempt, coalesce(array_length(attempted_by, 1), 0), coalesce(attempted_by[1], '')
			FROM river_job WHERE kind = 'spool_process_media' AND args->>'media_id' = $1 ORDER BY id DESC LIMIT 1`
		arg = mediaID
		if err := e.sql.QueryRowContext(context.Background(), q, arg).Scan(&j.count, &j.state, &j.attempt, &j.attemptedBy, &j.by); err != nil {
			t.Fatalf("reading the processing job of %s: %v", mediaID, err)
		}
		return j
	}
	if err := e.sql.QueryRowContext(context.Background(), q, arg).Scan(&j.count, &j.state, &j.attempt); err != nil {
		t.Fatalf("reading the processing job of %s: %v", mediaID, err)
	}
	return j
}

func isPostgres(e *testEnv) bool {
	var v string
	return e.sql.QueryRowContext(context.Background(), "SELECT version()").Scan(&v) == nil && strings.Contains(v, "PostgreSQL")
}

// TestProcessingMismatchFailsAtOnce: a content hash that differs from
// the declared one is no retry's business: the media is FAILED on the
// first attempt, and the job completes.
func TestProcessingMismatchFailsAtOnce(t *testing.T) {
	t.Parallel()
	e := newTestService(t, testConfig())
	owner := e.user(t, "alice")
	spec := mp4Spec("a.mp4", file11)
	spec.SHA256 = ptr(sha256Hex(file11[1:]))
	sess := e.initOne(t, owner, spec)
	e.sendAll(t, sess, file11)
	m, err := e.svc.Complete(context.Background(), owner, sess.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.waitMedia(t, owner, m.ID); got.Status != mediafile.StatusFAILED {
		t.Fatalf("media = %s, want FAILED", got.Status)
	}
	waitJob(t, e, m.ID, "completed")
	if j := e.processingJobOf(t, m.ID); j.count != 1 || j.attempt != 1 {
		t.Errorf("processing job: %d rows, attempt %d; want one, attempted once", j.count, j.attempt)
	}
}

// unreadableStore is a store whose objects cannot be opened, as when
// storage is down.
type unreadableStore struct{ upload.Store }

func (unreadableStore) Open(context.Context, string) (upload.Object, error) {
	return nil, errors.New("storage unavailable")
}

// TestProcessingFailsOnLastAttempt: processing that keeps failing on
// storage is retried, and its last attempt saves the media FAILED with a
// readable processingError, which subscribers see.
func TestProcessingFailsOnLastAttempt(t *testing.T) {
	t.Parallel()
	store, err := localfs.New(filepath.Join(t.TempDir(), "files"))
	if err != nil {
		t.Fatal(err)
	}
	jcfg := testJobs(dialect.SQLite)
	jcfg.MaxAttempts = 3
	e := newTestServiceJobs(t, testConfig(), unreadableStore{store}, jcfg)
	owner := e.user(t, "alice")
	sess := e.initOne(t, owner, mp4Spec("a.mp4", file11))
	e.sendAll(t, sess, file11)
	ch, err := e.svc.WatchUpload(t.Context(), owner, sess.ID)
	if err != nil {
		t.Fatal(err)
	}
	wait := collect(t, ch)
	m, err := e.svc.Complete(context.Background(), owner, sess.ID)
	if err != nil {
		t.Fatal(err)
	}
	got := e.waitMedia(t, owner, m.ID)
	if got.Status != mediafile.StatusFAILED || got.ProcessingError == nil || !strings.Contains(*got.ProcessingError, "after 3 attempts") {
		t.Fatalf("media = %s with processing error %v, want FAILED saying it tried 3 times", got.Status, got.ProcessingError)
	}
	events := wait()
	if last := events[len(events)-1]; last.MediaStatus == nil || *last.MediaStatus != upload.MediaFailed {
		t.Errorf("last event: %+v, want media FAILED", last)
	}
	waitJob(t, e, m.ID, "completed")
	if j := e.processingJobOf(t, m.ID); j.attempt != 3 {
		t.Errorf("processing job attempted %d times, want 3", j.attempt)
	}
}

// TestJobsOfABurstAreTakenAsTheyCommit: files completed one after
// another are each processed once its complete has committed, not at
// the queue's next look for jobs (here an hour away). River notifies a
// queue of at most one insert every 100 ms, and each file here is
// completed as soon as the one before is processed; complete tells the
// queue when its transaction has committed (Queue.TxDone).
func TestJobsOfABurstAreTakenAsTheyCommit(t *testing.T) {
	t.Parallel()
	store, err := localfs.New(filepath.Join(t.TempDir(), "files"))
	if err != nil {
		t.Fatal(err)
	}
	jcfg := testJobs(dialect.SQLite)
	jcfg.PollInterval = time.Hour
	e := newTestServiceJobs(t, testConfig(), store, jcfg)
	owner := e.user(t, "alice")
	for i := range 4 {
		data := mp4Bytes(4*KiB, uint64(i))
		sess := e.initOne(t, owner, mp4Spec(fmt.Sprintf("%d.mp4", i), data))
		e.sendAll(t, sess, data)
		m, err := e.svc.Complete(context.Background(), owner, sess.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got := e.waitMedia(t, owner, m.ID); got.Status != mediafile.StatusREADY {
			t.Fatalf("file %d: media %s, want READY", i, got.Status)
		}
	}
}

// TestPostgresTwoReplicasProcessOnce: files completed on two replicas
// sharing PostgreSQL are each processed exactly once: one job row per
// file, attempted once by one replica.
func TestPostgresTwoReplicasProcessOnce(t *testing.T) {
	t.Parallel()
	dbURL := dbtest.Postgres(t)
	dir := filepath.Join(t.TempDir(), "files")
	var replicas [2]*testEnv
	for i := range replicas {
		e, err := newEnvOn(t, dbURL, "", dir, nil, testConfig())
		if err != nil {
			t.Fatal(err)
		}
		replicas[i] = e
	}
	owner := replicas[0].user(t, "alice")
	const files = 10
	ids := make([]string, files)
	for i := range ids {
		e := replicas[i%2]
		data := mp4Bytes(3*MiB, uint64(i+10))
		sess := e.initOne(t, owner, mp4Spec(fmt.Sprintf("f%d.mp4", i), data))
		e.sendAll(t, sess, data)
		m, err := e.svc.Complete(context.Background(), owner, sess.ID)
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = m.ID
	}
	perReplica := map[string]int{}
	for _, id := range ids {
		if m := replicas[0].waitMedia(t, owner, id); m.Status != mediafile.StatusREADY || m.ProcessedAt == nil {
			t.Fatalf("media %s = %s, processed at %v; want READY", id, m.Status, m.ProcessedAt)
		}
		waitJob(t, replicas[0], id, "completed")
		j := replicas[0].processingJobOf(t, id)
		if j.count != 1 || j.attempt != 1 || j.attemptedBy != 1 {
			t.Errorf("media %s: %d job rows, attempt %d, run by %d replicas; want exactly one run", id, j.count, j.attempt, j.attemptedBy)
		}
		perReplica[j.by]++
	}
	t.Logf("processing jobs per replica: %v", perReplica)
}

// waitJob polls until the media's latest processing job is in state.
func waitJob(t *testing.T, e *testEnv, mediaID, state string) {
	t.Helper()
	eventually.Holds(t, "the processing job of "+mediaID+" to be "+state, func() bool {
		return e.processingJobOf(t, mediaID).state == state
	})
}
