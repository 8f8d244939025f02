package auth

import (
	"context"
	"crypto"
	"crypto/sha256"
	"time"

	"github.com/golang-jwt/jwt/v5"
	lru "github.com/hashicorp/golang-lru/v2"
)

// CachingVerifier is a Verifier that remembers the tokens it accepted, so
// a client that sends the same bearer token with each request has its
// signature checked once a minute instead of every time. The signature is
// most of what authenticating a control request costs spool: 11 µs for
// spool's HS256, 49 µs for a provider's RS256, 93 µs for ES256, against
// 150–250 µs for a whole confirmChunk; remembered, 0.4–2.3 µs
// (docs/BENCHMARKS.md, "verified tokens remembered").
//
// A remembered token is answered as the Verifier answered it until the
// earlier of its own expiry and a minute after it was checked: the expiry
// because the Verifier refuses it from then on; the minute so that what
// the Verifier would learn meanwhile reaches tokens already seen. A
// provider's token is remembered only while the key that signed it is in
// the provider's key set as spool last fetched it, so a key the provider
// withdraws refuses its tokens as soon as spool knows, as without the
// cache; a token that names no key ("kid") is not remembered. Only
// accepted tokens are remembered: a refused one is checked each time it
// comes. Tokens are kept by their SHA-256, so a provider's tokens of up
// to 16 KiB take no more room than spool's.
type CachingVerifier struct {
	verifier Verifier
	tokens   *lru.Cache[[sha256.Size]byte, verifiedToken]
	now      func() time.Time // time.Now except in tests
}

// verifiedToken is what a CachingVerifier remembers of an accepted token.
type verifiedToken struct {
	subject string
	until   time.Time
	// validUntil is Verifier.ValidUntil's answer, zero for none: a
	// websocket asks it of the token it just authenticated, and reading
	// it here spares parsing the token again.
	validUntil time.Time
	// kid and key name the provider's key that signed the token; kid is
	// empty for spool's own tokens, whose secret is the process's for its
	// whole life.
	kid string
	key crypto.PublicKey
}

// verifiedTokenLife is how long an accepted token is answered without the
// Verifier, at most.
const verifiedTokenLife = time.Minute

// NewCachingVerifier returns a CachingVerifier of v that remembers up to
// size tokens, forgetting the least recently used first.
func NewCachingVerifier(v Verifier, size int) (*CachingVerifier, error) {
	tokens, err := lru.New[[sha256.Size]byte, verifiedToken](size)
	if err != nil {
		return nil, err
	}
	return &CachingVerifier{verifier: v, tokens: tokens, now: time.Now}, nil
}

// Verify returns the subject token vouches for, or an error wrapping
// ErrInvalidToken, as Verifier.Verify does.
func (c *CachingVerifier) Verify(ctx context.Context, token string) (string, error) {
	if len(token) > maxOIDCTokenLen {
		// Refused for its size, before anything hashes or parses it.
		return c.verifier.Verify(ctx, token)
	}
	id := sha256.Sum256([]byte(token))
	now := c.now()
	if v, ok := c.tokens.Get(id); ok {
		if now.Before(v.until) && c.signedByHeldKey(ctx, v) {
			return v.subject, nil
		}
		c.tokens.Remove(id)
	}
	// The route is Verifier.Verify's, taken here so that the token's
	// claims are read once. A provider's token, whose size was checked
	// above, is read before its check, for the key it names; spool's is
	// read only once its verifier, which checks a smaller size first, has
	// taken it.
	var (
		subject string
		err     error
		claims  jwt.RegisteredClaims
		kid     string
		parsed  bool
		before  crypto.PublicKey
	)
	provider := c.verifier.namesProvider(token)
	if provider {
		claims, kid, parsed = unverified(token)
		if kid != "" {
			before, _ = c.verifier.OIDC.key(ctx, kid)
		}
		subject, err = c.verifier.OIDC.Verify(ctx, token)
	} else {
		subject, err = c.verifier.Own.Verify(token)
		if err == nil {
			claims, kid, parsed = unverified(token)
		}
	}
	if err != nil {
		return "", err
	}
	if !parsed {
		return subject, nil
	}
	v := verifiedToken{subject: subject, until: now.Add(verifiedTokenLife)}
	v.validUntil, _ = c.verifier.validUntil(claims, provider)
	if claims.ExpiresAt != nil && claims.ExpiresAt.Before(v.until) {
		v.until = claims.ExpiresAt.Time
	}
	if provider {
		// The key is read before and after the signature's check, and the
		// token remembered only if it was the same key both times: a key
		// set refreshed in between could otherwise pair the token with a
		// key that did not sign it.
		after, ok := c.verifier.OIDC.key(ctx, kid)
		if kid == "" || !ok || !sameKey(before, after) {
			return subject, nil
		}
		v.kid, v.key = kid, after
	}
	c.tokens.Add(id, v)
	return subject, nil
}

// ValidUntil is Verifier.ValidUntil, for a token Verify accepted: read
// from what Verify remembered of it where it can be.
func (c *CachingVerifier) ValidUntil(token string) (time.Time, bool) {
	if len(token) <= maxOIDCTokenLen {
		if v, ok := c.tokens.Peek(sha256.Sum256([]byte(token))); ok && !v.validUntil.IsZero() {
			return v.validUntil, true
		}
	}
	return c.verifier.ValidUntil(token)
}

// signedByHeldKey reports whether the key that signed a remembered token
// is still the key of its id in the provider's set (always true for
// spool's own tokens).
func (c *CachingVerifier) signedByHeldKey(ctx context.Context, v verifiedToken) bool {
	if v.kid == "" {
		return true
	}
	key, ok := c.verifier.OIDC.key(ctx, v.kid)
	return ok && sameKey(v.key, key)
}

// sameKey reports whether a and b are the same public key.
func sameKey(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && b != nil && k.Equal(b)
}

// unverified returns a token's registered claims and its header's key id,
// read without checking anything, and whether they could be read: a token
// a verifier accepted may still have a claim of a type they cannot hold
// (a provider's numeric "sub", say), and is then not remembered.
func unverified(token string) (claims jwt.RegisteredClaims, kid string, ok bool) {
	parsed, _, err := jwt.NewParser().ParseUnverified(token, &claims)
	if err != nil {
		return jwt.RegisteredClaims{}, "", false
	}
	kid, _ = parsed.Header["kid"].(string)
	return claims, kid, true
}
