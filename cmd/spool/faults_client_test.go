//go:build faults

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// faultClient uploads as a careful real client does: it retries what
// failed for a reason that may pass (no answer, 5xx, 429, a retryable
// code), honouring Retry-After, and moves to the other replica when one
// does not answer; it re-sends chunks whose PUT was not acknowledged and
// retries complete. It notes every retryable answer it met, by what it
// was doing and the answer, so a test can say what the fault did.
type faultClient struct {
	env   *faultEnv
	hooks faultHooks
	http  *http.Client
	// ctx ends when the subtest's budget runs out: every request, retry
	// pause and subscription then gives up, so a hang fails the subtest
	// with what each upload was doing instead of the whole binary at
	// its -timeout with a goroutine dump.
	ctx context.Context

	mu    sync.Mutex
	notes map[string]int // "complete: HTTP 200 INTERNAL" → times met
	puts  atomic.Int64   // chunk PUTs acknowledged, all files
}

// faultHooks let a test break something at a chosen point; each is
// optional.
type faultHooks struct {
	// acked runs after each acknowledged chunk PUT, with the number of
	// PUTs acknowledged so far (all files).
	acked func(n int64)
	// midBody runs once a PUT's body is half sent, when slowBodies is set.
	midBody func(f *faultFile, chunk int)
	// slowBodies sends chunk bodies in 256 KiB pieces 20 ms apart, so a
	// fault can land while bodies are in flight.
	slowBodies bool
	// beforeComplete runs before the first complete of each file.
	beforeComplete func(f *faultFile)
	// cutFirstPut sends the first attempt at each chunk 0 halfway and
	// drops the connection.
	cutFirstPut bool
}

// subtestBudget bounds what one fault subtest's client does, its uploads
// and the checks after them: over four times the slowest subtest's usual
// run (storage with 2 s latency, ~40 s), and short enough that a hung
// subtest and the rest of the suite end within `make test-faults`'
// -timeout.
const subtestBudget = 3 * time.Minute

// newFaultClient returns a client for one subtest; its budget starts now.
func newFaultClient(t *testing.T, env *faultEnv, hooks faultHooks) *faultClient {
	ctx, cancel := context.WithTimeout(context.Background(), subtestBudget)
	t.Cleanup(cancel)
	return &faultClient{env: env, hooks: hooks, notes: map[string]int{}, ctx: ctx,
		// A hang guard per request, far above any fault's duration.
		http: &http.Client{Timeout: time.Minute}}
}

// faultFile is one file to upload and what became of it.
type faultFile struct {
	name string
	data []byte
	sum  string // hex SHA-256 of data

	id       string
	chunks   []chunkPlan
	acked    map[int]bool // chunks whose PUT answered 200
	lost     []int        // acknowledged chunks spool later said it lacked
	mediaID  string
	mediaURL string
	err      error // the upload gave up: it did not finish
	sub      *faultSub
	step     atomic.Pointer[string] // what its upload is doing, for a report
	// cancel makes the client cancel the upload once its first chunk is
	// acknowledged, instead of completing it.
	cancel bool
}

type chunkPlan struct {
	Index  int `json:"chunkIndex"`
	URL    string
	Offset int64
	Size   int64
}

// faultFiles makes n files of new random bytes behind a video header:
// most of 5–6 MiB (two chunks of a CHUNKED upload), every fourth
// under 1 MiB (SINGLE).
func faultFiles(n int, seed uint64) []*faultFile {
	rng := rand.New(rand.NewPCG(seed, 11))
	files := make([]*faultFile, n)
	for i := range files {
		size := 5<<20 + 64<<10 + rng.IntN(1<<20)
		if i%4 == 3 {
			size = 100<<10 + rng.IntN(800<<10)
		}
		data := randomVideo(size, rng.Uint64())
		files[i] = &faultFile{name: fmt.Sprintf("f%02d-%d.mp4", i, seed), data: data, sum: sha256hex(data), acked: map[int]bool{}}
	}
	return files
}

// answer is a failed request: no answer at all, or an error answer.
type answer struct {
	what       string
	status     int    // HTTP status, 0 when no answer came
	code       string // extensions.code or the data plane's error code
	message    string
	retryAfter time.Duration
}

func (a *answer) Error() string {
	if a.status == 0 {
		return fmt.Sprintf("%s: no answer: %s", a.what, a.message)
	}
	return fmt.Sprintf("%s: HTTP %d %s: %s", a.what, a.status, a.code, a.message)
}

// retryable is a real client's rule: no answer, 5xx or 429, or a code
// that says try again. UNAUTHENTICATED and INTERNAL are retried too:
// today spool answers them while its database is cut (a token's user
// cannot be read; a chunk cannot be recorded), and a client that gave
// up on them would fail uploads a moment's outage should only delay.
// The notes keep them apart, to show what spool answered.
func (a *answer) retryable() bool {
	switch {
	case a.status == 0, a.status >= 500, a.status == http.StatusTooManyRequests:
		return true
	}
	switch a.code {
	case "UNAVAILABLE", "STORAGE_UNAVAILABLE", "RATE_LIMITED", "INTERNAL", "UNAUTHENTICATED":
		return true
	}
	return false
}

// retryAfterOf reads a Retry-After of whole seconds.
func retryAfterOf(h http.Header) time.Duration {
	s, err := strconv.Atoi(h.Get("Retry-After"))
	if err != nil || s < 0 {
		return 0
	}
	return time.Duration(s) * time.Second
}

// note counts a retryable answer.
func (c *faultClient) note(a *answer) {
	key := fmt.Sprintf("%s: HTTP %d %s", a.what, a.status, a.code)
	if a.status == 0 {
		key = a.what + ": no answer"
	}
	c.mu.Lock()
	c.notes[key]++
	c.mu.Unlock()
}

// noted returns the notes whose key starts with prefix, summed.
func (c *faultClient) noted(prefix string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for k, v := range c.notes {
		if strings.HasPrefix(k, prefix) {
			n += v
		}
	}
	return n
}

func (c *faultClient) describeNotes() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	keys := make([]string, 0, len(c.notes))
	for k := range c.notes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "\n  %4d × %s", c.notes[k], k)
	}
	return b.String()
}

// giveUpAfter bounds one step's retries: a hang guard far above any
// fault's duration, not a timing assertion.
const giveUpAfter = 2 * time.Minute

// do runs try until it succeeds, or fails in a way not worth retrying,
// or giveUpAfter or the subtest's budget passes. Each attempt goes to the
// next replica that is up.
func (c *faultClient) do(try func(base string) *answer) error {
	deadline := time.Now().Add(giveUpAfter)
	wait := 100 * time.Millisecond
	for n := rand.IntN(2); ; n++ {
		a := try(c.env.pick(n))
		if a == nil {
			return nil
		}
		if !a.retryable() || time.Now().After(deadline) {
			return a
		}
		c.note(a)
		pause := wait
		if a.retryAfter > 0 {
			// Honoured, within reason for a test.
			pause = min(a.retryAfter, 3*time.Second)
		}
		select {
		case <-time.After(pause):
		case <-c.ctx.Done():
			return fmt.Errorf("the subtest's budget (%v) ran out; the last answer: %w", subtestBudget, a)
		}
		wait = min(2*wait, time.Second)
	}
}

// at notes what f's upload is doing now.
func (f *faultFile) at(step string) { f.step.Store(&step) }

// doing says what f's upload was last doing.
func (f *faultFile) doing() string {
	if s := f.step.Load(); s != nil {
		return *s
	}
	return "not started"
}

// gql sends one GraphQL operation to base.
func (c *faultClient) gql(base, what, query string, vars map[string]any, out any) *answer {
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequestWithContext(c.ctx, http.MethodPost, base+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.env.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return &answer{what: what, message: err.Error()}
	}
	defer resp.Body.Close()
	a := &answer{what: what, status: resp.StatusCode, retryAfter: retryAfterOf(resp.Header)}
	var res struct {
		Data   json.RawMessage `json:"data"`
		Errors []struct {
			Message    string `json:"message"`
			Extensions struct {
				Code string `json:"code"`
			} `json:"extensions"`
		} `json:"errors"`
	}
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		a.status, a.message = 0, err.Error() // the answer was cut
		return a
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		a.message = fmt.Sprintf("not JSON: %.200s", raw)
		return a
	}
	if len(res.Errors) > 0 {
		a.code, a.message = res.Errors[0].Extensions.Code, res.Errors[0].Message
		return a
	}
	if resp.StatusCode != http.StatusOK {
		a.message = fmt.Sprintf("%.200s", raw)
		return a
	}
	if err := json.Unmarshal(res.Data, out); err != nil {
		a.message = fmt.Sprintf("decoding %s: %v", res.Data, err)
		return a
	}
	return nil
}

// onBase points a URL spool handed out at base instead of its replica.
func onBase(u, base string) string {
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	return base + p.RequestURI()
}

// upload sends f from start to finish: plan, subscribe, chunks,
// complete. It sets f.err if it gave up.
func (c *faultClient) upload(f *faultFile) {
	defer func() {
		if f.err == nil {
			f.at("done")
		}
	}()
	f.at("initBatch")
	if f.err = c.plan(f); f.err != nil {
		return
	}
	f.sub = c.subscribe(f.id)
	for _, ch := range f.chunks {
		f.at(fmt.Sprintf("chunk %d of %d", ch.Index, len(f.chunks)))
		if f.err = c.put(f, ch); f.err != nil {
			return
		}
		if f.cancel {
			f.at("cancel")
			f.err = c.cancelUpload(f)
			return
		}
	}
	if c.hooks.beforeComplete != nil {
		f.at("the test's hook before complete")
		c.hooks.beforeComplete(f)
	}
	f.at("complete")
	f.err = c.complete(f)
}

// plan runs initBatch for f alone. Its fingerprint makes a retry whose
// first attempt did reach the database resume that upload rather than
// start another.
func (c *faultClient) plan(f *faultFile) error {
	return c.do(func(base string) *answer {
		var plan struct {
			InitBatch struct {
				Uploads []struct {
					ID        string
					ChunkUrls []chunkPlan
				}
			}
		}
		a := c.gql(base, "initBatch", `mutation($f: [FileInput!]!) { initBatch(input: {files: $f}) { uploads { id chunkUrls { chunkIndex url offset size } } } }`,
			map[string]any{"f": []any{map[string]any{"fileName": f.name, "size": len(f.data), "mimeType": "video/mp4",
				"sha256": f.sum, "fingerprint": f.name}}}, &plan)
		if a != nil {
			return a
		}
		if len(plan.InitBatch.Uploads) != 1 {
			return &answer{what: "initBatch", status: 200, code: "TEST", message: fmt.Sprintf("%d uploads planned, want 1", len(plan.InitBatch.Uploads))}
		}
		up := plan.InitBatch.Uploads[0]
		f.id, f.chunks = up.ID, up.ChunkUrls
		return nil
	})
}

// put sends one chunk until spool acknowledges it.
func (c *faultClient) put(f *faultFile, ch chunkPlan) error {
	body := f.data[ch.Offset : ch.Offset+ch.Size]
	sum := "sha256:" + sha256hex(body)
	if c.hooks.cutFirstPut && ch.Index == 0 {
		if err := rawPutHalf(onBase(ch.URL, c.env.pick(0)), body); err != nil {
			return fmt.Errorf("the cut PUT of %s: %w", f.name, err)
		}
	}
	err := c.do(func(base string) *answer {
		u := onBase(ch.URL, base) + "&checksum=" + url.QueryEscape(sum)
		var r io.Reader = bytes.NewReader(body)
		if c.hooks.slowBodies {
			r = &slowBody{b: body, half: func() {
				if c.hooks.midBody != nil {
					c.hooks.midBody(f, ch.Index)
				}
			}}
		}
		req, _ := http.NewRequestWithContext(c.ctx, http.MethodPut, u, r)
		req.ContentLength = int64(len(body))
		resp, err := c.http.Do(req)
		if err != nil {
			return &answer{what: "chunk PUT", message: err.Error()}
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		if err != nil {
			return &answer{what: "chunk PUT", message: err.Error()}
		}
		if resp.StatusCode == http.StatusOK {
			return nil
		}
		var e struct {
			Error struct{ Code, Message string }
		}
		_ = json.Unmarshal(raw, &e)
		return &answer{what: "chunk PUT", status: resp.StatusCode, code: e.Error.Code, message: e.Error.Message, retryAfter: retryAfterOf(resp.Header)}
	})
	if err != nil {
		return err
	}
	f.acked[ch.Index] = true
	if c.hooks.acked != nil {
		c.hooks.acked(c.puts.Add(1))
	}
	return nil
}

// complete calls complete until it returns the media file. INCOMPLETE
// means spool lacks chunks: retry(uploadId) lists them; an acknowledged
// one among them is lost (noted in f.lost); all are sent again.
// ALREADY_FINISHED while a cut-off complete is still assembling is
// waited out like a retryable answer.
func (c *faultClient) complete(f *faultFile) error {
	for range 5 {
		var incomplete bool
		err := c.do(func(base string) *answer {
			var done struct{ Complete struct{ ID, URL string } }
			a := c.gql(base, "complete", `mutation($id: ID!) { complete(uploadId: $id) { id url } }`, map[string]any{"id": f.id}, &done)
			switch {
			case a == nil:
				f.mediaID, f.mediaURL = done.Complete.ID, done.Complete.URL
			case a.code == "INCOMPLETE":
				incomplete = true
				return nil
			case a.code == "ALREADY_FINISHED":
				a.status = http.StatusConflict
				a.code = "ALREADY_FINISHED (retried)"
				c.note(a)
				a.code = "UNAVAILABLE" // wait and ask again
			}
			return a
		})
		if err != nil || !incomplete {
			return err
		}
		var missing []chunkPlan
		err = c.do(func(base string) *answer {
			var r struct{ Retry []chunkPlan }
			a := c.gql(base, "retry", `mutation($id: ID!) { retry(uploadId: $id) { chunkIndex url offset size } }`, map[string]any{"id": f.id}, &r)
			missing = r.Retry
			return a
		})
		if err != nil {
			return err
		}
		for _, ch := range missing {
			if f.acked[ch.Index] {
				f.lost = append(f.lost, ch.Index)
			}
			f.at(fmt.Sprintf("complete: sending chunk %d again", ch.Index))
			if err := c.put(f, ch); err != nil {
				return err
			}
		}
	}
	return fmt.Errorf("complete of %s: still INCOMPLETE after sending the missing chunks 5 times", f.name)
}

// cancelUpload cancels f. ALREADY_FINISHED is success when the record
// says CANCELLED: an earlier attempt did cancel, and its answer was lost.
func (c *faultClient) cancelUpload(f *faultFile) error {
	return c.do(func(base string) *answer {
		var r struct{ Cancel struct{ Status string } }
		a := c.gql(base, "cancel", `mutation($id: ID!) { cancel(uploadId: $id) { status } }`, map[string]any{"id": f.id}, &r)
		if a != nil && a.code == "ALREADY_FINISHED" {
			if rec, err := c.record(f.id); err == nil && rec.Status == "CANCELLED" {
				return nil
			}
		}
		return a
	})
}

// download fetches f's media (through a replica that is up) and returns
// its bytes.
func (c *faultClient) download(f *faultFile) ([]byte, error) {
	var got []byte
	err := c.do(func(base string) *answer {
		req, _ := http.NewRequestWithContext(c.ctx, http.MethodGet, onBase(f.mediaURL, base), nil)
		resp, err := c.http.Do(req)
		if err != nil {
			return &answer{what: "download", message: err.Error()}
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return &answer{what: "download", message: err.Error()}
		}
		if resp.StatusCode != http.StatusOK {
			return &answer{what: "download", status: resp.StatusCode, message: fmt.Sprintf("%.200s", b), retryAfter: retryAfterOf(resp.Header)}
		}
		got = b
		return nil
	})
	return got, err
}

// record is what spool's database says of an upload, through the API.
type record struct {
	Status string
	Media  *struct{ Status string }
}

func (c *faultClient) record(id string) (record, error) {
	var r struct{ Upload record }
	err := c.do(func(base string) *answer {
		return c.gql(base, "upload query", `query($id: ID!) { upload(id: $id) { status media { status } } }`, map[string]any{"id": id}, &r)
	})
	return r.Upload, err
}

// slowBody is a chunk body that pauses 20 ms after each 256 KiB (a
// 5 MiB chunk takes about 0.4 s, whatever size the reader's buffer is);
// half runs once half of it has been read.
type slowBody struct {
	b      []byte
	off    int
	half   func()
	halved bool
}

func (s *slowBody) Read(p []byte) (int, error) {
	if s.off >= len(s.b) {
		return 0, io.EOF
	}
	if s.off > 0 && s.off%(256<<10) == 0 {
		time.Sleep(20 * time.Millisecond)
	}
	end := min(len(s.b), s.off+len(p), (s.off/(256<<10)+1)*(256<<10))
	n := copy(p, s.b[s.off:end])
	s.off += n
	if !s.halved && s.off >= len(s.b)/2 {
		s.halved = true
		s.half()
	}
	return n, nil
}

// progressEvent is one uploadProgress event.
type progressEvent struct {
	Status         string
	UploadedChunks int
	TotalChunks    int
	MediaStatus    *string
}

func (p progressEvent) String() string {
	ms := "-"
	if p.MediaStatus != nil {
		ms = *p.MediaStatus
	}
	return fmt.Sprintf("%s %d/%d media %s", p.Status, p.UploadedChunks, p.TotalChunks, ms)
}

// final reports whether the subscription may end after p: the upload
// is terminal and its media, if any, no longer PROCESSING (API.md).
func (p progressEvent) final() bool {
	switch p.Status {
	case "COMPLETED", "FAILED", "CANCELLED", "EXPIRED":
		return p.MediaStatus == nil || *p.MediaStatus != "PROCESSING"
	}
	return false
}

// faultSub is one upload's uploadProgress subscriber over
// graphql-transport-ws, reconnecting (to a replica that is up) when its
// connection drops or the server ends the operation with an error, as
// graphql-ws clients do with retryAttempts set.
type faultSub struct {
	done       chan struct{}
	mu         sync.Mutex
	last       progressEvent
	events     int
	reconnects int
	early      int   // completes that came before a final event
	err        error // set if it gave up
}

func (c *faultClient) subscribe(id string) *faultSub {
	s := &faultSub{done: make(chan struct{})}
	go func() {
		defer close(s.done)
		deadline := time.Now().Add(3 * time.Minute)
		for n := 0; ; n++ {
			ended, err := c.subscribeOnce(c.env.pick(n), id, s)
			if ended {
				return
			}
			if time.Now().After(deadline) || c.ctx.Err() != nil {
				s.mu.Lock()
				s.err = fmt.Errorf("gave up after %d reconnects; last error: %v", s.reconnects, err)
				s.mu.Unlock()
				return
			}
			s.mu.Lock()
			s.reconnects++
			s.mu.Unlock()
			time.Sleep(200 * time.Millisecond)
		}
	}()
	return s
}

// subscribeOnce runs the subscription on one connection; it returns
// true once the server completed it after a final event.
func (c *faultClient) subscribeOnce(base, id string, s *faultSub) (bool, error) {
	d := websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}, HandshakeTimeout: 5 * time.Second}
	conn, _, err := d.DialContext(c.ctx, strings.Replace(base, "http", "ws", 1)+"/graphql", nil)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	// The budget's end closes the connection, which ends the read below.
	stop := context.AfterFunc(c.ctx, func() { conn.Close() })
	defer stop()
	type message struct {
		ID      string          `json:"id,omitempty"`
		Type    string          `json:"type"`
		Payload json.RawMessage `json:"payload,omitempty"`
	}
	send := func(m any) error {
		_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		return conn.WriteJSON(m)
	}
	if err := send(map[string]any{"type": "connection_init", "payload": map[string]string{"Authorization": "Bearer " + c.env.token}}); err != nil {
		return false, err
	}
	subscribed := false
	for {
		// A hang guard: spool pings idle sockets well within it.
		_ = conn.SetReadDeadline(time.Now().Add(time.Minute))
		var m message
		if err := conn.ReadJSON(&m); err != nil {
			return false, err
		}
		switch m.Type {
		case "ping":
			if err := send(map[string]string{"type": "pong"}); err != nil {
				return false, err
			}
		case "connection_ack":
			if !subscribed {
				subscribed = true
				err := send(map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{
					"query":     `subscription($id: ID!) { uploadProgress(uploadId: $id) { status uploadedChunks totalChunks mediaStatus } }`,
					"variables": map[string]any{"id": id}}})
				if err != nil {
					return false, err
				}
			}
		case "next":
			var p struct {
				Data *struct {
					UploadProgress progressEvent
				}
				Errors []struct{ Message string }
			}
			if err := json.Unmarshal(m.Payload, &p); err != nil {
				return false, err
			}
			if len(p.Errors) > 0 || p.Data == nil {
				return false, fmt.Errorf("an event with errors: %s", m.Payload)
			}
			s.mu.Lock()
			s.last, s.events = p.Data.UploadProgress, s.events+1
			s.mu.Unlock()
		case "error":
			return false, fmt.Errorf("the operation failed: %s", m.Payload)
		case "complete":
			s.mu.Lock()
			final := s.last.final()
			if !final {
				s.early++
			}
			s.mu.Unlock()
			if final {
				return true, nil
			}
			return false, errors.New("completed before a final event")
		}
	}
}

// wait waits for the subscriber to end and returns its last event.
func (s *faultSub) wait() (progressEvent, error) {
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last, s.err
}
