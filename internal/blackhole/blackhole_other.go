//go:build !linux

package blackhole

import (
	"errors"
	"net"
	"testing"

	"github.com/spoolhq/spool/internal/required"
)

// Start is Linux's only: elsewhere the test is skipped, or fails where
// CI=true.
func Start(t testing.TB, target string) *Hole {
	t.Helper()
	_, err := TryStart(t, target)
	required.Missing(t, "%v", err)
	return nil
}

// TryStart is Linux's only.
func TryStart(testing.TB, string) (*Hole, error) {
	return nil, errors.New("a network path that drops packets is made only on Linux")
}

// Drop is Linux's only.
func (h *Hole) Drop(testing.TB) {}

// Restore is Linux's only.
func (h *Hole) Restore(testing.TB) {}

// Cut is Linux's only: elsewhere the test is skipped, or fails where
// CI=true.
func Cut(t testing.TB, _, _ *net.TCPAddr) {
	t.Helper()
	required.Missing(t, "dropping a connection's packets is done only on Linux")
}
