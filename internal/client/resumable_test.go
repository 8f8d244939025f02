package client_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/spoolhq/spool/internal/app"
	"github.com/spoolhq/spool/internal/app/apptest"
	"github.com/spoolhq/spool/internal/client"
	"github.com/spoolhq/spool/internal/storage/gcs"
	"github.com/spoolhq/spool/internal/storage/gcs/gcstest"
)

// startDirect starts a server whose clients send their bytes straight to
// the GCS emulator.
func startDirect(t *testing.T) (*apptest.Server, *gcstest.Server) {
	t.Helper()
	g := gcstest.Start(t)
	bucket := g.CreateBucket(t)
	return apptest.Start(t, func(c *app.Config) {
		c.StorageURL = "gs://" + bucket + "/spool"
		c.GCS = gcs.Options{
			Client:     g.Client(t),
			SignedURLs: &gcs.SignedURLs{GoogleAccessID: gcstest.GoogleAccessID, PrivateKey: gcstest.SigningKey(t), Insecure: true},
			Sessions:   &gcs.Sessions{HTTPClient: http.DefaultClient, Endpoint: g.URL},
		}
		c.Upload.DirectUploads = true
	}), g
}

// breakOnce passes requests on, except that the first PUT to a resumable
// session delivers only the first keep bytes (declared as a piece of a
// file of unknown size, as a client does mid-stream) and then fails as a
// broken connection. It records each session PUT's Content-Range and
// length.
type breakOnce struct {
	base  http.RoundTripper
	keep  int64
	mu    sync.Mutex
	puts  []string
	broke bool
}

func (b *breakOnce) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodPut || req.Header.Get("Content-Range") == "" {
		return b.base.RoundTrip(req)
	}
	b.mu.Lock()
	b.puts = append(b.puts, fmt.Sprintf("%s (%d bytes)", req.Header.Get("Content-Range"), req.ContentLength))
	broke := b.broke
	b.broke = true
	b.mu.Unlock()
	if broke {
		return b.base.RoundTrip(req)
	}
	body, err := io.ReadAll(req.Body)
	req.Body.Close()
	if err != nil {
		return nil, err
	}
	part, _ := http.NewRequestWithContext(req.Context(), http.MethodPut, req.URL.String(), bytes.NewReader(body[:b.keep]))
	part.Header.Set("Content-Range", fmt.Sprintf("bytes 0-%d/*", b.keep-1))
	resp, err := b.base.RoundTrip(part)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusPermanentRedirect {
		return nil, fmt.Errorf("the store answered the first piece with %d, want 308", resp.StatusCode)
	}
	return nil, errors.New("connection reset by peer (test)")
}

// A SINGLE file sent straight to GCS whose connection breaks part way is
// resumed from where the store got to: the client asks spool (retry),
// sends the rest with the headers given, and the file completes intact.
func TestInterruptedDirectSingleResumes(t *testing.T) {
	t.Parallel()
	s, _ := startDirect(t)
	p, data := apptest.WriteFile(t, t.TempDir(), "p.png", apptest.PNG, 900<<10, 3) // SINGLE: up to 1 MiB
	size := int64(len(data))
	const keep = 512 << 10
	rt := &breakOnce{base: http.DefaultTransport, keep: keep}
	calls := newRecorder(t)
	calls.base = http.DefaultTransport.(*http.Transport).Clone()
	counted := &sentBytes{}
	c := &client.Client{Server: s.URL, Token: s.Token(t, "alice"), HTTP: &http.Client{Transport: chain{rt, calls}}}

	r := uploadOne(t, c, p, data, client.UploadOptions{Observer: counted})
	if r.Upload.Strategy != "SINGLE" {
		t.Fatalf("planned as %s, want SINGLE", r.Upload.Strategy)
	}
	want := []string{
		fmt.Sprintf("bytes 0-%d/%d (%d bytes)", size-1, size, size),
		fmt.Sprintf("bytes %d-%d/%d (%d bytes)", keep, size-1, size, size-keep),
	}
	if strings.Join(rt.puts, "; ") != strings.Join(want, "; ") {
		t.Errorf("session PUTs: got %q, want %q", rt.puts, want)
	}
	if got := calls.op("retry"); got != 1 {
		t.Errorf("retry called %d times, want once, to resume", got)
	}
	if counted.resumed+counted.sent != size {
		t.Errorf("observer: %d bytes resumed + %d sent, want %d in all", counted.resumed, counted.sent, size)
	}
}

// chain sends GraphQL requests through calls (which counts them) and the
// rest through rt.
type chain struct {
	rt    http.RoundTripper
	calls *recorder
}

func (c chain) RoundTrip(req *http.Request) (*http.Response, error) {
	if strings.HasSuffix(req.URL.Path, "/graphql") {
		return c.calls.RoundTrip(req)
	}
	return c.rt.RoundTrip(req)
}
