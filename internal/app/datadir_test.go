package app_test

import (
	"context"
	"strings"
	"testing"

	"github.com/spoolhq/spool/internal/app"
	"github.com/spoolhq/spool/internal/app/apptest"
	"github.com/spoolhq/spool/internal/database/dbtest"
)

// TestDataDirHasOneServer: a second server on the embedded database of a
// data dir another one is running on is refused at start, saying so, and
// the first goes on serving; once the first has closed, a server starts
// there again. On PostgreSQL the data dir holds only the secret, and two
// servers may share it.
func TestDataDirHasOneServer(t *testing.T) {
	t.Parallel()
	var dir string
	first := startSpool(t, func(c *app.Config) { dir = c.DataDir })
	token := first.token("alice")

	second := app.New(apptest.Config(dir), nil)
	err := second.Run(context.Background())
	if err == nil {
		second.Close()
		t.Fatal("a second server on the data dir started; want it refused")
	}
	if !strings.Contains(err.Error(), "in use by another spool server") || !strings.Contains(err.Error(), dir) {
		t.Errorf("second server: got %q, want it to say the data dir %s is in use", err, dir)
	}
	if got := first.me(token).Name; got != "alice" {
		t.Errorf("the first server after the second was refused: got user %q, want alice", got)
	}

	if err := first.main.Close(); err != nil {
		t.Fatal(err)
	}
	again := app.New(apptest.Config(dir), nil)
	if err := again.Run(context.Background()); err != nil {
		t.Fatalf("a server on the data dir once the first closed: %v", err)
	}
	if err := again.Close(); err != nil {
		t.Error(err)
	}

	// Replicas on PostgreSQL may share a data dir.
	shared := t.TempDir()
	dbURL := dbtest.Postgres(t)
	for i := range 2 {
		cfg := apptest.Config(shared)
		cfg.DatabaseURL = dbURL
		m := app.New(cfg, nil)
		if err := m.Run(context.Background()); err != nil {
			t.Fatalf("server %d on PostgreSQL with a shared data dir: %v", i+1, err)
		}
		t.Cleanup(func() { m.Close() })
	}
}
