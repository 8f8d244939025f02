// Package tmpfs gives tests a small filesystem of their own to fill, so
// that what spool does on a full disk is tested on a real one.
package tmpfs

import (
	"os"
	"path/filepath"
	"testing"
)

// FillTo writes a file into dir until its filesystem has about left
// bytes free, as another program would, and returns the file's path.
func FillTo(t testing.TB, dir string, left int64) string {
	t.Helper()
	n := Free(t, dir) - left
	if n <= 0 {
		t.Fatalf("only %d bytes free, want more than %d", Free(t, dir), left)
	}
	path := filepath.Join(dir, "filler")
	if err := os.WriteFile(path, make([]byte, n), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
