package upload

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/spoolhq/spool/internal/digest"
)

// Digest is a checksum a client declares for a chunk: an algorithm and
// the expected sum.
type Digest = digest.Digest

// ParseDigest parses "alg:value" where alg is crc32c, md5, sha1 or sha256
// and value is hex or base64 (digest.Parse). It returns BAD_USER_INPUT for
// anything else.
func ParseDigest(s string) (Digest, error) {
	d, err := digest.Parse(s)
	if err != nil {
		return Digest{}, Errorf(CodeBadUserInput, "%s", err)
	}
	return d, nil
}

// digestMatchesStored reports whether d agrees with what spool recorded
// for a chunk: its CRC32C always, another digest only if one was verified
// at receipt. known is false when spool has nothing to compare d with.
func digestMatchesStored(d Digest, crc uint32, stored *string) (match, known bool) {
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
