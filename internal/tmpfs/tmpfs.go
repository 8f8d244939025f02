// Package tmpfs gives tests a small filesystem of their own to fill, so
// that what spool does on a full disk is tested on a real one.
package tmpfs

import (
	"os"
	"strconv"
	"testing"
)

// required fails t where CI=true and skips it elsewhere, saying why no
// filesystem could be had.
func required(t testing.TB, why string) {
	t.Helper()
	if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
		t.Fatalf("%s; CI=true: the test must run", why)
	}
	t.Skip("skipping: " + why)
}
