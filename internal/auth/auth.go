// Package auth issues and verifies the bearer tokens that identify spool's
// users, and loads the secret that signs them.
//
// Tokens are JWTs signed with HS256 carrying the issuer "spool", the user
// as subject, and issue and expiry times. Besides those, an OpenID Connect
// provider's RS256 and ES256 tokens can be accepted (OIDCVerifier). The
// package owns the token formats and their checks; it knows nothing about
// users beyond their names.
package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MinSecretSize is the shortest signing secret accepted, in bytes.
const MinSecretSize = 32

// issuer is the "iss" claim of every token.
const issuer = "spool"

// maxTokenLen bounds the work Verify does for a hostile token; ours are
// about 200 bytes.
const maxTokenLen = 4096

// ErrInvalidToken is wrapped by every error Verify returns, whatever the
// reason (malformed, wrong algorithm, bad signature, expired, bad subject);
// Refusal puts the reason into words.
var ErrInvalidToken = errors.New("auth: invalid token")

// Issuer mints and verifies tokens with one secret. It is safe for
// concurrent use.
type Issuer struct {
	secret []byte
	now    func() time.Time // time.Now except in tests
}

// NewIssuer returns an Issuer signing with secret, which it copies. It
// returns an error if secret is shorter than MinSecretSize bytes.
func NewIssuer(secret []byte) (*Issuer, error) {
	if len(secret) < MinSecretSize {
		return nil, fmt.Errorf("auth: secret is %d bytes, must be at least %d bytes", len(secret), MinSecretSize)
	}
	return &Issuer{secret: append([]byte(nil), secret...), now: time.Now}, nil
}

// Issue returns a token for subject that expires after ttl. It returns an
// error if subject is not valid (see ValidSubject) or ttl is under a
// second: a token's times are whole seconds, so a shorter one would be
// expired when issued.
func (i *Issuer) Issue(subject string, ttl time.Duration) (string, error) {
	if !ValidSubject(subject) {
		return "", fmt.Errorf("auth: invalid subject %.40q: want 1 to 128 of A-Z a-z 0-9 . _ @ -", subject)
	}
	if ttl < time.Second {
		return "", fmt.Errorf("auth: token lifetime %v must be at least 1s", ttl)
	}
	now := i.now()
	claims := jwt.RegisteredClaims{
		Issuer:    issuer,
		Subject:   subject,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(i.secret)
	if err != nil {
		return "", fmt.Errorf("auth: signing token: %w", err)
	}
	return token, nil
}

// Verify checks token and returns its subject. It returns an error
// wrapping ErrInvalidToken if the token is malformed, not signed with
// HS256 by this Issuer's secret, not issued by "spool", expired or
// without an expiry, or if its subject is not valid. Where the JWT library
// names the reason (jwt.ErrTokenExpired, ...), the error wraps that too.
func (i *Issuer) Verify(token string) (subject string, err error) {
	// The base64 decoder skips CR and LF, which would give one token many
	// spellings; and nothing else belongs in a JWT either.
	if len(token) > maxTokenLen || !isTokenSyntax(token) {
		return "", errMalformed
	}
	var claims jwt.RegisteredClaims
	_, err = jwt.ParseWithClaims(token, &claims,
		func(*jwt.Token) (any, error) { return i.secret, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithIssuer(issuer),
		jwt.WithExpirationRequired(),
		jwt.WithStrictDecoding(),
		jwt.WithTimeFunc(i.now),
	)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if !ValidSubject(claims.Subject) {
		return "", errBadSubject
	}
	return claims.Subject, nil
}

// isTokenSyntax reports whether token has only the characters of a
// compact JWT: base64url and dots.
func isTokenSyntax(token string) bool {
	for i := 0; i < len(token); i++ {
		c := token[i]
		if !(isAlnum(c) || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// ValidSubject reports whether s can name a user in a token: 1 to 128
// characters, each an ASCII letter or digit or one of . _ @ -.
func ValidSubject(s string) bool {
	if len(s) < 1 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(isAlnum(c) || c == '.' || c == '_' || c == '@' || c == '-') {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// BearerToken returns the token of an Authorization header value of the
// form "Bearer <token>". The scheme is matched case-insensitively and
// surrounding spaces are ignored. It returns false if the scheme is not
// Bearer or the token is empty or contains white space.
func BearerToken(header string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	if token == "" || strings.ContainsAny(token, " \t\r\n") {
		return "", false
	}
	return token, true
}

// Verifier checks a bearer token with the verifier of the issuer the
// token names: an OIDC provider's when it names that provider, spool's
// own otherwise. Each verifier allows only its own algorithms (HS256 for
// spool's, RS256 and ES256 for the provider's) and its own issuer, so a
// token that picks its verifier through the unverified "iss" picks no
// weaker checks: one that claims the provider but is signed with HS256 or
// "none" fails the provider's, and one signed by the provider but
// claiming to be spool's fails spool's.
type Verifier struct {
	// Own verifies spool's tokens.
	Own *Issuer
	// OIDC, if not nil, verifies the provider's tokens.
	OIDC *OIDCVerifier
}

// Verify returns the subject token vouches for: an OIDCSubject for the
// provider's tokens, the token's subject for spool's. It returns an error
// wrapping ErrInvalidToken as the chosen verifier's Verify does.
func (v Verifier) Verify(ctx context.Context, token string) (subject string, err error) {
	if v.namesProvider(token) {
		return v.OIDC.Verify(ctx, token)
	}
	return v.Own.Verify(token)
}

// ValidUntil returns when a token that Verify accepted stops being
// accepted: its expiry, plus the provider's clock skew for a provider's
// token. It reads the token without checking it, so it means nothing for
// a token Verify refused; ok is false when the token has no expiry to
// read.
func (v Verifier) ValidUntil(token string) (until time.Time, ok bool) {
	claims, _, read := unverified(token)
	if !read {
		return time.Time{}, false
	}
	return v.validUntil(claims, v.namesProvider(token))
}

// validUntil is ValidUntil of a token's claims, read already; provider
// says whose the token is.
func (v Verifier) validUntil(claims jwt.RegisteredClaims, provider bool) (time.Time, bool) {
	if claims.ExpiresAt == nil {
		return time.Time{}, false
	}
	until := claims.ExpiresAt.Time
	if provider {
		until = until.Add(v.OIDC.cfg.ClockSkew)
	}
	return until, true
}

// namesProvider reports whether token goes to the provider's verifier:
// there is one, and the token claims its issuer.
func (v Verifier) namesProvider(token string) bool {
	return v.OIDC != nil && claimedIssuer(token) == v.OIDC.Issuer()
}

// claimedIssuer returns the "iss" a token claims, unverified, or "".
func claimedIssuer(token string) string {
	if len(token) > maxOIDCTokenLen {
		return ""
	}
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(token, claims); err != nil {
		return ""
	}
	iss, _ := claims.GetIssuer()
	return iss
}
