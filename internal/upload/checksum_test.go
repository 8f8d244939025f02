package upload

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

// TestParseDigestErrorCode: a checksum spool cannot read is the client's
// mistake, BAD_USER_INPUT with digest.Parse's message (its cases are
// internal/digest's tests).
func TestParseDigestErrorCode(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"", "deadbeef", "crc32:deadbeef", "crc32c:dead", "md5:" + sha256Hello} {
		d, err := ParseDigest(in)
		if err == nil {
			t.Fatalf("ParseDigest(%q) = %v, want an error", in, d)
		}
		if got, want := ErrorCode(err), CodeBadUserInput; got != want {
			t.Errorf("ParseDigest(%q) code = %s, want %s", in, got, want)
		}
		if !strings.Contains(err.Error(), "checksum must") {
			t.Errorf("ParseDigest(%q) error = %q, want it to say what a checksum must be", in, err)
		}
	}
	d, err := ParseDigest("MD5:" + md5Hello)
	if err != nil || d.Alg != "md5" || !bytes.Equal(d.Sum, mustHex(t, md5Hello)) {
		t.Fatalf("ParseDigest(MD5:%s) = %v, %v; want md5:%s", md5Hello, d, err, md5Hello)
	}
}

func TestDigestMatchesStored(t *testing.T) {
	t.Parallel()
	md5Stored := "md5:" + md5Hello
	shaStored := "sha256:" + sha256Hello
	tests := []struct {
		name        string
		d           Digest
		crc         uint32
		stored      *string
		match, know bool
	}{
		{"crc32c equal, big-endian", Digest{Alg: "crc32c", Sum: []byte{0xde, 0xad, 0xbe, 0xef}}, 0xdeadbeef, nil, true, true},
		{"crc32c byte order matters", Digest{Alg: "crc32c", Sum: []byte{0xef, 0xbe, 0xad, 0xde}}, 0xdeadbeef, nil, false, true},
		{"crc32c differs", Digest{Alg: "crc32c", Sum: []byte{0, 0, 0, 1}}, 0xdeadbeef, &md5Stored, false, true},
		{"md5 equal to stored", Digest{Alg: "md5", Sum: mustHex(t, md5Hello)}, 0, &md5Stored, true, true},
		{"md5 differs from stored", Digest{Alg: "md5", Sum: make([]byte, 16)}, 0, &md5Stored, false, true},
		{"md5 with nothing stored", Digest{Alg: "md5", Sum: mustHex(t, md5Hello)}, 0, nil, false, false},
		{"md5 with a sha256 stored", Digest{Alg: "md5", Sum: mustHex(t, md5Hello)}, 0, &shaStored, false, false},
		{"sha256 equal to stored", Digest{Alg: "sha256", Sum: mustHex(t, sha256Hello)}, 0, &shaStored, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			match, known := digestMatchesStored(tt.d, tt.crc, tt.stored)
			if match != tt.match || known != tt.know {
				t.Fatalf("matchesStored = %v, %v; want %v, %v", match, known, tt.match, tt.know)
			}
		})
	}
}
