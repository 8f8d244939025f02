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
	"github.com/spoolhq/spool/internal/redisurl"
)

// parse reads rawURL as spool does, without asking Redis anything.
func parse(tb testing.TB, rawURL string) *redisurl.URL {
	tb.Helper()
	u, err := redisurl.Parse(rawURL, redisurl.Settings{})
	if err != nil {
		tb.Fatal(err)
	}
	return u
}

// Two limiters on one Redis and one prefix (two replicas) share a
// budget; another prefix and another key have budgets of their own. On
// one server and on a cluster, whose keys are spread over its nodes.
func TestSharedBudget(t *testing.T) {
	t.Run("server", func(t *testing.T) { sharedBudget(t, parse(t, redistest.URL(t))) })
	t.Run("cluster", func(t *testing.T) {
		c := redistest.StartCluster(t, 3, 0)
		u, err := redisurl.Open(t.Context(), c.URL(), redisurl.Settings{})
		if err != nil || u.Kind() != "cluster" {
			t.Fatalf("redisurl.Open(%s): %v, %v; want a cluster", c.URL(), u, err)
		}
		sharedBudget(t, u)
		// Keys of every node: a client of one node would be redirected.
		rc := redisrate.New(u)
		t.Cleanup(func() { rc.Close() })
		l, err := rc.Limiter(redistest.Prefix(t), ratelimit.Rate{Events: 1, Per: time.Minute, Burst: 1})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 30 {
			if wait, err := l.Allow(t.Context(), fmt.Sprintf("user%d", i)); err != nil || wait != 0 {
				t.Errorf("user%d on the cluster: wait %v, err %v; want allowed", i, wait, err)
			}
		}
	})
}

func sharedBudget(t *testing.T, u *redisurl.URL) {
	prefix := redistest.Prefix(t)
	rate := ratelimit.Rate{Events: 1, Per: time.Minute, Burst: 2}
	var replicas []*redisrate.Limiter
	for range 2 {
		c := redisrate.New(u)
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
	c := redisrate.New(u)
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
		c := redisrate.New(parse(t, s.URL()))
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
	c := redisrate.New(parse(t, "redis://"+addr+"/0"))
	defer c.Close()
	l, err := c.Limiter("spool-test:", ratelimit.Rate{Events: 1, Per: time.Second, Burst: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Allow(context.Background(), "alice"); err == nil {
		t.Fatal("Allow against no Redis: no error")
	}
}
