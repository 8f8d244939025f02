// Signed URLs: direct chunk uploads and downloads.

package gcs

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"cloud.google.com/go/storage"
	"golang.org/x/oauth2/google"

	"github.com/spoolhq/spool/internal/upload"
)

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

// ServiceAccountKey returns the credentials to sign V4 URLs with a
// service account's JSON key (the file `gcloud iam service-accounts keys
// create` writes): its client_email and private_key. It fails if keyJSON
// is not JSON, is another kind of credentials (a user's, from `gcloud
// auth application-default login`, cannot sign), lacks either field, or
// holds a private key that cannot sign.
func ServiceAccountKey(keyJSON []byte) (*SignedURLs, error) {
	cfg, err := google.JWTConfigFromJSON(keyJSON)
	if err != nil {
		return nil, fmt.Errorf("gcs: not a service account's key: %w", err)
	}
	if cfg.Email == "" || len(cfg.PrivateKey) == 0 {
		return nil, errors.New("gcs: the service account's key has no client_email or no private_key")
	}
	c := &SignedURLs{GoogleAccessID: cfg.Email, PrivateKey: cfg.PrivateKey}
	// Signing is local with a key: try it now, so a key that cannot sign
	// is refused here rather than at the first URL.
	_, err = storage.SignedURL("spool-key-check", "key-check", &storage.SignedURLOptions{
		GoogleAccessID: c.GoogleAccessID, PrivateKey: c.PrivateKey,
		Method: http.MethodGet, Expires: time.Now().Add(time.Minute), Scheme: storage.SigningSchemeV4,
	})
	if err != nil {
		return nil, fmt.Errorf("gcs: the private_key of the service account's key cannot sign: %w", err)
	}
	return c, nil
}

// CanSign reports whether the Store has credentials to sign V4 URLs with
// (ChunkUploadURL, and ObjectURL without a public base URL), so that
// callers learn it at start rather than at the first URL. It signs a URL
// for a made-up object: with a private key in SignedURLs that is local and
// complete. Where the signature would come from the IAM signBlob API
// (SignedURLs without a key, or no SignedURLs and no key in the client's
// credentials), it only checks that there is a service account to sign as
// (the library asks the GCE metadata server when the credentials name
// none), and does not call IAM: one IAM round trip per start would make
// starting depend on IAM, so a missing roles/iam.serviceAccountTokenCreator
// shows at the first URL instead. It returns an error saying why not.
func (s *Store) CanSign(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	opts := &storage.SignedURLOptions{Method: http.MethodGet, Expires: time.Now().Add(time.Minute)}
	if s.signing == nil || len(s.signing.PrivateKey) == 0 {
		opts.SignBytes = func([]byte) ([]byte, error) { return []byte("not signed"), nil }
	}
	_, err := s.signedURL(s.prefix+"spool-can-sign", opts)
	return err
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
