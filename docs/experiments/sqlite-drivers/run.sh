#!/usr/bin/env bash
# spool's chunk receipt through three SQLite drivers for Go: modernc's
# (spool's, C translated to Go), mattn's (cgo) and ncruces' (WebAssembly
# under wazero). docs/BENCHMARKS.md, "Issue 10: three SQLite drivers
# for a receipt". main.go says what is timed.
#
#   docs/experiments/sqlite-drivers/run.sh [runs]
#
# It needs a C compiler for mattn's driver (its first build compiles
# SQLite, 1–2 minutes). The databases are copied to $TMPDIR (/dev/shm
# unless set), so the disk is not what is measured.
set -euo pipefail
cd "$(dirname "$0")"
runs=${1:-2}
export TMPDIR=${TMPDIR:-/dev/shm}
repo=$(git rev-parse --show-toplevel)
work=$(mktemp -d)
trap 'rm -rf "$work"; rm -f "$TMPDIR"/sqlitedrivers-*' EXIT

(cd "$repo" && go run -tags disable_grpc_modules ./cmd/spool migrate --data-dir "$work/data" >/dev/null)
go build -o "$work/modernc" .
go build -tags mattn -o "$work/mattn" .
go build -tags ncruces -o "$work/ncruces" .
"$work/modernc" -fill "$work/data/spool.db"

for _ in $(seq "$runs"); do
	"$work/modernc" sqlite "file:%s?_pragma=foreign_keys(1)&_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)" "$work/data/spool.db"
	"$work/mattn" sqlite3 "file:%s?_foreign_keys=1&_busy_timeout=10000&_journal_mode=WAL&_synchronous=NORMAL" "$work/data/spool.db"
	"$work/ncruces" sqlite3 "file:%s?_pragma=foreign_keys(1)&_pragma=busy_timeout(10000)&_pragma=journal_mode(wal)&_pragma=synchronous(normal)" "$work/data/spool.db"
done
