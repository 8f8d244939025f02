// Package required decides, for tests, what to do when something a test
// needs is missing from the machine (a service, a tool, root): skip it
// with a message saying what, except in CI (CI=true), which must run
// every test and fails it instead.
package required

import (
	"os"
	"strconv"
	"testing"
)

// Missing skips tb, saying what is missing (format and args), or fails
// it where CI=true.
func Missing(tb testing.TB, format string, args ...any) {
	tb.Helper()
	if InCI() {
		tb.Fatalf(format+" (CI=true: required)", args...)
	}
	tb.Skipf("skipping: "+format+" (CI=true makes this a failure)", args...)
}

// InCI reports whether CI=true (or 1): what tests need must then be there.
func InCI() bool {
	ci, _ := strconv.ParseBool(os.Getenv("CI"))
	return ci
}
