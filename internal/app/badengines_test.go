package app_test

import (
	"context"
	"strings"
	"testing"

	"github.com/spoolhq/spool/internal/app"
)

// TestBadEngineSettings: a wrong engine setting stops spool at start with
// an error that names it, rather than failing on the first upload.
func TestBadEngineSettings(t *testing.T) {
	cases := []struct {
		name   string
		change func(*app.Config)
		want   string
	}{
		{"storage scheme", func(c *app.Config) { c.StorageURL = "ftp://host/dir" }, "storage url"},
		{"file URL without a path", func(c *app.Config) { c.StorageURL = "file://" }, "storage url"},
		{"GCS URL without a bucket", func(c *app.Config) { c.StorageURL = "gs:///prefix" }, "gcs"},
		{"database scheme", func(c *app.Config) { c.DatabaseURL = "mysql://root@127.0.0.1/test" }, "mysql"},
		{"database tcp_user_timeout", func(c *app.Config) {
			c.DatabaseURL = "postgres://postgres@127.0.0.1:5432/test?tcp_user_timeout=30s"
		}, "tcp_user_timeout"},
		{"unreachable Redis", func(c *app.Config) { c.RedisURL = "redis://127.0.0.1:1/0" }, "redis"},
		{"malformed Redis URL", func(c *app.Config) { c.RedisURL = "redis://:bad:port:/x" }, "redis"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := smallConfig(t.TempDir())
			tc.change(&cfg)
			m := app.New(cfg, nil)
			err := m.Run(context.Background())
			if err == nil {
				m.Close()
				t.Fatalf("got a running server, want an error naming %q", tc.want)
			}
			if !strings.Contains(strings.ToLower(err.Error()), tc.want) {
				t.Errorf("got %q, want it to name %q", err, tc.want)
			}
		})
	}
}
