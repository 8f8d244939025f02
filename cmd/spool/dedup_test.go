package main

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/png"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spoolhq/spool/internal/app"
	"github.com/spoolhq/spool/internal/app/apptest"
	"github.com/spoolhq/spool/internal/client"
)

// countingProxy stands between the CLI and a server, counting the bytes
// of chunk PUTs: the server hands out URLs through it (PublicURL).
type countingProxy struct {
	URL  string
	sent atomic.Int64
}

// startBehindProxy starts a server whose every URL goes through a
// countingProxy.
func startBehindProxy(t *testing.T) (*apptest.Server, *countingProxy) {
	t.Helper()
	p := &countingProxy{}
	var target atomic.Pointer[httputil.ReverseProxy]
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			r.Body = countedBody{r.Body, &p.sent}
		}
		target.Load().ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	p.URL = front.URL
	// The server names itself by PublicURL only, so it listens where the
	// test says: a port free a moment ago.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s := apptest.Start(t, func(c *app.Config) { c.Addr, c.PublicURL = addr, front.URL })
	target.Store(httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: addr}))
	return s, p
}

type countedBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b countedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// writePNG writes a real w×h PNG of noise, which processing can decode,
// and returns its path.
func writePNG(t *testing.T, dir string, w, h int, seed uint64) string {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	r := rand.New(rand.NewPCG(seed, seed))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.NRGBA{uint8(r.UintN(256)), uint8(r.UintN(256)), uint8(r.UintN(256)), 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "photo.png")
	if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// awaitProcessed polls the user's media until id is no longer being
// processed, and returns it. The test's own -timeout bounds the wait.
func awaitProcessed(t *testing.T, c *client.Client, id string) client.MediaFile {
	t.Helper()
	for {
		page, err := c.UserMedia(context.Background(), client.MediaQuery{First: 100})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range page.Media {
			if m.ID == id && m.Status != "PENDING" && m.Status != "PROCESSING" {
				return m
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mediaID is the media id in a media URL (/media/ID/NAME?…).
func mediaID(t *testing.T, mediaURL string) string {
	t.Helper()
	u, err := url.Parse(mediaURL)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) < 2 || parts[0] != "media" {
		t.Fatalf("media URL %s: no /media/ID/ path", mediaURL)
	}
	return parts[1]
}

// Running spool upload again on a file that finished sends none of its
// bytes and adds nothing to the library: the CLI finds the file among the
// user's READY media (same content, name, size and type) and prints that
// media. A copy of the file under another name is sent as nothing either:
// the server knows its SHA-256 and answers with a new media file sharing
// the bytes.
//
// Without the CLI's look-up the second run would add a copy of the first
// file to the library; without the server's dedup at initBatch the copy
// would be uploaded again.
func TestUploadAgainSendsNothing(t *testing.T) {
	t.Parallel()
	s, proxy := startBehindProxy(t)
	file := writePNG(t, t.TempDir(), 96, 64, 31)
	size, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	tok := s.Token(t, "alice")
	getenv := env("SPOOL_SERVER", proxy.URL, "SPOOL_TOKEN", tok)

	stdout, stderr, err := spoolCmd(t, context.Background(), getenv, "upload", file)
	if err != nil {
		t.Fatalf("first upload: %v\n%s", err, stderr)
	}
	if got := proxy.sent.Load(); got != size.Size() {
		t.Fatalf("first upload sent %d bytes, want the file's %d", got, size.Size())
	}
	first := mediaID(t, uploaded(t, stdout)[file])
	c := &client.Client{Server: proxy.URL, Token: tok}
	if m := awaitProcessed(t, c, first); m.Status != "READY" {
		t.Fatalf("media %s: %s, want READY", first, m.Status)
	}

	stdout, stderr, err = spoolCmd(t, context.Background(), getenv, "upload", file)
	if err != nil {
		t.Fatalf("second upload: %v\n%s", err, stderr)
	}
	if got := proxy.sent.Load() - size.Size(); got != 0 {
		t.Errorf("second upload sent %d bytes, want none", got)
	}
	if again := mediaID(t, uploaded(t, stdout)[file]); again != first {
		t.Errorf("second upload printed media %s, want the first's %s", again, first)
	}
	if want := file + ": already uploaded as media " + first + ", nothing sent"; !strings.Contains(stderr, want) {
		t.Errorf("stderr: got %q, want %q", stderr, want)
	}
	if page, err := c.UserMedia(context.Background(), client.MediaQuery{First: 10}); err != nil || page.TotalCount != 1 {
		t.Errorf("library after the second run: %d media (%v), want the first alone", page.TotalCount, err)
	}

	// The same bytes under another name: a new media file of its own (a
	// new gallery entry) sharing the first's bytes.
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	renamed := filepath.Join(t.TempDir(), "copy.png")
	if err := os.WriteFile(renamed, data, 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err = spoolCmd(t, context.Background(), getenv, "upload", renamed)
	if err != nil {
		t.Fatalf("upload of the copy: %v\n%s", err, stderr)
	}
	if got := proxy.sent.Load() - size.Size(); got != 0 {
		t.Errorf("upload of the copy sent %d bytes, want none", got)
	}
	copied := mediaID(t, uploaded(t, stdout)[renamed])
	if m := awaitProcessed(t, c, copied); copied == first || m.Status != "READY" || m.FileName != "copy.png" {
		t.Errorf("the copy's media: %s %q (%s), want a READY media file copy.png other than the first's %s", copied, m.FileName, m.Status, first)
	}
	if want := renamed + ": already uploaded as media " + copied + ", nothing sent"; !strings.Contains(stderr, want) {
		t.Errorf("stderr: got %q, want %q", stderr, want)
	}
}
