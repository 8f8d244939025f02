package web_test

import (
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/spoolhq/spool/web"
)

// assetRef finds the assets a built page loads: Vite writes them as
// absolute /assets/… paths.
var assetRef = regexp.MustCompile(`(?:src|href)="(/assets/[^"]+)"`)

func get(t *testing.T, srv *httptest.Server, path string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	// The transport would ask for gzip itself and hide that it did.
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	var r io.Reader = resp.Body
	if resp.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			t.Fatalf("GET %s: gzip: %v", path, err)
		}
		r = zr
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("GET %s: reading: %v", path, err)
	}
	return resp, string(b)
}

// Each page is served with every asset it names, so the binary alone
// gives a working page with no network.
func TestPagesServeTheirAssets(t *testing.T) {
	srv := httptest.NewServer(web.Pages())
	defer srv.Close()
	for _, c := range []struct{ path, title string }{
		{"/", "spool"},
		{"/graphiql", "GraphiQL"},
	} {
		t.Run(c.path, func(t *testing.T) {
			resp, html := get(t, srv, c.path, nil)
			if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
				t.Fatalf("GET %s: HTTP %d %s", c.path, resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			if !strings.Contains(html, c.title) {
				t.Errorf("GET %s: page has no %q in it", c.path, c.title)
			}
			if resp.Header.Get("X-Frame-Options") != "DENY" || resp.Header.Get("Cache-Control") != "no-cache" {
				t.Errorf("GET %s: headers %v, want X-Frame-Options DENY and Cache-Control no-cache", c.path, resp.Header)
			}
			refs := assetRef.FindAllStringSubmatch(html, -1)
			if len(refs) == 0 {
				t.Fatalf("GET %s: the page loads no /assets/ (is web/dist built? run make web):\n%s", c.path, html)
			}
			for _, ref := range refs {
				resp, body := get(t, srv, ref[1], nil)
				if resp.StatusCode != http.StatusOK || len(body) == 0 {
					t.Errorf("GET %s: HTTP %d, %d bytes", ref[1], resp.StatusCode, len(body))
				}
				if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "immutable") {
					t.Errorf("GET %s: Cache-Control %q, want immutable (names are content hashes)", ref[1], cc)
				}
			}
			for _, cdn := range []string{"unpkg.com", "jsdelivr", "cdnjs", "fonts.googleapis"} {
				if strings.Contains(html, cdn) {
					t.Errorf("GET %s: the page loads from %s; it must work offline", c.path, cdn)
				}
			}
		})
	}
}

func TestPagesCompressWhenAsked(t *testing.T) {
	srv := httptest.NewServer(web.Pages())
	defer srv.Close()
	_, html := get(t, srv, "/graphiql", nil)
	refs := assetRef.FindAllStringSubmatch(html, -1)
	if len(refs) == 0 {
		t.Fatal("the GraphiQL page names no assets")
	}
	plain, plainBody := get(t, srv, refs[0][1], nil)
	zipped, zippedBody := get(t, srv, refs[0][1], http.Header{"Accept-Encoding": {"gzip"}})
	if plain.Header.Get("Content-Encoding") != "" {
		t.Errorf("without Accept-Encoding the asset came %s", plain.Header.Get("Content-Encoding"))
	}
	if zipped.Header.Get("Content-Encoding") != "gzip" {
		t.Errorf("with Accept-Encoding: gzip the asset came %q", zipped.Header.Get("Content-Encoding"))
	}
	if plainBody != zippedBody {
		t.Errorf("the gzipped asset differs from the plain one (%d vs %d bytes)", len(zippedBody), len(plainBody))
	}
}

func TestPagesRefuseOtherPaths(t *testing.T) {
	srv := httptest.NewServer(web.Pages())
	defer srv.Close()
	for _, path := range []string{"/nope", "/index.html/", "/assets/missing.js", "/graphiql/x", "/../go.mod", "/dist/index.html"} {
		resp, _ := get(t, srv, path, nil)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: HTTP %d, want 404", path, resp.StatusCode)
		}
	}
	resp, err := http.Post(srv.URL+"/", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /: HTTP %d, want 405", resp.StatusCode)
	}
}
