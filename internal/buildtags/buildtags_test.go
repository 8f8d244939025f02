package buildtags

import (
	"os"
	"path/filepath"
	"testing"
)

func TestFromMakefile(t *testing.T) {
	got, err := FromMakefile("../..")
	if err != nil || got != "disable_grpc_modules" {
		t.Errorf("the repository's Makefile: %q, %v; want disable_grpc_modules", got, err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Makefile"), []byte("GO := go\n# GOTAGS := no\nbuild:\n\tgo build\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := FromMakefile(dir); err == nil {
		t.Errorf("a Makefile without GOTAGS: %q, no error; want an error", got)
	}
	if got, err := FromMakefile(t.TempDir()); err == nil {
		t.Errorf("no Makefile: %q, no error; want an error", got)
	}
}
