package app_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
)

// Operations shared by the edge-case tests. Each selects little, so a
// failure is about the operation, not about a field.
const (
	opUpload     = `query($id: ID!) { upload(id: $id) { id status } }`
	opBatch      = `query($id: ID!) { batch(id: $id) { id } }`
	opNode       = `query($id: ID!) { node(id: $id) { id } }`
	opRequestURL = `mutation($id: ID!, $i: Int!) { requestChunkUrl(uploadId: $id, chunkIndex: $i) { chunkIndex url offset size } }`
	opConfirm    = `mutation($id: ID!, $i: Int!, $size: Int64!, $sum: String) {
		confirmChunk(uploadId: $id, chunkIndex: $i, size: $size, checksum: $sum) { uploadedChunks uploadedBytes } }`
	opComplete    = `mutation($id: ID!) { complete(uploadId: $id) { id } }`
	opRetry       = `mutation($id: ID!) { retry(uploadId: $id) { chunkIndex } }`
	opCancel      = `mutation($id: ID!) { cancel(uploadId: $id) { id status } }`
	opDeleteMedia = `mutation($id: ID!) { deleteMedia(id: $id) }`
	opMe          = `{ me { name quotaBytes usedBytes } }`
)

// with returns a copy of s that reports to t, so subtests can use the
// helpers (which call t.Fatal) from their own goroutine.
func (s *spool) with(t *testing.T) *spool {
	c := *s
	c.t = t
	return &c
}

// file is one FileInput.
func file(name, mimeType string, size int64) map[string]any {
	return map[string]any{"fileName": name, "size": size, "mimeType": mimeType}
}

// vars builds GraphQL variables from key, value pairs.
func vars(kv ...any) map[string]any {
	m := map[string]any{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

type user struct {
	Name       string `json:"name"`
	QuotaBytes int64  `json:"quotaBytes"`
	UsedBytes  int64  `json:"usedBytes"`
}

func (s *spool) me(token string) user {
	s.t.Helper()
	var out struct{ Me user }
	s.mustGQL(token, opMe, nil, &out)
	return out.Me
}

// planOne starts a batch of one file and returns its upload.
func (s *spool) planOne(token string, f map[string]any) session {
	s.t.Helper()
	b := s.initBatch(token, f)
	if len(b.Uploads) != 1 {
		s.t.Fatalf("got %d uploads, want 1", len(b.Uploads))
	}
	return b.Uploads[0]
}

// uploadFile uploads data as a new file, sending every chunk, and
// completes it.
func (s *spool) uploadFile(token, name, mimeType string, data []byte) media {
	s.t.Helper()
	u := s.planOne(token, file(name, mimeType, int64(len(data))))
	if len(u.ChunkURLs) != u.TotalChunks {
		s.t.Fatalf("got %d chunk URLs for %d chunks", len(u.ChunkURLs), u.TotalChunks)
	}
	for _, c := range u.ChunkURLs {
		sendChunk(s.t, c, data, http.StatusOK)
	}
	return s.complete(token, u.ID)
}

// planeAnswer is the data plane's JSON answer: progress, or an error.
type planeAnswer struct {
	Status int
	Header http.Header
	Error  struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	progress
}

// do sends one request to the data plane and decodes its JSON answer.
func do(t *testing.T, method, u string, body []byte, header http.Header) planeAnswer {
	t.Helper()
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	var a planeAnswer
	if method != http.MethodHead && resp.ContentLength != 0 {
		if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
			t.Fatalf("%s %s: decoding answer (HTTP %d): %v", method, u, resp.StatusCode, err)
		}
	}
	a.Status, a.Header = resp.StatusCode, resp.Header
	return a
}

// chunkOf returns the bytes of chunk c of data.
func chunkOf(c chunkURL, data []byte) []byte { return data[c.Offset : c.Offset+c.Size] }

// withQuery returns u with the query parameter key set to value, or
// removed when value is "".
func withQuery(t *testing.T, u, key, value string) string {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	q := p.Query()
	if value == "" {
		q.Del(key)
	} else {
		q.Set(key, value)
	}
	p.RawQuery = q.Encode()
	return p.String()
}

// queryParam returns one query parameter of u.
func queryParam(t *testing.T, u, key string) string {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return p.Query().Get(key)
}

// flipChar changes one character of s in the middle, keeping it in the
// base64url alphabet.
func flipChar(s string) string {
	if s == "" {
		return "x"
	}
	i := len(s) / 2
	c := byte('A')
	if s[i] == 'A' {
		c = 'B'
	}
	return s[:i] + string(c) + s[i+1:]
}

// bearer is an Authorization header for token.
func bearer(token string) http.Header {
	return http.Header{"Authorization": {"Bearer " + token}}
}

// subscriptionError reads messages for id until the subscription fails,
// and returns the first GraphQL error. gqlgen reports a failed
// subscription either as an "error" message or as a "next" carrying
// errors; both are accepted, a "next" with data is not.
func subscriptionError(ws *wsClient, id string) gqlError {
	ws.t.Helper()
	m := ws.next(id)
	var errs []gqlError
	switch m.Type {
	case "error":
		if err := json.Unmarshal(m.Payload, &errs); err != nil {
			ws.t.Fatalf("decoding error payload %s: %v", m.Payload, err)
		}
	case "next":
		var p struct {
			Data   json.RawMessage `json:"data"`
			Errors []gqlError      `json:"errors"`
		}
		if err := json.Unmarshal(m.Payload, &p); err != nil {
			ws.t.Fatalf("decoding next payload %s: %v", m.Payload, err)
		}
		if len(p.Errors) == 0 {
			ws.t.Fatalf("subscription %s: got data %s, want an error", id, p.Data)
		}
		errs = p.Errors
	default:
		ws.t.Fatalf("subscription %s: got %s %s, want an error", id, m.Type, m.Payload)
	}
	if len(errs) == 0 {
		ws.t.Fatalf("subscription %s: empty error payload %s", id, m.Payload)
	}
	return errs[0]
}

// stop ends a subscription from the client side and waits for the
// server's complete, so collect's goroutine ends with the test.
func (c *wsClient) stop(id string) {
	c.t.Helper()
	if err := c.write(map[string]string{"id": id, "type": "complete"}); err != nil {
		c.t.Fatalf("stopping %s: %v", id, err)
	}
}
