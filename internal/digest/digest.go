// Package digest parses and computes the checksums a client may declare
// for the bytes it sends: CRC32C, MD5, SHA-1 and SHA-256. It depends on
// nothing beyond the standard library so that its fuzz target builds in
// seconds: `go test -fuzz` instruments every package the target imports,
// and internal/upload imports the database drivers and storage clients.
package digest

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"strings"
)

// Digest is a checksum: an algorithm and the expected sum.
type Digest struct {
	Alg string // "crc32c", "md5", "sha1" or "sha256"
	Sum []byte
}

// sizes are the algorithms spool verifies and their sum sizes. sha1 is
// there for tus clients (their checksum extension's usual algorithm), not
// for its strength: it guards against corruption in transit, as CRC32C
// does.
var sizes = map[string]int{"crc32c": 4, "md5": 16, "sha1": 20, "sha256": 32}

// Parse parses "alg:value" (or "alg=value", x-goog-hash's form) where alg
// is crc32c, md5, sha1 or sha256, in any case, and value is the sum in hex
// or base64 (standard or URL alphabet, padded or not). Its errors say
// what a client should send instead.
func Parse(s string) (Digest, error) {
	alg, value, ok := strings.Cut(s, ":")
	if !ok {
		alg, value, ok = strings.Cut(s, "=")
	}
	alg = strings.ToLower(strings.TrimSpace(alg))
	size, known := sizes[alg]
	if !ok || !known {
		return Digest{}, errors.New("checksum must look like crc32c:<value>, md5:<value>, sha1:<value> or sha256:<value>")
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
	return Digest{}, fmt.Errorf("%s checksum must be %d bytes in hex or base64", alg, size)
}

// String formats the digest as alg:hex, the form spool stores.
func (d Digest) String() string { return d.Alg + ":" + hex.EncodeToString(d.Sum) }

// NewHash returns a hash computing alg's sums; CRC32C (Castagnoli) for an
// algorithm it does not know, the sum spool keeps of every chunk.
func NewHash(alg string) hash.Hash {
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
