package jobs

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/spoolhq/spool/internal/upload"
)

// TestRideOut: a job's work is tried again while it fails for an outage
// (the database or storage unreachable), and not for anything else.
func TestRideOut(t *testing.T) {
	down := upload.Unavailable(errors.New("dial tcp: connection refused"))
	storageDown := upload.Errorf(upload.CodeStorageUnavailable, "storage answered 503")
	badFile := upload.Errorf(upload.CodeChecksumMismatch, "the file's SHA-256 is not the one declared")
	cases := []struct {
		name      string
		fails     []error // what the calls return, in order; nil after
		wantCalls int
		wantErr   error
	}{
		{"database back on the third call", []error{down, fmt.Errorf("loading media: %w", down)}, 3, nil},
		{"storage back on the second call", []error{storageDown}, 2, nil},
		{"a problem with the file is not retried", []error{badFile, badFile}, 1, badFile},
		{"success at once", nil, 1, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			calls := 0
			err := rideOut(t.Context(), func() error {
				calls++
				if calls <= len(c.fails) {
					return c.fails[calls-1]
				}
				return nil
			})
			if calls != c.wantCalls || !errors.Is(err, c.wantErr) {
				t.Errorf("%d calls, error %v; want %d calls, error %v", calls, err, c.wantCalls, c.wantErr)
			}
		})
	}

	t.Run("a stop ends the wait", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		calls := 0
		err := rideOut(ctx, func() error {
			calls++
			cancel()
			return down
		})
		if calls != 1 || !errors.Is(err, context.Canceled) {
			t.Errorf("%d calls, error %v; want 1 call, context.Canceled", calls, err)
		}
	})
}
