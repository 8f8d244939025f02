package signing

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

func newSigner(tb testing.TB) *Signer {
	tb.Helper()
	s, err := New(testSecret)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return s
}

func TestNew(t *testing.T) {
	tests := []struct {
		size    int
		wantErr bool
	}{
		{0, true},
		{31, true},
		{32, false},
		{64, false},
	}
	for _, tt := range tests {
		_, err := New(make([]byte, tt.size))
		if gotErr := err != nil; gotErr != tt.wantErr {
			t.Errorf("New(%d bytes) error = %v, want error %v", tt.size, err, tt.wantErr)
		}
	}
}

func TestNewCopiesSecret(t *testing.T) {
	secret := append([]byte(nil), testSecret...)
	s, err := New(secret)
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Unix(2000, 0)
	before := s.Sign(exp, "x")
	secret[0] ^= 1
	if got := s.Sign(exp, "x"); got != before {
		t.Errorf("Sign changed after the caller modified the secret: got %q, want %q", got, before)
	}
}

func TestVerify(t *testing.T) {
	s := newSigner(t)
	other, err := New([]byte(strings.Repeat("z", 32)))
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Unix(1_800_000_000, 0)
	before := exp.Add(-time.Minute)
	sig := s.Sign(exp, "PUT", "upload1", "3")

	tests := []struct {
		name    string
		sig     string
		expires time.Time
		now     time.Time
		parts   []string
		want    error
	}{
		{"valid", sig, exp, before, []string{"PUT", "upload1", "3"}, nil},
		{"valid at expiry", sig, exp, exp, []string{"PUT", "upload1", "3"}, nil},
		{"expired", sig, exp, exp.Add(time.Nanosecond), []string{"PUT", "upload1", "3"}, ErrExpired},
		{"other part", sig, exp, before, []string{"PUT", "upload1", "4"}, ErrBadSignature},
		{"other method", sig, exp, before, []string{"GET", "upload1", "3"}, ErrBadSignature},
		{"fewer parts", sig, exp, before, []string{"PUT", "upload1"}, ErrBadSignature},
		{"more parts", sig, exp, before, []string{"PUT", "upload1", "3", ""}, ErrBadSignature},
		{"parts shifted", sig, exp, before, []string{"PUTupload1", "", "3"}, ErrBadSignature},
		{"other expiry", sig, exp.Add(time.Second), before, []string{"PUT", "upload1", "3"}, ErrBadSignature},
		{"tampered and expired", sig, exp.Add(time.Second), exp.Add(time.Hour), []string{"PUT", "upload1", "3"}, ErrBadSignature},
		{"other secret", other.Sign(exp, "PUT", "upload1", "3"), exp, before, []string{"PUT", "upload1", "3"}, ErrBadSignature},
		{"empty", "", exp, before, []string{"PUT", "upload1", "3"}, ErrBadSignature},
		{"not base64", strings.Repeat("!", len(sig)), exp, before, []string{"PUT", "upload1", "3"}, ErrBadSignature},
		{"padded", sig + "=", exp, before, []string{"PUT", "upload1", "3"}, ErrBadSignature},
		{"truncated", sig[:len(sig)-1], exp, before, []string{"PUT", "upload1", "3"}, ErrBadSignature},
		{"newline inside", sig[:10] + "\n" + sig[11:], exp, before, []string{"PUT", "upload1", "3"}, ErrBadSignature},
	}
	for _, tt := range tests {
		if got := s.Verify(tt.sig, tt.expires, tt.now, tt.parts...); !errors.Is(got, tt.want) || (tt.want == nil && got != nil) {
			t.Errorf("%s: Verify = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestVerifyRejectsNonCanonicalTrailingBits(t *testing.T) {
	s := newSigner(t)
	exp := time.Unix(1_800_000_000, 0)
	sig := s.Sign(exp, "a")
	// The last of 43 characters carries 4 bits of the MAC and 2 unused bits;
	// setting an unused bit must not give a second valid spelling.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, sig[len(sig)-1])
	for bit := 0; bit < 2; bit++ {
		altered := sig[:len(sig)-1] + string(alphabet[last^(1<<bit)])
		if err := s.Verify(altered, exp, exp, "a"); !errors.Is(err, ErrBadSignature) {
			t.Errorf("Verify(%q) with trailing bit %d set = %v, want %v", altered, bit, err, ErrBadSignature)
		}
	}
}

func TestSignIsUnambiguous(t *testing.T) {
	s := newSigner(t)
	exp := time.Unix(1_800_000_000, 0)
	lists := [][]string{
		{"ab", "c"}, {"a", "bc"}, {"abc"}, {"abc", ""}, {"", "abc"}, {}, {""}, {"", ""},
	}
	seen := map[string][]string{}
	for _, parts := range lists {
		sig := s.Sign(exp, parts...)
		if prev, ok := seen[sig]; ok {
			t.Errorf("Sign(%q) = Sign(%q) = %q", parts, prev, sig)
		}
		seen[sig] = parts
	}
}

func TestSignQuery(t *testing.T) {
	s := newSigner(t)
	exp := time.Unix(1_800_000_000, 500_000_000) // signed to the second
	q := url.Values{"other": {"kept"}}
	s.SignQuery(q, exp, "PUT", "u1", "0")
	if got, want := q.Get("exp"), "1800000000"; got != want {
		t.Errorf("exp = %q, want %q", got, want)
	}
	if got, want := q.Get("sig"), s.Sign(exp, "PUT", "u1", "0"); got != want {
		t.Errorf("sig = %q, want %q", got, want)
	}
	if got, want := q.Get("other"), "kept"; got != want {
		t.Errorf("other = %q, want %q", got, want)
	}

	// Through a real URL and back.
	parsed, err := url.ParseQuery(q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.VerifyQuery(parsed, exp.Add(-time.Hour), "PUT", "u1", "0"); err != nil {
		t.Errorf("VerifyQuery of a fresh URL = %v, want nil", err)
	}
}

func TestVerifyQuery(t *testing.T) {
	s := newSigner(t)
	exp := time.Unix(1_800_000_000, 0)
	before := exp.Add(-time.Minute)
	sig := s.Sign(exp, "x")
	with := func(kv ...string) url.Values {
		q := url.Values{}
		for i := 0; i < len(kv); i += 2 {
			q.Add(kv[i], kv[i+1])
		}
		return q
	}
	tests := []struct {
		name string
		q    url.Values
		now  time.Time
		want error
	}{
		{"valid", with("exp", "1800000000", "sig", sig), before, nil},
		{"expired", with("exp", "1800000000", "sig", sig), exp.Add(time.Second), ErrExpired},
		{"no exp", with("sig", sig), before, ErrBadSignature},
		{"no sig", with("exp", "1800000000"), before, ErrBadSignature},
		{"empty exp", with("exp", "", "sig", sig), before, ErrBadSignature},
		{"exp not a number", with("exp", "soon", "sig", sig), before, ErrBadSignature},
		{"exp with plus", with("exp", "+1800000000", "sig", sig), before, ErrBadSignature},
		{"exp with leading zero", with("exp", "01800000000", "sig", sig), before, ErrBadSignature},
		{"exp with space", with("exp", " 1800000000", "sig", sig), before, ErrBadSignature},
		{"exp overflows", with("exp", "99999999999999999999", "sig", sig), before, ErrBadSignature},
		{"exp extended", with("exp", "1800000001", "sig", sig), before, ErrBadSignature},
		{"exp repeated", with("exp", "1800000000", "exp", "1800000000", "sig", sig), before, ErrBadSignature},
		{"sig repeated", with("exp", "1800000000", "sig", sig, "sig", sig), before, ErrBadSignature},
	}
	for _, tt := range tests {
		if got := s.VerifyQuery(tt.q, tt.now, "x"); !errors.Is(got, tt.want) || (tt.want == nil && got != nil) {
			t.Errorf("%s: VerifyQuery(%v) = %v, want %v", tt.name, tt.q, got, tt.want)
		}
	}
}

func FuzzVerify(f *testing.F) {
	f.Add("PUT", "upload1", "3", int64(1_800_000_000), "PUT", "upload1", "3", int64(1_800_000_000), "", uint8(0), uint8(0))
	f.Add("ab", "c", "", int64(0), "a", "bc", "", int64(0), "", uint8(0), uint8(0))
	f.Add("x", "y", "z", int64(1), "x", "y", "z", int64(2), "", uint8(0), uint8(0))
	f.Add("x", "y", "z", int64(5), "x", "y", "z", int64(5), "", uint8(42), uint8(1))
	f.Add("x", "y", "z", int64(5), "x", "y", "z", int64(5), "AAAA", uint8(0), uint8(0))
	f.Fuzz(func(t *testing.T, a, b, c string, exp int64, a2, b2, c2 string, exp2 int64, replacement string, pos, flip uint8) {
		s := newSigner(t)
		// Keep expiries where time.Unix round-trips.
		exp %= 1 << 40
		exp2 %= 1 << 40
		expires, expires2 := time.Unix(exp, 0), time.Unix(exp2, 0)
		before := expires.Add(-time.Second)

		sig := s.Sign(expires, a, b, c)
		if err := s.Verify(sig, expires, before, a, b, c); err != nil {
			t.Fatalf("Verify of a fresh signature = %v, want nil", err)
		}
		if err := s.Verify(sig, expires, expires.Add(time.Second), a, b, c); !errors.Is(err, ErrExpired) {
			t.Fatalf("Verify after expiry = %v, want %v", err, ErrExpired)
		}

		// Any change to parts or expiry fails, expired or not.
		partsChanged := a != a2 || b != b2 || c != c2
		changed := partsChanged || exp != exp2
		for _, now := range []time.Time{before, expires2.Add(time.Hour)} {
			err := s.Verify(sig, expires2, now, a2, b2, c2)
			if changed && !errors.Is(err, ErrBadSignature) {
				t.Fatalf("Verify(%q, %d) of a signature over (%q, %d) = %v, want %v", []string{a2, b2, c2}, exp2, []string{a, b, c}, exp, err, ErrBadSignature)
			}
		}
		if err := s.Verify(sig, expires, before, a, b); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("Verify with a part dropped = %v, want %v", err, ErrBadSignature)
		}

		// Any other spelling of the signature fails.
		altered := []byte(sig)
		altered[int(pos)%len(altered)] ^= flip
		for _, other := range []string{string(altered), replacement, sig + replacement} {
			if other == sig {
				continue
			}
			if err := s.Verify(other, expires, before, a, b, c); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("Verify(%q) instead of %q = %v, want %v", other, sig, err, ErrBadSignature)
			}
		}

		// The same holds through the query parameters.
		q := url.Values{}
		s.SignQuery(q, expires, a, b, c)
		if err := s.VerifyQuery(q, before, a, b, c); err != nil {
			t.Fatalf("VerifyQuery of a fresh query = %v, want nil", err)
		}
		if partsChanged {
			if err := s.VerifyQuery(q, before, a2, b2, c2); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("VerifyQuery with other parts = %v, want %v", err, ErrBadSignature)
			}
		}
		if replacement != q.Get("exp") {
			q.Set("exp", replacement)
			if err := s.VerifyQuery(q, before, a, b, c); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("VerifyQuery with exp %q instead of %d = %v, want %v", replacement, exp, err, ErrBadSignature)
			}
		}
	})
}
