package app_test

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/spoolhq/spool/internal/app"
	"github.com/spoolhq/spool/internal/auth"
	"github.com/spoolhq/spool/internal/auth/oidctest"
)

// These tests run spool with an identity provider (oidctest, in process,
// over real HTTP) and send it the provider's tokens, good and bad, over
// GraphQL, the data plane and websockets.

// startOIDCSpool runs spool accepting p's tokens with a 1 minute clock
// skew. Unknown key ids refetch the key set every time, so each such
// token below is checked against the provider's current set.
func startOIDCSpool(t *testing.T, p *oidctest.Provider) *spool {
	t.Helper()
	return startSpool(t, func(c *app.Config) {
		c.OIDC = auth.OIDCConfig{
			Issuer: p.Issuer(), Audience: oidctest.Audience, ClockSkew: time.Minute,
			UnknownKeyRefetch: time.Nanosecond,
		}
	})
}

// wsMe runs the me query over the websocket and returns the user's name,
// or the error code.
func wsMe(ws *wsClient, id string) (name, code string) {
	ws.t.Helper()
	ws.subscribe(id, opMe, nil)
	m := ws.next(id)
	var p struct {
		Data struct {
			Me *user `json:"me"`
		} `json:"data"`
		Errors []gqlError `json:"errors"`
	}
	if m.Type == "next" {
		if err := json.Unmarshal(m.Payload, &p); err != nil {
			ws.t.Fatalf("decoding %s: %v", m.Payload, err)
		}
	}
	switch {
	case len(p.Errors) > 0:
		return "", p.Errors[0].code()
	case p.Data.Me == nil:
		ws.t.Fatalf("me over the websocket: got %s %s, want a result", m.Type, m.Payload)
	}
	return p.Data.Me.Name, ""
}

func TestOIDCTokensIdentifyOneUser(t *testing.T) {
	t.Parallel()
	p := oidctest.Start(t)
	s := startOIDCSpool(t, p)
	rs, es := p.Token(jwt.SigningMethodRS256, "alice"), p.Token(jwt.SigningMethodES256, "alice")
	want := auth.OIDCSubject(p.Issuer(), "sub", "alice")

	// RS256 and ES256 tokens for one subject are one user.
	if got := s.me(rs).Name; got != want {
		t.Fatalf("RS256 token: got user %q, want %q", got, want)
	}
	if got := s.me(es).Name; got != want {
		t.Errorf("ES256 token: got user %q, want %q", got, want)
	}
	// spool's own token for "alice" is another user: a provider's subject
	// cannot take over a spool user, nor the other way round.
	own := s.token("alice")
	if got := s.me(own).Name; got != "alice" {
		t.Errorf("spool's own token: got user %q, want alice", got)
	}

	// What one token started, the other sees, over GraphQL and the data
	// plane; spool's own alice does not.
	up := s.planOne(rs, file("a.png", "image/png", 1000))
	if got := s.uploadSession(es, up.ID).Status; got != "INITIALIZED" {
		t.Errorf("upload through the ES256 token: got %s, want INITIALIZED", got)
	}
	target := s.url + "/uploads/" + up.ID
	if got := do(t, http.MethodHead, target, nil, bearer(es)); got.Status != http.StatusOK {
		t.Errorf("data-plane HEAD with the ES256 token: got %d, want 200", got.Status)
	}
	if got := do(t, http.MethodHead, target, nil, bearer(own)); got.Status != http.StatusNotFound {
		t.Errorf("data-plane HEAD with spool's own alice: got %d, want 404", got.Status)
	}

	// And over the websocket's connection_init.
	ws := s.dialWS(es, nil)
	if name, code := wsMe(ws, "me"); name != want {
		t.Errorf("me over a websocket opened with the ES256 token: got %q (%s), want %q", name, code, want)
	}
}

// publicKeyBytes returns the DER and PEM of k's public key: the bytes an
// algorithm confusion attack uses as an HMAC secret.
func publicKeyBytes(t *testing.T, k oidctest.Key) (der, pemBytes []byte) {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k.Private.Public())
	if err != nil {
		t.Fatal(err)
	}
	return der, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// withSignatureOf returns token with the signature of another.
func withSignatureOf(token, another string) string {
	return token[:strings.LastIndex(token, ".")] + another[strings.LastIndex(another, "."):]
}

func TestOIDCRefusals(t *testing.T) {
	t.Parallel()
	p := oidctest.Start(t)
	other := oidctest.Start(t)
	s := startOIDCSpool(t, p)
	rsKey := p.Current(jwt.SigningMethodRS256)
	now := time.Now()
	claims := func(change func(jwt.MapClaims)) jwt.MapClaims {
		c := p.Claims("carol")
		change(c)
		return c
	}
	signed := func(change func(jwt.MapClaims)) string { return p.Sign(rsKey, claims(change)) }

	// A token one setting away from each refusal is accepted, so each
	// refusal is about the thing that differs.
	for name, tok := range map[string]string{
		"expired within the skew":   signed(func(c jwt.MapClaims) { c["exp"] = now.Add(-30 * time.Second).Unix() }),
		"not yet valid within skew": signed(func(c jwt.MapClaims) { c["nbf"] = now.Add(30 * time.Second).Unix() }),
		"audience in a list":        signed(func(c jwt.MapClaims) { c["aud"] = []string{"another-client", oidctest.Audience} }),
	} {
		if errs := rawGQL(t, s, "Bearer "+tok, opMe, nil); len(errs) > 0 {
			t.Errorf("%s: got %s (%q), want it accepted", name, errs[0].code(), errs[0].Message)
		}
	}

	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, p.Claims("carol")).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	confused := jwt.NewWithClaims(jwt.SigningMethodHS256, p.Claims("carol"))
	confused.Header["kid"] = rsKey.ID
	der, pemBytes := publicKeyBytes(t, rsKey)
	hsWithPEM, err := confused.SignedString(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	hsWithDER, err := confused.SignedString(der)
	if err != nil {
		t.Fatal(err)
	}
	fetches := p.JWKSFetches()
	unknown := p.Sign(p.UnpublishedKey(jwt.SigningMethodRS256), p.Claims("carol"))
	refused := []struct{ name, token string }{
		{"another provider's token", other.Token(jwt.SigningMethodRS256, "carol")},
		{"another issuer, the provider's key", signed(func(c jwt.MapClaims) { c["iss"] = other.Issuer() })},
		{"issuer with a trailing slash", signed(func(c jwt.MapClaims) { c["iss"] = p.Issuer() + "/" })},
		{"spool's issuer, the provider's key", signed(func(c jwt.MapClaims) { c["iss"] = "spool" })},
		{"another audience", signed(func(c jwt.MapClaims) { c["aud"] = "another-client" })},
		{"no audience", signed(func(c jwt.MapClaims) { delete(c, "aud") })},
		{"expired beyond the skew", signed(func(c jwt.MapClaims) { c["exp"] = now.Add(-2 * time.Minute).Unix() })},
		{"no expiry", signed(func(c jwt.MapClaims) { delete(c, "exp") })},
		{"not yet valid beyond the skew", signed(func(c jwt.MapClaims) { c["nbf"] = now.Add(2 * time.Minute).Unix() })},
		{"issued in the future beyond the skew", signed(func(c jwt.MapClaims) { c["iat"] = now.Add(2 * time.Minute).Unix() })},
		{"alg none", none},
		{"HS256 signed with the provider's public key (PEM)", hsWithPEM},
		{"HS256 signed with the provider's public key (DER)", hsWithDER},
		{"a key id the provider does not know", unknown},
		{"no user claim", signed(func(c jwt.MapClaims) { delete(c, "sub") })},
		{"empty user claim", signed(func(c jwt.MapClaims) { c["sub"] = "" })},
		{"numeric user claim", signed(func(c jwt.MapClaims) { c["sub"] = 12345 })},
		{"user claim with a control character", signed(func(c jwt.MapClaims) { c["sub"] = "carol\n" })},
		{"signature of another token", withSignatureOf(signed(func(jwt.MapClaims) {}), p.Token(jwt.SigningMethodRS256, "mallory"))},
	}
	for _, r := range refused {
		if errs := rawGQL(t, s, "Bearer "+r.token, opMe, nil); len(errs) == 0 || errs[0].code() != "UNAUTHENTICATED" {
			t.Errorf("GraphQL with %s: got %+v, want UNAUTHENTICATED", r.name, errs)
		}
		if got := do(t, http.MethodHead, s.url+"/uploads/upl_01JZZZZZZZZZZZZZZZZZZZZZZZ", nil, bearer(r.token)); got.Status != http.StatusUnauthorized {
			t.Errorf("data plane with %s: got %d, want 401", r.name, got.Status)
		}
	}
	// The unknown key id was looked for at the provider before it was
	// refused (twice: once per request).
	if got := p.JWKSFetches() - fetches; got < 2 {
		t.Errorf("key set fetches for a token with an unknown key id: got %d, want at least 2", got)
	}

	// Over the websocket, a refused token leaves the connection
	// unauthenticated.
	ws := s.dialWS(none, nil)
	if _, code := wsMe(ws, "me"); code != "UNAUTHENTICATED" {
		t.Errorf("me over a websocket opened with an alg none token: got %q, want UNAUTHENTICATED", code)
	}
}

func TestOIDCKeyRotation(t *testing.T) {
	t.Parallel()
	p := oidctest.Start(t)
	s := startOIDCSpool(t, p)
	before := p.Token(jwt.SigningMethodRS256, "dave")
	dave := s.me(before).Name

	// The provider rotates: a new key, the old one withdrawn. A token of
	// the new key makes spool fetch the set again and is accepted, as the
	// same user.
	fetches := p.JWKSFetches()
	p.Rotate(jwt.SigningMethodRS256)
	after := p.Token(jwt.SigningMethodRS256, "dave")
	if got := s.me(after).Name; got != dave {
		t.Errorf("token of the rotated-in key: got user %q, want %q", got, dave)
	}
	if p.JWKSFetches() == fetches {
		t.Error("the rotated-in key was accepted without fetching the key set")
	}
	// The withdrawn key's tokens no longer verify.
	if errs := rawGQL(t, s, "Bearer "+before, opMe, nil); len(errs) == 0 || errs[0].code() != "UNAUTHENTICATED" {
		t.Errorf("token of the withdrawn key: got %+v, want UNAUTHENTICATED", errs)
	}

	// A provider that cannot be reached costs no valid token: the keys
	// fetched before stay in use, for requests and new websockets alike.
	p.SetDown(true)
	fresh := p.Token(jwt.SigningMethodES256, "dave")
	if got := s.me(fresh).Name; got != dave {
		t.Errorf("with the provider down: got user %q, want %q", got, dave)
	}
	ws := s.dialWS(after, nil)
	if name, code := wsMe(ws, "me"); name != dave {
		t.Errorf("websocket with the provider down: got %q (%s), want %q", name, code, dave)
	}
	// A key it cannot fetch is refused, and refusing it drops no key.
	rotated := p.Rotate(jwt.SigningMethodRS256)
	if errs := rawGQL(t, s, "Bearer "+p.Sign(rotated, p.Claims("dave")), opMe, nil); len(errs) == 0 || errs[0].code() != "UNAUTHENTICATED" {
		t.Errorf("a new key while the provider is down: got %+v, want UNAUTHENTICATED", errs)
	}
	if got := s.me(after).Name; got != dave {
		t.Errorf("after a failed fetch: got user %q, want %q", got, dave)
	}
	// Back up, the new key is taken.
	p.SetDown(false)
	if got := s.me(p.Sign(rotated, p.Claims("dave"))).Name; got != dave {
		t.Errorf("the new key once the provider is back: got user %q, want %q", got, dave)
	}
}

func TestOIDCStartFailsWithoutProvider(t *testing.T) {
	t.Parallel()
	p := oidctest.Start(t)
	p.SetDown(true)
	cfg := smallConfig(t.TempDir())
	cfg.OIDC = auth.OIDCConfig{Issuer: p.Issuer(), Audience: oidctest.Audience}
	m := app.New(cfg, nil)
	err := m.Run(t.Context())
	if err == nil {
		_ = m.Close()
		t.Fatal("spool started with its identity provider down, want an error")
	}
	t.Logf("start with the provider down: %v", err)
}
