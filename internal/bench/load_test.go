//go:build linux

package bench

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	_ "github.com/jackc/pgx/v5/stdlib"
	goredis "github.com/redis/go-redis/v9"
	"golang.org/x/sys/unix"
)

// The load benchmarks (`make bench-load`) put one `spool serve` under
// scale on this machine: many idle subscriptions (BenchmarkLoadSubscriptions),
// many uploads at once (BenchmarkLoadUploads), and the cost of a chunk as
// the database fills (BenchmarkLoadGrowth). The client is this process.
// They skip unless -load is given, so `make bench` does not run them.
var (
	loadRun      = flag.Bool("load", false, "run the load benchmarks (make bench-load)")
	loadSubs     = flag.Int("load-subs", 10000, "websocket connections, one myUploads subscription each (BenchmarkLoadSubscriptions)")
	loadEvents   = flag.Int("load-events", 3, "events fanned out to every subscriber, one after another (BenchmarkLoadSubscriptions)")
	loadBare     = flag.Bool("load-no-subscription", false, "open the websockets without subscribing (how much is the connection's; no events)")
	loadProfiles = flag.String("load-profiles", "", "directory for the server's heap and goroutine profiles at full subscription load (default: none kept)")
)

func skipUnlessLoad(b *testing.B) {
	b.Helper()
	if !*loadRun {
		b.Skip("load benchmark: run `make bench-load` (go test -bench Load … -args -load)")
	}
}

// loadUser is the user of the load benchmarks: not "bench", so that a
// data-plane benchmark sharing the same Redis never hears their events.
const loadUser = "load"

// startLoadSpool is startSpool for user, with a pprof listener
// (--debug-addr) and any extra flags; it returns the server and the
// listener's base URL.
func startLoadSpool(ctx context.Context, tb testing.TB, bin, dataDir, user string, extra ...string) (*spoolServer, string) {
	tb.Helper()
	tokenCmd := exec.CommandContext(ctx, bin, "token", "--user", user, "--data-dir", dataDir)
	tokenCmd.Env = cleanEnv()
	out, err := tokenCmd.Output()
	if err != nil {
		tb.Fatalf("spool token: %v", err)
	}
	addr, debug := freeAddr(tb), freeAddr(tb)
	args := append(append([]string{"serve", "--addr", addr, "--data-dir", dataDir, "--debug-addr", debug, "--drain-grace", "0s"}, spoolFlags...), extra...)
	s := &spoolServer{
		process: start(tb, "spool", bin, io.Discard, args...),
		url:     "http://" + addr,
		dataDir: dataDir,
		token:   strings.TrimSpace(string(out)),
	}
	s.waitHealthy(ctx, tb)
	return s, "http://" + debug
}

// procStatus reads a "Name:   N kB" line of /proc/PID/status, in bytes.
func (p *process) procStatus(tb testing.TB, name string) int64 {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		p.fail(tb, "reading %s: %v", name, err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, name+":"); ok {
			kib, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				p.fail(tb, "parsing %q: %v", line, err)
			}
			return kib << 10
		}
	}
	p.fail(tb, "no %s in /proc/%d/status", name, p.cmd.Process.Pid)
	return 0
}

// goMemory is what the server's runtime says of its memory, from the
// heap profile's text form (which runs a GC first, gc=1).
type goMemory struct {
	heapInuse, stackInuse, sys int64
	goroutines                 int
}

func readGoMemory(ctx context.Context, tb testing.TB, debugURL string) goMemory {
	tb.Helper()
	var m goMemory
	// A collection shrinks a goroutine's stack by half at most, and only
	// one that uses less than a quarter of it: a few collections first
	// show the stacks a long-running server settles at (an idle one
	// collects at least every 2 minutes).
	for range 3 {
		fetchText(ctx, tb, debugURL+"/debug/pprof/heap?gc=1")
	}
	heap := fetchText(ctx, tb, debugURL+"/debug/pprof/heap?gc=1&debug=1")
	for line := range strings.SplitSeq(heap, "\n") {
		var a, b int64
		switch {
		case strings.HasPrefix(line, "# HeapInuse = "):
			fmt.Sscanf(line, "# HeapInuse = %d", &m.heapInuse)
		case strings.HasPrefix(line, "# Stack = "):
			fmt.Sscanf(line, "# Stack = %d / %d", &a, &b)
			m.stackInuse = a
		case strings.HasPrefix(line, "# Sys = "):
			fmt.Sscanf(line, "# Sys = %d", &m.sys)
		}
	}
	g := fetchText(ctx, tb, debugURL+"/debug/pprof/goroutine?debug=1")
	fmt.Sscanf(g, "goroutine profile: total %d", &m.goroutines)
	return m
}

func fetchText(ctx context.Context, tb testing.TB, url string) string {
	tb.Helper()
	b, err := fetch(ctx, url)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

func fetch(ctx context.Context, url string) ([]byte, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return b, err
}

// saveProfiles keeps the server's heap profile (binary, for go tool
// pprof) and goroutine profile (text, grouped by stack) under dir.
func saveProfiles(ctx context.Context, tb testing.TB, debugURL, dir, label string) {
	tb.Helper()
	if dir == "" {
		return
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		tb.Fatal(err)
	}
	for name, path := range map[string]string{
		label + "-heap.pb.gz":      "/debug/pprof/heap?gc=1",
		label + "-goroutines.txt":  "/debug/pprof/goroutine?debug=1",
		label + "-heap.txt":        "/debug/pprof/heap?gc=1&debug=1",
		label + "-allocs.pb.gz":    "/debug/pprof/allocs",
		label + "-goroutine.pb.gz": "/debug/pprof/goroutine",
	} {
		b, err := fetch(ctx, debugURL+path)
		if err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o640); err != nil {
			tb.Fatal(err)
		}
	}
	fmt.Printf("  profiles: %s/%s-*\n", dir, label)
}

// wsMsg is a graphql-transport-ws message.
type wsMsg struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// dialSubscription opens a graphql-transport-ws connection as token,
// starts query as subscription "1" and returns once its first message
// (the snapshot) has arrived, which proves the server has registered it.
func dialSubscription(ctx context.Context, d *websocket.Dialer, base, token, query string, vars map[string]any) (*websocket.Conn, wsMsg, error) {
	conn, _, err := d.DialContext(ctx, strings.Replace(base, "http", "ws", 1)+"/graphql", nil)
	if err != nil {
		return nil, wsMsg{}, err
	}
	fail := func(err error) (*websocket.Conn, wsMsg, error) {
		conn.Close()
		return nil, wsMsg{}, err
	}
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if err := conn.WriteJSON(map[string]any{"type": "connection_init", "payload": map[string]any{"Authorization": "Bearer " + token}}); err != nil {
		return fail(err)
	}
	if m, err := readWS(conn); err != nil || m.Type != "connection_ack" {
		return fail(fmt.Errorf("want connection_ack, got %+v (%v)", m, err))
	}
	if query == "" {
		_ = conn.SetReadDeadline(time.Time{})
		return conn, wsMsg{}, nil
	}
	payload := map[string]any{"query": query}
	if vars != nil {
		payload["variables"] = vars
	}
	if err := conn.WriteJSON(map[string]any{"id": "1", "type": "subscribe", "payload": payload}); err != nil {
		return fail(err)
	}
	for {
		m, err := readWS(conn)
		if err != nil {
			return fail(err)
		}
		switch m.Type {
		case "next":
			_ = conn.SetReadDeadline(time.Time{})
			return conn, m, nil
		case "ping":
			if err := conn.WriteJSON(map[string]any{"type": "pong"}); err != nil {
				return fail(err)
			}
		case "error", "complete":
			return fail(fmt.Errorf("subscription refused: %+v", m))
		}
	}
}

func readWS(conn *websocket.Conn) (wsMsg, error) {
	var m wsMsg
	_, b, err := conn.ReadMessage()
	if err == nil {
		err = json.Unmarshal(b, &m)
	}
	return m, err
}

// percentiles returns the p50, p99 and maximum of ds (sorted in place).
func percentiles(ds []time.Duration) (p50, p99, top time.Duration) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	slices.Sort(ds)
	return ds[len(ds)/2], ds[min(len(ds)-1, len(ds)*99/100)], ds[len(ds)-1]
}

// BenchmarkLoadSubscriptions opens -load-subs websockets
// (graphql-transport-ws) to one spool serve, each running one myUploads
// subscription of the same user, so that every event goes to all of them
// through one topic (the widest fan-out). It reports the server's memory
// per subscription (RSS with them all minus RSS before, and what Go's
// runtime accounts for), the goroutines per subscription, and how long
// one event (an initBatch by that user) takes to reach every subscriber:
// from the moment the mutation is sent to each subscriber's message.
func BenchmarkLoadSubscriptions(b *testing.B) {
	skipUnlessLoad(b)
	if *loadSubs < 1 {
		b.Fatalf("-load-subs must be at least 1")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := b.TempDir()
	bin := buildBinary(b, mkdir(b, dir, "bin"), "./cmd/spool")
	s, debug := startLoadSpool(ctx, b, bin, mkdir(b, dir, "spool"), loadUser)
	client := newClient()

	// One unfinished upload, so that each subscription's snapshot has an
	// event in it: its arrival says the subscription is registered.
	if _, err := initPlain(ctx, client, s, "pending.mp4", 16*mib); err != nil {
		s.fail(b, "%v", err)
	}
	query := `subscription { myUploads { uploadId status percent uploadedChunks } }`
	dialer := &websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}, HandshakeTimeout: 30 * time.Second}
	// Warm-up: one subscription opened and closed, so that "before" has
	// paid for the code paths a first subscription pages in.
	if conn, _, err := dialSubscription(ctx, dialer, s.url, s.token, query, nil); err != nil {
		s.fail(b, "warm-up subscription: %v", err)
	} else {
		conn.Close()
	}
	time.Sleep(500 * time.Millisecond)
	before := readGoMemory(ctx, b, debug)
	rssBefore := s.procStatus(b, "VmRSS")

	if *loadBare {
		query = ""
	}
	n := *loadSubs
	subs := make([]*loadSubscriber, n)
	began := time.Now()
	var dialErrs atomic.Int64
	var firstErr atomic.Value
	work := make(chan int)
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for i := range work {
				conn, _, err := dialSubscription(ctx, dialer, s.url, s.token, query, nil)
				if err != nil {
					dialErrs.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				subs[i] = newLoadSubscriber(conn)
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	if e := dialErrs.Load(); e > 0 {
		s.fail(b, "%d of %d subscriptions failed; first: %v", e, n, firstErr.Load())
	}
	opened := time.Since(began)
	time.Sleep(2 * time.Second) // let the last subscriptions settle
	full := readGoMemory(ctx, b, debug)
	rssFull := s.procStatus(b, "VmRSS")
	saveProfiles(ctx, b, debug, *loadProfiles, fmt.Sprintf("subs-%d", n))

	fmt.Printf("\n%d websocket connections (graphql-transport-ws), one myUploads subscription each, all of user %q; opened in %v\n",
		n, loadUser, opened.Round(time.Millisecond))
	perSub := func(after, before int64) float64 { return float64(after-before) / float64(n) / 1024 }
	fmt.Printf("  server RSS        %7.1f MiB → %7.1f MiB: %5.1f KiB per subscription\n",
		mibOf(rssBefore), mibOf(rssFull), perSub(rssFull, rssBefore))
	fmt.Printf("  Go heap in use    %7.1f MiB → %7.1f MiB: %5.1f KiB per subscription\n",
		mibOf(before.heapInuse), mibOf(full.heapInuse), perSub(full.heapInuse, before.heapInuse))
	fmt.Printf("  goroutine stacks  %7.1f MiB → %7.1f MiB: %5.1f KiB per subscription\n",
		mibOf(before.stackInuse), mibOf(full.stackInuse), perSub(full.stackInuse, before.stackInuse))
	fmt.Printf("  goroutines        %7d     → %7d    : %5.2f per subscription\n",
		before.goroutines, full.goroutines, float64(full.goroutines-before.goroutines)/float64(n))
	b.ReportMetric(perSub(rssFull, rssBefore), "RSS-KiB/sub")
	b.ReportMetric(perSub(full.heapInuse+full.stackInuse, before.heapInuse+before.stackInuse), "heap+stack-KiB/sub")
	b.ReportMetric(float64(full.goroutines-before.goroutines)/float64(n), "goroutines/sub")

	// Events: each initBatch by the user reaches every subscriber.
	var lasts, p50s, p99s []time.Duration
	for e := range *loadEvents {
		if query == "" {
			break
		}
		for _, sub := range subs {
			sub.arrived.Store(0)
		}
		name := fmt.Sprintf("event-%d-%d.mp4", e, time.Now().UnixNano())
		sent := time.Now()
		id, err := initPlain(ctx, client, s, name, 16*mib)
		answered := time.Since(sent)
		if err != nil {
			s.fail(b, "%v", err)
		}
		// A subscriber's message may come before the mutation's answer;
		// expect finds it among the messages read meanwhile.
		for _, sub := range subs {
			sub.expect(id)
		}
		deadline := time.Now().Add(30 * time.Second)
		var lat []time.Duration
		for {
			lat = lat[:0]
			for _, sub := range subs {
				if at := sub.arrived.Load(); at != 0 {
					lat = append(lat, time.Duration(at-sent.UnixNano()))
				}
			}
			if len(lat) == n || time.Now().After(deadline) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		if len(lat) < n {
			s.fail(b, "event %d reached %d of %d subscribers in 30 s", e, len(lat), n)
		}
		p50, p99, last := percentiles(lat)
		fmt.Printf("  event %d (initBatch, answered in %v): every subscriber after %v; per subscriber p50 %v, p99 %v\n",
			e+1, answered.Round(time.Millisecond), last.Round(time.Millisecond), p50.Round(time.Millisecond), p99.Round(time.Millisecond))
		lasts, p50s, p99s = append(lasts, last), append(p50s, p50), append(p99s, p99)
		time.Sleep(time.Second)
	}
	if len(lasts) > 0 {
		_, _, worstLast := percentiles(lasts)
		b.ReportMetric(msOf(worstLast), "event-to-all-max-ms")
		b.ReportMetric(msOf(slices.Max(p99s)), "event-p99-max-ms")
		b.ReportMetric(msOf(slices.Max(p50s)), "event-p50-max-ms")
	}

	// Closing every connection must leave the server as it was.
	closed := time.Now()
	for _, sub := range subs {
		sub.conn.Close()
	}
	var after goMemory
	for {
		after = readGoMemory(ctx, b, debug)
		if after.goroutines <= before.goroutines+20 || time.Since(closed) > 30*time.Second {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	fmt.Printf("  all closed: %d goroutines after %v (%d before the subscriptions)\n",
		after.goroutines, time.Since(closed).Round(time.Millisecond), before.goroutines)
	b.ReportMetric(0, "ns/op")
}

// loadSubscriber is one client websocket of BenchmarkLoadSubscriptions: a
// goroutine reads it, answers pings, and notes when the message naming
// the awaited upload arrives.
type loadSubscriber struct {
	conn    *websocket.Conn
	arrived atomic.Int64 // UnixNano of the awaited event's arrival; 0 until then

	mu     sync.Mutex
	await  string      // the upload id whose event is awaited
	recent []recentMsg // messages read that did not match, newest last
}

type recentMsg struct {
	at  int64
	msg []byte
}

func newLoadSubscriber(conn *websocket.Conn) *loadSubscriber {
	s := &loadSubscriber{conn: conn}
	go s.read()
	return s
}

func (s *loadSubscriber) read() {
	for {
		_, msg, err := s.conn.ReadMessage()
		if err != nil {
			return
		}
		now := time.Now().UnixNano()
		if bytes.Contains(msg, []byte(`"type":"ping"`)) {
			_ = s.conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"pong"}`))
			continue
		}
		s.mu.Lock()
		if id := s.await; id != "" && bytes.Contains(msg, []byte(id)) {
			s.arrived.CompareAndSwap(0, now)
		} else {
			if len(s.recent) >= 4 {
				s.recent = s.recent[1:]
			}
			s.recent = append(s.recent, recentMsg{at: now, msg: msg})
		}
		s.mu.Unlock()
	}
}

// expect makes id the awaited upload, and records the arrival of its
// event if that was read before id was known.
func (s *loadSubscriber) expect(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.await = id
	for _, r := range s.recent {
		if bytes.Contains(r.msg, []byte(id)) {
			s.arrived.CompareAndSwap(0, r.at)
		}
	}
	s.recent = s.recent[:0]
}

// initPlain starts an upload of a file of size bytes declared without a
// SHA-256 (so that uploads of equal size never resume each other) and
// returns its id.
func initPlain(ctx context.Context, c *http.Client, s *spoolServer, name string, size int64) (string, error) {
	id, _, err := initPlainURLs(ctx, c, s, name, size)
	return id, err
}

// initPlainURLs is initPlain that also returns the chunk URLs spool
// listed.
func initPlainURLs(ctx context.Context, c *http.Client, s *spoolServer, name string, size int64) (string, []chunkURL, error) {
	var init struct {
		InitBatch struct {
			Uploads []struct {
				ID        string     `json:"id"`
				ChunkURLs []chunkURL `json:"chunkUrls"`
			} `json:"uploads"`
		} `json:"initBatch"`
	}
	err := s.graphQL(ctx, c, `mutation($input: InitBatchInput!) {
		initBatch(input: $input) { uploads { id chunkUrls { `+chunkURLFields+` } } } }`,
		map[string]any{"input": map[string]any{"files": []map[string]any{{
			"fileName": name, "size": size, "mimeType": "video/mp4",
		}}}}, &init)
	if err != nil {
		return "", nil, fmt.Errorf("initBatch: %w", err)
	}
	if len(init.InitBatch.Uploads) != 1 {
		return "", nil, fmt.Errorf("initBatch: %d uploads for 1 file", len(init.InitBatch.Uploads))
	}
	return init.InitBatch.Uploads[0].ID, init.InitBatch.Uploads[0].ChunkURLs, nil
}

var (
	loadUploads  = flag.Int("load-uploads", 200, "uploads at once, 64 MiB in 8 MiB chunks each (BenchmarkLoadUploads)")
	loadPostgres = flag.String("load-postgres", "postgres://postgres@127.0.0.1:5432/postgres",
		"PostgreSQL server URL: a scratch database is created on it and dropped (empty: skip the PostgreSQL runs)")
	loadRedis = flag.String("load-redis", "redis://127.0.0.1:6379/0", "Redis URL for the PostgreSQL + Redis runs")
)

// loadUploadSize is each upload of BenchmarkLoadUploads.
const loadUploadSize = 64 * mib

// BenchmarkLoadUploads runs -load-uploads uploads at once through one
// spool serve, each with its own websocket and uploadProgress
// subscription: every upload sends its 8 chunks one after another, all
// uploads at the same time; once every chunk is in, all complete, and
// each subscription must end with COMPLETED and READY. On the embedded
// engines (SQLite, in-process fan-out) and on PostgreSQL + Redis. It
// reports errors, chunk PUT latency, how long after a chunk's answer its
// progress event reached the subscriber, a bare Redis PUBLISH → message
// round trip measured alongside, and spool's CPU and peak RSS. Media
// processing is off (--media-processing=false): completed files only have
// their bytes checked (SHA-256), so processing does not dominate.
func BenchmarkLoadUploads(b *testing.B) {
	skipUnlessLoad(b)
	dir := b.TempDir()
	bin := buildBinary(b, mkdir(b, dir, "bin"), "./cmd/spool")
	if free := freeBytes(b, dir); free < int64(*loadUploads)*loadUploadSize+2*gib {
		b.Skipf("needs %d MiB free under %s; %d MiB free", (int64(*loadUploads)*loadUploadSize+2*gib)/mib, dir, free/mib)
	}
	b.Run("embedded", func(b *testing.B) {
		loadUploadRun(b, bin, mkdir(b, dir, "embedded"), "", "")
	})
	b.Run("postgres+redis", func(b *testing.B) {
		if *loadPostgres == "" {
			b.Skip("no -load-postgres")
		}
		db := scratchDatabase(b, *loadPostgres)
		loadUploadRun(b, bin, mkdir(b, dir, "postgres"), db, *loadRedis)
	})
	b.ReportMetric(0, "ns/op")
}

// loadUpload is one upload of BenchmarkLoadUploads and what its
// subscriber heard.
type loadUpload struct {
	id   string
	puts []chunkPUT
	conn *websocket.Conn

	putTook  []time.Duration
	answered []int64 // UnixNano of each chunk's answer

	mu      sync.Mutex
	heardAt map[int]int64 // uploadedChunks → UnixNano it was first heard
	last    loadProgress  // the last event
	ended   chan error    // the subscription's end: nil for complete
}

type loadProgress struct {
	Status         string  `json:"status"`
	UploadedChunks int     `json:"uploadedChunks"`
	MediaStatus    *string `json:"mediaStatus"`
}

func (u *loadUpload) read() {
	var err error
	defer func() { u.ended <- err }()
	for {
		var m wsMsg
		if m, err = readWS(u.conn); err != nil {
			return
		}
		now := time.Now().UnixNano()
		switch m.Type {
		case "ping":
			_ = u.conn.WriteJSON(map[string]any{"type": "pong"})
		case "next":
			var ev struct {
				Data struct {
					UploadProgress loadProgress `json:"uploadProgress"`
				} `json:"data"`
			}
			if err = json.Unmarshal(m.Payload, &ev); err != nil {
				return
			}
			p := ev.Data.UploadProgress
			u.mu.Lock()
			if _, ok := u.heardAt[p.UploadedChunks]; !ok {
				u.heardAt[p.UploadedChunks] = now
			}
			u.last = p
			u.mu.Unlock()
		case "complete":
			err = nil
			return
		default:
			err = fmt.Errorf("unexpected message %s: %s", m.Type, m.Payload)
			return
		}
	}
}

const uploadProgressQuery = `subscription($id: ID!) { uploadProgress(uploadId: $id) { status uploadedChunks mediaStatus } }`

func loadUploadRun(b *testing.B, bin, dir, databaseURL, redisURL string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	extra := []string{"--media-processing=false", "--quota", "1TiB", "--single-threshold", "1MiB", "--log-level", "error"}
	engines := "embedded (SQLite, in-process fan-out)"
	if databaseURL != "" {
		extra = append(extra, "--database-url", databaseURL, "--redis-url", redisURL)
		engines = "PostgreSQL + Redis"
	}
	touchFreeMemory()
	s, _ := startLoadSpool(ctx, b, bin, dir, loadUser, extra...)
	defer func() {
		s.stop()
		_ = os.RemoveAll(dir) // gigabytes of files
	}()
	client := &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: *loadUploads + 16,
		DisableCompression:  true,
		WriteBufferSize:     256 << 10,
		ReadBufferSize:      64 << 10,
	}}
	data := chunkData()
	dialer := &websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}, HandshakeTimeout: 30 * time.Second}

	// Untimed: every upload planned and its subscription running.
	n := *loadUploads
	ups := make([]*loadUpload, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	for i := range ups {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			id, urls, err := initPlainURLs(ctx, client, s, fmt.Sprintf("load-%d.mp4", i), loadUploadSize)
			if err != nil {
				errs <- err
				return
			}
			if len(urls) != loadUploadSize/chunkSize {
				errs <- fmt.Errorf("initBatch listed %d chunk URLs, want %d", len(urls), loadUploadSize/chunkSize)
				return
			}
			u := &loadUpload{id: id, heardAt: map[int]int64{}, ended: make(chan error, 1)}
			for _, cu := range urls {
				u.puts = append(u.puts, cu.put())
			}
			slices.SortFunc(u.puts, func(a, b chunkPUT) int { return int(a.offset - b.offset) })
			u.answered = make([]int64, len(u.puts))
			if u.conn, _, err = dialSubscription(ctx, dialer, s.url, s.token, uploadProgressQuery, map[string]any{"id": id}); err != nil {
				errs <- err
				return
			}
			go u.read()
			ups[i] = u
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		s.fail(b, "preparing uploads: %v", err)
	}
	defer func() {
		for _, u := range ups {
			u.conn.Close()
		}
	}()

	var bareIdle []time.Duration
	if redisURL != "" {
		bareIdle = redisRoundTrips(ctx, b, redisURL, 300, 0)
	}
	// Timed: every chunk of every upload, the uploads at once.
	cpu0, began := s.cpuTime(b), time.Now()
	var putErrs atomic.Int64
	var firstErr atomic.Value
	bareLoaded := make(chan []time.Duration, 1)
	if redisURL != "" {
		go func() { bareLoaded <- redisRoundTrips(ctx, b, redisURL, 300, 10*time.Millisecond) }()
	}
	for _, u := range ups {
		wg.Go(func() {
			for i, p := range u.puts {
				t0 := time.Now()
				err := sendChunk(ctx, client, p, data[:p.size])
				t1 := time.Now()
				if err != nil {
					putErrs.Add(1)
					firstErr.CompareAndSwap(nil, err)
					return
				}
				u.putTook = append(u.putTook, t1.Sub(t0))
				u.answered[i] = t1.UnixNano()
			}
		})
	}
	wg.Wait()
	putWall, putCPU := time.Since(began), s.cpuTime(b)-cpu0
	if e := putErrs.Load(); e > 0 {
		s.fail(b, "%d uploads failed a chunk; first: %v", e, firstErr.Load())
	}

	// Then every upload completes, and its subscription must end READY.
	cpu1, completing := s.cpuTime(b), time.Now()
	var completeTook []time.Duration
	var mu sync.Mutex
	var endErrs atomic.Int64
	for _, u := range ups {
		wg.Go(func() {
			sem <- struct{}{}
			t0 := time.Now()
			_, err := s.complete(ctx, client, u.id)
			took := time.Since(t0)
			<-sem
			if err == nil {
				select {
				case err = <-u.ended:
				case <-time.After(5 * time.Minute):
					err = fmt.Errorf("upload %s: no end of its subscription", u.id)
				}
			}
			u.mu.Lock()
			last := u.last
			u.mu.Unlock()
			if err == nil && (last.Status != "COMPLETED" || last.MediaStatus == nil || *last.MediaStatus != "READY") {
				err = fmt.Errorf("upload %s ended as %+v", u.id, last)
			}
			if err != nil {
				endErrs.Add(1)
				firstErr.CompareAndSwap(nil, err)
			}
			mu.Lock()
			completeTook = append(completeTook, took)
			mu.Unlock()
		})
	}
	wg.Wait()
	endWall, endCPU := time.Since(completing), s.cpuTime(b)-cpu1
	if e := endErrs.Load(); e > 0 {
		s.fail(b, "%d uploads did not end COMPLETED and READY; first: %v", e, firstErr.Load())
	}
	peak := s.peakRSS(b)

	var puts, lags []time.Duration
	early, missed := 0, 0
	for _, u := range ups {
		puts = append(puts, u.putTook...)
		u.mu.Lock()
		for i, at := range u.answered {
			heard, ok := u.heardAt[i+1]
			switch {
			case !ok:
				missed++ // collapsed into a later event
			case heard < at:
				early++
				lags = append(lags, 0)
			default:
				lags = append(lags, time.Duration(heard-at))
			}
		}
		u.mu.Unlock()
	}
	chunks := len(puts)
	p50, p99, top := percentiles(puts)
	l50, l99, ltop := percentiles(lags)
	c50, c99, _ := percentiles(completeTook)
	fmt.Printf("\n%d uploads at once of %d MiB in %d MiB chunks, one uploadProgress subscriber each, %s, --media-processing=false\n",
		n, loadUploadSize/mib, chunkSize/mib, engines)
	fmt.Printf("  errors: 0 (every chunk answered 2xx, every subscription ended COMPLETED and READY)\n")
	fmt.Printf("  chunks: %d in %v (%.0f MiB/s); server CPU %.1f s (%.2f s/GiB, %.1f ms per chunk)\n",
		chunks, putWall.Round(time.Millisecond), float64(chunks*chunkSize)/mib/putWall.Seconds(),
		putCPU.Seconds(), cpuPerGiB(putCPU, int64(chunks)*chunkSize), msOf(putCPU)/float64(chunks))
	fmt.Printf("  chunk PUT: p50 %v, p99 %v, max %v\n", p50.Round(time.Millisecond), p99.Round(time.Millisecond), top.Round(time.Millisecond))
	fmt.Printf("  chunk answer → its event at the subscriber: p50 %.2f ms, p99 %.2f ms, max %.2f ms (%d events came before the answer, counted as 0; %d collapsed into a later one)\n",
		msOf(l50), msOf(l99), msOf(ltop), early, missed)
	if redisURL != "" {
		_, bi99, _ := percentiles(bareIdle)
		bl := <-bareLoaded
		_, bl99, _ := percentiles(bl)
		bi50, _, _ := percentiles(bareIdle)
		bl50, _, _ := percentiles(bl)
		fmt.Printf("  bare Redis PUBLISH → message: idle p50 %.2f ms, p99 %.2f ms; during the uploads p50 %.2f ms, p99 %.2f ms\n",
			msOf(bi50), msOf(bi99), msOf(bl50), msOf(bl99))
		fmt.Printf("  target 2 × bare p99 + 2 ms: %.2f ms idle, %.2f ms during the uploads; event p99 %.2f ms\n",
			msOf(2*bi99+2*time.Millisecond), msOf(2*bl99+2*time.Millisecond), msOf(l99))
		b.ReportMetric(msOf(bi99), "bare-redis-idle-p99-ms")
		b.ReportMetric(msOf(bl99), "bare-redis-loaded-p99-ms")
	}
	fmt.Printf("  complete ×%d then processing (SHA-256 check) until every subscription ended: %v, server CPU %.1f s; complete p50 %v, p99 %v\n",
		n, endWall.Round(time.Millisecond), endCPU.Seconds(), c50.Round(time.Millisecond), c99.Round(time.Millisecond))
	fmt.Printf("  spool peak RSS %.1f MiB\n", mibOf(peak))
	b.ReportMetric(msOf(p50), "put-p50-ms")
	b.ReportMetric(msOf(p99), "put-p99-ms")
	b.ReportMetric(msOf(l99), "event-lag-p99-ms")
	b.ReportMetric(mibOf(peak), "peak-RSS-MiB")
	b.ReportMetric(putCPU.Seconds(), "put-CPU-s")
}

// redisRoundTrips times PUBLISH → message on url, samples times, a pause
// apart.
func redisRoundTrips(ctx context.Context, tb testing.TB, url string, samples int, pause time.Duration) []time.Duration {
	opts, err := goredis.ParseURL(url)
	if err != nil {
		tb.Fatal(err)
	}
	pub, sub := goredis.NewClient(opts), goredis.NewClient(opts)
	defer pub.Close()
	defer sub.Close()
	ch := fmt.Sprintf("spoolload:%d", time.Now().UnixNano())
	ps := sub.Subscribe(ctx, ch)
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		tb.Fatal(err)
	}
	msgs := ps.Channel()
	var out []time.Duration
	for range samples {
		start := time.Now()
		if err := pub.Publish(ctx, ch, "x").Err(); err != nil {
			tb.Fatal(err)
		}
		<-msgs
		out = append(out, time.Since(start))
		time.Sleep(pause)
	}
	return out
}

// scratchDatabase creates a database on the PostgreSQL server of admin,
// drops it when the benchmark ends, and returns its URL.
func scratchDatabase(tb testing.TB, admin string) string {
	tb.Helper()
	db, err := sql.Open("pgx", admin)
	if err != nil {
		tb.Fatal(err)
	}
	name := fmt.Sprintf("spool_load_%d_%d", os.Getpid(), time.Now().UnixNano()%1e6)
	if _, err := db.Exec("CREATE DATABASE " + name); err != nil {
		db.Close()
		tb.Skipf("no scratch database on %s: %v", admin, err)
	}
	tb.Cleanup(func() {
		if _, err := db.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)"); err != nil {
			tb.Logf("dropping %s: %v", name, err)
		}
		db.Close()
	})
	u, err := url.Parse(admin)
	if err != nil {
		tb.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

var (
	loadRows    = flag.Int("load-rows", 10000, "chunks received into one upload for the many-chunks end of BenchmarkLoadGrowth")
	loadGrowthN = flag.String("load-growth-uploads", "1,10,100,1000", "uploads in the database at which BenchmarkLoadGrowth measures a chunk")
)

// growthChunk is the chunk size of BenchmarkLoadGrowth: the smallest spool
// takes, so that rows are cheap to make.
const growthChunk = 5 * mib

// growthProbe is how many chunks each measurement sends, one at a time.
const growthProbe = 20

// BenchmarkLoadGrowth measures what one chunk costs (PUT latency, server
// CPU) as the database fills: with 1, 10, 100 and 1,000 uploads in it
// (small SINGLE uploads, completed), then in an upload declared with
// 10,000 chunks: with few of them received (what declaring a large upload
// costs), and as its received chunks grow to -load-rows (what each
// received row costs: the staging file's bytes are punched out behind the
// sender, so 10,000 chunks of 5 MiB need no 50 GB of disk). Each
// measurement sends growthProbe 5 MiB chunks one after another; the bytes
// of a chunk cost the same at every point, so growth is the database's.
// It begins once the server is idle: each filled upload's check is a job
// run after its complete, and 900 of them, run during the probe, made a
// chunk look 2-3 times dearer at 1,000 uploads than at 10.
// On the embedded engines and on PostgreSQL (+ Redis).
func BenchmarkLoadGrowth(b *testing.B) {
	skipUnlessLoad(b)
	dir := b.TempDir()
	bin := buildBinary(b, mkdir(b, dir, "bin"), "./cmd/spool")
	b.Run("embedded", func(b *testing.B) {
		loadGrowthRun(b, bin, mkdir(b, dir, "embedded"), "", "")
	})
	b.Run("postgres+redis", func(b *testing.B) {
		if *loadPostgres == "" {
			b.Skip("no -load-postgres")
		}
		loadGrowthRun(b, bin, mkdir(b, dir, "postgres"), scratchDatabase(b, *loadPostgres), *loadRedis)
	})
	b.ReportMetric(0, "ns/op")
}

// growthPoint is one measurement: growthProbe chunks sent one at a time.
type growthPoint struct {
	label  string
	p50    time.Duration
	p99    time.Duration
	cpuPer time.Duration
}

func loadGrowthRun(b *testing.B, bin, dir, databaseURL, redisURL string) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	extra := []string{"--media-processing=false", "--chunk-size", "5MiB", "--max-video-size", "64GiB", "--quota", "1TiB",
		"--single-threshold", "1MiB", "--max-chunk-urls", "100", "--log-level", "error"}
	engines := "embedded (SQLite)"
	if databaseURL != "" {
		extra = append(extra, "--database-url", databaseURL, "--redis-url", redisURL)
		engines = "PostgreSQL + Redis"
	}
	s, _ := startLoadSpool(ctx, b, bin, dir, loadUser, extra...)
	defer func() {
		s.stop()
		_ = os.RemoveAll(dir)
	}()
	client := newClient()
	data := chunkData()
	var points []growthPoint

	// measure sends chunks (indexes of upload id) one at a time.
	measure := func(label, id string, indexes []int) growthPoint {
		puts := make([]chunkPUT, len(indexes))
		for i, ix := range indexes {
			u, err := requestChunkURL(ctx, client, s, id, ix)
			if err != nil {
				s.fail(b, "%v", err)
			}
			puts[i] = u.put()
		}
		var took []time.Duration
		cpu0 := s.cpuTime(b)
		for _, p := range puts {
			t0 := time.Now()
			if err := sendChunk(ctx, client, p, data[:p.size]); err != nil {
				s.fail(b, "%s: %v", label, err)
			}
			took = append(took, time.Since(t0))
		}
		cpu := s.cpuTime(b) - cpu0
		p50, p99, _ := percentiles(took)
		pt := growthPoint{label: label, p50: p50, p99: p99, cpuPer: cpu / time.Duration(len(puts))}
		fmt.Printf("  %-58s chunk PUT p50 %6.2f ms, p99 %6.2f ms; server CPU %5.2f ms per chunk\n",
			label, msOf(pt.p50), msOf(pt.p99), msOf(pt.cpuPer))
		points = append(points, pt)
		return pt
	}
	seq := func(from, n int) []int {
		out := make([]int, n)
		for i := range out {
			out[i] = from + i
		}
		return out
	}
	fmt.Printf("\ncost of a %d MiB chunk as the database grows, %s, --media-processing=false; %d chunks sent one at a time per line\n",
		growthChunk/mib, engines, growthProbe)

	// Uploads in the database.
	stored := 0
	for _, f := range strings.Split(*loadGrowthN, ",") {
		level, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			b.Fatalf("-load-growth-uploads: %v", err)
		}
		if err := fillUploads(ctx, client, s, data, level-1-stored); err != nil {
			s.fail(b, "filling the database: %v", err)
		}
		// Each filled upload's check is a job that runs after its
		// complete; the probe measures a chunk, so it waits for them.
		if level-1 > stored {
			fmt.Printf("  (filled to %d uploads; their checks then took %.1f s of server CPU, before the probe)\n",
				level-1, cpuUntilIdle(b, s.process).Seconds())
		}
		stored = max(stored, level-1)
		id, _, err := initPlainURLs(ctx, client, s, "probe.mp4", growthProbe*growthChunk)
		if err != nil {
			s.fail(b, "%v", err)
		}
		stored++
		measure(fmt.Sprintf("%5d uploads stored, upload of %d chunks", stored, growthProbe), id, seq(0, growthProbe))
	}

	// One upload of 10,000 chunks: first with few received, then filled.
	const declared = 10000
	id, _, err := initPlainURLs(ctx, client, s, "huge.mp4", declared*growthChunk)
	if err != nil {
		s.fail(b, "%v", err)
	}
	measure(fmt.Sprintf("upload of %d chunks, 0 received before", declared), id, seq(0, growthProbe))
	received := growthProbe
	rows := min(*loadRows, declared)
	staged, err := s.stagedFile(int64(declared) * growthChunk)
	if err != nil {
		s.fail(b, "%v", err)
	}
	for _, at := range []int{1000, rows} {
		if at-growthProbe <= received {
			continue
		}
		began, cpu0 := time.Now(), s.cpuTime(b)
		n := at - growthProbe - received
		if err := fillChunks(ctx, client, s, id, seq(received, n), data, staged); err != nil {
			s.fail(b, "filling upload: %v", err)
		}
		fmt.Printf("  (sent chunks %d–%d, 4 at a time, in %v, server CPU %.1f ms per chunk)\n",
			received, received+n-1, time.Since(began).Round(time.Millisecond), msOf(s.cpuTime(b)-cpu0)/float64(n))
		received += n
		measure(fmt.Sprintf("upload of %d chunks, %d received before", declared, received), id, seq(received, growthProbe))
		received += growthProbe
		punchOut(staged)
	}
	for _, pt := range points {
		b.ReportMetric(msOf(pt.p50), strings.Join(strings.Fields(pt.label), "_")+"-p50-ms")
	}
}

// fillUploads stores n small completed uploads (one 64 KiB chunk each).
func fillUploads(ctx context.Context, c *http.Client, s *spoolServer, data []byte, n int) error {
	if n <= 0 {
		return nil
	}
	const size = 64 << 10
	work := make(chan int)
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range work {
				id, urls, err := initPlainURLs(ctx, c, s, fmt.Sprintf("fill-%d-%d.mp4", time.Now().UnixNano(), i), size)
				if err == nil && len(urls) != 1 {
					err = fmt.Errorf("a %d-byte file got %d chunk URLs", size, len(urls))
				}
				if err == nil {
					err = sendChunk(ctx, c, urls[0].put(), data[:size])
				}
				if err == nil {
					_, err = s.complete(ctx, c, id)
				}
				if err != nil {
					errs <- err
					for range work {
					}
					return
				}
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	return <-errs
}

// fillChunks sends the chunks of upload id at indexes, 4 at a time,
// punching the bytes written out of staged (the upload's staging file)
// every 256 chunks so that the disk holds no more than that.
func fillChunks(ctx context.Context, c *http.Client, s *spoolServer, id string, indexes []int, data []byte, staged string) error {
	for len(indexes) > 0 {
		batch := indexes[:min(256, len(indexes))]
		indexes = indexes[len(batch):]
		puts := make([]chunkPUT, len(batch))
		for i, ix := range batch {
			u, err := requestChunkURL(ctx, c, s, id, ix)
			if err != nil {
				return err
			}
			puts[i] = u.put()
		}
		if _, err := sendChunks(ctx, c, puts, 4, data); err != nil {
			return err
		}
		punchOut(staged)
	}
	return nil
}

// punchOut frees the disk blocks of file, which keeps its size; reads of
// it then see zeros. Bytes still cached are dropped with them.
func punchOut(file string) {
	f, err := os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return
	}
	_ = unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, st.Size())
}

// stagedFile finds the staging file of size bytes under spool's file
// store.
func (s *spoolServer) stagedFile(size int64) (string, error) {
	files, err := s.storedFiles()
	if err != nil {
		return "", err
	}
	for _, f := range files {
		if st, err := os.Stat(f); err == nil && st.Size() == size {
			return f, nil
		}
	}
	return "", fmt.Errorf("no staged file of %d bytes among %d stored files", size, len(files))
}

func requestChunkURL(ctx context.Context, c *http.Client, s *spoolServer, id string, index int) (chunkURL, error) {
	var out struct {
		RequestChunkURL chunkURL `json:"requestChunkUrl"`
	}
	err := s.graphQL(ctx, c, `mutation($id: ID!, $i: Int!) { requestChunkUrl(uploadId: $id, chunkIndex: $i) { `+chunkURLFields+` } }`,
		map[string]any{"id": id, "i": index}, &out)
	if err != nil {
		return chunkURL{}, fmt.Errorf("requestChunkUrl %d: %w", index, err)
	}
	return out.RequestChunkURL, nil
}
