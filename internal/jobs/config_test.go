package jobs_test

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"entgo.io/ent/dialect"

	"github.com/spoolhq/spool/internal/jobs"
)

func TestConfigValidate(t *testing.T) {
	bad := []struct {
		name string
		cfg  jobs.Config
		want string
	}{
		{"negative workers", jobs.Config{ProcessingWorkers: -1}, "processing workers"},
		{"absurd workers", jobs.Config{ProcessingWorkers: jobs.MaxProcessingWorkers + 1}, "processing workers"},
		{"negative timeout", jobs.Config{JobTimeout: -time.Second}, "job timeout"},
		{"negative attempts", jobs.Config{MaxAttempts: -1}, "attempts"},
		{"negative lost-fetch delay", jobs.Config{LostFetchAfter: -time.Second}, "lost-fetch delay"},
		{"rescue before the timeout", jobs.Config{JobTimeout: time.Hour, RescueAfter: time.Minute}, "rescue delay"},
		{"rescue equal to the timeout", jobs.Config{JobTimeout: time.Minute, RescueAfter: time.Minute}, "rescue delay"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want an error naming %q", err, tt.want)
			}
			if _, err := jobs.New(nil, dialect.SQLite, tt.cfg, nil); err == nil {
				t.Errorf("New accepted %+v", tt.cfg)
			}
		})
	}
	for _, cfg := range []jobs.Config{{}, jobs.DefaultConfig(), {JobTimeout: 2 * time.Hour}, {ProcessingWorkers: jobs.MaxProcessingWorkers}} {
		if err := cfg.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v, want nil", cfg, err)
		}
	}
	if got, want := jobs.DefaultConfig().ProcessingWorkers, max(1, runtime.NumCPU()/2); got != want {
		t.Errorf("default processing workers = %d, want %d", got, want)
	}
}

func TestNewRefusesOtherDialects(t *testing.T) {
	if _, err := jobs.New(nil, dialect.MySQL, jobs.Config{}, nil); err == nil || !strings.Contains(err.Error(), "mysql") {
		t.Errorf("New on MySQL = %v, want an error naming the dialect", err)
	}
}
