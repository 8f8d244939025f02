package app_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// A number beyond int64, sent anywhere a client sends one, is refused
// with a message that says what is wrong in words, never Go's strconv
// text; nothing runs.
func TestNumbersBeyondInt64(t *testing.T) {
	t.Parallel()
	s := startSpool(t, nil)
	tok := s.token("alice")
	up := s.planOne(tok, file("v.mp4", "video/mp4", 6<<20))
	used := s.me(tok).UsedBytes
	const (
		huge    = "99999999999999999999"
		tooBig  = "is too large: at most 9223372036854775807"
		tooSmol = "is too small: at least -9223372036854775808"
	)
	inInput := func(size any) map[string]any {
		return vars("input", map[string]any{"files": []any{map[string]any{"fileName": "a.png", "mimeType": "image/png", "size": size}}})
	}
	cases := []struct {
		name, query string
		vars        map[string]any
		want        string
	}{
		{"variable", opConfirm, vars("id", up.ID, "i", 0, "size", json.Number(huge)), "size " + huge + " " + tooBig},
		{"negative variable", opConfirm, vars("id", up.ID, "i", 0, "size", json.Number("-"+huge)), "size -" + huge + " " + tooSmol},
		{"variable as a string", opConfirm, vars("id", up.ID, "i", 0, "size", huge), "size " + huge + " " + tooBig},
		{"variable with an exponent", opConfirm, vars("id", up.ID, "i", 0, "size", json.Number("1e30")), `size "1e30" is not a whole number`},
		{"variable in an input object", initBatchOp, inInput(json.Number(huge)), "size " + huge + " " + tooBig},
		{"variable not a number", initBatchOp, inInput("big"), `size "big" is not a whole number`},
		{"literal", `mutation($id: ID!) { confirmChunk(uploadId: $id, chunkIndex: 0, size: ` + huge + `) { uploadedChunks } }`,
			vars("id", up.ID), "Int64 value " + huge + " " + tooBig},
		{"negative literal", `mutation($id: ID!) { confirmChunk(uploadId: $id, chunkIndex: 0, size: -` + huge + `) { uploadedChunks } }`,
			vars("id", up.ID), "Int64 value -" + huge + " " + tooSmol},
		{"literal in an input object", `mutation { initBatch(input: {files: [{fileName: "a.png", size: ` + huge + `, mimeType: "image/png"}]}) { id } }`,
			nil, "Int64 value " + huge + " " + tooBig},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			errs := s.with(t).gql(tok, c.query, c.vars, nil)
			if len(errs) == 0 {
				t.Fatal("got success, want BAD_USER_INPUT")
			}
			if got := errs[0].code(); got != "BAD_USER_INPUT" {
				t.Errorf("code = %s (%q), want BAD_USER_INPUT", got, errs[0].Message)
			}
			if msg := errs[0].Message; !strings.Contains(msg, c.want) || strings.Contains(msg, "strconv") {
				t.Errorf("message = %q, want it to say %q, in words", msg, c.want)
			}
		})
	}
	if got := s.me(tok).UsedBytes; got != used {
		t.Errorf("usedBytes = %d after refused numbers, want %d", got, used)
	}
	if got := s.uploadSession(tok, up.ID).Progress.UploadedChunks; got != 0 {
		t.Errorf("uploadedChunks = %d after refused numbers, want 0", got)
	}

	// Headers: a Content-Range position beyond int64 ...
	for _, cr := range []string{"bytes 0-5242879/" + huge, "bytes 0-" + huge + "/*", "bytes */" + huge} {
		a := do(t, http.MethodPut, s.url+"/uploads/"+up.ID, make([]byte, 16), http.Header{
			"Authorization": {"Bearer " + tok}, "Content-Range": {cr}})
		if a.Status != http.StatusRequestedRangeNotSatisfiable || a.Error.Code != "INVALID_CHUNK" ||
			!strings.Contains(a.Error.Message, huge+`" `+tooBig) || strings.Contains(a.Error.Message, "strconv") {
			t.Errorf("Content-Range %q: got %d %s %q, want 416 INVALID_CHUNK saying it %s", cr, a.Status, a.Error.Code, a.Error.Message, tooBig)
		}
	}
	// ... and a Content-Length beyond int64, which Go's server refuses
	// before spool sees the request.
	for _, path := range []string{"/graphql", chunkPath(t, up.ChunkURLs[0].URL)} {
		status, body := rawRequest(t, s.url, "PUT "+path+" HTTP/1.1\r\nHost: spool\r\nContent-Length: "+huge+"\r\n\r\n")
		if status != http.StatusBadRequest || strings.Contains(body, "strconv") {
			t.Errorf("Content-Length %s to %s: got %d %q, want 400 without strconv's text", huge, path, status, body)
		}
	}
}

// chunkPath is the path and query of a signed chunk URL.
func chunkPath(t *testing.T, u string) string {
	t.Helper()
	parsed, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return parsed.RequestURI()
}

// rawRequest writes request as is to the server at base (http://host:port)
// and returns the answer's status and body: for headers Go's client
// would not send.
func rawRequest(t *testing.T, base, request string) (int, string) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer to %q: %v", request, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}
