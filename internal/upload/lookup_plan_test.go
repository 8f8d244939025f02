package upload_test

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/spoolhq/spool/internal/database/dbtest"
)

// TestResumeLookupReadsOnlyUnfinished: the lookup initBatch makes for an
// unfinished upload of a named file reads the user's unfinished uploads
// of that file and none of the finished ones, however many there are. A
// user who uploads, then cancels, the same file again and again leaves a
// history that the next initBatch of it must not walk.
//
// The test takes the lookup's statement as the Service sent it (from the
// recorded log) and asks the database how it runs it: SQLite for its
// plan, which must go by the two partial indexes; PostgreSQL, with 2,000
// cancelled uploads of the file analysed, for the rows its scans read.
func TestResumeLookupReadsOnlyUnfinished(t *testing.T) {
	t.Parallel()
	onRecordedEngines(t, func(t *testing.T, e *testEnv, log *sqlLog) {
		ctx := context.Background()
		postgres := strings.HasSuffix(t.Name(), "/postgres")
		alice := e.user(t, "alice")
		// Values without spaces: the test reads the lookup's arguments
		// back from the log's text.
		sum := sha256Hex(file11)
		spec := mp4Spec("again.mp4", file11)
		spec.Fingerprint, spec.SHA256 = ptr("again-fp"), &sum
		for range 3 {
			cancelled := e.initOne(t, alice, spec)
			if _, err := e.svc.Cancel(ctx, alice, cancelled.ID); err != nil {
				t.Fatal(err)
			}
		}
		if postgres {
			// Many more cancelled uploads of the file, as copies of the
			// last one's row, and statistics about them.
			if _, err := e.sql.ExecContext(ctx, `INSERT INTO upload_sessions
				SELECT (jsonb_populate_record(s, jsonb_build_object('id', s.id || '-' || g))).*
				FROM upload_sessions s, generate_series(1, 2000) g
				WHERE s.owner_id = $1 AND s.status = 'CANCELLED' AND s.id = (SELECT max(id) FROM upload_sessions WHERE owner_id = $1)`, alice); err != nil {
				t.Fatal(err)
			}
			if _, err := e.sql.ExecContext(ctx, "ANALYZE upload_sessions"); err != nil {
				t.Fatal(err)
			}
		}
		unfinished := e.initOne(t, alice, spec)

		log.take()
		again := e.initOne(t, alice, spec)
		if again.ID != unfinished.ID {
			t.Fatalf("initBatch of the same file again made upload %s, want %s resumed", again.ID, unfinished.ID)
		}
		query, args := lookupStatement(t, log.take())

		if !postgres {
			plan := dbtest.SQLitePlan(t, e.sql, query, args...)
			for _, want := range []string{
				"uploadsession_owner_id_fingerprint (owner_id=? AND fingerprint=?)",
				"uploadsession_owner_id_sha256 (owner_id=? AND sha256=?)",
			} {
				if !strings.Contains(plan, want) {
					t.Errorf("the lookup's plan\n%s\ndoes not use %s", plan, want)
				}
			}
			for _, index := range []string{"uploadsession_owner_id_fingerprint", "uploadsession_owner_id_sha256"} {
				var ddl string
				if err := e.sql.QueryRowContext(ctx, "SELECT sql FROM sqlite_master WHERE name = ?", index).Scan(&ddl); err != nil {
					t.Fatal(err)
				}
				if !strings.HasSuffix(ddl, "WHERE finished_at IS NULL") {
					t.Errorf("index %s holds finished uploads too: %s", index, ddl)
				}
			}
			return
		}
		// The one unfinished upload is found by its fingerprint and by
		// its sha256: two index entries, two rows at most.
		if read, plan := postgresRowsRead(t, e, query, args); read > 2 {
			t.Errorf("the lookup read %.0f rows of upload_sessions for 1 unfinished upload among 2,003 of the file, want at most 2:\n%s", read, plan)
		}
	})
}

// lookupStatement finds the resume lookup in a recorded log and returns
// its text and its arguments, read back from the log's text: strings,
// and the tus flag as a bool.
func lookupStatement(t *testing.T, lines []string) (string, []any) {
	t.Helper()
	re := regexp.MustCompile("query=(SELECT .*[`\"]fingerprint[`\"] IN .*) args=\\[(.*)\\]$")
	for _, line := range lines {
		m := re.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		var args []any
		for _, a := range strings.Fields(m[2]) {
			switch a {
			case "true", "false":
				args = append(args, a == "true")
			default:
				args = append(args, a)
			}
		}
		return m[1], args
	}
	t.Fatalf("no lookup by fingerprint among the statements:\n%s", strings.Join(lines, "\n"))
	return "", nil
}

// postgresRowsRead runs query under EXPLAIN ANALYZE and returns how many
// rows of upload_sessions its scans read (the rows a scan returned and
// those its filter dropped; a bitmap's index entries), and the plan.
func postgresRowsRead(t *testing.T, e *testEnv, query string, args []any) (float64, string) {
	t.Helper()
	var out string
	if err := e.sql.QueryRowContext(context.Background(), "EXPLAIN (ANALYZE, FORMAT JSON) "+query, args...).Scan(&out); err != nil {
		t.Fatal(err)
	}
	type node struct {
		NodeType        string  `json:"Node Type"`
		Relation        string  `json:"Relation Name"`
		Index           string  `json:"Index Name"`
		ActualRows      float64 `json:"Actual Rows"`
		Loops           float64 `json:"Actual Loops"`
		RemovedByFilter float64 `json:"Rows Removed by Filter"`
		Plans           []json.RawMessage
	}
	var top []struct{ Plan json.RawMessage }
	if err := json.Unmarshal([]byte(out), &top); err != nil || len(top) != 1 {
		t.Fatalf("EXPLAIN's output: %v\n%s", err, out)
	}
	var read float64
	var walk func(raw json.RawMessage)
	walk = func(raw json.RawMessage) {
		var n node
		if err := json.Unmarshal(raw, &n); err != nil {
			t.Fatal(err)
		}
		switch {
		case n.NodeType == "Bitmap Index Scan" && strings.HasPrefix(n.Index, "uploadsession_"):
			read += n.ActualRows * n.Loops
		case n.Relation == "upload_sessions" && n.NodeType != "Bitmap Heap Scan":
			read += (n.ActualRows + n.RemovedByFilter) * n.Loops
		}
		for _, p := range n.Plans {
			walk(p)
		}
	}
	walk(top[0].Plan)
	return read, out
}
