package app_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/spoolhq/spool/internal/app"
	"github.com/spoolhq/spool/internal/app/apptest"
	"github.com/spoolhq/spool/internal/storage/gcs"
	"github.com/spoolhq/spool/internal/storage/gcs/gcstest"
)

// logBuffer collects a server's text log.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// noSigningAccount points the GCS library's search for an account to sign
// as at a loopback GCE metadata server that knows none, as on a machine
// that is not on GCE, without probing the real network.
func noSigningAccount(t *testing.T) {
	t.Helper()
	metadata := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(metadata.Close)
	t.Setenv("GCE_METADATA_HOST", strings.TrimPrefix(metadata.URL, "http://"))
}

// TestMediaURLsProxyOnGCS: with GCS that cannot sign (no credentials, as
// with the emulator or a user's ADC), spool says so once at start and
// serves downloads itself, streaming from GCS: a URL handed out by one
// replica downloads byte-exact from the other, with Range, HEAD and
// If-None-Match.
func TestMediaURLsProxyOnGCS(t *testing.T) {
	noSigningAccount(t)
	shared := productionEngines(t)
	shared.gcs.SignedURLs = nil
	var logA logBuffer
	a := &spool{t: t}
	a.srv = apptest.StartLogged(t, slog.New(slog.NewTextHandler(&logA, nil)), shared.apply)
	a.main, a.url = a.srv.Main, a.srv.URL
	b := startSpool(t, shared.apply)

	log := logA.String()
	if n := strings.Count(log, "media downloads go through spool"); n != 1 {
		t.Errorf("start-up log: the proxy warning appears %d times, want once:\n%s", n, log)
	}
	for _, want := range []string{"level=WARN", "GoogleAccessID", "--gcs-credentials-file", "media_urls=proxy"} {
		if !strings.Contains(log, want) {
			t.Errorf("start-up log lacks %q:\n%s", want, log)
		}
	}

	tok := a.token("alice")
	video := fileBytes("video/mp4", 12<<20, 11)
	up := a.initBatch(tok, map[string]any{"fileName": "clip.mp4", "size": len(video), "mimeType": "video/mp4"}).Uploads[0]
	for i, u := range up.ChunkURLs {
		if i%2 == 1 {
			u.URL = strings.Replace(u.URL, a.url, b.url, 1)
		}
		sendChunk(t, u, video, http.StatusOK)
	}
	m := b.complete(tok, up.ID)
	if !strings.HasPrefix(m.URL, b.url+"/media/") {
		t.Fatalf("complete's url %s: want spool's own media route on %s", m.URL, b.url)
	}

	for _, s := range []*spool{a, b} {
		u := strings.Replace(m.URL, b.url, s.url, 1)
		resp, body := get(t, u, nil)
		if resp.StatusCode != http.StatusOK || sha256hex(body) != sha256hex(video) {
			t.Errorf("download from %s: got HTTP %d, %d bytes with sha256 %s, want 200 and %s", s.url, resp.StatusCode, len(body), sha256hex(body), sha256hex(video))
		}
	}

	// A range across the boundary of the first two chunks' bytes.
	first, last := 5<<20-10, 5<<20+9
	resp, body := get(t, m.URL, http.Header{"Range": {fmt.Sprintf("bytes=%d-%d", first, last)}})
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, video[first:last+1]) {
		t.Errorf("range %d-%d: got HTTP %d and %q, want 206 and %q", first, last, resp.StatusCode, body, video[first:last+1])
	}
	if got, want := resp.Header.Get("Content-Range"), fmt.Sprintf("bytes %d-%d/%d", first, last, len(video)); got != want {
		t.Errorf("Content-Range: got %q, want %q", got, want)
	}
	resp, body = get(t, m.URL, http.Header{"Range": {"bytes=-7"}})
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, video[len(video)-7:]) {
		t.Errorf("last 7 bytes: got HTTP %d and %q, want 206 and %q", resp.StatusCode, body, video[len(video)-7:])
	}

	resp, body = send(t, http.MethodHead, m.URL, nil, nil)
	if resp.StatusCode != http.StatusOK || len(body) != 0 || resp.ContentLength != int64(len(video)) {
		t.Errorf("HEAD: got HTTP %d, %d body bytes, Content-Length %d; want 200, none, %d", resp.StatusCode, len(body), resp.ContentLength, len(video))
	}
	etag := resp.Header.Get("ETag")
	if etag == "" || resp.Header.Get("Content-Type") != "video/mp4" {
		t.Fatalf("HEAD: got ETag %q and Content-Type %q, want an ETag and video/mp4", etag, resp.Header.Get("Content-Type"))
	}
	resp, body = get(t, m.URL, http.Header{"If-None-Match": {etag}})
	if resp.StatusCode != http.StatusNotModified || len(body) != 0 {
		t.Errorf("If-None-Match %s: got HTTP %d with %d bytes, want 304 and none", etag, resp.StatusCode, len(body))
	}
	if resp, _ := get(t, m.URL, http.Header{"If-None-Match": {`"med_other"`}, "Range": {"bytes=0-3"}}); resp.StatusCode != http.StatusPartialContent {
		t.Errorf("If-None-Match of another ETag: got HTTP %d, want 206", resp.StatusCode)
	}
}

// TestMediaURLsChosen: explicit modes are honoured when they can be, and
// settings that need URLs the store cannot sign stop spool at start with
// a message naming what to set.
func TestMediaURLsChosen(t *testing.T) {
	noSigningAccount(t)
	srv := gcstest.Start(t)
	bucket := srv.CreateBucket(t)
	signing := &gcs.SignedURLs{GoogleAccessID: gcstest.GoogleAccessID, PrivateKey: gcstest.SigningKey(t), Insecure: true}
	onGCS := func(signs bool) func(*app.Config) {
		return func(c *app.Config) {
			c.StorageURL = "gs://" + bucket + "/spool"
			c.GCS = gcs.Options{Client: srv.Client(t), Sessions: &gcs.Sessions{HTTPClient: http.DefaultClient, Endpoint: srv.URL}}
			if signs {
				c.GCS.SignedURLs = signing
			}
		}
	}

	refused := []struct {
		name   string
		change func(*app.Config)
		want   []string
	}{
		{"signed, GCS cannot sign", func(c *app.Config) { onGCS(false)(c); c.MediaURLs = app.MediaURLsSigned },
			[]string{"--media-urls signed", "GoogleAccessID", "--gcs-credentials-file", "--gcs-signer-email", "--media-urls proxy"}},
		{"direct uploads, GCS cannot sign", func(c *app.Config) { onGCS(false)(c); c.Upload.DirectUploads = true },
			[]string{"--storage-direct", "--gcs-credentials-file", "--gcs-signer-email"}},
		{"direct uploads and proxy, GCS cannot sign", func(c *app.Config) {
			onGCS(false)(c)
			c.Upload.DirectUploads, c.MediaURLs = true, app.MediaURLsProxy
		}, []string{"--storage-direct", "--gcs-credentials-file"}},
		{"signed on local disk", func(c *app.Config) { c.MediaURLs = app.MediaURLsSigned }, []string{"gs://", "local"}},
		{"unknown mode", func(c *app.Config) { c.MediaURLs = "cdn" }, []string{`"cdn"`, "auto, signed or proxy"}},
	}
	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			cfg := apptest.Config(t.TempDir())
			c.change(&cfg)
			m := app.New(cfg, nil)
			err := m.Run(context.Background())
			if err == nil {
				m.Close()
				t.Fatal("spool started, want it refused")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %q, want it to name %q", err, w)
				}
			}
		})
	}

	served := []struct {
		name    string
		change  func(*app.Config)
		onSpool bool // whether complete's URL is spool's own route
	}{
		{"auto, GCS signs", onGCS(true), false},
		{"signed, GCS signs", func(c *app.Config) { onGCS(true)(c); c.MediaURLs = app.MediaURLsSigned }, false},
		{"proxy, GCS signs", func(c *app.Config) { onGCS(true)(c); c.MediaURLs = app.MediaURLsProxy }, true},
		{"proxy with direct uploads", func(c *app.Config) {
			onGCS(true)(c)
			c.MediaURLs, c.Upload.DirectUploads = app.MediaURLsProxy, true
		}, true},
		{"auto, local disk", nil, true},
		{"proxy, local disk", func(c *app.Config) { c.MediaURLs = app.MediaURLsProxy }, true},
	}
	for _, c := range served {
		t.Run(c.name, func(t *testing.T) {
			s := startSpool(t, c.change)
			tok := s.token("alice")
			img := fileBytes("image/png", 3000, 12)
			m := s.uploadFile(tok, "pic.png", "image/png", img)
			if got := strings.HasPrefix(m.URL, s.url+"/media/"); got != c.onSpool {
				t.Errorf("media URL %s: on spool %v, want %v", m.URL, got, c.onSpool)
			}
			if body := apptest.Get(t, m.URL); !bytes.Equal(body, img) {
				t.Errorf("download: got %d bytes differing from the %d uploaded", len(body), len(img))
			}
		})
	}
}
