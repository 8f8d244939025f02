package redisrate_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/spoolhq/spool/internal/eventually"
	"github.com/spoolhq/spool/internal/progress/redis/redistest"
	"github.com/spoolhq/spool/internal/ratelimit"
	"github.com/spoolhq/spool/internal/ratelimit/redisrate"
)

// Two limiters on one Redis and one prefix (two replicas) share a
// budget; another prefix and another key have budgets of their own.
func TestSharedBudget(t *testing.T) {
	url := redistest.URL(t)
	prefix := redistest.Prefix(t)
	rate := ratelimit.Rate{Events: 1, Per: time.Minute, Burst: 2}
	var replicas []*redisrate.Limiter
	for range 2 {
		c, err := redisrate.Open(url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		l, err := c.Limiter(prefix, rate)
		if err != nil {
			t.Fatal(err)
		}
		replicas = append(replicas, l)
	}
	ctx := context.Background()
	for i, l := range replicas {
		if wait, err := l.Allow(ctx, "alice"); err != nil || wait != 0 {
			t.Fatalf("request %d: wait %v, err %v; want allowed", i+1, wait, err)
		}
	}
	wait, err := replicas[0].Allow(ctx, "alice")
	if err != nil || wait <= 0 || wait > time.Minute {
		t.Fatalf("request over the shared burst: wait %v, err %v; want refused for up to a minute", wait, err)
	}
	if wait, err := replicas[1].Allow(ctx, "bob"); err != nil || wait != 0 {
		t.Errorf("another key: wait %v, err %v; want allowed", wait, err)
	}
	c, err := redisrate.Open(url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	other, err := c.Limiter(redistest.Prefix(t), rate)
	if err != nil {
		t.Fatal(err)
	}
	if wait, err := other.Allow(ctx, "alice"); err != nil || wait != 0 {
		t.Errorf("another prefix: wait %v, err %v; want allowed", wait, err)
	}
	if _, err := c.Limiter(prefix, ratelimit.Rate{Events: 1, Per: time.Second}); err == nil {
		t.Error("a rate without a burst was taken")
	}
}

// Through a sentinel URL, the replicas' budgets move to the new primary
// when the old one dies, and are shared there again.
func TestBudgetFollowsAFailover(t *testing.T) {
	t.Parallel()
	s := redistest.StartSentinels(t)
	rate := ratelimit.Rate{Events: 1, Per: time.Minute, Burst: 2}
	var replicas []*redisrate.Limiter
	for range 2 {
		c, err := redisrate.Open(s.URL(""))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		l, err := c.Limiter("spool-test:", rate)
		if err != nil {
			t.Fatal(err)
		}
		replicas = append(replicas, l)
	}
	ctx := context.Background()
	if wait, err := replicas[0].Allow(ctx, "alice"); err != nil || wait != 0 {
		t.Fatalf("before the failover: wait %v, err %v; want allowed", wait, err)
	}
	was := s.Primary(t)
	was.Kill()
	s.AwaitFailover(t, was)
	for i, l := range replicas {
		eventually.Holds(t, fmt.Sprintf("replica %d's budget check answered after the failover", i+1), func() bool {
			wait, err := l.Allow(ctx, "bob")
			return err == nil && wait == 0
		})
	}
	if wait, err := replicas[0].Allow(ctx, "bob"); err != nil || wait <= 0 {
		t.Errorf("over the shared burst after the failover: wait %v, err %v; want refused", wait, err)
	}
}

// A Redis that is not there fails the check, without retrying.
func TestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c, err := redisrate.Open("redis://" + addr + "/0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	l, err := c.Limiter("spool-test:", ratelimit.Rate{Events: 1, Per: time.Second, Burst: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Allow(context.Background(), "alice"); err == nil {
		t.Fatal("Allow against no Redis: no error")
	}
	if _, err := redisrate.Open("http://not-redis"); err == nil {
		t.Error("Open took a URL that is not redis://")
	}
}
