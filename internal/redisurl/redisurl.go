// Package redisurl reads the Redis URL spool is given (--redis-url) and
// makes the go-redis clients of it, so that progress fan-out
// (progress/redis) and the shared rate budgets (ratelimit/redisrate)
// reach the same Redis the same way (docs/CONFIG.md, "Redis").
//
// A URL names one of three things:
//
//   - One server, as go-redis's ParseURL reads it: redis://, rediss:// or
//     unix://. A managed Redis whose endpoint follows its primary across a
//     failover (a DNS name or a moving IP) is one of these.
//   - A primary that Redis Sentinel watches, as go-redis's
//     ParseFailoverURL reads it: the URL's host and each addr parameter
//     are sentinels, master_name names the primary, the URL's user and
//     password are the sentinels' and the username and password
//     parameters the primary's. Connections go to whichever server the
//     sentinels name primary, and after a failover to the new one.
//   - A Redis Cluster, as go-redis's ParseClusterURL reads it: the URL's
//     host, and each addr parameter, are nodes to learn the cluster from
//     (a managed cluster's configuration endpoint is one). Each command
//     goes to the node that holds its key's slot.
//
// The parameter master_name makes a URL a sentinel URL: it means nothing
// to a server. A URL with addr parameters and no master_name is a
// cluster's, and so is a one-server URL whose server says it is a node of
// a cluster: Open asks it.
package redisurl

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

const (
	// sentinelParam is the query parameter that makes a URL a sentinel URL.
	sentinelParam = "master_name"
	// addrParam adds a sentinel's or a cluster node's address.
	addrParam = "addr"
)

// URL is a parsed Redis URL: one server, a primary found through
// sentinels, or a cluster. Exactly one of its fields is set.
type URL struct {
	single   *goredis.Options         // one server
	sentinel *goredis.FailoverOptions // a primary found through sentinels
	cluster  *goredis.ClusterOptions  // a Redis Cluster
	// roots are the authorities of Settings.CAFile, nil for the system's.
	roots *x509.CertPool
}

// Settings are what spool is told about its Redis besides the URL.
type Settings struct {
	// CAFile names a PEM file of the certificate authorities a rediss://
	// URL's servers are checked against, instead of the system's: a
	// managed Redis whose certificates a private authority signs (Google's
	// Memorystore, say). Empty means the system's.
	CAFile string
}

// Parse reads rawURL with s. It fails if rawURL is not a Redis URL of any
// kind, names master_name without a value, or s.CAFile cannot be read or
// holds no certificate, or is given for a URL without TLS; the error
// never holds the URL's passwords. A one-server URL may turn out to be a
// cluster node's: Open asks.
func Parse(rawURL string, s Settings) (*URL, error) {
	u, err := parse(rawURL)
	if err != nil || s.CAFile == "" {
		return u, err
	}
	if u.tlsConfig() == nil {
		return nil, fmt.Errorf("redis CA file %s: the redis URL does not use TLS (rediss://)", s.CAFile)
	}
	roots, err := readCAFile(s.CAFile)
	if err != nil {
		return nil, err
	}
	u.trust(roots)
	return u, nil
}

// maxCAFile bounds a CA file: a system's whole bundle is a few hundred
// KiB, and a path to something endless (/dev/zero) must not be read on.
const maxCAFile = 4 << 20

// readCAFile reads the authorities of a PEM file of at most maxCAFile.
func readCAFile(name string) (*x509.CertPool, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("redis CA file: %w", err)
	}
	defer f.Close()
	pem, err := io.ReadAll(io.LimitReader(f, maxCAFile+1))
	if err != nil {
		return nil, fmt.Errorf("redis CA file: %w", err)
	}
	if len(pem) > maxCAFile {
		return nil, fmt.Errorf("redis CA file %s is over %d MiB: not a file of certificates", name, maxCAFile>>20)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("redis CA file %s holds no PEM certificate", name)
	}
	return roots, nil
}

// tlsConfig returns the TLS settings go-redis read from the URL, nil for
// a URL without TLS.
func (u *URL) tlsConfig() *tls.Config {
	switch {
	case u.sentinel != nil:
		return u.sentinel.TLSConfig
	case u.cluster != nil:
		return u.cluster.TLSConfig
	}
	return u.single.TLSConfig
}

// trust makes the URL check its servers against roots (nil: the
// system's), in the TLS settings its clients share, and remembers them for
// the URL read again as a cluster's (Open).
func (u *URL) trust(roots *x509.CertPool) {
	u.roots = roots
	if c := u.tlsConfig(); c != nil && roots != nil {
		c.RootCAs = roots
	}
}

func parse(rawURL string) (*URL, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("invalid redis URL: %v", withoutURL(err))
	}
	q := u.Query()
	switch {
	case q.Has(sentinelParam):
		if u.Scheme == "unix" {
			return nil, errors.New("invalid redis URL: sentinels are reached over TCP (redis:// or rediss://), not unix://")
		}
		o, err := goredis.ParseFailoverURL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("invalid redis sentinel URL: %v", withoutURL(err))
		}
		if o.MasterName == "" {
			return nil, fmt.Errorf("invalid redis sentinel URL: %s is empty; it names the primary the sentinels watch", sentinelParam)
		}
		return &URL{sentinel: o}, nil
	case q.Has(addrParam):
		return parseCluster(rawURL, u)
	}
	o, err := goredis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("invalid redis URL: %v", withoutURL(err))
	}
	return &URL{single: o}, nil
}

// parseCluster reads rawURL (u parsed) as a cluster's.
func parseCluster(rawURL string, u *url.URL) (*URL, error) {
	if u.Scheme == "unix" {
		return nil, errors.New("invalid redis cluster URL: a cluster's nodes are reached over TCP (redis:// or rediss://), not unix://")
	}
	// A cluster has database 0 only, and go-redis's cluster URL has no
	// path: a database the URL names must not be dropped unsaid.
	if db := strings.Trim(u.Path, "/"); db != "" && db != "0" {
		return nil, fmt.Errorf("invalid redis cluster URL: database %q: a Redis Cluster has database 0 only", db)
	}
	o, err := goredis.ParseClusterURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("invalid redis cluster URL: %v", withoutURL(err))
	}
	return &URL{cluster: o}, nil
}

// Open reads rawURL with s as Parse does and, if it names one server,
// asks that server whether it is a node of a Redis Cluster (INFO, bounded
// by ctx): if it is, the URL is read again as a cluster's, the server a node to
// learn the others from; if the server refuses to say, the URL stays
// one server's. It fails as Parse does, if the server does not answer
// within ctx (naming its address, never the URL), or if the URL cannot
// be a cluster's (a database other than 0, say).
func Open(ctx context.Context, rawURL string, s Settings) (*URL, error) {
	u, err := Parse(rawURL, s)
	if err != nil || u.single == nil {
		return u, err
	}
	// Asked on database 0: a cluster node refuses to select another.
	probe := *u.single
	probe.DB = 0
	c := (&URL{single: &probe}).NewClient(Tuning{ContextTimeout: true})
	defer c.Close()
	info, err := c.Info(ctx, "cluster").Result()
	if rerr := goredis.Error(nil); errors.As(err, &rerr) &&
		(strings.HasPrefix(rerr.Error(), "NOPERM") || strings.HasPrefix(rerr.Error(), "ERR unknown command")) {
		// Redis refused the question (an ACL user without INFO, a
		// service that renamed it): the URL is taken as it reads.
		return u, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reaching redis at %s: %w", u.Where(), err)
	}
	if !strings.Contains(info, "cluster_enabled:1") {
		return u, nil
	}
	// The database may be the URL's path or its db parameter.
	if u.single.DB != 0 {
		return nil, fmt.Errorf("invalid redis cluster URL: database %d: a Redis Cluster has database 0 only", u.single.DB)
	}
	parsed, _ := url.Parse(rawURL) // Parse read it already
	cu, err := parseCluster(rawURL, parsed)
	if err != nil {
		return nil, err
	}
	cu.trust(u.roots)
	return cu, nil
}

// withoutURL unwraps a url.Error, which repeats the whole URL, password
// included.
func withoutURL(err error) error {
	if ue := (*url.Error)(nil); errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// Kind says what the URL names: "server", "sentinel" or "cluster".
func (u *URL) Kind() string {
	switch {
	case u.sentinel != nil:
		return "sentinel"
	case u.cluster != nil:
		return "cluster"
	}
	return "server"
}

// Where names what the URL reaches, for messages: the server's address,
// the primary's name and its sentinels', or the cluster's nodes given.
// It holds no password.
func (u *URL) Where() string {
	switch {
	case u.sentinel != nil:
		return fmt.Sprintf("primary %q through sentinels %s", u.sentinel.MasterName, strings.Join(u.sentinel.SentinelAddrs, ", "))
	case u.cluster != nil:
		return "cluster of " + strings.Join(u.cluster.Addrs, ", ")
	}
	return u.single.Addr
}

// Tuning is what a caller sets on its client, whichever kind of URL it
// has. The URL's own settings stay where Tuning leaves them at zero.
type Tuning struct {
	// ContextTimeout makes go-redis honour a context's deadline while it
	// waits for a reply (go-redis's ContextTimeoutEnabled).
	ContextTimeout bool
	// OneTry, when not zero, gives each command one try and bounds its
	// dial (one dial), reply, write and wait for a connection by OneTry:
	// for a caller that would rather go on without Redis than wait for it.
	OneTry time.Duration
}

// NewClient returns a client of the URL's server, primary or cluster,
// tuned. It does no I/O: the first command connects. For a sentinel URL
// that first asks the sentinels which server is primary, and the client
// follows the sentinels' announcements of a new one (the pool's
// connections to the old one are closed then; a subscription's only when
// it is lost: see WatchPrimary). A cluster's client learns the nodes and their slots from the
// first node that answers, and again when a node redirects a command.
func (u *URL) NewClient(t Tuning) goredis.UniversalClient {
	switch {
	case u.sentinel != nil:
		o := *u.sentinel
		t.apply(&o.ContextTimeoutEnabled, &o.MaxRetries, &o.DialerRetries, &o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout)
		return goredis.NewFailoverClient(&o)
	case u.cluster != nil:
		o := *u.cluster
		t.apply(&o.ContextTimeoutEnabled, &o.MaxRetries, &o.DialerRetries, &o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout)
		return goredis.NewClusterClient(&o)
	}
	o := *u.single
	t.apply(&o.ContextTimeoutEnabled, &o.MaxRetries, &o.DialerRetries, &o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout)
	return goredis.NewClient(&o)
}

// apply sets t on the fields of the same names in go-redis's Options,
// FailoverOptions and ClusterOptions, which share them but no type.
func (t Tuning) apply(contextTimeout *bool, retries, dialerRetries *int, timeouts ...*time.Duration) {
	if t.ContextTimeout {
		*contextTimeout = true
	}
	if t.OneTry > 0 {
		*retries, *dialerRetries = -1, 1
		for _, d := range timeouts {
			*d = t.OneTry
		}
	}
}

// LogTo sends what go-redis logs itself (a dial that failed, the
// primary a sentinel names, a cluster's map of slots it could not read)
// to log, at Info, tagged component=go-redis: go-redis wrote plain lines
// to stderr, which a reader of a JSON log could not parse. Info, not
// Warn, since go-redis gives them no level, some are news rather than
// trouble, and spool warns of an outage in its own words ("redis
// progress connection lost", "rate limits held per replica"). go-redis
// has one logger for the whole process, so serve sets it once, as it
// starts.
func LogTo(log *slog.Logger) { goredis.SetLogger(libraryLog{log}) }

// libraryLog is go-redis's logger on a slog.Logger.
type libraryLog struct{ log *slog.Logger }

func (l libraryLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.InfoContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
}
