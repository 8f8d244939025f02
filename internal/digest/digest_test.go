package digest

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const (
	md5Hello    = "5d41402abc4b2a76b9719d911017c592"
	sha256Hello = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		alg     string
		sumHex  string
		wantErr bool
	}{
		{in: "crc32c:deadbeef", alg: "crc32c", sumHex: "deadbeef"},
		{in: "crc32c:DEADBEEF", alg: "crc32c", sumHex: "deadbeef"},
		{in: "crc32c=3q2+7w==", alg: "crc32c", sumHex: "deadbeef"}, // x-goog-hash style, std base64
		{in: "crc32c:3q2+7w", alg: "crc32c", sumHex: "deadbeef"},   // raw std
		{in: "crc32c:3q2-7w==", alg: "crc32c", sumHex: "deadbeef"}, // URL alphabet
		{in: "crc32c:3q2-7w", alg: "crc32c", sumHex: "deadbeef"},   // raw URL
		{in: "MD5:" + md5Hello, alg: "md5", sumHex: md5Hello},
		{in: "md5=XUFAKrxLKna5cZ2REBfFkg==", alg: "md5", sumHex: md5Hello},
		{in: "sha256:" + sha256Hello, alg: "sha256", sumHex: sha256Hello},
		{in: "sha256:LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=", alg: "sha256", sumHex: sha256Hello},
		{in: " sha256 : " + sha256Hello + " ", alg: "sha256", sumHex: sha256Hello},

		{in: "", wantErr: true},
		{in: "deadbeef", wantErr: true},             // no algorithm
		{in: "sha1:deadbeef", wantErr: true},        // 4 bytes, not 20
		{in: "crc32:deadbeef", wantErr: true},       // unknown algorithm
		{in: "crc32c:dead", wantErr: true},          // 2 bytes, not 4
		{in: "crc32c:deadbeef00", wantErr: true},    // 5 bytes
		{in: "crc32c:", wantErr: true},              // empty
		{in: "crc32c:zzzzzzzz", wantErr: true},      // neither hex nor 4 bytes of base64
		{in: "md5:" + md5Hello[:30], wantErr: true}, // 15 bytes
		{in: "md5:" + sha256Hello, wantErr: true},   // a sha256 where md5 belongs
		{in: "sha256:" + md5Hello, wantErr: true},   // an md5 where sha256 belongs
		{in: "sha256:" + sha256Hello[2:], wantErr: true},
		{in: "sha256:XUFAKrxLKna5cZ2REBfFkg==", wantErr: true}, // base64 of 16 bytes
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			d, err := Parse(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Parse(%q) = %v, want an error", tt.in, d)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q) = %v, want nil", tt.in, err)
			}
			if d.Alg != tt.alg || !bytes.Equal(d.Sum, mustHex(t, tt.sumHex)) {
				t.Fatalf("Parse(%q) = %s:%x, want %s:%s", tt.in, d.Alg, d.Sum, tt.alg, tt.sumHex)
			}
			if got, want := d.String(), tt.alg+":"+tt.sumHex; got != want {
				t.Fatalf("String() = %q, want %q", got, want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"crc32c:deadbeef", "crc32c=3q2+7w==", "crc32c:3q2-7w", "md5:" + md5Hello,
		"md5=XUFAKrxLKna5cZ2REBfFkg==", "sha256:" + sha256Hello,
		"sha256:LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=", "SHA256 : x", "=", ":", "",
		"crc32c:3q2+\n7w==", "md5:\x00",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := Parse(s)
		if err != nil {
			return
		}
		size, ok := sizes[d.Alg]
		if !ok {
			t.Fatalf("Parse(%q) alg = %q, want one of crc32c, md5, sha1, sha256", s, d.Alg)
		}
		if len(d.Sum) != size {
			t.Fatalf("Parse(%q) sum is %d bytes, want %d for %s", s, len(d.Sum), size, d.Alg)
		}
		again, err := Parse(d.String())
		if err != nil {
			t.Fatalf("Parse(%q) (String of %q) = %v, want nil", d.String(), s, err)
		}
		if again.Alg != d.Alg || !bytes.Equal(again.Sum, d.Sum) {
			t.Fatalf("re-parsed %q = %s:%x, want %s:%x", d.String(), again.Alg, again.Sum, d.Alg, d.Sum)
		}
		if !strings.HasPrefix(d.String(), d.Alg+":") {
			t.Fatalf("String() = %q, want prefix %q", d.String(), d.Alg+":")
		}
	})
}
