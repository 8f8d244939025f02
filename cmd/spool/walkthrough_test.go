package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spoolhq/spool/internal/database/dbtest"
	"github.com/spoolhq/spool/internal/progress/redis/redistest"
	"github.com/spoolhq/spool/internal/storage/gcs/gcstest"
)

// runMainEnv makes the test binary run spool's main instead of the tests:
// the walk-through tests start it as `spool serve …` processes. Running
// this binary rather than one from `go build` runs the same main with the
// same flags and environment, without compiling every dependency a second
// time (the tests may be built with -race, a build of their own).
const runMainEnv = "SPOOLTEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// walkthrough is what README's Production section sets up: PostgreSQL,
// Redis and GCS (the emulator, through STORAGE_EMULATOR_HOST) shared by
// replicas, which share SPOOL_JWT_SECRET.
type walkthrough struct {
	env      []string // of every spool process
	storage  []string // serve's flag naming the bucket
	engines  []string // serve's flags naming every engine, storage included
	emulator string   // the emulator's URL
	database string   // the PostgreSQL database's URL
}

func newWalkthrough(t *testing.T) *walkthrough {
	t.Helper()
	database, redis := dbtest.Postgres(t), redistest.URL(t)
	srv := gcstest.Start(t)
	bucket := srv.CreateBucket(t)
	// Off GCE the library looks for an account to sign as on the GCE
	// metadata server; a loopback one that knows none answers that at
	// once, where the real probe would wait on this machine's network.
	metadata := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(metadata.Close)
	storage := []string{"--storage-url", "gs://" + bucket + "/uploads"}
	return &walkthrough{
		env: append(userEnv(), runMainEnv+"=1",
			"STORAGE_EMULATOR_HOST="+strings.TrimPrefix(srv.URL, "http://"),
			"GCE_METADATA_HOST="+strings.TrimPrefix(metadata.URL, "http://"),
			"SPOOL_JWT_SECRET="+goodSecret),
		storage: storage,
		engines: slices.Concat(storage, []string{"--database-url", database, "--redis-url", redis,
			// Small files still make CHUNKED uploads.
			"--single-threshold", "1MiB", "--chunk-size", "5MiB",
			// Its files are random bytes behind a video's header, not media:
			// processing checks their bytes, and derives nothing.
			"--media-processing=false"}),
		emulator: srv.URL,
		database: database,
	}
}

// userEnv is this process's environment without settings of spool or of
// Google's libraries, which would change what is tested.
func userEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(name, "SPOOL"), strings.HasPrefix(name, "STORAGE_"), strings.HasPrefix(name, "GOOGLE_"),
			strings.HasPrefix(name, "GCE_"), name == "DATABASE_URL", name == "REDIS_URL":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// replica is one `spool serve` process.
type replica struct {
	url  string
	cmd  *exec.Cmd
	log  *logLines
	done chan struct{}
	// stopped is set once a test stopped the process itself.
	stopped bool
}

// logLines keeps what a process writes to stderr.
type logLines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logLines) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.WriteString(line + "\n")
}

func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// readyURL finds the URL in the line saying spool is ready, in a text
// log or a JSON one.
var readyURL = regexp.MustCompile(`msg="spool ready" url=(\S+)|"msg":"spool ready".*"url":"([^"]+)"`)

// serve runs `spool serve args…` and returns once it logs that it is
// ready; it fails the test if spool exits first. The process is stopped
// with SIGTERM when the test ends, and must exit 0.
func (w *walkthrough) serve(t *testing.T, args ...string) *replica {
	t.Helper()
	r, ready := w.start(t, args...)
	r.waitReady(t, ready)
	return r
}

// serveAtOnce starts n replicas of `spool serve args…` together, as a
// rollout does, and returns them once each is ready, as serve does.
func (w *walkthrough) serveAtOnce(t *testing.T, n int, args ...string) []*replica {
	t.Helper()
	rs := make([]*replica, n)
	readies := make([]<-chan string, n)
	for i := range rs {
		rs[i], readies[i] = w.start(t, args...)
	}
	for i, r := range rs {
		r.waitReady(t, readies[i])
	}
	return rs
}

// start starts `spool serve args…`, stopped as serve says, and returns
// it with the channel its URL arrives on once it is ready.
func (w *walkthrough) start(t *testing.T, args ...string) (*replica, <-chan string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	r := &replica{log: &logLines{}, done: make(chan struct{})}
	// No load balancer waits on these replicas' /readyz: a SIGTERM need
	// not keep serving first (args may say otherwise: the last wins).
	r.cmd = exec.Command(exe, append([]string{"serve", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--drain-grace", "0s"}, args...)...)
	r.cmd.Env = w.env
	stderr, err := r.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("starting spool serve: %v", err)
	}
	ready := make(chan string, 1)
	go func() {
		defer close(r.done)
		lines := bufio.NewScanner(stderr)
		for lines.Scan() {
			r.log.add(lines.Text())
			if m := readyURL.FindStringSubmatch(lines.Text()); m != nil {
				ready <- m[1] + m[2]
			}
		}
		_ = r.cmd.Wait()
	}()
	t.Cleanup(func() {
		if r.stopped {
			return
		}
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.done:
		case <-time.After(replicaHangGuard):
			_ = r.cmd.Process.Kill()
			<-r.done
			t.Errorf("spool serve had not exited %v after SIGTERM (killed); its log:\n%s", replicaHangGuard, r.log)
			return
		}
		if code := r.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("spool serve exited %d after SIGTERM; its log:\n%s", code, r.log)
		}
	})
	return r, ready
}

// waitReady returns once r logs that it is ready (its URL on ready), and
// fails the test if it exits first or takes replicaHangGuard.
func (r *replica) waitReady(t *testing.T, ready <-chan string) {
	t.Helper()
	select {
	case r.url = <-ready:
	case <-r.done:
		t.Fatalf("spool serve exited %d before it was ready; its log:\n%s", r.cmd.ProcessState.ExitCode(), r.log)
	case <-time.After(replicaHangGuard):
		r.stopped = true
		_ = r.cmd.Process.Kill()
		<-r.done
		t.Fatalf("spool serve was not ready %v after it started (killed); its log:\n%s", replicaHangGuard, r.log)
	}
}

// replicaHangGuard bounds a replica's start and its exit after SIGTERM:
// each takes seconds, and a replica stuck in either fails its test with
// its log instead of hanging the test binary until its -timeout.
const replicaHangGuard = 2 * time.Minute

// token runs `spool token --user NAME` as the walk-through does.
func (w *walkthrough) token(t *testing.T, user string) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "token", "--user", user, "--data-dir", t.TempDir())
	cmd.Env = w.env
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("spool token: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// gql runs a GraphQL operation on a replica and decodes its data into out.
func gql(t *testing.T, base, token, query string, vars map[string]any, out any) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequest(http.MethodPost, base+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s/graphql: %v", base, err)
	}
	defer resp.Body.Close()
	var res struct {
		Data   json.RawMessage `json:"data"`
		Errors []struct {
			Message    string         `json:"message"`
			Extensions map[string]any `json:"extensions"`
		} `json:"errors"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		t.Fatalf("decoding the answer of %s (HTTP %d): %v", base, resp.StatusCode, err)
	}
	if len(res.Errors) > 0 {
		t.Fatalf("GraphQL errors from %s: %+v", base, res.Errors)
	}
	if err := json.Unmarshal(res.Data, out); err != nil {
		t.Fatalf("decoding data %s: %v", res.Data, err)
	}
}

// fetch makes one request and returns the status and the whole body.
func fetch(t *testing.T, method, url string, body []byte, header http.Header) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s: %v", url, err)
	}
	return resp.StatusCode, b
}

func sha256hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// randomVideo is n random bytes behind an MP4 header: spool takes them
// for a video, and processing (off in the walk-through) would refuse them.
//
// The bytes come from ChaCha8's Read, not a byte at a time: under -race
// every byte stored in a loop is an instrumented write, and making
// TestDrainOnSIGTERM's 20 files of 11 MiB that way took 27 s of the
// test's CPU (1.36 s a file) against 0.08 s a file.
func randomVideo(n int, seed uint64) []byte {
	video := make([]byte, n)
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	_, _ = rand.NewChaCha8(key).Read(video) // never fails
	copy(video, "\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom")
	return video
}

// planVideo plans the upload of video, named clip.mp4, on the server at
// base.
func planVideo(t *testing.T, base, token string, video []byte) plannedUpload {
	t.Helper()
	var plan struct {
		InitBatch struct{ Uploads []plannedUpload }
	}
	gql(t, base, token, `mutation($f: [FileInput!]!) { initBatch(input: {files: $f}) { uploads { id chunkUrls { url offset size } } } }`,
		map[string]any{"f": []any{map[string]any{"fileName": "clip.mp4", "size": len(video), "mimeType": "video/mp4"}}}, &plan)
	return plan.InitBatch.Uploads[0]
}

// uploadAcross uploads an 11 MiB video through two replicas: planned on a,
// chunks sent to a and b in turn, completed on b. It returns the file and
// the download URLs each replica hands out for it.
func uploadAcross(t *testing.T, token string, a, b *replica) (video []byte, urlA, urlB string) {
	t.Helper()
	video = randomVideo(11<<20, 5)
	up := planVideo(t, a.url, token, video)
	if len(up.ChunkUrls) != 3 {
		t.Fatalf("initBatch: got %d chunk URLs, want 3 (5, 5 and 1 MiB)", len(up.ChunkUrls))
	}
	for i, c := range up.ChunkUrls {
		u := c.URL
		if i%2 == 1 {
			u = strings.Replace(u, a.url, b.url, 1)
		}
		if status, body := fetch(t, http.MethodPut, u, video[c.Offset:c.Offset+c.Size], nil); status != http.StatusOK {
			t.Fatalf("PUT chunk %d to %s: got %d %s", i, u, status, body)
		}
	}
	var done struct{ Complete struct{ URL string } }
	gql(t, b.url, token, `mutation($id: ID!) { complete(uploadId: $id) { url } }`, map[string]any{"id": up.ID}, &done)
	var seen struct {
		Upload struct{ Media struct{ URL string } }
	}
	gql(t, a.url, token, `query($id: ID!) { upload(id: $id) { media { url } } }`, map[string]any{"id": up.ID}, &seen)
	return video, seen.Upload.Media.URL, done.Complete.URL
}

// TestWalkthroughProxy follows the docker-compose walk-through with two
// replicas and no GCS credentials (the emulator takes none, and a user's
// ADC cannot sign): spool says at start that downloads go through it, and
// a media URL from either replica downloads byte-exact from both.
func TestWalkthroughProxy(t *testing.T) {
	w := newWalkthrough(t)
	a, b := w.serve(t, w.engines...), w.serve(t, w.engines...)
	for name, r := range map[string]*replica{"A": a, "B": b} {
		log := r.log.String()
		if !strings.Contains(log, "media downloads go through spool") || !strings.Contains(log, "media_urls=proxy") {
			t.Errorf("replica %s's start-up log does not say downloads go through spool:\n%s", name, log)
		}
	}
	video, urlA, urlB := uploadAcross(t, w.token(t, "alice"), a, b)
	if !strings.HasPrefix(urlA, a.url+"/media/") || !strings.HasPrefix(urlB, b.url+"/media/") {
		t.Fatalf("media URLs %s (from A) and %s (from B): want each replica's own media route", urlA, urlB)
	}
	for _, u := range []string{urlA, urlB, strings.Replace(urlA, a.url, b.url, 1), strings.Replace(urlB, b.url, a.url, 1)} {
		status, body := fetch(t, http.MethodGet, u, nil, nil)
		if status != http.StatusOK || sha256hex(body) != sha256hex(video) {
			t.Errorf("GET %s: got %d, %d bytes with sha256 %s; want 200 and %s", u, status, len(body), sha256hex(body), sha256hex(video))
		}
	}
	status, body := fetch(t, http.MethodGet, urlB, nil, http.Header{"Range": {"bytes=10485750-10485769"}})
	if status != http.StatusPartialContent || !bytes.Equal(body, video[10485750:10485770]) {
		t.Errorf("a range across chunks 1 and 2: got %d %q, want 206 %q", status, body, video[10485750:10485770])
	}
}

// TestWalkthroughSigned is the walk-through with a service account's key
// file (a throwaway one: the emulator checks no signatures): media URLs
// point at GCS, signed, and download byte-exact.
func TestWalkthroughSigned(t *testing.T) {
	w := newWalkthrough(t)
	keyFile := filepath.Join(t.TempDir(), "spool-sa.json")
	if err := os.WriteFile(keyFile, gcstest.ServiceAccountKeyJSON(t), 0o600); err != nil {
		t.Fatal(err)
	}
	args := slices.Concat(w.engines, []string{"--gcs-credentials-file", keyFile, "--media-urls", "signed"})
	a, b := w.serve(t, args...), w.serve(t, args...)
	for name, r := range map[string]*replica{"A": a, "B": b} {
		if log := r.log.String(); !strings.Contains(log, "media_urls=signed") || strings.Contains(log, "level=WARN") {
			t.Errorf("replica %s's start-up log: want signed media URLs and no warning:\n%s", name, log)
		}
	}
	video, urlA, urlB := uploadAcross(t, w.token(t, "alice"), a, b)
	for _, u := range []string{urlA, urlB} {
		if !strings.HasPrefix(u, w.emulator+"/") || !strings.Contains(u, "X-Goog-Signature=") {
			t.Errorf("media URL %s: want a signed URL of the emulator %s", u, w.emulator)
		}
		status, body := fetch(t, http.MethodGet, u, nil, nil)
		if status != http.StatusOK || sha256hex(body) != sha256hex(video) {
			t.Errorf("GET %s: got %d, %d bytes with sha256 %s; want 200 and %s", u, status, len(body), sha256hex(body), sha256hex(video))
		}
	}
}

// TestWalkthroughRefused: settings that need signed URLs GCS cannot sign
// stop `spool serve` at start, exit status 2, with a message naming the
// flags to set.
func TestWalkthroughRefused(t *testing.T) {
	w := newWalkthrough(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, extra := range [][]string{{"--media-urls", "signed"}, {"--storage-direct"}} {
		// GCS storage; the database and progress are the embedded ones.
		args := slices.Concat([]string{"serve", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir()}, w.storage, extra)
		cmd := exec.Command(exe, args...)
		cmd.Env = w.env
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		if code := cmd.ProcessState.ExitCode(); code != 2 {
			t.Errorf("spool serve %s: exited %d (%v), want 2; stderr:\n%s", strings.Join(extra, " "), code, err, stderr.String())
		}
		for _, want := range []string{extra[0], "--gcs-credentials-file", "--gcs-signer-email", "GoogleAccessID"} {
			if !strings.Contains(stderr.String(), want) {
				t.Errorf("spool serve %s: stderr does not name %q:\n%s", strings.Join(extra, " "), want, stderr.String())
			}
		}
		if strings.Contains(stderr.String(), "spool ready") {
			t.Errorf("spool serve %s said it was ready:\n%s", strings.Join(extra, " "), stderr.String())
		}
	}
}
