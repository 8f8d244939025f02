// Package redisrate holds ratelimit budgets in Redis, so every replica
// draws on the same ones. It wraps github.com/go-redis/redis_rate (GCRA in
// a Lua script: one round trip per request, keys that expire by
// themselves once their bucket is full again).
package redisrate

import (
	"context"
	"fmt"
	"time"

	"github.com/go-redis/redis_rate/v10"
	goredis "github.com/redis/go-redis/v9"

	"github.com/spoolhq/spool/internal/ratelimit"
	"github.com/spoolhq/spool/internal/redisurl"
)

// Timeout bounds one budget check (and a connection attempt): a Redis
// that does not answer within it is taken for down, and the caller's
// ratelimit.Failover goes on without it.
const Timeout = 250 * time.Millisecond

// Client is a connection pool to the Redis holding the budgets.
type Client struct {
	rdb     goredis.UniversalClient
	limiter *redis_rate.Limiter
}

// New returns a pool of connections to the Redis u names
// (redisurl.Open). It does not wait for Redis to answer: budgets fail
// over to the process while it is away.
func New(u *redisurl.URL) *Client {
	// A budget check is worth one quick try: retrying or waiting on a
	// sick Redis would hold up the request it guards.
	rdb := u.NewClient(redisurl.Tuning{OneTry: Timeout})
	return &Client{rdb: rdb, limiter: redis_rate.NewLimiter(rdb)}
}

// Close closes the pool.
func (c *Client) Close() error { return c.rdb.Close() }

// Limiter returns the budget rate for keys under prefix (which also keeps
// deployments sharing one Redis apart).
func (c *Client) Limiter(prefix string, rate ratelimit.Rate) (*Limiter, error) {
	if err := rate.Valid(); err != nil {
		return nil, err
	}
	return &Limiter{c: c, prefix: prefix, limit: redis_rate.Limit{Rate: rate.Events, Period: rate.Per, Burst: rate.Burst}}, nil
}

// Limiter is one budget in Redis; it implements ratelimit.Limiter.
type Limiter struct {
	c      *Client
	prefix string
	limit  redis_rate.Limit
}

var _ ratelimit.Limiter = (*Limiter)(nil)

// Allow implements ratelimit.Limiter. It fails when Redis does not answer
// within Timeout.
func (l *Limiter) Allow(ctx context.Context, key string) (time.Duration, error) {
	res, err := l.c.limiter.Allow(ctx, l.prefix+key, l.limit)
	if err != nil {
		return 0, fmt.Errorf("ratelimit/redisrate: %w", err)
	}
	if res.Allowed > 0 {
		return 0, nil
	}
	if res.RetryAfter <= 0 {
		// Refused with no wait given: one token's time is the honest guess.
		return l.limit.Period / time.Duration(l.limit.Rate), nil
	}
	return res.RetryAfter, nil
}
