package database

import (
	"context"
	"runtime"
	"testing"

	"github.com/spoolhq/spool/internal/database/dbtest"
)

func TestPoolSize(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ procs, want int }{
		{1, 8}, {2, 8}, {3, 12}, {4, 16}, {8, 32}, {16, 64}, {64, 64},
	} {
		if got := poolSize(c.procs); got != c.want {
			t.Errorf("poolSize(%d) = %d, want %d", c.procs, got, c.want)
		}
	}
}

// The PostgreSQL pool is sized for GOMAXPROCS unless told otherwise, and
// keeps as many connections idle as it may open.
func TestPostgresPoolIsSizedForTheCPUs(t *testing.T) {
	t.Parallel()
	url := dbtest.Postgres(t)
	for _, c := range []struct {
		name string
		opts []Option
		want int
	}{
		{"default", nil, poolSize(runtime.GOMAXPROCS(0))},
		{"zero keeps the default", []Option{WithMaxOpenConns(0)}, poolSize(runtime.GOMAXPROCS(0))},
		{"set", []Option{WithMaxOpenConns(3)}, 3},
		{"at least two", []Option{WithMaxOpenConns(1)}, 2},
	} {
		db, err := Open(context.Background(), url, "", append(c.opts, WithoutMigrate())...)
		if err != nil {
			t.Fatal(err)
		}
		if got := db.SQL().Stats().MaxOpenConnections; got != c.want {
			t.Errorf("%s: %d connections at most, want %d", c.name, got, c.want)
		}
		// Idle connections are kept up to the same bound: open them all,
		// give them back, and none is closed.
		conns := make([]interface{ Close() error }, 0, c.want)
		for range c.want {
			conn, err := db.SQL().Conn(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, conn)
		}
		for _, conn := range conns {
			conn.Close()
		}
		if st := db.SQL().Stats(); st.Idle != c.want || st.MaxIdleClosed != 0 {
			t.Errorf("%s: %d idle, %d closed for lack of idle room; want %d idle", c.name, st.Idle, st.MaxIdleClosed, c.want)
		}
		db.Close()
	}
}
