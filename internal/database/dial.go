package database

import (
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

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

// pgConnConfig parses rawURL as pgx does, and configures it.
func pgConnConfig(rawURL string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(rawURL)
	if err != nil {
		return nil, err // pgconn's ParseConfigError shows the URL without its password
	}
	return cfg, configure(cfg)
}

// configure sets what spool's PostgreSQL connections do in an outage,
// beyond what the URL says to pgx: they are dialled with the URL's
// tcp_user_timeout (DefaultTCPUserTimeout if it has none; 0 leaves the
// system's) and connect within the URL's connect_timeout or, if it has
// none, the same bound, since a connection unanswered that long meets
// the same outage; and one that a statement was refused on for being
// read-only is closed (readonly.go).
func configure(cfg *pgx.ConnConfig) error {
	if err := setDialer(cfg); err != nil {
		return err
	}
	cfg.Tracer = readOnlyCloser{}
	return nil
}

// setDialer takes tcp_user_timeout out of cfg's runtime parameters (pgx
// would send it to the server as a setting, which PostgreSQL refuses) and
// sets cfg's DialFunc, and its ConnectTimeout if the URL set none, as
// configure says.
func setDialer(cfg *pgx.ConnConfig) error {
	userTimeout := DefaultTCPUserTimeout
	if v, ok := cfg.RuntimeParams[tcpUserTimeoutParam]; ok {
		delete(cfg.RuntimeParams, tcpUserTimeoutParam)
		ms, err := strconv.ParseInt(v, 10, 32)
		if err != nil || ms < 0 {
			return fmt.Errorf("database: the database URL's %s=%q is not a whole number of milliseconds, 0 or more", tcpUserTimeoutParam, v)
		}
		userTimeout = time.Duration(ms) * time.Millisecond
	}
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
	return nil
}
