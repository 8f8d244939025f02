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
	"syscall"
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
	bin, u, server, port := poolerFor(t, "pgbouncer", "pgbouncer, to put a pooler in transaction mode in front of PostgreSQL", dbURL)

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
	return startPooler(t, exec.Command(bin, args...), u, port)
}

// Pgpool returns dbURL reached through a pgpool-II of the test's own,
// which pools sessions, not transactions: a client keeps its server
// connection for as long as it is connected, and pgpool-II keeps server
// connections for the next client (connection_cache) once it has reset
// them. It sends every statement to the one server (raw mode, no load
// balancing). The pooler stops when the test ends. Without pgpool
// (Debian's pgpool2) the test is skipped, or fails where CI=true.
func Pgpool(t testing.TB, dbURL string) string {
	t.Helper()
	bin, u, server, port := poolerFor(t, "pgpool", "pgpool (Debian's pgpool2), to put a pooler of sessions in front of PostgreSQL", dbURL)
	dir := t.TempDir()
	conf := filepath.Join(dir, "pgpool.conf")
	pcp := filepath.Join(dir, "pcp.conf") // no PCP users: pgpool wants the file
	files := map[string]string{
		pcp: "",
		conf: fmt.Sprintf(`backend_clustering_mode = 'raw'
listen_addresses = '127.0.0.1'
port = %[1]d
unix_socket_directories = '%[2]s'
pcp_listen_addresses = ''
pcp_port = %[3]d
pcp_socket_dir = '%[2]s'
pid_file_name = '%[2]s/pgpool.pid'
logdir = '%[2]s'
backend_hostname0 = '%[4]s'
backend_port0 = %[5]d
backend_flag0 = 'DISALLOW_TO_FAILOVER'
enable_pool_hba = off
num_init_children = 64
max_pool = 4
connection_cache = on
load_balance_mode = off
health_check_period = 0
`, port, dir, freePort(t), server.IP, server.Port),
	}
	for name, content := range files {
		if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return startPooler(t, exec.Command(bin, "-n", "-f", conf, "-F", pcp), u, port)
}

// poolerFor finds the pooler command name (in PATH, or in /usr/sbin,
// where Debian puts it, outside a user's PATH), skipping or failing the
// test as required says if it is missing (why names what it is for),
// and returns it with dbURL parsed, the TCP address of its server and a
// free port for the pooler.
func poolerFor(t testing.TB, name, why, dbURL string) (bin string, u *url.URL, server *net.TCPAddr, port int) {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		bin, err = exec.LookPath("/usr/sbin/" + name)
	}
	if err != nil {
		required.Missing(t, "%s: %v", why, err)
	}
	if u, err = url.Parse(dbURL); err != nil {
		t.Fatal("the database URL is not a valid URL")
	}
	if server, err = net.ResolveTCPAddr("tcp", u.Host); err != nil {
		t.Fatalf("%s reaches PostgreSQL over TCP: %v", name, err)
	}
	return bin, u, server, freePort(t)
}

// startPooler starts cmd, a pooler in the foreground listening on port,
// and returns the database of u reached through it once a client gets
// through. The pooler and the processes it starts are killed when the
// test ends.
func startPooler(t testing.TB, cmd *exec.Cmd, u *url.URL, port int) string {
	t.Helper()
	u.Host = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	q := u.Query()
	q.Set("sslmode", "disable") // the test's poolers have no certificate
	u.RawQuery = q.Encode()
	pooled := u.String()
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// pgpool-II serves each client from a process of its own: the
	// pooler's process group is killed, not just its first process.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", cmd.Path, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	})
	deadline := time.Now().Add(30 * time.Second) // a hang guard
	for {
		err := ping(context.Background(), pooled)
		if err == nil {
			return pooled
		}
		select {
		case <-exited:
			t.Fatalf("%s exited: %s", cmd.Path, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not let a client through 30 s after it started (%v): %s", cmd.Path, err, out.String())
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
