package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

// t0 is the fixed "now" of the tests.
var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func newIssuer(tb testing.TB, secret []byte, now time.Time) *Issuer {
	tb.Helper()
	iss, err := NewIssuer(secret)
	if err != nil {
		tb.Fatalf("NewIssuer: %v", err)
	}
	iss.now = func() time.Time { return now }
	return iss
}

func TestNewIssuer(t *testing.T) {
	for _, size := range []int{0, 16, 31} {
		if _, err := NewIssuer(make([]byte, size)); err == nil {
			t.Errorf("NewIssuer(%d bytes) error = nil, want an error", size)
		}
	}
	if _, err := NewIssuer(make([]byte, 32)); err != nil {
		t.Errorf("NewIssuer(32 bytes) error = %v, want nil", err)
	}
}

func TestIssueAndVerify(t *testing.T) {
	iss := newIssuer(t, testSecret, t0)
	token, err := iss.Issue("alice@example.com", time.Hour)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	got, err := iss.Verify(token)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if want := "alice@example.com"; got != want {
		t.Errorf("Verify subject = %q, want %q", got, want)
	}

	// The claims are the documented ones.
	var claims jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(token, &claims); err != nil {
		t.Fatal(err)
	}
	if got, want := claims.Issuer, "spool"; got != want {
		t.Errorf("iss = %q, want %q", got, want)
	}
	if got, want := claims.IssuedAt.Time, t0; !got.Equal(want) {
		t.Errorf("iat = %v, want %v", got, want)
	}
	if got, want := claims.ExpiresAt.Time, t0.Add(time.Hour); !got.Equal(want) {
		t.Errorf("exp = %v, want %v", got, want)
	}
}

func TestIssueRejects(t *testing.T) {
	iss := newIssuer(t, testSecret, t0)
	tests := []struct {
		name    string
		subject string
		ttl     time.Duration
	}{
		{"empty subject", "", time.Hour},
		{"subject with space", "a b", time.Hour},
		{"subject too long", strings.Repeat("a", 129), time.Hour},
		{"zero ttl", "alice", 0},
		{"negative ttl", "alice", -time.Second},
		{"ttl under a second", "alice", time.Second - time.Nanosecond},
	}
	for _, tt := range tests {
		if token, err := iss.Issue(tt.subject, tt.ttl); err == nil {
			t.Errorf("%s: Issue(%q, %v) = %q, want an error", tt.name, tt.subject, tt.ttl, token)
		}
	}
}

// sign makes a token with arbitrary claims and method, as an attacker or a
// buggy client might.
func sign(tb testing.TB, method jwt.SigningMethod, claims jwt.Claims, key any) string {
	tb.Helper()
	token, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		tb.Fatalf("signing test token: %v", err)
	}
	return token
}

func TestVerifyRejects(t *testing.T) {
	iss := newIssuer(t, testSecret, t0)
	valid := func() jwt.RegisteredClaims {
		return jwt.RegisteredClaims{
			Issuer:    "spool",
			Subject:   "alice",
			IssuedAt:  jwt.NewNumericDate(t0.Add(-time.Minute)),
			ExpiresAt: jwt.NewNumericDate(t0.Add(time.Hour)),
		}
	}
	with := func(change func(*jwt.RegisteredClaims)) jwt.RegisteredClaims {
		c := valid()
		change(&c)
		return c
	}
	good := sign(t, jwt.SigningMethodHS256, valid(), testSecret)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	expiredIssuer := newIssuer(t, testSecret, t0.Add(2*time.Hour))
	parts := strings.Split(good, ".")

	tests := []struct {
		name    string
		iss     *Issuer
		token   string
		wantJWT error  // the library's reason, if any, also wrapped
		reason  string // in what Refusal tells the client
	}{
		{"empty", iss, "", nil, "malformed"},
		{"garbage", iss, "not a token", nil, "malformed"},
		{"two segments", iss, parts[0] + "." + parts[1], jwt.ErrTokenMalformed, "malformed"},
		{"bad signature", iss, parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2])), jwt.ErrTokenSignatureInvalid, "signature does not verify"},
		{"other secret", iss, sign(t, jwt.SigningMethodHS256, valid(), []byte(strings.Repeat("x", 32))), jwt.ErrTokenSignatureInvalid, "another data directory"},
		{"HS384", iss, sign(t, jwt.SigningMethodHS384, valid(), testSecret), jwt.ErrTokenSignatureInvalid, "signature does not verify"},
		{"HS512", iss, sign(t, jwt.SigningMethodHS512, valid(), testSecret), jwt.ErrTokenSignatureInvalid, "signature does not verify"},
		{"ES256", iss, sign(t, jwt.SigningMethodES256, valid(), ecKey), jwt.ErrTokenSignatureInvalid, "signature does not verify"},
		{"alg none", iss, sign(t, jwt.SigningMethodNone, valid(), jwt.UnsafeAllowNoneSignatureType), jwt.ErrTokenSignatureInvalid, "signature does not verify"},
		{"expired", expiredIssuer, good, jwt.ErrTokenExpired, "has expired"},
		{"no expiry", iss, sign(t, jwt.SigningMethodHS256, with(func(c *jwt.RegisteredClaims) { c.ExpiresAt = nil }), testSecret), jwt.ErrTokenRequiredClaimMissing, "lacks a claim"},
		{"not yet valid", iss, sign(t, jwt.SigningMethodHS256, with(func(c *jwt.RegisteredClaims) { c.NotBefore = jwt.NewNumericDate(t0.Add(time.Minute)) }), testSecret), jwt.ErrTokenNotValidYet, "not valid yet"},
		{"other issuer", iss, sign(t, jwt.SigningMethodHS256, with(func(c *jwt.RegisteredClaims) { c.Issuer = "evil" }), testSecret), jwt.ErrTokenInvalidIssuer, "issuer is not"},
		{"no issuer", iss, sign(t, jwt.SigningMethodHS256, with(func(c *jwt.RegisteredClaims) { c.Issuer = "" }), testSecret), jwt.ErrTokenRequiredClaimMissing, "lacks a claim"},
		{"empty subject", iss, sign(t, jwt.SigningMethodHS256, with(func(c *jwt.RegisteredClaims) { c.Subject = "" }), testSecret), nil, "subject"},
		{"bad subject", iss, sign(t, jwt.SigningMethodHS256, with(func(c *jwt.RegisteredClaims) { c.Subject = "../root" }), testSecret), nil, "subject"},
		{"newline in signature", iss, good[:len(good)-5] + "\n" + good[len(good)-5:], nil, "malformed"},
		{"padded signature", iss, good + "=", nil, "malformed"},
		{"too long", iss, good + strings.Repeat("A", maxTokenLen), nil, "too long"},
	}
	for _, tt := range tests {
		sub, err := tt.iss.Verify(tt.token)
		if !errors.Is(err, ErrInvalidToken) {
			t.Errorf("%s: Verify = (%q, %v), want an error wrapping %v", tt.name, sub, err, ErrInvalidToken)
			continue
		}
		if tt.wantJWT != nil && !errors.Is(err, tt.wantJWT) {
			t.Errorf("%s: Verify error = %v, want it to wrap %v", tt.name, err, tt.wantJWT)
		}
		if got := Refusal(err); !strings.Contains(got, tt.reason) {
			t.Errorf("%s: Refusal(%v) = %q, want it to say %q", tt.name, err, got, tt.reason)
		}
	}
}

// TestRefusalOfNoToken: a request that sent no token is told to send
// one, not why a token was refused; an error that is not a refusal has
// no reason either.
func TestRefusalOfNoToken(t *testing.T) {
	for _, err := range []error{nil, ErrNoToken, errors.New("database down")} {
		if got := Refusal(err); got != "" {
			t.Errorf("Refusal(%v) = %q, want none", err, got)
		}
	}
	if got := Refusal(ErrNotBearer); !strings.Contains(got, `"Bearer "`) {
		t.Errorf("Refusal(ErrNotBearer) = %q, want it to name the scheme", got)
	}
	if got := Refusal(fmt.Errorf("%w: some new reason", ErrInvalidToken)); got != "it could not be verified" {
		t.Errorf("Refusal of an unnamed reason = %q, want the general one", got)
	}
}

func TestVerifyRejectsNonCanonicalSignature(t *testing.T) {
	iss := newIssuer(t, testSecret, t0)
	token, err := iss.Issue("alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// The last character of the 43-character signature carries 2 unused
	// bits; setting one must not give a second valid spelling.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, token[len(token)-1])
	for bit := 0; bit < 2; bit++ {
		altered := token[:len(token)-1] + string(alphabet[last^(1<<bit)])
		if sub, err := iss.Verify(altered); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("Verify(token with trailing bit %d set) = (%q, %v), want %v", bit, sub, err, ErrInvalidToken)
		}
	}
}

func TestValidSubject(t *testing.T) {
	tests := []struct {
		s    string
		want bool
	}{
		{"alice", true},
		{"a", true},
		{"Alice.Smith_2@example-corp.com", true},
		{strings.Repeat("a", 128), true},
		{"", false},
		{strings.Repeat("a", 129), false},
		{"a b", false},
		{"a/b", false},
		{"a:b", false},
		{"ålice", false},
		{"alice\x00", false},
		{"alice\n", false},
	}
	for _, tt := range tests {
		if got := ValidSubject(tt.s); got != tt.want {
			t.Errorf("ValidSubject(%q) = %v, want %v", tt.s, got, tt.want)
		}
	}
}

func TestBearerToken(t *testing.T) {
	tests := []struct {
		header string
		want   string
		wantOK bool
	}{
		{"Bearer abc.def.ghi", "abc.def.ghi", true},
		{"bearer abc", "abc", true},
		{"BEARER abc", "abc", true},
		{"  Bearer   abc  ", "abc", true},
		{"Bearer", "", false},
		{"Bearer ", "", false},
		{"Bearer    ", "", false},
		{"Basic dXNlcjpwYXNz", "", false},
		{"Bearerabc", "", false},
		{"Bearer a b", "", false},
		{"Bearer a\tb", "", false},
		{"abc", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		got, ok := BearerToken(tt.header)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("BearerToken(%q) = (%q, %v), want (%q, %v)", tt.header, got, ok, tt.want, tt.wantOK)
		}
	}
}

func FuzzVerify(f *testing.F) {
	iss := newIssuer(f, testSecret, t0)
	issued := map[string]string{} // token → subject
	for _, sub := range []string{"alice", "bob@example.com", "x"} {
		token, err := iss.Issue(sub, time.Hour)
		if err != nil {
			f.Fatal(err)
		}
		issued[token] = sub
		f.Add("Bearer " + token)
		f.Add("bearer  " + token[:len(token)-1] + "B")
		f.Add(token + "\n")
	}
	f.Add("Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.")
	f.Add("")
	f.Fuzz(func(t *testing.T, header string) {
		token, ok := BearerToken(header)
		if ok {
			if token == "" || strings.ContainsAny(token, " \t\r\n") {
				t.Fatalf("BearerToken(%q) = %q, want a non-empty token without spaces", header, token)
			}
			if again, ok := BearerToken("Bearer " + token); !ok || again != token {
				t.Fatalf("BearerToken(\"Bearer \" + %q) = (%q, %v), want (%q, true)", token, again, ok, token)
			}
		} else {
			token = header // verify the raw string too
		}
		sub, err := iss.Verify(token)
		if err != nil {
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("Verify(%q) error = %v, does not wrap %v", token, err, ErrInvalidToken)
			}
			return
		}
		want, ours := issued[token]
		if !ours {
			t.Fatalf("Verify(%q) accepted a token the issuer never issued (subject %q)", token, sub)
		}
		if sub != want {
			t.Fatalf("Verify(%q) = %q, want %q", token, sub, want)
		}
	})
}
