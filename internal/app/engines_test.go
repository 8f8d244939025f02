package app_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strconv"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/spoolhq/spool/internal/app"
	"github.com/spoolhq/spool/internal/database/dbtest"
	"github.com/spoolhq/spool/internal/storage/gcs"
	"github.com/spoolhq/spool/internal/storage/gcs/gcstest"
)

// sharedEngines are one PostgreSQL database, one Redis key prefix and one
// GCS emulator bucket, all fresh for a test: every replica started with
// them shares its uploads.
type sharedEngines struct {
	databaseURL, redisURL, redisPrefix, storageURL string
	gcs                                            gcs.Options
}

// productionEngines provisions them, skipping with a message when
// PostgreSQL or Redis is missing, except in CI (CI=true), where that fails.
func productionEngines(t testing.TB) sharedEngines {
	t.Helper()
	redisURL := testRedisURL(t)
	srv := gcstest.Start(t)
	bucket := srv.CreateBucket(t)
	prefix := make([]byte, 6)
	_, _ = rand.Read(prefix)
	return sharedEngines{
		databaseURL: dbtest.Postgres(t),
		redisURL:    redisURL,
		redisPrefix: "spooltest:" + hex.EncodeToString(prefix) + ":",
		storageURL:  "gs://" + bucket + "/spool",
		gcs: gcs.Options{
			Client:     srv.Client(t),
			SignedURLs: &gcs.SignedURLs{GoogleAccessID: gcstest.GoogleAccessID, PrivateKey: gcstest.SigningKey(t), Insecure: true},
		},
	}
}

// apply points a replica's config at the shared engines.
func (e sharedEngines) apply(c *app.Config) {
	c.DatabaseURL, c.RedisURL, c.RedisPrefix, c.StorageURL, c.GCS = e.databaseURL, e.redisURL, e.redisPrefix, e.storageURL, e.gcs
}

func testRedisURL(t testing.TB) string {
	t.Helper()
	url := os.Getenv("SPOOL_TEST_REDIS_URL")
	if url == "" {
		url = "redis://127.0.0.1:6379/0"
	}
	opts, err := goredis.ParseURL(url)
	if err != nil {
		t.Fatalf("SPOOL_TEST_REDIS_URL: %v", err)
	}
	c := goredis.NewClient(opts)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
			t.Fatalf("Redis at %s does not answer (CI=true: Redis is required): %v", url, err)
		}
		t.Skipf("Redis at %s does not answer, skipping (set SPOOL_TEST_REDIS_URL): %v", url, err)
	}
	return url
}

// engineSets are the engine sets the core end-to-end suite runs on.
var engineSets = []struct {
	name  string
	setup func(t testing.TB) func(*app.Config)
}{
	{"embedded", func(testing.TB) func(*app.Config) { return nil }},
	{"postgres+redis+gcs", func(t testing.TB) func(*app.Config) { return productionEngines(t).apply }},
}
