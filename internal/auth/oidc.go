package auth

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// OIDC tokens are checked by libraries, each for what it does best:
// go-oidc discovers the provider (and checks the discovery document names
// the issuer we were told), keyfunc/jwkset keep its key set (periodic
// refresh, a rate-limited refetch for an unknown key id, the old keys kept
// when a refresh fails), and golang-jwt checks signature, algorithm,
// issuer, audience and times with leeway, as it does for spool's own
// tokens. go-oidc's own verifier is not used: it refetches the key set for
// every token with an unknown key id or a bad signature, without a limit,
// and it has no leeway on expiry.

// OIDC defaults.
const (
	// DefaultOIDCUserClaim is the claim naming the user.
	DefaultOIDCUserClaim = "sub"
	// DefaultOIDCClockSkew is the leeway on exp, nbf and iat.
	DefaultOIDCClockSkew = time.Minute
	// MaxOIDCClockSkew bounds the leeway: more would keep a stolen,
	// expired token useful for long.
	MaxOIDCClockSkew = 10 * time.Minute
	// DefaultOIDCKeyRefresh is how often the key set is fetched anyway,
	// so keys a provider publishes before it uses them arrive ahead.
	DefaultOIDCKeyRefresh = 15 * time.Minute
	// DefaultOIDCUnknownKeyRefetch is the least time between two fetches
	// caused by tokens naming a key id not in the set. A token signed by
	// a key the provider has just rotated in triggers one at once; a flood
	// of tokens with made-up key ids costs the provider one fetch per
	// period, not one per token.
	DefaultOIDCUnknownKeyRefetch = 30 * time.Second
)

// Limits on what the provider sends and what a token carries.
const (
	// oidcFetchTimeout bounds discovery and each key set fetch; it also
	// bounds how long a request whose token names an unknown key waits
	// for the rate-limited refetch (longer waits are refused at once).
	oidcFetchTimeout = 10 * time.Second
	// maxOIDCDocument bounds a discovery document or key set read.
	maxOIDCDocument = 1 << 20
	// maxOIDCTokenLen bounds the work a hostile token costs; providers'
	// tokens with group claims run to a few KiB.
	maxOIDCTokenLen = 16 << 10
	// maxOIDCUserID is the longest user id taken from a claim (OpenID
	// Connect caps sub at 255 ASCII characters).
	maxOIDCUserID = 255
)

// OIDCConfig says which OpenID Connect provider's tokens to accept. The
// zero Issuer means none.
type OIDCConfig struct {
	// Issuer is the provider's issuer URL, the "iss" every token must
	// carry exactly; its /.well-known/openid-configuration names the key
	// set unless JWKSURL is set.
	Issuer string
	// JWKSURL, if set, is the provider's key set, and discovery is
	// skipped.
	JWKSURL string
	// Audience must be one of a token's "aud" values: the client id
	// spool's users sign in with, or the API's identifier.
	Audience string
	// ClockSkew is the leeway on exp, nbf and iat, for clocks that
	// disagree; zero means none (DefaultOIDCClockSkew is the flag's).
	ClockSkew time.Duration
	// UserClaim names the claim whose string value identifies the user;
	// empty means DefaultOIDCUserClaim.
	UserClaim string
	// KeyRefresh is how often the key set is fetched anyway; zero means
	// DefaultOIDCKeyRefresh.
	KeyRefresh time.Duration
	// UnknownKeyRefetch is the least time between fetches caused by
	// unknown key ids; zero means DefaultOIDCUnknownKeyRefetch.
	UnknownKeyRefetch time.Duration
}

// OIDCSettingError is a wrong OIDCConfig setting: Setting names the
// field (Issuer, JWKSURL, Audience, ClockSkew, UserClaim, KeyRefresh,
// UnknownKeyRefetch), so that callers can name their own flag for it.
type OIDCSettingError struct {
	Setting string
	Err     error
}

func (e *OIDCSettingError) Error() string { return "OIDC " + e.Setting + ": " + e.Err.Error() }
func (e *OIDCSettingError) Unwrap() error { return e.Err }

func settingError(setting, format string, args ...any) error {
	return &OIDCSettingError{Setting: setting, Err: fmt.Errorf(format, args...)}
}

// Validate returns an *OIDCSettingError for the first setting that is
// wrong: an issuer or key set URL that is not https (http is allowed on
// loopback hosts only, for tests and sidecars) or has a query, fragment
// or user info; a key set URL or audience without an issuer; an issuer
// without an audience, or an odd audience; a clock skew out of [0,
// MaxOIDCClockSkew]; a user claim that cannot name a user; a negative
// refresh interval. Settings that have defaults are checked even when no
// issuer is set.
func (c OIDCConfig) Validate() error {
	if c.ClockSkew < 0 || c.ClockSkew > MaxOIDCClockSkew {
		return settingError("ClockSkew", "%v must be from 0 to %v", c.ClockSkew, MaxOIDCClockSkew)
	}
	if c.KeyRefresh < 0 {
		return settingError("KeyRefresh", "%v must not be negative", c.KeyRefresh)
	}
	if c.UnknownKeyRefetch < 0 {
		return settingError("UnknownKeyRefetch", "%v must not be negative", c.UnknownKeyRefetch)
	}
	claim := c.userClaim()
	if len(claim) > 64 || !printable(claim) || strings.ContainsAny(claim, " #:") {
		return settingError("UserClaim", "%.40q must be a claim name: up to 64 printable characters, without space, # or :", claim)
	}
	if namesNoUser(claim) {
		return settingError("UserClaim", "%q cannot name a user; use sub, or a claim such as email or preferred_username", claim)
	}
	if c.Issuer == "" {
		if c.JWKSURL != "" {
			return settingError("JWKSURL", "needs the issuer too: it is the iss the tokens must carry")
		}
		if c.Audience != "" {
			return settingError("Audience", "needs the issuer too: it says whose tokens to accept")
		}
		return nil
	}
	if err := checkProviderURL(c.Issuer); err != nil {
		return &OIDCSettingError{Setting: "Issuer", Err: err}
	}
	if c.JWKSURL != "" {
		if err := checkProviderURL(c.JWKSURL); err != nil {
			return &OIDCSettingError{Setting: "JWKSURL", Err: err}
		}
	}
	if c.Audience == "" {
		return settingError("Audience", "is required with an issuer: the client id or API identifier the tokens are issued for")
	}
	if len(c.Audience) > 255 || !printable(c.Audience) || strings.ContainsRune(c.Audience, ' ') {
		return settingError("Audience", "%.40q must be 1 to 255 printable characters without spaces", c.Audience)
	}
	return nil
}

// namesNoUser reports whether claim is one that cannot name a user: the
// same for every user, or different for every token of one user (jti).
func namesNoUser(claim string) bool {
	switch claim {
	case "iss", "aud", "exp", "nbf", "iat", "jti", "azp", "nonce":
		return true
	}
	return false
}

func (c OIDCConfig) userClaim() string {
	if c.UserClaim == "" {
		return DefaultOIDCUserClaim
	}
	return c.UserClaim
}

// checkProviderURL accepts an absolute https URL, or an http one on a
// loopback host, without query, fragment or user info (OpenID Connect
// Discovery forbids a query or fragment in an issuer; and a '#' would
// make OIDCVerifier's user keys ambiguous).
func checkProviderURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%.80q is not a URL: %v", s, err)
	}
	if u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("%.80q must be an https:// URL", s)
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return fmt.Errorf("%.80q must be https: keys fetched over plain http could be swapped by anyone on the path (http is allowed for loopback hosts only)", s)
	}
	if u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(s, "?# \t\r\n") || u.User != nil {
		return fmt.Errorf("%.80q must not have a query, fragment, user info or white space", s)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// printable reports whether s is non-empty valid UTF-8 without control
// characters.
func printable(s string) bool {
	if s == "" || !utf8.ValidString(s) {
		return false
	}
	return strings.IndexFunc(s, unicode.IsControl) < 0
}

// OIDCVerifier verifies tokens of one OpenID Connect provider. It is safe
// for concurrent use; Close stops its key refresh.
type OIDCVerifier struct {
	cfg  OIDCConfig
	keys keyfunc.Keyfunc
	// set is the key set as last fetched, which keys reads through (with
	// a refetch for a key id it lacks).
	set    jwkset.Storage
	parser *jwt.Parser
	stop   context.CancelFunc
}

// NewOIDCVerifier discovers the provider (unless cfg.JWKSURL is set) and
// fetches its key set once. It returns an error if cfg is not valid, if
// discovery fails or names another issuer, or if the key set cannot be
// fetched: a server that starts without them would refuse every OIDC user
// while looking healthy. Afterwards, a provider that cannot be reached
// costs nothing but fresh keys: the last key set fetched stays in use
// (failed refreshes are logged to log).
func NewOIDCVerifier(ctx context.Context, cfg OIDCConfig, log *slog.Logger) (*OIDCVerifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Issuer == "" {
		return nil, errors.New("no OIDC issuer given")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	client := &http.Client{Timeout: oidcFetchTimeout, Transport: boundedBodies{next: http.DefaultTransport, limit: maxOIDCDocument}}
	jwksURL := cfg.JWKSURL
	if jwksURL == "" {
		var err error
		if jwksURL, err = discoverKeySet(ctx, client, cfg.Issuer); err != nil {
			return nil, err
		}
	}
	refresh, refetch := cfg.KeyRefresh, cfg.UnknownKeyRefetch
	if refresh == 0 {
		refresh = DefaultOIDCKeyRefresh
	}
	if refetch == 0 {
		refetch = DefaultOIDCUnknownKeyRefetch
	}
	// The refresh goroutine lives until Close, not until ctx (which may
	// be only the start's).
	life, stop := context.WithCancel(context.WithoutCancel(ctx))
	logRefreshError := func(ctx context.Context, err error) {
		log.WarnContext(ctx, "fetching the OIDC key set failed; the keys fetched before stay in use", "jwks_url", jwksURL, "err", err)
	}
	store, err := jwkset.NewStorageFromHTTP(jwksURL, jwkset.HTTPClientStorageOptions{
		Client:              client,
		Ctx:                 life,
		HTTPTimeout:         oidcFetchTimeout,
		RefreshErrorHandler: logRefreshError,
		RefreshInterval:     refresh,
	})
	if err != nil {
		stop()
		return nil, fmt.Errorf("fetching the OIDC key set %s: %w", jwksURL, err)
	}
	storage, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
		HTTPURLs:          map[string]jwkset.Storage{jwksURL: store},
		RateLimitWaitMax:  oidcFetchTimeout,
		RefreshUnknownKID: rate.NewLimiter(rate.Every(refetch), 1),
	})
	if err != nil {
		stop()
		return nil, fmt.Errorf("OIDC key set: %w", err)
	}
	keys, err := keyfunc.New(keyfunc.Options{Ctx: life, Storage: storage})
	if err != nil {
		stop()
		return nil, fmt.Errorf("OIDC key set: %w", err)
	}
	parser := jwt.NewParser(
		// Asymmetric algorithms only: a token signed with a key's public
		// bytes as an HMAC secret (algorithm confusion), or with "none",
		// never verifies.
		jwt.WithValidMethods([]string{jwt.SigningMethodRS256.Alg(), jwt.SigningMethodES256.Alg()}),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.ClockSkew),
	)
	log.Info("accepting OIDC tokens", "issuer", cfg.Issuer, "jwks_url", jwksURL, "audience", cfg.Audience, "user_claim", cfg.userClaim())
	return &OIDCVerifier{cfg: cfg, keys: keys, set: store, parser: parser, stop: stop}, nil
}

// discoverKeySet reads the provider's discovery document, checks it names
// issuer, and returns its key set URL.
func discoverKeySet(ctx context.Context, client *http.Client, issuer string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, oidcFetchTimeout)
	defer cancel()
	provider, err := oidc.NewProvider(oidc.ClientContext(ctx, client), issuer)
	if err != nil {
		return "", fmt.Errorf("discovering the OIDC provider at %s/.well-known/openid-configuration: %w", strings.TrimSuffix(issuer, "/"), err)
	}
	var doc struct {
		JWKSURL string `json:"jwks_uri"`
	}
	if err := provider.Claims(&doc); err != nil {
		return "", fmt.Errorf("reading the OIDC discovery document of %s: %w", issuer, err)
	}
	if err := checkProviderURL(doc.JWKSURL); err != nil {
		return "", fmt.Errorf("the OIDC discovery document of %s names a bad jwks_uri: %w", issuer, err)
	}
	return doc.JWKSURL, nil
}

// Close stops the periodic key refresh.
func (v *OIDCVerifier) Close() { v.stop() }

// Issuer is the issuer whose tokens v verifies.
func (v *OIDCVerifier) Issuer() string { return v.cfg.Issuer }

// key returns the public key of id kid in the key set as last fetched,
// without fetching it again if it is not there.
func (v *OIDCVerifier) key(ctx context.Context, kid string) (crypto.PublicKey, bool) {
	jwk, err := v.set.KeyRead(ctx, kid)
	if err != nil {
		return nil, false
	}
	return jwk.Key(), true
}

// Verify checks token and returns the user it names, as OIDCSubject
// spells it. It returns an error wrapping ErrInvalidToken if the token is
// malformed, not signed with RS256 or ES256 by a key of the provider's set
// (one it names by key id not in the set triggers a rate-limited refetch),
// not issued by the configured issuer, not for the audience, expired or
// not yet valid beyond the clock skew, without an expiry, or if the user
// claim is missing, empty, not a string, too long or has control
// characters.
func (v *OIDCVerifier) Verify(ctx context.Context, token string) (subject string, err error) {
	if len(token) > maxOIDCTokenLen || !isTokenSyntax(token) {
		return "", errMalformed
	}
	claims := jwt.MapClaims{}
	if _, err := v.parser.ParseWithClaims(token, claims, v.keys.KeyfuncCtx(ctx)); err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	claim := v.cfg.userClaim()
	id, ok := claims[claim].(string)
	if !ok || len(id) > maxOIDCUserID || !printable(id) {
		return "", fmt.Errorf("%w: claim %q must be a string of 1 to %d printable characters", errBadUserClaim, claim, maxOIDCUserID)
	}
	return OIDCSubject(v.cfg.Issuer, claim, id), nil
}

// OIDCSubject is the subject spool keeps for the user an OIDC provider
// names: ISSUER#CLAIM:VALUE. The issuer keeps apart users of different
// providers (a sub is unique only within its issuer) and the claim users
// named by different claims; and since a URL has ':' and '/', which
// ValidSubject refuses, no OIDC subject can equal the subject of one of
// spool's own tokens, nor can a spool token be issued for one.
func OIDCSubject(issuer, claim, value string) string {
	return issuer + "#" + claim + ":" + value
}

// boundedBodies cuts response bodies at limit bytes: a provider's
// documents are small, and a broken or hostile one must not fill memory.
type boundedBodies struct {
	next  http.RoundTripper
	limit int64
}

func (b boundedBodies) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := b.next.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = http.MaxBytesReader(nil, resp.Body, b.limit)
	return resp, nil
}
