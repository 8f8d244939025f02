//go:build faults

package main

import (
	"database/sql"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"

	"github.com/spoolhq/spool/internal/blackhole"
	"github.com/spoolhq/spool/internal/database/dbtest"
	"github.com/spoolhq/spool/internal/progress/redis/redistest"
	"github.com/spoolhq/spool/internal/storage/gcs/gcstest"
)

// Settings of the fault suite's replicas. The sweeps run every 2 s and
// remove bytes no record owns once they are 3 s old, so a check for
// orphans waits seconds, not the production hour. Jobs of a killed
// replica are rescued 9 s after they started.
const (
	faultOrphanAge   = 3 * time.Second
	faultRescueAfter = 9 * time.Second
)

// faultEnv is two `spool serve` replicas on PostgreSQL, Redis and the
// GCS emulator, each engine reached through something the test can
// break: toxiproxy proxies (in this process) in front of PostgreSQL and
// Redis, and a fault-injecting HTTP reverse proxy in front of the
// emulator.
type faultEnv struct {
	t       *testing.T // the suite's: replicas live as long as it
	w       *walkthrough
	args    []string // of every replica
	db      *sql.DB  // the database, reached directly (not through the proxy)
	engines *crashEngines
	pg      *toxiproxy.Proxy
	// pgPath is the replicas' network path to the PostgreSQL proxy, which
	// can drop every packet (a partition); nil, with pgPathErr saying
	// why, where the machine cannot make one (it needs root).
	pgPath    *blackhole.Hole
	pgPathErr error
	redis     *toxiproxy.Proxy
	storage   *storageFaults
	token     string
	// stuck is set when a subtest ran out of its budget (see run).
	stuck atomic.Bool

	mu       sync.Mutex
	replicas []*replica // nil while one is down
}

func newFaultEnv(t *testing.T) *faultEnv {
	t.Helper()
	database, redisURL := dbtest.Postgres(t), redistest.URL(t)
	toxics := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	pgURL, pg := proxiedURL(t, toxics, "postgresql", database)
	pgPath, pgPathErr := blackhole.TryStart(t, pg.Listen)
	if pgPathErr == nil {
		pgURL = overPath(t, pgURL, pgPath)
	}
	redisProxied, redis := proxiedURL(t, toxics, "redis", redisURL)

	emulator := gcstest.Start(t)
	bucket := emulator.CreateBucket(t)
	storage := newStorageFaults(t, emulator.URL)
	metadata := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(metadata.Close)
	w := &walkthrough{
		env: append(userEnv(), runMainEnv+"=1",
			"STORAGE_EMULATOR_HOST="+strings.TrimPrefix(storage.URL, "http://"),
			"GCE_METADATA_HOST="+strings.TrimPrefix(metadata.URL, "http://"),
			"SPOOL_JWT_SECRET="+goodSecret),
		storage:  []string{"--storage-url", "gs://" + bucket + "/uploads"},
		emulator: emulator.URL,
		database: database,
	}
	e := &faultEnv{
		t: t, w: w, pg: pg, pgPath: pgPath, pgPathErr: pgPathErr, redis: redis, storage: storage,
		engines: &crashEngines{walkthrough: w, driver: "pgx", dsn: database,
			walk: bucketWalk(gcstest.NewClient(t, emulator.URL), bucket, "uploads")},
		args: slices.Concat(w.storage, []string{
			"--database-url", pgURL, "--redis-url", redisProxied,
			"--single-threshold", "1MiB", "--chunk-size", "5MiB",
			// Random bytes behind a video's header: processing checks
			// their SHA-256 and derives nothing.
			"--media-processing=false",
			"--sweep-interval", "2s", "--orphan-interval", "2s", "--orphan-age", faultOrphanAge.String(),
			"--job-timeout", "8s", "--job-rescue-after", faultRescueAfter.String(),
		}),
	}
	e.db = e.engines.openDB(t)
	e.token = w.token(t, "alice")
	e.replicas = []*replica{w.serve(t, e.args...), w.serve(t, e.args...)}
	return e
}

// proxiedURL starts a toxiproxy proxy in front of the host of rawURL and
// returns rawURL pointing at the proxy instead.
func proxiedURL(t *testing.T, toxics *toxiproxy.ApiServer, name, rawURL string) (string, *toxiproxy.Proxy) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatalf("%s's URL: %v", name, err)
	}
	p := toxiproxy.NewProxy(toxics, name, "127.0.0.1:0", u.Host)
	if err := p.Start(); err != nil {
		t.Fatalf("starting the %s proxy: %v", name, err)
	}
	t.Cleanup(p.Stop)
	// Start resolved the port: a restart after a cut listens on it again.
	u.Host = p.Listen
	return u.String(), p
}

// faultTCPUserTimeout is the replicas' tcp_user_timeout: how long a
// statement sent into a partition waits before it fails.
const faultTCPUserTimeout = 2 * time.Second

// overPath returns the PostgreSQL URL rawURL reached over path instead,
// with faultTCPUserTimeout.
func overPath(t *testing.T, rawURL string, path *blackhole.Hole) string {
	t.Helper()
	return dbtest.Rewrite(t, rawURL, path.Addr, "tcp_user_timeout", strconv.Itoa(int(faultTCPUserTimeout.Milliseconds())))
}

// partition makes path drop every packet for d. It returns at once; the
// returned channel closes when path carries packets again.
func partition(t *testing.T, path *blackhole.Hole, d time.Duration) <-chan struct{} {
	path.Drop(t)
	back := make(chan struct{})
	time.AfterFunc(d, func() {
		defer close(back)
		path.Restore(t)
	})
	return back
}

// cut makes p unreachable for d: every connection through it is closed
// at once and new ones are refused (its port closed) until d has passed.
// It returns at once; the returned channel closes when p is back.
func cut(t *testing.T, p *toxiproxy.Proxy, d time.Duration) <-chan struct{} {
	p.Stop()
	back := make(chan struct{})
	time.AfterFunc(d, func() {
		defer close(back)
		if err := p.Start(); err != nil {
			t.Errorf("restarting the %s proxy after a cut: %v", p.Name, err)
		}
	})
	return back
}

// bases returns the URLs of the replicas that are up.
func (e *faultEnv) bases() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, r := range e.replicas {
		if r != nil {
			out = append(out, r.url)
		}
	}
	return out
}

// pick returns the URL of a replica that is up, turning with n: a client
// that retries moves to the next replica, as behind a load balancer.
func (e *faultEnv) pick(n int) string {
	bases := e.bases()
	if len(bases) == 0 {
		return "http://127.0.0.1:1" // refused: the caller retries
	}
	return bases[n%len(bases)]
}

// kill sends SIGKILL to replica i and waits for it to exit.
func (e *faultEnv) kill(i int) {
	e.mu.Lock()
	r := e.replicas[i]
	e.replicas[i] = nil
	e.mu.Unlock()
	r.stopped = true
	_ = r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.done
}

// restart starts replica i again, as an orchestrator would after a
// crash. Killed replicas leave River's leadership and running jobs
// behind: as in the crash test, it waits out the rescue delay when jobs
// were running and clears the leader, so that whichever replica leads
// next rescues them and runs the periodic sweeps at once.
func (e *faultEnv) restart(t *testing.T, i int, killedAt time.Time) {
	t.Helper()
	if runningJobs(t, e.db) > 0 {
		poll(t, "the rescue delay to pass", func() bool { return time.Since(killedAt) > faultRescueAfter+500*time.Millisecond })
	}
	clearLeader(t, e.db)
	r := e.w.serve(e.t, e.args...)
	e.mu.Lock()
	e.replicas[i] = r
	e.mu.Unlock()
}

// storageFaults is an HTTP reverse proxy in front of the GCS emulator
// that can answer 5xx or hold every request for a while.
type storageFaults struct {
	URL   string
	proxy *httputil.ReverseProxy

	mu        sync.Mutex
	failUntil time.Time     // answer 500 and 503 in turn until then
	delay     time.Duration // hold every request this long first

	failed  atomic.Int64 // requests answered with an injected 5xx
	delayed atomic.Int64 // requests held

	kinds map[string]int // requests held, by method and kind (under mu)
}

func newStorageFaults(t *testing.T, emulator string) *storageFaults {
	t.Helper()
	target, err := url.Parse(emulator)
	if err != nil {
		t.Fatal(err)
	}
	f := &storageFaults{kinds: map[string]int{}, proxy: &httputil.ReverseProxy{
		// SetURL also sets the Host header to the emulator's: it routes
		// the XML paths that object reads take by Host.
		Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(target) },
		// A request the client gave up on is no news.
		ErrorLog: log.New(io.Discard, "", 0),
	}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

// fail answers every request with 500 or 503 for d.
func (f *storageFaults) fail(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failUntil = time.Now().Add(d)
}

// slow holds every request for d before passing it on, until slow(0).
func (f *storageFaults) slow(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.delay = d
}

func (f *storageFaults) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	failing, delay := time.Now().Before(f.failUntil), f.delay
	f.mu.Unlock()
	if failing {
		n := f.failed.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		status := []int{http.StatusServiceUnavailable, http.StatusInternalServerError}[n%2]
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"error":{"code":%d,"message":"injected by the fault suite"}}`, status)
		return
	}
	if delay > 0 {
		f.delayed.Add(1)
		f.mu.Lock()
		f.kinds[r.Method+" "+requestKind(r)]++
		f.mu.Unlock()
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	f.proxy.ServeHTTP(w, r)
}

// requestKind names what a request to the GCS API does, without the
// bucket's and objects' names.
func requestKind(r *http.Request) string {
	p := r.URL.Path
	switch {
	case strings.HasPrefix(p, "/upload/storage/v1/"):
		return "upload (" + r.URL.Query().Get("uploadType") + ")"
	case strings.HasSuffix(p, "/compose"):
		return "compose"
	case strings.HasPrefix(p, "/storage/v1/b/") && strings.Contains(p, "/o/"):
		return "object"
	case strings.HasPrefix(p, "/storage/v1/b/"):
		return "list"
	default:
		return "object read (XML)"
	}
}

// heldKinds describes the requests held so far, by kind.
func (f *storageFaults) heldKinds() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	keys := make([]string, 0, len(f.kinds))
	for k := range f.kinds {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "\n  %4d × %s", f.kinds[k], k)
	}
	return b.String()
}

// rawPutHalf sends a PUT of body to rawURL over a TCP connection of its
// own, stops halfway through the body and closes the connection, as a
// client whose network dropped would.
func rawPutHalf(rawURL string, body []byte) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return err
	}
	c, err := net.Dial("tcp", u.Host)
	if err != nil {
		return err
	}
	defer c.Close()
	head := fmt.Sprintf("PUT %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n",
		u.RequestURI(), u.Host, len(body))
	if _, err := io.WriteString(c, head); err != nil {
		return err
	}
	if _, err := c.Write(body[:len(body)/2]); err != nil {
		return err
	}
	// Let the server take in what was sent before the connection drops,
	// so the cut lands inside its handler, mid-body.
	time.Sleep(100 * time.Millisecond)
	return nil
}
