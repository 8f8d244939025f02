package app_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spoolhq/spool/internal/app"
	"github.com/spoolhq/spool/internal/eventually"
)

// These tests send the data plane and the browser-facing surface the
// wrong thing: tampered, expired or foreign URLs, bad tokens, malformed
// ranges, foreign origins.

// wantUntouched checks that an upload has received nothing at all.
func wantUntouched(t *testing.T, s *spool, token, id string) {
	t.Helper()
	got := s.uploadSession(token, id)
	if got.Status != "INITIALIZED" || got.Progress.UploadedBytes != 0 || got.Progress.UploadedChunks != 0 || len(got.Progress.FailedChunks) != 0 {
		t.Errorf("upload %s: got %s, %d bytes, %d chunks, failed %v; want it untouched",
			id, got.Status, got.Progress.UploadedBytes, got.Progress.UploadedChunks, got.Progress.FailedChunks)
	}
}

func TestChunkURLRefusals(t *testing.T) {
	t.Parallel()
	s := startSpool(t, nil)
	tok := s.token("alice")
	va, vb := fileBytes("video/mp4", 6<<20, 10), fileBytes("video/mp4", 6<<20, 11)
	b := s.initBatch(tok, file("a.mp4", "video/mp4", int64(len(va))), file("b.mp4", "video/mp4", int64(len(vb))))
	a, other := b.Uploads[0], b.Uploads[1]
	a0, a1, b0 := a.ChunkURLs[0], a.ChunkURLs[1], other.ChunkURLs[0]
	sig, exp := queryParam(t, a0.URL, "sig"), queryParam(t, a0.URL, "exp")
	expN, _ := strconv.ParseInt(exp, 10, 64)

	// Each URL is one change away from a valid one, and each body is the
	// right chunk for where the URL points, so only the signature stands
	// between it and a received chunk.
	cases := []struct {
		name string
		url  string
		body []byte
	}{
		{"flipped signature", withQuery(t, a0.URL, "sig", flipChar(sig)), chunkOf(a0, va)},
		{"truncated signature", withQuery(t, a0.URL, "sig", sig[:len(sig)-1]), chunkOf(a0, va)},
		{"missing signature", withQuery(t, a0.URL, "sig", ""), chunkOf(a0, va)},
		{"repeated signature", a0.URL + "&sig=" + sig, chunkOf(a0, va)},
		{"later expiry", withQuery(t, a0.URL, "exp", strconv.FormatInt(expN+1, 10)), chunkOf(a0, va)},
		{"far expiry", withQuery(t, a0.URL, "exp", strconv.FormatInt(expN+365*24*3600, 10)), chunkOf(a0, va)},
		{"expiry spelled differently", withQuery(t, a0.URL, "exp", "0"+exp), chunkOf(a0, va)},
		{"missing expiry", withQuery(t, a0.URL, "exp", ""), chunkOf(a0, va)},
		{"another index", strings.Replace(a0.URL, "/chunks/0?", "/chunks/1?", 1), chunkOf(a1, va)},
		{"index spelled differently", strings.Replace(a0.URL, "/chunks/0?", "/chunks/00?", 1), chunkOf(a0, va)},
		{"another upload", strings.Replace(a0.URL, "/uploads/"+a.ID+"/", "/uploads/"+other.ID+"/", 1), chunkOf(b0, vb)},
	}
	for _, c := range cases {
		if c.url == a0.URL {
			t.Fatalf("%s: the URL did not change", c.name)
		}
		if got := do(t, http.MethodPut, c.url, c.body, nil); got.Status != http.StatusForbidden || got.Error.Code != "FORBIDDEN" {
			t.Errorf("PUT with %s: got %d %s (%q), want 403 FORBIDDEN", c.name, got.Status, got.Error.Code, got.Error.Message)
		}
	}
	// A chunk URL's signature does not open the upload as a download.
	asMedia := strings.Replace(strings.Replace(a0.URL, "/uploads/", "/media/", 1), "/chunks/0?", "/x?", 1)
	if resp, _ := get(t, asMedia, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("chunk URL used as a download URL: got %d, want 403", resp.StatusCode)
	}
	wantUntouched(t, s, tok, a.ID)
	wantUntouched(t, s, tok, other.ID)

	// The genuine URLs still work.
	sendChunk(t, a0, va, http.StatusOK)
	sendChunk(t, b0, vb, http.StatusOK)
}

func TestExpiredURLs(t *testing.T) {
	t.Parallel()
	s := startSpool(t, func(c *app.Config) {
		c.Upload.ChunkURLTTL = time.Second
		c.Upload.MediaURLTTL = time.Second
	})
	tok := s.token("alice")
	img := fileBytes("image/png", 2000, 12)
	// URLs are signed to the second, so one asked for with a 1 s lifetime
	// may already have expired when used: send with fresh ones until one
	// is taken. A refused PUT changes nothing, so retrying is safe.
	sendFresh := func(id string) {
		eventually.Holds(t, "a fresh chunk URL to be taken", func() bool {
			var fresh struct{ RequestChunkURL chunkURL }
			s.mustGQL(tok, opRequestURL, vars("id", id, "i", 0), &fresh)
			got := do(t, http.MethodPut, fresh.RequestChunkURL.URL, img, nil)
			if got.Status != http.StatusOK && got.Status != http.StatusForbidden {
				t.Fatalf("PUT to a fresh URL: got %d %s", got.Status, got.Error.Message)
			}
			return got.Status == http.StatusOK
		})
	}
	done := s.planOne(tok, file("done.png", "image/png", int64(len(img))))
	sendFresh(done.ID)
	m := s.complete(tok, done.ID)
	up := s.planOne(tok, file("p.png", "image/png", int64(len(img))))
	c0 := up.ChunkURLs[0]

	waitUntilPast := func(rawURL string) {
		exp, err := strconv.ParseInt(queryParam(t, rawURL, "exp"), 10, 64)
		if err != nil {
			t.Fatalf("exp of %s: %v", rawURL, err)
		}
		eventually.Holds(t, "the URL to expire", func() bool { return time.Now().After(time.Unix(exp, 0)) })
	}
	waitUntilPast(c0.URL)
	got := do(t, http.MethodPut, c0.URL, img, nil)
	if got.Status != http.StatusForbidden || !strings.Contains(got.Error.Message, "expired") {
		t.Errorf("PUT to an expired URL: got %d %q, want 403 saying it expired", got.Status, got.Error.Message)
	}
	wantUntouched(t, s, tok, up.ID)

	waitUntilPast(m.URL)
	if resp, _ := get(t, m.URL, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("GET of an expired download URL: got %d, want 403", resp.StatusCode)
	}

	// A fresh URL for each works again.
	sendFresh(up.ID)
	eventually.Holds(t, "a fresh download URL to serve", func() bool {
		var node struct{ Node media }
		s.mustGQL(tok, `query($id: ID!) { node(id: $id) { ... on MediaFile { url } } }`, vars("id", m.ID), &node)
		resp, body := get(t, node.Node.URL, nil)
		if resp.StatusCode == http.StatusOK && len(body) != len(img) {
			t.Fatalf("GET of a fresh download URL: got %d bytes, want %d", len(body), len(img))
		}
		if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusForbidden {
			t.Fatalf("GET of a fresh download URL: got %d", resp.StatusCode)
		}
		return resp.StatusCode == http.StatusOK
	})
}

func TestMediaURLRefusals(t *testing.T) {
	t.Parallel()
	s := startSpool(t, nil)
	tok := s.token("alice")
	m1 := s.uploadFile(tok, "one.png", "image/png", fileBytes("image/png", 3000, 13))
	m2 := s.uploadFile(tok, "two.png", "image/png", fileBytes("image/png", 3000, 14))
	sig, exp := queryParam(t, m1.URL, "sig"), queryParam(t, m1.URL, "exp")
	expN, _ := strconv.ParseInt(exp, 10, 64)

	if resp, _ := get(t, m1.URL, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET of the genuine URL: got %d, want 200", resp.StatusCode)
	}
	cases := []struct{ name, url string }{
		{"flipped signature", withQuery(t, m1.URL, "sig", flipChar(sig))},
		{"missing signature", withQuery(t, m1.URL, "sig", "")},
		{"missing query", strings.Split(m1.URL, "?")[0]},
		{"later expiry", withQuery(t, m1.URL, "exp", strconv.FormatInt(expN+3600, 10))},
		{"another media", strings.Replace(m1.URL, "/media/"+m1.ID+"/", "/media/"+m2.ID+"/", 1)},
	}
	for _, c := range cases {
		resp, body := get(t, c.url, nil)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("GET with %s: got %d, want 403", c.name, resp.StatusCode)
		}
		if strings.Contains(string(body), "PNG") {
			t.Errorf("GET with %s: the answer holds the file's bytes", c.name)
		}
	}
}

func TestRangeUploads(t *testing.T) {
	t.Parallel()
	s := startSpool(t, nil)
	alice, bob := s.token("alice"), s.token("bob")
	video := fileBytes("video/mp4", 6<<20, 15) // chunks of 5 MiB and 1 MiB
	up := s.planOne(alice, file("v.mp4", "video/mp4", int64(len(video))))
	target := s.url + "/uploads/" + up.ID
	chunk0 := video[:5<<20]
	rangeHeader := func(token, cr string) http.Header {
		h := http.Header{"Content-Range": {cr}}
		if token != "" {
			h.Set("Authorization", "Bearer "+token)
		}
		return h
	}
	const first = "bytes 0-5242879/6291456"

	// Who may send.
	if got := do(t, http.MethodPut, target, chunk0, rangeHeader("", first)); got.Status != http.StatusUnauthorized ||
		got.Error.Code != "UNAUTHENTICATED" || got.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("no bearer: got %d %s, WWW-Authenticate %q; want 401 UNAUTHENTICATED with a challenge",
			got.Status, got.Error.Code, got.Header.Get("WWW-Authenticate"))
	}
	if got := do(t, http.MethodPut, target, chunk0, rangeHeader("not-a-token", first)); got.Status != http.StatusUnauthorized {
		t.Errorf("bad bearer: got %d, want 401", got.Status)
	}
	if got := do(t, http.MethodPut, target, chunk0, rangeHeader(bob, first)); got.Status != http.StatusNotFound || got.Error.Code != "NOT_FOUND" {
		t.Errorf("another user's token: got %d %s, want 404 NOT_FOUND", got.Status, got.Error.Code)
	}
	if got := do(t, http.MethodPut, s.url+"/uploads/upl_01JZZZZZZZZZZZZZZZZZZZZZZZ", chunk0, rangeHeader(alice, first)); got.Status != http.StatusNotFound {
		t.Errorf("unknown upload: got %d, want 404", got.Status)
	}

	// Ranges that are not a chunk of this upload.
	bad := []struct{ name, cr string }{
		{"missing", ""},
		{"no unit", "0-5242879/6291456"},
		{"no total", "bytes 0-5242879"},
		{"equals sign", "bytes=0-5242879/6291456"},
		{"other unit", "items 0-5242879/6291456"},
		{"backwards", "bytes 5242879-0/6291456"},
		{"negative", "bytes -1-5242879/6291456"},
		{"hex", "bytes 0x0-5242879/6291456"},
		{"past the total", "bytes 0-6291456/6291456"},
		{"overflowing", "bytes 0-99999999999999999999/6291456"},
		{"neither range nor total", "bytes */*"},
		{"trailing text", "bytes 0-5242879/6291456 more"},
		{"misaligned start", "bytes 1-5242880/6291456"},
		{"part of a chunk", "bytes 0-1048575/6291456"},
		{"two chunks", "bytes 0-6291455/6291456"},
		{"wrong total", "bytes 0-5242879/6291457"},
		{"short last chunk misaligned", "bytes 5242881-6291455/6291456"},
	}
	for _, c := range bad {
		body := chunk0
		var first, last int64
		if _, err := fmtSscanRange(c.cr, &first, &last); err == nil && last >= first && last < int64(len(video)) {
			body = video[first : last+1] // the body matches what the range claims
		}
		got := do(t, http.MethodPut, target, body, rangeHeader(alice, c.cr))
		if got.Status != http.StatusRequestedRangeNotSatisfiable || got.Error.Code != "INVALID_CHUNK" {
			t.Errorf("Content-Range %s (%q): got %d %s (%q), want 416 INVALID_CHUNK", c.name, c.cr, got.Status, got.Error.Code, got.Error.Message)
		}
	}
	wantUntouched(t, s, alice, up.ID)

	// Status query before anything arrived: 308 and no Range.
	got := do(t, http.MethodPut, target, nil, rangeHeader(alice, "bytes */6291456"))
	if got.Status != http.StatusPermanentRedirect || got.Header.Get("Range") != "" {
		t.Errorf("status query on an empty upload: got %d Range %q, want 308 without Range", got.Status, got.Header.Get("Range"))
	}

	// A chunk-aligned range is taken and counted.
	got = do(t, http.MethodPut, target, chunk0, rangeHeader(alice, first))
	if got.Status != http.StatusOK || got.UploadedChunks != 1 || got.UploadedBytes != 5<<20 {
		t.Fatalf("aligned range: got %d %+v (%q), want 200 with chunk 0 counted", got.Status, got.progress, got.Error.Message)
	}
	got = do(t, http.MethodPut, target, nil, rangeHeader(alice, "bytes */6291456"))
	if got.Status != http.StatusPermanentRedirect || got.Header.Get("Range") != "bytes=0-5242879" {
		t.Errorf("status query: got %d Range %q, want 308 with bytes=0-5242879", got.Status, got.Header.Get("Range"))
	}

	head := do(t, http.MethodHead, target, nil, bearer(alice))
	wantHeaders := map[string]string{
		"Spool-Upload-Status":   "UPLOADING",
		"Spool-Received-Chunks": "0",
		"Spool-Uploaded-Bytes":  "5242880",
		"Spool-Total-Bytes":     "6291456",
		"Spool-Chunk-Size":      "5242880",
		"Range":                 "bytes=0-5242879",
	}
	if head.Status != http.StatusOK {
		t.Errorf("HEAD: got %d, want 200", head.Status)
	}
	for k, want := range wantHeaders {
		if got := head.Header.Get(k); got != want {
			t.Errorf("HEAD %s: got %q, want %q", k, got, want)
		}
	}
	if got := do(t, http.MethodHead, target, nil, nil); got.Status != http.StatusUnauthorized {
		t.Errorf("HEAD without a token: got %d, want 401", got.Status)
	}
	if got := do(t, http.MethodHead, target, nil, bearer(bob)); got.Status != http.StatusNotFound {
		t.Errorf("HEAD with another user's token: got %d, want 404", got.Status)
	}

	// The short last chunk, total unknown ("/*"), completes the file.
	got = do(t, http.MethodPut, target, video[5<<20:], rangeHeader(alice, "bytes 5242880-6291455/*"))
	if got.Status != http.StatusOK || got.UploadedChunks != 2 {
		t.Fatalf("last chunk: got %d %+v (%q), want 200 with 2 chunks", got.Status, got.progress, got.Error.Message)
	}
	m := s.complete(alice, up.ID)
	if resp, body := get(t, m.URL, nil); resp.StatusCode != http.StatusOK || sha256hex(body) != sha256hex(video) {
		t.Errorf("download after range upload: got %d, %d bytes; want the video", resp.StatusCode, len(body))
	}
	head = do(t, http.MethodHead, target, nil, bearer(alice))
	if head.Header.Get("Spool-Received-Chunks") != "0-1" || head.Header.Get("Spool-Upload-Status") != "COMPLETED" {
		t.Errorf("HEAD after completion: got chunks %q status %q, want 0-1 COMPLETED",
			head.Header.Get("Spool-Received-Chunks"), head.Header.Get("Spool-Upload-Status"))
	}
	if got := do(t, http.MethodPut, target, nil, rangeHeader(alice, "bytes */6291456")); got.Status != http.StatusOK {
		t.Errorf("status query after completion: got %d, want 200", got.Status)
	}
}

// fmtSscanRange reads "bytes FIRST-LAST/…" leniently, only to size a
// test body; it fails on anything else.
func fmtSscanRange(cr string, first, last *int64) (int, error) {
	rest, ok := strings.CutPrefix(cr, "bytes ")
	if !ok {
		return 0, strconv.ErrSyntax
	}
	rng, _, _ := strings.Cut(rest, "/")
	a, b, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, strconv.ErrSyntax
	}
	var err error
	if *first, err = strconv.ParseInt(a, 10, 64); err != nil {
		return 0, err
	}
	if *last, err = strconv.ParseInt(b, 10, 64); err != nil {
		return 0, err
	}
	return 2, nil
}

func TestWebsocketOrigin(t *testing.T) {
	t.Parallel()
	plain := startSpool(t, nil)
	listed := startSpool(t, func(c *app.Config) { c.AllowedOrigins = []string{"http://app.example"} })
	cases := []struct {
		name   string
		s      *spool
		origin string
		ok     bool
	}{
		{"no Origin (not a browser)", plain, "", true},
		{"same origin", plain, plain.url, true},
		{"foreign origin", plain, "http://evil.example", false},
		{"null origin", plain, "null", false},
		{"listed origin on a server without a list", plain, "http://app.example", false},
		{"listed origin", listed, "http://app.example", true},
		{"foreign origin with a list", listed, "http://evil.example", false},
		{"suffix of a listed origin", listed, "http://app.example.evil.example", false},
		{"same origin with a list", listed, listed.url, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := c.s.with(t)
			var h http.Header
			if c.origin != "" {
				h = http.Header{"Origin": {c.origin}}
			}
			ws, err := s.tryDialWS(s.token("alice"), h)
			switch {
			case c.ok && err != nil:
				t.Fatalf("got %v, want the connection accepted", err)
			case !c.ok && err == nil:
				t.Fatal("got the connection accepted, want it refused")
			case !c.ok && !strings.Contains(err.Error(), "HTTP 403"):
				t.Fatalf("got %v, want the handshake refused with HTTP 403", err)
			}
			if ws != nil {
				// The accepted connection works, authenticated.
				ws.subscribe("up", `subscription($id: ID!) { uploadProgress(uploadId: $id) { status } }`, vars("id", "upl_unknown"))
				if got := subscriptionError(ws, "up").code(); got != "NOT_FOUND" {
					t.Errorf("subscription on the accepted connection: got %s, want NOT_FOUND", got)
				}
			}
		})
	}
}

func TestCORS(t *testing.T) {
	t.Parallel()
	plain := startSpool(t, nil)
	listed := startSpool(t, func(c *app.Config) { c.AllowedOrigins = []string{"http://app.example"} })
	preflight := func(t *testing.T, url, origin, method, headers string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodOptions, url, nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", method)
		req.Header.Set("Access-Control-Request-Headers", headers)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	cases := []struct {
		name, url, origin, method, headers string
		allowed                            bool
	}{
		{"GraphQL from a listed origin", listed.url + "/graphql", "http://app.example", "POST", "authorization,content-type", true},
		{"GraphQL from a foreign origin", listed.url + "/graphql", "http://evil.example", "POST", "authorization,content-type", false},
		{"chunk PUT from a listed origin", listed.url + "/uploads/upl_x/chunks/0", "http://app.example", "PUT", "content-md5,content-type,x-goog-hash", true},
		{"chunk PUT from a foreign origin", listed.url + "/uploads/upl_x/chunks/0", "http://evil.example", "PUT", "content-type", false},
		{"GraphQL from any origin, nothing listed", plain.url + "/graphql", "http://evil.example", "POST", "authorization,content-type", false},
	}
	for _, c := range cases {
		resp := preflight(t, c.url, c.origin, c.method, c.headers)
		got := resp.Header.Get("Access-Control-Allow-Origin")
		switch {
		case c.allowed && got != c.origin:
			t.Errorf("preflight %s: got Access-Control-Allow-Origin %q, want %q", c.name, got, c.origin)
		case c.allowed && !strings.Contains(strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers")), strings.Split(c.headers, ",")[0]):
			t.Errorf("preflight %s: got Access-Control-Allow-Headers %q, want it to allow %s", c.name, resp.Header.Get("Access-Control-Allow-Headers"), c.headers)
		case !c.allowed && got != "":
			t.Errorf("preflight %s: got Access-Control-Allow-Origin %q, want none", c.name, got)
		}
	}

	// The actual request carries the header only for a listed origin.
	for _, c := range []struct {
		origin string
		want   string
	}{{"http://app.example", "http://app.example"}, {"http://evil.example", ""}} {
		resp, _ := get(t, listed.url+"/healthz", http.Header{"Origin": {c.origin}})
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != c.want {
			t.Errorf("GET from %s: got Access-Control-Allow-Origin %q, want %q", c.origin, got, c.want)
		}
	}
}
