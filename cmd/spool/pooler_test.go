package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/spoolhq/spool/internal/database/dbtest"
)

// TestPostgresBehindAPooler runs three replicas through a pooler, their
// URL naming nothing but the pooler, started at once on a fresh database
// as a rollout starts them: each becomes ready, an upload planned on
// one, sent to two and completed on the second downloads byte-exact, its
// media becomes READY through the job queue, and no advisory lock is
// left behind in the database. Before migrations took their locks in
// transactions (database.MigrationLock), a session's lock taken on one
// pooled server connection was let go on another: replicas hung at
// start, or migrated side by side and failed.
//
// The poolers: PgBouncer in transaction mode, which each replica must
// find and send its statements unprepared through; and pgpool-II, which
// pools sessions, and which each replica must find too (it names the
// server connection's own backend, so it is asked) and send its
// statements by the simple protocol through. Before, spool took
// pgpool-II for PostgreSQL and sent its statements prepared, by the
// extended protocol, and pgpool-II (4.3.5, its issue #172) left a write
// sent outside a transaction inside one it never ended: the token's user
// was never created, and the first request failed INTERNAL ("user not
// found"), as every later one did.
func TestPostgresBehindAPooler(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start func(testing.TB, string) string
		says  string // in each replica's log
	}{
		{"pgbouncer, transaction mode", dbtest.PgBouncer, "is reached through a pooler: statements are sent unprepared"},
		{"pgpool-II, sessions", dbtest.Pgpool, "is reached through pgpool-II: statements are sent by the simple protocol"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWalkthrough(t)
			pooled := tc.start(t, w.database)
			rs := w.serveAtOnce(t, 3, append(w.engines, "--database-url", pooled)...) // the last --database-url wins
			t.Cleanup(func() {
				if t.Failed() {
					for i, r := range rs {
						t.Logf("replica %d's log:\n%s", i, r.log)
					}
				}
			})
			for i, r := range rs {
				if !strings.Contains(r.log.String(), tc.says) {
					t.Errorf("replica %d's log does not say %q:\n%s", i, tc.says, r.log)
				}
			}
			token := w.token(t, "pooled")
			video, url, _ := uploadAcross(t, token, rs[0], rs[1])
			if status, body := fetch(t, http.MethodGet, url, nil, nil); status != http.StatusOK || sha256hex(body) != sha256hex(video) {
				t.Errorf("GET the completed file: %d, %d bytes; want 200 and the video's bytes", status, len(body))
			}
			var media struct {
				UserMedia struct {
					Edges []struct{ Node struct{ Status string } }
				}
			}
			poll(t, "the media to become READY through the job queue", func() bool {
				gql(t, rs[2].url, token, `{ userMedia(first: 1) { edges { node { status } } } }`, nil, &media)
				return len(media.UserMedia.Edges) == 1 && media.UserMedia.Edges[0].Node.Status == "READY"
			})

			if held := dbtest.AdvisoryLocks(t, w.database); held != 0 {
				t.Errorf("%d advisory locks are held in the database once the replicas are ready, want none", held)
			}
		})
	}
}
