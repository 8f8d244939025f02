package database

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/spoolhq/spool/internal/usertimeout"
)

// DefaultTCPUserTimeout bounds how long a PostgreSQL connection's sent
// bytes may go unacknowledged before the kernel gives the connection up,
// unless the URL's tcp_user_timeout says otherwise.
//
// Without a bound, a statement sent into an outage that drops packets
// (a network partition, a database host that froze or vanished) waits for
// TCP's retransmissions to give up, about 15 minutes on Linux's defaults.
// Nothing else ends it: the chunk path's reads and receipts are not
// watched for cancellation (docs/DESIGN.md, "Nothing watches SQLite's
// chunk path for cancellation"), and a watched one ends only when its
// client leaves. Every request on such a connection would hang that long,
// and the pool with them. A slow statement is not cut by it: PostgreSQL's
// kernel acknowledges what it receives while the statement runs.
const DefaultTCPUserTimeout = usertimeout.Default

// tcpUserTimeoutParam is libpq's name for the setting (in milliseconds),
// so a URL written for psql or libpq means the same here.
const tcpUserTimeoutParam = "tcp_user_timeout"

// pgConnConfig parses rawURL as pgx does, and configures it for
// connections to PostgreSQL through what p names.
func pgConnConfig(rawURL string, p pooler) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(rawURL)
	if err != nil {
		return nil, err // pgconn's ParseConfigError shows the URL without its password
	}
	return cfg, configure(cfg, p)
}

// configure sets what spool's PostgreSQL connections do in an outage,
// beyond what the URL says to pgx: they are dialled with the URL's
// tcp_user_timeout (DefaultTCPUserTimeout if it has none; 0 leaves the
// system's) and connect within the URL's connect_timeout or, if it has
// none, the same bound, since a connection unanswered that long meets
// the same outage; the server is asked to bound its side of each
// connection the same way (serverBounds); and one that a statement was
// refused on for being read-only is closed (readonly.go). Through a
// pooler that names backends of its own (transactionPooler) statements
// are sent unprepared, and nothing is asked of the server: the pooler is
// its client. Through pgpool-II they go by the simple protocol.
func configure(cfg *pgx.ConnConfig, p pooler) error {
	userTimeout, err := takeUserTimeout(cfg)
	if err != nil {
		return err
	}
	setDialer(cfg, userTimeout)
	switch p {
	case transactionPooler:
		cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	case pgpoolII:
		cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	}
	if p != transactionPooler {
		if set := serverBounds(userTimeout, cfg.RuntimeParams); set != "" {
			cfg.AfterConnect = afterConnect(cfg.AfterConnect, set)
		}
	}
	cfg.Tracer = readOnlyCloser{}
	return nil
}

// takeUserTimeout takes tcp_user_timeout out of cfg's runtime parameters,
// where pgx put it to send it to the server as a setting, and returns it
// (DefaultTCPUserTimeout if the URL has none). The URL's value is the
// client's, as in libpq; serverBounds asks the server for it as well.
func takeUserTimeout(cfg *pgx.ConnConfig) (time.Duration, error) {
	v, ok := cfg.RuntimeParams[tcpUserTimeoutParam]
	if !ok {
		return DefaultTCPUserTimeout, nil
	}
	delete(cfg.RuntimeParams, tcpUserTimeoutParam)
	ms, err := strconv.ParseInt(v, 10, 32)
	if err != nil || ms < 0 {
		return 0, fmt.Errorf("database: the database URL's %s=%q is not a whole number of milliseconds, 0 or more", tcpUserTimeoutParam, v)
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// setDialer sets cfg's DialFunc, and its ConnectTimeout if the URL set
// none, as configure says.
func setDialer(cfg *pgx.ConnConfig, userTimeout time.Duration) {
	if cfg.ConnectTimeout == 0 {
		// pgx bounds the whole connection by it, the startup and
		// authentication too: a server whose kernel accepts and
		// acknowledges, but which never answers (a stopped or stuck
		// process, a pooler waiting on a server it cannot reach), held
		// each new connection, and the request waiting on it, for good.
		cfg.ConnectTimeout = userTimeout
	}
	d := usertimeout.Dialer(userTimeout)
	d.Timeout = cfg.ConnectTimeout
	cfg.DialFunc = d.DialContext
}

// serverBounds returns the statements that bound the server's side of a
// connection as usertimeout.Dialer bounds spool's: keepalive probes after
// usertimeout.ProbeInterval of silence and at that interval, and the
// connection given up once userTimeout passes unanswered. "" for a
// userTimeout of 0, which leaves both sides to their kernels.
//
// Without them PostgreSQL learns that a client vanished mid-transaction
// (its host crashed, or a partition cut it off) only from its kernel's
// keepalive: after two hours of silence on Linux's defaults. Until then
// the backend sits idle in the transaction and keeps its locks, and every
// replica's statement that needs one of them (a receipt for the same
// upload, its complete) waits behind it, holding a connection of that
// replica's pool, for as long (docs/DESIGN.md, "What ends a statement in
// an outage").
//
// A setting the URL names is left as it says (pgx sends it as the
// connection starts). They are SET once connected rather than sent that
// way, because a pooler (PgBouncer) refuses a connection whose startup
// names parameters it does not know. Through a pooler none is SET
// (configure): the pooler is the server's client, and its own settings
// bound spool's connections to it, while a SET would land on whichever
// of its server connections ran it (and a proxy such as RDS Proxy pins
// a session that SETs to one server connection for good).
func serverBounds(userTimeout time.Duration, named map[string]string) string {
	if userTimeout <= 0 {
		return ""
	}
	probe := strconv.Itoa(int(usertimeout.ProbeInterval(userTimeout) / time.Second))
	var set strings.Builder
	for _, s := range []struct{ name, value string }{
		{"tcp_keepalives_idle", probe},
		{"tcp_keepalives_interval", probe},
		{tcpUserTimeoutParam, strconv.FormatInt(userTimeout.Milliseconds(), 10)},
	} {
		if _, ok := named[s.name]; !ok {
			fmt.Fprintf(&set, "SET %s = %s;", s.name, s.value)
		}
	}
	return set.String()
}

// afterConnect returns a pgconn AfterConnect hook that runs next, if any,
// and then the statements set, in one round trip.
func afterConnect(next func(context.Context, *pgconn.PgConn) error, set string) func(context.Context, *pgconn.PgConn) error {
	return func(ctx context.Context, conn *pgconn.PgConn) error {
		if next != nil {
			if err := next(ctx, conn); err != nil {
				return err
			}
		}
		if _, err := conn.Exec(ctx, set).ReadAll(); err != nil {
			return fmt.Errorf("bounding the server's side of the connection (%s): %w", set, err)
		}
		return nil
	}
}
