# spool's commands. `make run` starts the server on its embedded defaults;
# `make test` runs every test. See README.md.

GO ?= go
DATA_DIR ?= data
BIN := bin/spool
# Build tags of the spool binary. disable_grpc_modules is
# cloud.google.com/go/storage's switch to leave out its gRPC DirectPath
# modules (xDS, envoy, RLS): spool's GCS store uses the JSON API client, and
# those modules made the binary 20 MB larger and its resident code ~7 MiB
# more (docs/BENCHMARKS.md). cmd/spool's TestProductionBinaryDeps checks it.
GOTAGS := disable_grpc_modules

.PHONY: run build test test-go test-race test-web test-faults web web-deps check-web generate check-generated lint vulncheck bench bench-latency bench-rates bench-small bench-tus bench-media bench-media-deps bench-load fuzz fuzz-ci clean migrations

run: build
	$(BIN) serve --data-dir $(DATA_DIR)

build:
	$(GO) build -tags $(GOTAGS) -o $(BIN) ./cmd/spool

# Every test: Go's, and the Node tests that drive a real spool binary
# with graphql-ws, Apollo Client and urql, and the browser test (skipped,
# saying so, where no Chromium is installed; required when CI is set).
# The two side by side (-j2), each leaving the CPU to the other while it
# waits on replicas, databases, websockets and the browser. (-o build:
# the binary is built above, so test-web does not link it again.)
test: build web-deps
	@$(MAKE) --no-print-directory -j2 -o build test-go test-web

# The checks and the tests build the code one way, with GOTAGS as `make
# build` does: vet, staticcheck, the Go tests, the fault suite and the
# binary the web tests start share one compilation of the dependency graph.
# -vet=off: `make lint` runs all of vet's analyzers on that build.
#
# `make test` runs no test under the race detector: `make test-race`
# does, and is for a change to concurrent code (the upload state machine,
# the progress fan-out, storage's locks, the handlers, the job queue).
# The race build is a second compilation of the whole dependency graph,
# which with its slower tests was a third of a cold 2-CPU CI's time
# (docs/BENCHMARKS.md, "CI time: the race detector back out of CI").
test-go:
	$(GO) test -tags $(GOTAGS) -vet=off -count=1 -timeout 20m ./...

test-web: build web-deps
	cd web && SPOOL_BIN=$(CURDIR)/$(BIN) npm test

# Every Go test under the race detector, cmd/spool's replicas too.
# halt_on_error: a race in a spool process a test starts (the
# walk-through and drain tests' replicas) ends it, so the test fails.
test-race:
	GORACE=halt_on_error=1 $(GO) test -race -tags $(GOTAGS) -count=1 -timeout 30m ./...

# The fault suite (cmd/spool/faults_*_test.go, build tag `faults`): two
# spool processes on PostgreSQL, Redis and the GCS emulator, with a
# replica killed, Redis and PostgreSQL cut, PostgreSQL partitioned
# (root: a network namespace), storage failing and slow,
# and a client's connection dropped mid-chunk; see docs/OPERATIONS.md.
# On the tests' build (see test-go). CI=true: without PostgreSQL or
# Redis it fails, never skips.
test-faults:
	CI=true $(GO) test -tags 'faults $(GOTAGS)' -vet=off -count=1 -timeout 10m -run '^TestFaults$$' -v ./cmd/spool/

# The web pages: `make web` rebuilds web/dist (committed, embedded in the
# binary) from web/src after a change there. It fails first when the
# uploader's generated GraphQL types (web/src/uploader/gql) are not what
# the schema and its documents give: run `cd web && npm run codegen`.
web: web-deps
	cd web && npm run build

web-deps: web/node_modules/.package-lock.json

web/node_modules/.package-lock.json: web/package-lock.json web/package.json
	cd web && npm ci --no-audit --no-fund

# Fails when the committed web/dist is not what `make web` builds.
check-web: web
	@git diff --exit-code --stat -- web/dist || \
		{ echo "web/dist is stale: run 'make web' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- web/dist)" || \
		{ git status --porcelain -- web/dist; echo "web/dist has files that are not committed"; exit 1; }

# Regenerates ent's code (and graph/ent.graphqls) then gqlgen's, from the
# module root so gqlgen resolves schema paths the same way every time.
generate:
	$(GO) run -mod=mod ./ent/entc.go
	$(GO) tool gqlgen generate

# Fails when the committed generated code differs from what `generate` makes.
check-generated: generate
	@git diff --exit-code --stat -- ent graph schema.graphqls gqlgen.yml || \
		{ echo "generated code is stale: run 'make generate' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- ent graph)" || \
		{ git status --porcelain -- ent graph; echo "generated files are not committed"; exit 1; }

# Writes the next schema migration of each dialect from ent/schema, after
# `make generate`: `make migrations NAME=what_changed`. It works on a scratch
# SQLite file and a scratch database on the PostgreSQL server of
# SPOOL_TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test).
.PHONY: migrations
migrations:
	@test -n "$(NAME)" || { echo "usage: make migrations NAME=what_changed"; exit 1; }
	$(GO) run ./internal/database/gen_migration.go -name $(NAME)

# vet and staticcheck on the tests' build (see test-go), each
# in one run: the tag faults adds the fault suite's files (cmd/spool's
# only) and changes no other package.
lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet -tags 'faults $(GOTAGS)' ./...
	$(GO) tool staticcheck -tags 'faults $(GOTAGS)' $$($(GO) list ./... | grep -v -e '/ent$$' -e '/ent/' ) ./ent/schema/

# govulncheck against the Go vulnerability database, offline: this
# machine and CI reach the Go module proxy but not vuln.go.dev, so the
# database comes from the golang.org/x/vulndb module, whose data/osv
# holds every report as OSV JSON (<ID>.json). govulncheck reads such a
# directory as it is (-db file://DIR of OSV files; its client indexes
# them in memory), so no index is built: vulndb's own indexer, with
# go-git among its 677 packages, cost CI 165 s of CPU to compile for 4 s
# of work (docs/BENCHMARKS.md, "CI time: govulncheck without an index").
# Both are pinned: VULNDB_VERSION is the database's date; raise it (a
# newer pseudo-version of golang.org/x/vulndb) to see newer reports. It
# fails if the module cannot be had or holds no reports, rather than
# scan against nothing. The standard library counts: go.mod's toolchain
# line (go1.26.10) is what CI builds and scans with; go1.26.8 has 13
# reachable standard-library vulnerabilities.
VULNCHECK_VERSION := v1.9.0
VULNDB_VERSION := v0.0.0-20261105234957-e22db6528018
vulncheck:
	@src=$$($(GO) mod download -json golang.org/x/vulndb@$(VULNDB_VERSION) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p'); \
	test -n "$$src" && test "$$(ls $$src/data/osv 2>/dev/null | grep -c '^GO-.*\.json$$')" -gt 1000 || \
		{ echo "vulncheck: no OSV reports in golang.org/x/vulndb@$(VULNDB_VERSION) (is the Go module proxy reachable?)"; exit 1; }; \
	echo "govulncheck@$(VULNCHECK_VERSION) -db file://$$src/data/osv"; \
	$(GO) run golang.org/x/vuln/cmd/govulncheck@$(VULNCHECK_VERSION) -db file://$$src/data/osv -tags $(GOTAGS) ./...

# The data plane against a bare handler, its variants and tusd (about 8
# minutes; more rounds: make bench BENCHARGS='-rounds 9'; spool's CPU
# profile of every upload's PUTs: BENCHARGS='-dataplane-cpuprofile
# /tmp/prof/p'), then the control cost against tusd (bench-rates). Media
# processing is bench-media's. GOFLAGS reaches the benchmark's own `go
# build` of spool. The rounds begin once the free memory has been written
# to (-touch-memory; up to a minute on a VM whose host has not backed it).
BENCHARGS ?=
bench: bench-latency bench-rates
	GOFLAGS=-tags=$(GOTAGS) $(GO) test -run '^$$' -bench DataPlane -benchtime 1x -count 1 -timeout 40m ./internal/bench/ -args $(BENCHARGS)

# Progress latency, in-process vs Redis, against a bare Redis round trip.
bench-latency:
	CI=true $(GO) test -run '^$$' -bench ProgressLatency -benchtime 1x -count 1 ./internal/app/

# Control cost against tusd's, in one run: confirmChunk and 2-byte chunk
# PUTs (each a distinct upload's only chunk) per second and server CPU per
# request, on SQLite and on a scratch PostgreSQL database, against tusd
# v2's 1-byte PATCHes (internal/bench/tusdpeer, a module of its own), in
# 3 rounds between tusd's windows; the summary gives the medians.
# CI=true: without PostgreSQL it fails rather than skips.
bench-rates:
	CI=true GOFLAGS=-tags=$(GOTAGS) $(GO) test -run '^$$' -bench ControlRates -benchtime 1x -count 1 -timeout 20m ./internal/bench/

# Small files whole, against tusd's, in one run: files per second and
# server CPU per file (spool's counted until its job queue is empty and
# it is idle again, so each file's check is in it) of 10-byte
# and 1 MiB files on SQLite and PostgreSQL, spool's initBatch + PUT +
# complete against tusd's POST + PATCH and one tus POST with the bytes
# against tusd's, in 3 rounds between tusd's windows. Other sizes:
# BENCHARGS='-small-sizes 10,256KiB,4MiB'.
bench-small:
	CI=true GOFLAGS=-tags=$(GOTAGS) $(GO) test -run '^$$' -bench SmallFileRates -benchtime 1x -count 1 -timeout 30m ./internal/bench/ -args $(BENCHARGS)

# spool's tus endpoint (/files/) against tusd's own server and file store
# on the same bytes, in one run: 8 MiB PATCHes, 3 MiB PATCHes (ending
# inside spool's chunks) and four partial uploads joined by a final one
# (docs/BENCHMARKS.md, "tus"). More rounds: BENCHARGS='-tus-rounds 9'.
bench-tus:
	GOFLAGS=-tags=$(GOTAGS) $(GO) test -run '^$$' -bench '^BenchmarkTus$$' -benchtime 1x -count 1 -timeout 30m ./internal/bench/ -args $(BENCHARGS)

# Media processing against standard tools, in one run: thumbnails of a
# 12 MP JPEG against ImageMagick's convert, SHA-256 against sha256sum;
# then a spool serve's data plane with processing kept busy against idle,
# at the default --processing-workers and at one per CPU
# (docs/BENCHMARKS.md). It installs Debian's imagemagick first where no
# ImageMagick is found (apt-get, through sudo unless run as root).
# GOFLAGS reaches the benchmark's own `go build` of spool.
bench-media: bench-media-deps
	GOFLAGS=-tags=$(GOTAGS) $(GO) test -run '^$$' -bench MediaProcessing -benchtime 1x -count 1 -timeout 20m ./internal/bench/

bench-media-deps:
	@command -v convert-im6.q16 >/dev/null 2>&1 || convert -version 2>/dev/null | grep -q ImageMagick || { \
		sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); apt="apt-get -y -q -o DPkg::Lock::Timeout=900"; \
		echo "installing Debian's imagemagick for bench-media"; \
		$$sudo $$apt install --no-install-recommends imagemagick >/dev/null || \
			{ $$sudo $$apt update >/dev/null && $$sudo $$apt install --no-install-recommends imagemagick >/dev/null; }; }

# spool under scale on this machine (docs/BENCHMARKS.md, "Load"): 10,000
# idle subscriptions (memory each, one event to all), 200 uploads at once
# on the embedded engines and on PostgreSQL + Redis, and a chunk's cost as
# the database fills. PostgreSQL and Redis from LOAD_DATABASE_URL and
# LOAD_REDIS_URL (defaults: the local servers; a scratch database is
# created and dropped). The server's profiles at full subscription load
# go to LOAD_PROFILES. GOFLAGS reaches the benchmark's own `go build`.
# Each 200-upload run first writes once to the machine's free memory, so
# that a VM's host backs it outside the measurement (-touch-memory).
LOAD_PROFILES ?= $(CURDIR)/bin/load-profiles
bench-load:
	GOFLAGS=-tags=$(GOTAGS) $(GO) test -run '^$$' -bench Load -benchtime 1x -count 1 -timeout 20m ./internal/bench/ \
		-args -load -load-profiles $(LOAD_PROFILES)

# Runs every fuzz target (each `func Fuzz…` of a _test.go file) for
# FUZZTIME each, one at a time: `go test -fuzz` takes one target.
# `fuzz-ci` is a bounded run for a change to a parser or verifier (8
# targets, about 30 s here once the instrumented packages are in the
# build cache; the first run compiles them, 80 s and 150 CPU-s more).
# CI runs the targets' seed corpora with the tests, not this (.ci/run).
# It fails if it finds no target, so a broken search cannot pass.
FUZZTIME ?= 10s
fuzz:
	@set -e; n=0; \
	for dir in $$(git ls-files '*_test.go' | xargs grep -l '^func Fuzz' | xargs -n1 dirname | sort -u); do \
		for t in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go | cut -c6-); do \
			n=$$((n+1)); echo "fuzz ./$$dir $$t for $(FUZZTIME)"; \
			$(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) ./$$dir; \
		done; done; \
	test $$n -gt 0 || { echo "no fuzz targets found"; exit 1; }; echo "$$n fuzz targets ran"

# A count, not a duration: with -fuzztime as a duration, Go 1.26's fuzz
# coordinator can report its own deadline as a failure ("context deadline
# exceeded", no crasher; golang/go#75804, fixed in Go 1.27), as it did
# once here on FuzzOIDCVerify. 100,000 inputs are 1–7 s per target here.
fuzz-ci:
	$(MAKE) fuzz FUZZTIME=100000x

clean:
	rm -rf bin web/node_modules web/test-results
