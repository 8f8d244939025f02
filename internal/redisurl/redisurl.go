// Package redisurl reads the Redis URL spool is given (--redis-url) and
// makes the go-redis clients of it, so that progress fan-out
// (progress/redis) and the shared rate budgets (ratelimit/redisrate)
// reach the same Redis the same way (docs/CONFIG.md, "Redis").
//
// A URL names one of two things:
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
//
// The parameter master_name tells them apart: it means nothing to a
// single server, and a sentinel URL needs it.
package redisurl

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// sentinelParam is the query parameter that makes a URL a sentinel URL.
const sentinelParam = "master_name"

// URL is a parsed Redis URL: one server, or a primary found through
// sentinels.
type URL struct {
	single   *goredis.Options         // set for one server
	sentinel *goredis.FailoverOptions // set for a primary found through sentinels
}

// Parse reads rawURL. It fails if rawURL is not a Redis URL of either
// kind, or names master_name without a value; the error never holds the
// URL's passwords.
func Parse(rawURL string) (*URL, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("invalid redis URL: %v", withoutURL(err))
	}
	if !u.Query().Has(sentinelParam) {
		o, err := goredis.ParseURL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("invalid redis URL: %v", withoutURL(err))
		}
		return &URL{single: o}, nil
	}
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
}

// withoutURL unwraps a url.Error, which repeats the whole URL, password
// included.
func withoutURL(err error) error {
	if ue := (*url.Error)(nil); errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// Sentinel reports whether the URL names a primary found through
// sentinels.
func (u *URL) Sentinel() bool { return u.sentinel != nil }

// Where names what the URL reaches, for messages: the server's address,
// or the primary's name and its sentinels'. It holds no password.
func (u *URL) Where() string {
	if u.sentinel != nil {
		return fmt.Sprintf("primary %q through sentinels %s", u.sentinel.MasterName, strings.Join(u.sentinel.SentinelAddrs, ", "))
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

// NewClient returns a client of the URL's server or primary, tuned. It
// does no I/O: the first command connects. For a sentinel URL that first
// asks the sentinels which server is primary, and the client follows the
// sentinels' announcements of a new one (a connection to the old one is
// closed when it is next taken, or when its read fails).
func (u *URL) NewClient(t Tuning) *goredis.Client {
	if u.sentinel != nil {
		o := *u.sentinel
		t.apply(&o.ContextTimeoutEnabled, &o.MaxRetries, &o.DialerRetries, &o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout)
		return goredis.NewFailoverClient(&o)
	}
	o := *u.single
	t.apply(&o.ContextTimeoutEnabled, &o.MaxRetries, &o.DialerRetries, &o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout)
	return goredis.NewClient(&o)
}

// apply sets t on the fields of the same names in go-redis's Options or
// FailoverOptions, which share them but no type.
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
