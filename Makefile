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

.PHONY: run build test test-go test-web web web-deps check-web generate check-generated lint bench bench-latency bench-rates bench-media bench-load fuzz clean migrations

run: build
	$(BIN) serve --data-dir $(DATA_DIR)

build:
	$(GO) build -tags $(GOTAGS) -o $(BIN) ./cmd/spool

# Every test: Go's, then the Node tests that drive a real spool binary
# with graphql-ws, Apollo Client and urql, and the browser test (skipped,
# saying so, where no Chromium is installed; required when CI is set).
test: test-go test-web

# -race: the upload state machine and the progress fan-out are concurrent
# by nature; every test run doubles as a race check.
test-go:
	$(GO) test -race -count=1 -timeout 20m ./...

test-web: build web-deps
	cd web && SPOOL_BIN=$(CURDIR)/$(BIN) npm test

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

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...
	$(GO) tool staticcheck $$($(GO) list ./... | grep -v -e '/ent$$' -e '/ent/' ) ./ent/schema/

# The data plane against a bare handler, its variants and tusd (about 8
# minutes; more rounds: make bench BENCHARGS='-rounds 9'), then the
# control cost against tusd (bench-rates). Media processing is
# bench-media's. GOFLAGS reaches the benchmark's own `go build` of spool.
BENCHARGS ?=
bench: bench-latency bench-rates
	GOFLAGS=-tags=$(GOTAGS) $(GO) test -run '^$$' -bench DataPlane -benchtime 1x -count 1 -timeout 40m ./internal/bench/ -args $(BENCHARGS)

# Progress latency, in-process vs Redis, against a bare Redis round trip.
bench-latency:
	CI=true $(GO) test -run '^$$' -bench ProgressLatency -benchtime 1x -count 1 ./internal/app/

# Control cost against tusd's, in one run: confirmChunk and 2-byte chunk
# PUTs (each a distinct upload's only chunk) per second and server CPU per
# request, on SQLite and on a scratch PostgreSQL database, against tusd
# v2's 1-byte PATCHes (internal/bench/tusdpeer, a module of its own).
# CI=true: without PostgreSQL it fails rather than skips.
bench-rates:
	CI=true GOFLAGS=-tags=$(GOTAGS) $(GO) test -run '^$$' -bench ControlRates -benchtime 1x -count 1 -timeout 10m ./internal/bench/

# Media processing against standard tools, in one run: thumbnails of a
# 12 MP JPEG against ImageMagick's convert, SHA-256 against sha256sum;
# then a spool serve's data plane with processing kept busy against idle,
# at the default --processing-workers and at one per CPU
# (docs/BENCHMARKS.md). Needs ffmpeg's and ImageMagick's Debian packages.
# GOFLAGS reaches the benchmark's own `go build` of spool.
bench-media:
	GOFLAGS=-tags=$(GOTAGS) $(GO) test -run '^$$' -bench MediaProcessing -benchtime 1x -count 1 -timeout 20m ./internal/bench/

# spool under scale on this machine (docs/BENCHMARKS.md, "Load"): 10,000
# idle subscriptions (memory each, one event to all), 200 uploads at once
# on the embedded engines and on PostgreSQL + Redis, and a chunk's cost as
# the database fills. PostgreSQL and Redis from LOAD_DATABASE_URL and
# LOAD_REDIS_URL (defaults: the local servers; a scratch database is
# created and dropped). The server's profiles at full subscription load
# go to LOAD_PROFILES. GOFLAGS reaches the benchmark's own `go build`.
LOAD_PROFILES ?= $(CURDIR)/bin/load-profiles
bench-load:
	GOFLAGS=-tags=$(GOTAGS) $(GO) test -run '^$$' -bench Load -benchtime 1x -count 1 -timeout 20m ./internal/bench/ \
		-args -load -load-profiles $(LOAD_PROFILES)

# Runs every fuzz target for FUZZTIME each.
FUZZTIME ?= 10s
fuzz:
	@set -e; for pkg in $$($(GO) list ./internal/...); do \
		for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "fuzz $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; done

clean:
	rm -rf bin web/node_modules web/test-results
