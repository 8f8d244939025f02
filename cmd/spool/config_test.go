package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spoolhq/spool/internal/app"
	"github.com/spoolhq/spool/internal/auth"
	"github.com/spoolhq/spool/internal/auth/oidctest"
	"github.com/spoolhq/spool/internal/ratelimit"
	"github.com/spoolhq/spool/internal/reqlog"
	"github.com/spoolhq/spool/internal/storage/gcs/gcstest"
	"github.com/spoolhq/spool/internal/storage/localfs"
	"github.com/spoolhq/spool/internal/upload"
)

// env returns a getenv over the given variables only.
func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

// normalized lower-cases s and turns dashes and underscores into spaces,
// so "-chunk-size" and "chunk size" compare alike.
func normalized(s string) string {
	return strings.NewReplacer("-", " ", "_", " ").Replace(strings.ToLower(s))
}

const goodSecret = "0123456789abcdef0123456789abcdef-config"

func TestServeConfigFlagsWinOverEnv(t *testing.T) {
	getenv := env(
		"SPOOL_CHUNK_SIZE", "16MiB",
		"SPOOL_ADDR", "0.0.0.0:9000",
		"SPOOL_QUOTA", "2GiB",
		"SPOOL_SESSION_TTL", "2h",
		"SPOOL_ALLOWED_ORIGINS", "http://a.example/, http://b.example,, HTTPS://App.Example:443, http://[::1]:80, http://localhost:5173",
		"SPOOL_PUBLIC_URL", "https://env.example/",
		"SPOOL_JWT_SECRET", "  "+goodSecret+"\n",
		"SPOOL_GC_HEADROOM", "32MiB",
	)
	cfg, proc, err := serveConfig([]string{"--chunk-size", "8MiB", "--addr", "127.0.0.1:0", "--public-url", "https://flag.example/", "--log-level", "debug"},
		getenv, io.Discard)
	if err != nil {
		t.Fatalf("serveConfig: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"chunk size (flag over env)", cfg.Upload.ChunkSize, 8 * upload.MiB},
		{"addr (flag over env)", cfg.Addr, "127.0.0.1:0"},
		{"public URL (flag over env, no trailing slash)", cfg.PublicURL, "https://flag.example"},
		{"quota (env)", cfg.Upload.DefaultQuota, 2 * upload.GiB},
		{"session TTL (env)", cfg.Upload.SessionTTL, 2 * time.Hour},
		{"allowed origins (env, trimmed, spelled as browsers send them)", strings.Join(cfg.AllowedOrigins, " "),
			"http://a.example http://b.example https://app.example http://[::1] http://localhost:5173"},
		{"JWT secret (env, trimmed)", string(cfg.JWTSecret), goodSecret},
		{"log level (flag)", proc.Log.Level.String(), "DEBUG"},
		{"log format (default)", proc.Log.Format, logText},
		{"GC headroom (env)", proc.GCHeadroom, int64(32 * upload.MiB)},
		{"data dir (default)", cfg.DataDir, "data"},
		{"max video size (default)", cfg.Upload.MaxSize[upload.MediaVideo], 5 * upload.GiB},
		{"processing workers (default)", cfg.Jobs.ProcessingWorkers, max(1, runtime.NumCPU()/2)},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestServeConfigErrors(t *testing.T) {
	cases := []struct {
		name   string
		args   []string
		getenv func(string) string
		want   string // what the error must name, compared after normalized
	}{
		{"chunk size below 5 MiB", []string{"--chunk-size", "1MiB"}, env(), "chunk size"},
		{"chunk size below 5 MiB from env", nil, env("SPOOL_CHUNK_SIZE", "1MiB"), "chunk size"},
		{"chunk size not a multiple of 256 KiB", []string{"--chunk-size", "5242881"}, env(), "chunk size"},
		{"quota not a size", []string{"--quota", "abc"}, env(), "quota"},
		{"quota not a size from env", nil, env("SPOOL_QUOTA", "abc"), "spool quota"},
		{"negative quota", []string{"--quota", "-1"}, env(), "quota"},
		{"fractional size", []string{"--max-image-size", "1.5GiB"}, env(), "max image size"},
		{"zero max size", nil, env("SPOOL_MAX_IMAGE_SIZE", "0B"), "size"},
		{"inline image limit over 100 MiB", []string{"--max-inline-image-size", "200MiB"}, env(), "max inline image size"},
		{"inline image limit not a size", nil, env("SPOOL_MAX_INLINE_IMAGE_SIZE", "big"), "spool max inline image size"},
		{"unknown flag", []string{"--bogus", "1"}, env(), "bogus"},
		{"unexpected argument", []string{"extra"}, env(), "extra"},
		{"short JWT secret", nil, env("SPOOL_JWT_SECRET", "short"), "spool jwt secret"},
		{"public URL without scheme", []string{"--public-url", "spool.example.com"}, env(), "public url"},
		{"public URL without scheme from env", nil, env("SPOOL_PUBLIC_URL", "ftp://spool.example.com"), "public url"},
		{"public URL without a host", []string{"--public-url", "https://"}, env(), "public url"},
		{"public URL with a query", []string{"--public-url", "https://spool.example.com/x?y=1"}, env(), "public url"},
		{"public URL with an empty query", []string{"--public-url", "https://spool.example.com?"}, env(), "public url"},
		{"public URL with a fragment", nil, env("SPOOL_PUBLIC_URL", "https://spool.example.com/#top"), "public url"},
		{"public URL with a user", []string{"--public-url", "https://me:pw@spool.example.com"}, env(), "public url"},
		{"public URL with a space", []string{"--public-url", "https://spool example.com"}, env(), "public url"},
		{"sweep interval too short", []string{"--sweep-interval", "10ms"}, env(), "sweep interval"},
		{"chunk URL lifetime too short", []string{"--chunk-url-ttl", "500ms"}, env(), "lifetime"},
		{"bad duration", nil, env("SPOOL_SESSION_TTL", "forever"), "spool session ttl"},
		{"bad log level", []string{"--log-level", "loud"}, env(), "log level"},
		{"bad log format", []string{"--log-format", "xml"}, env(), "log format"},
		{"log format in capitals", []string{"--log-format", "JSON"}, env(), "log format"},
		{"bad log format from env", nil, env("SPOOL_LOG_FORMAT", "logfmt"), "spool log format"},
		{"too many batch files", []string{"--max-batch-files", "5000"}, env(), "max batch files"},
		{"no subscriptions", []string{"--max-subscriptions", "0"}, env(), "max subscriptions"},
		{"subscriptions not a number", nil, env("SPOOL_MAX_SUBSCRIPTIONS", "many"), "spool max subscriptions"},
		{"empty data dir", []string{"--data-dir", ""}, env(), "data dir"},
		{"direct without GCS", []string{"--storage-direct"}, env(), "storage direct"},
		{"disk reserve with GCS", []string{"--disk-reserve", "1GiB"}, env("STORAGE_URL", "gs://b/p"), "disk reserve"},
		{"disk reserve from env with GCS", []string{"--storage-url", "gs://b/p"}, env("SPOOL_DISK_RESERVE", "0"), "spool disk reserve"},
		{"database URL not a URL", nil, env("DATABASE_URL", "localhost"), "database url"},
		{"zero batch files", []string{"--max-batch-files", "0"}, env(), "max batch files"},
		{"zero quota from env", nil, env("SPOOL_QUOTA", "0"), "quota"},
		{"zero chunk URLs", []string{"--max-chunk-urls", "0"}, env(), "max chunk urls"},
		{"zero session lifetime", []string{"--session-ttl", "0s"}, env(), "session ttl"},
		{"zero processing workers", []string{"--processing-workers", "0"}, env(), "processing workers"},
		{"negative processing workers", nil, env("SPOOL_PROCESSING_WORKERS", "-2"), "processing workers"},
		{"absurd processing workers", []string{"--processing-workers", "100000"}, env(), "processing workers"},
		{"processing workers not a number", nil, env("SPOOL_PROCESSING_WORKERS", "lots"), "spool processing workers"},
		{"zero job timeout", []string{"--job-timeout", "0s"}, env(), "job timeout"},
		{"rescue before the job timeout", []string{"--job-timeout", "10m", "--job-rescue-after", "5m"}, env(), "job rescue after"},
		{"negative shutdown timeout", nil, env("SPOOL_JOB_SHUTDOWN_TIMEOUT", "-1s"), "job shutdown timeout"},
		{"zero processing timeout", []string{"--processing-timeout", "0s"}, env(), "processing timeout"},
		{"zero orphan interval", []string{"--orphan-interval", "0s"}, env(), "orphan interval"},
		{"negative orphan age", nil, env("SPOOL_ORPHAN_AGE", "-1h"), "orphan age"},
		{"media processing not a bool", nil, env("SPOOL_MEDIA_PROCESSING", "sometimes"), "media processing"},
		{"negative image pixels", nil, env("SPOOL_MAX_IMAGE_PIXELS", "-1"), "max image pixels"},
		{"image pixels not a number", []string{"--max-image-pixels", "100MP"}, env(), "max image pixels"},
		{"ffmpeg that is not there", []string{"--ffmpeg", "/nonexistent/ffmpeg"}, env(), "ffmpeg"},
		{"ffprobe that is not there", nil, env("SPOOL_FFPROBE", "/nonexistent/ffprobe"), "ffprobe"},
		{"work dir that is not there", []string{"--work-dir", "/nonexistent/spool-work"}, env(), "work dir"},
		{"debug addr without a port", []string{"--debug-addr", "127.0.0.1"}, env(), "debug addr"},
		{"debug addr port not a number", nil, env("SPOOL_DEBUG_ADDR", "127.0.0.1:pprof"), "debug addr"},
		{"debug addr port out of range", []string{"--debug-addr", "127.0.0.1:70000"}, env(), "debug addr"},
		{"debug addr on every interface", []string{"--debug-addr", ":6060"}, env(), "debug addr"},
		{"debug addr not loopback", []string{"--debug-addr", "0.0.0.0:6060"}, env(), "debug addr"},
		{"debug addr a host name", nil, env("SPOOL_DEBUG_ADDR", "spool.example.com:6060"), "debug addr"},
		{"negative drain grace", []string{"--drain-grace", "-1s"}, env(), "drain grace"},
		{"drain grace not a duration", nil, env("SPOOL_DRAIN_GRACE", "5"), "spool drain grace"},
		{"zero shutdown timeout", []string{"--shutdown-timeout", "0s"}, env(), "shutdown timeout"},
		{"negative shutdown timeout from env", nil, env("SPOOL_SHUTDOWN_TIMEOUT", "-30s"), "shutdown timeout"},
		{"shutdown timeout not a duration", []string{"--shutdown-timeout", "soon"}, env(), "shutdown timeout"},
		{"zero mutation rate", []string{"--rate-mutations", "0/s"}, env(), "rate mutations"},
		{"negative mutation rate", nil, env("SPOOL_RATE_MUTATIONS", "-5/s"), "spool rate mutations"},
		{"mutation rate without a period", []string{"--rate-mutations", "20"}, env(), "rate mutations"},
		{"mutation rate with an unknown unit", []string{"--rate-mutations", "20/fortnight"}, env(), "rate mutations"},
		{"mutation rate with a zero period", []string{"--rate-mutations", "20/0s"}, env(), "rate mutations"},
		{"mutation rate not a number", []string{"--rate-mutations", "lots/s"}, env(), "rate mutations"},
		{"fractional chunk rate", []string{"--rate-chunks", "2.5/s"}, env(), "rate chunks"},
		{"chunk rate faster than a nanosecond", []string{"--rate-chunks", "2000/1us"}, env(), "rate chunks"},
		{"negative chunk rate period", nil, env("SPOOL_RATE_CHUNKS", "5/-1s"), "spool rate chunks"},
		{"zero mutation burst", []string{"--rate-mutations-burst", "0"}, env(), "rate mutations burst"},
		{"negative chunk burst", nil, env("SPOOL_RATE_CHUNKS_BURST", "-1"), "rate chunks burst"},
		{"chunk burst not a number", []string{"--rate-chunks-burst", "many"}, env(), "rate chunks burst"},
		{"zero parallel chunks", []string{"--max-parallel-chunks-per-upload", "0"}, env(), "max parallel chunks per upload"},
		{"negative parallel chunks", nil, env("SPOOL_MAX_PARALLEL_CHUNKS_PER_UPLOAD", "-1"), "max parallel chunks per upload"},
		{"zero websockets per user", []string{"--max-websockets-per-user", "0"}, env(), "max websockets per user"},
		{"websockets per user not a number", nil, env("SPOOL_MAX_WEBSOCKETS_PER_USER", "ten"), "spool max websockets per user"},
		{"zero body idle timeout", []string{"--body-idle-timeout", "0s"}, env(), "body idle timeout"},
		{"negative body idle timeout", nil, env("SPOOL_BODY_IDLE_TIMEOUT", "-30s"), "body idle timeout"},
		{"body idle timeout not a duration", []string{"--body-idle-timeout", "30"}, env(), "body idle timeout"},
		{"zero header timeout", []string{"--read-header-timeout", "0s"}, env(), "read header timeout"},
		{"negative idle timeout", []string{"--idle-timeout", "-1m"}, env(), "idle timeout"},
		{"metrics addr without a port", []string{"--metrics-addr", "127.0.0.1"}, env(), "metrics addr"},
		{"metrics addr port not a number", nil, env("SPOOL_METRICS_ADDR", "0.0.0.0:prom"), "metrics addr"},
		{"metrics addr port out of range", []string{"--metrics-addr", ":65536"}, env(), "metrics addr"},
		{"metrics addr negative port", []string{"--metrics-addr", "127.0.0.1:-1"}, env(), "metrics addr"},
		{"metrics addr a URL", []string{"--metrics-addr", "http://127.0.0.1:9090/metrics"}, env(), "metrics addr"},
		{"metrics addr the API's", []string{"--addr", "127.0.0.1:8080", "--metrics-addr", "127.0.0.1:8080"}, env(), "metrics addr"},
		{"metrics addr the profiles'", []string{"--debug-addr", "127.0.0.1:6060", "--metrics-addr", "127.0.0.1:6060"}, env(), "metrics addr"},
		{"GC headroom not a size", []string{"--gc-headroom", "plenty"}, env(), "gc headroom"},
		{"negative GC headroom", nil, env("SPOOL_GC_HEADROOM", "-16MiB"), "spool gc headroom"},
		{"GC headroom a fraction", []string{"--gc-headroom", "1.5GiB"}, env(), "gc headroom"},
		{"GC headroom too large", []string{"--gc-headroom", "5GiB"}, env(), "gc headroom"},
		{"disk reserve not a size", []string{"--disk-reserve", "plenty"}, env(), "disk reserve"},
		{"negative disk reserve", nil, env("SPOOL_DISK_RESERVE", "-1GiB"), "spool disk reserve"},
		{"disk reserve over half the disk", []string{"--disk-reserve", "60%"}, env(), "disk reserve"},
		{"negative disk reserve percentage", []string{"--disk-reserve", "-1%"}, env(), "disk reserve"},
		{"disk reserve percentage not a number", []string{"--disk-reserve", "NaN%"}, env(), "disk reserve"},
		{"disk reserve a bare percent sign", []string{"--disk-reserve", "%"}, env(), "disk reserve"},
		{"GOGC not a number", nil, env("GOGC", "lots"), "gogc"},
		{"GOGC a fraction", nil, env("GOGC", "1.5"), "gogc"},
		{"GOGC past an int32", nil, env("GOGC", "99999999999"), "gogc"},
		{"allowed origin without a scheme", []string{"--allowed-origins", "app.example.com"}, env(), "allowed origins"},
		{"allowed origin a page's URL", nil, env("SPOOL_ALLOWED_ORIGINS", "https://app.example.com/upload"), "allowed origins"},
		{"allowed origin of another scheme", []string{"--allowed-origins", "https://a.example, ftp://b.example"}, env(), "ftp://b.example"},
		{"allowed origin with a user", []string{"--allowed-origins", "https://me@app.example.com"}, env(), "allowed origins"},
		{"allowed origin with a query", []string{"--allowed-origins", "https://app.example.com?x=1"}, env(), "allowed origins"},
		{"allowed origin with an empty port", []string{"--allowed-origins", "https://app.example.com:"}, env(), "allowed origins"},
		{"allowed origin with a bad port", []string{"--allowed-origins", "https://app.example.com:https"}, env(), "allowed origins"},
		{"redis URL of another scheme", []string{"--redis-url", "http://cache:6379"}, env(), "redis url"},
		{"redis URL with an unknown option", nil, env("REDIS_URL", "redis://cache:6379/0?colour=blue"), "colour"},
		{"redis sentinel URL without a primary's name", []string{"--redis-url", "redis://s1:26379?master_name="}, env(), "master name"},
		{"redis sentinel URL with a bad sentinel", nil, env("SPOOL_REDIS_URL", "redis://s1:26379?master_name=cache&addr=s2"), "s2"},
		{"redis CA file that is not there", []string{"--redis-url", "rediss://cache:6380/0", "--redis-ca-file", "/nonexistent/ca.pem"}, env(), "redis ca file"},
		{"redis CA file for a URL without TLS", []string{"--redis-url", "redis://cache:6379/0"}, env("SPOOL_REDIS_CA_FILE", "/etc/hostname"), "rediss"},
		{"redis CA file without a Redis", []string{"--redis-ca-file", "/etc/hostname"}, env(), "redis ca file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := serveConfig(c.args, c.getenv, io.Discard)
			if err == nil {
				t.Fatalf("got no error, want one naming %q", c.want)
			}
			if !strings.Contains(normalized(err.Error()), c.want) {
				t.Errorf("got %q, want it to name %q", err, c.want)
			}
		})
	}
}

// The limits' flags reach app.Config, and their defaults are
// app.DefaultLimits.
func TestServeConfigLimits(t *testing.T) {
	cfg, _, err := serveConfig([]string{"--rate-mutations", "20/s", "--rate-mutations-burst", "40",
		"--rate-chunks", "300/m", "--max-parallel-chunks-per-upload", "8", "--body-idle-timeout", "500ms"},
		env("SPOOL_RATE_CHUNKS_BURST", "7", "SPOOL_MAX_WEBSOCKETS_PER_USER", "3", "SPOOL_IDLE_TIMEOUT", "90s"), io.Discard)
	if err != nil {
		t.Fatalf("serveConfig: %v", err)
	}
	got := cfg.Limits
	want := app.DefaultLimits()
	want.Mutations = ratelimit.Rate{Events: 20, Per: time.Second, Burst: 40}
	want.DataPlane = ratelimit.Rate{Events: 300, Per: time.Minute, Burst: 7}
	want.MaxParallelChunksPerUpload, want.MaxWebsocketsPerUser = 8, 3
	want.BodyIdleTimeout, want.IdleTimeout = 500*time.Millisecond, 90*time.Second
	if got != want {
		t.Errorf("limits: got %+v, want %+v", got, want)
	}
	defaults, proc, err := serveConfig(nil, env(), io.Discard)
	if err != nil {
		t.Fatalf("serveConfig: %v", err)
	}
	if defaults.Limits != app.DefaultLimits() {
		t.Errorf("default limits: got %+v, want %+v", defaults.Limits, app.DefaultLimits())
	}
	if proc.GCHeadroom != 16<<20 {
		t.Errorf("default GC headroom: got %d, want 16 MiB", proc.GCHeadroom)
	}
	if r := (ratelimit.Rate{Events: 5, Per: 10 * time.Second}); (rateFlag{&r}).String() != "5/10s" {
		t.Errorf("a rate flag's text: got %q, want 5/10s", rateFlag{&r}.String())
	}
}

func TestParseByteSize(t *testing.T) {
	good := []struct {
		in   string
		want int64
	}{
		{"8MiB", 8 << 20},
		{"1GiB", 1 << 30},
		{"1073741824", 1 << 30},
		{"512KiB", 512 << 10},
		{"8 MiB", 8 << 20},
		{"8mib", 8 << 20},
		{"8MB", 8 << 20},
		{"1TiB", 1 << 40},
		{"100B", 100},
		{"0", 0},
		{"4194304TiB", 1 << 62}, // the largest accepted
	}
	for _, c := range good {
		got, err := parseByteSize(c.in)
		if err != nil || got != c.want {
			t.Errorf("parseByteSize(%q): got %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	bad := []struct{ in, want string }{
		{"", "not a size"},
		{"abc", "not a size"},
		{"-1", "not a size"},
		{"-1MiB", "not a size"},
		{"1.5GiB", "not a size"},
		{"8XiB", "not a size"},
		{"MiB", "not a size"},
		{"0x10", "not a size"},
		{"99999999999999999999", "not a size"},
		{"4194305TiB", "too large"},
		{"9223372036854775807", "too large"},
		{"8796093022208MiB", "too large"}, // 2^43 MiB = 2^63: would overflow
	}
	for _, c := range bad {
		got, err := parseByteSize(c.in)
		if err == nil {
			t.Errorf("parseByteSize(%q): got %d, want an error", c.in, got)
			continue
		}
		if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.in) {
			t.Errorf("parseByteSize(%q): got %q, want it to quote the input and say %q", c.in, err, c.want)
		}
	}
}

func TestRunToken(t *testing.T) {
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"token", "--user", "bob", "--data-dir", dir}, env(), &out, &errOut); err != nil {
		t.Fatalf("spool token: %v (stderr %q)", err, errOut.String())
	}
	tok := strings.TrimSpace(out.String())
	// The dir had no secret: the token's is new, and stderr says so, once.
	if !strings.Contains(errOut.String(), "made a new secret in "+filepath.Join(dir, app.SecretFile)) {
		t.Errorf("first token of a data dir: stderr %q, want it to say a secret was made", errOut.String())
	}
	errOut.Reset()
	if err := run(context.Background(), []string{"token", "--user", "bob", "--data-dir", dir}, env(), io.Discard, &errOut); err != nil || errOut.Len() > 0 {
		t.Errorf("second token of a data dir: %v, stderr %q; want no error and nothing said", err, errOut.String())
	}

	secret, err := auth.LoadOrCreateSecret(filepath.Join(dir, app.SecretFile))
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := auth.NewIssuer(secret)
	if err != nil {
		t.Fatal(err)
	}
	if sub, err := issuer.Verify(tok); err != nil || sub != "bob" {
		t.Fatalf("verifying the printed token: got %q, %v; want bob", sub, err)
	}

	// A server on the same data dir accepts it.
	cfg := app.DefaultConfig()
	cfg.Addr, cfg.DataDir = "127.0.0.1:0", dir
	m := app.New(cfg, nil)
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if got := whoAmI(t, m.URL(), tok); got != "bob" {
		t.Errorf("server on the same data dir: got user %q, want bob", got)
	}

	// With SPOOL_JWT_SECRET, that secret signs instead of the data dir's.
	out.Reset()
	if err := run(context.Background(), []string{"token", "--user", "carol", "--data-dir", dir}, env("SPOOL_JWT_SECRET", goodSecret), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if _, err := issuer.Verify(strings.TrimSpace(out.String())); err == nil {
		t.Error("a token signed with SPOOL_JWT_SECRET verified with the data dir's secret")
	}
	if got := whoAmI(t, m.URL(), strings.TrimSpace(out.String())); got != "" {
		t.Errorf("server with another secret: got user %q, want the token refused", got)
	}
}

// whoAmI returns the user the server sees for token, or "" if refused.
func whoAmI(t *testing.T, base, token string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/graphql", strings.NewReader(`{"query":"{ me { name } }"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var res struct {
		Data *struct {
			Me struct{ Name string }
		}
		Errors []struct{ Extensions map[string]any }
	}
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		t.Fatal(err)
	}
	if len(res.Errors) > 0 {
		if code := res.Errors[0].Extensions["code"]; code != "UNAUTHENTICATED" {
			t.Errorf("refused token: got code %v, want UNAUTHENTICATED", code)
		}
		return ""
	}
	return res.Data.Me.Name
}

func TestRunErrors(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no command", nil, "no command"},
		{"unknown command", []string{"frobnicate"}, "frobnicate"},
		{"token without user", []string{"token", "--data-dir", t.TempDir()}, "--user"},
		{"token with a bad user", []string{"token", "--user", "a b", "--data-dir", t.TempDir()}, "subject"},
		{"token with an unknown flag", []string{"token", "--user", "bob", "--admin"}, "admin"},
		{"token with a lifetime under a second", []string{"token", "--user", "bob", "--data-dir", t.TempDir(), "--ttl", "500ms"}, "at least 1s"},
		{"token for a data dir that is not there", []string{"token", "--user", "bob", "--data-dir", filepath.Join(t.TempDir(), "data")}, "there is no data dir"},
		{"serve with a bad flag", []string{"serve", "--chunk-size", "1MiB"}, "chunk size"},
	}
	for _, c := range cases {
		var out, errOut bytes.Buffer
		err := run(context.Background(), c.args, env(), &out, &errOut)
		if err == nil {
			t.Errorf("%s: got no error", c.name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %q, want it to mention %q", c.name, err, c.want)
		}
		if out.Len() > 0 {
			t.Errorf("%s: printed %q to stdout on failure", c.name, out.String())
		}
	}
	// The token refused for a missing data dir made nothing there; with
	// SPOOL_JWT_SECRET it needs no data dir at all.
	missing := filepath.Join(t.TempDir(), "data")
	_ = run(context.Background(), []string{"token", "--user", "bob", "--data-dir", missing}, env(), io.Discard, io.Discard)
	if _, err := os.Stat(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a token refused for a missing data dir: stat %s = %v, want it still missing", missing, err)
	}
	var tok bytes.Buffer
	if err := run(context.Background(), []string{"token", "--user", "bob", "--data-dir", missing}, env("SPOOL_JWT_SECRET", goodSecret), &tok, io.Discard); err != nil || tok.Len() == 0 {
		t.Errorf("a token signed with SPOOL_JWT_SECRET, no data dir: %v, %q; want a token", err, tok.String())
	}
	// help is not an error and prints the commands.
	var out bytes.Buffer
	if err := run(context.Background(), []string{"help"}, env(), &out, io.Discard); err != nil || !slices.ContainsFunc([]string{"serve", "token"}, func(s string) bool { return strings.Contains(out.String(), s) }) {
		t.Errorf("help: got %v and %q, want the usage", err, out.String())
	}
}

func TestServeConfigEngineURLs(t *testing.T) {
	cfg, _, err := serveConfig(nil, env("DATABASE_URL", "postgres://a/db", "REDIS_URL", "redis://r:6379/0",
		"STORAGE_URL", "gs://b/p", "SPOOL_REDIS_URL", "redis://spool:6379/1"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DatabaseURL != "postgres://a/db" || cfg.StorageURL != "gs://b/p" {
		t.Errorf("got database %q, storage %q; want them from DATABASE_URL and STORAGE_URL", cfg.DatabaseURL, cfg.StorageURL)
	}
	if got, want := cfg.RedisURL, "redis://spool:6379/1"; got != want {
		t.Errorf("redis URL: got %q, want %q (SPOOL_REDIS_URL wins over REDIS_URL)", got, want)
	}
	cfg, _, err = serveConfig([]string{"--storage-url", "gs://b/p", "--storage-direct"}, env(), io.Discard)
	if err != nil || !cfg.Upload.DirectUploads {
		t.Errorf("--storage-direct with gs://: got %v, direct %v", err, cfg.Upload.DirectUploads)
	}
}

// TestServeConfigFsyncChunks reads --fsync-chunks: off by default, on
// when given.
func TestServeConfigFsyncChunks(t *testing.T) {
	cfg, _, err := serveConfig(nil, env(), io.Discard)
	if err != nil || cfg.FsyncChunks {
		t.Errorf("no flag: got %v, fsync chunks %v; want off", err, cfg.FsyncChunks)
	}
	cfg, _, err = serveConfig([]string{"--fsync-chunks"}, env(), io.Discard)
	if err != nil || !cfg.FsyncChunks {
		t.Errorf("--fsync-chunks: got %v, fsync chunks %v; want on", err, cfg.FsyncChunks)
	}
}

// --disk-reserve takes a size or a percentage of the disk, either in
// place of the default (which is both).
func TestServeConfigDiskReserve(t *testing.T) {
	for _, c := range []struct {
		args   []string
		getenv func(string) string
		want   localfs.Reserve
	}{
		{nil, env(), localfs.DefaultReserve()},
		{[]string{"--disk-reserve", "2%"}, env(), localfs.Reserve{Percent: 2}},
		{[]string{"--disk-reserve", "0.5 %"}, env(), localfs.Reserve{Percent: 0.5}},
		{nil, env("SPOOL_DISK_RESERVE", "1GiB"), localfs.Reserve{Bytes: 1 << 30}},
		{[]string{"--disk-reserve", "0"}, env("SPOOL_DISK_RESERVE", "1GiB"), localfs.Reserve{}},
	} {
		cfg, _, err := serveConfig(c.args, c.getenv, io.Discard)
		if err != nil || cfg.DiskReserve != c.want {
			t.Errorf("%v: got %+v, %v; want %+v", c.args, cfg.DiskReserve, err, c.want)
		}
	}
}

// TestServeConfigGCSSigning reads the GCS signing settings: a service
// account's key file (which also authenticates), or an account to sign as
// through IAM; and --media-urls.
func TestServeConfigGCSSigning(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key.json")
	if err := os.WriteFile(keyFile, gcstest.ServiceAccountKeyJSON(t), 0o600); err != nil {
		t.Fatal(err)
	}
	gs := []string{"--storage-url", "gs://b/p"}

	cfg, _, err := serveConfig(append(gs, "--gcs-credentials-file", keyFile), env(), io.Discard)
	if err != nil {
		t.Fatalf("--gcs-credentials-file: %v", err)
	}
	if s := cfg.GCS.SignedURLs; s == nil || s.GoogleAccessID != gcstest.GoogleAccessID || len(s.PrivateKey) == 0 || s.Insecure {
		t.Errorf("signing with a key file: got %+v, want the key's account and private key, https", s)
	}
	if len(cfg.GCS.CredentialsJSON) == 0 {
		t.Error("a key file does not authenticate the client")
	}
	if cfg.MediaURLs != app.MediaURLsAuto {
		t.Errorf("media URLs: got %q, want auto by default", cfg.MediaURLs)
	}

	cfg, _, err = serveConfig(gs, env("SPOOL_GCS_CREDENTIALS_FILE", keyFile, "STORAGE_EMULATOR_HOST", "127.0.0.1:4443", "SPOOL_MEDIA_URLS", "signed"), io.Discard)
	if err != nil {
		t.Fatalf("SPOOL_GCS_CREDENTIALS_FILE: %v", err)
	}
	if s := cfg.GCS.SignedURLs; s == nil || !s.Insecure || cfg.MediaURLs != app.MediaURLsSigned {
		t.Errorf("key file from env with an http emulator: got signing %+v, media URLs %q; want http:// URLs, signed", s, cfg.MediaURLs)
	}
	cfg, _, err = serveConfig(append(gs, "--gcs-credentials-file", keyFile), env("STORAGE_EMULATOR_HOST", "https://gcs.test"), io.Discard)
	if err != nil || cfg.GCS.SignedURLs.Insecure {
		t.Errorf("an https emulator: got %v, insecure %v; want https:// URLs", err, cfg.GCS.SignedURLs.Insecure)
	}

	const signer = "signer@project.iam.gserviceaccount.com"
	cfg, _, err = serveConfig(append(gs, "--gcs-signer-email", signer, "--media-urls", "proxy"), env(), io.Discard)
	if err != nil {
		t.Fatalf("--gcs-signer-email: %v", err)
	}
	if s := cfg.GCS.SignedURLs; s == nil || s.GoogleAccessID != signer || s.PrivateKey != nil || cfg.GCS.CredentialsJSON != nil {
		t.Errorf("signing as %s: got %+v, want that account with no key (IAM signBlob) and ADC", signer, s)
	}
	if cfg.MediaURLs != app.MediaURLsProxy {
		t.Errorf("--media-urls proxy: got %q", cfg.MediaURLs)
	}
	cfg, _, err = serveConfig(gs, env(), io.Discard)
	if err != nil || cfg.GCS.SignedURLs != nil || cfg.GCS.CredentialsJSON != nil {
		t.Errorf("neither setting: got %v, signing %+v; want the library's own (ADC)", err, cfg.GCS.SignedURLs)
	}

	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name   string
		args   []string
		getenv func(string) string
		want   []string // what the error must name, compared after normalized
	}{
		{"unknown media URL mode", []string{"--media-urls", "cdn"}, env(), []string{"media urls", "cdn", "auto, signed or proxy"}},
		{"unknown media URL mode from env", nil, env("SPOOL_MEDIA_URLS", "Signed"), []string{"spool media urls", "auto, signed or proxy"}},
		{"missing key file", append(gs, "--gcs-credentials-file", filepath.Join(dir, "nope.json")), env(), []string{"gcs credentials file", "no such file"}},
		{"unreadable key file", append(gs, "--gcs-credentials-file", dir), env(), []string{"gcs credentials file", "is a directory"}},
		{"malformed key file", append(gs, "--gcs-credentials-file", write("bad.json", "{client_email: x")), env(), []string{"gcs credentials file", "not a service account's key"}},
		{"a user's credentials", append(gs, "--gcs-credentials-file", write("user.json",
			`{"type": "authorized_user", "client_id": "x", "client_secret": "y", "refresh_token": "z"}`)), env(), []string{"gcs credentials file", "authorized user"}},
		{"a key that cannot sign", append(gs, "--gcs-credentials-file", write("nokey.json",
			`{"type": "service_account", "client_email": "a@p.iam.gserviceaccount.com", "private_key": "not a key"}`)), env(), []string{"gcs credentials file", "cannot sign"}},
		{"invalid signer e-mail", append(gs, "--gcs-signer-email", "spool-signer"), env(), []string{"gcs signer email", "spool signer", "not an e mail"}},
		{"signer e-mail with a name", nil, env("STORAGE_URL", "gs://b/p", "SPOOL_GCS_SIGNER_EMAIL", "Spool <s@p.iam.gserviceaccount.com>"), []string{"gcs signer email", "not an e mail"}},
		{"key file and signer", append(gs, "--gcs-credentials-file", keyFile, "--gcs-signer-email", signer), env(), []string{"gcs credentials file", "gcs signer email", "exclude"}},
		{"key file without GCS", []string{"--gcs-credentials-file", keyFile}, env(), []string{"gcs credentials file", "storage url gs://"}},
		{"signer without GCS", nil, env("SPOOL_GCS_SIGNER_EMAIL", signer, "STORAGE_URL", "file:///tmp/x"), []string{"gcs signer email", "storage url gs://"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := serveConfig(c.args, c.getenv, io.Discard)
			if err == nil {
				t.Fatalf("got no error, want one naming %q", c.want)
			}
			for _, w := range c.want {
				if !strings.Contains(normalized(err.Error()), w) {
					t.Errorf("got %q, want it to name %q", err, w)
				}
			}
		})
	}
}

// The drain's settings default to 5 s of grace and 30 s for requests in
// flight; a zero grace (no load balancer to wait for) is taken.
func TestServeConfigDrain(t *testing.T) {
	cfg, _, err := serveConfig(nil, env(), io.Discard)
	if err != nil {
		t.Fatalf("serveConfig: %v", err)
	}
	if cfg.DrainGrace != 5*time.Second || cfg.ShutdownTimeout != 30*time.Second {
		t.Errorf("defaults: --drain-grace %v, --shutdown-timeout %v; want 5s and 30s", cfg.DrainGrace, cfg.ShutdownTimeout)
	}
	cfg, _, err = serveConfig([]string{"--drain-grace", "0s", "--shutdown-timeout", "2m"}, env(), io.Discard)
	if err != nil {
		t.Fatalf("serveConfig: %v", err)
	}
	if cfg.DrainGrace != 0 || cfg.ShutdownTimeout != 2*time.Minute {
		t.Errorf("got --drain-grace %v, --shutdown-timeout %v; want 0s and 2m0s", cfg.DrainGrace, cfg.ShutdownTimeout)
	}
}

func TestServeConfigDebugAddr(t *testing.T) {
	cfg, _, err := serveConfig(nil, env(), io.Discard)
	if err != nil {
		t.Fatalf("serveConfig: %v", err)
	}
	if cfg.DebugAddr != "" {
		t.Errorf("--debug-addr defaults to %q, want off (empty)", cfg.DebugAddr)
	}
	for _, addr := range []string{"127.0.0.1:6060", "127.0.0.1:0", "[::1]:6060", "localhost:6060"} {
		cfg, _, err := serveConfig([]string{"--debug-addr", addr}, env(), io.Discard)
		if err != nil {
			t.Errorf("--debug-addr %s: %v", addr, err)
		} else if cfg.DebugAddr != addr {
			t.Errorf("--debug-addr %s: got %q", addr, cfg.DebugAddr)
		}
	}
}

func TestServeConfigOIDC(t *testing.T) {
	cfg, _, err := serveConfig([]string{"--oidc-issuer", "https://id.example.com/realms/main", "--oidc-user-claim", "email"},
		env("SPOOL_OIDC_AUDIENCE", "spool-web", "SPOOL_OIDC_CLOCK_SKEW", "30s", "SPOOL_JWKS_URL", "https://id.example.com/keys"), io.Discard)
	if err != nil {
		t.Fatalf("serveConfig: %v", err)
	}
	want := auth.OIDCConfig{Issuer: "https://id.example.com/realms/main", JWKSURL: "https://id.example.com/keys",
		Audience: "spool-web", ClockSkew: 30 * time.Second, UserClaim: "email"}
	if cfg.OIDC != want {
		t.Errorf("got %+v, want %+v", cfg.OIDC, want)
	}
	// Off by default, with the documented defaults.
	cfg, _, err = serveConfig(nil, env(), io.Discard)
	if err != nil {
		t.Fatalf("serveConfig: %v", err)
	}
	if want := (auth.OIDCConfig{ClockSkew: time.Minute, UserClaim: "sub"}); cfg.OIDC != want {
		t.Errorf("defaults: got %+v, want %+v", cfg.OIDC, want)
	}
	// Loopback http is allowed, for tests and sidecars.
	if _, _, err := serveConfig([]string{"--oidc-issuer", "http://127.0.0.1:5556", "--oidc-audience", "a"}, env(), io.Discard); err != nil {
		t.Errorf("loopback http issuer: %v", err)
	}

	aud := []string{"--oidc-audience", "spool-web"}
	iss := func(u string) []string { return append([]string{"--oidc-issuer", u}, aud...) }
	cases := []struct {
		name   string
		args   []string
		getenv func(string) string
		want   []string // what the error must say, each compared after normalized
	}{
		{"issuer over plain http", iss("http://id.example.com"), env(), []string{"oidc issuer", "https"}},
		{"issuer without a scheme", iss("id.example.com"), env(), []string{"oidc issuer", "https"}},
		{"issuer of another scheme", iss("ftp://id.example.com"), env(), []string{"oidc issuer", "https"}},
		{"issuer not a URL", iss("https://id example com"), env(), []string{"oidc issuer"}},
		{"issuer without a host", iss("https:///realms/main"), env(), []string{"oidc issuer", "https"}},
		{"issuer with a query", iss("https://id.example.com/?tenant=1"), env(), []string{"oidc issuer", "query"}},
		{"issuer with a fragment", iss("https://id.example.com/#x"), env(), []string{"oidc issuer", "fragment"}},
		{"issuer with user info", iss("https://me:pw@id.example.com"), env(), []string{"oidc issuer", "user info"}},
		{"issuer from env over http", aud, env("SPOOL_OIDC_ISSUER", "http://10.0.0.1"), []string{"oidc issuer", "https"}},
		{"issuer without audience", []string{"--oidc-issuer", "https://id.example.com"}, env(), []string{"oidc audience", "required"}},
		{"audience with a space", []string{"--oidc-issuer", "https://id.example.com", "--oidc-audience", "spool web"}, env(), []string{"oidc audience"}},
		{"audience with a control character", []string{"--oidc-issuer", "https://id.example.com"}, env("SPOOL_OIDC_AUDIENCE", "spool\x01"), []string{"oidc audience"}},
		{"audience too long", []string{"--oidc-issuer", "https://id.example.com", "--oidc-audience", strings.Repeat("a", 256)}, env(), []string{"oidc audience"}},
		{"audience without issuer", aud, env(), []string{"oidc audience", "issuer"}},
		{"key set URL without issuer", []string{"--jwks-url", "https://id.example.com/keys"}, env(), []string{"jwks url", "issuer"}},
		{"key set URL over plain http", append(iss("https://id.example.com"), "--jwks-url", "http://id.example.com/keys"), env(), []string{"jwks url", "https"}},
		{"negative clock skew", []string{"--oidc-clock-skew", "-1s"}, env(), []string{"oidc clock skew"}},
		{"negative clock skew with an issuer", append(iss("https://id.example.com"), "--oidc-clock-skew", "-1m"), env(), []string{"oidc clock skew"}},
		{"huge clock skew", nil, env("SPOOL_OIDC_CLOCK_SKEW", "24h"), []string{"oidc clock skew"}},
		{"clock skew not a duration", nil, env("SPOOL_OIDC_CLOCK_SKEW", "a bit"), []string{"spool oidc clock skew"}},
		{"empty user claim", append(iss("https://id.example.com"), "--oidc-user-claim", ""), env(), []string{"oidc user claim"}},
		{"user claim that names no user", append(iss("https://id.example.com"), "--oidc-user-claim", "aud"), env(), []string{"oidc user claim"}},
		{"user claim that differs per token", append(iss("https://id.example.com"), "--oidc-user-claim", "jti"), env(), []string{"oidc user claim"}},
		{"user claim with a colon", append(iss("https://id.example.com"), "--oidc-user-claim", "a:b"), env(), []string{"oidc user claim"}},
		{"user claim too long", append(iss("https://id.example.com"), "--oidc-user-claim", strings.Repeat("c", 65)), env(), []string{"oidc user claim"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := serveConfig(c.args, c.getenv, io.Discard)
			if err == nil {
				t.Fatalf("got no error, want one saying %q", c.want)
			}
			for _, w := range c.want {
				if !strings.Contains(normalized(err.Error()), w) {
					t.Errorf("got %q, want it to say %q", err, w)
				}
			}
		})
	}
}

// spool serve refuses to start when its identity provider cannot be
// reached: it would otherwise look healthy and refuse every OIDC user.
func TestServeOIDCProviderUnreachable(t *testing.T) {
	p := oidctest.Start(t)
	p.SetDown(true)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a hang guard: serve blocks if it starts
	defer cancel()
	args := []string{"serve", "--data-dir", t.TempDir(), "--addr", "127.0.0.1:0", "--oidc-issuer", p.Issuer(), "--oidc-audience", oidctest.Audience}
	err := run(ctx, args, env("SPOOL_JWT_SECRET", goodSecret), io.Discard, io.Discard)
	if err == nil || ctx.Err() != nil {
		t.Fatalf("serve with the provider down: got %v (context %v), want it to refuse to start", err, ctx.Err())
	}
	if !strings.Contains(err.Error(), p.Issuer()+"/.well-known/openid-configuration") || !strings.Contains(err.Error(), "503") {
		t.Errorf("got %q, want it to name the discovery URL and what it answered", err)
	}
}

func TestServeConfigMetricsAddr(t *testing.T) {
	cfg, _, err := serveConfig(nil, env(), io.Discard)
	if err != nil {
		t.Fatalf("serveConfig: %v", err)
	}
	if cfg.MetricsAddr != "" {
		t.Errorf("--metrics-addr defaults to %q, want empty (metrics on --addr)", cfg.MetricsAddr)
	}
	for _, addr := range []string{"127.0.0.1:9090", ":9090", "0.0.0.0:9090", "[::]:9090", "spool-metrics.internal:9090", "127.0.0.1:0"} {
		cfg, _, err := serveConfig([]string{"--metrics-addr", addr}, env(), io.Discard)
		if err != nil {
			t.Errorf("--metrics-addr %s: %v", addr, err)
		} else if cfg.MetricsAddr != addr {
			t.Errorf("--metrics-addr %s: got %q", addr, cfg.MetricsAddr)
		}
	}
	cfg, _, err = serveConfig(nil, env("SPOOL_METRICS_ADDR", "127.0.0.1:9091"), io.Discard)
	if err != nil || cfg.MetricsAddr != "127.0.0.1:9091" {
		t.Errorf("SPOOL_METRICS_ADDR: got %q, %v; want 127.0.0.1:9091", cfg.MetricsAddr, err)
	}
}

func TestLogFormatJSON(t *testing.T) {
	_, opts, err := serveConfig([]string{"--log-format", "json"}, env(), io.Discard)
	if err != nil {
		t.Fatalf("serveConfig: %v", err)
	}
	if opts.Log.Format != logJSON {
		t.Fatalf("format = %q, want json", opts.Log.Format)
	}
	_, opts, err = serveConfig(nil, env("SPOOL_LOG_FORMAT", "json"), io.Discard)
	if err != nil || opts.Log.Format != logJSON {
		t.Fatalf("SPOOL_LOG_FORMAT=json: format %q, err %v; want json", opts.Log.Format, err)
	}
	var buf bytes.Buffer
	log := opts.Log.logger(&buf)
	ctx := reqlog.WithRequestID(context.Background(), "req-1")
	reqlog.SetUser(ctx, "user-1")
	log.InfoContext(ctx, "something happened", "n", 3)
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("log line %q is not JSON: %v", buf.String(), err)
	}
	for k, want := range map[string]any{"msg": "something happened", "request_id": "req-1", "user_id": "user-1", "n": 3.0} {
		if line[k] != want {
			t.Errorf("%s = %v, want %v (line %s)", k, line[k], want, buf.String())
		}
	}
}

// A GOGC the runtime takes (a number, or off) is left to pace the
// collector: serve starts with it.
func TestServeConfigTakesGOGC(t *testing.T) {
	for _, v := range []string{"off", "50", "400", "-1"} {
		if _, _, err := serveConfig(nil, env("GOGC", v), io.Discard); err != nil {
			t.Errorf("GOGC=%s: %v", v, err)
		}
	}
}
