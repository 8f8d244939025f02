package auth

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/spoolhq/spool/internal/auth/oidctest"
)

// newCaching returns a CachingVerifier of v whose clock reads *now.
func newCaching(t *testing.T, v Verifier, now *time.Time) *CachingVerifier {
	t.Helper()
	c, err := NewCachingVerifier(v, 16)
	if err != nil {
		t.Fatal(err)
	}
	c.now = func() time.Time { return *now }
	return c
}

// A remembered token is answered without the Verifier until its expiry
// or for a minute, whichever comes first; then the Verifier decides.
func TestCachingVerifierRemembersUntilExpiryOrAMinute(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	own := newIssuer(t, testSecret, t0)
	short, err := own.Issue("alice", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	long, err := own.Issue("bob", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cacheNow := t0
	c := newCaching(t, Verifier{Own: own}, &cacheNow)
	for _, tok := range []string{short, long} {
		if _, err := c.Verify(ctx, tok); err != nil {
			t.Fatalf("first check: %v", err)
		}
	}
	// From here the Verifier refuses both (its clock is past both
	// expiries): an answer of "alice" or "bob" came from the cache.
	own.now = func() time.Time { return t0.Add(2 * time.Hour) }
	cacheNow = t0.Add(20 * time.Second)
	if got, err := c.Verify(ctx, short); err != nil || got != "alice" {
		t.Errorf("20 s after the check, before its expiry: got %q, %v; want alice from the cache", got, err)
	}
	cacheNow = t0.Add(30 * time.Second)
	if got, err := c.Verify(ctx, short); !errors.Is(err, ErrInvalidToken) || !errors.Is(err, jwt.ErrTokenExpired) {
		t.Errorf("at its expiry: got %q, %v; want the Verifier's expired refusal", got, err)
	}
	cacheNow = t0.Add(59 * time.Second)
	if got, err := c.Verify(ctx, long); err != nil || got != "bob" {
		t.Errorf("59 s after the check: got %q, %v; want bob from the cache", got, err)
	}
	cacheNow = t0.Add(time.Minute)
	if got, err := c.Verify(ctx, long); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("a minute after the check: got %q, %v; want the Verifier's refusal", got, err)
	}
}

// A refused token is not remembered: it is checked each time, so it is
// refused each time, and a different token of the same user is its own.
func TestCachingVerifierForgetsNothingItRefused(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	own := newIssuer(t, testSecret, t0)
	other := newIssuer(t, []byte("another secret of at least 32 bytes"), t0)
	forged, err := other.Issue("alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	now := t0
	c := newCaching(t, Verifier{Own: own}, &now)
	for i := range 3 {
		if got, err := c.Verify(ctx, forged); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("check %d of a token of another secret: got %q, %v; want ErrInvalidToken", i, got, err)
		}
	}
	// A token larger than any verifier takes (a hostile header) is
	// refused for its size, by a CachingVerifier as by the Verifier.
	huge := forged + strings.Repeat("A", maxOIDCTokenLen)
	for _, tok := range []string{"", "not.a.token", forged + "x", huge} {
		if got, err := c.Verify(ctx, tok); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("token %.40q (%d bytes): got %q, %v; want ErrInvalidToken", tok, len(tok), got, err)
		}
	}
	if n := c.tokens.Len(); n != 0 {
		t.Errorf("%d tokens remembered after refusals only, want 0", n)
	}
}

// A provider's token is remembered only while the key that signed it is
// in the key set spool holds: once a refetch has dropped a withdrawn key,
// the token is refused at once, as it is without the cache. A token that
// names no key is not remembered.
func TestCachingVerifierDropsTokensOfWithdrawnKeys(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	p := oidctest.Start(t)
	oidc, err := NewOIDCVerifier(ctx, OIDCConfig{Issuer: p.Issuer(), Audience: oidctest.Audience}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(oidc.Close)
	now := time.Now()
	c := newCaching(t, Verifier{Own: newIssuer(t, testSecret, t0), OIDC: oidc}, &now)

	before := p.Token(jwt.SigningMethodRS256, "dave")
	for i := range 2 {
		if _, err := c.Verify(ctx, before); err != nil {
			t.Fatalf("check %d of the current key's token: %v", i, err)
		}
	}
	if n := c.tokens.Len(); n != 1 {
		t.Errorf("%d tokens remembered after a provider's token, want 1", n)
	}

	// The provider rotates; a token of the new key makes spool refetch
	// the set, which drops the old key.
	p.Rotate(jwt.SigningMethodRS256)
	if _, err := c.Verify(ctx, p.Token(jwt.SigningMethodRS256, "dave")); err != nil {
		t.Fatalf("the rotated-in key's token: %v", err)
	}
	if got, err := c.Verify(ctx, before); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("the withdrawn key's remembered token: got %q, %v; want ErrInvalidToken", got, err)
	}

	// Signed by a published key, but naming none: accepted, not kept.
	key := p.Current(jwt.SigningMethodES256)
	noKid, err := jwt.NewWithClaims(key.Method, p.Claims("erin")).SignedString(key.Private)
	if err != nil {
		t.Fatal(err)
	}
	held := c.tokens.Len()
	if _, err := c.Verify(ctx, noKid); err != nil {
		t.Fatalf("a token without a key id: %v", err)
	}
	if n := c.tokens.Len(); n != held {
		t.Errorf("a token without a key id was remembered (%d tokens, want %d)", n, held)
	}
}
