package app_test

import (
	"bytes"
	"crypto/md5"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/spoolhq/spool/internal/app"
	"github.com/spoolhq/spool/internal/eventually"
	"github.com/spoolhq/spool/internal/upload"
)

// These tests provoke every error code of the GraphQL API and the data
// plane over the real server, the way a client meets them.

// rawGQL runs an operation with exactly the given Authorization header
// value (none if empty) and returns its errors.
func rawGQL(t *testing.T, s *spool, authorization, query string, vs map[string]any) []gqlError {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vs})
	req, _ := http.NewRequest(http.MethodPost, s.url+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST /graphql: %v", err)
	}
	defer resp.Body.Close()
	var res struct {
		Errors []gqlError `json:"errors"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		t.Fatalf("decoding GraphQL answer (HTTP %d): %v", resp.StatusCode, err)
	}
	return res.Errors
}

// craftToken signs claims for subject with HS256 and secret, as
// auth.Issuer does, but with any issuer and expiry.
func craftToken(t *testing.T, secret, issuer, subject string, expires time.Time) string {
	t.Helper()
	claims := jwt.RegisteredClaims{
		Issuer: issuer, Subject: subject,
		IssuedAt:  jwt.NewNumericDate(expires.Add(-time.Hour)),
		ExpiresAt: jwt.NewNumericDate(expires),
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestUnauthenticated(t *testing.T) {
	t.Parallel()
	s := startSpool(t, nil)
	alice := s.token("alice")
	own := s.planOne(alice, file("a.png", "image/png", 1000))
	now := time.Now()

	// A token crafted like the bad ones below but valid is accepted, so
	// each refusal is about the one thing that differs.
	if got := s.me(craftToken(t, testSecret, "spool", "alice", now.Add(time.Hour))).Name; got != "alice" {
		t.Fatalf("crafted valid token: got user %q, want alice", got)
	}
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.RegisteredClaims{
		Issuer: "spool", Subject: "alice", ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
	}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	// says is what the client is told: why its token was refused.
	headers := []struct{ name, authorization, says string }{
		{"no token", "", "send a bearer token"},
		{"not a JWT", "Bearer not-a-jwt", "it is malformed"},
		{"empty bearer", "Bearer ", `must be "Bearer " and the token`},
		{"expired", "Bearer " + craftToken(t, testSecret, "spool", "alice", now.Add(-time.Minute)), "refused: it has expired"},
		{"another secret", "Bearer " + craftToken(t, "another-secret-0123456789abcdef0123", "spool", "alice", now.Add(time.Hour)), "made for another server"},
		{"another issuer", "Bearer " + craftToken(t, testSecret, "elsewhere", "alice", now.Add(time.Hour)), "its issuer is not one"},
		{"alg none", "Bearer " + none, "its signature does not verify"},
		{"truncated signature", "Bearer " + alice[:len(alice)-4], "the bearer token was refused: "},
		{"Basic scheme", "Basic " + alice, `must be "Bearer " and the token`},
		{"no scheme", alice, `must be "Bearer " and the token`},
	}
	ops := []struct {
		name, query string
		vars        map[string]any
	}{
		{"me", opMe, nil},
		{"initBatch", initBatchOp, vars("input", map[string]any{"files": []any{file("b.png", "image/png", 1000)}})},
		{"upload of a real id", opUpload, vars("id", own.ID)},
		{"requestChunkUrl", opRequestURL, vars("id", own.ID, "i", 0)},
		{"cancel", opCancel, vars("id", own.ID)},
		{"userMedia", `{ userMedia(first: 5) { totalCount } }`, nil},
	}
	for _, h := range headers {
		for _, op := range ops {
			errs := rawGQL(t, s, h.authorization, op.query, op.vars)
			if len(errs) == 0 {
				t.Errorf("%s, %s: got success, want UNAUTHENTICATED", h.name, op.name)
				continue
			}
			if got := errs[0].code(); got != "UNAUTHENTICATED" {
				t.Errorf("%s, %s: got code %s (%q), want UNAUTHENTICATED", h.name, op.name, got, errs[0].Message)
			}
			if !strings.Contains(errs[0].Message, h.says) {
				t.Errorf("%s, %s: got %q, want it to say %q", h.name, op.name, errs[0].Message, h.says)
			}
		}
		// The routes that take a bearer token outside GraphQL say the same.
		header := http.Header{"Content-Range": {"bytes */1000"}}
		tus := http.Header{"Tus-Resumable": {"1.0.0"}, "Upload-Length": {"1000"}}
		if h.authorization != "" {
			header.Set("Authorization", h.authorization)
			tus.Set("Authorization", h.authorization)
		}
		got := do(t, http.MethodPut, s.url+"/uploads/"+own.ID, nil, header)
		if got.Status != http.StatusUnauthorized || got.Error.Code != "UNAUTHENTICATED" || !strings.Contains(got.Error.Message, h.says) {
			t.Errorf("%s, PUT /uploads/{id}: got %d %s %q, want 401 UNAUTHENTICATED saying %q", h.name, got.Status, got.Error.Code, got.Error.Message, h.says)
		}
		resp, body := send(t, http.MethodPost, s.url+"/files/", nil, tus)
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), h.says) {
			t.Errorf("%s, tus POST: got %d %q, want 401 saying %q", h.name, resp.StatusCode, body, h.says)
		}
	}
	// Nothing the anonymous calls did reached alice's upload.
	if got := s.uploadSession(alice, own.ID).Status; got != "INITIALIZED" {
		t.Errorf("alice's upload after anonymous calls: got %s, want INITIALIZED", got)
	}
}

func TestNotFound(t *testing.T) {
	t.Parallel()
	s := startSpool(t, nil)
	alice, bob := s.token("alice"), s.token("bob")
	video := fileBytes("video/mp4", 6<<20, 3) // chunks of 5 and 1 MiB
	up := s.planOne(alice, file("v.mp4", "video/mp4", int64(len(video))))
	sendChunk(t, up.ChunkURLs[0], video, http.StatusOK)
	m := s.uploadFile(alice, "p.png", "image/png", fileBytes("image/png", 2000, 4))
	s.me(bob) // bob exists, with nothing of his own

	const (
		unknownUpload = "upl_01JZZZZZZZZZZZZZZZZZZZZZZZ"
		unknownBatch  = "bat_01JZZZZZZZZZZZZZZZZZZZZZZZ"
		unknownMedia  = "med_01JZZZZZZZZZZZZZZZZZZZZZZZ"
	)
	ops := []struct {
		name, query string
		idVar       string
		real, fake  string
		extra       map[string]any
	}{
		{"upload", opUpload, "id", up.ID, unknownUpload, nil},
		{"requestChunkUrl", opRequestURL, "id", up.ID, unknownUpload, vars("i", 1)},
		{"confirmChunk", opConfirm, "id", up.ID, unknownUpload, vars("i", 0, "size", 5<<20)},
		{"complete", opComplete, "id", up.ID, unknownUpload, nil},
		{"retry", opRetry, "id", up.ID, unknownUpload, nil},
		{"cancel", opCancel, "id", up.ID, unknownUpload, nil},
		{"batch", opBatch, "id", up.BatchID, unknownBatch, nil},
		{"node of media", opNode, "id", m.ID, unknownMedia, nil},
		{"node of an upload id", opNode, "id", up.ID, unknownUpload, nil},
		{"deleteMedia", opDeleteMedia, "id", m.ID, unknownMedia, nil},
	}
	for _, op := range ops {
		t.Run(op.name, func(t *testing.T) {
			s := s.with(t)
			args := func(id string) map[string]any {
				v := vars(op.idVar, id)
				for k, x := range op.extra {
					v[k] = x
				}
				return v
			}
			unknown := s.wantCode(alice, op.query, args(op.fake), "NOT_FOUND")
			foreign := s.wantCode(bob, op.query, args(op.real), "NOT_FOUND")
			// Someone else's id reads exactly like a missing one, so ids
			// cannot be probed.
			if got, want := foreign.Message, strings.ReplaceAll(unknown.Message, op.fake, op.real); got != want {
				t.Errorf("message for another's id: got %q, want %q (as for a missing one)", got, want)
			}
		})
	}
	t.Run("subscriptions", func(t *testing.T) {
		s := s.with(t)
		ws := s.dialWS(bob, nil)
		subs := []struct{ id, query, arg string }{
			{"up-foreign", `subscription($id: ID!) { uploadProgress(uploadId: $id) { status } }`, up.ID},
			{"up-unknown", `subscription($id: ID!) { uploadProgress(uploadId: $id) { status } }`, unknownUpload},
			{"batch-foreign", `subscription($id: ID!) { batchProgress(batchId: $id) { status } }`, up.BatchID},
			{"batch-unknown", `subscription($id: ID!) { batchProgress(batchId: $id) { status } }`, unknownBatch},
		}
		for _, sub := range subs {
			ws.subscribe(sub.id, sub.query, vars("id", sub.arg))
			if got := subscriptionError(ws, sub.id).code(); got != "NOT_FOUND" {
				t.Errorf("%s: got code %s, want NOT_FOUND", sub.id, got)
			}
		}
	})

	// bob's attempts changed nothing of alice's.
	after := s.uploadSession(alice, up.ID)
	if after.Status != "UPLOADING" || after.Progress.UploadedChunks != 1 {
		t.Errorf("alice's upload after bob's calls: got %s with %d chunks, want UPLOADING with 1", after.Status, after.Progress.UploadedChunks)
	}
	var node struct{ Node *struct{ ID string } }
	s.mustGQL(alice, opNode, vars("id", m.ID), &node)
	if node.Node == nil || node.Node.ID != m.ID {
		t.Errorf("alice's media after bob's deleteMedia: got %+v, want it still there", node.Node)
	}
}

func TestBadUserInput(t *testing.T) {
	t.Parallel()
	s := startSpool(t, nil)
	tok := s.token("alice")
	up := s.planOne(tok, file("v.mp4", "video/mp4", 6<<20))
	init := func(f ...map[string]any) map[string]any {
		return vars("input", map[string]any{"files": f})
	}
	with := func(f map[string]any, kv ...any) map[string]any {
		for k, v := range vars(kv...) {
			f[k] = v
		}
		return f
	}
	cases := []struct {
		name, query string
		vars        map[string]any
	}{
		{"size 0", initBatchOp, init(file("a.png", "image/png", 0))},
		{"size -1", initBatchOp, init(file("a.png", "image/png", -1))},
		{"no files", initBatchOp, vars("input", map[string]any{"files": []any{}})},
		{"empty file name", initBatchOp, init(file(" ", "image/png", 10))},
		{"sha256 too short", initBatchOp, init(with(file("a.png", "image/png", 10), "sha256", "abc123"))},
		{"sha256 not hex", initBatchOp, init(with(file("a.png", "image/png", 10), "sha256", strings.Repeat("zz", 32)))},
		{"empty fingerprint", initBatchOp, init(with(file("a.png", "image/png", 10), "fingerprint", ""))},
		{"fingerprint too long", initBatchOp, init(with(file("a.png", "image/png", 10), "fingerprint", strings.Repeat("f", 513)))},
		{"channelId too long", initBatchOp, vars("input", map[string]any{"files": []any{file("a.png", "image/png", 10)}, "channelId": strings.Repeat("c", 257)})},
		{"nodes with too many ids", `query($ids: [ID!]!) { nodes(ids: $ids) { id } }`, vars("ids", manyIDs(101))},
		{"negative duration", initBatchOp, init(with(file("a.mp4", "video/mp4", 10), "durationSeconds", -5))},
		{"confirmChunk wrong size", opConfirm, vars("id", up.ID, "i", 0, "size", 5<<20-1)},
		{"confirmChunk last chunk full size", opConfirm, vars("id", up.ID, "i", 1, "size", 5<<20)},
		{"confirmChunk checksum without algorithm", opConfirm, vars("id", up.ID, "i", 0, "size", 5<<20, "sum", "deadbeef")},
		{"confirmChunk unknown algorithm", opConfirm, vars("id", up.ID, "i", 0, "size", 5<<20, "sum", "md4:deadbeef")},
		{"confirmChunk crc32c of wrong length", opConfirm, vars("id", up.ID, "i", 0, "size", 5<<20, "sum", "crc32c:deadbeefdead")},
		{"userMedia first 1000", `{ userMedia(first: 1000) { totalCount } }`, nil},
		{"userMedia last -1", `{ userMedia(last: -1) { totalCount } }`, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s.with(t).wantCode(tok, c.query, c.vars, "BAD_USER_INPUT")
		})
	}
	if got := s.me(tok).UsedBytes; got != 6<<20 {
		t.Errorf("usedBytes after refused batches: got %d, want %d (only the first upload)", got, 6<<20)
	}

	// Requests gqlgen itself refuses still carry a code a client can
	// switch on, and never INTERNAL.
	malformed := []struct {
		name, query string
		vars        map[string]any
		want        string
	}{
		{"syntax error", `{ me { name `, nil, "GRAPHQL_PARSE_FAILED"},
		{"unknown field", `{ me { shoeSize } }`, nil, "GRAPHQL_VALIDATION_FAILED"},
		{"unknown argument", `{ userMedia(page: 2) { totalCount } }`, nil, "GRAPHQL_VALIDATION_FAILED"},
		{"variable of the wrong type", opConfirm, vars("id", up.ID, "i", "zero", "size", 1), "GRAPHQL_VALIDATION_FAILED"},
		{"Int64 out of range", opConfirm, vars("id", up.ID, "i", 0, "size", json.Number("99999999999999999999")), "BAD_USER_INPUT"},
		{"Int64 not a number", initBatchOp, vars("input", map[string]any{"files": []any{
			map[string]any{"fileName": "a.png", "mimeType": "image/png", "size": "big"}}}), "BAD_USER_INPUT"},
		{"malformed cursor", `{ userMedia(first: 2, after: "garbage") { totalCount } }`, nil, "BAD_USER_INPUT"},
		{"missing variable", opUpload, nil, "GRAPHQL_VALIDATION_FAILED"},
	}
	for _, c := range malformed {
		errs := s.gql(tok, c.query, c.vars, nil)
		if len(errs) == 0 {
			t.Errorf("%s: got success, want an error", c.name)
			continue
		}
		if got := errs[0].code(); got != c.want {
			t.Errorf("%s: got code %q (%q), want %s", c.name, got, errs[0].Message, c.want)
		}
	}
}

func TestInitBatchLimits(t *testing.T) {
	t.Parallel()
	s := startSpool(t, nil)
	tok := s.token("alice")
	init := func(f ...map[string]any) map[string]any {
		return vars("input", map[string]any{"files": f})
	}
	six := make([]map[string]any, 6)
	for i := range six {
		six[i] = file("f.png", "image/png", 100)
	}
	cases := []struct {
		name  string
		vars  map[string]any
		code  string
		where string // a word the message must contain, so a person knows what to fix
	}{
		{"PDF", init(file("doc.pdf", "application/pdf", 100)), "INVALID_TYPE", "application/pdf"},
		{"HTML", init(file("page.html", "text/html", 100)), "INVALID_TYPE", "text/html"},
		{"no MIME type", init(file("x", "", 100)), "INVALID_TYPE", "not accepted"},
		{"image over 50 MiB", init(file("big.png", "image/png", 50*upload.MiB+1)), "FILE_TOO_LARGE", "52428800"},
		{"video over 5 GiB", init(file("big.mp4", "video/mp4", 5*upload.GiB+1)), "FILE_TOO_LARGE", "5368709120"},
		{"6 files", init(six...), "BATCH_TOO_LARGE", "5"},
		{"one bad file refuses the batch", init(file("ok.png", "image/png", 100), file("bad.pdf", "application/pdf", 100)), "INVALID_TYPE", "file 2"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := s.with(t).wantCode(tok, initBatchOp, c.vars, c.code)
			if !strings.Contains(e.Message, c.where) {
				t.Errorf("message %q does not mention %q", e.Message, c.where)
			}
		})
	}
	if got := s.me(tok).UsedBytes; got != 0 {
		t.Errorf("usedBytes after refused batches: got %d, want 0", got)
	}

	// The limits themselves are allowed: 5 files, an image of exactly
	// 50 MiB and a video of exactly 5 GiB (no bytes are sent).
	five := make([]map[string]any, 5)
	for i := range five {
		five[i] = file("f.png", "image/png", 100)
	}
	if got := len(s.initBatch(tok, five...).Uploads); got != 5 {
		t.Errorf("5 files: got %d uploads", got)
	}
	s.planOne(tok, file("edge.png", "image/png", 50*upload.MiB))

	// 5 GiB round-trips exactly as a JSON number (not a float, not a
	// string): no 32-bit or float64-rounding client path loses it.
	var raw struct {
		InitBatch struct {
			Uploads []struct {
				ID          string          `json:"id"`
				TotalSize   json.RawMessage `json:"totalSize"`
				ChunkSize   json.RawMessage `json:"chunkSize"`
				TotalChunks int             `json:"totalChunks"`
				ChunkURLs   []struct {
					Offset json.RawMessage `json:"offset"`
				} `json:"chunkUrls"`
				Progress struct {
					TotalBytes json.RawMessage `json:"totalBytes"`
				} `json:"progress"`
			} `json:"uploads"`
		} `json:"initBatch"`
	}
	s.mustGQL(tok, initBatchOp, init(file("huge.mp4", "video/mp4", 5368709120)), &raw)
	huge := raw.InitBatch.Uploads[0]
	if got := string(huge.TotalSize); got != "5368709120" {
		t.Errorf("totalSize: got %s, want 5368709120", got)
	}
	if got := string(huge.Progress.TotalBytes); got != "5368709120" {
		t.Errorf("progress.totalBytes: got %s, want 5368709120", got)
	}
	if got, want := huge.TotalChunks, 1024; got != want { // 5 GiB in 5 MiB chunks
		t.Errorf("totalChunks: got %d, want %d", got, want)
	}
	if n := len(huge.ChunkURLs); n == 0 || string(huge.ChunkURLs[n-1].Offset) != "519045120" { // 99 × 5 MiB
		t.Errorf("chunk URLs: got %d, the last at offset %s; want 100 (the cap), the last at 519045120", n, huge.ChunkURLs[n-1].Offset)
	}
	var u struct {
		Upload struct{ TotalSize json.RawMessage }
	}
	s.mustGQL(tok, `query($id: ID!) { upload(id: $id) { totalSize } }`, vars("id", huge.ID), &u)
	if got := string(u.Upload.TotalSize); got != "5368709120" {
		t.Errorf("upload(id).totalSize: got %s, want 5368709120", got)
	}
	var cancelled struct{ Cancel struct{ Status string } }
	s.mustGQL(tok, opCancel, vars("id", huge.ID), &cancelled)
	if got := cancelled.Cancel.Status; got != "CANCELLED" {
		t.Errorf("cancel of the 5 GiB upload: got %s, want CANCELLED", got)
	}
	if got, want := s.me(tok).UsedBytes, 5*100+50*upload.MiB; got != want {
		t.Errorf("usedBytes: got %d, want %d (5 small files and the 50 MiB image)", got, want)
	}
}

func TestQuotaExceeded(t *testing.T) {
	t.Parallel()
	s := startSpool(t, func(c *app.Config) { c.Upload.DefaultQuota = 2 * upload.MiB })
	tok := s.token("alice")
	const half = 3 * upload.MiB / 2

	s.wantCode(tok, initBatchOp, vars("input", map[string]any{"files": []any{file("big.png", "image/png", 3*upload.MiB)}}), "QUOTA_EXCEEDED")
	// Each fits alone, not both: the whole batch is refused and nothing
	// stays reserved.
	s.wantCode(tok, initBatchOp, vars("input", map[string]any{"files": []any{
		file("a.png", "image/png", half), file("b.png", "image/png", half),
	}}), "QUOTA_EXCEEDED")
	if me := s.me(tok); me.UsedBytes != 0 || me.QuotaBytes != 2*upload.MiB {
		t.Fatalf("after refused batches: got %+v, want 0 of %d bytes used", me, 2*upload.MiB)
	}

	first := s.planOne(tok, file("a.png", "image/png", half))
	if got := s.me(tok).UsedBytes; got != half {
		t.Fatalf("usedBytes: got %d, want %d", got, half)
	}
	s.wantCode(tok, initBatchOp, vars("input", map[string]any{"files": []any{file("b.png", "image/png", upload.MiB)}}), "QUOTA_EXCEEDED")
	// Cancelling gives the bytes back, and then the file fits.
	s.mustGQL(tok, opCancel, vars("id", first.ID), nil)
	s.planOne(tok, file("b.png", "image/png", upload.MiB))
	if got := s.me(tok).UsedBytes; got != upload.MiB {
		t.Errorf("usedBytes after cancel and a new upload: got %d, want %d", got, upload.MiB)
	}
	// Quotas are per user.
	s.planOne(s.token("bob"), file("b.png", "image/png", half))
}

func md5Header(b []byte) string {
	sum := md5.Sum(b)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// streamed hides a body's length, so the request goes chunked and the
// server must enforce the size while reading.
func streamed(b []byte) io.Reader { return io.MultiReader(bytes.NewReader(b)) }

func TestChunkErrors(t *testing.T) {
	t.Parallel()
	s := startSpool(t, nil)
	tok := s.token("alice")
	video := fileBytes("video/mp4", 6<<20, 5) // chunks of 5 and 1 MiB
	up := s.planOne(tok, file("v.mp4", "video/mp4", int64(len(video))))
	c0, c1 := up.ChunkURLs[0], up.ChunkURLs[1]
	id := up.ID

	// Asking for chunks that do not exist.
	for _, i := range []int{-1, 2, 1 << 30} {
		s.wantCode(tok, opRequestURL, vars("id", id, "i", i), "INVALID_CHUNK")
		s.wantCode(tok, opConfirm, vars("id", id, "i", i, "size", 1<<20), "INVALID_CHUNK")
	}
	var ok struct{ RequestChunkURL chunkURL }
	s.mustGQL(tok, opRequestURL, vars("id", id, "i", 1), &ok)
	if got := ok.RequestChunkURL; got.ChunkIndex != 1 || got.Offset != 5<<20 || got.Size != 1<<20 {
		t.Errorf("requestChunkUrl(1): got %+v, want chunk 1 at 5 MiB, 1 MiB long", got)
	}
	s.wantCode(tok, opConfirm, vars("id", id, "i", 0, "size", 5<<20), "CHUNK_MISSING")
	s.wantCode(tok, opComplete, vars("id", id), "INCOMPLETE")

	// Bodies of the wrong size or with a wrong checksum fail the chunk,
	// whether or not the request declares its length.
	good := chunkOf(c1, video)
	wrongMD5 := md5Header(append([]byte{1}, good[1:]...))
	wrongCRC := strings.Replace(crc32cOf(good[1:]), "crc32c:", "crc32c=", 1)
	puts := []struct {
		name   string
		body   io.Reader
		header http.Header
		status int
		code   string
	}{
		{"longer", bytes.NewReader(append(bytes.Clone(good), 0)), nil, http.StatusRequestEntityTooLarge, "CHUNK_TOO_LARGE"},
		{"longer, streamed", streamed(append(bytes.Clone(good), 0)), nil, http.StatusRequestEntityTooLarge, "CHUNK_TOO_LARGE"},
		{"shorter", bytes.NewReader(good[1:]), nil, http.StatusBadRequest, "CHUNK_TOO_SMALL"},
		{"shorter, streamed", streamed(good[1:]), nil, http.StatusBadRequest, "CHUNK_TOO_SMALL"},
		{"empty", bytes.NewReader(nil), nil, http.StatusBadRequest, "CHUNK_TOO_SMALL"},
		{"wrong Content-MD5", bytes.NewReader(good), http.Header{"Content-Md5": {wrongMD5}}, http.StatusBadRequest, "CHECKSUM_MISMATCH"},
		{"wrong x-goog-hash crc32c", bytes.NewReader(good), http.Header{"X-Goog-Hash": {wrongCRC}}, http.StatusBadRequest, "CHECKSUM_MISMATCH"},
		{"right crc32c, wrong md5", bytes.NewReader(good), http.Header{"X-Goog-Hash": {"crc32c=" + strings.TrimPrefix(crc32cOf(good), "crc32c:") + ",md5=" + wrongMD5}}, http.StatusBadRequest, "CHECKSUM_MISMATCH"},
		{"wrong checksum parameter", bytes.NewReader(good), nil, http.StatusBadRequest, "CHECKSUM_MISMATCH"},
		{"malformed Content-MD5", bytes.NewReader(good), http.Header{"Content-Md5": {"not base64!"}}, http.StatusBadRequest, "BAD_USER_INPUT"},
		{"malformed x-goog-hash", bytes.NewReader(good), http.Header{"X-Goog-Hash": {"crc32c=abc"}}, http.StatusBadRequest, "BAD_USER_INPUT"},
	}
	for _, p := range puts {
		u := c1.URL
		if p.name == "wrong checksum parameter" {
			u += "&checksum=" + url.QueryEscape(wrongCRC)
		}
		req, _ := http.NewRequest(http.MethodPut, u, p.body)
		for k, v := range p.header {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
		var a planeAnswer
		_ = json.NewDecoder(resp.Body).Decode(&a)
		resp.Body.Close()
		if resp.StatusCode != p.status || a.Error.Code != p.code {
			t.Errorf("PUT %s: got %d %s (%q), want %d %s", p.name, resp.StatusCode, a.Error.Code, a.Error.Message, p.status, p.code)
		}
		got := s.uploadSession(tok, id).Progress
		if p.code != "BAD_USER_INPUT" && (len(got.FailedChunks) != 1 || got.FailedChunks[0] != 1 || got.UploadedChunks != 0) {
			t.Errorf("after PUT %s: got %d received, failed %v; want chunk 1 failed", p.name, got.UploadedChunks, got.FailedChunks)
		}
	}
	s.wantCode(tok, opConfirm, vars("id", id, "i", 1, "size", 1<<20), "CHUNK_MISSING")

	// With the right checksums the chunk is taken and no longer failed.
	a := do(t, http.MethodPut, c1.URL, good, http.Header{
		"Content-Md5": {md5Header(good)},
		"X-Goog-Hash": {"crc32c=" + strings.TrimPrefix(crc32cOf(good), "crc32c:")},
	})
	if a.Status != http.StatusOK || a.UploadedChunks != 1 || len(a.FailedChunks) != 0 {
		t.Fatalf("PUT with right checksums: got %d %+v %q, want 200, 1 chunk, none failed", a.Status, a.progress, a.Error.Message)
	}
	s.wantCode(tok, opConfirm, vars("id", id, "i", 1, "size", 1<<20, "sum", crc32cOf(good[1:])), "CHECKSUM_MISMATCH")
	// spool cannot check a SHA-256 it never computed, and says so.
	s.wantCode(tok, opConfirm, vars("id", id, "i", 1, "size", 1<<20, "sum", "sha256:"+sha256hex(good)), "BAD_USER_INPUT")
	s.wantCode(tok, opConfirm, vars("id", id, "i", 1, "size", 1<<20, "sum", "md5:"+md5Header(good[1:])), "CHECKSUM_MISMATCH")
	s.mustGQL(tok, opConfirm, vars("id", id, "i", 1, "size", 1<<20, "sum", crc32cOf(good)), nil)
	s.mustGQL(tok, opConfirm, vars("id", id, "i", 1, "size", 1<<20, "sum", "md5:"+md5Header(good)), nil)

	// Chunk 0 that is not what the upload declared: PNG bytes for a video.
	png := fileBytes("image/png", int(c0.Size), 6)
	if a := do(t, http.MethodPut, c0.URL, png, nil); a.Status != http.StatusUnsupportedMediaType || a.Error.Code != "TYPE_MISMATCH" {
		t.Errorf("PNG as chunk 0 of a video: got %d %s, want 415 TYPE_MISMATCH", a.Status, a.Error.Code)
	}
	s.wantCode(tok, opConfirm, vars("id", id, "i", 0, "size", c0.Size), "TYPE_MISMATCH")
	s.wantCode(tok, opComplete, vars("id", id), "INCOMPLETE")

	// The real chunk 0 repairs it all.
	sendChunk(t, c0, video, http.StatusOK)
	if m := s.complete(tok, id); m.FileSize != int64(len(video)) {
		t.Errorf("completed media: got %d bytes, want %d", m.FileSize, len(video))
	}
}

func TestSessionExpired(t *testing.T) {
	t.Parallel()
	// Long enough that the reservation is seen before the sweep expires
	// the upload, on a machine busy with other tests.
	s := startSpool(t, func(c *app.Config) { c.Upload.SessionTTL = 5 * time.Second })
	tok := s.token("alice")
	up := s.planOne(tok, file("v.mp4", "video/mp4", 6<<20))
	if got := s.me(tok).UsedBytes; got != 6<<20 {
		t.Fatalf("usedBytes: got %d, want %d", got, 6<<20)
	}

	eventually.Holds(t, "the session to expire", func() bool {
		errs := s.gql(tok, opRequestURL, vars("id", up.ID, "i", 0), nil)
		if len(errs) == 0 {
			return false
		}
		if got := errs[0].code(); got != "SESSION_EXPIRED" {
			t.Fatalf("requestChunkUrl while waiting: got %s (%q), want success or SESSION_EXPIRED", got, errs[0].Message)
		}
		return true
	})

	ops := []struct {
		name, query string
		vars        map[string]any
	}{
		{"requestChunkUrl", opRequestURL, vars("id", up.ID, "i", 1)},
		{"confirmChunk", opConfirm, vars("id", up.ID, "i", 0, "size", 5<<20)},
		{"retry", opRetry, vars("id", up.ID)},
		{"complete", opComplete, vars("id", up.ID)},
		{"cancel", opCancel, vars("id", up.ID)},
	}
	for _, op := range ops {
		t.Run(op.name, func(t *testing.T) { s.with(t).wantCode(tok, op.query, op.vars, "SESSION_EXPIRED") })
	}
	got := s.uploadSession(tok, up.ID)
	if got.Status != "EXPIRED" || got.Progress.Status != "EXPIRED" || len(got.ChunkURLs) != 0 {
		t.Errorf("expired upload: got status %s (progress %s) with %d chunk URLs, want EXPIRED with none",
			got.Status, got.Progress.Status, len(got.ChunkURLs))
	}
	if got := s.me(tok).UsedBytes; got != 0 {
		t.Errorf("usedBytes after expiry: got %d, want 0", got)
	}
}

func TestAlreadyFinished(t *testing.T) {
	t.Parallel()
	s := startSpool(t, nil)
	tok := s.token("alice")
	video := fileBytes("video/mp4", 6<<20, 7)
	up := s.planOne(tok, file("v.mp4", "video/mp4", int64(len(video))))
	sendChunk(t, up.ChunkURLs[0], video, http.StatusOK)
	s.mustGQL(tok, opCancel, vars("id", up.ID), nil)

	ops := []struct {
		name, query string
		vars        map[string]any
	}{
		{"requestChunkUrl", opRequestURL, vars("id", up.ID, "i", 1)},
		{"confirmChunk", opConfirm, vars("id", up.ID, "i", 0, "size", 5<<20)},
		{"retry", opRetry, vars("id", up.ID)},
		{"cancel again", opCancel, vars("id", up.ID)},
		{"complete", opComplete, vars("id", up.ID)},
	}
	for _, op := range ops {
		t.Run("cancelled, "+op.name, func(t *testing.T) { s.with(t).wantCode(tok, op.query, op.vars, "ALREADY_FINISHED") })
	}
	if a := do(t, http.MethodPut, up.ChunkURLs[1].URL, chunkOf(up.ChunkURLs[1], video), nil); a.Status != http.StatusConflict || a.Error.Code != "ALREADY_FINISHED" {
		t.Errorf("PUT to a cancelled upload: got %d %s, want 409 ALREADY_FINISHED", a.Status, a.Error.Code)
	}

	img := fileBytes("image/png", 1000, 8)
	done := s.planOne(tok, file("p.png", "image/png", int64(len(img))))
	sendChunk(t, done.ChunkURLs[0], img, http.StatusOK)
	m := s.complete(tok, done.ID)
	if a := do(t, http.MethodPut, done.ChunkURLs[0].URL, img, nil); a.Status != http.StatusConflict || a.Error.Code != "ALREADY_FINISHED" {
		t.Errorf("PUT to a completed upload: got %d %s, want 409 ALREADY_FINISHED", a.Status, a.Error.Code)
	}
	for _, op := range []struct{ name, query string }{{"requestChunkUrl", opRequestURL}, {"cancel", opCancel}, {"retry", opRetry}} {
		t.Run("completed, "+op.name, func(t *testing.T) {
			s.with(t).wantCode(tok, op.query, vars("id", done.ID, "i", 0), "ALREADY_FINISHED")
		})
	}
	if again := s.complete(tok, done.ID); again.ID != m.ID {
		t.Errorf("complete again: got media %s, want %s", again.ID, m.ID)
	}
	// Once its media is deleted, completing again has nothing to return.
	s.mustGQL(tok, opDeleteMedia, vars("id", m.ID), nil)
	s.wantCode(tok, opComplete, vars("id", done.ID), "ALREADY_FINISHED")
}

func manyIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = "med_missing"
	}
	return ids
}
