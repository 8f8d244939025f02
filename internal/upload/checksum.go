package upload

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"hash/crc32"
	"strings"
)

// Digest is a checksum a client declares for a chunk: an algorithm and
// the expected sum.
type Digest struct {
	Alg string // "crc32c", "md5", "sha1" or "sha256"
	Sum []byte
}

// digestSizes are the algorithms spool verifies and their sum sizes.
// sha1 is there for tus clients (their checksum extension's usual
// algorithm), not for its strength: it guards against corruption in
// transit, as CRC32C does.
var digestSizes = map[string]int{"crc32c": 4, "md5": 16, "sha1": 20, "sha256": 32}

// ParseDigest parses "alg:value" where alg is crc32c, md5, sha1 or sha256 and
// value is hex or base64 (standard or URL alphabet, padded or not). It
// returns BAD_USER_INPUT for anything else.
func ParseDigest(s string) (Digest, error) {
	alg, value, ok := strings.Cut(s, ":")
	if !ok {
		alg, value, ok = strings.Cut(s, "=") // x-goog-hash style
	}
	alg = strings.ToLower(strings.TrimSpace(alg))
	size, known := digestSizes[alg]
	if !ok || !known {
		return Digest{}, Errorf(CodeBadUserInput, "checksum must look like crc32c:<value>, md5:<value>, sha1:<value> or sha256:<value>")
	}
	value = strings.TrimSpace(value)
	if sum, err := hex.DecodeString(value); err == nil && len(sum) == size {
		return Digest{Alg: alg, Sum: sum}, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if sum, err := enc.DecodeString(value); err == nil && len(sum) == size {
			return Digest{Alg: alg, Sum: sum}, nil
		}
	}
	return Digest{}, Errorf(CodeBadUserInput, "%s checksum must be %d bytes in hex or base64", alg, size)
}

// String formats the digest as alg:hex, the form spool stores.
func (d Digest) String() string { return d.Alg + ":" + hex.EncodeToString(d.Sum) }

func newHash(alg string) hash.Hash {
	switch alg {
	case "md5":
		return md5.New()
	case "sha1":
		return sha1.New()
	case "sha256":
		return sha256.New()
	default:
		return crc32.New(crc32.MakeTable(crc32.Castagnoli))
	}
}

// matchesStored reports whether d agrees with what spool recorded for a
// chunk: its CRC32C always, another digest only if one was verified at
// receipt. known is false when spool has nothing to compare d with.
func (d Digest) matchesStored(crc uint32, stored *string) (match, known bool) {
	if d.Alg == "crc32c" {
		return bytes.Equal(d.Sum, binary.BigEndian.AppendUint32(nil, crc)), true
	}
	if stored == nil || !strings.HasPrefix(*stored, d.Alg+":") {
		return false, false
	}
	return *stored == d.String(), true
}

// describe shows a digest mismatch for a person.
func describeMismatch(alg string, want, got []byte) string {
	return fmt.Sprintf("%s is %s, the client declared %s", alg, hex.EncodeToString(got), hex.EncodeToString(want))
}
