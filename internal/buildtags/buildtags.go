// Package buildtags reads the build tags of the spool binary from the
// Makefile, for the tests and benchmarks that build or inspect spool as
// `make build` does.
package buildtags

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
)

var gotags = regexp.MustCompile(`(?m)^GOTAGS :?= *(\S+)\s*$`)

// FromMakefile returns the GOTAGS the Makefile in dir sets.
func FromMakefile(dir string) (string, error) {
	path := filepath.Join(dir, "Makefile")
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	m := gotags.FindSubmatch(b)
	if m == nil {
		return "", fmt.Errorf("%s sets no GOTAGS", path)
	}
	return string(m[1]), nil
}
