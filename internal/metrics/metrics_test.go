package metrics

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spoolhq/spool/internal/progress"
	"github.com/spoolhq/spool/internal/storage/gcs"
	"github.com/spoolhq/spool/internal/storage/gcs/gcstest"
	"github.com/spoolhq/spool/internal/storage/localfs"
	"github.com/spoolhq/spool/internal/storage/storagetest"
	"github.com/spoolhq/spool/internal/upload"
)

func newMetrics(t *testing.T) (*Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := New(reg, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return m, reg
}

// TestNamesFollowConventions runs Prometheus's own linter (promlint) over
// every metric spool registers: units in names, _total on counters, help
// on each.
func TestNamesFollowConventions(t *testing.T) {
	m, reg := newMetrics(t)
	count := func(context.Context) (map[string]int64, error) { return map[string]int64{"a": 1}, nil }
	if err := m.WatchUploads([]string{"a"}, count); err != nil {
		t.Fatal(err)
	}
	if err := m.WatchJobs([]string{"a"}, count); err != nil {
		t.Fatal(err)
	}
	if _, err := m.InstrumentBroker(progress.NewHub()); err != nil {
		t.Fatal(err)
	}
	// Children, so that the vectors are exposed.
	m.ChunkPut(time.Millisecond, 10, "CHUNK_TOO_SMALL")
	m.MutationObserver("complete").Observe(1)
	m.MutationError("complete", "INTERNAL")
	m.JobFailed("spool_sweep")
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "spool_") {
			t.Errorf("%s: %s", p.Metric, p.Text)
		}
	}
	// A second Metrics in the same registry is refused, not merged.
	if _, err := New(reg, nil); err == nil {
		t.Error("New on a registry that has spool's metrics: no error, want one")
	}
}

func TestNilMetricsRecordNothing(t *testing.T) {
	var m *Metrics
	m.ChunkPut(time.Second, 1, "INTERNAL")
	m.MutationError("complete", "INTERNAL")
	m.WebsocketOpened()
	m.WebsocketClosed()
	m.SubscriptionStarted()
	m.SubscriptionEnded()
	m.JobFailed("x")
	m.DatabaseError("exec", errors.New("x"))
	s, err := localfs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if got := m.InstrumentStore(s); got != upload.Store(s) {
		t.Errorf("a nil Metrics wrapped the store: %T", got)
	}
}

// TestInstrumentedStoreConformance: the counting store passes the storage
// conformance suite, as the store it wraps does.
func TestInstrumentedStoreConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) upload.Store {
		s, err := localfs.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		m, _ := newMetrics(t)
		return m.InstrumentStore(s)
	})
}

// abilities names the optional interfaces s has.
func abilities(s upload.Store) []string {
	var out []string
	if _, ok := s.(upload.DirectStore); ok {
		out = append(out, "direct")
	}
	if _, ok := s.(upload.ResumableStore); ok {
		out = append(out, "resumable")
	}
	if _, ok := s.(upload.ObjectLinker); ok {
		out = append(out, "linker")
	}
	if _, ok := s.(upload.LocalFiler); ok {
		out = append(out, "local")
	}
	return out
}

// TestInstrumentedStoreKeepsAbilities: the upload service finds the same
// optional abilities on the counting store as on the store it wraps
// (local disk: files in place; GCS: direct and resumable uploads, signed
// URLs).
func TestInstrumentedStoreKeepsAbilities(t *testing.T) {
	m, _ := newMetrics(t)
	local, err := localfs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv := gcstest.Start(t)
	gcsStore := gcs.New(srv.Client(t), srv.CreateBucket(t), "spool", gcs.Options{})
	for _, s := range []upload.Store{local, gcsStore} {
		want := strings.Join(abilities(s), ",")
		if got := strings.Join(abilities(m.InstrumentStore(s)), ","); got != want {
			t.Errorf("%T: the counting store has %q, want %q", s, got, want)
		}
	}
	if got := strings.Join(abilities(local), ","); got != "local" {
		t.Errorf("localfs has %q, want local: the test no longer covers what it meant to", got)
	}
	if got := strings.Join(abilities(gcsStore), ","); got != "direct,resumable,linker" {
		t.Errorf("gcs has %q, want direct,resumable,linker: the test no longer covers what it meant to", got)
	}
}

// TestStorageErrorsCounted: a store that fails is counted by operation;
// a missing object, a client's broken body and a walk its caller stops
// are not the store's failures, and are not.
func TestStorageErrorsCounted(t *testing.T) {
	ctx := context.Background()
	m, _ := newMetrics(t)
	dir := filepath.Join(t.TempDir(), "files")
	local, err := localfs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	s := m.InstrumentStore(local)
	errorsOf := func(op string) float64 { return testutil.ToFloat64(m.storageErrors.WithLabelValues(op)) }

	if err := s.Prepare(ctx, "upl1", 10); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(ctx, "missing"); !errors.Is(err, upload.ErrNotExist) {
		t.Fatalf("Open of a missing object: %v, want ErrNotExist", err)
	}
	broken := iotest.ErrReader(errors.New("client went away"))
	if _, err := s.WriteChunk(ctx, "upl1", upload.ChunkRef{Index: 0, Size: 10}, broken); err == nil {
		t.Fatal("WriteChunk of a broken body: no error")
	}
	stop := errors.New("enough")
	if err := s.Walk(ctx, func(upload.StoredItem) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("Walk stopped by its caller: %v, want its error", err)
	}
	for _, op := range storageOps {
		if got := errorsOf(op); got != 0 {
			t.Errorf("storage errors of %s: %v, want 0: nothing failed in the store", op, got)
		}
	}

	// The store's directory becomes a file: every write fails.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Prepare(ctx, "upl2", 10); err == nil {
		t.Fatal("Prepare in a store whose directory is a file: no error")
	}
	if _, err := s.WriteChunk(ctx, "upl1", upload.ChunkRef{Index: 0, Size: 3}, strings.NewReader("abc")); err == nil {
		t.Fatal("WriteChunk in a store whose directory is a file: no error")
	}
	if got := errorsOf("prepare"); got != 1 {
		t.Errorf("storage errors of prepare: %v, want 1", got)
	}
	if got := errorsOf("write_chunk"); got != 1 {
		t.Errorf("storage errors of write_chunk: %v, want 1", got)
	}
}

// TestStorageErrorsCountedOnGCS: calls to a GCS that cannot be reached
// are counted, including those of the direct-upload abilities.
func TestStorageErrorsCountedOnGCS(t *testing.T) {
	m, _ := newMetrics(t)
	srv := gcstest.Start(t)
	client := srv.Client(t)
	bucket := srv.CreateBucket(t)
	s := m.InstrumentStore(gcs.New(client, bucket, "spool", gcs.Options{}))
	// A GCS nobody answers at: the client retries until the deadline.
	gone := m.InstrumentStore(gcs.New(gcstest.NewClient(t, "http://127.0.0.1:1"), bucket, "spool", gcs.Options{}))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := gone.Prepare(ctx, "upl1", 10); err == nil {
		t.Fatal("Prepare on an unreachable GCS: no error")
	}
	ref := upload.ChunkRef{Index: 0, Size: 10}
	if _, err := gone.(upload.DirectStore).StatChunk(ctx, "upl1", ref); err == nil {
		t.Fatal("StatChunk on an unreachable GCS: no error")
	}
	if got := testutil.ToFloat64(m.storageErrors.WithLabelValues("prepare")); got != 1 {
		t.Errorf("storage errors of prepare: %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.storageErrors.WithLabelValues("stat_chunk")); got != 1 {
		t.Errorf("storage errors of stat_chunk: %v, want 1", got)
	}
	// On the emulator: a chunk not sent yet is missing, not a failure.
	if err := s.Prepare(context.Background(), "upl2", 10); err != nil {
		t.Fatal(err)
	}
	if _, err := s.(upload.DirectStore).StatChunk(context.Background(), "upl2", ref); !errors.Is(err, upload.ErrNotExist) {
		t.Fatalf("StatChunk of a chunk not sent: %v, want ErrNotExist", err)
	}
	if got := testutil.ToFloat64(m.storageErrors.WithLabelValues("stat_chunk")); got != 1 {
		t.Errorf("storage errors of stat_chunk after a missing chunk: %v, want still 1", got)
	}
}

// TestInstrumentedBroker counts what is published and reads the hub's
// count of events superseded in a mailbox.
func TestInstrumentedBroker(t *testing.T) {
	m, reg := newMetrics(t)
	hub := progress.NewHub()
	b, err := m.InstrumentBroker(hub)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	feed, err := b.Subscribe(ctx, upload.UploadTopic("upl1"))
	if err != nil {
		t.Fatal(err)
	}
	defer feed.Close()
	// Three events of one upload before the subscriber reads: it will
	// read the last; two were superseded.
	for v := int64(1); v <= 3; v++ {
		if err := b.Publish(ctx, upload.Progress{UploadID: "upl1", OwnerID: "usr1", Version: v}); err != nil {
			t.Fatal(err)
		}
	}
	if events, _ := feed.Drain(); len(events) != 1 || events[0].Version != 3 {
		t.Fatalf("drained %+v, want version 3 alone", events)
	}
	want := `
# HELP spool_progress_events_published_total Progress events handed to the broker (in-process or Redis).
# TYPE spool_progress_events_published_total counter
spool_progress_events_published_total 3
# HELP spool_progress_events_superseded_total Progress events a subscriber's mailbox replaced with a newer one of the same upload before the subscriber read it (slow readers).
# TYPE spool_progress_events_superseded_total counter
spool_progress_events_superseded_total 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"spool_progress_events_published_total", "spool_progress_events_superseded_total"); err != nil {
		t.Error(err)
	}
	if _, ok := b.(interface{ Dropped() int64 }); ok {
		t.Error("the counting broker claims Dropped, which its hub lacks")
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(""), "spool_progress_events_dropped_total"); err != nil {
		t.Errorf("an in-process hub has spool_progress_events_dropped_total: %v", err)
	}
}

// TestScrapeTimeCounts: the counts are read at each scrape, every
// expected label value is reported (0 when absent), and a failing count
// leaves its metric out without failing the scrape of the others.
func TestScrapeTimeCounts(t *testing.T) {
	m, reg := newMetrics(t)
	var fail error
	counts := map[string]int64{"UPLOADING": 2}
	err := m.WatchUploads([]string{"INITIALIZED", "UPLOADING"}, func(ctx context.Context) (map[string]int64, error) {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("a scrape-time count without a deadline")
		}
		return counts, fail
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `
# HELP spool_uploads Unfinished uploads by status, across all replicas (read from the database at scrape time).
# TYPE spool_uploads gauge
spool_uploads{status="INITIALIZED"} 0
spool_uploads{status="UPLOADING"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "spool_uploads"); err != nil {
		t.Error(err)
	}
	counts["UPLOADING"] = 5
	want = strings.Replace(want, "} 2", "} 5", 1)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "spool_uploads"); err != nil {
		t.Errorf("second scrape: %v", err)
	}
	fail = errors.New("database down")
	if _, err := reg.Gather(); err == nil || !strings.Contains(err.Error(), "database down") {
		t.Errorf("gathering with a failing count: %v, want its error", err)
	}
	m.ChunkPut(time.Millisecond, 3, "")
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if body := rec.Body.String(); rec.Code != http.StatusOK || !strings.Contains(body, "spool_received_bytes_total 3") || strings.Contains(body, "spool_uploads{") {
		t.Errorf("/metrics with a failing count: %d, want 200 with the other metrics and no spool_uploads; got\n%s", rec.Code, body)
	}
}
