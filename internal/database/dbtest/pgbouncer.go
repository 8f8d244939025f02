package dbtest

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/spoolhq/spool/internal/required"
)

// PgBouncer returns dbURL reached through a PgBouncer of the test's own
// in transaction mode, where a client has a server connection only for
// the length of a transaction, as a deployment behind such a pooler
// reaches PostgreSQL (PgBouncer 1.18, Debian 12's, keeps no prepared
// statements in that mode). The pooler stops when the test ends. Without
// pgbouncer (Debian's package) the test is skipped, or fails where
// CI=true.
func PgBouncer(t testing.TB, dbURL string) string {
	t.Helper()
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		bin, err = exec.LookPath("/usr/sbin/pgbouncer") // Debian's, outside a user's PATH
	}
	if err != nil {
		required.Missing(t, "pgbouncer, to put a pooler in transaction mode in front of PostgreSQL: %v", err)
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal("the database URL is not a valid URL")
	}
	server, err := net.ResolveTCPAddr("tcp", u.Host)
	if err != nil {
		t.Fatalf("PgBouncer reaches PostgreSQL over TCP: %v", err)
	}
	port := freePort(t)

	// PgBouncer will not run as root: it runs as nobody then, so its
	// files sit in a directory anyone may read.
	dir, err := os.MkdirTemp("", "spool-pgbouncer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	users := filepath.Join(dir, "users.txt")
	ini := filepath.Join(dir, "pgbouncer.ini")
	files := map[string]string{
		// auth_type trust still takes only the users this file names.
		users: fmt.Sprintf("%q \"\"\n", u.User.Username()),
		ini: fmt.Sprintf(`[databases]
* = host=%s port=%d
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s
pool_mode = transaction
max_client_conn = 1000
default_pool_size = 40
`, server.IP, server.Port, port, users),
	}
	for name, content := range files {
		if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{ini}
	if os.Geteuid() == 0 {
		args = []string{"-u", "nobody", ini}
	}
	cmd := exec.Command(bin, args...)
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting pgbouncer: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})

	u.Host = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	q := u.Query()
	q.Set("sslmode", "disable") // the test's PgBouncer has no certificate
	u.RawQuery = q.Encode()
	pooled := u.String()
	deadline := time.Now().Add(30 * time.Second) // a hang guard
	for {
		err := ping(context.Background(), pooled)
		if err == nil {
			return pooled
		}
		select {
		case <-exited:
			t.Fatalf("pgbouncer exited: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("pgbouncer does not let a client through 30 s after it started (%v): %s", err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// AdvisoryLocks is how many advisory locks are held or awaited in the
// database at dbURL (reached straight, not through a pooler, whose
// server connections are the ones that could hold them).
func AdvisoryLocks(t testing.TB, dbURL string) int {
	t.Helper()
	db, err := sql.Open("pgx", dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRowContext(context.Background(), `SELECT count(*) FROM pg_locks
		WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&n); err != nil {
		t.Fatalf("counting advisory locks: %v", err)
	}
	return n
}

// freePort returns a TCP port on 127.0.0.1 that nothing listened on a
// moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// lockedBuffer is a bytes.Buffer that a process's output and the test
// may use at once.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
