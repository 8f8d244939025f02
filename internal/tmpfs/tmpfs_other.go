//go:build !linux

package tmpfs

import (
	"testing"

	"github.com/spoolhq/spool/internal/required"
)

// Mount is Linux's alone here: elsewhere the test is skipped, or fails
// where CI=true.
func Mount(t testing.TB, size int64) string {
	t.Helper()
	required.Missing(t, "a tmpfs to fill is mounted on Linux only")
	return ""
}

// Free is Linux's alone here, as Mount is.
func Free(t testing.TB, dir string) int64 {
	t.Helper()
	required.Missing(t, "free space is read on Linux only")
	return 0
}
