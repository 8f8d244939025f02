package app_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spoolhq/spool/internal/app"
	"github.com/spoolhq/spool/internal/database/dbtest"
	"github.com/spoolhq/spool/internal/progress/redis/redistest"
	"github.com/spoolhq/spool/internal/storage/gcs"
	"github.com/spoolhq/spool/internal/storage/gcs/gcstest"
)

// sharedEngines are one PostgreSQL database, one Redis key prefix and one
// GCS emulator bucket, all fresh for a test: every replica started with
// them shares its uploads.
type sharedEngines struct {
	databaseURL, redisURL, redisPrefix, storageURL string
	gcs                                            gcs.Options
	gcsServer                                      *gcstest.Server
}

// productionEngines provisions them, skipping with a message when
// PostgreSQL or Redis is missing, except in CI (CI=true), where that fails.
func productionEngines(t testing.TB) sharedEngines {
	t.Helper()
	redisURL := redistest.URL(t)
	srv := gcstest.Start(t)
	bucket := srv.CreateBucket(t)
	return sharedEngines{
		databaseURL: dbtest.Postgres(t),
		redisURL:    redisURL,
		redisPrefix: redistest.Prefix(t),
		storageURL:  "gs://" + bucket + "/spool",
		gcs: gcs.Options{
			Client:     srv.Client(t),
			SignedURLs: &gcs.SignedURLs{GoogleAccessID: gcstest.GoogleAccessID, PrivateKey: gcstest.SigningKey(t), Insecure: true},
			Sessions:   &gcs.Sessions{HTTPClient: http.DefaultClient, Endpoint: srv.URL},
		},
		gcsServer: srv,
	}
}

// apply points a replica's config at the shared engines.
func (e sharedEngines) apply(c *app.Config) {
	c.DatabaseURL, c.RedisURL, c.RedisPrefix, c.StorageURL, c.GCS = e.databaseURL, e.redisURL, e.redisPrefix, e.storageURL, e.gcs
}

// testRedisURL is redistest.URL under the name latency_bench_test.go
// calls it by.
func testRedisURL(t testing.TB) string {
	t.Helper()
	return redistest.URL(t)
}

// engineSets are the engine sets the core end-to-end suite runs on.
var engineSets = []struct {
	name  string
	setup func(t testing.TB) func(*app.Config)
}{
	{"embedded", func(testing.TB) func(*app.Config) { return nil }},
	{"postgres+redis+gcs", func(t testing.TB) func(*app.Config) { return productionEngines(t).apply }},
}

// A file:// storage URL names an absolute directory, with no host or
// localhost; one with another host (file://data/files is host "data",
// directory /files) stops spool at start instead of storing in /files.
func TestFileStorageURL(t *testing.T) {
	for _, prefix := range []string{"file://", "file://localhost"} {
		dir := filepath.Join(t.TempDir(), "files")
		startSpool(t, func(c *app.Config) { c.StorageURL = prefix + dir })
		if entries, err := os.ReadDir(dir); err != nil || len(entries) == 0 {
			t.Errorf("StorageURL %s%s: the directory holds %v, %v; want the store's layout", prefix, dir, entries, err)
		}
	}
	for _, u := range []string{"file://data/files", "file://example.com/srv/spool"} {
		cfg := smallConfig(t.TempDir())
		cfg.StorageURL = u
		m := app.New(cfg, nil)
		err := m.Run(context.Background())
		if err == nil {
			m.Close()
			t.Fatalf("StorageURL %s: got a running server, want an error", u)
		}
		if !strings.Contains(err.Error(), "storage URL") {
			t.Errorf("StorageURL %s: got %q, want it to name the storage URL", u, err)
		}
	}
}
