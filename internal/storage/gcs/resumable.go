// Resumable upload sessions: a direct SINGLE upload's bytes go to GCS
// through one session, which a client resumes after a broken connection.

package gcs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"

	"cloud.google.com/go/storage"
	"google.golang.org/api/option"
	htransport "google.golang.org/api/transport/http"

	"github.com/spoolhq/spool/internal/upload"
)

var _ upload.ResumableStore = (*Store)(nil)

// DefaultSessionEndpoint is the root of GCS's JSON API, under which
// resumable sessions are opened.
const DefaultSessionEndpoint = "https://storage.googleapis.com"

// Sessions says how a Store opens resumable upload sessions through GCS's
// JSON API. cloud.google.com/go/storage (v1.70) has no call for it: its
// Writer opens a session of its own but never shows the session's URL,
// and a client cannot be asked for its authenticated HTTP client.
type Sessions struct {
	// HTTPClient sends the request opening a session, authenticated for
	// GCS (scope devstorage.read_write).
	HTTPClient *http.Client
	// Endpoint is the API's root: DefaultSessionEndpoint, or an
	// emulator's http://HOST:PORT.
	Endpoint string
}

// DefaultSessions returns Sessions as the client library would make them
// for storage.NewClient(ctx): for the emulator of STORAGE_EMULATOR_HOST
// without credentials, through emulator, else with Application Default
// Credentials. It fails if there are no credentials to be found.
func DefaultSessions(ctx context.Context, emulator *http.Client) (*Sessions, error) {
	if host := os.Getenv("STORAGE_EMULATOR_HOST"); host != "" {
		if !strings.Contains(host, "://") {
			host = "http://" + host
		}
		return &Sessions{HTTPClient: emulator, Endpoint: strings.TrimRight(host, "/")}, nil
	}
	hc, _, err := htransport.NewClient(ctx, option.WithScopes(storage.ScopeReadWrite))
	if err != nil {
		return nil, fmt.Errorf("gcs: credentials for resumable sessions: %w", err)
	}
	return &Sessions{HTTPClient: hc, Endpoint: DefaultSessionEndpoint}, nil
}

// errSessionGone is what ResumableOffset wraps with upload.ErrNotExist
// for a session GCS no longer knows.
var errSessionGone = errors.New("resumable session is gone")

// sessionsFor returns opts' Sessions, or makes the default ones once, on
// first use (an emulator's through emulator): a Store that never opens a
// session needs no credentials for it.
func sessionsFor(opts *Sessions, emulator *http.Client) func(ctx context.Context) (*Sessions, error) {
	if opts != nil {
		return func(context.Context) (*Sessions, error) { return opts, nil }
	}
	var (
		mu   sync.Mutex
		made *Sessions
	)
	return func(ctx context.Context) (*Sessions, error) {
		mu.Lock()
		defer mu.Unlock()
		if made != nil {
			return made, nil
		}
		s, err := DefaultSessions(ctx, emulator)
		if err != nil {
			return nil, err // tried again next time: credentials may appear
		}
		made = s
		return made, nil
	}
}

// StartResumable opens a resumable upload session for the chunk's part
// object, declaring its size (GCS refuses to finish the object at any
// other), and returns the session's URL. With a non-empty origin GCS
// answers CORS requests to the session from that browser origin, and
// only from it: the bucket's CORS configuration plays no part. A session
// lives a week; the object appears, replacing any earlier copy, when
// the session has all its bytes.
//
// It fails if key or chunk are invalid, with an error wrapping
// upload.ErrNotExist if the upload was never prepared or is gone, and if
// GCS refuses or cannot be reached.
func (s *Store) StartResumable(ctx context.Context, key string, chunk upload.ChunkRef, origin string) (string, error) {
	if err := checkKey(key); err != nil {
		return "", err
	}
	if err := checkChunk("start session", key, chunk); err != nil {
		return "", err
	}
	size, err := s.preparedSize(ctx, key)
	if err != nil {
		return "", fmt.Errorf("gcs: start session %q: upload: %w", key, err)
	}
	if chunk.Offset > size || chunk.Size > size-chunk.Offset {
		return "", fmt.Errorf("gcs: start session %q: chunk %d [%d, +%d) outside upload of %d bytes",
			key, chunk.Index, chunk.Offset, chunk.Size, size)
	}
	sess, err := s.sessions(ctx)
	if err != nil {
		return "", err
	}
	name := s.partName(key, chunk.Index)
	meta, err := json.Marshal(map[string]string{"name": name, "contentType": partContentType})
	if err != nil {
		return "", err
	}
	endpoint := fmt.Sprintf("%s/upload/storage/v1/b/%s/o?uploadType=resumable&name=%s",
		strings.TrimRight(sess.Endpoint, "/"), url.PathEscape(s.Bucket()), url.QueryEscape(name))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(string(meta)))
	if err != nil {
		return "", fmt.Errorf("gcs: start session for %s: %w", name, err)
	}
	req.Header.Set("Content-Type", "application/json; charset=UTF-8")
	req.Header.Set("X-Upload-Content-Type", partContentType)
	req.Header.Set("X-Upload-Content-Length", strconv.FormatInt(chunk.Size, 10))
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := sess.HTTPClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("gcs: start session for %s: %w", name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("gcs: start session for %s: %w", name, answerError(resp))
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || (loc.Scheme != "https" && loc.Scheme != "http") || loc.Host == "" {
		return "", fmt.Errorf("gcs: start session for %s: GCS answered %d without a session URL", name, resp.StatusCode)
	}
	return loc.String(), nil
}

// ResumableOffset asks a session for a chunk of size bytes how many of
// them it has kept: GCS's status query, a PUT with no body and
// Content-Range: bytes */size. The session's URL carries its own
// authority, so the query goes without spool's credentials.
//
// It returns done with persisted = size once the object is whole; an
// error wrapping upload.ErrNotExist if the session is gone (expired,
// cancelled or unknown); and an error if GCS fails or answers what its
// protocol does not allow.
func (s *Store) ResumableOffset(ctx context.Context, sessionURL string, size int64) (int64, bool, error) {
	if size < 0 {
		return 0, false, fmt.Errorf("gcs: session status: negative size %d", size)
	}
	u, err := url.Parse(sessionURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return 0, false, errors.New("gcs: session status: not a session URL")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, sessionURL, http.NoBody)
	if err != nil {
		return 0, false, fmt.Errorf("gcs: session status: %w", err)
	}
	req.Header.Set("Content-Range", fmt.Sprintf("bytes */%d", size))
	resp, err := s.statusClient.Do(req)
	if err != nil {
		// The URL is a capability: the transport's error quotes it.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return 0, false, fmt.Errorf("gcs: session status: %w", err)
	}
	defer resp.Body.Close()
	persisted, done, err := sessionStatus(resp, size)
	if err != nil {
		return 0, false, fmt.Errorf("gcs: session status: %w", err)
	}
	return persisted, done, nil
}

// sessionStatus reads GCS's answer to a status query for a session of
// size bytes: 308 Resume Incomplete with Range: bytes=0-LAST for the
// bytes kept (no Range: none yet), 200 or 201 once the object is whole,
// 404 or 410 for a session that is gone (and 499 for one cancelled).
func sessionStatus(resp *http.Response, size int64) (persisted int64, done bool, err error) {
	switch resp.StatusCode {
	case http.StatusOK, http.StatusCreated:
		return size, true, nil
	case http.StatusPermanentRedirect:
		r := resp.Header.Get("Range")
		if r == "" {
			return 0, false, nil
		}
		last, ok := strings.CutPrefix(r, "bytes=0-")
		n, perr := strconv.ParseInt(last, 10, 64)
		if !ok || perr != nil || n < 0 || n >= size {
			return 0, false, fmt.Errorf("GCS answered 308 with Range %q for a session of %d bytes", r, size)
		}
		return n + 1, false, nil
	case http.StatusNotFound, http.StatusGone, 499:
		return 0, false, fmt.Errorf("%w (GCS answered %d): %w", errSessionGone, resp.StatusCode, upload.ErrNotExist)
	default:
		return 0, false, answerError(resp)
	}
}

// answerError describes an answer GCS gave instead of the one expected,
// with the start of its body.
func answerError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	msg := strings.TrimSpace(string(b))
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	return fmt.Errorf("GCS answered %d: %s", resp.StatusCode, msg)
}
