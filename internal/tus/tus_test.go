package tus_test

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"hash/crc32"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spoolhq/spool/internal/app"
	"github.com/spoolhq/spool/internal/app/apptest"
	"github.com/spoolhq/spool/internal/eventually"
	"github.com/spoolhq/spool/internal/upload"
)

const mib = 1 << 20

// video returns n bytes that pass as an MP4, and its Upload-Metadata.
func video(name string, n int, seed uint64) ([]byte, string) {
	return fileBytes(apptest.MP4, n, seed), metadata("filename", name, "filetype", "video/mp4")
}

func TestDiscovery(t *testing.T) {
	t.Parallel()
	s := start(t, func(c *app.Config) { c.AllowedOrigins = []string{"https://app.example"} })
	// No token: discovery is open.
	a := s.do(http.MethodOptions, "/files/", "", nil)
	if a.status != http.StatusNoContent && a.status != http.StatusOK {
		t.Fatalf("OPTIONS /files/: got %v, want 204", a)
	}
	if got := a.header.Get("Tus-Version"); got != "1.0.0" {
		t.Errorf("Tus-Version %q, want 1.0.0", got)
	}
	if got := a.header.Get("Tus-Resumable"); got != "1.0.0" {
		t.Errorf("Tus-Resumable %q, want 1.0.0", got)
	}
	wantExt := []string{"checksum", "concatenation", "creation", "creation-with-upload", "expiration", "termination"}
	if got := headerList(a.header.Get("Tus-Extension")); !slices.Equal(got, wantExt) {
		t.Errorf("Tus-Extension %v, want %v (no creation-defer-length)", got, wantExt)
	}
	if got := headerList(a.header.Get("Tus-Checksum-Algorithm")); !slices.Equal(got, []string{"crc32c", "md5", "sha1", "sha256"}) {
		t.Errorf("Tus-Checksum-Algorithm %v", got)
	}
	if got := a.header.Get("Tus-Max-Size"); got != strconv.FormatInt(5*upload.GiB, 10) {
		t.Errorf("Tus-Max-Size %q, want the video limit %d", got, 5*upload.GiB)
	}

	// A browser's preflight for a PATCH with tus's headers.
	a = s.do(http.MethodOptions, "/files/upl_x", "", nil, "Origin", "https://app.example",
		"Access-Control-Request-Method", "PATCH",
		"Access-Control-Request-Headers", "authorization,content-type,tus-resumable,upload-checksum,upload-offset")
	if got := a.header.Get("Access-Control-Allow-Origin"); got != "https://app.example" {
		t.Errorf("preflight: Access-Control-Allow-Origin %q (%v)", got, a)
	}
	for _, h := range []string{"tus-resumable", "upload-offset", "upload-checksum"} {
		if !strings.Contains(strings.ToLower(a.header.Get("Access-Control-Allow-Headers")), h) {
			t.Errorf("preflight: Access-Control-Allow-Headers %q lacks %s", a.header.Get("Access-Control-Allow-Headers"), h)
		}
	}
	// An actual request exposes tus's headers and spool's.
	tok := s.token("alice")
	a = s.do(http.MethodPost, "/files/", tok, nil, "Origin", "https://app.example",
		"Upload-Length", "2000", "Upload-Metadata", metadata("filename", "a.png", "filetype", "image/png"))
	if a.status != http.StatusCreated {
		t.Fatalf("POST: %v", a)
	}
	exposed := strings.ToLower(a.header.Get("Access-Control-Expose-Headers"))
	for _, h := range []string{"location", "upload-offset", "upload-expires", "spool-media-id", "tus-resumable"} {
		if !strings.Contains(exposed, h) {
			t.Errorf("Access-Control-Expose-Headers %q lacks %s", exposed, h)
		}
	}
}

func TestEveryRequestNeedsAToken(t *testing.T) {
	t.Parallel()
	s := start(t, nil)
	tok := s.token("alice")
	url := s.create(tok, 3*mib, metadata("filename", "a.mp4", "filetype", "video/mp4"))
	for _, c := range []struct{ method, url string }{
		{http.MethodPost, "/files/"}, {http.MethodHead, url}, {http.MethodPatch, url}, {http.MethodDelete, url},
	} {
		for _, token := range []string{"", "not-a-token"} {
			headers := []string{"Upload-Length", "10", "Upload-Offset", "0", "Content-Type", "application/offset+octet-stream"}
			var a answer
			if token == "" {
				a = s.do(c.method, c.url, "", []byte("0123456789"), headers...)
			} else {
				a = s.do(c.method, c.url, "", []byte("0123456789"), append(headers, "Authorization", "Bearer "+token)...)
			}
			if a.status != http.StatusUnauthorized || !strings.HasPrefix(a.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s %s with token %q: got %v (WWW-Authenticate %q), want 401", c.method, c.url, token, a, a.header.Get("WWW-Authenticate"))
			}
			if c.method != http.MethodHead && !strings.HasPrefix(a.body, "UNAUTHENTICATED: ") {
				t.Errorf("%s %s: body %q, want UNAUTHENTICATED: …", c.method, c.url, a.body)
			}
		}
	}
	if got := s.offset(url, tok); got != 0 {
		t.Errorf("offset after refused PATCHes: %d, want 0", got)
	}
}

func TestCreationAndHead(t *testing.T) {
	t.Parallel()
	s := start(t, nil)
	tok := s.token("alice")
	before := time.Now()
	a := s.do(http.MethodPost, "/files/", tok, nil, "Upload-Length", strconv.Itoa(12*mib),
		"Upload-Metadata", metadata("filename", "clip.mp4", "filetype", "video/mp4", "fingerprint", "fp-1"))
	if a.status != http.StatusCreated {
		t.Fatalf("POST: %v", a)
	}
	url := a.header.Get("Location")
	expires, err := http.ParseTime(a.header.Get("Upload-Expires"))
	if err != nil {
		t.Fatalf("POST: Upload-Expires %q is not an HTTP date: %v", a.header.Get("Upload-Expires"), err)
	}
	ttl := app.DefaultConfig().Upload.SessionTTL
	if ttl == 0 {
		ttl = upload.DefaultConfig().SessionTTL
	}
	if lo, hi := before.Add(ttl).Add(-2*time.Second), time.Now().Add(ttl).Add(time.Second); expires.Before(lo) || expires.After(hi) {
		t.Errorf("Upload-Expires %v, want about now + %v", expires, ttl)
	}

	h := s.do(http.MethodHead, url, tok, nil)
	if h.status != http.StatusOK {
		t.Fatalf("HEAD: %v", h)
	}
	for name, want := range map[string]string{
		"Upload-Offset": "0", "Upload-Length": strconv.Itoa(12 * mib), "Cache-Control": "no-store",
		"Tus-Resumable": "1.0.0", "Upload-Expires": a.header.Get("Upload-Expires"),
	} {
		if got := h.header.Get(name); got != want {
			t.Errorf("HEAD: %s %q, want %q", name, got, want)
		}
	}
	if got := h.header.Get("Upload-Metadata"); !strings.Contains(got, "filename "+base64.StdEncoding.EncodeToString([]byte("clip.mp4"))) {
		t.Errorf("HEAD: Upload-Metadata %q lacks the file name", got)
	}

	// The same fingerprint resumes the same upload.
	if again := s.create(tok, 12*mib, metadata("filename", "clip.mp4", "filetype", "video/mp4", "fingerprint", "fp-1")); again != url {
		t.Errorf("POST with the same fingerprint: Location %s, want %s (resumed)", again, url)
	}
	// The upload is a spool upload, visible to GraphQL.
	var out struct {
		Upload struct {
			FileName  string
			TotalSize int64
			Status    string
		}
	}
	s.gql(tok, `query($id: ID!) { upload(id: $id) { fileName totalSize status } }`, map[string]any{"id": idOf(url)}, &out)
	if out.Upload.FileName != "clip.mp4" || out.Upload.TotalSize != 12*mib || out.Upload.Status != "INITIALIZED" {
		t.Errorf("GraphQL upload: %+v, want clip.mp4, 12 MiB, INITIALIZED", out.Upload)
	}
}

func idOf(url string) string { return url[strings.LastIndex(url, "/")+1:] }

func TestCreationRefusals(t *testing.T) {
	t.Parallel()
	s := start(t, func(c *app.Config) { c.Upload.DefaultQuota = 100 * mib })
	tok := s.token("alice")
	good := metadata("filename", "a.mp4", "filetype", "video/mp4")
	for _, c := range []struct {
		name    string
		headers []string
		status  int
		code    string // spool's, or tusd's ERR_… for what tusd refuses
	}{
		{"no filetype", []string{"Upload-Length", "100", "Upload-Metadata", metadata("filename", "a.mp4")}, 400, "BAD_USER_INPUT"},
		{"no metadata", []string{"Upload-Length", "100"}, 400, "BAD_USER_INPUT"},
		{"no filename", []string{"Upload-Length", "100", "Upload-Metadata", metadata("filetype", "video/mp4")}, 400, "BAD_USER_INPUT"},
		{"value not base64", []string{"Upload-Length", "100", "Upload-Metadata", "filename a.mp4,filetype dmlkZW8vbXA0"}, 400, "BAD_USER_INPUT"},
		{"key twice", []string{"Upload-Length", "100", "Upload-Metadata", good + ",filename YS5tcDQ="}, 400, "BAD_USER_INPUT"},
		{"empty pair", []string{"Upload-Length", "100", "Upload-Metadata", good + ",,name YS5tcDQ="}, 400, "BAD_USER_INPUT"},
		{"two spaces", []string{"Upload-Length", "100", "Upload-Metadata", "filename  YS5tcDQ="}, 400, "BAD_USER_INPUT"},
		{"type not accepted", []string{"Upload-Length", "100", "Upload-Metadata", metadata("filename", "a.exe", "filetype", "application/x-msdownload")}, 415, "INVALID_TYPE"},
		{"over the image limit", []string{"Upload-Length", strconv.Itoa(51 * mib), "Upload-Metadata", metadata("filename", "a.png", "filetype", "image/png")}, 413, "FILE_TOO_LARGE"},
		{"over the quota", []string{"Upload-Length", strconv.Itoa(101 * mib), "Upload-Metadata", good}, 403, "QUOTA_EXCEEDED"},
		{"zero bytes", []string{"Upload-Length", "0", "Upload-Metadata", good}, 400, "BAD_USER_INPUT"},
		{"no length", []string{"Upload-Metadata", good}, 400, "ERR_INVALID_UPLOAD_LENGTH"},
		{"deferred length", []string{"Upload-Defer-Length", "1", "Upload-Metadata", good}, 501, "ERR_NOT_IMPLEMENTED"},
		{"no Tus-Resumable", []string{"Upload-Length", "100", "Upload-Metadata", good, "Tus-Resumable", ""}, 412, "ERR_UNSUPPORTED_VERSION"},
		{"bad concat", []string{"Upload-Length", "100", "Upload-Metadata", good, "Upload-Concat", "final;"}, 400, "ERR_INVALID_CONCAT"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := s.do(http.MethodPost, "/files/", tok, nil, c.headers...)
			wantError(t, "POST", a, c.status, c.code)
			if a.header.Get("Location") != "" {
				t.Errorf("refused POST has Location %q", a.header.Get("Location"))
			}
		})
	}
	// Nothing was created, and no quota is held.
	var out struct{ Me struct{ UsedBytes int64 } }
	s.gql(tok, `{ me { usedBytes } }`, nil, &out)
	if out.Me.UsedBytes != 0 {
		t.Errorf("usedBytes %d after refused creations, want 0", out.Me.UsedBytes)
	}
}

func TestOnlyTheOwnersTusUploads(t *testing.T) {
	t.Parallel()
	s := start(t, nil)
	alice, bob := s.token("alice"), s.token("bob")
	url := s.create(alice, 3*mib, metadata("filename", "a.mp4", "filetype", "video/mp4"))
	data, _ := video("a.mp4", 3*mib, 1)
	wantError(t, "bob's HEAD", s.do(http.MethodHead, url, bob, nil), 404, "")
	wantError(t, "bob's PATCH", s.patch(url, bob, 0, data[:mib]), 404, "NOT_FOUND")
	wantError(t, "bob's DELETE", s.do(http.MethodDelete, url, bob, nil), 404, "NOT_FOUND")
	wantError(t, "no such upload", s.do(http.MethodHead, s.url+"/files/upl_nosuch", alice, nil), 404, "")
	if got := s.offset(url, alice); got != 0 {
		t.Errorf("offset after bob's PATCH: %d, want 0", got)
	}

	// An upload made through GraphQL is not a tus upload.
	var out struct {
		InitBatch struct{ Uploads []struct{ ID string } }
	}
	s.gql(alice, `mutation($input: InitBatchInput!) { initBatch(input: $input) { uploads { id } } }`,
		map[string]any{"input": map[string]any{"files": []map[string]any{{"fileName": "b.mp4", "size": 3 * mib, "mimeType": "video/mp4"}}}}, &out)
	gqlURL := s.url + "/files/" + out.InitBatch.Uploads[0].ID
	wantError(t, "HEAD of a GraphQL upload", s.do(http.MethodHead, gqlURL, alice, nil), 404, "")
	wantError(t, "PATCH of a GraphQL upload", s.patch(gqlURL, alice, 0, data[:mib]), 404, "NOT_FOUND")
}

func TestPatchInPiecesThenComplete(t *testing.T) {
	t.Parallel()
	s := start(t, nil)
	tok := s.token("alice")
	data, meta := video("clip.mp4", 12*mib+12345, 7)
	url := s.create(tok, len(data), meta)
	// Pieces that end inside chunks, cross chunk boundaries and end on
	// one (5 MiB chunks).
	cuts := []int{0, 100, 3 * mib, 5 * mib, 9*mib + 7, len(data)}
	for i := 1; i < len(cuts); i++ {
		a := s.patch(url, tok, cuts[i-1], data[cuts[i-1]:cuts[i]])
		if a.status != http.StatusNoContent {
			t.Fatalf("PATCH %d..%d: %v", cuts[i-1], cuts[i], a)
		}
		if got := a.header.Get("Upload-Offset"); got != strconv.Itoa(cuts[i]) {
			t.Fatalf("PATCH %d..%d: Upload-Offset %s, want %d", cuts[i-1], cuts[i], got, cuts[i])
		}
		last := i == len(cuts)-1
		if got := a.header.Get("Spool-Media-Id"); (got != "") != last {
			t.Errorf("PATCH %d..%d: Spool-Media-Id %q (last PATCH: %v)", cuts[i-1], cuts[i], got, last)
		}
		if _, err := http.ParseTime(a.header.Get("Upload-Expires")); (err == nil) == last {
			t.Errorf("PATCH %d..%d: Upload-Expires %q (last PATCH: %v)", cuts[i-1], cuts[i], a.header.Get("Upload-Expires"), last)
		}
		if !last {
			if got := s.offset(url, tok); got != cuts[i] {
				t.Fatalf("HEAD after PATCH %d..%d: offset %d", cuts[i-1], cuts[i], got)
			}
		} else {
			mediaID := a.header.Get("Spool-Media-Id")
			h := s.do(http.MethodHead, url, tok, nil)
			if h.header.Get("Spool-Media-Id") != mediaID || h.header.Get("Upload-Offset") != strconv.Itoa(len(data)) {
				t.Errorf("HEAD after completion: Spool-Media-Id %q, Upload-Offset %q; want %s, %d",
					h.header.Get("Spool-Media-Id"), h.header.Get("Upload-Offset"), mediaID, len(data))
			}
			m := s.media(tok, mediaID)
			if m.FileName != "clip.mp4" || m.FileSize != int64(len(data)) || m.MimeType != "video/mp4" {
				t.Errorf("media %+v, want clip.mp4 video/mp4 of %d bytes", m, len(data))
			}
			s.download(m, data)
			// A PATCH at the end of a completed upload changes nothing.
			if a := s.patch(url, tok, len(data), nil); a.status != http.StatusNoContent {
				t.Errorf("empty PATCH at the end of a completed upload: %v", a)
			}
		}
	}
}

func TestCreationWithUpload(t *testing.T) {
	t.Parallel()
	s := start(t, nil)
	tok := s.token("alice")
	data, meta := video("clip.mp4", 6*mib, 8)
	a := s.do(http.MethodPost, "/files/", tok, data[:2*mib+3], "Upload-Length", strconv.Itoa(len(data)),
		"Upload-Metadata", meta, "Content-Type", "application/offset+octet-stream")
	if a.status != http.StatusCreated || a.header.Get("Upload-Offset") != strconv.Itoa(2*mib+3) {
		t.Fatalf("POST with a body: %v, Upload-Offset %q; want 201 at %d", a, a.header.Get("Upload-Offset"), 2*mib+3)
	}
	url := a.header.Get("Location")
	a = s.patch(url, tok, 2*mib+3, data[2*mib+3:])
	if a.status != http.StatusNoContent || a.header.Get("Spool-Media-Id") == "" {
		t.Fatalf("PATCH of the rest: %v, Spool-Media-Id %q", a, a.header.Get("Spool-Media-Id"))
	}
	s.download(s.media(tok, a.header.Get("Spool-Media-Id")), data)

	// A whole small file in its creation request.
	small, meta := video("small.mp4", 300_000, 9)
	a = s.do(http.MethodPost, "/files/", tok, small, "Upload-Length", strconv.Itoa(len(small)),
		"Upload-Metadata", meta, "Content-Type", "application/offset+octet-stream")
	if a.status != http.StatusCreated || a.header.Get("Spool-Media-Id") == "" {
		t.Fatalf("POST of a whole file: %v, Spool-Media-Id %q", a, a.header.Get("Spool-Media-Id"))
	}
	s.download(s.media(tok, a.header.Get("Spool-Media-Id")), small)
}

func TestWrongPatches(t *testing.T) {
	t.Parallel()
	s := start(t, nil)
	tok := s.token("alice")
	data, meta := video("clip.mp4", 6*mib, 3)
	url := s.create(tok, len(data), meta)
	if a := s.patch(url, tok, 0, data[:mib]); a.status != http.StatusNoContent {
		t.Fatalf("first PATCH: %v", a)
	}
	wantError(t, "PATCH behind the offset", s.patch(url, tok, 10, data[10:mib+10]), 409, "ERR_MISMATCHED_OFFSET")
	wantError(t, "PATCH past the offset", s.patch(url, tok, 2*mib, data[2*mib:3*mib]), 409, "ERR_MISMATCHED_OFFSET")
	wantError(t, "PATCH past the end", s.patch(url, tok, mib, append(data[mib:], 'x')), 413, "ERR_UPLOAD_SIZE_EXCEEDED")
	wantError(t, "PATCH without Upload-Offset", s.do(http.MethodPatch, url, tok, data[mib:2*mib], "Content-Type", "application/offset+octet-stream"), 400, "ERR_INVALID_OFFSET")
	wantError(t, "PATCH of the wrong type", s.patch(url, tok, mib, data[mib:2*mib], "Content-Type", "application/octet-stream"), 400, "ERR_INVALID_CONTENT_TYPE")
	if got := s.offset(url, tok); got != mib {
		t.Errorf("offset after refused PATCHes: %d, want %d", got, mib)
	}

	// First bytes that are not the declared type.
	png := fileBytes(apptest.PNG, 2*mib, 4)
	url2 := s.create(tok, len(png), meta)
	wantError(t, "PNG bytes for an MP4", s.patch(url2, tok, 0, png), 415, "TYPE_MISMATCH")
	if got := s.offset(url2, tok); got != 0 {
		t.Errorf("offset after a refused first PATCH: %d, want 0", got)
	}
}

func checksum(alg string, b []byte) string {
	var sum []byte
	switch alg {
	case "md5":
		s := md5.Sum(b)
		sum = s[:]
	case "sha1":
		s := sha1.Sum(b)
		sum = s[:]
	case "sha256":
		s := sha256.Sum256(b)
		sum = s[:]
	case "crc32c":
		sum = binary.BigEndian.AppendUint32(nil, crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
	}
	return alg + " " + base64.StdEncoding.EncodeToString(sum)
}

func TestChecksums(t *testing.T) {
	t.Parallel()
	s := start(t, nil)
	tok := s.token("alice")
	data, meta := video("clip.mp4", 11*mib, 5)
	url := s.create(tok, len(data), meta)
	// One PATCH per algorithm, of uneven sizes; each good one is kept.
	cuts := []int{0, 3 * mib, 6*mib + 1, 10 * mib, len(data)}
	algs := []string{"sha1", "crc32c", "md5", "sha256"}
	for i, alg := range algs {
		piece := data[cuts[i]:cuts[i+1]]
		corrupt := append([]byte{}, piece...)
		corrupt[len(corrupt)/2] ^= 1
		a := s.patch(url, tok, cuts[i], corrupt, "Upload-Checksum", checksum(alg, piece))
		wantError(t, alg+": corrupt body", a, 460, "CHECKSUM_MISMATCH")
		if got := s.offset(url, tok); got != cuts[i] {
			t.Fatalf("%s: offset after a mismatch %d, want %d (unchanged)", alg, got, cuts[i])
		}
		a = s.patch(url, tok, cuts[i], piece, "Upload-Checksum", checksum(alg, piece))
		if a.status != http.StatusNoContent || a.header.Get("Upload-Offset") != strconv.Itoa(cuts[i+1]) {
			t.Fatalf("%s: good body: %v at %s, want 204 at %d", alg, a, a.header.Get("Upload-Offset"), cuts[i+1])
		}
	}
	if id := s.do(http.MethodHead, url, tok, nil).header.Get("Spool-Media-Id"); id != "" {
		s.download(s.media(tok, id), data)
	} else {
		t.Fatal("no media after the last checksummed PATCH")
	}

	url2 := s.create(tok, len(data), meta)
	for _, c := range []struct{ name, header string }{
		{"unsupported algorithm", "crc32 AAAAAA=="},
		{"no sum", "sha1"},
		{"not base64", "sha1 !!!!"},
		{"wrong length", "sha1 " + base64.StdEncoding.EncodeToString([]byte("short"))},
		{"three fields", "sha1 a b"},
	} {
		wantError(t, c.name, s.patch(url2, tok, 0, data[:mib], "Upload-Checksum", c.header), 400, "BAD_USER_INPUT")
	}
	if got := s.offset(url2, tok); got != 0 {
		t.Errorf("offset after refused checksums: %d, want 0", got)
	}
}

func TestTermination(t *testing.T) {
	t.Parallel()
	s := start(t, nil)
	tok := s.token("alice")
	data, meta := video("clip.mp4", 7*mib, 6)
	url := s.create(tok, len(data), meta)
	if a := s.patch(url, tok, 0, data[:6*mib]); a.status != http.StatusNoContent {
		t.Fatalf("PATCH: %v", a)
	}
	if a := s.do(http.MethodDelete, url, tok, nil); a.status != http.StatusNoContent {
		t.Fatalf("DELETE: %v", a)
	}
	wantError(t, "HEAD after DELETE", s.do(http.MethodHead, url, tok, nil), 404, "")
	wantError(t, "PATCH after DELETE", s.patch(url, tok, 6*mib, data[6*mib:]), 404, "NOT_FOUND")
	wantError(t, "DELETE after DELETE", s.do(http.MethodDelete, url, tok, nil), 404, "NOT_FOUND")
	var out struct {
		Upload struct{ Status string }
		Me     struct{ UsedBytes int64 }
	}
	s.gql(tok, `query($id: ID!) { upload(id: $id) { status } me { usedBytes } }`, map[string]any{"id": idOf(url)}, &out)
	if out.Upload.Status != "CANCELLED" || out.Me.UsedBytes != 0 {
		t.Errorf("after DELETE: status %s, usedBytes %d; want CANCELLED, 0", out.Upload.Status, out.Me.UsedBytes)
	}

	// A completed upload is not terminated: its media is deleted through GraphQL.
	small, meta := video("small.mp4", 200_000, 2)
	url2 := s.create(tok, len(small), meta)
	if a := s.patch(url2, tok, 0, small); a.header.Get("Spool-Media-Id") == "" {
		t.Fatalf("PATCH: %v", a)
	}
	wantError(t, "DELETE of a completed upload", s.do(http.MethodDelete, url2, tok, nil), 409, "ALREADY_FINISHED")
}

func TestExpiredUploadIsGone(t *testing.T) {
	t.Parallel()
	s := start(t, func(c *app.Config) { c.Upload.SessionTTL = time.Second })
	tok := s.token("alice")
	data, meta := video("clip.mp4", 2*mib, 6)
	url := s.create(tok, len(data), meta)
	eventually.Holds(t, "the upload to expire", func() bool { return s.do(http.MethodHead, url, tok, nil).status == http.StatusGone })
	wantError(t, "PATCH of an expired upload", s.patch(url, tok, 0, data), 410, "SESSION_EXPIRED")
}

// fileBytes returns n pseudo-random bytes (seeded) that begin with magic.
func fileBytes(magic string, n int, seed uint64) []byte {
	// ChaCha8's Read, not a byte at a time: under -race each byte
	// stored in a loop is an instrumented write.
	b := make([]byte, n)
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	_, _ = rand.NewChaCha8(key).Read(b) // never fails
	copy(b, magic)
	return b
}
