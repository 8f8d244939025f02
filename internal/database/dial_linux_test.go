package database

import (
	"context"
	"crypto/tls"
	"database/sql"
	"math/rand/v2"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"golang.org/x/sys/unix"

	"github.com/spoolhq/spool/internal/blackhole"
	"github.com/spoolhq/spool/internal/database/dbtest"
	"github.com/spoolhq/spool/internal/eventually"
	"github.com/spoolhq/spool/internal/usertimeout"
)

// unacknowledged is how many segments c has sent that its peer has not
// acknowledged (TCP_INFO's tcpi_unacked).
func unacknowledged(t *testing.T, c syscall.Conn) uint32 {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var info *unix.TCPInfo
	var sockErr error
	if err := raw.Control(func(fd uintptr) { info, sockErr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil || sockErr != nil {
		t.Fatalf("TCP_INFO: %v %v", err, sockErr)
	}
	return info.Unacked
}

// socketOf is the network connection under one of spool's pooled
// PostgreSQL connections, under its TLS if the URL asked for it.
func socketOf(t *testing.T, conn *sql.Conn) net.Conn {
	t.Helper()
	var socket net.Conn
	if err := conn.Raw(func(dc any) error {
		socket = dc.(*stdlib.Conn).Conn().PgConn().Conn()
		return nil
	}); err != nil {
		t.Fatalf("the connection's socket: %v", err)
	}
	if tlsConn, ok := socket.(*tls.Conn); ok { // a URL's sslmode=require
		socket = tlsConn.NetConn()
	}
	return socket
}

// socketUserTimeout dials rawURL's server as spool's pool would and
// reads back the socket's TCP_USER_TIMEOUT.
func socketUserTimeout(t *testing.T, rawURL string) time.Duration {
	t.Helper()
	cfg, err := pgConnConfig(rawURL, direct)
	if err != nil {
		t.Fatal(err)
	}
	if _, sent := cfg.RuntimeParams[tcpUserTimeoutParam]; sent {
		t.Errorf("%s is left among the settings sent as the connection starts, which a pooler refuses", tcpUserTimeoutParam)
	}
	c, err := cfg.DialFunc(context.Background(), "tcp", net.JoinHostPort(cfg.Host, "5432"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d, err := usertimeout.Of(c.(*net.TCPConn))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// PostgreSQL's connections are dialled with a TCP user timeout: the
// URL's tcp_user_timeout (libpq's name and unit), DefaultTCPUserTimeout
// without one, none for 0 (bad values: TestMalformedPostgresURL).
func TestPostgresTCPUserTimeout(t *testing.T) {
	t.Parallel()
	server := dbtest.Required(t)
	for _, c := range []struct {
		value string // "" leaves the parameter out
		want  time.Duration
	}{
		{"", DefaultTCPUserTimeout},
		{"250", 250 * time.Millisecond},
		{"0", 0},
	} {
		rawURL := server
		if c.value != "" {
			rawURL = dbtest.Rewrite(t, server, "", tcpUserTimeoutParam, c.value)
		}
		if got := socketUserTimeout(t, rawURL); got != c.want {
			t.Errorf("tcp_user_timeout %q: the socket's TCP_USER_TIMEOUT is %v, want %v", c.value, got, c.want)
		}
	}

	// The setting opens a database that answers.
	db, err := Open(context.Background(), dbtest.Rewrite(t, server, "", tcpUserTimeoutParam, "250"), "", WithoutMigrate())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Ping(context.Background()); err != nil {
		t.Errorf("a database opened with tcp_user_timeout=250: %v", err)
	}
}

// A server that accepts connections but never answers them (a stopped
// or stuck PostgreSQL whose kernel still completes the handshake, a
// pooler waiting on a server it cannot reach) fails a new connection
// once tcp_user_timeout passes, the URL having no connect_timeout: its
// kernel acknowledges what is sent, so the TCP user timeout alone never
// fires, and the connection waited for good.
func TestPostgresConnectingToAServerThatNeverAnswers(t *testing.T) {
	t.Parallel()
	mute, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer mute.Close()
	go func() {
		var held []net.Conn // never read from, never answered
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := mute.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	cfg, err := pgConnConfig("postgres://postgres@"+mute.Addr().String()+"/test?sslmode=disable&tcp_user_timeout=300", direct)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		conn, err := pgx.ConnectConfig(context.Background(), cfg)
		if err == nil {
			conn.Close(context.Background())
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("connected to a server that never answers")
		}
		if !Unavailable(err) {
			t.Errorf("the failed connection is not Unavailable: %v", err)
		}
		t.Logf("gave up after %v: %v", time.Since(start).Round(time.Millisecond), err)
	case <-time.After(time.Minute): // a hang guard
		mute.Close()
		t.Fatal("still connecting a minute on")
	}
}

// A PostgreSQL that stops answering at the network (a partition, a host
// that froze: packets dropped, nothing acknowledged) fails the statements
// sent into it once tcp_user_timeout passes, instead of leaving them, and
// every request waiting on them, to TCP's retransmissions (about 15
// minutes); a new connection fails as soon; and once the network is back
// the pool connects again. Both pools are held to it: the one spool's
// statements run on, and the job queue's LISTEN connection.
func TestPostgresOutageDroppingPacketsEndsStatements(t *testing.T) {
	t.Parallel()
	const timeout = 500 * time.Millisecond
	db, hole := behindBlackhole(t, timeout)
	ctx := context.Background()
	conn, err := db.SQL().Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	listen, err := db.ListenPool().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer listen.Release()
	if _, err := listen.Exec(ctx, "LISTEN spool_blackhole_test"); err != nil {
		t.Fatal(err)
	}

	hole.Drop(t)
	// Each is run with a context that never ends: only the connection's
	// own bound can end it.
	for _, c := range []struct {
		what string
		run  func() error
	}{
		{"a statement on a pooled connection", func() error {
			_, err := conn.ExecContext(ctx, "SELECT 1")
			return err
		}},
		{"a statement on the LISTEN connection", func() error {
			_, err := listen.Exec(ctx, "SELECT 1")
			return err
		}},
		{"a new connection", func() error { return db.Ping(ctx) }},
	} {
		start := time.Now()
		done := make(chan error, 1)
		go func() { done <- c.run() }()
		failsInTheOutage(t, hole, c.what, timeout, start, done)
	}

	hole.Restore(t)
	eventually.Holds(t, "the pool connects again once the network is back", func() bool {
		return db.Ping(ctx) == nil
	})
}

// TestPostgresOutageWhileAnAnswerIsAwaited drops every packet once a
// statement has been sent and acknowledged, while its answer is awaited
// (a long statement, or a pooler between): nothing it sent is left
// unacknowledged, so only the connection's keepalive probes, unanswered,
// notice the outage, and they start after half the URL's
// tcp_user_timeout of silence (a second at least) instead of Go's 15 s.
func TestPostgresOutageWhileAnAnswerIsAwaited(t *testing.T) {
	t.Parallel()
	const timeout = 500 * time.Millisecond
	db, hole := behindBlackhole(t, timeout)
	ctx := context.Background()
	conn, err := db.SQL().Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	waiting, err := db.SQL().Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer waiting.Close()
	socket, ok := socketOf(t, waiting).(syscall.Conn)
	if !ok {
		t.Fatal("the connection's socket is not a TCP socket")
	}
	awaited := make(chan error, 1)
	go func() {
		_, err := waiting.ExecContext(ctx, "SELECT pg_sleep(20)")
		awaited <- err
	}()
	eventually.Holds(t, "the awaited statement is sent, and acknowledged", func() bool {
		var running bool
		err := conn.QueryRowContext(ctx, "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(20)' AND state = 'active')").Scan(&running)
		return err == nil && running && unacknowledged(t, socket) == 0
	})

	hole.Drop(t)
	failsInTheOutage(t, hole, "a statement awaiting its answer", timeout, time.Now(), awaited)

	hole.Restore(t)
	eventually.Holds(t, "the pool connects again once the network is back", func() bool {
		return db.Ping(ctx) == nil
	})
}

// failsInTheOutage checks that what, started at start, failed with an
// error Unavailable calls an outage, and logs how long it took. Unbounded,
// TCP retransmits for about 15 minutes: after 2 it fails the test,
// letting packets through so that the cleanups are not stuck behind it.
func failsInTheOutage(t *testing.T, hole *blackhole.Hole, what string, timeout time.Duration, start time.Time, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err == nil {
			t.Errorf("%s succeeded with every packet dropped", what)
		} else if !Unavailable(err) {
			t.Errorf("%s failed with %v, which Unavailable does not call an outage", what, err)
		}
		t.Logf("%s failed after %v (tcp_user_timeout %v): %v", what, time.Since(start).Round(time.Millisecond), timeout, err)
	case <-time.After(2 * time.Minute): // a hang guard
		hole.Restore(t)
		t.Fatalf("%s still waits 2 minutes into the outage", what)
	}
}

// behindBlackhole opens a database through a blackhole.Hole, with
// tcp_user_timeout set to timeout.
func behindBlackhole(t *testing.T, timeout time.Duration) (*DB, *blackhole.Hole) {
	t.Helper()
	server := dbtest.Required(t)
	hole := blackhole.Start(t, dbtest.Host(t, server))
	rawURL := dbtest.Rewrite(t, server, hole.Addr, tcpUserTimeoutParam, strconv.FormatInt(timeout.Milliseconds(), 10))
	db, err := Open(context.Background(), rawURL, "", WithoutMigrate())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, hole
}

// serverSide is what PostgreSQL's pg_settings say of the keepalive and
// user timeout of the connection q runs on (its base units: seconds,
// seconds, milliseconds).
func serverSide(t *testing.T, q func(query string) pgx.Row) [3]string {
	t.Helper()
	var got [3]string
	err := q(`SELECT (SELECT setting FROM pg_settings WHERE name = 'tcp_keepalives_idle'),
		(SELECT setting FROM pg_settings WHERE name = 'tcp_keepalives_interval'),
		(SELECT setting FROM pg_settings WHERE name = 'tcp_user_timeout')`).Scan(&got[0], &got[1], &got[2])
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// PostgreSQL is asked to bound its side of spool's connections as spool
// bounds its own (serverBounds): keepalive probes after half the URL's
// tcp_user_timeout in whole seconds, and the same user timeout. What the
// URL names itself stays as it says, and tcp_user_timeout=0 leaves the
// server's own, which a plain connection shows; so does a pooler, whose
// server connections are asked nothing. The job queue's LISTEN
// connection is bounded the same way.
func TestPostgresBoundsItsSideOfTheConnection(t *testing.T) {
	t.Parallel()
	server := dbtest.Required(t)
	ctx := context.Background()
	plain, err := pgx.Connect(ctx, server)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close(ctx)
	servers := serverSide(t, func(q string) pgx.Row { return plain.QueryRow(ctx, q) })

	pooler := dbtest.PgBouncer(t, server)
	for _, c := range []struct {
		through string // "" for server
		params  []string
		want    [3]string
	}{
		{"", nil, [3]string{"15", "15", "30000"}},
		{pooler, nil, servers},
		{"", []string{tcpUserTimeoutParam, "250"}, [3]string{"1", "1", "250"}},
		{"", []string{tcpUserTimeoutParam, "5000"}, [3]string{"2", "2", "5000"}},
		{"", []string{tcpUserTimeoutParam, "86400000"}, [3]string{"32767", "32767", "86400000"}}, // the kernel's longest keepalive
		{"", []string{"tcp_keepalives_idle", "7"}, [3]string{"7", "15", "30000"}},
		{"", []string{tcpUserTimeoutParam, "0"}, servers},
	} {
		target := server
		if c.through != "" {
			target = c.through
		}
		db, err := Open(ctx, dbtest.Rewrite(t, target, "", c.params...), "", WithoutMigrate())
		if err != nil {
			t.Fatalf("%v: %v", c.params, err)
		}
		fromPool := serverSide(t, func(q string) pgx.Row { return db.SQL().QueryRowContext(ctx, q) })
		listening := serverSide(t, func(q string) pgx.Row { return db.ListenPool().QueryRow(ctx, q) })
		db.Close()
		if fromPool != c.want || listening != c.want {
			t.Errorf("URL parameters %v (through a pooler: %v): the server's keepalive idle, interval and user timeout are %v on a connection of the pool and %v on the LISTEN one, want %v",
				c.params, c.through != "", fromPool, listening, c.want)
		}
	}
}

// A client that vanishes in a transaction (its host crashed, or a
// partition cut it off: nothing more arrives from it, not even a FIN)
// has its locks let go once the server's keepalive probes, sent after
// half the URL's tcp_user_timeout (a second at least), have gone
// unanswered for tcp_user_timeout: without spool asking for that, the
// server's kernel probes after two hours of silence, and every statement
// needing one of those locks waits as long.
func TestPostgresLetsGoOfAVanishedClientsLocks(t *testing.T) {
	t.Parallel()
	const timeout = time.Second
	server := dbtest.Required(t)
	ctx := context.Background()
	db, err := Open(ctx, dbtest.Rewrite(t, server, "", tcpUserTimeoutParam, strconv.FormatInt(timeout.Milliseconds(), 10)), "", WithoutMigrate())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })

	vanishing, err := db.SQL().Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer vanishing.Close()
	socket := socketOf(t, vanishing)
	local, _ := socket.LocalAddr().(*net.TCPAddr)
	remote, _ := socket.RemoteAddr().(*net.TCPAddr)
	if local == nil || remote == nil {
		t.Fatal("the connection is not over TCP, which the test cuts")
	}
	lock := rand.Int64() // an advisory lock of this test's own
	tx, err := vanishing.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	var pid int
	if err := tx.QueryRowContext(ctx, "SELECT pg_backend_pid() FROM pg_advisory_xact_lock($1)", lock).Scan(&pid); err != nil {
		t.Fatal(err)
	}

	blackhole.Cut(t, local, remote)
	start := time.Now()
	other, err := pgx.Connect(ctx, server) // another replica's, as plain as can be
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	guard, cancel := context.WithTimeout(ctx, 2*time.Minute) // a hang guard
	defer cancel()
	if _, err := other.Exec(guard, "SELECT pg_advisory_lock($1)", lock); err != nil {
		t.Fatalf("taking the lock a client vanished with: %v after %v", err, time.Since(start).Round(time.Millisecond))
	}
	t.Logf("the lock was let go %v after its client vanished (tcp_user_timeout %v)", time.Since(start).Round(time.Millisecond), timeout)
	var gone bool
	if err := other.QueryRow(ctx, "SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $1)", pid).Scan(&gone); err != nil || !gone {
		t.Errorf("the vanished client's backend (pid %d) is still there (%v)", pid, err)
	}
}
