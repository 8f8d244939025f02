package app_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/spoolhq/spool/internal/app"
	"github.com/spoolhq/spool/internal/app/apptest"
	"github.com/spoolhq/spool/internal/eventually"
	"github.com/spoolhq/spool/internal/progress/redis/redistest"
	"github.com/spoolhq/spool/internal/ratelimit"
)

// The limits' tests (docs/CONFIG.md, "Limits"): budgets are configured
// small so that waits are short; a test never asserts how long anything
// took, only what the server answered.

// missingUpload names no upload: cancelling it is a mutation that costs
// the server nothing but answers NOT_FOUND, so budget tests can spend
// requests freely.
const missingUpload = "upl_missing"

// gqlWithHeader is gql over HTTP POST that also returns the response's
// headers.
func (s *spool) gqlWithHeader(token, query string, vs map[string]any) (http.Header, []gqlError) {
	s.t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vs})
	req, _ := http.NewRequest(http.MethodPost, s.url+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("POST /graphql: %v", err)
	}
	defer resp.Body.Close()
	var res struct {
		Errors []gqlError `json:"errors"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		s.t.Fatalf("decoding GraphQL answer (HTTP %d): %v", resp.StatusCode, err)
	}
	return resp.Header, res.Errors
}

// retryAfterExtension returns a RATE_LIMITED error's extensions.retryAfter,
// failing unless it is a positive whole number of seconds.
func retryAfterExtension(t *testing.T, e gqlError) int {
	t.Helper()
	v, ok := e.Extensions["retryAfter"].(float64)
	if !ok || v < 1 || v != float64(int(v)) {
		t.Fatalf("RATE_LIMITED error %+v: extensions.retryAfter is %v, want a positive integer", e, e.Extensions["retryAfter"])
	}
	return int(v)
}

// retryAfterHeader returns a Retry-After header's seconds, failing unless
// it is a positive integer.
func retryAfterHeader(t *testing.T, h http.Header) int {
	t.Helper()
	n, err := strconv.Atoi(h.Get("Retry-After"))
	if err != nil || n < 1 {
		t.Fatalf("Retry-After is %q, want a positive integer", h.Get("Retry-After"))
	}
	return n
}

// cancelMissing spends one mutation of token's budget and returns its code.
func (s *spool) cancelMissing(token string) (http.Header, gqlError) {
	s.t.Helper()
	h, errs := s.gqlWithHeader(token, opCancel, vars("id", missingUpload))
	if len(errs) != 1 {
		s.t.Fatalf("cancel of a missing upload: got errors %+v, want one", errs)
	}
	return h, errs[0]
}

// untilMutationRefused spends token's mutations until one is refused, and
// returns how many went through first and the refusal. A budget of burst
// lets at least burst through; the loop gives up (failing) well past it.
func (s *spool) untilMutationRefused(t *testing.T, token string, burst int) (int, http.Header, gqlError) {
	t.Helper()
	for passed := 0; passed < burst+20; passed++ {
		h, e := s.cancelMissing(token)
		switch e.code() {
		case "NOT_FOUND":
		case "RATE_LIMITED":
			return passed, h, e
		default:
			t.Fatalf("mutation %d: got %s (%q), want NOT_FOUND or RATE_LIMITED", passed+1, e.code(), e.Message)
		}
	}
	t.Fatalf("no mutation refused after %d, with a burst of %d", burst+20, burst)
	return 0, nil, gqlError{}
}

// A user who sends mutations faster than the budget gets RATE_LIMITED,
// with a whole number of seconds to wait in extensions.retryAfter and in
// Retry-After, and gets through after waiting it; queries and other users
// are not affected, and websockets draw on the same budget.
func TestMutationRateLimit(t *testing.T) {
	t.Parallel()
	const burst = 3
	s := startSpool(t, func(c *app.Config) {
		c.Limits.Mutations = ratelimit.Rate{Events: 1, Per: 3 * time.Second, Burst: burst}
	})
	alice, bob, carol := s.token("alice"), s.token("bob"), s.token("carol")

	passed, header, refusal := s.untilMutationRefused(t, alice, burst)
	if passed < burst {
		t.Fatalf("%d mutations went through before the first refusal, want at least the burst of %d", passed, burst)
	}
	wait := retryAfterExtension(t, refusal)
	if got := retryAfterHeader(t, header); got != wait {
		t.Errorf("Retry-After header %d, extensions.retryAfter %d: want the same", got, wait)
	}
	if _, e := s.cancelMissing(bob); e.code() != "NOT_FOUND" {
		t.Errorf("bob's mutation while alice is limited: got %s, want NOT_FOUND", e.code())
	}
	s.me(alice) // queries are not counted

	time.Sleep(time.Duration(wait) * time.Second)
	if _, e := s.cancelMissing(alice); e.code() != "NOT_FOUND" {
		t.Errorf("alice's mutation after waiting Retry-After (%d s): got %s (%q), want NOT_FOUND", wait, e.code(), e.Message)
	}

	// Over a websocket, a mutation is one more operation on the budget.
	ws := s.dialWS(carol, nil)
	for i := 0; ; i++ {
		if i == burst+20 {
			t.Fatalf("no mutation over the websocket refused after %d", i)
		}
		id := fmt.Sprintf("m%d", i)
		ws.subscribe(id, opCancel, vars("id", missingUpload))
		m := ws.next(id)
		var payload struct{ Errors []gqlError }
		_ = json.Unmarshal(m.Payload, &payload)
		if len(payload.Errors) != 1 {
			t.Fatalf("mutation %s over the websocket: got %s %s, want one error", id, m.Type, m.Payload)
		}
		if code := payload.Errors[0].code(); code == "RATE_LIMITED" {
			if i < burst {
				t.Fatalf("refused after %d mutations over the websocket, want at least %d", i, burst)
			}
			retryAfterExtension(t, payload.Errors[0])
			break
		} else if code != "NOT_FOUND" {
			t.Fatalf("mutation %s over the websocket: got %s, want NOT_FOUND or RATE_LIMITED", id, code)
		}
	}
}

// headStatus sends HEAD /uploads/{id} with token and returns the answer.
func headStatus(t *testing.T, base, token, uploadID string) *http.Response {
	t.Helper()
	resp, _ := send(t, http.MethodHead, base+"/uploads/"+uploadID, nil, bearer(token))
	return resp
}

// A user over the data-plane budget gets 429 RATE_LIMITED with
// Retry-After on chunk PUTs (signed URLs, whose owner is the upload's)
// and HEADs, and gets through after waiting; another user does not notice.
func TestDataPlaneRateLimit(t *testing.T) {
	t.Parallel()
	const burst = 2
	s := startSpool(t, func(c *app.Config) {
		c.Limits.DataPlane = ratelimit.Rate{Events: 1, Per: 2 * time.Second, Burst: burst}
		c.AllowedOrigins = []string{"http://app.example"}
	})
	alice, bob := s.token("alice"), s.token("bob")
	image := fileBytes("image/png", 2000, 1)
	var files []map[string]any
	for i := range 5 {
		files = append(files, file(fmt.Sprintf("%d.png", i), "image/png", int64(len(image))))
	}
	ups := s.initBatch(alice, files...).Uploads

	var refused planeAnswer
	next := 0
	for ; next < len(ups); next++ {
		a := do(t, http.MethodPut, ups[next].ChunkURLs[0].URL, image, nil)
		if a.Status == http.StatusTooManyRequests {
			refused = a
			break
		}
		if a.Status != http.StatusOK {
			t.Fatalf("PUT %d: got %d %+v, want 200 or 429", next, a.Status, a.Error)
		}
	}
	if next < burst || next == len(ups) {
		t.Fatalf("%d chunk PUTs went through before a refusal, want from %d to %d", next, burst, len(ups)-1)
	}
	if refused.Error.Code != "RATE_LIMITED" {
		t.Errorf("refused PUT: got code %q, want RATE_LIMITED", refused.Error.Code)
	}
	wait := retryAfterHeader(t, refused.Header)

	bobs := s.planOne(bob, file("b.png", "image/png", int64(len(image))))
	if a := do(t, http.MethodPut, bobs.ChunkURLs[0].URL, image, nil); a.Status != http.StatusOK {
		t.Errorf("bob's PUT while alice is limited: got %d %+v, want 200", a.Status, a.Error)
	}

	time.Sleep(time.Duration(wait) * time.Second)
	if a := do(t, http.MethodPut, ups[next].ChunkURLs[0].URL, image, nil); a.Status != http.StatusOK {
		t.Fatalf("the refused PUT again after Retry-After (%d s): got %d %+v, want 200", wait, a.Status, a.Error)
	}
	// HEADs draw on the same budget; a page on another origin may read
	// Retry-After.
	for i := 0; ; i++ {
		if i == burst+20 {
			t.Fatalf("no HEAD refused after %d", i)
		}
		h := bearer(alice)
		h.Set("Origin", "http://app.example")
		resp, _ := send(t, http.MethodHead, s.url+"/uploads/"+ups[0].ID, nil, h)
		if resp.StatusCode == http.StatusTooManyRequests {
			retryAfterHeader(t, resp.Header)
			if exposed := resp.Header.Get("Access-Control-Expose-Headers"); !strings.Contains(exposed, "Retry-After") {
				t.Errorf("Access-Control-Expose-Headers %q: want Retry-After among them", exposed)
			}
			break
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("HEAD: got %d, want 200 or 429", resp.StatusCode)
		}
	}
}

// Two replicas sharing Redis share each user's budgets: alternating
// between them, a user is refused once the one budget is spent, where
// budgets of their own would let twice the burst through. Another user
// still gets through on both.
func TestRateLimitsAcrossReplicas(t *testing.T) {
	t.Parallel()
	shared := productionEngines(t)
	const burst = 2
	// A token comes back every 20 s: none within the test's few requests.
	budget := ratelimit.Rate{Events: 1, Per: 20 * time.Second, Burst: burst}
	limited := func(c *app.Config) {
		shared.apply(c)
		c.Limits.Mutations, c.Limits.DataPlane = budget, budget
	}
	a := startSpool(t, limited)
	b := startSpool(t, limited)
	alice, bob := a.token("alice"), a.token("bob")
	replicas := []*spool{a, b}

	passed := 0
	for ; ; passed++ {
		if passed == 2*burst {
			t.Fatalf("%d mutations alternating between replicas went through: each replica has a budget of its own", passed)
		}
		_, e := replicas[passed%2].cancelMissing(alice)
		if e.code() == "RATE_LIMITED" {
			retryAfterExtension(t, e)
			break
		}
		if e.code() != "NOT_FOUND" {
			t.Fatalf("mutation %d: got %s (%q)", passed+1, e.code(), e.Message)
		}
	}
	if passed < burst {
		t.Errorf("refused after %d mutations, want the burst of %d first", passed, burst)
	}
	for _, r := range replicas {
		if _, e := r.cancelMissing(bob); e.code() != "NOT_FOUND" {
			t.Errorf("bob's mutation: got %s, want NOT_FOUND", e.code())
		}
	}

	carol := a.token("carol")
	up := a.planOne(carol, file("c.png", "image/png", 2000))
	passed = 0
	for ; ; passed++ {
		if passed == 2*burst {
			t.Fatalf("%d HEADs alternating between replicas went through: each replica has a budget of its own", passed)
		}
		resp := headStatus(t, replicas[passed%2].url, carol, up.ID)
		if resp.StatusCode == http.StatusTooManyRequests {
			retryAfterHeader(t, resp.Header)
			break
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("HEAD %d: got %d", passed+1, resp.StatusCode)
		}
	}
	if passed < burst {
		t.Errorf("refused after %d HEADs, want the burst of %d first", passed, burst)
	}
}

// While Redis is down, budgets are held by each replica: requests neither
// wait nor fail, the limits still bite, and the log says so once, not
// once per request.
func TestRateLimitsWithoutRedis(t *testing.T) {
	t.Parallel()
	redis := redistest.StartServer(t)
	logs := &syncBuffer{}
	const burst = 3
	srv := apptest.StartLogged(t, slog.New(slog.NewTextHandler(logs, nil)), func(c *app.Config) {
		c.RedisURL, c.RedisPrefix = "redis://"+redis.Addr+"/0", redistest.Prefix(t)
		c.Limits.Mutations = ratelimit.Rate{Events: 1, Per: 20 * time.Second, Burst: burst}
	})
	s := &spool{t: t, main: srv.Main, url: srv.URL, srv: srv}
	alice := s.token("alice")
	if _, e := s.cancelMissing(alice); e.code() != "NOT_FOUND" {
		t.Fatalf("with Redis up: got %s, want NOT_FOUND", e.code())
	}
	redis.Kill()

	// The replica's own budget starts full: burst more, then refusal.
	passed, _, refusal := s.untilMutationRefused(t, alice, burst)
	if passed < burst || passed > burst+1 {
		t.Errorf("with Redis down, %d mutations went through before a refusal, want the local burst of %d", passed, burst)
	}
	retryAfterExtension(t, refusal)
	for range 5 {
		if resp := headStatus(t, s.url, alice, missingUpload); resp.StatusCode != http.StatusNotFound {
			t.Errorf("HEAD with Redis down: got %d, want 404", resp.StatusCode)
		}
	}
	// Once for the mutations, once for the data plane (the HEADs).
	if n := strings.Count(logs.String(), "rate limits held per replica"); n != 2 {
		t.Errorf("the log says the limits fell back %d times, want once per limit (2):\n%s", n, logs.String())
	}
}

// heldPUT is a chunk PUT whose headers are sent and whose body is not:
// the server has taken it (one of the upload's slots) once it asks for
// the body with 100 Continue.
type heldPUT struct {
	conn net.Conn
	r    *bufio.Reader
}

// dialURL opens a raw connection to rawURL's host, closed when the test
// ends, with a deadline that only guards against a hang.
func dialURL(t *testing.T, rawURL string) (*url.URL, net.Conn) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	return u, conn
}

// holdPUT starts a PUT of chunk c and returns once the server is reading
// its body, or the server's answer if it refused the PUT instead.
func holdPUT(t *testing.T, c chunkURL) (*heldPUT, *http.Response) {
	t.Helper()
	u, conn := dialURL(t, c.URL)
	fmt.Fprintf(conn, "PUT %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", u.RequestURI(), u.Host, c.Size)
	h := &heldPUT{conn: conn, r: bufio.NewReader(conn)}
	resp, err := http.ReadResponse(h.r, nil)
	if err != nil {
		t.Fatalf("PUT chunk %d: reading the answer to its headers: %v", c.ChunkIndex, err)
	}
	if resp.StatusCode == http.StatusContinue {
		return h, nil
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body = io.NopCloser(bytes.NewReader(body))
	conn.Close()
	return nil, resp
}

// finish sends the body and returns the answer's status.
func (h *heldPUT) finish(t *testing.T, body []byte) int {
	t.Helper()
	if _, err := h.conn.Write(body); err != nil {
		t.Fatalf("sending the held chunk's body: %v", err)
	}
	resp, err := http.ReadResponse(h.r, nil)
	if err != nil {
		t.Fatalf("reading the held chunk's answer: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// An upload runs at most MaxParallelChunksPerUpload chunk PUTs at once:
// the one over answers 429 RATE_LIMITED with Retry-After at once (it is
// not queued), while another upload's PUTs pass; slots are given back when
// a PUT ends, whether it succeeds or its client goes away.
func TestParallelChunkLimit(t *testing.T) {
	t.Parallel()
	const maxParallel = 8
	s := startSpool(t, func(c *app.Config) {
		c.Limits.MaxParallelChunksPerUpload = maxParallel
		c.Limits.BodyIdleTimeout = 10 * time.Minute // held bodies must not be cut
	})
	alice := s.token("alice")
	big := fileBytes("video/mp4", 12*5<<20, 3) // 12 chunks of 5 MiB
	other := fileBytes("video/mp4", 12<<20, 4)
	ups := s.initBatch(alice, file("big.mp4", "video/mp4", int64(len(big))), file("other.mp4", "video/mp4", int64(len(other)))).Uploads
	up, otherUp := ups[0], ups[1]

	held := map[int]*heldPUT{}
	for i := 1; i <= maxParallel; i++ {
		h, refused := holdPUT(t, up.ChunkURLs[i])
		if refused != nil {
			t.Fatalf("PUT %d of %d running at once: refused with %d", i, maxParallel, refused.StatusCode)
		}
		held[i] = h
	}
	over := do(t, http.MethodPut, up.ChunkURLs[9].URL, chunkOf(up.ChunkURLs[9], big), nil)
	if over.Status != http.StatusTooManyRequests || over.Error.Code != "RATE_LIMITED" {
		t.Fatalf("PUT %d while %d run: got %d %+v, want 429 RATE_LIMITED", maxParallel+1, maxParallel, over.Status, over.Error)
	}
	retryAfterHeader(t, over.Header)
	sendChunk(t, otherUp.ChunkURLs[1], other, http.StatusOK) // another upload is not limited

	if status := held[1].finish(t, chunkOf(up.ChunkURLs[1], big)); status != http.StatusOK {
		t.Fatalf("finishing a held PUT: got %d, want 200", status)
	}
	sendChunk(t, up.ChunkURLs[9], big, http.StatusOK) // the slot it held is free

	// Clients that go away give their slots back too: all but the first
	// are taken again, with two more.
	for i := 2; i <= maxParallel; i++ {
		held[i].conn.Close()
	}
	again := append([]chunkURL{}, up.ChunkURLs[2:maxParallel+1]...)
	again = append(again, up.ChunkURLs[10])
	for _, c := range again {
		eventually.Holds(t, fmt.Sprintf("a slot for chunk %d", c.ChunkIndex), func() bool {
			h, refused := holdPUT(t, c)
			if refused != nil {
				if refused.StatusCode != http.StatusTooManyRequests {
					t.Fatalf("PUT chunk %d: got %d, want 100 Continue or 429", c.ChunkIndex, refused.StatusCode)
				}
				return false
			}
			held[c.ChunkIndex] = h
			return true
		})
	}
	for _, c := range again {
		if status := held[c.ChunkIndex].finish(t, chunkOf(c, big)); status != http.StatusOK {
			t.Errorf("chunk %d: got %d, want 200", c.ChunkIndex, status)
		}
	}
}

// A user keeps at most MaxWebsocketsPerUser websockets open: the one over
// is closed with 4429 after its connection_init; other users are not
// affected, and a socket's slot is free again once it closes.
func TestWebsocketsPerUser(t *testing.T) {
	t.Parallel()
	const maxSockets = 3
	s := startSpool(t, func(c *app.Config) { c.Limits.MaxWebsocketsPerUser = maxSockets })
	alice, bob := s.token("alice"), s.token("bob")
	var open []*wsClient
	for range maxSockets {
		open = append(open, s.dialWS(alice, nil))
	}
	if code := refusedSocket(t, s, alice); code != 4429 {
		t.Fatalf("websocket %d of alice: closed with %d, want 4429", maxSockets+1, code)
	}
	s.dialWS(bob, nil)

	// Closing one frees its slot (the server notices the close on its own
	// time, so the next dial may need a few tries).
	open[0].conn.Close()
	eventually.Holds(t, "a websocket slot for alice", func() bool {
		c, err := s.tryDialWS(alice, nil)
		if err != nil {
			return false
		}
		open[0] = c
		return true
	})
	if code := refusedSocket(t, s, alice); code != 4429 {
		t.Fatalf("websocket over the limit after one was replaced: closed with %d, want 4429", code)
	}
}

// refusedSocket dials a websocket, sends connection_init with token, and
// returns the close code the server ends it with (0 if it acknowledges).
func refusedSocket(t *testing.T, s *spool, token string) int {
	t.Helper()
	conn := rawSocket(t, s, "graphql-transport-ws", token)
	var m wsMessage
	err := conn.ReadJSON(&m)
	var ce *websocket.CloseError
	switch {
	case err == nil && m.Type == "connection_ack":
		return 0
	case err == nil:
		t.Fatalf("got %s, want connection_ack or a close", m.Type)
	case !asCloseError(err, &ce):
		t.Fatalf("the socket ended with %v, want a close frame", err)
	}
	return ce.Code
}

func asCloseError(err error, target **websocket.CloseError) bool {
	ce, ok := err.(*websocket.CloseError)
	if ok {
		*target = ce
	}
	return ok
}

// sendHalf starts a PUT of chunk to c and sends half of it, then nothing.
func sendHalf(t *testing.T, c chunkURL, chunk []byte) *heldPUT {
	t.Helper()
	h, refused := holdPUT(t, c)
	if refused != nil {
		t.Fatalf("PUT: got %d before the body", refused.StatusCode)
	}
	if _, err := h.conn.Write(chunk[:len(chunk)/2]); err != nil {
		t.Fatal(err)
	}
	return h
}

// answer reads the server's answer to a held PUT: its status and error.
func (h *heldPUT) answer(t *testing.T) (int, struct{ Code, Message string }) {
	t.Helper()
	resp, err := http.ReadResponse(h.r, nil)
	if err != nil {
		t.Fatalf("reading the answer to a held PUT: %v", err)
	}
	defer resp.Body.Close()
	var answer struct {
		Error struct{ Code, Message string }
	}
	_ = json.NewDecoder(resp.Body).Decode(&answer)
	return resp.StatusCode, answer.Error
}

// finishWithout sends every chunk of up but the one at done (already
// received), completes it, checks the download is data and returns the
// media.
func (s *spool) finishWithout(t *testing.T, token string, up session, data []byte, done int) media {
	t.Helper()
	for _, c := range up.ChunkURLs {
		if c.ChunkIndex != done {
			sendChunk(t, c, data, http.StatusOK)
		}
	}
	m := s.complete(token, up.ID)
	if got := apptest.Get(t, m.URL); sha256hex(got) != sha256hex(data) {
		t.Errorf("downloaded file differs from the one sent")
	}
	return m
}

// A chunk body that stops sending is cut off after the body idle
// timeout: the answer is 408 REQUEST_TIMEOUT, the chunk reads as failed,
// and sending it again succeeds. A body that is slow but keeps sending is
// not cut, however long it takes in all.
func TestStalledChunkBody(t *testing.T) {
	t.Parallel()
	// Long enough that a loaded machine (a cold CI runs the web tests'
	// Chromium beside the Go tests) cannot starve the slow sender below
	// past it: with 500 ms, one such gap failed the steady body once.
	const idle = 2 * time.Second
	s := startSpool(t, func(c *app.Config) { c.Limits.BodyIdleTimeout = idle })
	alice := s.token("alice")
	video := fileBytes("video/mp4", 12<<20, 5)
	up := s.planOne(alice, file("v.mp4", "video/mp4", int64(len(video))))
	c := up.ChunkURLs[1]
	chunk := chunkOf(c, video)
	h := sendHalf(t, c, chunk)
	// Then nothing: the server must answer on its own.
	status, answer := h.answer(t)
	if status != http.StatusRequestTimeout || answer.Code != "REQUEST_TIMEOUT" {
		t.Fatalf("stalled body: got %d %q, want 408 REQUEST_TIMEOUT", status, answer.Code)
	}
	p := s.uploadSession(alice, up.ID).Progress
	if p.UploadedChunks != 0 || len(p.FailedChunks) != 1 || p.FailedChunks[0] != 1 {
		t.Fatalf("after the stalled chunk: got %+v, want chunk 1 failed and none received", p)
	}

	// Slow but steady: pieces spaced by a tenth of the idle timeout,
	// longer than it in all.
	const pieces = 12
	body, w := io.Pipe()
	go func() {
		step := len(chunk) / pieces
		for i := 0; i < pieces; i++ {
			end := (i + 1) * step
			if i == pieces-1 {
				end = len(chunk)
			}
			_, _ = w.Write(chunk[i*step : end])
			time.Sleep(idle / 10)
		}
		_ = w.Close()
	}()
	req, _ := http.NewRequest(http.MethodPut, c.URL, body)
	req.ContentLength = int64(len(chunk))
	slow, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(slow.Body)
	slow.Body.Close()
	if slow.StatusCode != http.StatusOK {
		t.Fatalf("the chunk sent again, slowly: got %d %s, want 200", slow.StatusCode, b)
	}
	s.finishWithout(t, alice, up, video, 1)
}

// A client whose connection died silently mid-chunk (a phone that
// changed networks) sends the chunk again on a new one. On local disk two
// requests cannot write one chunk at once, and the resend waited out the
// dead request's body idle timeout (29 s of 30 from outside). Now the
// resend hurries the dead one: cut off after 2 s of silence, answered
// 408 saying another request replaces it; the resend is answered 200 and
// the file is whole. Without it the dead request is answered only at the
// idle timeout, which this test sets to 20 s, in other words; nothing
// here is timed.
func TestResentChunkHurriesTheStalledOne(t *testing.T) {
	t.Parallel()
	s := startSpool(t, func(c *app.Config) { c.Limits.BodyIdleTimeout = 20 * time.Second })
	alice := s.token("alice")
	video := fileBytes("video/mp4", 12<<20, 6)
	up := s.planOne(alice, file("v.mp4", "video/mp4", int64(len(video))))
	c := up.ChunkURLs[1]
	chunk := chunkOf(c, video)
	dead := sendHalf(t, c, chunk)
	sendChunk(t, c, video, http.StatusOK)

	status, answer := dead.answer(t)
	if status != http.StatusRequestTimeout || answer.Code != "REQUEST_TIMEOUT" || !strings.Contains(answer.Message, "sent nothing for 2s while the same chunk arrived on another request") {
		t.Fatalf("the silent request: got %d %+v, want 408 REQUEST_TIMEOUT, replaced by another request", status, answer)
	}
	p := s.uploadSession(alice, up.ID).Progress
	if p.UploadedChunks != 1 || len(p.FailedChunks) != 0 {
		t.Fatalf("after the resend: got %+v, want chunk 1 received and none failed", p)
	}
	s.finishWithout(t, alice, up, video, 1)
}

// Two clients resuming one upload (two tabs, the CLI run twice) send the
// same chunks at once. The later PUT of a chunk hurries the earlier one,
// but a body that keeps sending is not cut off: both are answered 200.
// (Interrupting the earlier one outright, as tusd does, failed its
// client's upload with a 400.)
func TestSameChunkFromTwoLiveClients(t *testing.T) {
	t.Parallel()
	s := startSpool(t, nil)
	alice := s.token("alice")
	video := fileBytes("video/mp4", 12<<20, 9)
	up := s.planOne(alice, file("v.mp4", "video/mp4", int64(len(video))))
	c := up.ChunkURLs[1]
	chunk := chunkOf(c, video)

	// The first client sends its chunk in 40 pieces, 100 ms apart,
	// well inside the 2 s a hurried body may be silent.
	first, refused := holdPUT(t, c)
	if refused != nil {
		t.Fatalf("PUT: got %d before the body", refused.StatusCode)
	}
	firstDone := make(chan error, 1)
	go func() {
		const pieces = 40
		step := len(chunk) / pieces
		for i := range pieces {
			end := (i + 1) * step
			if i == pieces-1 {
				end = len(chunk)
			}
			if _, err := first.conn.Write(chunk[i*step : end]); err != nil {
				firstDone <- err
				return
			}
			if i == 0 {
				firstDone <- nil // the second client goes now
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	if err := <-firstDone; err != nil {
		t.Fatal(err)
	}
	sendChunk(t, c, video, http.StatusOK)
	if status, answer := first.answer(t); status != http.StatusOK {
		t.Fatalf("the first client, still sending when the second came: got %d %+v, want 200", status, answer)
	}
	s.finishWithout(t, alice, up, video, 1)
}

// A download the client stops taking is cut off after the body idle
// timeout. It held its request, connection and open file for as long as
// the client liked (seen from outside: 2.8 MB queued, still there after
// 45 s). A whole download is not cut.
func TestStalledDownloadIsCutOff(t *testing.T) {
	t.Parallel()
	// Long enough that a loaded machine cannot starve the test's own
	// download of the file (finishWithout's check) past it, as
	// TestStalledChunkBody's: with 1 s a cold CI cut that download once.
	const idle = 2 * time.Second
	s := startSpool(t, func(c *app.Config) { c.Limits.BodyIdleTimeout = idle })
	alice := s.token("alice")
	video := fileBytes("video/mp4", 48<<20, 8) // far more than the sockets' buffers
	up := s.planOne(alice, file("v.mp4", "video/mp4", int64(len(video))))
	m := s.finishWithout(t, alice, up, video, -1)

	u, conn := dialURL(t, m.URL)
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", u.RequestURI(), u.Host)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET: %v %v", resp, err)
	}
	// The client takes nothing for three idle timeouts, then all there is.
	time.Sleep(3 * idle)
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil || n >= int64(len(video)) {
		t.Fatalf("a download left untaken for %v: got %d of %d bytes and %v, want it cut off", 3*idle, n, len(video), err)
	}
}

// A client that sends a request's headers and then nothing is cut off
// after the read header timeout (slowloris), and so is one that keeps a
// keep-alive connection idle past the idle timeout.
func TestStalledHeadersAndIdleConnections(t *testing.T) {
	t.Parallel()
	s := startSpool(t, func(c *app.Config) {
		c.Limits.ReadHeaderTimeout = 500 * time.Millisecond
		c.Limits.IdleTimeout = 500 * time.Millisecond
	})
	host := strings.TrimPrefix(s.url, "http://")

	stalled, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	_ = stalled.SetDeadline(time.Now().Add(30 * time.Second)) // a hang guard only
	fmt.Fprintf(stalled, "GET /healthz HTTP/1.1\r\nHost: %s\r\nX-Slow: ", host)
	if err := untilClosed(stalled); err != nil {
		t.Fatalf("stalled headers: %v; want the server to close the connection", err)
	}

	idle, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	_ = idle.SetDeadline(time.Now().Add(30 * time.Second)) // a hang guard only
	fmt.Fprintf(idle, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", host)
	r := bufio.NewReader(idle)
	resp, err := http.ReadResponse(r, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("a whole request: got %v, %v; want 200", resp, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err := untilClosed(r); err != nil {
		t.Fatalf("idle keep-alive connection: %v; want the server to close it", err)
	}
}

// untilClosed reads r until the server closes the connection, and
// returns an error only if the test's own hang guard ran out first.
func untilClosed(r io.Reader) error {
	_, err := io.Copy(io.Discard, r)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return err
	}
	return nil
}

// The body idle timeout watches bodies only while they arrive: a handler
// that works on after its body ended, and the requests that follow on the
// same keep-alive connection, are not cut by it, however short it is. (A
// deadline set again after a body's end once cancelled the connection's
// context under load, failing the next request on it with INTERNAL: seen
// in TestStalledChunkBody, whose re-sent chunk shares the connection.)
func TestBodyIdleTimeoutSparesKeepAlive(t *testing.T) {
	t.Parallel()
	s := startSpool(t, func(c *app.Config) {
		// Shorter than a chunk's receipt takes after its body has ended.
		c.Limits.BodyIdleTimeout = time.Millisecond
	})
	alice := s.token("alice")
	image := fileBytes("image/png", 2000, 7)
	var files []map[string]any
	for i := range 5 {
		files = append(files, file(fmt.Sprintf("%d.png", i), "image/png", int64(len(image))))
	}
	ups := s.initBatch(alice, files...).Uploads
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxConnsPerHost = 1 // one keep-alive connection for every request
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport}
	for _, up := range ups {
		req, _ := http.NewRequest(http.MethodPut, up.ChunkURLs[0].URL, bytes.NewReader(image))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("PUT of %s on a kept-alive connection: got %d %s, want 200", up.FileName, resp.StatusCode, b)
		}
		body, _ := json.Marshal(map[string]any{"query": opComplete, "variables": vars("id", up.ID)})
		req, _ = http.NewRequest(http.MethodPost, s.url+"/graphql", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+alice)
		resp, err = client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || bytes.Contains(b, []byte(`"errors"`)) {
			t.Fatalf("complete of %s on a kept-alive connection: got %d %s", up.FileName, resp.StatusCode, b)
		}
	}
}
