#!/usr/bin/env bash
# What PostgreSQL's own CPU is for a chunk receipt, statement by
# statement: docs/BENCHMARKS.md, "Issue 10: what the tiny-request targets
# leave spool". Not a test and not spool: pgbench sends copies of the
# statements spool sends (internal/upload/chunksql.go as of the commit
# that added this directory, arguments written in), and this script
# reads the CPU time of every postgres process from /proc around each
# run.
#
#   docs/experiments/postgres-receipt-cost/run.sh [rounds] [seconds]
#
# It needs pgbench (Debian's postgresql-client-common or the server
# package) and a PostgreSQL that takes the connection in PGHOST/PGUSER
# (default 127.0.0.1, postgres, trust auth as on these machines). It
# creates the database zz_receipt_cost, migrates it with spool's own
# migrations (go run ./cmd/spool migrate), and drops it at the end.
#
# Each statement file takes a fresh upload per transaction from a
# sequence, as the bench's chunk PUTs do (one-chunk uploads, chunk 0,
# INITIALIZED). base.sql is that sequence's round trip alone; subtract
# it. The variants are the receipt without its status move (a HOT
# update), without ON CONFLICT, without the chunk table's foreign key
# (dropped for that run), and receipts of 2, 4 and 8 uploads in one
# statement (cross-request batching, which spool does not do).
set -euo pipefail
cd "$(dirname "$0")"
rounds=${1:-3}
seconds=${2:-6}
export PGHOST=${PGHOST:-127.0.0.1} PGUSER=${PGUSER:-postgres}
# TRUNCATE … CASCADE tells of every table it empties
export PGOPTIONS="-c client_min_messages=warning"
db=zz_receipt_cost
repo=$(git rev-parse --show-toplevel)

psql -qd postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
trap 'psql -qd postgres -c "DROP DATABASE IF EXISTS $db"' EXIT
(cd "$repo" && go run -tags disable_grpc_modules ./cmd/spool migrate --database-url "postgres://$PGUSER@$PGHOST/$db?sslmode=disable" >/dev/null)
psql -qd $db <<'EOF'
INSERT INTO users (id, created_at, updated_at, subject, quota_bytes) VALUES ('u1', now(), now(), 'alice', 1000000000000);
INSERT INTO upload_batches (id, created_at, updated_at, owner_id) VALUES ('b1', now(), now(), 'u1');
CREATE SEQUENCE zzseq;
EOF

# postgres_cpu prints the CPU time, in clock ticks, of every postgres
# process and of the children they have reaped (pgbench's backends
# exit, and the postmaster reaps them).
postgres_cpu() {
	local total=0 t
	for p in $(pgrep -u postgres); do
		t=$(awk '{print $14+$15+$16+$17}' "/proc/$p/stat" 2>/dev/null || echo 0)
		total=$((total + t))
	done
	echo $total
}

# reset refills the sessions table with 200,000 fresh uploads.
reset() {
	psql -qd $db >/dev/null <<'EOF'
TRUNCATE upload_chunks;
TRUNCATE upload_sessions CASCADE;
INSERT INTO upload_sessions (id, created_at, updated_at, file_name, original_name, mime_type, media_type, total_size, strategy, chunk_size, total_chunks, storage_key, expires_at, batch_id, owner_id, fingerprint)
SELECT 's'||g, now(), now(), 'tiny.mp3', 'tiny.mp3', 'audio/mpeg', 'AUDIO', 2, 'CHUNKED', 8388608, 1, 'k/'||g, now() + interval '1 day', 'b1', 'u1', md5(g::text)
FROM generate_series(1, 200000) g;
SELECT setval('zzseq', 1);
VACUUM ANALYZE upload_sessions;
VACUUM ANALYZE upload_chunks;
CHECKPOINT;
EOF
}

# run name file: one pgbench run of file, 8 clients, prepared statements;
# prints transactions, chunk rows written and PostgreSQL's CPU µs per
# transaction.
run() {
	local name=$1 file=$2 before after out n
	reset
	before=$(postgres_cpu)
	out=$(pgbench -n -M prepared -c 8 -j 2 -T "$seconds" -f "$file" $db 2>&1)
	sleep 0.5
	after=$(postgres_cpu)
	n=$(awk '/number of transactions actually processed/ {split($NF, a, "/"); print a[1]}' <<<"$out")
	if [ -z "$n" ] || [ "$n" -eq 0 ]; then
		echo "$name: no transaction: $out" >&2
		exit 1
	fi
	printf '%-24s tx %7d  chunks %7d  PostgreSQL CPU µs/tx %4d\n' "$name" "$n" \
		"$(psql -Atqd $db -c 'SELECT count(*) FROM upload_chunks')" $(((after - before) * 1000000 / $(getconf CLK_TCK) / n))
}

for r in $(seq "$rounds"); do
	echo "round $r"
	for f in base read lock update update-async insert receipt receipt-no-status receipt-no-on-conflict \
		receipt-batch2 receipt-batch4 receipt-batch8; do
		run "$f" "$f.sql"
	done
	psql -qd $db -c 'ALTER TABLE upload_chunks DROP CONSTRAINT upload_chunks_upload_sessions_chunks'
	run receipt-no-foreign-key receipt.sql
	psql -qd $db -c 'ALTER TABLE upload_chunks ADD CONSTRAINT upload_chunks_upload_sessions_chunks FOREIGN KEY (session_id) REFERENCES upload_sessions(id)'
done
