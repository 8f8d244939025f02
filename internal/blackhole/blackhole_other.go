//go:build !linux

package blackhole

import (
	"testing"

	"github.com/spoolhq/spool/internal/required"
)

// Start is Linux's only: elsewhere the test is skipped, or fails where
// CI=true.
func Start(t testing.TB, target string) *Hole {
	t.Helper()
	required.Missing(t, "a network path that drops packets, made only on Linux")
	return nil
}

// Drop is Linux's only.
func (h *Hole) Drop(testing.TB) {}

// Restore is Linux's only.
func (h *Hole) Restore(testing.TB) {}
