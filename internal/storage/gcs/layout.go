// Names of the objects of an upload, and the rules for keys and URLs.

package gcs

import (
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/spoolhq/spool/internal/storage/storagekey"
	"github.com/spoolhq/spool/internal/upload"
)

// bucketNameRE is GCS's rule for the characters and length of bucket
// names; validBucketName adds the limit on the parts of dotted names.
var bucketNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$`)

// validBucketName reports whether name may name a GCS bucket: 3 to 222
// characters, in dot-separated parts of 1 to 63 (so 63 at most without
// dots).
func validBucketName(name string) bool {
	if !bucketNameRE.MatchString(name) {
		return false
	}
	for part := range strings.SplitSeq(name, ".") {
		if part == "" || len(part) > 63 {
			return false
		}
	}
	return true
}

// ParseURL splits a storage URL gs://bucket/prefix into its bucket and
// prefix (without slashes at either end; empty if there is none). It
// fails for another scheme, a missing or invalid bucket name, a prefix
// that breaks the rule for keys (empty, "." or ".." segments among
// others), or a URL with a user, port, query or fragment.
func ParseURL(rawURL string) (bucket, prefix string, err error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", "", fmt.Errorf("gcs: storage URL %q is not a URL", rawURL)
	}
	if u.Scheme != "gs" {
		return "", "", fmt.Errorf("gcs: storage URL %q must start with gs:// (gs://bucket/prefix)", rawURL)
	}
	if u.Opaque != "" || u.User != nil || u.Port() != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return "", "", fmt.Errorf("gcs: storage URL %q must be gs://bucket/prefix, without user, port, query or fragment", rawURL)
	}
	bucket = u.Hostname()
	if bucket == "" {
		return "", "", fmt.Errorf("gcs: storage URL %q names no bucket (gs://bucket/prefix)", rawURL)
	}
	if !validBucketName(bucket) {
		return "", "", fmt.Errorf("gcs: storage URL %q: %q is not a valid bucket name (3-222 lower-case letters, digits, -, _ and ., at most 63 between dots)", rawURL, bucket)
	}
	// The prefix stands before keys in object names: the rule for keys
	// keeps it from aliasing another prefix ("a//b", "a/./b").
	prefix = strings.Trim(u.Path, "/")
	if prefix != "" && checkKey(prefix) != nil {
		return "", "", fmt.Errorf("gcs: storage URL %q: prefix %q must be path segments without empty, . or .. ones", rawURL, prefix)
	}
	return bucket, prefix, nil
}

// validName reports whether s may be part of an object name: valid UTF-8
// without control characters.
func validName(s string) bool {
	return utf8.ValidString(s) && strings.IndexFunc(s, unicode.IsControl) < 0
}

// checkKey applies storagekey's rule, and GCS's own to object names.
func checkKey(key string) error {
	if err := storagekey.Check(key); err != nil {
		return fmt.Errorf("gcs: %w", err)
	}
	if !validName(key) {
		return fmt.Errorf("gcs: invalid key %q: not an object name", key)
	}
	return nil
}

func checkChunk(op, key string, chunk upload.ChunkRef) error {
	if chunk.Index < 0 || chunk.Offset < 0 || chunk.Size < 0 {
		return fmt.Errorf("gcs: %s %q: invalid chunk %+v", op, key, chunk)
	}
	return nil
}

func (s *Store) partsDir(key string) string   { return s.prefix + partsDirName + key + "/" }
func (s *Store) markerName(key string) string { return s.partsDir(key) + markerBaseName }
func (s *Store) tmpDir(key string) string     { return s.prefix + tmpDirName + key + "/" }
func (s *Store) objectName(key string) string { return s.prefix + objectsDirName + key }

func (s *Store) partName(key string, index int) string {
	return fmt.Sprintf("%s%06d", s.partsDir(key), index)
}

// pieceName names the piece of a chunk that starts at its byte at.
func (s *Store) pieceName(key string, index int, at int64) string {
	return fmt.Sprintf("%s%012d", s.piecePrefix(key, index), at)
}

// piecePrefix starts the names of a chunk's pieces; no part's name does.
func (s *Store) piecePrefix(key string, index int) string {
	return s.partName(key, index) + pieceInfix
}

// pieceOffset returns the byte a piece starts at from its name, which
// starts with prefix (piecePrefix), and false for any other object.
func pieceOffset(prefix, name string) (int64, bool) {
	digits, ok := strings.CutPrefix(name, prefix)
	if !ok || len(digits) < 12 || strings.Trim(digits, "0123456789") != "" {
		return 0, false
	}
	at, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || fmt.Sprintf("%012d", at) != digits {
		return 0, false
	}
	return at, true
}

// partIndex returns the chunk index of a part object's name under dir,
// and false for any other object (the marker, pieces).
func partIndex(dir, name string) (int, bool) {
	base, ok := strings.CutPrefix(name, dir)
	if !ok || len(base) < 6 || strings.Trim(base, "0123456789") != "" {
		return 0, false
	}
	i, err := strconv.Atoi(base)
	if err != nil || fmt.Sprintf("%06d", i) != base {
		return 0, false
	}
	return i, true
}
