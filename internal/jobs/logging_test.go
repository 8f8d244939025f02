package jobs_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spoolhq/spool/internal/jobs"
)

// records keeps every record a logger handed it at or above its level.
type records struct {
	mu    sync.Mutex
	level slog.Level
	got   []slog.Record
}

func (r *records) Enabled(_ context.Context, l slog.Level) bool { return l >= r.level }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, rec)
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

// levelsOf returns the levels of the records whose message contains msg.
func (r *records) levelsOf(msg string) []slog.Level {
	r.mu.Lock()
	defer r.mu.Unlock()
	var levels []slog.Level
	for _, rec := range r.got {
		if strings.Contains(rec.Message, msg) {
			levels = append(levels, rec.Level)
		}
	}
	return levels
}

// River's narration of its own work ("River client started", job counts)
// is Debug, not Info: at spool's default level an operator does not see
// it; at Debug it is there.
func TestRiverNarratesAtDebug(t *testing.T) {
	for _, level := range []slog.Level{slog.LevelInfo, slog.LevelDebug} {
		db := migratedSQLite(t)
		log := &records{level: level}
		q, err := jobs.New(db.SQL(), db.Dialect, jobs.Config{PollInterval: 20 * time.Millisecond, ManualSweeps: true}, slog.New(log))
		if err != nil {
			t.Fatal(err)
		}
		if err := q.Start(context.Background(), &failingService{calls: map[string]int{}}); err != nil {
			t.Fatal(err)
		}
		if err := q.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		got := log.levelsOf("River client started")
		switch {
		case level == slog.LevelInfo && len(got) != 0:
			t.Errorf("at Info, River's start was logged at %v", got)
		case level == slog.LevelDebug && (len(got) != 1 || got[0] != slog.LevelDebug):
			t.Errorf("at Debug, River's start was logged at %v, want once at DEBUG", got)
		}
	}
}
