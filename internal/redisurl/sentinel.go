package redisurl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

const (
	// switchChannel is where a sentinel announces a new primary, as
	// "<name> <old ip> <old port> <new ip> <new port>".
	switchChannel = "+switch-master"
	// watchTimeout bounds each question to a sentinel, and is how long the
	// watch listens before it asks the sentinel again which server is
	// primary: that answer proves the sentinel is still there, and
	// catches an announcement the watch did not hear.
	watchTimeout = 2 * time.Second
	// The watch tries the next sentinel after a failure, backing off from
	// watchMinBackoff to watchMaxBackoff.
	watchMinBackoff = 100 * time.Millisecond
	watchMaxBackoff = 2 * time.Second
)

// WatchPrimary calls moved with the primary's address ("host:port") each
// time the sentinels name a new one, until ctx ends. For a URL that is not
// a sentinel URL it returns at once.
//
// A client of the URL moves its pool's connections to the new primary by
// itself, but go-redis leaves a subscription's where they are, and a
// subscription on the old primary hears nothing published on the new
// one. The old primary ends its connections only when a sentinel demotes
// it, which in a planned failover happens when a sentinel next asks it
// for its state (up to 10 s later), and never while it cannot reach it.
// moved is the cue to subscribe again.
//
// The watch listens to one sentinel at a time (the URL's first, then the
// next after a failure, including those the sentinels it reached know of
// besides the URL's, as go-redis's client finds them too) and asks it
// every watchTimeout which server is primary, so it hears of a new
// primary within that even if an announcement is lost. The first primary
// it learns is not a move. It logs to log when it loses its sentinel and
// when it has one again.
func (u *URL) WatchPrimary(ctx context.Context, log *slog.Logger, moved func(addr string)) {
	if u.sentinel == nil {
		return
	}
	w := primaryWatch{opts: u.sentinel, log: log, moved: moved, sentinels: slices.Clone(u.sentinel.SentinelAddrs)}
	backoff := watchMinBackoff
	for i := 0; ; i++ {
		sentinel := w.sentinels[i%len(w.sentinels)]
		heard, err := w.watch(ctx, sentinel)
		if ctx.Err() != nil {
			return
		}
		if heard {
			backoff = watchMinBackoff
		}
		if !w.lost {
			w.lost = true
			log.Warn("a sentinel failed while watched for a new redis primary; trying the next", "sentinel", sentinel, "err", err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, watchMaxBackoff)
	}
}

// primaryWatch is the state of one WatchPrimary.
type primaryWatch struct {
	opts    *goredis.FailoverOptions
	log     *slog.Logger
	moved   func(addr string)
	primary string // as last heard; empty until the first answer
	lost    bool   // the last sentinel watched failed, and no other answered since
	// sentinels are the URL's, then those they named, in the order found.
	sentinels []string
}

// watch listens to the sentinel at addr until it fails or ctx ends,
// reporting whether the sentinel answered at all.
func (w *primaryWatch) watch(ctx context.Context, addr string) (heard bool, err error) {
	c := goredis.NewSentinelClient(&goredis.Options{
		Addr:     addr,
		Username: w.opts.SentinelUsername,
		Password: w.opts.SentinelPassword,
		// The URL's TLS settings are the sentinels' as well as the
		// servers', as go-redis's own sentinel clients take them.
		TLSConfig:             w.opts.TLSConfig,
		DialTimeout:           watchTimeout,
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
		DialerRetries:         1,
		PoolSize:              2,
	})
	defer c.Close()
	// A read in progress ends when its connection closes, not with ctx.
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()

	sub := c.Subscribe(ctx)
	defer sub.Close()
	qctx, cancel := context.WithTimeout(ctx, watchTimeout)
	err = sub.Subscribe(qctx, switchChannel)
	if err == nil {
		// The sentinel has subscribed once it says so: only then does
		// asking it for the primary leave no gap an announcement could
		// fall into.
		_, err = sub.ReceiveTimeout(qctx, 0)
	}
	cancel()
	if err != nil {
		return false, fmt.Errorf("subscribing to %s: %w", switchChannel, err)
	}
	w.discover(ctx, c)
	for {
		if err := w.ask(ctx, c, addr, heard); err != nil {
			return heard, err
		}
		heard = true
		rctx, cancel := context.WithTimeout(ctx, 2*watchTimeout)
		msg, err := sub.ReceiveTimeout(rctx, watchTimeout)
		cancel()
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			continue // quiet: ask again
		case err != nil:
			return heard, err
		}
		if m, ok := msg.(*goredis.Message); ok && m.Channel == switchChannel {
			if primary, ok := switchedTo(m.Payload, w.opts.MasterName); ok {
				w.saw(primary)
			}
		}
	}
}

// switchedTo reads a +switch-master announcement, "<name> <old ip>
// <old port> <new ip> <new port>", and returns the new primary's address
// if it is name's: a sentinel watches other primaries too, and a payload
// of another shape is none of the watch's business.
func switchedTo(payload, name string) (addr string, ok bool) {
	f := strings.Fields(payload)
	if len(f) != 5 || f[0] != name {
		return "", false
	}
	return net.JoinHostPort(f[3], f[4]), true
}

// discover adds the sentinels that c's sentinel knows watch the primary
// to those to try. A sentinel that cannot say is no failure of the watch.
func (w *primaryWatch) discover(ctx context.Context, c *goredis.SentinelClient) {
	qctx, cancel := context.WithTimeout(ctx, watchTimeout)
	defer cancel()
	others, err := c.Sentinels(qctx, w.opts.MasterName).Result()
	if err != nil {
		return
	}
	for _, o := range others {
		if o["ip"] == "" || o["port"] == "" {
			continue
		}
		if addr := net.JoinHostPort(o["ip"], o["port"]); !slices.Contains(w.sentinels, addr) {
			w.sentinels = append(w.sentinels, addr)
		}
	}
}

// ask asks the sentinel at addr which server is primary now. The first
// time it answers on a connection (heard false) ask logs that the watch
// is on it, and which sentinels it knows: at Info after a loss, else at
// Debug.
func (w *primaryWatch) ask(ctx context.Context, c *goredis.SentinelClient, addr string, heard bool) error {
	qctx, cancel := context.WithTimeout(ctx, watchTimeout)
	defer cancel()
	hostPort, err := c.GetMasterAddrByName(qctx, w.opts.MasterName).Result()
	if err != nil {
		return fmt.Errorf("asking for primary %q: %w", w.opts.MasterName, err)
	}
	if len(hostPort) != 2 {
		return fmt.Errorf("asking for primary %q: the sentinel answered %q", w.opts.MasterName, hostPort)
	}
	if !heard {
		level := slog.LevelDebug
		if w.lost {
			level, w.lost = slog.LevelInfo, false
		}
		w.log.Log(ctx, level, "watching a sentinel for a new redis primary", "sentinel", addr, "sentinels", w.sentinels)
	}
	w.saw(net.JoinHostPort(hostPort[0], hostPort[1]))
	return nil
}

// saw records primary as the primary, and calls moved if it is a new one.
func (w *primaryWatch) saw(primary string) {
	if primary == w.primary {
		return
	}
	first := w.primary == ""
	w.primary = primary
	if !first {
		w.moved(primary)
	}
}
