package app_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strings"
	"testing"

	"github.com/spoolhq/spool/internal/app"
	"github.com/spoolhq/spool/internal/upload"
)

const uploadImageOp = `mutation($file: Upload!) { uploadImage(file: $file) { id fileName mimeType mediaType fileSize url } }`

// multipartAnswer is what one GraphQL multipart request got back.
type multipartAnswer struct {
	status int
	data   struct {
		UploadImage struct {
			ID        string `json:"id"`
			FileName  string `json:"fileName"`
			MimeType  string `json:"mimeType"`
			MediaType string `json:"mediaType"`
			FileSize  int64  `json:"fileSize"`
			URL       string `json:"url"`
		} `json:"uploadImage"`
	}
	errors []gqlError
}

func (a multipartAnswer) code() string {
	if len(a.errors) == 0 {
		return ""
	}
	return a.errors[0].code()
}

// uploadImage sends one file as the GraphQL multipart request spec lays
// it out: operations, map, then the file part.
func (s *spool) uploadImage(token, fileName, contentType string, data []byte, header http.Header) multipartAnswer {
	s.t.Helper()
	body, formType := imageForm(fileName, contentType, data)
	h := http.Header{"Content-Type": {formType}}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		h[k] = v
	}
	resp, raw := send(s.t, http.MethodPost, s.url+"/graphql", bytes.NewReader(body), h)
	ans := multipartAnswer{status: resp.StatusCode}
	var res struct {
		Data   json.RawMessage `json:"data"`
		Errors []gqlError      `json:"errors"`
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		s.t.Fatalf("decoding answer (HTTP %d) %q: %v", resp.StatusCode, raw, err)
	}
	ans.errors = res.Errors
	if len(res.Errors) == 0 {
		if err := json.Unmarshal(res.Data, &ans.data); err != nil {
			s.t.Fatalf("decoding data %s: %v", res.Data, err)
		}
	}
	return ans
}

// imageForm is an uploadImage request body and its Content-Type.
func imageForm(fileName, contentType string, data []byte) ([]byte, string) {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	ops, _ := json.Marshal(map[string]any{"query": uploadImageOp, "variables": map[string]any{"file": nil}})
	_ = mw.WriteField("operations", string(ops))
	_ = mw.WriteField("map", `{"0": ["variables.file"]}`)
	part := textproto.MIMEHeader{}
	part.Set("Content-Disposition", fmt.Sprintf(`form-data; name="0"; filename=%q`, fileName))
	if contentType != "" {
		part.Set("Content-Type", contentType)
	}
	w, _ := mw.CreatePart(part)
	_, _ = w.Write(data)
	_ = mw.Close()
	return body.Bytes(), mw.FormDataContentType()
}

var preflight = http.Header{"Apollo-Require-Preflight": {"true"}}

func TestUploadImageStoresTheImage(t *testing.T) {
	s := startSpool(t, nil)
	alice := s.token("alice")
	cases := []struct {
		name, fileName, contentType string
		size                        int
	}{
		{"one chunk", "small.png", "image/png", 3000},
		// smallConfig sends files over 1 MiB in 5 MiB chunks: the whole
		// body is cut into them.
		{"several chunks", "big.png", "image/png", 7<<20 + 123},
		{"type from the name when the part has none", "untyped.png", "application/octet-stream", 2000},
	}
	var used int64
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data := fileBytes("image/png", c.size, uint64(i+1))
			ans := s.uploadImage(alice, c.fileName, c.contentType, data, preflight)
			if len(ans.errors) > 0 {
				t.Fatalf("uploadImage: HTTP %d, %+v", ans.status, ans.errors)
			}
			m := ans.data.UploadImage
			if m.FileName != c.fileName || m.MimeType != "image/png" || m.MediaType != "IMAGE" || m.FileSize != int64(c.size) {
				t.Errorf("media = %+v, want %s image/png IMAGE %d bytes", m, c.fileName, c.size)
			}
			resp, got := get(t, m.URL, nil)
			if resp.StatusCode != http.StatusOK || !bytes.Equal(got, data) {
				t.Errorf("GET %s: HTTP %d, %d bytes equal=%v; want 200 and the %d bytes sent",
					m.URL, resp.StatusCode, len(got), bytes.Equal(got, data), len(data))
			}
			used += int64(c.size)
		})
	}
	if got := s.me(alice).UsedBytes; got != used {
		t.Errorf("usedBytes = %d, want %d", got, used)
	}
}

// Every refused image leaves the quota and the media list as they were:
// a failed inline upload is cancelled, not left for the sweeper.
func TestUploadImageRefusals(t *testing.T) {
	s := startSpool(t, func(c *app.Config) {
		c.Upload.MaxInlineImageSize = 1 * upload.MiB
		c.Upload.DefaultQuota = 3 * upload.MiB
	})
	alice := s.token("alice")
	png := fileBytes("image/png", 4000, 7)
	cases := []struct {
		name        string
		token       string
		fileName    string
		contentType string
		data        []byte
		header      http.Header
		wantStatus  int
		wantCode    string
	}{
		{"no preflight header", alice, "a.png", "image/png", png, nil, http.StatusBadRequest, "PREFLIGHT_REQUIRED"},
		{"no token", "", "a.png", "image/png", png, preflight, http.StatusOK, "UNAUTHENTICATED"},
		{"bad token", "not-a-token", "a.png", "image/png", png, preflight, http.StatusOK, "UNAUTHENTICATED"},
		{"a video", alice, "v.mp4", "video/mp4", fileBytes("video/mp4", 4000, 8), preflight, http.StatusOK, "INVALID_TYPE"},
		{"not a media type", alice, "notes.txt", "text/plain", []byte("hello"), preflight, http.StatusOK, "INVALID_TYPE"},
		{"bytes not of the declared type", alice, "fake.png", "image/png", fileBytes("video/mp4", 4000, 9), preflight, http.StatusOK, "TYPE_MISMATCH"},
		{"one byte over the limit", alice, "big.png", "image/png", fileBytes("image/png", 1<<20+1, 10), preflight, http.StatusOK, "FILE_TOO_LARGE"},
		{"a body far over the limit", alice, "huge.png", "image/png", fileBytes("image/png", 3<<20, 11), preflight, http.StatusRequestEntityTooLarge, "REQUEST_TOO_LARGE"},
		{"empty file", alice, "empty.png", "image/png", nil, preflight, http.StatusOK, "BAD_USER_INPUT"},
		{"no name", alice, "", "image/png", png, preflight, http.StatusOK, "BAD_USER_INPUT"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ans := s.uploadImage(c.token, c.fileName, c.contentType, c.data, c.header)
			if ans.status != c.wantStatus || ans.code() != c.wantCode {
				t.Fatalf("got HTTP %d %s %+v, want HTTP %d %s", ans.status, ans.code(), ans.errors, c.wantStatus, c.wantCode)
			}
			if msg := ans.errors[0].Message; len(msg) < 12 {
				t.Errorf("message %q does not explain the refusal", msg)
			}
		})
	}
	if got := s.me(alice).UsedBytes; got != 0 {
		t.Errorf("usedBytes after refused images = %d, want 0", got)
	}
	var list struct {
		UserMedia struct {
			TotalCount int `json:"totalCount"`
		} `json:"userMedia"`
	}
	s.mustGQL(alice, `{ userMedia { totalCount } }`, nil, &list)
	if list.UserMedia.TotalCount != 0 {
		t.Errorf("userMedia after refused images has %d files, want 0", list.UserMedia.TotalCount)
	}
	t.Run("over quota", func(t *testing.T) {
		// 3 MiB quota: three 1 MiB images fit, with them counted a fourth
		// of any size does not.
		for i := range 3 {
			ans := s.uploadImage(alice, fmt.Sprintf("q%d.png", i), "image/png", fileBytes("image/png", 1<<20, uint64(20+i)), preflight)
			if len(ans.errors) > 0 {
				t.Fatalf("image %d: %+v", i, ans.errors)
			}
		}
		ans := s.uploadImage(alice, "q4.png", "image/png", fileBytes("image/png", 1000, 30), preflight)
		if ans.code() != "QUOTA_EXCEEDED" {
			t.Fatalf("fourth image: got %s %+v, want QUOTA_EXCEEDED", ans.code(), ans.errors)
		}
	})
}

// The preflight rule covers every GraphQL POST a cross-site form could
// send, not only multipart ones; JSON POSTs are preflighted by browsers
// and need nothing.
func TestGraphQLRequiresPreflightForSimpleContentTypes(t *testing.T) {
	s := startSpool(t, nil)
	alice := s.token("alice")
	body := `{"query":"{ me { name } }"}`
	for _, c := range []struct {
		contentType string
		header      string
		want        int
		refused     bool // by the preflight rule, not by gqlgen
	}{
		{"text/plain", "", http.StatusBadRequest, true},
		{"text/plain;charset=UTF-8", "", http.StatusBadRequest, true},
		{"application/x-www-form-urlencoded", "", http.StatusBadRequest, true},
		{"", "", http.StatusBadRequest, true},
		{"application/json", "", http.StatusOK, false},
		// Past the rule, gqlgen has no transport for text/plain.
		{"text/plain", "X-Apollo-Operation-Name", http.StatusBadRequest, false},
	} {
		t.Run(c.contentType+" "+c.header, func(t *testing.T) {
			h := http.Header{"Authorization": {"Bearer " + alice}}
			if c.contentType != "" {
				h.Set("Content-Type", c.contentType)
			}
			if c.header != "" {
				h.Set(c.header, "Me")
			}
			resp, raw := send(t, http.MethodPost, s.url+"/graphql", strings.NewReader(body), h)
			if resp.StatusCode != c.want {
				t.Fatalf("HTTP %d %s, want %d", resp.StatusCode, raw, c.want)
			}
			if got := bytes.Contains(raw, []byte("PREFLIGHT_REQUIRED")); got != c.refused {
				t.Errorf("body %s: refused by the preflight rule = %v, want %v", raw, got, c.refused)
			}
		})
	}
}

// A GraphQL request over its limit (1 MiB for JSON, the image limit for
// multipart) is refused with 413 REQUEST_TOO_LARGE whether its length is
// declared or not (chunked), and the operation it carries never runs;
// one within the limit runs either way.
func TestGraphQLBodyLimit(t *testing.T) {
	s := startSpool(t, func(c *app.Config) { c.Upload.MaxInlineImageSize = 1 * upload.MiB })
	alice := s.token("alice")
	// initBatch and uploadImage take quota when they run: usedBytes tells
	// whether they did.
	query := `mutation { initBatch(input: {files: [{fileName: "a.png", size: 1000, mimeType: "image/png"}]}) { id } }`
	jsonBody := func(size int) ([]byte, string) {
		padded := "# " + strings.Repeat("x", size) + "\n" + query
		b, _ := json.Marshal(map[string]any{"query": padded})
		return b, "application/json"
	}
	image := func(size int) ([]byte, string) {
		return imageForm("a.png", "image/png", fileBytes("image/png", size, 40))
	}
	for _, c := range []struct {
		name     string
		body     func(int) ([]byte, string)
		size     int
		streamed bool
		refused  bool
	}{
		{"JSON just under 1 MiB", jsonBody, 1<<20 - 400, false, false},
		{"JSON just under 1 MiB, streamed", jsonBody, 1<<20 - 400, true, false},
		{"JSON over 1 MiB, declared", jsonBody, 1 << 20, false, true},
		{"JSON over 1 MiB, streamed", jsonBody, 1 << 20, true, true},
		{"multipart under the limit, streamed", image, 4000, true, false},
		{"multipart over the limit, declared", image, 2 << 20, false, true},
		{"multipart over the limit, streamed", image, 2 << 20, true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := s.me(alice).UsedBytes
			body, contentType := c.body(c.size)
			var r io.Reader = bytes.NewReader(body)
			if c.streamed {
				r = io.MultiReader(r) // hides the length: sent chunked
			}
			resp, raw := send(t, http.MethodPost, s.url+"/graphql", r, http.Header{
				"Content-Type": {contentType}, "Authorization": {"Bearer " + alice}, "Apollo-Require-Preflight": {"true"}})
			ran := s.me(alice).UsedBytes > before
			if ran == c.refused {
				t.Fatalf("%d-byte body: HTTP %d %.200s, operation ran %v; want refused %v", len(body), resp.StatusCode, raw, ran, c.refused)
			}
			if !c.refused {
				return
			}
			var res struct{ Errors []gqlError }
			_ = json.Unmarshal(raw, &res)
			if resp.StatusCode != http.StatusRequestEntityTooLarge || len(res.Errors) != 1 || res.Errors[0].code() != "REQUEST_TOO_LARGE" {
				t.Fatalf("%d-byte body: HTTP %d %.200s, want 413 and one REQUEST_TOO_LARGE error", len(body), resp.StatusCode, raw)
			}
			if msg := res.Errors[0].Message; !strings.Contains(msg, "bytes taken here") && !strings.Contains(msg, "are taken here") {
				t.Errorf("message %q does not say how much is taken", msg)
			}
		})
	}
}
