//go:build unix

package auth

import (
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/spoolhq/spool/internal/auth/oidctest"
)

// BenchmarkCachingVerifier measures a token's check by the Verifier and
// by a CachingVerifier that has seen it, in the same run, for spool's
// tokens and a provider's of each algorithm (go test -bench
// CachingVerifier ./internal/auth/). It reports each one's CPU time per
// check (the process's, measured over the loop) and their ratio.
func BenchmarkCachingVerifier(b *testing.B) {
	p := oidctest.Start(b)
	oidc, err := NewOIDCVerifier(b.Context(), OIDCConfig{Issuer: p.Issuer(), Audience: oidctest.Audience}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(oidc.Close)
	own := newIssuer(b, testSecret, time.Now())
	ownToken, err := own.Issue("alice", time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	v := Verifier{Own: own, OIDC: oidc}
	for _, tc := range []struct{ name, token string }{
		{"spool-HS256", ownToken},
		{"provider-RS256", p.Token(jwt.SigningMethodRS256, "dave")},
		{"provider-ES256", p.Token(jwt.SigningMethodES256, "dave")},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c, err := NewCachingVerifier(v, 16)
			if err != nil {
				b.Fatal(err)
			}
			ctx := b.Context()
			check := func(verify func() (string, error)) time.Duration {
				start := processCPU(b)
				for range b.N {
					if _, err := verify(); err != nil {
						b.Fatal(err)
					}
				}
				return (processCPU(b) - start) / time.Duration(b.N)
			}
			uncached := check(func() (string, error) { return v.Verify(ctx, tc.token) })
			cached := check(func() (string, error) { return c.Verify(ctx, tc.token) })
			b.ReportMetric(float64(uncached.Nanoseconds()), "verifier-cpu-ns/check")
			b.ReportMetric(float64(cached.Nanoseconds()), "cached-cpu-ns/check")
			b.ReportMetric(float64(cached)/float64(uncached), "cached/verifier")
		})
	}
}

// processCPU returns the CPU time this process has used.
func processCPU(b *testing.B) time.Duration {
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
		b.Fatal(err)
	}
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}
