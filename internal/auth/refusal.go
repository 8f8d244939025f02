package auth

import (
	"errors"
	"fmt"

	"github.com/golang-jwt/jwt/v5"
)

// ErrNoToken is the refusal of a request that sent no token at all: it
// wraps ErrInvalidToken, and Refusal has nothing to add to it.
var ErrNoToken = fmt.Errorf("%w: none sent", ErrInvalidToken)

// ErrNotBearer is the refusal of an Authorization header that is not
// "Bearer <token>" (another scheme, or a token with spaces in it).
var ErrNotBearer = fmt.Errorf("%w: not a bearer token", ErrInvalidToken)

// errMalformed, errBadSubject and errBadUserClaim are Verify's own
// refusals, beside those the JWT library names.
var (
	errMalformed    = fmt.Errorf("%w: malformed", ErrInvalidToken)
	errBadSubject   = fmt.Errorf("%w: invalid subject", ErrInvalidToken)
	errBadUserClaim = fmt.Errorf("%w: bad user claim", ErrInvalidToken)
)

// refusals pairs each refusal with what the client is told, most
// specific first: the library joins a token's failed claims, and one
// signed with another secret is refused for that before its claims are
// read. Nothing of the secret or of a key is ever in the text.
var refusals = []struct {
	err    error
	reason string
}{
	{ErrNotBearer, `the Authorization header must be "Bearer " and the token`},
	{errMalformed, "it is malformed (too long, or with characters no token has): send it exactly as it was printed"},
	{jwt.ErrTokenMalformed, "it is malformed: send it exactly as it was printed"},
	{jwt.ErrTokenSignatureInvalid, "its signature does not verify: it was made for another server, or with another data directory's secret"},
	{jwt.ErrTokenUnverifiable, "it is signed by a key this server does not know"},
	{jwt.ErrTokenExpired, "it has expired"},
	{jwt.ErrTokenNotValidYet, "it is not valid yet: check the clocks of this server and of the token's issuer"},
	{jwt.ErrTokenUsedBeforeIssued, "it is not valid yet: check the clocks of this server and of the token's issuer"},
	{jwt.ErrTokenInvalidIssuer, "its issuer is not one this server accepts"},
	{jwt.ErrTokenInvalidAudience, "it is meant for another audience"},
	{jwt.ErrTokenRequiredClaimMissing, "it lacks a claim this server requires (an expiry, or the audience)"},
	{errBadSubject, "its subject is not a user name spool takes"},
	{errBadUserClaim, "its user claim is missing or not a valid user id"},
}

// Refusal says why a token was refused, in words for the client that
// sent it: enough to know what to fix (a new token, the clock, the
// header). err is a refusal wrapping ErrInvalidToken, as Verify and
// Verifier.Verify return; for ErrNoToken, and for anything else, it is
// "". A refusal it does not know is "it could not be verified".
func Refusal(err error) string {
	if !errors.Is(err, ErrInvalidToken) || errors.Is(err, ErrNoToken) {
		return ""
	}
	for _, r := range refusals {
		if errors.Is(err, r.err) {
			return r.reason
		}
	}
	return "it could not be verified"
}
