package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestDrainOnSIGTERM is issue 11's graceful drain, from outside: two
// replicas on PostgreSQL, Redis and the GCS emulator take 20 uploads of
// three chunks each, every chunk sent slowly (about 3 s) to one replica or
// the other, each upload watched by a graphql-transport-ws subscriber on
// one replica or the other. Once a third of the chunks are acknowledged,
// replica A gets a real SIGTERM. The test's client plays the load
// balancer: it polls /readyz on both replicas, sends no new request to a
// replica whose /readyz answered 503 (or that refuses connections), and
// retries a failed request on the other; a subscriber whose socket closes
// with 1001 reconnects to the other replica and subscribes again.
//
// It asserts that /readyz on A answered 503 while A still accepted
// connections (a 503 seen before the first refused connection); that
// every request sent to A got an answer or was refused at connect (none
// was cut or reset, keep-alive connections included), with at least one
// chunk PUT answered after A stopped listening (so requests in flight at
// the listener's close were waited for); that every websocket on A was
// closed with 1001, never dropped; that every upload completes (through
// B) with its exact bytes (SHA-256), so no acknowledged chunk was lost;
// that every subscriber ends at COMPLETED; and that A exits 0 (its
// requests finished within --shutdown-timeout).
func TestDrainOnSIGTERM(t *testing.T) {
	start := time.Now()
	w := newWalkthrough(t)
	const grace = 1500 * time.Millisecond
	args := append(w.engines, "--drain-grace", grace.String(), "--shutdown-timeout", "60s")
	a, b := w.serve(t, args...), w.serve(t, args...)
	a.stopped = true // this test stops A itself, and checks how
	t.Cleanup(func() {
		if a.cmd.ProcessState == nil {
			_ = a.cmd.Process.Kill()
			<-a.done
		}
	})
	token := w.token(t, "drainer")
	lb := newBalancer(t, token, a, b)
	defer lb.stop()

	const uploads = 20
	var acked atomic.Int32
	sigterm := make(chan struct{})
	var once sync.Once
	results := make([]drainUpload, uploads)
	var wg sync.WaitGroup
	for i := range uploads {
		// Three chunks of 5 MiB, 5 MiB and 64 KiB: spool's smallest
		// chunks, and a short last one keeps the three.
		results[i].video = randomVideo(10<<20+64<<10, uint64(1000+i))
		wg.Go(func() {
			r := &results[i]
			lb.upload(i, r, func() {
				if acked.Add(1) == uploads { // a third of the 60 chunks
					once.Do(func() { close(sigterm) })
				}
			})
		})
	}
	select {
	case <-sigterm:
	case <-time.After(5 * time.Minute): // a hang guard
		t.Fatal("20 chunks were not acknowledged within 5 minutes")
	}
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	lb.termAt.Store(time.Now().UnixNano())
	t.Logf("SIGTERM to A %v after the start", time.Since(start).Round(time.Millisecond))
	wg.Wait()
	t.Logf("every upload done %v after the start", time.Since(start).Round(time.Millisecond))
	select {
	case <-a.done:
	case <-time.After(3 * time.Minute): // a hang guard
		t.Fatalf("replica A still runs 3 minutes after SIGTERM; its log:\n%s", a.log)
	}
	lb.stop()
	t.Logf("A exited %v after the start", time.Since(start).Round(time.Millisecond))

	if code := a.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("replica A exited %d after SIGTERM, want 0; its log:\n%s", code, a.log)
	}
	first503, firstRefused := lb.readyzA()
	switch {
	case first503.IsZero():
		t.Errorf("/readyz on A never answered 503 after SIGTERM")
	case firstRefused.IsZero():
		t.Errorf("A's port never refused a connection after SIGTERM")
	case !first503.Before(firstRefused):
		t.Errorf("/readyz on A first answered 503 at %v, after its port closed at %v: a load balancer could not see it",
			first503.Format(time.StampMicro), firstRefused.Format(time.StampMicro))
	default:
		t.Logf("/readyz on A answered 503 for %v before its port closed", firstRefused.Sub(first503).Round(time.Millisecond))
	}
	if lb.readyzOKAfterTerm.Load() {
		t.Errorf("/readyz on A answered 200 after it answered 503")
	}
	lb.mu.Lock()
	for _, e := range lb.cut {
		t.Errorf("a request sent to A got no answer: %s", e)
	}
	late := lb.answeredAfterClose
	lb.mu.Unlock()
	if late == 0 {
		t.Errorf("no chunk PUT to A was answered after A stopped listening: none was in flight at the listener's close, so the test proved nothing about in-flight requests")
	}
	t.Logf("%d chunk PUTs to A were answered after A stopped listening", late)
	var goingAway int
	for i, r := range results {
		switch {
		case r.err != nil:
			t.Errorf("upload %d: %v", i, r.err)
			continue
		case r.sha != sha256hex(r.video):
			t.Errorf("upload %d: the stored file's SHA-256 is %s, want %s", i, r.sha, sha256hex(r.video))
		}
		sub := r.sub
		if sub.last != "COMPLETED" {
			t.Errorf("upload %d: the subscriber's last status is %q, want COMPLETED", i, sub.last)
		}
		for _, c := range sub.closes {
			if c.replica == a && c.code != websocket.CloseGoingAway {
				t.Errorf("upload %d: a websocket on A ended with %d %q, want 1001 (going away)", i, c.code, c.reason)
			}
			if c.replica == b {
				t.Errorf("upload %d: a websocket on B ended with %d %q before COMPLETED", i, c.code, c.reason)
			}
			if c.code == websocket.CloseGoingAway {
				goingAway++
			}
		}
	}
	if goingAway == 0 {
		t.Errorf("no websocket was closed with 1001: no subscriber was on A at the drain")
	}
	t.Logf("%d websockets on A closed with 1001 and reconnected to B", goingAway)
}

// drainUpload is one upload's outcome.
type drainUpload struct {
	video []byte
	sha   string // of the completed file, downloaded
	err   error
	sub   subscriberLog
}

// subscriberLog is what one upload's subscriber saw.
type subscriberLog struct {
	last   string // the last status received
	closes []wsClose
}

type wsClose struct {
	replica *replica
	code    int
	reason  string
}

// balancer is the test's client, which does what a load balancer and a
// retrying client do together: it routes each request to a replica whose
// /readyz it last saw answer 200, and retries one that failed on the
// other replica.
type balancer struct {
	t        *testing.T
	token    string
	replicas []*replica
	a        *replica // the replica that is drained
	client   *http.Client
	down     []atomic.Bool // by replica: /readyz 503 or connection refused
	done     chan struct{}
	stopOnce sync.Once
	polling  sync.WaitGroup
	termAt   atomic.Int64 // when A got SIGTERM, Unix ns

	readyzOKAfterTerm atomic.Bool

	mu                 sync.Mutex
	a503, aRefused     time.Time // first seen on A
	cut                []string  // requests to A that got no answer
	answeredAfterClose int       // chunk PUTs A answered after it stopped listening
}

func newBalancer(t *testing.T, token string, a, b *replica) *balancer {
	lb := &balancer{
		t: t, token: token, replicas: []*replica{a, b}, a: a,
		// One transport for every request, so keep-alive connections
		// are reused as a real client's would be.
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
		down:   make([]atomic.Bool, 2),
		done:   make(chan struct{}),
	}
	for i, r := range lb.replicas {
		lb.polling.Go(func() { lb.poll(i, r) })
	}
	return lb
}

func (lb *balancer) stop() {
	lb.stopOnce.Do(func() { close(lb.done) })
	lb.polling.Wait()
}

// poll asks r's /readyz every 20 ms, on a connection of its own each
// time (as health checkers do), and marks r down at a 503 or a refused
// connection, and up again at a 200, as a load balancer does: on this
// 2-CPU machine under -race a replica's /readyz can answer 503 for a
// moment (an engine's probe outlasting its 3 s), and a replica marked
// down for good would leave none for the uploads still running. A 200
// from A after its 503s following SIGTERM is an error instead.
func (lb *balancer) poll(i int, r *replica) {
	probe := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-lb.done:
			return
		case <-tick.C:
		}
		resp, err := probe.Get(r.url + "/readyz")
		now := time.Now()
		if err != nil {
			if !lb.down[i].Swap(true) {
				lb.t.Logf("%s is down: /readyz: %v", r.url, err)
			}
			if r == lb.a && lb.termAt.Load() != 0 {
				lb.mu.Lock()
				if lb.aRefused.IsZero() {
					lb.aRefused = now
				}
				lb.mu.Unlock()
			}
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			if !lb.down[i].Swap(true) && (r != lb.a || lb.termAt.Load() == 0) {
				lb.t.Logf("%s is down: /readyz answered 503 %s", r.url, bytes.TrimSpace(body))
			}
			if r == lb.a && lb.termAt.Load() != 0 {
				lb.mu.Lock()
				if lb.a503.IsZero() {
					lb.a503 = now
				}
				lb.mu.Unlock()
			}
			continue
		}
		if resp.StatusCode != http.StatusOK {
			continue
		}
		if r == lb.a {
			lb.mu.Lock()
			drained := !lb.a503.IsZero()
			lb.mu.Unlock()
			if drained {
				lb.readyzOKAfterTerm.Store(true)
				continue
			}
		}
		if lb.down[i].Swap(false) {
			lb.t.Logf("%s is up again: /readyz answered 200", r.url)
		}
	}
}

func (lb *balancer) readyzA() (first503, firstRefused time.Time) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	return lb.a503, lb.aRefused
}

// pick returns the replica for request n: the n-th in turn among those
// not down. While none is up (B's /readyz can answer 503 for a moment
// while A is gone) it waits, as a load balancer queues a request, and
// returns nil only after a minute without one (a hang guard).
func (lb *balancer) pick(n int) (*replica, int) {
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		for k := range lb.replicas {
			i := (n + k) % len(lb.replicas)
			if !lb.down[i].Load() {
				return lb.replicas[i], i
			}
		}
		if time.Now().After(deadline) {
			return nil, -1
		}
	}
}

// send makes the request that build returns for a replica, on the n-th
// replica in turn, and on the other if it fails (no answer, or 503 from
// a replica that is going), until one answers; it returns the answer and
// its body. slow marks a chunk PUT, whose answers are counted.
func (lb *balancer) send(n int, build func(base string) (*http.Request, error), slow bool) (*http.Response, []byte, error) {
	for attempt := 0; attempt < 50; attempt++ {
		r, i := lb.pick(n + attempt)
		if r == nil {
			return nil, nil, errors.New("no replica was up for a minute")
		}
		req, err := build(r.url)
		if err != nil {
			return nil, nil, err
		}
		resp, err := lb.client.Do(req)
		if err != nil {
			if r == lb.a && !refusedAtConnect(err) {
				lb.mu.Lock()
				lb.cut = append(lb.cut, fmt.Sprintf("%s %s: %v", req.Method, req.URL.Path, err))
				lb.mu.Unlock()
			}
			if !lb.down[i].Swap(true) {
				lb.t.Logf("%s is down: %s %s: %v", r.url, req.Method, req.URL.Path, err)
			}
			continue
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			if r == lb.a {
				lb.mu.Lock()
				lb.cut = append(lb.cut, fmt.Sprintf("%s %s: reading the answer: %v", req.Method, req.URL.Path, err))
				lb.mu.Unlock()
			}
			continue
		}
		if r == lb.a && slow {
			lb.mu.Lock()
			if !lb.aRefused.IsZero() {
				lb.answeredAfterClose++
			}
			lb.mu.Unlock()
		}
		if resp.StatusCode == http.StatusServiceUnavailable {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		return resp, body, nil
	}
	return nil, nil, errors.New("no replica answered in 50 tries")
}

// refusedAtConnect reports an error of a request that never reached a
// server: the connection was refused.
func refusedAtConnect(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// on returns u with its scheme and host those of base: every replica
// serves every URL any of them signed.
func on(base, u string) (string, error) {
	b, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	p, err := url.Parse(u)
	if err != nil {
		return "", err
	}
	p.Scheme, p.Host = b.Scheme, b.Host
	return p.String(), nil
}

// graphQL runs an operation through the balancer.
func (lb *balancer) graphQL(n int, query string, vars map[string]any, out any) error {
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	resp, b, err := lb.send(n, func(base string) (*http.Request, error) {
		req, err := http.NewRequest(http.MethodPost, base+"/graphql", bytes.NewReader(body))
		if err == nil {
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+lb.token)
		}
		return req, err
	}, false)
	if err != nil {
		return err
	}
	var res struct {
		Data   json.RawMessage `json:"data"`
		Errors []struct {
			Message string `json:"message"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		return fmt.Errorf("decoding the answer (HTTP %d): %w", resp.StatusCode, err)
	}
	if len(res.Errors) > 0 {
		return fmt.Errorf("GraphQL errors: %+v", res.Errors)
	}
	return json.Unmarshal(res.Data, out)
}

// upload plans r.video, subscribes to its progress, sends its chunks
// slowly through the balancer (calling acked after each acknowledged
// one), completes it and downloads the file.
func (lb *balancer) upload(i int, r *drainUpload, acked func()) {
	var plan struct {
		InitBatch struct{ Uploads []plannedUpload }
	}
	err := lb.graphQL(i, `mutation($f: [FileInput!]!) { initBatch(input: {files: $f}) { uploads { id chunkUrls { url offset size } } } }`,
		map[string]any{"f": []any{map[string]any{"fileName": "clip.mp4", "size": len(r.video), "mimeType": "video/mp4"}}}, &plan)
	if err != nil {
		r.err = fmt.Errorf("initBatch: %w", err)
		return
	}
	up := plan.InitBatch.Uploads[0]
	subDone := make(chan struct{})
	go func() {
		defer close(subDone)
		r.sub = lb.subscribe(i, up.ID)
	}()
	for k, c := range up.ChunkUrls {
		chunk := r.video[c.Offset : c.Offset+c.Size]
		resp, body, err := lb.send(i+k, func(base string) (*http.Request, error) {
			u, err := on(base, c.URL)
			if err != nil {
				return nil, err
			}
			req, err := http.NewRequest(http.MethodPut, u, &slowReader{b: chunk})
			if err == nil {
				req.ContentLength = int64(len(chunk))
			}
			return req, err
		}, true)
		if err != nil {
			r.err = fmt.Errorf("chunk %d: %w", k, err)
			return
		}
		if resp.StatusCode != http.StatusOK {
			r.err = fmt.Errorf("chunk %d: HTTP %d %s", k, resp.StatusCode, body)
			return
		}
		acked()
	}
	var done struct{ Complete struct{ URL string } }
	// complete may be retried: on an upload already completed it answers
	// with the same media file.
	if err := lb.graphQL(i, `mutation($id: ID!) { complete(uploadId: $id) { url } }`, map[string]any{"id": up.ID}, &done); err != nil {
		r.err = fmt.Errorf("complete: %w", err)
		return
	}
	resp, file, err := lb.send(i, func(base string) (*http.Request, error) {
		u, err := on(base, done.Complete.URL)
		if err != nil {
			return nil, err
		}
		return http.NewRequest(http.MethodGet, u, nil)
	}, false)
	if err != nil || resp.StatusCode != http.StatusOK {
		r.err = fmt.Errorf("download: %v (%v)", err, resp)
		return
	}
	r.sha = sha256hex(file)
	select {
	case <-subDone:
	case <-time.After(2 * time.Minute): // a hang guard
		r.err = fmt.Errorf("the subscriber of %s saw no COMPLETED within 2 minutes of complete", up.ID)
	}
}

// slowReader gives its bytes 256 KiB at a time, one piece every 150 ms:
// a 5 MiB chunk takes about 3 s, so PUTs are in flight when the drained
// replica stops listening. It paces by bytes, not by calls: net/http
// reads a request body 32 KiB at a time, and one read per 150 ms made a
// chunk take 24 s.
type slowReader struct {
	b     []byte
	sent  int
	start time.Time
}

const (
	slowPiece = 256 << 10
	slowEvery = 150 * time.Millisecond
)

func (s *slowReader) Read(p []byte) (int, error) {
	if len(s.b) == 0 {
		return 0, io.EOF
	}
	if s.start.IsZero() {
		s.start = time.Now()
	}
	// Piece k is due k×150 ms after the first read.
	time.Sleep(time.Until(s.start.Add(time.Duration(s.sent/slowPiece) * slowEvery)))
	n := copy(p[:min(len(p), slowPiece-s.sent%slowPiece)], s.b)
	s.b = s.b[n:]
	s.sent += n
	return n, nil
}

// subscribe follows uploadId's progress over graphql-transport-ws, on
// the n-th replica in turn, until a COMPLETED event; at a close it
// reconnects to a replica that is up and subscribes again.
func (lb *balancer) subscribe(n int, uploadID string) subscriberLog {
	var log subscriberLog
	for attempt := 0; attempt < 10; attempt++ {
		r, _ := lb.pick(n + attempt)
		if r == nil {
			return log
		}
		status, closed := lb.follow(r, uploadID)
		if status != "" {
			log.last = status
		}
		if closed == nil {
			return log
		}
		log.closes = append(log.closes, *closed)
	}
	return log
}

// follow subscribes on r and reads until COMPLETED (nil close) or until
// the socket closes.
func (lb *balancer) follow(r *replica, uploadID string) (last string, closed *wsClose) {
	d := websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}, HandshakeTimeout: 10 * time.Second}
	conn, _, err := d.Dial(strings.Replace(r.url, "http", "ws", 1)+"/graphql", nil)
	if err != nil {
		return "", &wsClose{replica: r, code: -1, reason: "dial: " + err.Error()}
	}
	defer conn.Close()
	var writeMu sync.Mutex
	write := func(v any) error {
		writeMu.Lock()
		defer writeMu.Unlock()
		return conn.WriteJSON(v)
	}
	if err := write(map[string]any{"type": "connection_init", "payload": map[string]any{"Authorization": "Bearer " + lb.token}}); err != nil {
		return "", &wsClose{replica: r, code: -1, reason: "connection_init: " + err.Error()}
	}
	subscribed := false
	for {
		// A hang guard: a minute without a message (the server pings
		// every 25 s).
		_ = conn.SetReadDeadline(time.Now().Add(time.Minute))
		var m struct {
			Type    string          `json:"type"`
			Payload json.RawMessage `json:"payload"`
		}
		if err := conn.ReadJSON(&m); err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return last, &wsClose{replica: r, code: ce.Code, reason: ce.Text}
			}
			return last, &wsClose{replica: r, code: websocket.CloseAbnormalClosure, reason: err.Error()}
		}
		switch m.Type {
		case "connection_ack":
			if !subscribed {
				subscribed = true
				err = write(map[string]any{"id": "p", "type": "subscribe", "payload": map[string]any{
					"query":     `subscription($id: ID!) { uploadProgress(uploadId: $id) { status } }`,
					"variables": map[string]any{"id": uploadID},
				}})
			}
		case "ping":
			err = write(map[string]string{"type": "pong"})
		case "next":
			var p struct {
				Data struct {
					UploadProgress struct{ Status string }
				}
			}
			if json.Unmarshal(m.Payload, &p) == nil && p.Data.UploadProgress.Status != "" {
				last = p.Data.UploadProgress.Status
				if last == "COMPLETED" {
					return last, nil
				}
			}
		case "error":
			return last, &wsClose{replica: r, code: -1, reason: "subscription error: " + string(m.Payload)}
		}
		if err != nil {
			return last, &wsClose{replica: r, code: -1, reason: err.Error()}
		}
	}
}

// A second SIGTERM during the drain exits at once, with code 130, rather
// than waiting out --drain-grace (here an hour).
func TestSecondSignalEndsTheDrain(t *testing.T) {
	w := &walkthrough{env: append(userEnv(), runMainEnv+"=1", "SPOOL_JWT_SECRET="+goodSecret)}
	r := w.serve(t, "--drain-grace", "1h")
	r.stopped = true
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Draining: /readyz answers 503 and the listener still serves it.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		status, _ := fetch(t, http.MethodGet, r.url+"/readyz", nil, nil)
		if status == http.StatusServiceUnavailable {
			break
		}
		if time.Now().After(deadline) { // a hang guard
			t.Fatalf("/readyz still answers %d a minute after SIGTERM", status)
		}
	}
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.done:
	case <-time.After(time.Minute): // a hang guard; the grace is an hour
		_ = r.cmd.Process.Kill()
		<-r.done
		t.Fatalf("spool still ran a minute after the second SIGTERM; its log:\n%s", r.log)
	}
	if code := r.cmd.ProcessState.ExitCode(); code != 130 {
		t.Errorf("exit code %d after a second SIGTERM, want 130; log:\n%s", code, r.log)
	}
	if !strings.Contains(r.log.String(), "second signal") {
		t.Errorf("the log does not say the second signal cut the drain short:\n%s", r.log)
	}
}
