#!/usr/bin/env bash
# What losing the job queue's LISTEN connection costs a replica, from
# outside: docs/BENCHMARKS.md, "A lost LISTEN connection". It starts
# `spool serve` on a scratch PostgreSQL database, waits 3 s, then (mode
# cut) ends the backend River LISTENs on with pg_terminate_backend, as a
# database restart or a proxy's cut would, or (mode idle) does nothing.
# For the next ~10 s it watches pg_stat_activity for River's next LISTEN
# connection and reads the server's CPU time from /proc.
#
#   docs/experiments/listener-cut/run.sh SPOOL_BINARY PORT cut|idle
#
# It needs psql and bc, and a PostgreSQL at 127.0.0.1:5432 that takes
# user postgres without a password (these machines' test server). The
# listener is told by its name, or by its last statement being a LISTEN
# (binaries from before it was named; River pings it 5 s after it last
# began to wait, so the cut comes 3 s after the start).
set -euo pipefail
bin=$1 port=$2 mode=$3
db=zz_listener_cut_$port
pg=(psql -X -q -At -h 127.0.0.1 -U postgres)
"${pg[@]}" -d test -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" 2>/dev/null
dir=$(mktemp -d)
"$bin" serve --data-dir "$dir" --addr "127.0.0.1:$port" \
	--database-url "postgres://postgres@127.0.0.1:5432/$db?sslmode=disable" >"$dir/log" 2>&1 &
server=$!
cleanup() {
	kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
	"${pg[@]}" -d test -c "DROP DATABASE IF EXISTS $db" 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
sleep 3
listener() { # the pid of River's LISTEN connection other than $1
	"${pg[@]}" -d "$db" -c "SELECT pid FROM pg_stat_activity WHERE datname = current_database()
		AND pid <> $1 AND (application_name = 'spool job queue listener' OR query LIKE 'LISTEN%') LIMIT 1"
}
cpu() { awk '{print $14 + $15}' "/proc/$server/stat"; } # utime + stime, in clock ticks
lost=$(listener 0)
[ -n "$lost" ] || { echo "no LISTEN connection found"; exit 1; }
before=$(cpu)
[ "$mode" = cut ] && "${pg[@]}" -d "$db" -c "SELECT pg_terminate_backend($lost)" >/dev/null
start=$(date +%s.%N) back=-
for _ in $(seq 80); do
	if [ "$mode" = cut ] && [ "$back" = - ] && [ -n "$(listener "$lost")" ]; then
		back=$(echo "$(date +%s.%N) - $start" | bc)
	fi
	sleep 0.1
done
echo "$mode: LISTEN connection back after ${back} s; spool's CPU over the ~10 s: $(echo "($(cpu) - $before) / $(getconf CLK_TCK)" | bc -l | cut -c1-5) s"
