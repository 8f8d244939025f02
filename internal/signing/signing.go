// Package signing signs and verifies expiring URLs with HMAC-SHA256, so
// that spool can hand out an upload URL that works only for the request it
// was made for (method, upload, chunk) and only until it expires.
//
// It owns the signature format: what is signed, how it is encoded and the
// "exp" and "sig" query parameters. Callers choose the parts to sign.
package signing

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"
)

// MinSecretSize is the shortest secret New accepts, in bytes: the size of
// the HMAC-SHA256 output.
const MinSecretSize = 32

// Query parameter names used by SignQuery and VerifyQuery.
const (
	ExpiresParam   = "exp"
	SignatureParam = "sig"
)

var (
	// ErrBadSignature means a signature is missing, malformed or was not
	// made by this Signer for these parts and expiry.
	ErrBadSignature = errors.New("signing: bad signature")
	// ErrExpired means a signature is genuine but its expiry has passed.
	ErrExpired = errors.New("signing: signature expired")
)

// encoding is URL-safe base64 without padding; Strict rejects non-zero
// trailing bits so that each signature has exactly one encoding.
var encoding = base64.RawURLEncoding.Strict()

// sigLen is the length of an encoded signature.
var sigLen = encoding.EncodedLen(sha256.Size)

// Signer signs and verifies with one secret. It is safe for concurrent use.
type Signer struct {
	secret []byte
}

// New returns a Signer using secret, which it copies. It returns an error
// if secret is shorter than MinSecretSize bytes.
func New(secret []byte) (*Signer, error) {
	if len(secret) < MinSecretSize {
		return nil, fmt.Errorf("signing: secret is %d bytes, must be at least %d", len(secret), MinSecretSize)
	}
	return &Signer{secret: append([]byte(nil), secret...)}, nil
}

// Sign returns a URL-safe signature over parts and expires, which is
// signed to the second. Parts are encoded unambiguously: ("ab", "c") and
// ("a", "bc") have different signatures.
func (s *Signer) Sign(expires time.Time, parts ...string) string {
	return encoding.EncodeToString(s.mac(expires.Unix(), parts))
}

// Verify checks that sig is Sign(expires, parts...) and that now is not
// after expires. It returns ErrBadSignature if sig is malformed or does not
// match, and otherwise ErrExpired if the signature has expired; so
// ErrExpired is only ever returned for a genuine signature.
func (s *Signer) Verify(sig string, expires time.Time, now time.Time, parts ...string) error {
	return s.verify(sig, expires, now, parts)
}

// SignQuery signs parts and expires and stores the expiry (in Unix
// seconds) and signature in q as "exp" and "sig", replacing any values
// there.
func (s *Signer) SignQuery(q url.Values, expires time.Time, parts ...string) {
	q.Set(ExpiresParam, strconv.FormatInt(expires.Unix(), 10))
	q.Set(SignatureParam, s.Sign(expires, parts...))
}

// VerifyQuery checks the "exp" and "sig" parameters of q, as set by
// SignQuery, against parts at time now. It returns ErrBadSignature if
// either parameter is missing, repeated or malformed or the signature does
// not match, and otherwise ErrExpired if the signature has expired.
func (s *Signer) VerifyQuery(q url.Values, now time.Time, parts ...string) error {
	exps, sigs := q[ExpiresParam], q[SignatureParam]
	if len(exps) != 1 || len(sigs) != 1 {
		return ErrBadSignature
	}
	exp, err := strconv.ParseInt(exps[0], 10, 64)
	// Only the canonical form is accepted ("+5" or "05" would otherwise
	// verify as 5), so a signed URL has one spelling.
	if err != nil || strconv.FormatInt(exp, 10) != exps[0] {
		return ErrBadSignature
	}
	return s.verify(sigs[0], time.Unix(exp, 0), now, parts)
}

func (s *Signer) verify(sig string, expires, now time.Time, parts []string) error {
	// The length check also rules out the CR and LF that the base64
	// decoder would otherwise skip.
	if len(sig) != sigLen {
		return ErrBadSignature
	}
	got, err := encoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, s.mac(expires.Unix(), parts)) {
		return ErrBadSignature
	}
	if now.After(expires) {
		return ErrExpired
	}
	return nil
}

// mac returns the HMAC of the expiry and the parts, each part preceded by
// its length so that no two lists of parts are encoded alike.
func (s *Signer) mac(expUnix int64, parts []string) []byte {
	m := hmac.New(sha256.New, s.secret)
	var buf [8]byte
	writeUint := func(v uint64) {
		binary.BigEndian.PutUint64(buf[:], v)
		m.Write(buf[:])
	}
	writeUint(uint64(expUnix))
	writeUint(uint64(len(parts)))
	for _, p := range parts {
		writeUint(uint64(len(p)))
		m.Write([]byte(p))
	}
	return m.Sum(nil)
}
