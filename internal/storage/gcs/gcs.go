// Package gcs is the Google Cloud Storage engine: it keeps uploads and the
// files they become as objects in one bucket, under an optional prefix.
//
// Layout, under the prefix:
//
//	parts/<key>/prepared            marker: the upload takes chunks (size in metadata)
//	parts/<key>/<index>             one object per chunk, index as %06d
//	parts/<key>/<index>.piece-<at>  a piece of a chunk from its byte at (%012d)
//	tmp/<key>/<run>-<level>-<n>     compose intermediates
//	objects/<key>                   the finished file
//
// WriteChunk streams a chunk into its own object through a resumable
// upload, holding one buffer of Options.WriteBufferSize whatever the chunk
// size, and checks the stored object's CRC32C against the one computed
// while streaming. Assemble composes the parts server-side, 32 sources per
// call and in a tree of intermediates for more, checks the result's size
// and CRC32C against those of the parts, then deletes the parts: no byte
// of a file passes through spool twice.
//
// A chunk may also arrive in pieces, by offset (tus PATCHes, which may end
// anywhere): WritePiece keeps each piece as an object of its own, also
// when its body breaks, and SealChunk composes a whole chunk's pieces into
// its part, checking the CRC32C the bytes were sent with. Join composes
// the parts of other uploads into an upload's one chunk (tus
// concatenation). Pieces live beside the parts, so Discard, Assemble and
// Walk treat them as the upload's, as they do parts.
//
// Discard and Assemble delete the marker before anything else, and
// WriteChunk, WritePiece, SealChunk and Join look for it again after their
// object is written, deleting the object if it is gone; so a chunk racing
// them is never left behind. In direct mode (DirectStore) clients PUT
// chunk objects themselves to V4 signed URLs, and a client still holding
// one can write a part after its upload is gone: give the bucket a
// lifecycle rule deleting objects under <prefix>/parts/ and <prefix>/tmp/
// older than the longest upload lifetime.
package gcs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/storage"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"

	"github.com/spoolhq/spool/internal/upload"
	"github.com/spoolhq/spool/internal/usertimeout"
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
	pieceInfix     = ".piece-"

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
	// CredentialsJSON, else Application Default Credentials (the library
	// honours STORAGE_EMULATOR_HOST, and then sends no credentials), and
	// Close closes it. New requires a client.
	Client *storage.Client

	// CredentialsJSON is a service account's JSON key with which Open's
	// client authenticates instead of Application Default Credentials.
	// It does not sign URLs by itself: set SignedURLs from it with
	// ServiceAccountKey. Ignored when Client is set.
	CredentialsJSON []byte

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
	// chunks are bounded per WriteBufferSize piece instead (32 s), and any
	// write is abandoned once GCS has taken none of its bytes for this
	// long (writer: the library retries the request that starts a write
	// until its context ends, whatever the policy says). Zero or less
	// means DefaultMaxRetryDuration.
	MaxRetryDuration time.Duration

	// TCPUserTimeout bounds how long bytes sent to an endpoint the Store
	// dials itself may go unacknowledged before the connection is given
	// up and the request retried (internal/usertimeout): an emulator or
	// GCS-compatible endpoint (STORAGE_EMULATOR_HOST), the session status
	// queries, and sessions opened at an emulator. GCS itself is reached
	// through Google's transport, over HTTP/2, whose pings drop a
	// connection silent for 31 s 15 s later; HTTP/1.1 has nothing of the
	// kind, and a request sent into a partition waited for TCP's
	// retransmissions, about 15 minutes. Zero means usertimeout.Default;
	// less than zero leaves it to the kernel.
	TCPUserTimeout time.Duration

	// PublicBaseURL, if set, makes ObjectURL return PublicBaseURL + "/" +
	// the object's name instead of a signed URL, for a public bucket or a
	// CDN in front of it, e.g. "https://storage.googleapis.com/BUCKET".
	PublicBaseURL string

	// Sessions says how StartResumable opens resumable upload sessions
	// (direct SINGLE uploads). Nil means DefaultSessions, made on first
	// use.
	Sessions *Sessions
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
	retryFor        time.Duration // Options.MaxRetryDuration, or its default
	signing         *SignedURLs
	publicBaseURL   string

	sessions     func(ctx context.Context) (*Sessions, error)
	statusClient *http.Client // for session status queries, which carry no credentials

	buffers sync.Pool // of *[]byte, copyBufferSize long

	// composeFanIn is the most sources compose gives one call:
	// maxComposeSources, or fewer in tests, which build a tree three
	// levels deep from 17 parts instead of GCS's 1025 (the emulator
	// finds an object by scanning them all, so 1025 took half a minute).
	composeFanIn int
}

var (
	_ upload.Store              = (*Store)(nil)
	_ upload.DirectStore        = (*Store)(nil)
	_ upload.ObjectLinker       = (*Store)(nil)
	_ upload.Pinger             = (*Store)(nil)
	_ upload.ConcurrentPreparer = (*Store)(nil)
)

// Open returns a Store for a storage URL of the form gs://bucket/prefix
// (the prefix is optional). Unless opts.Client is set it creates a client
// with opts.CredentialsJSON or Application Default Credentials, which
// Close closes. It fails if
// the URL is not such a URL or the client cannot be created; it does not
// contact GCS (see Ping).
func Open(ctx context.Context, rawURL string, opts Options) (*Store, error) {
	bucket, prefix, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	dialled := dialledClient(opts.TCPUserTimeout)
	client, owns := opts.Client, false
	if client == nil {
		var copts []option.ClientOption
		if len(opts.CredentialsJSON) > 0 {
			copts = append(copts, option.WithAuthCredentialsJSON(option.ServiceAccount, opts.CredentialsJSON))
		}
		if os.Getenv("STORAGE_EMULATOR_HOST") != "" {
			// The library sends an emulator no credentials, so its HTTP
			// client can be ours, bounded in an outage.
			copts = append(copts, option.WithHTTPClient(dialled))
		}
		client, err = storage.NewClient(ctx, copts...)
		if err != nil {
			return nil, fmt.Errorf("gcs: creating client: %w", err)
		}
		owns = true
	}
	s := newStore(client, bucket, prefix, opts, dialled)
	s.ownsClient = owns
	return s, nil
}

// New returns a Store keeping its objects in bucket under prefix (which
// may be empty), through client. opts.Client is ignored.
func New(client *storage.Client, bucket, prefix string, opts Options) *Store {
	return newStore(client, bucket, prefix, opts, dialledClient(opts.TCPUserTimeout))
}

// newStore is New, with dialled (dialledClient) for what the Store dials
// itself: Open's own client for an emulator shares it.
func newStore(client *storage.Client, bucket, prefix string, opts Options, dialled *http.Client) *Store {
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
		retryFor:        retryFor,
		signing:         opts.SignedURLs,
		publicBaseURL:   strings.TrimRight(opts.PublicBaseURL, "/"),
		sessions:        sessionsFor(opts.Sessions, dialled),
		statusClient:    dialled,
		buffers: sync.Pool{New: func() any {
			b := make([]byte, copyBufferSize)
			return &b
		}},
		composeFanIn: maxComposeSources,
	}
}

// dialledClient returns an HTTP client for the endpoints a Store dials
// itself (Options.TCPUserTimeout), whose connections are dialled with
// userTimeout (0: usertimeout.Default, less: the kernel's), and over
// HTTP/2 pinged as Google's transport pings GCS's. It is not
// http.DefaultTransport, which some other package may have changed.
func dialledClient(userTimeout time.Duration) *http.Client {
	switch {
	case userTimeout == 0:
		userTimeout = usertimeout.Default
	case userTimeout < 0:
		userTimeout = 0
	}
	dialer := usertimeout.Dialer(userTimeout)
	return &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   100, // chunks are written in parallel to one host
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		HTTP2:                 &http.HTTP2Config{SendPingTimeout: 31 * time.Second, PingTimeout: 15 * time.Second},
	}}
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

// newRunID returns a random name for one compose call's intermediates.
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
