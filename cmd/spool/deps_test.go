package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/spoolhq/spool/internal/buildtags"
)

// unwantedDeps are packages the spool binary must not link: the GCS
// emulator belongs to tests, and the gRPC DirectPath modules of
// cloud.google.com/go/storage serve a gRPC client spool does not use. Each
// made the binary tens of MB larger, and a larger binary starts with more
// resident memory (docs/BENCHMARKS.md).
var unwantedDeps = []string{
	"github.com/fsouza/fake-gcs-server/",
	"google.golang.org/grpc/xds",
	"github.com/envoyproxy/",
	"google.golang.org/grpc/balancer/rls",
}

// TestProductionBinaryDeps lists what `make build` links into spool, with
// the Makefile's build tags, and fails on any unwanted package.
func TestProductionBinaryDeps(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list over the whole dependency graph")
	}
	tags := makefileGOTAGS(t)
	out, err := exec.Command("go", "list", "-deps", "-tags", tags, ".").Output()
	if err != nil {
		t.Fatalf("go list -deps -tags %s: %v", tags, err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 100 {
		t.Fatalf("go list -deps printed %d packages; expected spool's whole graph", len(deps))
	}
	for _, dep := range deps {
		for _, bad := range unwantedDeps {
			if strings.HasPrefix(dep, bad) {
				t.Errorf("the spool binary links %s (prefix %q)", dep, bad)
			}
		}
	}
}

// makefileGOTAGS reads GOTAGS from the Makefile, so the test checks the
// binary `make build` makes.
func makefileGOTAGS(t *testing.T) string {
	t.Helper()
	tags, err := buildtags.FromMakefile("../..")
	if err != nil {
		t.Fatal(err)
	}
	return tags
}
