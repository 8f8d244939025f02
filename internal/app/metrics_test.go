package app_test

import (
	"math"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/sys/unix"

	"github.com/spoolhq/spool/internal/app"
	"github.com/spoolhq/spool/internal/database/dbtest"
	"github.com/spoolhq/spool/internal/storage/localfs"
)

// scrape is one read of /metrics, parsed.
type scrape map[string]*dto.MetricFamily

// scrapeMetrics GETs url (…/metrics) and parses the text exposition.
func scrapeMetrics(t testing.TB, url string) scrape {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d, want 200", url, resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing %s: %v", url, err)
	}
	return families
}

// metric returns the sample of family name whose labels include all of
// labels ("k", "v", …), failing the test if there is none.
func (s scrape) metric(t testing.TB, name string, labels ...string) *dto.Metric {
	t.Helper()
	f, ok := s[name]
	if !ok {
		t.Fatalf("no metric %s in the scrape", name)
	}
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		return m
	}
	t.Fatalf("no sample of %s with labels %v", name, labels)
	return nil
}

// value is a counter's or gauge's value.
func (s scrape) value(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	m := s.metric(t, name, labels...)
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	t.Fatalf("%s is neither a counter nor a gauge", name)
	return 0
}

// histogram is a histogram's sample count and sum.
func (s scrape) histogram(t testing.TB, name string, labels ...string) (count uint64, sum float64) {
	t.Helper()
	h := s.metric(t, name, labels...).GetHistogram()
	if h == nil {
		t.Fatalf("%s is not a histogram", name)
	}
	return h.GetSampleCount(), h.GetSampleSum()
}

// sum adds the values of every sample of a counter or gauge family (0 if
// it has none).
func (s scrape) sum(name string) float64 {
	total := 0.0
	for _, m := range s[name].GetMetric() {
		total += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return total
}

// waitForValue scrapes until name (with labels) is want; the deadline is
// a hang guard, for values that move just after the client's view (a
// subscription's slot is freed after its complete is sent).
func waitForValue(t testing.TB, url string, want float64, name string, labels ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := scrapeMetrics(t, url).value(t, name, labels...)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v stayed %v, want %v", name, labels, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMetricsMoveWithAnUpload scrapes /metrics, uploads a file of three
// chunks (and one short chunk refused) with a subscriber watching, and
// checks that each metric moved by what was done.
func TestMetricsMoveWithAnUpload(t *testing.T) {
	for _, set := range engineSets {
		t.Run(set.name, func(t *testing.T) {
			testMetricsMoveWithAnUpload(t, set.name, startSpool(t, set.setup(t)))
		})
	}
}

func testMetricsMoveWithAnUpload(t *testing.T, engines string, s *spool) {
	metricsURL := s.url + "/metrics"
	before := scrapeMetrics(t, metricsURL)
	for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_cpu_seconds_total",
		"process_resident_memory_bytes", "go_sql_open_connections", "spool_progress_events_superseded_total"} {
		if _, ok := before[name]; !ok {
			t.Errorf("no %s in the scrape", name)
		}
	}
	if engines == "embedded" {
		// SQLite's read connections are a pool of their own.
		if n := before.value(t, "go_sql_max_open_connections", "db_name", "spool_reads"); n < 2 {
			t.Errorf("SQLite's read pool allows %v connections, want 2 at least", n)
		}
	}
	for _, name := range []string{"spool_progress_events_dropped_total", "spool_progress_subscription_up", "spool_progress_subscription_losses_total"} {
		if _, ok := before[name]; ok != (engines != "embedded") {
			t.Errorf("%s present: %v; want it with Redis only", name, ok)
		}
	}
	for _, state := range []string{"available", "running", "retryable", "scheduled"} {
		before.metric(t, "spool_jobs", "state", state)
	}
	for _, name := range []string{"spool_websocket_connections", "spool_subscriptions", "spool_received_bytes_total"} {
		if got := before.value(t, name); got != 0 {
			t.Errorf("%s before any request: %v, want 0", name, got)
		}
	}
	putsBefore, _ := before.histogram(t, "spool_chunk_put_duration_seconds")
	publishedBefore := before.value(t, "spool_progress_events_published_total")

	tok := s.token("alice")
	video := fileBytes("video/mp4", 12<<20, 7) // chunks of 5, 5 and 2 MiB
	up := s.planOne(tok, file("clip.mp4", "video/mp4", int64(len(video))))
	afterInit := scrapeMetrics(t, metricsURL)
	if got := afterInit.value(t, "spool_uploads", "status", "INITIALIZED"); got != 1 {
		t.Errorf("spool_uploads{status=INITIALIZED} after initBatch: %v, want 1", got)
	}
	if n, _ := afterInit.histogram(t, "spool_graphql_mutation_duration_seconds", "field", "initBatch"); n != 1 {
		t.Errorf("initBatch timings: %d, want 1", n)
	}

	ws := s.dialWS(tok, nil)
	ws.subscribe("up", `subscription($id: ID!) { uploadProgress(uploadId: $id) { uploadId status percent mediaStatus } }`, vars("id", up.ID))
	events := collect(ws, "up")
	if first, ok := <-events; !ok || first.Status != "INITIALIZED" {
		t.Fatalf("snapshot: %+v (open %v), want INITIALIZED", first, ok)
	}
	subscribed := scrapeMetrics(t, metricsURL)
	if got := subscribed.value(t, "spool_websocket_connections"); got != 1 {
		t.Errorf("spool_websocket_connections while connected: %v, want 1", got)
	}
	if got := subscribed.value(t, "spool_subscriptions"); got != 1 {
		t.Errorf("spool_subscriptions while subscribed: %v, want 1", got)
	}

	// Chunk 0 with too few bytes: refused before its body is read.
	short := up.ChunkURLs[0]
	if a := do(t, http.MethodPut, short.URL, video[:10], nil); a.Status != http.StatusBadRequest || a.Error.Code != "CHUNK_TOO_SMALL" {
		t.Fatalf("short chunk: %d %s, want 400 CHUNK_TOO_SMALL", a.Status, a.Error.Code)
	}
	for _, c := range up.ChunkURLs {
		sendChunk(t, c, video, http.StatusOK)
	}
	uploading := scrapeMetrics(t, metricsURL)
	if got := uploading.value(t, "spool_uploads", "status", "UPLOADING"); got != 1 {
		t.Errorf("spool_uploads{status=UPLOADING} with every chunk sent: %v, want 1", got)
	}
	s.wantCode(tok, `mutation { complete(uploadId: "upl_nosuchupload") { id } }`, nil, "NOT_FOUND")
	s.complete(tok, up.ID)
	for range events { // until the server ends the subscription (media READY)
	}
	waitForValue(t, metricsURL, 0, "spool_subscriptions")
	after := scrapeMetrics(t, metricsURL)

	if got := after.value(t, "spool_received_bytes_total"); got != float64(len(video)) {
		t.Errorf("spool_received_bytes_total: %v, want the %d bytes sent", got, len(video))
	}
	puts, bodyBytes := after.histogram(t, "spool_chunk_put_body_bytes")
	if putsAfter, _ := after.histogram(t, "spool_chunk_put_duration_seconds"); putsAfter-putsBefore != 4 || puts != 4 {
		t.Errorf("chunk PUTs timed: %d, sized: %d; want 4 (3 chunks and a short one)", putsAfter-putsBefore, puts)
	}
	if bodyBytes != float64(len(video)) {
		t.Errorf("chunk body sizes add up to %v, want %d", bodyBytes, len(video))
	}
	if got := after.value(t, "spool_chunk_put_failures_total", "code", "CHUNK_TOO_SMALL"); got != 1 {
		t.Errorf("spool_chunk_put_failures_total{code=CHUNK_TOO_SMALL}: %v, want 1", got)
	}
	if n, sum := after.histogram(t, "spool_graphql_mutation_duration_seconds", "field", "complete"); n != 2 || sum <= 0 {
		t.Errorf("complete timings: %d adding up to %vs, want 2 (one NOT_FOUND) of more than 0", n, sum)
	}
	if got := after.sum("spool_graphql_mutation_errors_total"); got != 1 {
		t.Errorf("mutation errors: %v, want 1", got)
	}
	if got := after.value(t, "spool_graphql_mutation_errors_total", "field", "complete", "code", "NOT_FOUND"); got != 1 {
		t.Errorf("spool_graphql_mutation_errors_total{field=complete,code=NOT_FOUND}: %v, want 1", got)
	}
	for _, status := range []string{"INITIALIZED", "UPLOADING", "ASSEMBLING"} {
		if got := after.value(t, "spool_uploads", "status", status); got != 0 {
			t.Errorf("spool_uploads{status=%s} once completed: %v, want 0", status, got)
		}
	}
	// The chunks and complete publish at least 4 events, all taken.
	if got := after.value(t, "spool_progress_events_published_total") - publishedBefore; got < 4 {
		t.Errorf("progress events published: %v, want at least 4", got)
	}
	if got := after.value(t, "spool_progress_publish_errors_total"); got != 0 {
		t.Errorf("progress publish errors: %v, want 0", got)
	}
	if engines != "embedded" {
		if got := after.value(t, "spool_progress_events_dropped_total"); got != 0 {
			t.Errorf("progress events dropped with Redis up: %v, want 0", got)
		}
		if up, lost := after.value(t, "spool_progress_subscription_up"), after.value(t, "spool_progress_subscription_losses_total"); up != 1 || lost != 0 {
			t.Errorf("the Redis subscription with Redis up: up %v, %v losses; want 1 and 0", up, lost)
		}
	}
	for _, name := range []string{"spool_storage_errors_total", "spool_database_errors_total", "spool_job_failures_total"} {
		if got := after.sum(name); got != 0 {
			t.Errorf("%s: %v, want 0 on a clean run", name, got)
		}
	}
	after.metric(t, "spool_storage_errors_total", "op", "write_chunk")
	after.metric(t, "spool_database_errors_total", "op", "commit")

	_ = ws.conn.Close()
	waitForValue(t, metricsURL, 0, "spool_websocket_connections")
}

// TestMetricsAddr: with MetricsAddr, /metrics is served on that listener
// alone; the API's port answers 404 there.
func TestMetricsAddr(t *testing.T) {
	s := startSpool(t, func(c *app.Config) { c.MetricsAddr = "127.0.0.1:0" })
	addr := s.main.MetricsAddr()
	if addr == "" {
		t.Fatal("MetricsAddr set, but no address to scrape")
	}
	own := scrapeMetrics(t, "http://"+addr+"/metrics")
	if _, ok := own["spool_received_bytes_total"]; !ok {
		t.Error("the metrics listener serves no spool_received_bytes_total")
	}
	if resp, _ := get(t, s.url+"/metrics", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /metrics on the API's port: %d, want 404", resp.StatusCode)
	}
	if resp, _ := get(t, "http://"+addr+"/graphql", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /graphql on the metrics listener: %d, want 404: it must serve metrics only", resp.StatusCode)
	}
	if got := s.main.MetricsAddr(); got == "" || strings.HasSuffix(got, ":0") {
		t.Errorf("MetricsAddr() = %q, want the bound address", got)
	}

	// Without it, the API's port serves them and there is no other.
	plain := startSpool(t, nil)
	if addr := plain.main.MetricsAddr(); addr != "" {
		t.Errorf("without MetricsAddr, a metrics listener at %s", addr)
	}
	scrapeMetrics(t, plain.url+"/metrics")
}

// TestMetricsAddrTaken: a metrics address that cannot be listened on stops
// spool at start, naming the setting.
func TestMetricsAddrTaken(t *testing.T) {
	s := startSpool(t, func(c *app.Config) { c.MetricsAddr = "127.0.0.1:0" })
	cfg := smallConfig(t.TempDir())
	cfg.MetricsAddr = s.main.MetricsAddr()
	m := app.New(cfg, nil)
	err := m.Run(t.Context())
	if err == nil {
		m.Close()
		t.Fatal("got a running server on a taken metrics address, want an error")
	}
	if !strings.Contains(err.Error(), "--metrics-addr") {
		t.Errorf("got %q, want it to name --metrics-addr", err)
	}
}

// TestMetricsDuringDatabaseOutage: while PostgreSQL is cut off, /metrics
// still answers, without the counts read from the database, and the
// failed calls show in spool_database_errors_total.
func TestMetricsDuringDatabaseOutage(t *testing.T) {
	u, err := url.Parse(dbtest.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := startDBProxy(t, u.Host)
	u.Host = proxy.Addr()
	s := startSpool(t, func(c *app.Config) { c.DatabaseURL = u.String() })
	metricsURL := s.url + "/metrics"
	tok := s.token("alice")
	s.me(tok) // the user exists, and the token is known
	if got := scrapeMetrics(t, metricsURL).sum("spool_database_errors_total"); got != 0 {
		t.Fatalf("database errors before the cut: %v, want 0", got)
	}

	proxy.Cut(time.Hour) // until the test ends
	if errs := s.gql(tok, opMe, nil, nil); len(errs) == 0 {
		t.Fatal("me answered with the database cut off")
	}
	during := scrapeMetrics(t, metricsURL)
	if got := during.sum("spool_database_errors_total"); got < 1 {
		t.Errorf("database errors during the cut: %v, want at least 1", got)
	}
	if _, ok := during["spool_uploads"]; ok {
		t.Error("spool_uploads served during the cut, want it left out")
	}
	if _, ok := during["spool_received_bytes_total"]; !ok {
		t.Error("spool_received_bytes_total missing during the cut: one failing source must not stop the scrape")
	}
}

// Local storage's filesystem is reported at each scrape, as statfs has
// it: a full disk fails every chunk, and a one-machine server should be
// alerted before. GCS has no such figure, and no such metric.
func TestStorageSpaceMetrics(t *testing.T) {
	t.Parallel()
	var dir string
	s := startSpool(t, func(c *app.Config) { dir = c.DataDir })
	got := scrapeMetrics(t, s.url+"/metrics")
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	free, size := float64(st.Bavail)*float64(st.Bsize), float64(st.Blocks)*float64(st.Bsize)
	if v := got.value(t, "spool_storage_size_bytes"); v != size {
		t.Errorf("spool_storage_size_bytes = %.0f, want statfs's %.0f", v, size)
	}
	// Other tests write beside this one: free space moves a little.
	if v := got.value(t, "spool_storage_free_bytes"); v <= 0 || math.Abs(v-free) > max(64<<20, size/100) {
		t.Errorf("spool_storage_free_bytes = %.0f, want about statfs's %.0f", v, free)
	}
	if v, want := got.value(t, "spool_storage_reserve_bytes"), localfs.DefaultReserve().Of(int64(size)); v != float64(want) {
		t.Errorf("spool_storage_reserve_bytes = %.0f, want the default reserve's %d of this disk", v, want)
	}

	onGCS := startSpool(t, productionEngines(t).apply)
	if _, ok := scrapeMetrics(t, onGCS.url+"/metrics")["spool_storage_free_bytes"]; ok {
		t.Errorf("spool_storage_free_bytes reported on GCS storage")
	}
}
