// Package redistest gives tests the shared test Redis, named by
// SPOOL_TEST_REDIS_URL, and channel prefixes of their own on it, so tests
// run in parallel without hearing each other. Where no Redis answers,
// tests skip with a message saying so, except in CI (CI=true), where a
// missing Redis fails them.
//
// It also runs Redis processes of a test's own, from the machine's
// redis-server, for what the shared one cannot be made to do: a server
// to kill and start again (StartServer), one that speaks only TLS with a
// private authority's certificate (StartTLSServer), a primary with
// replicas that Sentinel fails over (StartSentinels), and a Redis Cluster
// whose masters fail over to their replicas (StartCluster).
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	neturl "net/url"
	"os"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/spoolhq/spool/internal/required"
)

// EnvURL names the variable holding the URL of the test Redis.
const EnvURL = "SPOOL_TEST_REDIS_URL"

// DefaultURL is the test Redis when EnvURL is unset.
const DefaultURL = "redis://127.0.0.1:6379/0"

// URL returns the test Redis's URL once it answers a PING. If it does not,
// the test is skipped, or failed when CI=true.
func URL(tb testing.TB) string {
	tb.Helper()
	url, _ := probe(tb)
	return url
}

// Options returns the test Redis's options, as goredis.ParseURL reads
// URL, once it answers; it skips or fails the test as URL does.
func Options(tb testing.TB) *goredis.Options {
	tb.Helper()
	_, opt := probe(tb)
	return opt
}

func probe(tb testing.TB) (string, *goredis.Options) {
	tb.Helper()
	url := os.Getenv(EnvURL)
	if url == "" {
		url = DefaultURL
	}
	opt, err := goredis.ParseURL(url)
	if err != nil {
		// url.Error repeats the whole URL, password included.
		if ue := (*neturl.Error)(nil); errors.As(err, &ue) {
			err = ue.Err
		}
		tb.Fatalf("%s is not a Redis URL: %v", EnvURL, err)
	}
	p := *opt
	p.MaxRetries, p.DialerRetries = -1, 1
	c := goredis.NewClient(&p)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		// The address, not the URL: the URL may hold a password.
		required.Missing(tb, "Redis at %s does not answer (%v); start it or point %s at one", opt.Addr, err, EnvURL)
	}
	return url, opt
}

// Prefix returns a channel prefix no other test uses.
func Prefix(tb testing.TB) string {
	tb.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return "spool-test-" + hex.EncodeToString(b) + ":"
}
