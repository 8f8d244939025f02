package database

import (
	"context"
	"database/sql"
	"testing"

	"github.com/spoolhq/spool/internal/database/dbtest"
	"github.com/spoolhq/spool/internal/eventually"
)

// A failover that leaves the pool on a server taking no writes (a
// demoted primary, or DNS still naming it): each write is refused as
// unavailable, and the connection it was refused on is dropped, so once
// writes are taken again the pool's next connections take them. Kept,
// each refused connection failed every write it was handed for as long as
// the pool kept it.
func TestPostgresReadOnlyConnectionsAreDropped(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := dbtest.Postgres(t)
	db, err := Open(ctx, dbURL, "", WithoutMigrate(), WithMaxOpenConns(4))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.SQL().ExecContext(ctx, "CREATE TABLE writes (n int)"); err != nil {
		t.Fatal(err)
	}
	write := func() error {
		_, err := db.SQL().ExecContext(ctx, "INSERT INTO writes VALUES (1)")
		return err
	}

	dbtest.ReadOnly(t, dbURL, true)
	// Fill the pool with read-only connections.
	eventually.Holds(t, "writes on four connections at once are refused as read-only", func() bool {
		var conns []*sql.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for range 4 {
			c, err := db.SQL().Conn(ctx)
			if err != nil {
				return false // the pool dials again after the termination
			}
			conns = append(conns, c)
		}
		refused := 0
		for _, c := range conns {
			_, err := c.ExecContext(ctx, "INSERT INTO writes VALUES (1)")
			if err != nil && readOnly(err) {
				if !Unavailable(err) {
					t.Errorf("a write refused as read-only is not Unavailable: %v", err)
				}
				refused++
			}
		}
		return refused == len(conns)
	})

	dbtest.ReadOnly(t, dbURL, false)
	// Each refused connection was dropped: the pool dials again, and the
	// new connections take writes.
	var failed []error
	for range 10 {
		if err := write(); err != nil {
			failed = append(failed, err)
		}
	}
	if len(failed) > 0 {
		t.Errorf("%d of 10 writes failed once the server took writes again, the first with %v", len(failed), failed[0])
	}
}
