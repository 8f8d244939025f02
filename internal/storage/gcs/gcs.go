// Package gcs is the Google Cloud Storage engine: it keeps uploads and the
// files they become as objects in one bucket, under an optional prefix.
//
// Layout, under the prefix:
//
//	parts/<key>/prepared         marker: the upload takes chunks (size in metadata)
//	parts/<key>/<index>          one object per chunk, index as %06d
//	tmp/<key>/<run>-<level>-<n>  compose intermediates while assembling
//	objects/<key>                the finished file
//
// WriteChunk streams a chunk into its own object through a resumable
// upload, holding one buffer of Options.WriteBufferSize whatever the chunk
// size, and checks the stored object's CRC32C against the one computed
// while streaming. Assemble composes the parts server-side, 32 sources per
// call and in a tree of intermediates for more, checks the result's size
// and CRC32C against those of the parts, then deletes the parts: no byte
// of a file passes through spool twice.
//
// Discard and Assemble delete the marker before anything else, and
// WriteChunk looks for it again after its object is written, deleting the
// object if it is gone; so a chunk racing them is never left behind. In
// direct mode (DirectStore) clients PUT chunk objects themselves to V4
// signed URLs, and a client still holding one can write a part after its
// upload is gone: give the bucket a lifecycle rule deleting objects under
// <prefix>/parts/ and <prefix>/tmp/ older than the longest upload lifetime.
package gcs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"cloud.google.com/go/storage"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"

	"github.com/spoolhq/spool/internal/storage/storagekey"
	"github.com/spoolhq/spool/internal/upload"
)

// DefaultWriteBufferSize is the buffer one WriteChunk holds unless
// Options.WriteBufferSize says otherwise.
const DefaultWriteBufferSize = 1 << 20

// DefaultMaxRetryDuration is how long a failing request is retried unless
// Options.MaxRetryDuration says otherwise.
const DefaultMaxRetryDuration = time.Minute

const (
	partsDirName   = "parts/"
	tmpDirName     = "tmp/"
	objectsDirName = "objects/"
	markerBaseName = "prepared"

	// sizeMetadataKey holds an upload's declared size on its marker.
	sizeMetadataKey = "spool-upload-size"

	partContentType = "application/octet-stream"

	// maxComposeSources is the most source objects one GCS compose call
	// takes.
	maxComposeSources = 32

	// ioConcurrency bounds the requests one call runs at once (deletes of
	// parts, composes of intermediates).
	ioConcurrency = 16

	// copyBufferSize is what WriteChunk reads from the body at a time; the
	// storage.Writer buffers up to WriteBufferSize behind it.
	copyBufferSize = 64 << 10

	// markerChunkSize is the Writer buffer for the tiny marker object: the
	// smallest the library allows, and nonzero so the write is retried.
	markerChunkSize = googleapi.MinUploadChunkSize

	// cleanupTimeout bounds cleanup that must run even when the caller's
	// context is done.
	cleanupTimeout = 30 * time.Second
)

var (
	errChecksumMismatch = errors.New("checksum mismatch")
	errChunkOverflow    = errors.New("body is longer than the chunk")
	errBucketNotExist   = errors.New("bucket does not exist")
)

// Options tunes a Store. The zero value is the default.
type Options struct {
	// Client is the GCS client to use. If nil, Open creates one with
	// Application Default Credentials (the library honours
	// STORAGE_EMULATOR_HOST) and Close closes it. New requires a client.
	Client *storage.Client

	// WriteBufferSize is the memory one WriteChunk holds and the unit in
	// which a chunk is sent and, on a transient failure, sent again
	// (storage.Writer.ChunkSize; the library rounds it up to a multiple of
	// 256 KiB). Zero or less means DefaultWriteBufferSize.
	WriteBufferSize int

	// SignedURLs says how ChunkUploadURL and ObjectURL sign V4 URLs. Nil
	// lets the library sign with what the client's credentials offer: the
	// private key of a service-account key file, else the IAM signBlob API
	// as the service account found on GCE, GKE or Cloud Run (which needs
	// roles/iam.serviceAccountTokenCreator on itself).
	SignedURLs *SignedURLs

	// MaxRetryDuration bounds how long a request failing with a transient
	// error (429, 5xx, a broken connection) is retried, with exponential
	// backoff, before the call fails; the library alone would retry until
	// the context ends, and some callers' contexts never do. Writes of
	// chunks are bounded per WriteBufferSize piece instead (32 s). Zero or
	// less means DefaultMaxRetryDuration.
	MaxRetryDuration time.Duration

	// PublicBaseURL, if set, makes ObjectURL return PublicBaseURL + "/" +
	// the object's name instead of a signed URL, for a public bucket or a
	// CDN in front of it, e.g. "https://storage.googleapis.com/BUCKET".
	PublicBaseURL string
}

// SignedURLs are the credentials for signing V4 URLs.
type SignedURLs struct {
	// GoogleAccessID is the signing service account's e-mail address.
	GoogleAccessID string
	// PrivateKey is that account's private key, PEM encoded. If nil, URLs
	// are signed by the IAM signBlob API as GoogleAccessID.
	PrivateKey []byte
	// Insecure makes URLs http:// rather than https://, for an emulator.
	Insecure bool
}

// Store is an upload.Store in a GCS bucket. It is safe for concurrent use,
// by any number of processes sharing the bucket.
type Store struct {
	client     *storage.Client
	ownsClient bool
	bucket     *storage.BucketHandle
	prefix     string // "" or ending in "/"

	writeBufferSize int
	signing         *SignedURLs
	publicBaseURL   string

	buffers sync.Pool // of *[]byte, copyBufferSize long
}

var (
	_ upload.Store        = (*Store)(nil)
	_ upload.DirectStore  = (*Store)(nil)
	_ upload.ObjectLinker = (*Store)(nil)
	_ upload.Pinger       = (*Store)(nil)
)

// Open returns a Store for a storage URL of the form gs://bucket/prefix
// (the prefix is optional). Unless opts.Client is set it creates a client
// with Application Default Credentials, which Close closes. It fails if
// the URL is not such a URL or the client cannot be created; it does not
// contact GCS (see Ping).
func Open(ctx context.Context, rawURL string, opts Options) (*Store, error) {
	bucket, prefix, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	client, owns := opts.Client, false
	if client == nil {
		client, err = storage.NewClient(ctx)
		if err != nil {
			return nil, fmt.Errorf("gcs: creating client: %w", err)
		}
		owns = true
	}
	s := New(client, bucket, prefix, opts)
	s.ownsClient = owns
	return s, nil
}

// New returns a Store keeping its objects in bucket under prefix (which
// may be empty), through client. opts.Client is ignored.
func New(client *storage.Client, bucket, prefix string, opts Options) *Store {
	prefix = strings.Trim(prefix, "/")
	if prefix != "" {
		prefix += "/"
	}
	bufSize := opts.WriteBufferSize
	if bufSize <= 0 {
		bufSize = DefaultWriteBufferSize
	}
	retryFor := opts.MaxRetryDuration
	if retryFor <= 0 {
		retryFor = DefaultMaxRetryDuration
	}
	return &Store{
		client: client,
		// Every write in this layout is idempotent: a part, intermediate
		// or final object written twice holds the same bytes, and a
		// repeated delete finds nothing. So transient failures of writes
		// are retried too, not only of reads.
		bucket: client.Bucket(bucket).Retryer(
			storage.WithPolicy(storage.RetryAlways),
			storage.WithMaxRetryDuration(retryFor)),
		prefix:          prefix,
		writeBufferSize: bufSize,
		signing:         opts.SignedURLs,
		publicBaseURL:   strings.TrimRight(opts.PublicBaseURL, "/"),
		buffers: sync.Pool{New: func() any {
			b := make([]byte, copyBufferSize)
			return &b
		}},
	}
}

// Close closes the client if Open created it.
func (s *Store) Close() error {
	if !s.ownsClient {
		return nil
	}
	return s.client.Close()
}

// Bucket returns the name of the bucket the Store keeps its objects in.
func (s *Store) Bucket() string { return s.bucket.BucketName() }

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

// partIndex returns the chunk index of a part object's name under dir,
// and false for any other object (the marker).
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

// Prepare opens key for chunks of an upload of size bytes by writing its
// marker; no space is allocated. Preparing again keeps the chunks already
// written. It fails if key is not a valid key, size is negative or GCS
// cannot be written.
func (s *Store) Prepare(ctx context.Context, key string, size int64) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("gcs: prepare %q: negative size %d", key, size)
	}
	w := s.bucket.Object(s.markerName(key)).NewWriter(ctx)
	w.ChunkSize = markerChunkSize
	w.ContentType = "text/plain"
	w.Metadata = map[string]string{sizeMetadataKey: strconv.FormatInt(size, 10)}
	if err := w.Close(); err != nil {
		return fmt.Errorf("gcs: prepare %q: %w", key, translate(err))
	}
	return nil
}

// preparedSize returns the size key was prepared for, or an error
// wrapping upload.ErrNotExist if it was never prepared or has since been
// discarded or assembled.
func (s *Store) preparedSize(ctx context.Context, key string) (int64, error) {
	attrs, err := s.bucket.Object(s.markerName(key)).Attrs(ctx)
	if err != nil {
		return 0, translate(err)
	}
	size, err := strconv.ParseInt(attrs.Metadata[sizeMetadataKey], 10, 64)
	if err != nil || size < 0 {
		return 0, fmt.Errorf("marker %s has no valid %s metadata", attrs.Name, sizeMetadataKey)
	}
	return size, nil
}

// WriteChunk streams body into the chunk's part object, replacing any
// earlier copy, and checks the stored object's size and CRC32C against
// those of the bytes read. It reads at most chunk.Size bytes and one more
// to find a body that is too long.
//
// When body ends early it returns the count read and a nil error; when it
// fails it returns body's error unwrapped; when it is longer than
// chunk.Size it returns an error. In those three cases nothing is stored:
// the upload is abandoned before it is finalised, so an earlier copy of
// the chunk, if any, stays as it was. It returns an error wrapping
// upload.ErrNotExist if the upload was never prepared or has been
// discarded or assembled (deleting what it wrote), an error if the chunk
// lies outside the prepared size, and an error after deleting the object
// if GCS stored other bytes than were sent.
func (s *Store) WriteChunk(ctx context.Context, key string, chunk upload.ChunkRef, body io.Reader) (int64, error) {
	if err := checkKey(key); err != nil {
		return 0, err
	}
	if err := checkChunk("write", key, chunk); err != nil {
		return 0, err
	}
	size, err := s.preparedSize(ctx, key)
	if err != nil {
		return 0, fmt.Errorf("gcs: write %q: upload: %w", key, err)
	}
	if chunk.Offset > size || chunk.Size > size-chunk.Offset {
		return 0, fmt.Errorf("gcs: write %q: chunk %d [%d, +%d) outside upload of %d bytes",
			key, chunk.Index, chunk.Offset, chunk.Size, size)
	}

	part := s.bucket.Object(s.partName(key, chunk.Index))
	n, crc, attrs, err := s.writePart(ctx, part, chunk.Size, body)
	if err != nil || n < chunk.Size {
		return n, err
	}
	if attrs.Size != n || attrs.CRC32C != crc {
		err := fmt.Errorf("gcs: write %q chunk %d: %w: GCS stored %d bytes with CRC32C %08x, spool sent %d bytes with CRC32C %08x",
			key, chunk.Index, errChecksumMismatch, attrs.Size, attrs.CRC32C, n, crc)
		return n, errors.Join(err, s.deleteGeneration(ctx, attrs))
	}
	// Discard or Assemble may have run while the bytes streamed; they
	// delete the marker before they list the parts, so either they saw
	// this part or this sees the marker gone.
	if _, err := s.preparedSize(ctx, key); err != nil {
		if errors.Is(err, upload.ErrNotExist) {
			err = fmt.Errorf("gcs: write %q: upload: %w (it went while chunk %d was written)", key, err, chunk.Index)
			return n, errors.Join(err, s.deleteGeneration(ctx, attrs))
		}
		return n, fmt.Errorf("gcs: write %q: upload: %w", key, err)
	}
	return n, nil
}

// writePart streams body into part, reading at most size bytes plus one
// probe byte, and returns the count read, their CRC32C and, when exactly
// size bytes were read and stored, the object's attributes. Errors of body
// come back unwrapped.
func (s *Store) writePart(ctx context.Context, part *storage.ObjectHandle, size int64, body io.Reader) (int64, uint32, *storage.ObjectAttrs, error) {
	// Cancelling the Writer's context before Close abandons the upload
	// without finalising the object.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := part.NewWriter(wctx)
	w.ChunkSize = s.writeBufferSize
	w.ContentType = partContentType
	abandon := func() {
		cancel()
		_ = w.Close() // waits for the upload goroutine; the error is the cancellation
	}

	bufp := s.buffers.Get().(*[]byte)
	defer s.buffers.Put(bufp)
	buf := *bufp
	var n int64
	var crc uint32
	for {
		want := int64(len(buf))
		if left := size - n; left < want {
			want = left + 1 // the probe byte past the chunk
		}
		m, rerr := body.Read(buf[:want])
		over := int64(m) > size-n
		if over {
			m = int(size - n)
		}
		if m > 0 {
			if _, err := w.Write(buf[:m]); err != nil {
				abandon()
				return n, 0, nil, fmt.Errorf("gcs: write %s: %w", part.ObjectName(), translate(err))
			}
			crc = crc32.Update(crc, castagnoli, buf[:m])
			n += int64(m)
		}
		if over {
			abandon()
			return n, 0, nil, fmt.Errorf("gcs: write %s: %w (%d bytes)", part.ObjectName(), errChunkOverflow, size)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			abandon()
			return n, 0, nil, rerr
		}
	}
	if n < size {
		abandon()
		return n, 0, nil, nil
	}
	if err := w.Close(); err != nil {
		return n, 0, nil, fmt.Errorf("gcs: write %s: %w", part.ObjectName(), translate(err))
	}
	return n, crc, w.Attrs(), nil
}

// deleteGeneration deletes the generation of an object this Store wrote,
// and not a newer one a concurrent write may have made since. It runs
// even if ctx is done: it cleans up after a failed call.
func (s *Store) deleteGeneration(ctx context.Context, attrs *storage.ObjectAttrs) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	err := s.bucket.Object(attrs.Name).Generation(attrs.Generation).Delete(ctx)
	if err != nil && !errors.Is(translate(err), upload.ErrNotExist) {
		return fmt.Errorf("gcs: delete %s#%d: %w", attrs.Name, attrs.Generation, translate(err))
	}
	return nil
}

// Assemble composes the parts of key into its object and returns the
// object's key, which is key. It checks that the object holds size bytes
// and that its CRC32C is the one the parts' checksums add up to, then
// deletes the parts. If the upload was already assembled it returns the
// same object (finishing the deletion of parts a failure interrupted).
//
// It returns an error wrapping upload.ErrNotExist if there is neither an
// unfinished upload nor an object, or if any of the chunks 0 to
// totalChunks-1 is missing; an error if the sizes do not add up to size;
// and an error, deleting the object but keeping the parts, if the
// composed object's checksum is wrong.
func (s *Store) Assemble(ctx context.Context, key string, totalChunks int, size int64) (string, error) {
	if err := checkKey(key); err != nil {
		return "", err
	}
	if totalChunks < 1 || size < 0 {
		return "", fmt.Errorf("gcs: assemble %q: invalid totalChunks %d or size %d", key, totalChunks, size)
	}
	prepared, err := s.preparedSize(ctx, key)
	if errors.Is(err, upload.ErrNotExist) {
		return s.assembled(ctx, key, size)
	}
	if err != nil {
		return "", fmt.Errorf("gcs: assemble %q: %w", key, err)
	}
	if prepared != size {
		return "", fmt.Errorf("gcs: assemble %q: upload was prepared for %d bytes, not %d", key, prepared, size)
	}
	parts, err := s.listParts(ctx, key, totalChunks)
	if err != nil {
		return "", err
	}
	var sum int64
	var want uint32
	for _, p := range parts {
		sum += p.Size
		want = crc32cCombine(want, p.CRC32C, p.Size)
	}
	if sum != size {
		return "", fmt.Errorf("gcs: assemble %q: its %d chunks hold %d bytes, want %d", key, totalChunks, sum, size)
	}

	run, err := newRunID()
	if err != nil {
		return "", fmt.Errorf("gcs: assemble %q: %w", key, err)
	}
	final, err := s.compose(ctx, key, run, parts)
	if err != nil {
		// A concurrent Assemble (another replica) may have finished first
		// and deleted the parts; it deleted the marker before them.
		if _, perr := s.preparedSize(ctx, key); errors.Is(perr, upload.ErrNotExist) {
			if objKey, aerr := s.assembled(ctx, key, size); aerr == nil {
				return objKey, nil
			}
		}
		return "", err
	}
	if final.Size != size || final.CRC32C != want {
		err := fmt.Errorf("gcs: assemble %q: %w: composed object has %d bytes with CRC32C %08x, its parts %d bytes with CRC32C %08x",
			key, errChecksumMismatch, final.Size, final.CRC32C, size, want)
		return "", errors.Join(err, s.deleteGeneration(ctx, final), s.removeTemporaries(ctx, key, run))
	}
	if err := s.removeUpload(ctx, key); err != nil {
		// The object is whole; calling Assemble again finishes the cleanup.
		return "", fmt.Errorf("gcs: assemble %q: object composed, but removing its parts failed: %w", key, err)
	}
	return key, nil
}

// assembled returns key if its object already exists with size bytes,
// after removing whatever an interrupted Assemble left of the upload.
func (s *Store) assembled(ctx context.Context, key string, size int64) (string, error) {
	attrs, err := s.bucket.Object(s.objectName(key)).Attrs(ctx)
	if err != nil {
		return "", fmt.Errorf("gcs: assemble %q: upload: %w", key, translate(err))
	}
	if attrs.Size != size {
		return "", fmt.Errorf("gcs: assemble %q: object has %d bytes, want %d", key, attrs.Size, size)
	}
	if err := s.removeUpload(ctx, key); err != nil {
		return "", fmt.Errorf("gcs: assemble %q: removing its parts: %w", key, err)
	}
	return key, nil
}

// listParts returns the attributes of parts 0 to total-1 of key, in order.
func (s *Store) listParts(ctx context.Context, key string, total int) ([]*storage.ObjectAttrs, error) {
	dir := s.partsDir(key)
	objs, err := s.list(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("gcs: assemble %q: %w", key, err)
	}
	parts := make([]*storage.ObjectAttrs, total)
	for _, o := range objs {
		if i, ok := partIndex(dir, o.Name); ok && i < total {
			parts[i] = o
		}
	}
	var missing []int
	for i, p := range parts {
		if p == nil {
			missing = append(missing, i)
		}
	}
	if len(missing) > 0 {
		shown := missing[:min(len(missing), 10)]
		return nil, fmt.Errorf("gcs: assemble %q: %d of %d chunks (%v…): %w", key, len(missing), total, shown, upload.ErrNotExist)
	}
	return parts, nil
}

// compose makes the object of key from srcs, in order. GCS takes at most
// 32 sources per compose, so with more it composes groups of 32 into
// intermediates under tmp/<key>/ and goes on with those: 100 parts make 4
// intermediates, then the object. Sources are pinned to the generations
// listed, so a part replaced meanwhile cannot slip in unchecked. The
// intermediates' names start with run, so concurrent Assembles of one
// upload do not overwrite each other's.
func (s *Store) compose(ctx context.Context, key, run string, srcs []*storage.ObjectAttrs) (*storage.ObjectAttrs, error) {
	for level := 1; len(srcs) > maxComposeSources; level++ {
		groups := (len(srcs) + maxComposeSources - 1) / maxComposeSources
		next := make([]*storage.ObjectAttrs, groups)
		err := forEach(ctx, groups, func(ctx context.Context, g int) error {
			group := srcs[g*maxComposeSources : min((g+1)*maxComposeSources, len(srcs))]
			if len(group) == 1 {
				next[g] = group[0] // nothing to compose; it moves up a level
				return nil
			}
			dst := s.bucket.Object(fmt.Sprintf("%s%s-%d-%06d", s.tmpDir(key), run, level, g))
			attrs, err := s.composeInto(ctx, dst, group)
			next[g] = attrs
			return err
		})
		if err != nil {
			return nil, errors.Join(err, s.removeTemporaries(ctx, key, run))
		}
		srcs = next
	}
	final, err := s.composeInto(ctx, s.bucket.Object(s.objectName(key)), srcs)
	if err != nil {
		return nil, errors.Join(err, s.removeTemporaries(ctx, key, run))
	}
	return final, nil
}

func (s *Store) composeInto(ctx context.Context, dst *storage.ObjectHandle, srcs []*storage.ObjectAttrs) (*storage.ObjectAttrs, error) {
	handles := make([]*storage.ObjectHandle, len(srcs))
	for i, a := range srcs {
		handles[i] = s.bucket.Object(a.Name).Generation(a.Generation)
	}
	attrs, err := dst.ComposerFrom(handles...).Run(ctx)
	if err != nil {
		return nil, fmt.Errorf("gcs: compose %d objects into %s: %w", len(srcs), dst.ObjectName(), translate(err))
	}
	return attrs, nil
}

// Open returns the object for reading. Reads fetch byte ranges from GCS on
// demand, starting where Seek left off, always from the generation opened
// and with ctx, which must last as long as the reading. It returns an
// error wrapping upload.ErrNotExist if there is no such object, including
// when objectKey is not a valid key.
func (s *Store) Open(ctx context.Context, objectKey string) (upload.Object, error) {
	if err := checkKey(objectKey); err != nil {
		return nil, fmt.Errorf("%w: %w", err, upload.ErrNotExist)
	}
	name := s.objectName(objectKey)
	attrs, err := s.bucket.Object(name).Attrs(ctx)
	if err != nil {
		return nil, fmt.Errorf("gcs: open %q: %w", objectKey, translate(err))
	}
	modTime := attrs.Updated
	if modTime.IsZero() {
		modTime = attrs.Created
	}
	return &object{
		ctx:     ctx,
		handle:  s.bucket.Object(name).Generation(attrs.Generation),
		size:    attrs.Size,
		modTime: modTime,
	}, nil
}

// Discard deletes everything stored for the unfinished upload key: its
// marker first, so chunks still being written delete themselves, then
// its parts and temporary objects. It is not an error if nothing is
// stored. It fails if key is not a valid key or GCS fails.
func (s *Store) Discard(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := s.removeUpload(ctx, key); err != nil {
		return fmt.Errorf("gcs: discard %q: %w", key, err)
	}
	return nil
}

// removeUpload deletes the marker of key, then every object under its
// parts and temporary directories.
func (s *Store) removeUpload(ctx context.Context, key string) error {
	if err := s.deleteObject(ctx, s.markerName(key)); err != nil {
		return err
	}
	var names []string
	for _, dir := range []string{s.partsDir(key), s.tmpDir(key)} {
		objs, err := s.list(ctx, dir)
		if err != nil {
			return err
		}
		for _, o := range objs {
			names = append(names, o.Name)
		}
	}
	return s.deleteObjects(ctx, names)
}

// removeTemporaries deletes the compose intermediates one Assemble of key
// made, even if ctx is done: it cleans up after a failed Assemble.
func (s *Store) removeTemporaries(ctx context.Context, key, run string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	objs, err := s.list(ctx, s.tmpDir(key)+run+"-")
	if err != nil {
		return err
	}
	names := make([]string, len(objs))
	for i, o := range objs {
		names[i] = o.Name
	}
	return s.deleteObjects(ctx, names)
}

// list returns the objects whose names start with prefix and have no "/"
// after it: those directly in a "directory", not in deeper ones, which
// belong to other keys.
func (s *Store) list(ctx context.Context, prefix string) ([]*storage.ObjectAttrs, error) {
	q := &storage.Query{Prefix: prefix, Delimiter: "/"}
	if err := q.SetAttrSelection([]string{"Name", "Size", "CRC32C", "Generation"}); err != nil {
		return nil, fmt.Errorf("gcs: list %s: %w", prefix, err)
	}
	var objs []*storage.ObjectAttrs
	it := s.bucket.Objects(ctx, q)
	for {
		attrs, err := it.Next()
		if err == iterator.Done {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("gcs: list %s: %w", prefix, translate(err))
		}
		if attrs.Name != "" { // not a "directory" prefix
			objs = append(objs, attrs)
		}
	}
}

func (s *Store) deleteObjects(ctx context.Context, names []string) error {
	return forEach(ctx, len(names), func(ctx context.Context, i int) error {
		return s.deleteObject(ctx, names[i])
	})
}

// deleteObject deletes an object; it is not an error if it is gone.
func (s *Store) deleteObject(ctx context.Context, name string) error {
	err := s.bucket.Object(name).Delete(ctx)
	if err != nil && !errors.Is(translate(err), upload.ErrNotExist) {
		return fmt.Errorf("gcs: delete %s: %w", name, translate(err))
	}
	return nil
}

// Delete deletes a finished object. It is not an error if it is gone.
// Readers that already opened it may fail. It fails if objectKey is not
// a valid key or GCS fails.
func (s *Store) Delete(ctx context.Context, objectKey string) error {
	if err := checkKey(objectKey); err != nil {
		return err
	}
	return s.deleteObject(ctx, s.objectName(objectKey))
}

// ChunkUploadURL returns a V4 signed URL with which a client PUTs the
// chunk's part object itself, valid until expires (at most 7 days away).
// The client must send the returned headers: Content-Type, and
// X-Goog-Content-Length-Range pinned to the chunk's size, so GCS refuses a
// body of any other size. In browsers the bucket's CORS configuration
// must allow both headers and the PUT method. It fails if expires is not
// in the future or is more than 7 days away, or if the URL cannot be
// signed (no credentials to sign with).
func (s *Store) ChunkUploadURL(ctx context.Context, key string, chunk upload.ChunkRef, expires time.Time) (upload.DirectURL, error) {
	if err := checkKey(key); err != nil {
		return upload.DirectURL{}, err
	}
	if err := checkChunk("sign", key, chunk); err != nil {
		return upload.DirectURL{}, err
	}
	if err := ctx.Err(); err != nil {
		return upload.DirectURL{}, err
	}
	lengthRange := fmt.Sprintf("%d,%d", chunk.Size, chunk.Size)
	u, err := s.signedURL(s.partName(key, chunk.Index), &storage.SignedURLOptions{
		Method:      http.MethodPut,
		Expires:     expires,
		ContentType: partContentType,
		Headers:     []string{"x-goog-content-length-range:" + lengthRange},
	})
	if err != nil {
		return upload.DirectURL{}, err
	}
	return upload.DirectURL{
		URL:    u,
		Method: http.MethodPut,
		Headers: []upload.Header{
			{Name: "Content-Type", Value: partContentType},
			{Name: "X-Goog-Content-Length-Range", Value: lengthRange},
		},
	}, nil
}

// StatChunk returns the size and CRC32C of the chunk's part object, or an
// error wrapping upload.ErrNotExist if there is none.
func (s *Store) StatChunk(ctx context.Context, key string, chunk upload.ChunkRef) (upload.ChunkInfo, error) {
	if err := checkKey(key); err != nil {
		return upload.ChunkInfo{}, err
	}
	if err := checkChunk("stat", key, chunk); err != nil {
		return upload.ChunkInfo{}, err
	}
	attrs, err := s.bucket.Object(s.partName(key, chunk.Index)).Attrs(ctx)
	if err != nil {
		return upload.ChunkInfo{}, fmt.Errorf("gcs: stat %q chunk %d: %w", key, chunk.Index, translate(err))
	}
	return upload.ChunkInfo{Size: attrs.Size, CRC32C: attrs.CRC32C}, nil
}

// ReadChunkHead returns up to n of the first bytes of the chunk's part
// object, or an error wrapping upload.ErrNotExist if there is none.
func (s *Store) ReadChunkHead(ctx context.Context, key string, chunk upload.ChunkRef, n int) ([]byte, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	if err := checkChunk("read", key, chunk); err != nil {
		return nil, err
	}
	if n <= 0 {
		return []byte{}, nil
	}
	r, err := s.bucket.Object(s.partName(key, chunk.Index)).NewRangeReader(ctx, 0, int64(n))
	if err != nil {
		return nil, fmt.Errorf("gcs: read %q chunk %d: %w", key, chunk.Index, translate(err))
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, int64(n)))
	if err != nil {
		return nil, fmt.Errorf("gcs: read %q chunk %d: %w", key, chunk.Index, translate(err))
	}
	return b, nil
}

// ObjectURL returns a URL from which a client downloads the object: with
// Options.PublicBaseURL, that base and the object's name; otherwise a V4
// signed GET URL valid until expires (at most 7 days away), whose response
// names the file fileName (Content-Disposition: inline). It does not check
// that the object exists. It fails, unless there is a public base URL,
// if expires is not in the future or is more than 7 days away, or if the
// URL cannot be signed.
func (s *Store) ObjectURL(ctx context.Context, objectKey, fileName string, expires time.Time) (string, error) {
	if err := checkKey(objectKey); err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	name := s.objectName(objectKey)
	if s.publicBaseURL != "" {
		return s.publicBaseURL + "/" + escapeObjectName(name), nil
	}
	disposition := "inline"
	if fileName != "" {
		disposition += "; filename*=UTF-8''" + url.PathEscape(fileName)
	}
	return s.signedURL(name, &storage.SignedURLOptions{
		Method:          http.MethodGet,
		Expires:         expires,
		QueryParameters: url.Values{"response-content-disposition": {disposition}},
	})
}

func escapeObjectName(name string) string {
	segs := strings.Split(name, "/")
	for i, seg := range segs {
		segs[i] = url.PathEscape(seg)
	}
	return strings.Join(segs, "/")
}

// signedURL signs a V4 URL for the object name with the Store's signing
// credentials, or those the library finds. It refuses an expiry that has
// passed, which the library would sign as a URL that never works.
func (s *Store) signedURL(name string, opts *storage.SignedURLOptions) (string, error) {
	if !opts.Expires.After(time.Now()) {
		return "", fmt.Errorf("gcs: sign %s URL for %s: expiry %s is not in the future", opts.Method, name, opts.Expires.Format(time.RFC3339))
	}
	opts.Scheme = storage.SigningSchemeV4
	if c := s.signing; c != nil {
		opts.GoogleAccessID = c.GoogleAccessID
		opts.PrivateKey = c.PrivateKey
		opts.Insecure = c.Insecure
	}
	u, err := s.bucket.SignedURL(name, opts)
	if err != nil {
		return "", fmt.Errorf("gcs: sign %s URL for %s: %w", opts.Method, name, translate(err))
	}
	return u, nil
}

// Ping checks that the bucket exists and the client may see it.
func (s *Store) Ping(ctx context.Context) error {
	if _, err := s.bucket.Attrs(ctx); err != nil {
		return fmt.Errorf("gcs: bucket %q: %w", s.Bucket(), translate(err))
	}
	return nil
}

// translate turns errors of the GCS client into errors of this package's
// contract: a missing object becomes upload.ErrNotExist, and an API error
// becomes a plain error carrying its status and message (no
// googleapi.Error leaks to callers). Other errors, such as the context's,
// come back as they are.
func translate(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, storage.ErrBucketNotExist) {
		return errBucketNotExist
	}
	if errors.Is(err, storage.ErrObjectNotExist) {
		return upload.ErrNotExist
	}
	var apiErr *googleapi.Error
	if errors.As(err, &apiErr) {
		if apiErr.Code == http.StatusNotFound {
			return upload.ErrNotExist
		}
		msg := apiErr.Message
		if msg == "" {
			msg = http.StatusText(apiErr.Code)
		}
		return fmt.Errorf("GCS answered %d: %s", apiErr.Code, msg)
	}
	return err
}

// newRunID returns a random name for one Assemble call's intermediates.
func newRunID() (string, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("naming intermediates: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// forEach calls fn for 0 to n-1, ioConcurrency at a time, and returns
// their errors joined.
func forEach(ctx context.Context, n int, fn func(ctx context.Context, i int) error) error {
	errs := make([]error, n)
	sem := make(chan struct{}, ioConcurrency)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = fn(ctx, i)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
