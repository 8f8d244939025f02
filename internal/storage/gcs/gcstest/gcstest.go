// Package gcstest runs a Google Cloud Storage emulator (fake-gcs-server)
// inside the test process, for tests of anything that keeps bytes in GCS.
//
// The emulator speaks the JSON API, resumable uploads, compose, and the
// XML paths that V4 signed URLs use, on a loopback port. It differs from
// GCS in ways a test must not rely on: it checks no signatures and no
// signed headers, it ignores a resumable session's declared size
// (X-Upload-Content-Length) and its Origin, and re-sending a chunk of a
// resumable upload appends instead of replacing. Its status queries of
// resumable sessions (Content-Range: bytes */N) would finish the object
// with the bytes so far; a stand-in in front of it answers them as GCS
// does instead (308 with the Range kept, 200 once whole), from the
// emulator's own answers to the chunks before.
//
// Typical use, with gcs.New from the storage engine:
//
//	srv := gcstest.Start(t)
//	store := gcs.New(srv.Client(t), srv.CreateBucket(t), "spool", gcs.Options{
//		SignedURLs: &gcs.SignedURLs{
//			GoogleAccessID: gcstest.GoogleAccessID,
//			PrivateKey:     gcstest.SigningKey(t),
//			Insecure:       true,
//		},
//	})
package gcstest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"sync"
	"testing"

	"cloud.google.com/go/storage"
	"github.com/fsouza/fake-gcs-server/fakestorage"
	"google.golang.org/api/option"
)

// GoogleAccessID is a made-up service account to sign URLs as; the
// emulator does not check signatures.
const GoogleAccessID = "spool-test@spool-test.iam.gserviceaccount.com"

// Server is a running emulator.
type Server struct {
	// URL is the emulator's base URL, http://127.0.0.1:PORT. The JSON API
	// is at URL + "/storage/v1/", and URL is also the host of XML paths
	// and signed URLs (URL/BUCKET/OBJECT).
	URL string

	fake   *fakestorage.Server
	status *statusQueries
}

// Start starts an emulator with no buckets, stopped when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	// The emulator must know its own address (signed URLs and XML paths
	// are routed by Host), so listen first, then build it for that port.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("gcstest: listen: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	host := fmt.Sprintf("127.0.0.1:%d", port)
	fake, err := fakestorage.NewServerWithOptions(fakestorage.Options{
		Scheme:      "http",
		Host:        "127.0.0.1",
		Port:        uint16(port),
		PublicHost:  host,
		ExternalURL: "http://" + host,
		NoListener:  true,
		Writer:      io.Discard,
	})
	if err != nil {
		l.Close()
		t.Fatalf("gcstest: starting fake-gcs-server: %v", err)
	}
	status := newStatusQueries(fake.HTTPHandler())
	hs := httptest.NewUnstartedServer(status)
	hs.Listener.Close()
	hs.Listener = l
	hs.Start()
	t.Cleanup(func() {
		hs.Close()
		fake.Stop()
	})
	return &Server{URL: hs.URL, fake: fake, status: status}
}

// NewServer starts an emulator with one bucket and returns a client for
// it and the bucket's name.
func NewServer(t testing.TB) (client *storage.Client, bucket string) {
	t.Helper()
	srv := Start(t)
	return srv.Client(t), srv.CreateBucket(t)
}

// Client returns a client of the emulator, closed when the test ends.
// opts come after those pointing it at the emulator, e.g.
// option.WithHTTPClient to watch or alter its requests.
func (s *Server) Client(t testing.TB, opts ...option.ClientOption) *storage.Client {
	t.Helper()
	return NewClient(t, s.URL, opts...)
}

// NewClient returns a client of the emulator at url (a Server's URL,
// perhaps one in another process), closed when the test ends.
func NewClient(t testing.TB, url string, opts ...option.ClientOption) *storage.Client {
	t.Helper()
	opts = append([]option.ClientOption{
		option.WithEndpoint(url + "/storage/v1/"),
		option.WithoutAuthentication(),
	}, opts...)
	c, err := storage.NewClient(context.Background(), opts...)
	if err != nil {
		t.Fatalf("gcstest: creating client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// CreateBucket creates a bucket with a fresh name and returns the name.
func (s *Server) CreateBucket(t testing.TB) string {
	t.Helper()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("gcstest: naming bucket: %v", err)
	}
	name := "spool-test-" + hex.EncodeToString(b[:])
	s.fake.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: name})
	return name
}

// SessionOrigin returns the Origin header the resumable session at
// sessionURL was opened with ("" for none), and false for a session this
// server did not open.
func (s *Server) SessionOrigin(sessionURL string) (string, bool) {
	return s.status.origin(sessionURL)
}

// signingKey is generated once per process: RSA key generation takes a
// noticeable fraction of a second.
var signingKey = sync.OnceValues(func() ([]byte, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
})

// SigningKey returns a throwaway RSA private key, PEM encoded, to sign V4
// URLs with as GoogleAccessID.
func SigningKey(t testing.TB) []byte {
	t.Helper()
	key, err := signingKey()
	if err != nil {
		t.Fatalf("gcstest: generating signing key: %v", err)
	}
	return key
}

// ServiceAccountKeyJSON returns a service account's JSON key, as `gcloud
// iam service-accounts keys create` writes it, for GoogleAccessID with
// the throwaway SigningKey: for tests of what reads key files. It
// authenticates nowhere, and the emulator asks for no authentication.
func ServiceAccountKeyJSON(t testing.TB) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]string{
		"type":           "service_account",
		"project_id":     "spool-test",
		"private_key_id": "0123456789abcdef",
		"private_key":    string(SigningKey(t)),
		"client_email":   GoogleAccessID,
		"client_id":      "100000000000000000000",
		"auth_uri":       "https://accounts.google.com/o/oauth2/auth",
		"token_uri":      "https://oauth2.googleapis.com/token",
	})
	if err != nil {
		t.Fatalf("gcstest: encoding a service account's key: %v", err)
	}
	return b
}
