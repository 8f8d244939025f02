package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/spoolhq/spool/internal/database/dbtest"
)

// TestPostgresBehindAPooler runs three replicas through PgBouncer in
// transaction mode, their URL naming nothing but the pooler, started at
// once on a fresh database as a rollout starts them: each says it found
// the pooler and becomes ready, an upload planned on one,
// sent to two and completed on the second downloads byte-exact, its
// media becomes READY through the job queue, and no advisory lock is
// left behind in the database. Before migrations took their locks in
// transactions (database.MigrationLock), a session's lock taken on one
// pooled server connection was let go on another: replicas hung at
// start, or migrated side by side and failed.
func TestPostgresBehindAPooler(t *testing.T) {
	w := newWalkthrough(t)
	pooled := dbtest.PgBouncer(t, w.database)
	rs := w.serveAtOnce(t, 3, append(w.engines, "--database-url", pooled)...) // the last --database-url wins
	for i, r := range rs {
		if !strings.Contains(r.log.String(), "is reached through a pooler:") {
			t.Errorf("replica %d's log does not say it found the pooler:\n%s", i, r.log)
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
}
