package redisurl

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/spoolhq/spool/internal/eventually"
	"github.com/spoolhq/spool/internal/progress/redis/redistest"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		url   string
		kind  string
		where string
	}{
		{"redis://127.0.0.1:6379/2", "server", "127.0.0.1:6379"},
		{"rediss://user:pw@cache.example:6380/0?dial_timeout=3s", "server", "cache.example:6380"},
		{"unix:///run/redis.sock?db=1", "server", "/run/redis.sock"},
		{"redis://s1:26379/0?master_name=cache", "sentinel", `primary "cache" through sentinels s1:26379`},
		{"redis://sentinel-user:pw@s1:26379?master_name=cache&addr=s2:26379&addr=s3:26379&username=spool&password=pw2&read_timeout=2s",
			"sentinel", `primary "cache" through sentinels s1:26379, s2:26379, s3:26379`},
		{"rediss://s1:26379/3?master_name=cache", "sentinel", `primary "cache" through sentinels s1:26379`},
		{"redis://user:pw@n1:7000?addr=n2:7000&addr=n3:7000&read_timeout=2s", "cluster", "cluster of n1:7000, n2:7000, n3:7000"},
		{"rediss://n1:7000/0?addr=n2:7000", "cluster", "cluster of n1:7000, n2:7000"},
	} {
		u, err := Parse(tc.url, Settings{})
		if err != nil {
			t.Errorf("Parse(%s): %v", tc.url, err)
			continue
		}
		if u.Kind() != tc.kind || u.Where() != tc.where {
			t.Errorf("Parse(%s): Kind() = %q, Where() = %q; want %q, %q", tc.url, u.Kind(), u.Where(), tc.kind, tc.where)
		}
	}
}

// TestParseRefuses: each wrong URL is refused with a message that says
// what is wrong, and neither password is in it.
func TestParseRefuses(t *testing.T) {
	const secret, secret2 = "s3cret-password", "an0ther-s3cret"
	for name, tc := range map[string]struct{ url, says string }{
		"bad port":                {"redis://user:" + secret + "@127.0.0.1:port/0", "port"},
		"bad scheme":              {"http://user:" + secret + "@127.0.0.1:6379/0", "scheme"},
		"bad db":                  {"redis://user:" + secret + "@127.0.0.1:6379/db", "database"},
		"unknown parameter":       {"redis://user:" + secret + "@127.0.0.1:6379/0?colour=blue", "colour"},
		"bad host":                {"redis://user:" + secret + "@[::1/0", "invalid redis URL"},
		"sentinel, empty name":    {"redis://user:" + secret + "@s1:26379/0?master_name=&password=" + secret2, "master_name is empty"},
		"sentinel, unix":          {"unix://user:" + secret + "@/run/sentinel.sock?master_name=cache&password=" + secret2, "not unix://"},
		"sentinel, bad scheme":    {"http://user:" + secret + "@s1:26379/0?master_name=cache&password=" + secret2, "scheme"},
		"sentinel, bad db":        {"redis://user:" + secret + "@s1:26379/zero?master_name=cache&password=" + secret2, "database"},
		"sentinel, bad addr":      {"redis://user:" + secret + "@s1:26379/0?master_name=cache&addr=s2&password=" + secret2, "s2"},
		"sentinel, bad duration":  {"redis://user:" + secret + "@s1:26379/0?master_name=cache&read_timeout=soon&password=" + secret2, "read_timeout"},
		"sentinel, unknown param": {"redis://user:" + secret + "@s1:26379/0?master_name=cache&colour=blue&password=" + secret2, "colour"},
		"cluster, a database":     {"redis://user:" + secret + "@n1:7000/2?addr=n2:7000", "database 0 only"},
		"cluster, unix":           {"unix://user:" + secret + "@/run/redis.sock?addr=n2:7000", "not unix://"},
		"cluster, bad addr":       {"redis://user:" + secret + "@n1:7000?addr=n2", "n2"},
		"cluster, unknown param":  {"redis://user:" + secret + "@n1:7000?addr=n2:7000&db=3", "db"},
		"cluster, bad duration":   {"redis://user:" + secret + "@n1:7000?addr=n2:7000&dial_timeout=soon", "dial_timeout"},
	} {
		_, err := Parse(tc.url, Settings{})
		if err == nil {
			t.Errorf("%s: Parse = nil error, want one", name)
			continue
		}
		msg := err.Error()
		if strings.Contains(msg, secret) || strings.Contains(msg, secret2) {
			t.Errorf("%s: the error reveals a password: %v", name, err)
		}
		if !strings.Contains(msg, tc.says) {
			t.Errorf("%s: error %q does not say %q", name, msg, tc.says)
		}
	}
}

// TestTuning: what a caller tunes reaches the client, for one server, a
// primary found through sentinels and a cluster alike.
func TestTuning(t *testing.T) {
	for _, raw := range []string{"redis://127.0.0.1:1/0?read_timeout=7s", "redis://127.0.0.1:1/0?master_name=cache&read_timeout=7s",
		"redis://127.0.0.1:1?addr=127.0.0.1:2&read_timeout=7s"} {
		u, err := Parse(raw, Settings{})
		if err != nil {
			t.Fatal(err)
		}
		c := u.NewClient(Tuning{})
		if o := tuningOf(t, c); o.ContextTimeoutEnabled || o.ReadTimeout != 7*time.Second {
			t.Errorf("%s untuned: ContextTimeoutEnabled %v, ReadTimeout %v; want false and the URL's 7s", raw, o.ContextTimeoutEnabled, o.ReadTimeout)
		}
		_ = c.Close()
		c = u.NewClient(Tuning{ContextTimeout: true, OneTry: 250 * time.Millisecond})
		o := tuningOf(t, c)
		// go-redis keeps "no retries" (-1) as 0 for one server, as -1 for
		// a cluster, and turns a 0 given into 3.
		if !o.ContextTimeoutEnabled || o.MaxRetries > 0 || o.DialerRetries != 1 {
			t.Errorf("%s tuned: ContextTimeoutEnabled %v, MaxRetries %d, DialerRetries %d; want true, none, 1", raw, o.ContextTimeoutEnabled, o.MaxRetries, o.DialerRetries)
		}
		for name, d := range map[string]time.Duration{"dial": o.DialTimeout, "read": o.ReadTimeout, "write": o.WriteTimeout, "pool": o.PoolTimeout} {
			if d != 250*time.Millisecond {
				t.Errorf("%s tuned: %s timeout %v, want 250ms", raw, name, d)
			}
		}
		_ = c.Close()
	}
}

// tuningOf reads the tuned fields of c's options, which a cluster's
// client keeps in a type of its own.
func tuningOf(t *testing.T, c goredis.UniversalClient) goredis.Options {
	t.Helper()
	switch c := c.(type) {
	case *goredis.Client:
		return *c.Options()
	case *goredis.ClusterClient:
		o := c.Options()
		return goredis.Options{ContextTimeoutEnabled: o.ContextTimeoutEnabled, MaxRetries: o.MaxRetries, DialerRetries: o.DialerRetries,
			DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout, PoolTimeout: o.PoolTimeout}
	}
	t.Fatalf("a client of type %T", c)
	return goredis.Options{}
}

// TestSentinelURLFollowsThePrimary: a client of a sentinel URL reaches
// the primary, and after the primary is killed and the sentinel has made
// the replica primary, it writes to the new one; a client of the old
// primary's own address does not.
func TestSentinelURLFollowsThePrimary(t *testing.T) {
	t.Parallel()
	s := redistest.StartSentinels(t)
	u, err := Parse(s.URL(), Settings{})
	if err != nil {
		t.Fatal(err)
	}
	c := u.NewClient(Tuning{ContextTimeout: true})
	t.Cleanup(func() { _ = c.Close() })
	direct, err := Parse("redis://"+s.Primary(t).Addr+"/0", Settings{})
	if err != nil {
		t.Fatal(err)
	}
	d := direct.NewClient(Tuning{ContextTimeout: true})
	t.Cleanup(func() { _ = d.Close() })
	ctx := t.Context()
	if err := c.Set(ctx, "k", "before", 0).Err(); err != nil {
		t.Fatalf("SET through the sentinels: %v", err)
	}
	if got, err := d.Get(ctx, "k").Result(); err != nil || got != "before" {
		t.Fatalf("GET on the primary: %q, %v; want what was set through the sentinels", got, err)
	}

	was := s.Primary(t)
	was.Kill()
	now := s.AwaitFailover(t, was)
	eventually.Holds(t, "a SET through the sentinels reaching the new primary "+now.Addr, func() bool {
		return c.Set(ctx, "k", "after", 0).Err() == nil
	})
	if err := d.Set(ctx, "k", "direct", 0).Err(); err == nil {
		t.Errorf("SET on the killed primary's address succeeded, want an error")
	}
	n := redistest.Client(t, now.Addr)
	if got, err := n.Get(ctx, "k").Result(); err != nil || got != "after" {
		t.Errorf("GET on the new primary: %q, %v; want what was set through the sentinels", got, err)
	}
}

// TestOpenFindsACluster: a URL naming one node of a Redis Cluster is
// opened as the cluster's (as is one naming the node again as an addr
// parameter, without asking), whose client writes keys of every node's
// slots, where a client of the node alone is redirected (MOVED) for most
// of them; and a database other than 0 is refused there.
func TestOpenFindsACluster(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 3, 0)
	ctx := t.Context()
	u, err := Open(ctx, c.URL(), Settings{})
	if err != nil {
		t.Fatalf("Open(%s): %v", c.URL(), err)
	}
	if u.Kind() != "cluster" || u.Where() != "cluster of "+c.Masters[0].Addr {
		t.Errorf("Open(%s): Kind() = %q, Where() = %q; want a cluster of %s", c.URL(), u.Kind(), u.Where(), c.Masters[0].Addr)
	}
	cc := u.NewClient(Tuning{ContextTimeout: true})
	t.Cleanup(func() { _ = cc.Close() })
	alone, err := Parse(c.URL(), Settings{})
	if err != nil {
		t.Fatal(err)
	}
	nc := alone.NewClient(Tuning{ContextTimeout: true})
	t.Cleanup(func() { _ = nc.Close() })
	redirected := 0
	for i := range 30 {
		key := fmt.Sprintf("k%d", i)
		if err := cc.Set(ctx, key, i, 0).Err(); err != nil {
			t.Errorf("SET %s through the cluster's client: %v", key, err)
		}
		if err := nc.Set(ctx, key, i, 0).Err(); err != nil && strings.HasPrefix(err.Error(), "MOVED") {
			redirected++
		}
	}
	if redirected == 0 {
		t.Errorf("a client of one node wrote every key itself: the keys did not spread over the cluster's nodes")
	}
	// What a user refused INFO writes instead (docs/CONFIG.md): the node
	// named again as an addr parameter.
	named := c.URL() + "?addr=" + c.Masters[0].Addr
	if u, err := Parse(named, Settings{}); err != nil || u.Kind() != "cluster" {
		t.Errorf("Parse(%s): %v, %v; want a cluster's URL", named, u, err)
	} else {
		nc := u.NewClient(Tuning{ContextTimeout: true})
		t.Cleanup(func() { _ = nc.Close() })
		for i := range 30 {
			if err := nc.Set(ctx, fmt.Sprintf("k%d", i), i, 0).Err(); err != nil {
				t.Errorf("SET k%d through %s: %v", i, named, err)
			}
		}
	}

	if _, err := Open(ctx, "redis://"+c.Masters[1].Addr+"/2", Settings{}); err == nil || !strings.Contains(err.Error(), "database 0 only") {
		t.Errorf("Open of a cluster node's database 2: %v, want it refused for naming a database other than 0", err)
	}
	if u, err := Open(ctx, redistest.URL(t), Settings{}); err != nil || u.Kind() != "server" {
		t.Errorf("Open of the test Redis: %v, %v; want one server", u, err)
	}
	if _, err := Open(ctx, "redis://:s3cret@"+redistest.FreeAddr(t)+"/0", Settings{}); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("Open of a Redis nobody listens for: %v, want an error without the password", err)
	}
}

// TestOpenWhereINFOIsRefused: a user whose ACL refuses INFO (as some
// managed services' users are) opens a one-server URL as one server's,
// where asking whether it is a cluster's must not stop spool's start.
func TestOpenWhereINFOIsRefused(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	admin := redistest.Client(t, srv.Addr)
	if err := admin.Do(t.Context(), "ACL", "SETUSER", "limited", "on", ">pw", "~*", "&*", "+@all", "-info").Err(); err != nil {
		t.Fatalf("ACL SETUSER: %v", err)
	}
	u, err := Open(t.Context(), "redis://limited:pw@"+srv.Addr+"/0", Settings{})
	if err != nil || u.Kind() != "server" {
		t.Fatalf("Open as a user refused INFO: %v, %v; want one server", u, err)
	}
	c := u.NewClient(Tuning{ContextTimeout: true})
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Set(t.Context(), "k", "v", 0).Err(); err != nil {
		t.Errorf("SET as that user: %v", err)
	}
	if _, err := Open(t.Context(), "redis://limited:wr0ng-pw@"+srv.Addr+"/0", Settings{}); err == nil || strings.Contains(err.Error(), "wr0ng-pw") {
		t.Errorf("Open with a wrong password: %v, want an error without the password", err)
	}
}

// TestLogTo: what go-redis logs (here a dial that failed) reaches the
// logger given, as a line of its format. Not parallel: go-redis has one
// logger for the process.
func TestLogTo(t *testing.T) {
	var mu sync.Mutex
	var buf bytes.Buffer
	LogTo(slog.New(slog.NewJSONHandler(lockedWriter{&mu, &buf}, nil)))
	t.Cleanup(func() { LogTo(slog.New(slog.NewTextHandler(os.Stderr, nil))) })
	u, err := Parse("redis://"+redistest.FreeAddr(t)+"/0", Settings{})
	if err != nil {
		t.Fatal(err)
	}
	c := u.NewClient(Tuning{OneTry: time.Second})
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Ping(t.Context()).Err(); err == nil {
		t.Fatal("PING of a Redis nobody listens for: no error")
	}
	mu.Lock()
	defer mu.Unlock()
	var line struct{ Level, Msg, Component string }
	if err := json.Unmarshal(bytes.TrimSpace(bytes.SplitN(buf.Bytes(), []byte("\n"), 2)[0]), &line); err != nil {
		t.Fatalf("go-redis's log %q is not the logger's JSON: %v", buf.String(), err)
	}
	if line.Level != "INFO" || line.Component != "go-redis" || !strings.Contains(line.Msg, "dial") {
		t.Errorf("go-redis's log line: %+v, want an INFO of component go-redis about the dial", line)
	}
}

// lockedWriter serialises writes to w: go-redis logs from its goroutines.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestCAFile: a rediss:// server whose certificate a private authority
// signed is reached with that authority's file, and refused without it
// or with another's; a CA file that cannot be read, holds no certificate,
// is too big, or comes with a URL without TLS is refused before any
// connection.
func TestCAFile(t *testing.T) {
	t.Parallel()
	srv, certs := redistest.StartTLSServer(t)
	raw := "rediss://" + srv.Addr + "/0"
	t.Run("server", func(t *testing.T) {
		t.Parallel()
		reachedOverTLS(t, raw, "server", certs.CAFile)
	})
	t.Run("sentinel", func(t *testing.T) {
		t.Parallel()
		s, certs := redistest.StartTLSSentinels(t)
		reachedOverTLS(t, s.URL(), "sentinel", certs.CAFile)
	})
	t.Run("cluster", func(t *testing.T) {
		t.Parallel()
		c, certs := redistest.StartTLSCluster(t, 3, 0)
		u := reachedOverTLS(t, c.URL(), "cluster", certs.CAFile)
		client := u.NewClient(Tuning{ContextTimeout: true})
		t.Cleanup(func() { _ = client.Close() })
		for i := range 30 { // keys of every node's slots
			if err := client.Set(t.Context(), fmt.Sprintf("k%d", i), "v", 0).Err(); err != nil {
				t.Errorf("SET k%d on the cluster over TLS: %v", i, err)
			}
		}
	})

	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	huge := filepath.Join(t.TempDir(), "huge.pem")
	if err := os.WriteFile(huge, nil, 0o600); err != nil || os.Truncate(huge, maxCAFile+1) != nil {
		t.Fatalf("making a file over %d bytes: %v", maxCAFile, err)
	}
	for name, tc := range map[string]struct{ url, file, says string }{
		"a file that is not there": {raw, filepath.Join(t.TempDir(), "missing.pem"), "no such file"},
		"a file too big":           {raw, huge, "is over 4 MiB"},
		"an endless file":          {raw, "/dev/zero", "is over 4 MiB"},
		"a file of no certificate": {raw, garbage, "holds no PEM certificate"},
		"a URL without TLS":        {"redis://" + srv.Addr + "/0", certs.CAFile, "does not use TLS"},
	} {
		if _, err := Parse(tc.url, Settings{CAFile: tc.file}); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: Parse = %v, want an error saying %q", name, err, tc.says)
		}
	}
}

// TestSwitchedTo: only a well-formed announcement of the watched
// primary's move counts.
func TestSwitchedTo(t *testing.T) {
	for _, tc := range []struct {
		payload, want string
		ok            bool
	}{
		{"cache 10.0.0.1 6379 10.0.0.2 6380", "10.0.0.2:6380", true},
		{"cache 10.0.0.1 6379 fd00::2 6380", "[fd00::2]:6380", true},
		{"other 10.0.0.1 6379 10.0.0.2 6380", "", false}, // another primary's
		{"cache 10.0.0.1 6379 10.0.0.2", "", false},      // too short
		{"cache 10.0.0.1 6379 10.0.0.2 6380 x", "", false},
		{"", "", false},
	} {
		if got, ok := switchedTo(tc.payload, "cache"); got != tc.want || ok != tc.ok {
			t.Errorf("switchedTo(%q) = %q, %v; want %q, %v", tc.payload, got, ok, tc.want, tc.ok)
		}
	}
}

// TestWatchPrimaryFindsSentinels: a URL naming one of three sentinels
// is enough for the watch: it learns the others from that one, and once
// that one is gone, it hears of a failover from another.
func TestWatchPrimaryFindsSentinels(t *testing.T) {
	t.Parallel()
	s := redistest.StartManySentinels(t, 3)
	u, err := Parse(s.URL(), Settings{})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var log, moved bytes.Buffer
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		handler := slog.NewJSONHandler(lockedWriter{&mu, &log}, &slog.HandlerOptions{Level: slog.LevelDebug})
		u.WatchPrimary(ctx, slog.New(handler), func(addr string) {
			mu.Lock()
			defer mu.Unlock()
			moved.WriteString(addr + "\n")
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	holds := func(what string, cond func(log, moved string) bool) {
		t.Helper()
		eventually.Holds(t, what, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return cond(log.String(), moved.String())
		})
	}
	holds("the watch knowing the three sentinels", func(log, _ string) bool {
		return strings.Contains(log, s.Sentinel[1].Addr) && strings.Contains(log, s.Sentinel[2].Addr)
	})
	s.Sentinel[0].Kill()
	second, _ := s.FailOver(t)
	holds("the watch reporting "+second.Addr+" primary, its URL's sentinel gone", func(_, moved string) bool {
		return moved == second.Addr+"\n"
	})
}

// reachedOverTLS checks that rawURL, of a Redis whose certificates the
// authority of caFile signed, opens as kind with that file and takes a
// SET, and is refused over its certificate with the system's authorities
// or another's; it returns the URL opened with the file.
func reachedOverTLS(t *testing.T, rawURL, kind, caFile string) *URL {
	t.Helper()
	ctx := t.Context()
	set := func(s Settings) (*URL, error) {
		u, err := Open(ctx, rawURL, s)
		if err != nil {
			return nil, err
		}
		c := u.NewClient(Tuning{ContextTimeout: true, OneTry: 5 * time.Second})
		defer c.Close()
		return u, c.Set(ctx, "k", "v", 0).Err()
	}
	u, err := set(Settings{CAFile: caFile})
	if err != nil {
		t.Fatalf("SET on %s with its CA file: %v", rawURL, err)
	}
	if u.Kind() != kind {
		t.Errorf("%s opened as a %s's URL, want a %s's", rawURL, u.Kind(), kind)
	}
	for name, s := range map[string]Settings{"the system's authorities": {}, "another authority": {CAFile: redistest.NewTLS(t).CAFile}} {
		if _, err := set(s); err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("%s trusting %s: %v, want its certificate refused", rawURL, name, err)
		}
	}
	return u
}

// TestWatchPrimary: the watch reports each new primary once, for a
// planned failover and for a primary's death, past a sentinel of the URL
// that is down (logged once, and then the one that answers), over TLS
// with the URL's authority, and returns when its context ends; for a URL
// of one server it returns at once.
func TestWatchPrimary(t *testing.T) {
	t.Parallel()
	s, certs := redistest.StartTLSSentinels(t)
	sentinel, err := url.Parse(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	u, err := Parse(fmt.Sprintf("rediss://%s/0?master_name=%s&addr=%s", redistest.FreeAddr(t), s.Name, sentinel.Host),
		Settings{CAFile: certs.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		moves []string
	)
	movedTo := func(addr string) bool {
		mu.Lock()
		defer mu.Unlock()
		return len(moves) > 0 && moves[len(moves)-1] == addr
	}
	var log bytes.Buffer // read once the watch has returned
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		u.WatchPrimary(ctx, slog.New(slog.NewJSONHandler(&log, nil)), func(addr string) {
			mu.Lock()
			defer mu.Unlock()
			moves = append(moves, addr)
		})
	}()
	t.Cleanup(func() { cancel(); <-done })

	second, _ := s.FailOver(t)
	eventually.Holds(t, "the watch reporting "+second.Addr+" primary after a planned failover", func() bool { return movedTo(second.Addr) })
	second.Kill()
	third := s.AwaitFailover(t, second)
	eventually.Holds(t, "the watch reporting "+third.Addr+" primary after the primary's death", func() bool { return movedTo(third.Addr) })
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("WatchPrimary still running 10 s after its context ended")
	}
	// The sentinel may promote a replica that it then takes for down, and
	// fail over again (a slow machine): each primary it named is a move.
	if len(moves) < 2 || moves[0] != second.Addr || moves[len(moves)-1] != third.Addr {
		t.Errorf("moves reported %q, want %s first and %s last", moves, second.Addr, third.Addr)
	}
	for i, addr := range moves {
		if i > 0 && addr == moves[i-1] {
			t.Errorf("moves reported %q: %s twice in a row, want each new primary once", moves, addr)
		}
		if !slices.ContainsFunc(s.Servers[:], func(srv *redistest.Server) bool { return srv.Addr == addr }) {
			t.Errorf("moves reported %q: %s is none of the servers", moves, addr)
		}
	}
	text := log.String()
	if n := strings.Count(text, "a sentinel failed"); n != 1 {
		t.Errorf("the sentinel that is down logged %d times, want once:\n%s", n, text)
	}
	if !strings.Contains(text, `"sentinel":"`+sentinel.Host+`"`) {
		t.Errorf("the log does not name the sentinel that answered, %s:\n%s", sentinel.Host, text)
	}

	one, err := Parse("redis://127.0.0.1:6379/0", Settings{})
	if err != nil {
		t.Fatal(err)
	}
	one.WatchPrimary(t.Context(), slog.Default(), func(string) { t.Error("a server's URL reported a new primary") })
}
