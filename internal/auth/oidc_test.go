package auth_test

import (
	"crypto/rand"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/spoolhq/spool/internal/auth"
	"github.com/spoolhq/spool/internal/auth/oidctest"
)

// newOIDC returns a verifier of p's tokens, closed when the test ends.
func newOIDC(t *testing.T, cfg auth.OIDCConfig) *auth.OIDCVerifier {
	t.Helper()
	v, err := auth.NewOIDCVerifier(t.Context(), cfg, nil)
	if err != nil {
		t.Fatalf("NewOIDCVerifier: %v", err)
	}
	t.Cleanup(v.Close)
	return v
}

func TestOIDCVerifierUserClaim(t *testing.T) {
	t.Parallel()
	p := oidctest.Start(t)
	v := newOIDC(t, auth.OIDCConfig{Issuer: p.Issuer(), Audience: oidctest.Audience, UserClaim: "email"})
	key := p.Current(jwt.SigningMethodES256)
	c := p.Claims("248289761001")
	c["email"] = "erin@example.com"
	got, err := v.Verify(t.Context(), p.Sign(key, c))
	if want := p.Issuer() + "#email:erin@example.com"; err != nil || got != want {
		t.Errorf("token with an email: got %q, %v; want %q", got, err, want)
	}
	// A token without the claim is refused even though it has a sub.
	if got, err := v.Verify(t.Context(), p.Token(jwt.SigningMethodES256, "248289761001")); !errors.Is(err, auth.ErrInvalidToken) {
		t.Errorf("token without the user claim: got %q, %v; want ErrInvalidToken", got, err)
	} else if reason := auth.Refusal(err); !strings.Contains(reason, "user claim") {
		t.Errorf("token without the user claim: the client is told %q, want it to name the user claim", reason)
	}
	c["email"] = strings.Repeat("e", 256)
	if got, err := v.Verify(t.Context(), p.Sign(key, c)); !errors.Is(err, auth.ErrInvalidToken) {
		t.Errorf("user claim of 256 bytes: got %q, %v; want ErrInvalidToken", got, err)
	}
	// A token far larger than any provider's is refused before parsing.
	c["email"], c["padding"] = "erin@example.com", strings.Repeat("p", 20<<10)
	if got, err := v.Verify(t.Context(), p.Sign(key, c)); !errors.Is(err, auth.ErrInvalidToken) {
		t.Errorf("token of 20 KiB: got %q, %v; want ErrInvalidToken", got, err)
	}
}

// Verifier hands each token to its issuer's verifier, and neither accepts
// the other's algorithms.
func TestVerifierKeepsIssuersApart(t *testing.T) {
	t.Parallel()
	p := oidctest.Start(t)
	own, err := auth.NewIssuer([]byte(strings.Repeat("s", 32)))
	if err != nil {
		t.Fatal(err)
	}
	v := auth.Verifier{Own: own, OIDC: newOIDC(t, auth.OIDCConfig{Issuer: p.Issuer(), Audience: oidctest.Audience})}
	spoolToken, err := own.Issue("frank", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := v.Verify(t.Context(), spoolToken); err != nil || got != "frank" {
		t.Errorf("spool's token: got %q, %v; want frank", got, err)
	}
	if got, err := v.Verify(t.Context(), p.Token(jwt.SigningMethodRS256, "frank")); err != nil || got != auth.OIDCSubject(p.Issuer(), "sub", "frank") {
		t.Errorf("the provider's token: got %q, %v", got, err)
	}
	// The provider's key signing a token that claims to be spool's.
	c := p.Claims("frank")
	c["iss"] = "spool"
	if got, err := v.Verify(t.Context(), p.Sign(p.Current(jwt.SigningMethodRS256), c)); !errors.Is(err, auth.ErrInvalidToken) {
		t.Errorf("RS256 token claiming to be spool's: got %q, %v; want ErrInvalidToken", got, err)
	}
	// spool's secret signing a token that claims to be the provider's.
	hs, err := jwt.NewWithClaims(jwt.SigningMethodHS256, p.Claims("frank")).SignedString([]byte(strings.Repeat("s", 32)))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := v.Verify(t.Context(), hs); !errors.Is(err, auth.ErrInvalidToken) {
		t.Errorf("HS256 token claiming the provider: got %q, %v; want ErrInvalidToken", got, err)
	}
	// Without OIDC, the provider's tokens are spool's to refuse.
	if got, err := (auth.Verifier{Own: own}).Verify(t.Context(), p.Token(jwt.SigningMethodRS256, "frank")); !errors.Is(err, auth.ErrInvalidToken) {
		t.Errorf("the provider's token without OIDC: got %q, %v; want ErrInvalidToken", got, err)
	}
}

// ValidUntil is when Verify stops accepting a token: spool's at its
// expiry, a provider's that much later as the clock skew allows.
func TestVerifierValidUntil(t *testing.T) {
	t.Parallel()
	p := oidctest.Start(t)
	own, err := auth.NewIssuer([]byte(strings.Repeat("s", 32)))
	if err != nil {
		t.Fatal(err)
	}
	const skew = 3 * time.Minute
	v := auth.Verifier{Own: own, OIDC: newOIDC(t, auth.OIDCConfig{Issuer: p.Issuer(), Audience: oidctest.Audience, ClockSkew: skew})}
	cached, err := auth.NewCachingVerifier(v, 10)
	if err != nil {
		t.Fatal(err)
	}
	spoolToken, err := own.Issue("frank", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := p.Claims("frank")
	providerExp := time.Now().Add(20 * time.Minute).Truncate(time.Second)
	c["exp"] = providerExp.Unix()
	providerToken := p.Sign(p.Current(jwt.SigningMethodRS256), c)
	for _, tc := range []struct {
		name, token string
		want        time.Time
	}{
		{"spool's token", spoolToken, time.Now().Add(time.Hour).Truncate(time.Second)},
		{"the provider's token", providerToken, providerExp.Add(skew)},
	} {
		if _, err := v.Verify(t.Context(), tc.token); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got, ok := v.ValidUntil(tc.token)
		if !ok || got.Sub(tc.want).Abs() > time.Second {
			t.Errorf("%s: ValidUntil = %s, %v; want %s", tc.name, got, ok, tc.want)
		}
		// The caching verifier answers from what it remembered.
		if _, err := cached.Verify(t.Context(), tc.token); err != nil {
			t.Fatalf("%s, cached: %v", tc.name, err)
		}
		if got, ok := cached.ValidUntil(tc.token); !ok || got.Sub(tc.want).Abs() > time.Second {
			t.Errorf("%s, cached: ValidUntil = %s, %v; want %s", tc.name, got, ok, tc.want)
		}
	}
	if _, ok := v.ValidUntil("garbage"); ok {
		t.Errorf("ValidUntil of garbage: ok, want not")
	}
}

func TestOIDCUnknownKeyRefetchIsRateLimited(t *testing.T) {
	t.Parallel()
	p := oidctest.Start(t)
	v := newOIDC(t, auth.OIDCConfig{Issuer: p.Issuer(), Audience: oidctest.Audience, UnknownKeyRefetch: time.Hour})
	start := p.JWKSFetches()
	for i := range 5 {
		tok := p.Sign(p.UnpublishedKey(jwt.SigningMethodRS256), p.Claims("grace"))
		_, err := v.Verify(t.Context(), tok)
		if !errors.Is(err, auth.ErrInvalidToken) {
			t.Fatalf("unknown key %d: got %v, want ErrInvalidToken", i, err)
		}
		if reason := auth.Refusal(err); !strings.Contains(reason, "key this server does not know") {
			t.Errorf("unknown key %d: the client is told %q, want it to say the key is unknown", i, reason)
		}
	}
	// The first unknown key id fetched the set; the four after it found
	// the hour's budget spent and were refused without asking again.
	if got := p.JWKSFetches() - start; got != 1 {
		t.Errorf("key set fetches for 5 unknown key ids within the refetch interval: got %d, want 1", got)
	}
	// Known keys still verify.
	if _, err := v.Verify(t.Context(), p.Token(jwt.SigningMethodRS256, "grace")); err != nil {
		t.Errorf("known key after the refused ones: %v", err)
	}
}

func TestOIDCKeySetRefreshedPeriodically(t *testing.T) {
	t.Parallel()
	p := oidctest.Start(t)
	newOIDC(t, auth.OIDCConfig{Issuer: p.Issuer(), Audience: oidctest.Audience, KeyRefresh: 10 * time.Millisecond})
	start := p.JWKSFetches()
	deadline := time.Now().Add(30 * time.Second) // a hang guard, not a timing assertion
	for p.JWKSFetches() < start+3 {
		if time.Now().After(deadline) {
			t.Fatalf("the key set was fetched %d times since start, want periodic fetches", p.JWKSFetches()-start)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestOIDCVerifierStart(t *testing.T) {
	t.Parallel()
	p := oidctest.Start(t)

	// A key set URL skips discovery: this issuer serves none (nor
	// resolves), yet its tokens verify against the given keys.
	const issuer = "https://id.example.invalid"
	v := newOIDC(t, auth.OIDCConfig{Issuer: issuer, JWKSURL: p.JWKSURL(), Audience: oidctest.Audience})
	c := p.Claims("heidi")
	c["iss"] = issuer
	if got, err := v.Verify(t.Context(), p.Sign(p.Current(jwt.SigningMethodRS256), c)); err != nil || got != issuer+"#sub:heidi" {
		t.Errorf("token of an issuer given its key set URL: got %q, %v", got, err)
	}

	huge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"keys":[` + strings.Repeat(" ", 2<<20) + `]}`))
	}))
	t.Cleanup(huge.Close)
	fails := []struct {
		name string
		cfg  auth.OIDCConfig
		want string
	}{
		// The discovery document names p.Issuer(), not this spelling.
		{"issuer spelled with a trailing slash", auth.OIDCConfig{Issuer: p.Issuer() + "/", Audience: "a"}, "did not match"},
		{"no discovery document", auth.OIDCConfig{Issuer: p.Issuer() + "/realms/none", Audience: "a"}, "404"},
		{"key set larger than 1 MiB", auth.OIDCConfig{Issuer: p.Issuer(), JWKSURL: huge.URL, Audience: "a"}, "too large"},
		{"invalid config", auth.OIDCConfig{Issuer: p.Issuer()}, "Audience"},
	}
	for _, f := range fails {
		v, err := auth.NewOIDCVerifier(t.Context(), f.cfg, nil)
		if err == nil {
			v.Close()
			t.Errorf("%s: got a verifier, want an error", f.name)
			continue
		}
		if !strings.Contains(err.Error(), f.want) {
			t.Errorf("%s: got %q, want it to say %q", f.name, err, f.want)
		}
	}
	p.SetDown(true)
	if v, err := auth.NewOIDCVerifier(t.Context(), auth.OIDCConfig{Issuer: p.Issuer(), Audience: "a"}, nil); err == nil {
		v.Close()
		t.Error("provider down: got a verifier, want an error")
	}
	if v, err := auth.NewOIDCVerifier(t.Context(), auth.OIDCConfig{Issuer: p.Issuer(), JWKSURL: p.JWKSURL(), Audience: "a"}, nil); err == nil {
		v.Close()
		t.Error("key set down: got a verifier, want an error")
	}
}

// FuzzOIDCVerify sends Verifier mangled provider and spool tokens: it
// must refuse every one it did not issue, with ErrInvalidToken, and never
// refetch keys more than once (the refetch interval is an hour).
func FuzzOIDCVerify(f *testing.F) {
	p := oidctest.Start(f)
	oidcV, err := auth.NewOIDCVerifier(f.Context(), auth.OIDCConfig{
		Issuer: p.Issuer(), Audience: oidctest.Audience, ClockSkew: time.Minute, UnknownKeyRefetch: time.Hour,
	}, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(oidcV.Close)
	// Each fuzzing process runs this setup with keys and a secret of its
	// own, so a token issued in one verifies in none of the others.
	own, err := auth.NewIssuer([]byte(rand.Text() + rand.Text()))
	if err != nil {
		f.Fatal(err)
	}
	v := auth.Verifier{Own: own, OIDC: oidcV}
	issued := map[string]string{} // token → subject
	for _, m := range []jwt.SigningMethod{jwt.SigningMethodRS256, jwt.SigningMethodES256} {
		tok := p.Token(m, "ivan")
		issued[tok] = auth.OIDCSubject(p.Issuer(), "sub", "ivan")
		f.Add(tok)
		f.Add(withSignatureOf(p.Token(m, "mallory"), tok))
	}
	spoolTok, err := own.Issue("ivan", time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	issued[spoolTok] = "ivan"
	f.Add(spoolTok)
	f.Add("eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwOi8vMTI3LjAuMC4xIn0.")
	f.Fuzz(func(t *testing.T, token string) {
		sub, err := v.Verify(t.Context(), token)
		// The fetch at start, and at most one for unknown key ids.
		if n := p.JWKSFetches(); n > 2 {
			t.Fatalf("after Verify(%q): %d key set fetches, want at most 2", token, n)
		}
		if err != nil {
			if !errors.Is(err, auth.ErrInvalidToken) {
				t.Fatalf("Verify(%q) error = %v, does not wrap ErrInvalidToken", token, err)
			}
			return
		}
		if want, ok := issued[token]; !ok || sub != want {
			t.Fatalf("Verify(%q) = %q, want a refusal (or %q for a token issued as such)", token, sub, want)
		}
	})
}

// withSignatureOf returns token with the signature of another.
func withSignatureOf(token, another string) string {
	return token[:strings.LastIndex(token, ".")] + another[strings.LastIndex(another, "."):]
}
