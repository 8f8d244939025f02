package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spoolhq/spool/internal/client"
)

// closedAddr returns a loopback address nothing listens on. A socket
// stays bound to it, not listening, for the test: a port freed instead
// could be handed to the next listener (hangUpAddr's, once, in CI).
func closedAddr(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
}

// hangUpAddr returns the address of a listener that reads each request's
// first bytes and closes the connection without an answer.
func hangUpAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = conn.Read(make([]byte, 512))
			conn.Close()
		}
	}()
	return l.Addr().String()
}

// A request that gets no answer says which server did not answer and
// why, in words, and never repeats a chunk URL's signature.
func TestNoAnswerNamesTheServerNotTheURL(t *testing.T) {
	t.Parallel()
	refused, hangUp := closedAddr(t), hangUpAddr(t)
	const secret = "c2VjcmV0LXNpZ25hdHVyZQ"
	for _, c := range []struct {
		name, addr, reason string
		is                 error
	}{
		{"nothing listening", refused, "connection refused", syscall.ECONNREFUSED},
		// EOF or a reset, depending on what the server left unread.
		{"closed without an answer", hangUp, "the connection closed before the answer", nil},
	} {
		server := "http://" + c.addr
		want := "no answer from " + server + ": " + c.reason
		cl := &client.Client{Server: server, Token: "t", HTTP: &http.Client{Transport: &http.Transport{}}}

		_, graphQLErr := cl.UserMedia(context.Background(), client.MediaQuery{First: 1})
		putErr := cl.PutChunk(context.Background(), client.ChunkURL{
			URL: server + "/uploads/upl_1/chunks/0?exp=1796585831&sig=" + secret, Size: 3,
		}, strings.NewReader("abc"))
		for op, err := range map[string]error{"GraphQL": graphQLErr, "PUT": putErr} {
			var noAnswer *client.NoAnswerError
			if !errors.As(err, &noAnswer) || noAnswer.Server != server {
				t.Errorf("%s, %s: got %T %v, want a NoAnswerError from %s", c.name, op, err, err, server)
				continue
			}
			if err.Error() != want {
				t.Errorf("%s, %s: got %q, want %q", c.name, op, err, want)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "?") {
				t.Errorf("%s, %s: %q shows the URL's query", c.name, op, err)
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("%s, %s: %v does not wrap %v", c.name, op, err, c.is)
			}
		}
	}

	// How a hang-up shows depends on when it came: these are the ways,
	// each wrapped as the transport wraps it.
	for _, cause := range []error{io.EOF, io.ErrUnexpectedEOF, syscall.ECONNRESET, syscall.EPIPE, net.ErrClosed} {
		err := &url.Error{Op: "Put", URL: "http://" + hangUp + "/x?sig=" + secret, Err: &net.OpError{
			Op: "readfrom", Net: "tcp", Err: &net.OpError{Op: "write", Net: "tcp", Err: cause},
		}}
		noAnswer := &client.NoAnswerError{Server: "http://" + hangUp, Err: err}
		if got := noAnswer.Reason(); got != "the connection closed before the answer" {
			t.Errorf("a hang-up met as %v: reason %q, want that the connection closed", cause, got)
		}
	}

	// The caller ending the request is not the server failing to answer.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cl := &client.Client{Server: "http://" + refused}
	if _, err := cl.UserMedia(ctx, client.MediaQuery{First: 1}); !errors.Is(err, context.Canceled) || errors.As(err, new(*client.NoAnswerError)) {
		t.Errorf("cancelled: got %T %v, want context.Canceled alone", err, err)
	}
}

// retries records the observer's Retrying calls.
type retries struct {
	sentBytes
	mu    sync.Mutex
	errs  map[int][]error
	waits map[error]time.Duration // each error's wait
}

func (o *retries) Retrying(file int, err error, wait time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.errs[file] = append(o.errs[file], err)
	if o.waits == nil {
		o.waits = map[error]time.Duration{}
	}
	o.waits[err] = wait
}

// A chunk the network keeps failing is tried maxTries (10) times, the
// observer hears of each failure that is tried again, and the file's
// error says it gave up and why.
func TestRetriesAreReportedThenGivenUp(t *testing.T) {
	t.Parallel()
	s, p, _ := startWithVideo(t, nil)

	rec := newRecorder(t)
	rec.intercept = func(req *http.Request, chunk, attempt int) (*http.Response, error) {
		switch {
		case chunk == 1 && attempt < 2:
			// Twice refused, then the network is back.
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
		case chunk == 2:
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
		}
		return nil, nil
	}
	seen := &retries{errs: map[int][]error{}}
	c := newClient(s, s.Token(t, "alice"), rec)
	results, err := c.UploadFiles(context.Background(), []*client.File{openFile(t, p)},
		client.QuickRetries(client.UploadOptions{Observer: seen, Parallel: 1}, time.Millisecond))
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	var gaveUp *client.GaveUpError
	if !errors.As(results[0].Err, &gaveUp) || gaveUp.Tries != 10 {
		t.Fatalf("got %v, want a GaveUpError after 10 tries", results[0].Err)
	}
	want := "chunk 2: no answer from " + s.URL + ": connection refused (tried 10 times over "
	if got := results[0].Err.Error(); !strings.HasPrefix(got, want) {
		t.Errorf("error: got %q, want %q", got, want)
	}
	if got := rec.statusesOf(2); len(got) != 10 {
		t.Errorf("chunk 2: %d PUTs, want 10", len(got))
	}
	seen.mu.Lock()
	defer seen.mu.Unlock()
	// Chunk 1's two failures and chunk 2's first nine (its tenth is not
	// tried again).
	if got := len(seen.errs[0]); got != 2+9 {
		t.Errorf("Retrying calls: got %d, want 11", got)
	}
	for _, err := range seen.errs[0] {
		if !errors.As(err, new(*client.NoAnswerError)) {
			t.Errorf("Retrying heard %T %v, want a NoAnswerError", err, err)
		}
	}
}

// A --server that is some other web server (its /graphql a 404, with a
// page of its own) is said to be one, not shown that page.
func TestNotASpoolServer(t *testing.T) {
	t.Parallel()
	for _, page := range []string{`{"error":{"code":404,"message":"Not Found"}}`, "<html><body>nginx</body></html>"} {
		other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(page))
		}))
		cl := &client.Client{Server: other.URL, HTTP: other.Client()}
		_, err := cl.UserMedia(context.Background(), client.MediaQuery{First: 1})
		var h *client.HTTPError
		want := "HTTP 404: " + other.URL + "/graphql is not there; is --server a spool server?"
		if !errors.As(err, &h) || err.Error() != want {
			t.Errorf("page %q: got %v, want %q", page, err, want)
		}
		other.Close()
	}
}

// The wait a server asks for is read from Retry-After (the data plane)
// and extensions.retryAfter (GraphQL), in seconds, and held to a minute.
func TestRetryAfterIsRead(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		header string
		want   time.Duration
	}{
		{"7", 7 * time.Second},
		{"3600", time.Minute},
		{"1e300", time.Minute},               // past what a Duration holds
		{"Wed, 21 Oct 2015 07:28:00 GMT", 0}, // a date: left to the backoff
		{"-3", 0},
		{"", 0},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if c.header != "" {
				w.Header().Set("Retry-After", c.header)
			}
			if r.URL.Path == "/graphql" {
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(`{"errors":[{"message":"slow down","extensions":{"code":"RATE_LIMITED","retryAfter":2}}]}`))
				return
			}
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = w.Write([]byte(`{"error":{"code":"RATE_LIMITED","message":"slow down"}}`))
		}))
		cl := &client.Client{Server: srv.URL, HTTP: srv.Client()}
		err := cl.PutChunk(context.Background(), client.ChunkURL{URL: srv.URL + "/uploads/u/chunks/0", Size: 1}, strings.NewReader("x"))
		if h, ok := errors.AsType[*client.HTTPError](err); !ok || h.RetryAfter != c.want {
			t.Errorf("Retry-After %q: got %#v, want RetryAfter %s", c.header, err, c.want)
		}
		_, err = cl.UserMedia(context.Background(), client.MediaQuery{First: 1})
		if g, ok := errors.AsType[*client.GraphQLError](err); !ok || g.RetryAfter != 2*time.Second {
			t.Errorf("extensions.retryAfter 2: got %#v, want RetryAfter 2s", err)
		}
		srv.Close()
	}

	// A retryAfter of another type is ignored; the error is kept.
	odd := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"errors":[{"message":"slow down","extensions":{"code":"RATE_LIMITED","retryAfter":"soon"}}]}`))
	}))
	defer odd.Close()
	_, err := (&client.Client{Server: odd.URL, HTTP: odd.Client()}).UserMedia(context.Background(), client.MediaQuery{First: 1})
	if g, ok := errors.AsType[*client.GraphQLError](err); !ok || g.Code != "RATE_LIMITED" || g.RetryAfter != 0 {
		t.Errorf("retryAfter \"soon\": got %#v, want RATE_LIMITED without a wait", err)
	}
}

// RATE_LIMITED with a wait paces a chunk without using up its tries: a
// tight budget makes the upload slower, not failed.
func TestRateLimitedPacesWithoutUsingUpTries(t *testing.T) {
	t.Parallel()
	s, p, video := startWithVideo(t, nil)
	rec := newRecorder(t)
	rec.intercept = func(req *http.Request, chunk, attempt int) (*http.Response, error) {
		if chunk != 1 || attempt >= 12 { // more refusals than the 10 tries
			return nil, nil
		}
		return answerInstead(req, http.StatusTooManyRequests, http.Header{"Retry-After": {"0.01"}},
			`{"error":{"code":"RATE_LIMITED","message":"slow down"}}`), nil
	}
	seen := &retries{errs: map[int][]error{}}
	uploadOne(t, newClient(s, s.Token(t, "alice"), rec), p, video,
		client.QuickRetries(client.UploadOptions{Observer: seen, Parallel: 1}, time.Millisecond))
	if got := rec.statusesOf(1); len(got) != 13 {
		t.Errorf("chunk 1: %d PUTs (%v), want 12 refused and 1 taken", len(got), got)
	}
	seen.mu.Lock()
	defer seen.mu.Unlock()
	for err, wait := range seen.waits {
		if wait != 10*time.Millisecond {
			t.Errorf("retrying %v: waited %s, want the 10ms asked for", err, wait)
		}
	}
}

// silentAddr returns the address of a listener that takes connections and
// then neither reads nor answers: a network path that died silently.
func silentAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
		}
	}()
	return l.Addr().String()
}

// A chunk PUT whose body stops going out, as on a network path that died
// silently, is abandoned after the stall timeout as a NoAnswerError that
// says so; it hung until the kernel gave up on the connection (over 200 s
// from outside, through a proxy that stopped forwarding).
func TestStalledChunkPutIsAbandoned(t *testing.T) {
	t.Parallel()
	server := "http://" + silentAddr(t)
	cl := &client.Client{Server: server, HTTP: &http.Client{Transport: &http.Transport{}}, StallTimeout: 200 * time.Millisecond}
	// More than the loopback's socket buffers take in.
	const size = 256 << 20
	// A hang guard only: without the stall watch the PUT ends here.
	guard, cancelGuard := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelGuard()
	err := cl.PutChunk(guard, client.ChunkURL{URL: server + "/uploads/upl_1/chunks/0", Size: size},
		io.LimitReader(zeros{}, size))
	var noAnswer *client.NoAnswerError
	var stalled *client.StalledError
	if !errors.As(err, &noAnswer) || !errors.As(err, &stalled) {
		t.Fatalf("got %T %v, want a NoAnswerError of a StalledError", err, err)
	}
	if want := "no answer from " + server + ": sending stalled: nothing went out for 200ms"; err.Error() != want {
		t.Errorf("got %q, want %q", err, want)
	}

	// The caller's own cancel is still the caller's, not a stall.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := cl.PutChunk(ctx, client.ChunkURL{URL: server + "/uploads/upl_1/chunks/0", Size: 3}, strings.NewReader("abc")); !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled PUT: got %v, want context.Canceled", err)
	}
}

// zeros reads as endless zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
