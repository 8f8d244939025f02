package tus_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/spoolhq/spool/internal/app"
	"github.com/spoolhq/spool/internal/app/apptest"
)

// server is a spool under test, reached over HTTP as tus clients reach it.
type server struct {
	t   testing.TB
	url string
	srv *apptest.Server
}

// start runs spool (SINGLE up to 1 MiB, 5 MiB chunks); change edits its
// config first.
func start(t testing.TB, change func(*app.Config)) *server {
	t.Helper()
	var log *slog.Logger
	if os.Getenv("TUS_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	srv := apptest.StartLogged(t, log, change)
	return &server{t: t, url: srv.URL, srv: srv}
}

func (s *server) token(user string) string { s.t.Helper(); return s.srv.Token(s.t, user) }

// answer is a response read whole.
type answer struct {
	status int
	header http.Header
	body   string
}

func (a answer) String() string { return fmt.Sprintf("%d %q", a.status, a.body) }

// do sends one request; a token of "" sends no Authorization, and
// headers are name, value pairs. Tus-Resumable is sent unless headers
// give it ("" removes it).
func (s *server) do(method, url, token string, body []byte, headers ...string) answer {
	s.t.Helper()
	if !strings.HasPrefix(url, "http") {
		url = s.url + url
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Tus-Resumable", "1.0.0")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("%s %s: reading the answer: %v", method, url, err)
	}
	return answer{resp.StatusCode, resp.Header, string(b)}
}

// metadata writes an Upload-Metadata header from name, value pairs, keys
// in order.
func metadata(pairs ...string) string {
	var out []string
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, pairs[i]+" "+base64.StdEncoding.EncodeToString([]byte(pairs[i+1])))
	}
	return strings.Join(out, ",")
}

// create POSTs a tus upload of size bytes with the given metadata and
// returns its URL, failing unless it is created.
func (s *server) create(token string, size int, meta string, headers ...string) string {
	s.t.Helper()
	a := s.do(http.MethodPost, "/files/", token, nil, append([]string{
		"Upload-Length", strconv.Itoa(size), "Upload-Metadata", meta}, headers...)...)
	if a.status != http.StatusCreated {
		s.t.Fatalf("POST /files/: got %v, want 201", a)
	}
	loc := a.header.Get("Location")
	if !strings.HasPrefix(loc, s.url+"/files/") {
		s.t.Fatalf("POST /files/: Location %q, want a URL under %s/files/", loc, s.url)
	}
	return loc
}

// patch sends data at offset.
func (s *server) patch(url, token string, offset int, data []byte, headers ...string) answer {
	s.t.Helper()
	return s.do(http.MethodPatch, url, token, data, append([]string{
		"Upload-Offset", strconv.Itoa(offset), "Content-Type", "application/offset+octet-stream"}, headers...)...)
}

// offset HEADs url and returns its Upload-Offset, failing unless 200.
func (s *server) offset(url, token string) int {
	s.t.Helper()
	a := s.do(http.MethodHead, url, token, nil)
	if a.status != http.StatusOK {
		s.t.Fatalf("HEAD %s: got %v, want 200", url, a)
	}
	n, err := strconv.Atoi(a.header.Get("Upload-Offset"))
	if err != nil {
		s.t.Fatalf("HEAD %s: Upload-Offset %q", url, a.header.Get("Upload-Offset"))
	}
	return n
}

// wantError checks a tus error answer: its status and the code beginning
// its body ("CODE: message"); code "" checks only the status (HEAD
// answers have no body).
func wantError(t testing.TB, what string, a answer, status int, code string) {
	t.Helper()
	if a.status != status || (code != "" && !strings.HasPrefix(a.body, code+": ")) {
		t.Errorf("%s: got %v, want %d with %s", what, a, status, code)
	}
}

type gqlError struct {
	Message    string         `json:"message"`
	Extensions map[string]any `json:"extensions"`
}

// gql runs one GraphQL operation and decodes its data into out, failing
// on errors.
func (s *server) gql(token, query string, vars map[string]any, out any) {
	s.t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequest(http.MethodPost, s.url+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("POST /graphql: %v", err)
	}
	defer resp.Body.Close()
	var res struct {
		Data   json.RawMessage `json:"data"`
		Errors []gqlError      `json:"errors"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		s.t.Fatalf("decoding GraphQL answer (HTTP %d): %v", resp.StatusCode, err)
	}
	if len(res.Errors) > 0 {
		s.t.Fatalf("GraphQL errors: %+v", res.Errors)
	}
	if err := json.Unmarshal(res.Data, out); err != nil {
		s.t.Fatalf("decoding data %s: %v", res.Data, err)
	}
}

type mediaFile struct {
	ID       string `json:"id"`
	FileName string `json:"fileName"`
	MimeType string `json:"mimeType"`
	FileSize int64  `json:"fileSize"`
	URL      string `json:"url"`
	Status   string `json:"status"`
}

// media returns the caller's media file id through GraphQL (node).
func (s *server) media(token, id string) mediaFile {
	s.t.Helper()
	var out struct{ Node *mediaFile }
	s.gql(token, `query($id: ID!) { node(id: $id) { ... on MediaFile { id fileName mimeType fileSize url status } } }`,
		map[string]any{"id": id}, &out)
	if out.Node == nil {
		s.t.Fatalf("media %s: GraphQL has no such node", id)
	}
	return *out.Node
}

// download GETs the media's URL and checks it is want, byte for byte.
func (s *server) download(m mediaFile, want []byte) {
	s.t.Helper()
	got := apptest.Get(s.t, m.URL)
	if !bytes.Equal(got, want) {
		s.t.Fatalf("media %s: downloaded %d bytes, not the %d uploaded (first difference at %d)", m.ID, len(got), len(want), firstDiff(got, want))
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// headerList splits a comma-separated header into its sorted items.
func headerList(v string) []string {
	var out []string
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	sort.Strings(out)
	return out
}
