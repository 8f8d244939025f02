// Package oidctest runs an OpenID Connect provider in process for tests:
// it serves a discovery document and a key set over real HTTP, signs
// tokens with RSA (RS256) and ECDSA (ES256) keys, rotates them, and can
// be taken down. It is a stand-in for an identity provider, which no test
// machine runs.
package oidctest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// Audience is the audience the provider's tokens carry by default.
const Audience = "spool-test-client"

// Key is a signing key of the provider.
type Key struct {
	ID     string
	Method jwt.SigningMethod
	// Private signs; Public() verifies.
	Private crypto.Signer
}

// Provider is a running identity provider.
type Provider struct {
	t   testing.TB
	srv *httptest.Server
	// down makes every request answer 503.
	down atomic.Bool
	// jwksFetches counts key set requests answered (down or not).
	jwksFetches atomic.Int64

	mu        sync.Mutex
	published []Key // in the key set
	next      int   // numbers key ids
}

// Start runs a provider with one RSA and one ECDSA key published, until
// the test ends.
func Start(t testing.TB) *Provider {
	t.Helper()
	p := &Provider{t: t}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", p.discovery)
	mux.HandleFunc("GET /jwks", p.jwks)
	p.srv = httptest.NewServer(p.unlessDown(mux))
	t.Cleanup(p.srv.Close)
	p.NewKey(jwt.SigningMethodRS256)
	p.NewKey(jwt.SigningMethodES256)
	return p
}

// Issuer is the provider's issuer URL (http on loopback).
func (p *Provider) Issuer() string { return p.srv.URL }

// JWKSURL is where the provider serves its key set.
func (p *Provider) JWKSURL() string { return p.srv.URL + "/jwks" }

// JWKSFetches is how many times the key set was asked for.
func (p *Provider) JWKSFetches() int64 { return p.jwksFetches.Load() }

// SetDown makes the provider answer every request with 503 (down) or
// serve again.
func (p *Provider) SetDown(down bool) { p.down.Store(down) }

func (p *Provider) unlessDown(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/jwks" {
			p.jwksFetches.Add(1)
		}
		if p.down.Load() {
			http.Error(w, "provider down", http.StatusServiceUnavailable)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (p *Provider) discovery(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"issuer":                                p.Issuer(),
		"jwks_uri":                              p.JWKSURL(),
		"authorization_endpoint":                p.Issuer() + "/authorize",
		"token_endpoint":                        p.Issuer() + "/token",
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
	})
}

func (p *Provider) jwks(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	keys := append([]Key(nil), p.published...)
	p.mu.Unlock()
	set := jwkset.NewMemoryStorage()
	for _, k := range keys {
		jwk, err := jwkset.NewJWKFromKey(k.Private.Public(), jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{
			KID: k.ID, ALG: jwkset.ALG(k.Method.Alg()), USE: jwkset.UseSig,
		}})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if err := set.KeyWrite(r.Context(), jwk); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
	}
	body, err := set.JSONPublic(context.Background())
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

// NewKey makes a key for method (RS256 or ES256), publishes it and
// returns it.
func (p *Provider) NewKey(method jwt.SigningMethod) Key {
	p.t.Helper()
	k := p.UnpublishedKey(method)
	p.mu.Lock()
	p.published = append(p.published, k)
	p.mu.Unlock()
	return k
}

// UnpublishedKey makes a key for method that the provider does not
// publish.
func (p *Provider) UnpublishedKey(method jwt.SigningMethod) Key {
	p.t.Helper()
	var (
		priv crypto.Signer
		err  error
	)
	switch method {
	case jwt.SigningMethodRS256:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case jwt.SigningMethodES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		p.t.Fatalf("oidctest: no keys for %s", method.Alg())
	}
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.next++
	id := fmt.Sprintf("key-%d", p.next)
	p.mu.Unlock()
	return Key{ID: id, Method: method, Private: priv}
}

// Rotate publishes a new key for method and withdraws every other key of
// that method, as a provider does once the old key's tokens have
// expired; it returns the new key.
func (p *Provider) Rotate(method jwt.SigningMethod) Key {
	p.t.Helper()
	k := p.UnpublishedKey(method)
	p.mu.Lock()
	defer p.mu.Unlock()
	kept := []Key{k}
	for _, old := range p.published {
		if old.Method != method {
			kept = append(kept, old)
		}
	}
	p.published = kept
	return k
}

// Current returns the newest published key for method.
func (p *Provider) Current(method jwt.SigningMethod) Key {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.published) - 1; i >= 0; i-- {
		if p.published[i].Method == method {
			return p.published[i]
		}
	}
	p.t.Fatalf("oidctest: no key for %s", method.Alg())
	return Key{}
}

// Claims returns the claims of a valid token for subject: this issuer,
// Audience, issued now, expiring in an hour. Tests change them to make
// bad tokens.
func (p *Provider) Claims(subject string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"iss": p.Issuer(), "aud": Audience, "sub": subject,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}
}

// Sign returns claims signed with k, its id in the header.
func (p *Provider) Sign(k Key, claims jwt.Claims) string {
	p.t.Helper()
	tok := jwt.NewWithClaims(k.Method, claims)
	tok.Header["kid"] = k.ID
	s, err := tok.SignedString(k.Private)
	if err != nil {
		p.t.Fatal(err)
	}
	return s
}

// Token returns a valid token for subject signed with the current key for
// method.
func (p *Provider) Token(method jwt.SigningMethod, subject string) string {
	p.t.Helper()
	return p.Sign(p.Current(method), p.Claims(subject))
}
