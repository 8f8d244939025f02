// Package apptest runs a real spool server in-process for tests (of the
// app end to end, and of spool's clients: internal/client, cmd/spool),
// and makes the files they upload. The server keeps its SQLite database
// and files in a temporary directory and plans small uploads: SINGLE up
// to 1 MiB, CHUNKED above in 5 MiB chunks, so a 12 MiB file has chunks of
// 5, 5 and 2 MiB.
package apptest

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spoolhq/spool/internal/app"
	"github.com/spoolhq/spool/internal/auth"
	"github.com/spoolhq/spool/internal/database"
	"github.com/spoolhq/spool/internal/jobs"
	"github.com/spoolhq/spool/internal/upload"
)

// Secret signs the test servers' tokens and URLs; tests that craft their
// own tokens sign with it too.
const Secret = "apptest-secret-0123456789abcdef0123456"

// Server is a running spool.
type Server struct {
	// URL is the server's base URL.
	URL    string
	Main   *app.Main
	issuer *auth.Issuer
}

// Start runs spool on a free port until the test ends; change, if not
// nil, edits its config first.
func Start(t testing.TB, change func(*app.Config)) *Server {
	t.Helper()
	return StartLogged(t, nil, change)
}

// StartLogged is Start with the server logging to log.
func StartLogged(t testing.TB, log *slog.Logger, change func(*app.Config)) *Server {
	t.Helper()
	cfg := Config(t.TempDir())
	if change != nil {
		change(&cfg)
	}
	if cfg.DatabaseURL == "" {
		// On SQLite River's listener wakes the queue for each job
		// inserted (internal/jobs, sqlitelistener.go): the fetch poll is
		// only a fallback there, and at Config's pace it was a sixth of
		// internal/app's CPU time under -race.
		if cfg.Jobs.PollInterval == testPoll {
			cfg.Jobs.PollInterval = app.DefaultConfig().Jobs.PollInterval
		}
		seedDatabase(t, cfg.DataDir)
	}
	m := app.New(cfg, log)
	if err := m.Run(context.Background()); err != nil {
		t.Fatalf("starting spool: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("closing spool: %v", err)
		}
	})
	issuer, err := auth.NewIssuer([]byte(Secret))
	if err != nil {
		t.Fatal(err)
	}
	return &Server{URL: m.URL(), Main: m, issuer: issuer}
}

// Config is the test servers' config: a free port, dataDir, Secret, and
// small uploads (SINGLE up to 1 MiB, 5 MiB chunks).
func Config(dataDir string) app.Config {
	cfg := app.DefaultConfig()
	cfg.Addr, cfg.DataDir, cfg.JWTSecret = "127.0.0.1:0", dataDir, []byte(Secret)
	cfg.Upload.SingleThreshold = 1 * upload.MiB
	cfg.Upload.ChunkSize = 5 * upload.MiB
	// Idle replicas look for jobs often, so tests wait little for
	// processing (on PostgreSQL; see StartLogged for SQLite).
	cfg.Jobs.PollInterval = testPoll
	// No load balancer waits on a test server's /readyz: closing it
	// need not keep serving first.
	cfg.DrainGrace = 0
	return cfg
}

// testPoll is how often test servers on PostgreSQL look for
// jobs nothing told them of: a retry due sooner than River's scheduler
// runs, or another replica's job inserted within 100 ms of its last
// notification (internal/jobs, localwake.go). Tests that fail storage on
// purpose wait for those retries.
const testPoll = 50 * time.Millisecond

// seedDatabase gives a server on the SQLite file in dataDir a copy of a
// database that spool's and River's migrations have brought up to date,
// unless dataDir has one already (a server started again on it). Migrating
// from nothing is the same work for every server, and under -race it was
// about a fifth of internal/app's CPU time; the server still runs both
// migrations on start, and finds nothing to do.
func seedDatabase(t testing.TB, dataDir string) {
	t.Helper()
	path := filepath.Join(dataDir, database.SQLiteFile)
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		return
	}
	img, err := migratedDatabase()
	if err != nil {
		t.Fatalf("migrating the test servers' database: %v", err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, img, 0o600); err != nil {
		t.Fatal(err)
	}
}

// migratedDatabase returns the bytes of an SQLite database file migrated
// as a server migrates it on start (database.Open, then jobs.Migrate),
// made once per test binary.
var migratedDatabase = sync.OnceValues(func() ([]byte, error) {
	dir, err := os.MkdirTemp("", "apptest-db-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	db, err := database.Open(ctx, "", filepath.Join(dir, database.SQLiteFile))
	if err != nil {
		return nil, err
	}
	defer db.Close()
	if _, err := jobs.Migrate(ctx, db.SQL(), db.Dialect); err != nil {
		return nil, err
	}
	// One self-contained file, whatever is still in the write-ahead log.
	img := filepath.Join(dir, "image.db")
	if _, err := db.SQL().ExecContext(ctx, "VACUUM INTO ?", img); err != nil {
		return nil, err
	}
	return os.ReadFile(img)
})

// Token returns a bearer token for user, valid for an hour.
func (s *Server) Token(t testing.TB, user string) string {
	t.Helper()
	tok, err := s.issuer.Issue(user, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Magic numbers that make random bytes pass the server's type check.
const (
	PNG = "\x89PNG\r\n\x1a\n"
	MP4 = "\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
)

// WriteFile writes size random bytes (seeded, so reproducible) starting
// with magic to dir/name, and returns its path and content.
func WriteFile(t testing.TB, dir, name, magic string, size int, seed uint64) (string, []byte) {
	t.Helper()
	// ChaCha8's Read, not a byte at a time: under -race each byte
	// stored in a loop is an instrumented write (0.12 s a MiB).
	b := make([]byte, size)
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	_, _ = rand.NewChaCha8(key).Read(b) // never fails
	copy(b, magic)
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, b
}

// Get returns the body of a GET of url, failing the test unless it is 200.
func Get(t testing.TB, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: got %d %s, want 200", url, resp.StatusCode, b)
	}
	return b
}
