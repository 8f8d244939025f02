package gcs

// These tests run against fake-gcs-server in process (gcstest). What they
// prove is bounded by what the emulator does: it checks no V4 signatures
// and no signed headers (X-Goog-Content-Length-Range), so the signed-URL
// tests prove that the URLs name the right object, method and headers and
// work as plain HTTP requests, not that GCS would accept the signatures.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/storage"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"

	"github.com/spoolhq/spool/internal/storage/gcs/gcstest"
	"github.com/spoolhq/spool/internal/storage/storagetest"
	"github.com/spoolhq/spool/internal/upload"
)

const testPrefix = "spool/test"

// testEnv is one emulator, a bucket in it and a Store on that bucket.
type testEnv struct {
	srv    *gcstest.Server
	client *storage.Client
	bucket string
	store  *Store
}

// newEnv starts an emulator with a bucket and returns a Store on it with
// opts (signing with a throwaway key unless opts say otherwise); the
// store's client gets clientOpts.
func newEnv(t *testing.T, opts Options, clientOpts ...option.ClientOption) *testEnv {
	t.Helper()
	srv := gcstest.Start(t)
	e := &testEnv{srv: srv, client: srv.Client(t, clientOpts...), bucket: srv.CreateBucket(t)}
	if opts.SignedURLs == nil {
		opts.SignedURLs = testSigning(t)
	}
	if opts.Sessions == nil {
		opts.Sessions = &Sessions{HTTPClient: http.DefaultClient, Endpoint: srv.URL}
	}
	e.store = New(e.client, e.bucket, testPrefix, opts)
	return e
}

// storeWith returns another Store on the same bucket, through a client
// with clientOpts.
func (e *testEnv) storeWith(t *testing.T, clientOpts ...option.ClientOption) *Store {
	t.Helper()
	return New(e.srv.Client(t, clientOpts...), e.bucket, testPrefix, Options{SignedURLs: testSigning(t)})
}

func testSigning(t *testing.T) *SignedURLs {
	return &SignedURLs{GoogleAccessID: gcstest.GoogleAccessID, PrivateKey: gcstest.SigningKey(t), Insecure: true}
}

func TestConformance(t *testing.T) {
	t.Parallel()
	storagetest.Run(t, func(t *testing.T) upload.Store {
		// A small write buffer: the suite writes up to 100 chunks at once,
		// and each Writer holds its whole buffer.
		return newEnv(t, Options{WriteBufferSize: 256 << 10}).store
	}, storagetest.WithLeftovers(leftovers), storagetest.WithSealChecksCRC32C(),
		// GCS object names are valid UTF-8 without line breaks; the
		// package refuses control characters too.
		storagetest.WithInvalidKeys("usr/upl\n", "bad\xffutf8"))
}

// leftovers lists every object under the upload's parts and tmp
// directories, through a plain listing rather than the Store's own.
func leftovers(t *testing.T, us upload.Store, key string) []string {
	t.Helper()
	s := us.(*Store)
	var names []string
	for _, dir := range []string{s.partsDir(key), s.tmpDir(key)} {
		names = append(names, listNames(t, s.client, s.Bucket(), dir)...)
	}
	return names
}

func listNames(t *testing.T, client *storage.Client, bucket, prefix string) []string {
	t.Helper()
	var names []string
	it := client.Bucket(bucket).Objects(t.Context(), &storage.Query{Prefix: prefix})
	for {
		attrs, err := it.Next()
		if err == iterator.Done {
			return names
		}
		if err != nil {
			t.Fatalf("listing %s: %v", prefix, err)
		}
		names = append(names, attrs.Name)
	}
}

func TestLayout(t *testing.T) {
	t.Parallel()
	for _, prefix := range []string{"", "a/b"} {
		t.Run("Prefix="+prefix, func(t *testing.T) {
			t.Parallel() // each case has an emulator of its own
			client, bucket := gcstest.NewServer(t)
			s := New(client, bucket, "/"+prefix+"/", Options{})
			p := prefix
			if p != "" {
				p += "/"
			}
			key := "usr_l/upl_l"
			data := []byte("0123456789")
			prepare(t, s, key, len(data))
			writeChunk(t, s, key, upload.ChunkRef{Index: 0, Size: 6}, data[:6])
			writeChunk(t, s, key, upload.ChunkRef{Index: 1, Offset: 6, Size: 4}, data[6:])
			if got, want := listNames(t, client, bucket, ""), []string{
				p + "parts/usr_l/upl_l/000000",
				p + "parts/usr_l/upl_l/000001",
				p + "parts/usr_l/upl_l/prepared",
			}; !slices.Equal(got, want) {
				t.Errorf("objects after writing two chunks: %q, want %q", got, want)
			}
			objKey := assemble(t, s, key, 2, len(data))
			if got, want := listNames(t, client, bucket, ""), []string{p + "objects/usr_l/upl_l"}; !slices.Equal(got, want) {
				t.Errorf("objects after Assemble: %q, want %q", got, want)
			}
			if got := readAll(t, s, objKey); !bytes.Equal(got, data) {
				t.Errorf("object holds %q, want %q", got, data)
			}
		})
	}
}

// TestComposeTree checks the compose calls Assemble makes: never more than
// 32 sources, and a tree for more (the emulator also refuses more than 32).
// A tree three levels deep takes 1025 parts at GCS's 32 sources a call;
// the emulator finds an object by scanning the bucket, so writing,
// composing and deleting 1025 parts took half a minute under -race. The
// case of three levels lowers the store's fan-in to 4 instead, where 17
// parts make the same shape: groups and a single part that moves up, then
// a group and a single intermediate that moves up, then the object.
func TestComposeTree(t *testing.T) {
	t.Parallel()
	tests := []struct {
		parts int
		fanIn int      // sources per compose call; 0 is GCS's maxComposeSources
		calls [][2]int // per compose call: level (0 = the object), sources
	}{
		{1, 0, [][2]int{{0, 1}}},
		{32, 0, [][2]int{{0, 32}}},
		{33, 0, [][2]int{{1, 32}, {0, 2}}},
		{100, 0, [][2]int{{1, 32}, {1, 32}, {1, 32}, {1, 4}, {0, 4}}},
		// 4 groups of 4 and a single part that moves up; then those 5
		// make a group of 4 and a single intermediate that moves up;
		// then the object from 2.
		{17, 4, [][2]int{{2, 4}, {1, 4}, {1, 4}, {1, 4}, {1, 4}, {0, 2}}},
	}
	for _, tt := range tests {
		name := fmt.Sprint(tt.parts)
		if tt.fanIn != 0 {
			name += fmt.Sprintf("/fanIn=%d", tt.fanIn)
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel() // each case has an emulator of its own
			rec := &composeRecorder{}
			e := newEnv(t, Options{}, option.WithHTTPClient(&http.Client{Transport: rec}))
			s := e.store
			fanIn := maxComposeSources
			if tt.fanIn != 0 {
				fanIn = tt.fanIn
				s.composeFanIn = fanIn
			}
			const partSize = 3
			data := patternBytes(tt.parts * partSize)
			key := "usr_c/upl_tree"
			prepare(t, s, key, len(data))
			writeChunksDirect(t, e, key, data, partSize)
			objKey := assemble(t, s, key, tt.parts, len(data))
			if got := readAll(t, s, objKey); !bytes.Equal(got, data) {
				t.Fatalf("object of %d parts differs from the bytes written", tt.parts)
			}
			calls := rec.calls()
			var got [][2]int
			for _, c := range calls {
				if c.sources > fanIn {
					t.Errorf("compose into %s had %d sources, want at most %d", c.dst, c.sources, fanIn)
				}
				got = append(got, [2]int{composeLevel(t, c.dst), c.sources})
			}
			slices.SortFunc(got, func(a, b [2]int) int { return (b[0]-a[0])*1000 + b[1] - a[1] })
			if !slices.Equal(got, tt.calls) {
				t.Errorf("compose calls (level, sources) = %v, want %v", got, tt.calls)
			}
			if left := leftovers(t, s, key); len(left) > 0 {
				t.Errorf("after Assemble, %q remain; want no parts or intermediates", left)
			}
		})
	}
}

// composeLevel returns the tree level of a compose call's destination, a
// request path: 0 for the object, and for an intermediate the level its
// name (tmp/<key>/<run>-<level>-<group>) carries.
func composeLevel(t *testing.T, dst string) int {
	t.Helper()
	name := strings.TrimSuffix(dst, "/compose")
	if !strings.Contains(name, "/tmp/") {
		return 0
	}
	f := strings.Split(name[strings.LastIndex(name, "/")+1:], "-")
	if len(f) < 3 {
		t.Fatalf("compose into %s: cannot read the level of the intermediate", dst)
	}
	level, err := strconv.Atoi(f[len(f)-2])
	if err != nil || level < 1 {
		t.Fatalf("compose into %s: cannot read the level of the intermediate", dst)
	}
	return level
}

// composeRecorder is a transport that notes every compose request.
type composeRecorder struct {
	mu  sync.Mutex
	log []composeCall
}

type composeCall struct {
	dst     string
	sources int
}

func (r *composeRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if strings.HasSuffix(req.URL.Path, "/compose") {
		body, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		var compose struct {
			SourceObjects []json.RawMessage `json:"sourceObjects"`
		}
		if err := json.Unmarshal(body, &compose); err != nil {
			return nil, fmt.Errorf("test transport: decoding compose request: %w", err)
		}
		r.mu.Lock()
		r.log = append(r.log, composeCall{dst: req.URL.Path, sources: len(compose.SourceObjects)})
		r.mu.Unlock()
	}
	return http.DefaultTransport.RoundTrip(req)
}

func (r *composeRecorder) calls() []composeCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.log)
}

func TestAssembleMissingChunk(t *testing.T) {
	t.Parallel()
	s := newEnv(t, Options{}).store
	key := "usr_m/upl_missing"
	data := patternBytes(30)
	prepare(t, s, key, len(data))
	writeChunk(t, s, key, upload.ChunkRef{Index: 0, Size: 10}, data[:10])
	writeChunk(t, s, key, upload.ChunkRef{Index: 2, Offset: 20, Size: 10}, data[20:])
	_, err := s.Assemble(t.Context(), key, 3, int64(len(data)))
	if !errors.Is(err, upload.ErrNotExist) || !strings.Contains(err.Error(), "[1]") {
		t.Fatalf("Assemble with chunk 1 missing: got error %v, want one naming chunk [1] and wrapping %v", err, upload.ErrNotExist)
	}
	writeChunk(t, s, key, upload.ChunkRef{Index: 1, Offset: 10, Size: 10}, data[10:20])
	if got := readAll(t, s, assemble(t, s, key, 3, len(data))); !bytes.Equal(got, data) {
		t.Errorf("object holds %q, want %q", got, data)
	}
}

// TestConcurrentAssemble assembles one upload from several calls at once,
// as replicas may: each must return the object, whole.
func TestConcurrentAssemble(t *testing.T) {
	t.Parallel()
	// A call overtaken by another composes parts that are gone: GCS
	// answers 404, the emulator 500, which is retried; so retry briefly.
	e := newEnv(t, Options{MaxRetryDuration: time.Second})
	for round := range 2 {
		key := fmt.Sprintf("usr_c/upl_concurrent%d", round)
		data := patternBytes(100*5 + round)
		prepare(t, e.store, key, len(data))
		writeChunksDirect(t, e, key, data, 5)
		errs := make([]error, 4)
		var wg sync.WaitGroup
		for i := range errs {
			wg.Go(func() {
				objKey, err := e.store.Assemble(t.Context(), key, (len(data)+4)/5, int64(len(data)))
				if err == nil && objKey != key {
					err = fmt.Errorf("returned object %q, want %q", objKey, key)
				}
				errs[i] = err
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("round %d: Assemble %d of %d at once: %v", round, i, len(errs), err)
			}
		}
		if got := readAll(t, e.store, key); !bytes.Equal(got, data) {
			t.Errorf("round %d: object assembled by concurrent calls differs from the bytes written", round)
		}
		if left := leftovers(t, e.store, key); len(left) > 0 {
			t.Errorf("round %d: after concurrent Assembles, %q remain; want nothing", round, left)
		}
	}
}

// TestAssembleOvertaken holds one Assemble's first compose request until
// another Assemble of the same upload has finished and deleted the parts:
// the slow one must then return the object the fast one made.
func TestAssembleOvertaken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	gate := &composeGate{reached: make(chan struct{}), release: make(chan struct{})}
	// GCS answers a compose of deleted sources with 404; the emulator
	// answers 500, which is retried, so the slow store gives up sooner.
	slow := New(e.srv.Client(t, option.WithHTTPClient(&http.Client{Transport: gate})), e.bucket, testPrefix,
		Options{MaxRetryDuration: time.Second})
	key := "usr_c/upl_overtaken"
	data := patternBytes(40 * 5)
	prepare(t, e.store, key, len(data))
	writeChunksDirect(t, e, key, data, 5)

	errc := make(chan error, 1)
	go func() {
		objKey, err := slow.Assemble(t.Context(), key, 40, int64(len(data)))
		if err == nil && objKey != key {
			err = fmt.Errorf("returned object %q, want %q", objKey, key)
		}
		errc <- err
	}()
	<-gate.reached
	assemble(t, e.store, key, 40, len(data))
	close(gate.release)
	if err := <-errc; err != nil {
		t.Errorf("Assemble overtaken by another: %v", err)
	}
	if got := readAll(t, e.store, key); !bytes.Equal(got, data) {
		t.Errorf("object differs from the bytes written")
	}
	if left := leftovers(t, e.store, key); len(left) > 0 {
		t.Errorf("after both Assembles, %q remain; want nothing", left)
	}
}

// composeGate is a transport that holds the first compose request until
// release is closed, closing reached when it arrives.
type composeGate struct {
	once             sync.Once
	reached, release chan struct{}
}

func (g *composeGate) RoundTrip(req *http.Request) (*http.Response, error) {
	if strings.HasSuffix(req.URL.Path, "/compose") {
		first := false
		g.once.Do(func() { first = true })
		if first {
			close(g.reached)
			<-g.release
		}
	}
	return http.DefaultTransport.RoundTrip(req)
}

// TestWriteChunkChecksumMismatch makes GCS appear to store other bytes
// than were sent (a transport changes the CRC32C in the upload's
// response), and checks that WriteChunk notices and deletes the object.
func TestWriteChunkChecksumMismatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	isPart := func(req *http.Request) bool {
		return strings.HasPrefix(req.URL.Path, "/upload/") && strings.HasSuffix(req.URL.Query().Get("name"), "/000000")
	}
	bad := e.storeWith(t, option.WithHTTPClient(&http.Client{Transport: &crcRewriter{match: isPart}}))
	key := "usr_x/upl_crc"
	data := patternBytes(100)
	prepare(t, bad, key, len(data))
	n, err := bad.WriteChunk(t.Context(), key, upload.ChunkRef{Size: int64(len(data))}, bytes.NewReader(data))
	if !errors.Is(err, errChecksumMismatch) {
		t.Fatalf("WriteChunk whose stored CRC32C differs: wrote %d bytes, got error %v, want %v", n, err, errChecksumMismatch)
	}
	if info, err := e.store.StatChunk(t.Context(), key, upload.ChunkRef{Size: int64(len(data))}); !errors.Is(err, upload.ErrNotExist) {
		t.Errorf("StatChunk after a checksum mismatch = %+v, %v; want the object deleted (%v)", info, err, upload.ErrNotExist)
	}
}

// TestAssembleChecksumMismatch makes the composed object appear to hold
// other bytes than its parts, and checks that Assemble refuses it,
// deletes it, keeps the parts, and succeeds when tried again.
func TestAssembleChecksumMismatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	isFinalCompose := func(req *http.Request) bool {
		return strings.HasSuffix(req.URL.Path, "/compose") && strings.Contains(req.URL.Path, "/objects/")
	}
	bad := e.storeWith(t, option.WithHTTPClient(&http.Client{Transport: &crcRewriter{match: isFinalCompose}}))
	key := "usr_x/upl_composecrc"
	data := patternBytes(40 * 3)
	prepare(t, e.store, key, len(data))
	writeChunksDirect(t, e, key, data, 3)

	objKey, err := bad.Assemble(t.Context(), key, 40, int64(len(data)))
	if !errors.Is(err, errChecksumMismatch) {
		t.Fatalf("Assemble whose object's CRC32C differs: returned %q, got error %v, want %v", objKey, err, errChecksumMismatch)
	}
	if _, err := e.store.Open(t.Context(), key); !errors.Is(err, upload.ErrNotExist) {
		t.Errorf("Open after a checksum mismatch: got error %v, want the object deleted (%v)", err, upload.ErrNotExist)
	}
	if tmp := listNames(t, e.client, e.bucket, e.store.tmpDir(key)); len(tmp) > 0 {
		t.Errorf("intermediates %q remain after a failed Assemble, want none", tmp)
	}
	if got := readAll(t, e.store, assemble(t, e.store, key, 40, len(data))); !bytes.Equal(got, data) {
		t.Errorf("object assembled after a failed attempt differs from the bytes written")
	}
}

// crcRewriter is a transport that changes the crc32c field of successful
// JSON responses to requests that match.
type crcRewriter struct {
	match func(*http.Request) bool
}

func (c *crcRewriter) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusOK || !c.match(req) {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	var obj map[string]any
	if err := json.Unmarshal(body, &obj); err != nil {
		return nil, fmt.Errorf("test transport: decoding response: %w", err)
	}
	if _, ok := obj["crc32c"]; !ok {
		return nil, fmt.Errorf("test transport: response to %s has no crc32c: %s", req.URL.Path, body)
	}
	obj["crc32c"] = base64.StdEncoding.EncodeToString([]byte{0xde, 0xad, 0xbe, 0xef})
	body, _ = json.Marshal(obj)
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Del("Content-Length")
	return resp, nil
}

// TestShortBodyStoresNothing checks that a body ending early leaves no
// object claiming to be the chunk, and an earlier whole copy untouched.
func TestShortBodyStoresNothing(t *testing.T) {
	t.Parallel()
	s := newEnv(t, Options{}).store
	key := "usr_s/upl_short"
	chunk := upload.ChunkRef{Size: 100}
	prepare(t, s, key, 100)

	n, err := s.WriteChunk(t.Context(), key, chunk, bytes.NewReader(make([]byte, 60)))
	if err != nil || n != 60 {
		t.Fatalf("WriteChunk of 60 of 100 bytes = %d, %v; want 60, nil", n, err)
	}
	if info, err := s.StatChunk(t.Context(), key, chunk); !errors.Is(err, upload.ErrNotExist) {
		t.Errorf("StatChunk after a short body = %+v, %v; want %v", info, err, upload.ErrNotExist)
	}

	whole := patternBytes(100)
	writeChunk(t, s, key, chunk, whole)
	if n, err := s.WriteChunk(t.Context(), key, chunk, bytes.NewReader(make([]byte, 60))); err != nil || n != 60 {
		t.Fatalf("WriteChunk of 60 of 100 bytes over a whole copy = %d, %v; want 60, nil", n, err)
	}
	info, err := s.StatChunk(t.Context(), key, chunk)
	if want := (upload.ChunkInfo{Size: 100, CRC32C: crc32.Checksum(whole, castagnoli)}); err != nil || info != want {
		t.Errorf("StatChunk after a short body over a whole copy = %+v, %v; want the whole copy %+v", info, err, want)
	}
}

// TestSlowBodyIsNotAStall sends a chunk whose body pauses longer than
// MaxRetryDuration between its bytes, as a slow client's does: the stall
// watch counts only the time GCS keeps a write waiting, so the chunk is
// written whole.
func TestSlowBodyIsNotAStall(t *testing.T) {
	t.Parallel()
	// Long enough for the emulator to take a piece under the race
	// detector on a busy machine (300 ms was not, once).
	const limit = 3 * time.Second
	s := newEnv(t, Options{MaxRetryDuration: limit}).store
	key := "usr_s/upl_slow"
	data := patternBytes(2 << 20)
	prepare(t, s, key, len(data))
	pauses := 2
	body := readerFunc(func(p []byte) (int, error) {
		if pauses > 0 {
			pauses--
			time.Sleep(limit + time.Second)
		}
		if len(data) == 0 {
			return 0, io.EOF
		}
		n := copy(p[:min(len(p), 64<<10)], data)
		data = data[n:]
		return n, nil
	})
	whole := patternBytes(2 << 20)
	if n, err := s.WriteChunk(t.Context(), key, upload.ChunkRef{Size: int64(len(whole))}, body); err != nil || n != int64(len(whole)) {
		t.Fatalf("WriteChunk of a slow body = %d, %v; want %d, nil", n, err, len(whole))
	}
	if info, err := s.StatChunk(t.Context(), key, upload.ChunkRef{Size: int64(len(whole))}); err != nil || info.Size != int64(len(whole)) {
		t.Errorf("StatChunk after a slow body = %+v, %v; want the whole chunk", info, err)
	}
}

// TestLongBody checks that WriteChunk reads no more than the chunk and one
// probe byte of a body that goes on, and stores nothing.
func TestLongBody(t *testing.T) {
	t.Parallel()
	s := newEnv(t, Options{}).store
	key := "usr_s/upl_long"
	chunk := upload.ChunkRef{Size: 100}
	prepare(t, s, key, 100)
	body := &countingReader{r: &patternReader{left: 1 << 30}}
	n, err := s.WriteChunk(t.Context(), key, chunk, body)
	if !errors.Is(err, errChunkOverflow) {
		t.Errorf("WriteChunk of an endless body: got error %v, want %v", err, errChunkOverflow)
	}
	if n > chunk.Size || body.n > chunk.Size+1 {
		t.Errorf("WriteChunk of an endless body wrote %d and read %d bytes, want at most %d and %d", n, body.n, chunk.Size, chunk.Size+1)
	}
	if info, err := s.StatChunk(t.Context(), key, chunk); !errors.Is(err, upload.ErrNotExist) {
		t.Errorf("StatChunk after a long body = %+v, %v; want %v", info, err, upload.ErrNotExist)
	}
}

// TestWriteRacingDiscard discards an upload while one of its chunks is
// being written: the chunk must not outlive the upload.
func TestWriteRacingDiscard(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	s := e.store
	key := "usr_r/upl_race"
	prepare(t, s, key, 100)
	body, bodyW := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		_, err := s.WriteChunk(t.Context(), key, upload.ChunkRef{Size: 100}, body)
		body.Close() // a write that stopped reading fails the test, not hangs it
		errc <- err
	}()
	// A pipe's Write returns once WriteChunk has read the bytes, so it is
	// past its first look at the upload when Discard runs.
	if _, err := bodyW.Write(make([]byte, 50)); err != nil {
		t.Fatalf("writing the first half of the body: %v", err)
	}
	if err := s.Discard(t.Context(), key); err != nil {
		t.Fatalf("Discard: %v", err)
	}
	if _, err := bodyW.Write(make([]byte, 50)); err != nil {
		t.Fatalf("writing the second half of the body: %v", err)
	}
	bodyW.Close()
	if err := <-errc; !errors.Is(err, upload.ErrNotExist) {
		t.Errorf("WriteChunk that outlived its upload: got error %v, want %v", err, upload.ErrNotExist)
	}
	if left := leftovers(t, s, key); len(left) > 0 {
		t.Errorf("after Discard and the racing write, %q remain; want nothing", left)
	}
}

// TestDirectUpload sends chunks the way a client in direct mode does: a
// plain HTTP PUT to the signed URL, with the headers it names.
func TestDirectUpload(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	s := e.store
	ctx := t.Context()
	key := "usr_d/upl_direct"
	data := patternBytes(2500)
	const partSize = 1000
	prepare(t, s, key, len(data))

	expires := time.Now().Add(time.Hour)
	chunk := upload.ChunkRef{Index: 1, Offset: partSize, Size: partSize}
	d, err := s.ChunkUploadURL(ctx, key, chunk, expires)
	if err != nil {
		t.Fatalf("ChunkUploadURL: %v", err)
	}
	u, err := url.Parse(d.URL)
	if err != nil {
		t.Fatalf("parsing signed URL %q: %v", d.URL, err)
	}
	q := u.Query()
	checks := []struct{ what, got, want string }{
		{"method", d.Method, http.MethodPut},
		{"scheme and host", u.Scheme + "://" + u.Host, e.srv.URL},
		{"path", u.Path, "/" + e.bucket + "/" + testPrefix + "/parts/" + key + "/000001"},
		{"X-Goog-Algorithm", q.Get("X-Goog-Algorithm"), "GOOG4-RSA-SHA256"},
		{"X-Goog-SignedHeaders", q.Get("X-Goog-SignedHeaders"), "content-type;host;x-goog-content-length-range"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("signed PUT URL %s = %q, want %q", c.what, c.got, c.want)
		}
	}
	// The library counts the lifetime from its own clock reading.
	if got := q.Get("X-Goog-Expires"); got != "3600" && got != "3599" {
		t.Errorf("signed PUT URL X-Goog-Expires = %q, want an hour (3600)", got)
	}
	if cred := q.Get("X-Goog-Credential"); !strings.HasPrefix(cred, gcstest.GoogleAccessID+"/") {
		t.Errorf("signed PUT URL X-Goog-Credential = %q, want it to start with %q", cred, gcstest.GoogleAccessID)
	}
	wantHeaders := []upload.Header{
		{Name: "Content-Type", Value: "application/octet-stream"},
		{Name: "X-Goog-Content-Length-Range", Value: "1000,1000"},
	}
	if !slices.Equal(d.Headers, wantHeaders) {
		t.Errorf("ChunkUploadURL headers = %v, want %v", d.Headers, wantHeaders)
	}

	if _, err := s.StatChunk(ctx, key, chunk); !errors.Is(err, upload.ErrNotExist) {
		t.Errorf("StatChunk before the PUT: got error %v, want %v", err, upload.ErrNotExist)
	}
	if _, err := s.ReadChunkHead(ctx, key, chunk, 10); !errors.Is(err, upload.ErrNotExist) {
		t.Errorf("ReadChunkHead before the PUT: got error %v, want %v", err, upload.ErrNotExist)
	}
	writeChunksDirect(t, e, key, data, partSize)

	part := data[partSize : 2*partSize]
	info, err := s.StatChunk(ctx, key, chunk)
	if want := (upload.ChunkInfo{Size: partSize, CRC32C: crc32.Checksum(part, castagnoli)}); err != nil || info != want {
		t.Errorf("StatChunk after the PUT = %+v, %v; want %+v", info, err, want)
	}
	for _, n := range []int{0, 1, 10, partSize, partSize + 10} {
		head, err := s.ReadChunkHead(ctx, key, chunk, n)
		if want := part[:min(n, partSize)]; err != nil || !bytes.Equal(head, want) {
			t.Errorf("ReadChunkHead(%d) = %d bytes, %v; want the chunk's first %d bytes", n, len(head), err, len(want))
		}
	}
	if got := readAll(t, s, assemble(t, s, key, 3, len(data))); !bytes.Equal(got, data) {
		t.Errorf("object assembled from directly uploaded chunks differs from the bytes sent")
	}
}

// writeChunksDirect PUTs data to the signed URLs of its chunks of
// partSize bytes (the last may be short), in parallel.
func writeChunksDirect(t *testing.T, e *testEnv, key string, data []byte, partSize int) {
	t.Helper()
	count := (len(data) + partSize - 1) / partSize
	errs := make([]error, count)
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range count {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			off := i * partSize
			b := data[off:min(off+partSize, len(data))]
			chunk := upload.ChunkRef{Index: i, Offset: int64(off), Size: int64(len(b))}
			errs[i] = putDirect(t.Context(), e.store, key, chunk, b)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

func putDirect(ctx context.Context, s *Store, key string, chunk upload.ChunkRef, b []byte) error {
	d, err := s.ChunkUploadURL(ctx, key, chunk, time.Now().Add(time.Hour))
	if err != nil {
		return fmt.Errorf("ChunkUploadURL(chunk %d): %w", chunk.Index, err)
	}
	req, err := http.NewRequestWithContext(ctx, d.Method, d.URL, bytes.NewReader(b))
	if err != nil {
		return err
	}
	for _, h := range d.Headers {
		req.Header.Set(h.Name, h.Value)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("PUT chunk %d: %w", chunk.Index, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("PUT chunk %d: %s: %s", chunk.Index, resp.Status, msg)
	}
	return nil
}

func TestObjectURL(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	ctx := t.Context()
	key := "usr_o/upl_url"
	data := patternBytes(3000)
	prepare(t, e.store, key, len(data))
	writeChunk(t, e.store, key, upload.ChunkRef{Size: int64(len(data))}, data)
	objKey := assemble(t, e.store, key, 1, len(data))

	signed, err := e.store.ObjectURL(ctx, objKey, "holiday vidéo.mp4", time.Now().Add(time.Hour))
	if err != nil {
		t.Fatalf("ObjectURL: %v", err)
	}
	u, err := url.Parse(signed)
	if err != nil {
		t.Fatalf("parsing signed URL %q: %v", signed, err)
	}
	if got, want := u.Query().Get("response-content-disposition"), "inline; filename*=UTF-8''holiday%20vid%C3%A9o.mp4"; got != want {
		t.Errorf("signed GET URL response-content-disposition = %q, want %q", got, want)
	}
	if got, want := u.Query().Get("X-Goog-Algorithm"), "GOOG4-RSA-SHA256"; got != want {
		t.Errorf("signed GET URL X-Goog-Algorithm = %q, want %q", got, want)
	}
	if got := download(t, signed); !bytes.Equal(got, data) {
		t.Errorf("download from the signed URL gave %d bytes differing from the %d stored", len(got), len(data))
	}

	public := New(e.client, e.bucket, testPrefix, Options{PublicBaseURL: e.srv.URL + "/" + e.bucket + "/"})
	pub, err := public.ObjectURL(ctx, objKey, "ignored.mp4", time.Now().Add(time.Hour))
	if err != nil {
		t.Fatalf("ObjectURL with a public base URL: %v", err)
	}
	if want := e.srv.URL + "/" + e.bucket + "/" + testPrefix + "/objects/" + objKey; pub != want {
		t.Errorf("public ObjectURL = %q, want %q", pub, want)
	}
	if got := download(t, pub); !bytes.Equal(got, data) {
		t.Errorf("download from the public URL gave %d bytes differing from the %d stored", len(got), len(data))
	}
}

// TestSigningFailures checks that URLs are refused, not signed wrong,
// for an expiry that has passed or is too far away, a private key that is
// not one, and a Store with no credentials at all.
func TestSigningFailures(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := t.Context()
	key := "usr_s/upl_sign"
	chunk := upload.ChunkRef{Size: 10}
	hour := time.Now().Add(time.Hour)
	// signs tries both kinds of URL and fails t if either is signed.
	signs := func(s *Store, expires time.Time, what string) {
		t.Helper()
		if d, err := s.ChunkUploadURL(ctx, key, chunk, expires); err == nil {
			t.Errorf("ChunkUploadURL %s = %q, want an error", what, d.URL)
		}
		if u, err := s.ObjectURL(ctx, key, "f.bin", expires); err == nil {
			t.Errorf("ObjectURL %s = %q, want an error", what, u)
		}
	}
	signs(e.store, time.Now().Add(-time.Minute), "expiring a minute ago")
	signs(e.store, time.Time{}, "with no expiry")
	signs(e.store, time.Now().Add(8*24*time.Hour), "expiring in 8 days")

	badKey := New(e.client, e.bucket, testPrefix, Options{SignedURLs: &SignedURLs{
		GoogleAccessID: gcstest.GoogleAccessID, PrivateKey: []byte("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n"),
	}})
	signs(badKey, hour, "with a malformed private key")

	// With no SignedURLs and a client without credentials, the library
	// asks the GCE metadata server which service account to sign as;
	// point it at a loopback one that knows none.
	metadata := httptest.NewServer(http.NotFoundHandler())
	defer metadata.Close()
	t.Setenv("GCE_METADATA_HOST", strings.TrimPrefix(metadata.URL, "http://"))
	signs(New(e.client, e.bucket, testPrefix, Options{}), hour, "with no credentials")
}

// TestServiceAccountKey reads the signing credentials out of a service
// account's JSON key, and refuses anything else with a reason.
func TestServiceAccountKey(t *testing.T) {
	t.Parallel()
	good := gcstest.ServiceAccountKeyJSON(t)
	c, err := ServiceAccountKey(good)
	if err != nil {
		t.Fatalf("ServiceAccountKey: %v", err)
	}
	if c.GoogleAccessID != gcstest.GoogleAccessID || !bytes.Equal(c.PrivateKey, gcstest.SigningKey(t)) {
		t.Errorf("got account %q and a %d-byte key, want %q and the key file's", c.GoogleAccessID, len(c.PrivateKey), gcstest.GoogleAccessID)
	}

	// with returns the good key with fields replaced (or, for "", removed).
	with := func(kv ...string) []byte {
		var m map[string]any
		if err := json.Unmarshal(good, &m); err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "" {
				delete(m, kv[i])
			} else {
				m[kv[i]] = kv[i+1]
			}
		}
		b, _ := json.Marshal(m)
		return b
	}
	bad := []struct {
		name string
		json []byte
		want string
	}{
		{"empty", nil, "not a service account's key"},
		{"not JSON", []byte("client_email = a@b"), "not a service account's key"},
		{"a user's credentials", []byte(`{"type": "authorized_user", "client_id": "x", "client_secret": "y", "refresh_token": "z"}`), "authorized_user"},
		{"no type", with("type", ""), "not a service account's key"},
		{"no client_email", with("client_email", ""), "client_email"},
		{"no private_key", with("private_key", ""), "private_key"},
		{"a private key that is not one", with("private_key", "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"), "cannot sign"},
	}
	for _, c := range bad {
		got, err := ServiceAccountKey(c.json)
		if err == nil {
			t.Errorf("%s: got %+v, want an error", c.name, got)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %q, want it to say %q", c.name, err, c.want)
		}
	}
}

// TestCanSign: a Store with a private key can sign, one told to sign as an
// account through IAM is taken at its word without calling IAM, and one
// with no credentials says it cannot.
func TestCanSign(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := t.Context()
	if err := e.store.CanSign(ctx); err != nil {
		t.Errorf("with a private key: %v", err)
	}

	// Every request of this store's client fails the test: with no key,
	// CanSign must not call IAM (nor anything else).
	noCalls := option.WithHTTPClient(&http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		t.Errorf("CanSign sent %s %s", r.Method, r.URL)
		return nil, errors.New("no requests expected")
	})})
	iam := New(e.srv.Client(t, noCalls), e.bucket, testPrefix, Options{SignedURLs: &SignedURLs{GoogleAccessID: gcstest.GoogleAccessID}})
	if err := iam.CanSign(ctx); err != nil {
		t.Errorf("with a signer account and no key: %v", err)
	}

	withKey, err := ServiceAccountKey(gcstest.ServiceAccountKeyJSON(t))
	if err != nil {
		t.Fatal(err)
	}
	withKey.Insecure = true
	fromFile := New(e.client, e.bucket, testPrefix, Options{SignedURLs: withKey})
	if err := fromFile.CanSign(ctx); err != nil {
		t.Errorf("with a key file's credentials: %v", err)
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := e.store.CanSign(cancelled); !errors.Is(err, context.Canceled) {
		t.Errorf("with a cancelled context: got %v, want context.Canceled", err)
	}

	// No credentials and a GCE metadata server that knows no account (a
	// loopback one, as in TestSigningFailures).
	metadata := httptest.NewServer(http.NotFoundHandler())
	defer metadata.Close()
	t.Setenv("GCE_METADATA_HOST", strings.TrimPrefix(metadata.URL, "http://"))
	err = New(e.client, e.bucket, testPrefix, Options{}).CanSign(ctx)
	if err == nil || !strings.Contains(err.Error(), "GoogleAccessID") {
		t.Errorf("with no credentials: got %v, want the library's reason naming GoogleAccessID", err)
	}
}

// TestOpenWithCredentialsJSON: Open's client takes a service account's
// key; under STORAGE_EMULATOR_HOST the library sends no credentials, and
// the key still signs.
func TestOpenWithCredentialsJSON(t *testing.T) {
	srv := gcstest.Start(t)
	bucket := srv.CreateBucket(t)
	t.Setenv("STORAGE_EMULATOR_HOST", srv.URL)
	key := gcstest.ServiceAccountKeyJSON(t)
	signing, err := ServiceAccountKey(key)
	if err != nil {
		t.Fatal(err)
	}
	signing.Insecure = true
	s, err := Open(t.Context(), "gs://"+bucket+"/spool", Options{CredentialsJSON: key, SignedURLs: signing})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	if err := s.Ping(t.Context()); err != nil {
		t.Errorf("Ping: %v", err)
	}
	key2 := "usr_k/upl_key"
	data := patternBytes(1000)
	prepare(t, s, key2, len(data))
	writeChunk(t, s, key2, upload.ChunkRef{Size: int64(len(data))}, data)
	objKey := assemble(t, s, key2, 1, len(data))
	u, err := s.ObjectURL(t.Context(), objKey, "f.bin", time.Now().Add(time.Hour))
	if err != nil {
		t.Fatalf("ObjectURL: %v", err)
	}
	if !strings.HasPrefix(u, srv.URL+"/") {
		t.Errorf("signed URL %s is not on the emulator %s", u, srv.URL)
	}
	if got := download(t, u); !bytes.Equal(got, data) {
		t.Errorf("download from the signed URL gave %d bytes differing from the %d stored", len(got), len(data))
	}
}

func download(t *testing.T, u string) []byte {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s, %v: %.200s", u, resp.Status, err, b)
	}
	return b
}

func TestPing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	if err := e.store.Ping(t.Context()); err != nil {
		t.Errorf("Ping of an existing bucket: %v", err)
	}
	missing := New(e.client, "no-such-bucket", "", Options{})
	err := missing.Ping(t.Context())
	if !errors.Is(err, errBucketNotExist) {
		t.Errorf("Ping of a missing bucket: got error %v, want %v", err, errBucketNotExist)
	}
	var apiErr *googleapi.Error
	if errors.As(err, &apiErr) {
		t.Errorf("Ping's error %v leaks a googleapi.Error", err)
	}
}

func TestTranslate(t *testing.T) {
	t.Parallel()
	unavailable := translate(fmt.Errorf("wrapped: %w", &googleapi.Error{Code: 503, Message: "backend error"}))
	var apiErr *googleapi.Error
	if errors.As(unavailable, &apiErr) || !strings.Contains(unavailable.Error(), "503: backend error") {
		t.Errorf("translate(503) = %v, want a plain error naming 503 and the message", unavailable)
	}
	if err := translate(&googleapi.Error{Code: 404}); !errors.Is(err, upload.ErrNotExist) {
		t.Errorf("translate(404) = %v, want %v", err, upload.ErrNotExist)
	}
	if err := translate(storage.ErrObjectNotExist); !errors.Is(err, upload.ErrNotExist) {
		t.Errorf("translate(ErrObjectNotExist) = %v, want %v", err, upload.ErrNotExist)
	}
	if err := translate(fmt.Errorf("x: %w", context.Canceled)); !errors.Is(err, context.Canceled) {
		t.Errorf("translate(context.Canceled) = %v, want it kept", err)
	}
}

func TestParseURL(t *testing.T) {
	t.Parallel()
	valid := []struct{ url, bucket, prefix string }{
		{"gs://my-bucket", "my-bucket", ""},
		{"gs://my-bucket/", "my-bucket", ""},
		{"gs://my_bucket.example.com/media", "my_bucket.example.com", "media"},
		{"gs://b12/spool/uploads/", "b12", "spool/uploads"},
		{"gs://" + strings.Repeat("b", 63), strings.Repeat("b", 63), ""},
		{"gs://" + strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + ".example.com/p", strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + ".example.com", "p"},
	}
	for _, tt := range valid {
		bucket, prefix, err := ParseURL(tt.url)
		if err != nil || bucket != tt.bucket || prefix != tt.prefix {
			t.Errorf("ParseURL(%q) = %q, %q, %v; want %q, %q, nil", tt.url, bucket, prefix, err, tt.bucket, tt.prefix)
		}
	}
	invalid := []struct{ url, mention string }{
		{"", "gs://"},
		{"file:///var/lib/spool", "gs://"},
		{"s3://bucket/prefix", "gs://"},
		{"GS-bucket", "gs://"},
		{"gs://", "no bucket"},
		{"gs:///prefix", "no bucket"},
		{"gs:bucket/prefix", "without user"},
		{"gs://user@bucket/p", "without user"},
		{"gs://bucket:443/p", "without user"},
		{"gs://bucket/p?versions=1", "without user"},
		{"gs://bucket/p#frag", "without user"},
		{"gs://Bucket/p", "not a valid bucket"},
		{"gs://ab/p", "not a valid bucket"},
		{"gs://-bucket/p", "not a valid bucket"},
		{"gs://" + strings.Repeat("b", 64) + "/p", "not a valid bucket"},
		{"gs://" + strings.Repeat("b", 64) + ".example.com/p", "not a valid bucket"},
		{"gs://a..b/p", "not a valid bucket"},
		{"gs://" + strings.Repeat("b", 223), "not a valid bucket"},
		{"gs://bucket/..", "prefix"},
		{"gs://bucket/a/b/.", "prefix"},
		{`gs://bucket/a\b`, "prefix"},
		{"gs://bucket/a%00b", "prefix"},
		{"gs://bucket/a%FFb", "prefix"},
		{"gs://bucket/a//b", "prefix"},
		{"gs://bucket/a/../b", "prefix"},
		{"gs://bucket/./b", "prefix"},
		{"gs://bucket/a%0Ab", "prefix"},
	}
	for _, tt := range invalid {
		bucket, prefix, err := ParseURL(tt.url)
		if err == nil || !strings.Contains(err.Error(), tt.mention) {
			t.Errorf("ParseURL(%q) = %q, %q, %v; want an error mentioning %q", tt.url, bucket, prefix, err, tt.mention)
		}
		if s, err := Open(t.Context(), tt.url, Options{}); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded, want an error", tt.url)
		}
	}
}

// TestOpen builds Stores the way the application does: from a URL, with
// a client given, and from the environment (STORAGE_EMULATOR_HOST).
func TestOpen(t *testing.T) {
	srv := gcstest.Start(t)
	bucket := srv.CreateBucket(t)
	ctx := t.Context()

	given := srv.Client(t)
	s, err := Open(ctx, "gs://"+bucket+"/given", Options{Client: given})
	if err != nil {
		t.Fatalf("Open with a client: %v", err)
	}
	roundTrip(t, s, "usr_o/upl_given")
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := New(given, bucket, "", Options{}).Ping(ctx); err != nil {
		t.Errorf("the client given to Open no longer works after Close: %v", err)
	}

	t.Setenv("STORAGE_EMULATOR_HOST", srv.URL)
	s, err = Open(ctx, "gs://"+bucket+"/env", Options{})
	if err != nil {
		t.Fatalf("Open with STORAGE_EMULATOR_HOST: %v", err)
	}
	defer s.Close()
	if err := s.Ping(ctx); err != nil {
		t.Errorf("Ping with STORAGE_EMULATOR_HOST: %v", err)
	}
	roundTrip(t, s, "usr_o/upl_env")
	if got := listNames(t, given, bucket, "env/objects/"); !slices.Equal(got, []string{"env/objects/usr_o/upl_env"}) {
		t.Errorf("objects under env/objects/: %q, want the one just assembled", got)
	}
}

func roundTrip(t *testing.T, s *Store, key string) {
	t.Helper()
	data := patternBytes(10)
	prepare(t, s, key, len(data))
	writeChunk(t, s, key, upload.ChunkRef{Size: int64(len(data))}, data)
	if got := readAll(t, s, assemble(t, s, key, 1, len(data))); !bytes.Equal(got, data) {
		t.Errorf("object holds %q, want %q", got, data)
	}
}

// emulatorChildEnv makes TestEmulatorProcess serve an emulator.
const emulatorChildEnv = "SPOOL_GCS_TEST_EMULATOR_PROCESS"

// TestEmulatorProcess is not a test of its own: TestWriteChunkMemory runs
// the test binary again with only this test, to serve the emulator from
// another process so that the emulator's allocations (it keeps objects in
// memory) stay out of the measurement.
func TestEmulatorProcess(t *testing.T) {
	if os.Getenv(emulatorChildEnv) == "" {
		t.Skip("serves the emulator of TestWriteChunkMemory only")
	}
	srv := gcstest.Start(t)
	fmt.Printf("emulator %s %s\n", srv.URL, srv.CreateBucket(t))
	io.Copy(io.Discard, os.Stdin) // until the parent closes it
}

// startEmulatorProcess runs TestEmulatorProcess in a child process and
// returns its emulator's URL and bucket.
func startEmulatorProcess(t *testing.T) (url, bucket string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("finding the test binary: %v", err)
	}
	cmd := exec.Command(exe, "-test.run=^TestEmulatorProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), emulatorChildEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the emulator process: %v", err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		if f := strings.Fields(lines.Text()); len(f) == 3 && f[0] == "emulator" {
			go io.Copy(io.Discard, stdout)
			return f[1], f[2]
		}
	}
	t.Fatalf("the emulator process ended without announcing itself: %v", lines.Err())
	return "", ""
}

// TestWriteChunkMemory checks that WriteChunk streams: writing a 64 MiB
// chunk allocates a small fraction of it (the Writer's buffer of
// WriteBufferSize, 1 MiB, plus per-request overhead), not the chunk. The
// emulator runs in another process so that only spool's side and the
// client library are measured.
func TestWriteChunkMemory(t *testing.T) {
	// Not parallel: TotalAlloc counts every goroutine's allocations, so
	// another test running meanwhile would be measured too.
	if testing.Short() {
		t.Skip("sends 64 MiB")
	}
	emuURL, bucket := startEmulatorProcess(t)
	s := New(gcstest.NewClient(t, emuURL), bucket, "mem", Options{})
	const size = 64 << 20
	key := "usr_m/upl_mem"
	prepare(t, s, key, size)

	wantCRC := crc32.New(castagnoli)
	if _, err := io.Copy(wantCRC, &patternReader{left: size}); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	n, err := s.WriteChunk(t.Context(), key, upload.ChunkRef{Size: size}, &patternReader{left: size})
	runtime.ReadMemStats(&after)
	if err != nil || n != size {
		t.Fatalf("WriteChunk of 64 MiB = %d, %v; want %d, nil", n, err, size)
	}
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("WriteChunk of %d MiB allocated %.1f MiB", size>>20, float64(allocated)/(1<<20))
	// A quarter of the chunk: far above the ~1 MiB buffer and request
	// overhead, far below any copy of the chunk.
	const bound = 16 << 20
	if allocated > bound {
		t.Errorf("WriteChunk of %d MiB allocated %d MiB, want under %d MiB: the chunk is being buffered", size>>20, allocated>>20, bound>>20)
	}
	info, err := s.StatChunk(t.Context(), key, upload.ChunkRef{Size: size})
	if want := (upload.ChunkInfo{Size: size, CRC32C: wantCRC.Sum32()}); err != nil || info != want {
		t.Errorf("StatChunk = %+v, %v; want %+v", info, err, want)
	}
}

// patternReader yields left bytes of a fixed pattern without allocating.
type patternReader struct {
	off, left int64
}

func (r *patternReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.left)]
	for i := range p {
		x := r.off + int64(i)
		p[i] = byte(x ^ x>>8 ^ x>>16)
	}
	r.off += int64(len(p))
	r.left -= int64(len(p))
	return len(p), nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// patternBytes returns n bytes of a pattern that differs for each n.
func patternBytes(n int) []byte {
	b := make([]byte, n)
	r := &patternReader{off: int64(n) * 7919, left: int64(n)}
	io.ReadFull(r, b)
	return b
}

func prepare(t *testing.T, s *Store, key string, size int) {
	t.Helper()
	if err := s.Prepare(t.Context(), key, int64(size)); err != nil {
		t.Fatalf("Prepare(%q, %d): %v", key, size, err)
	}
}

func writeChunk(t *testing.T, s *Store, key string, chunk upload.ChunkRef, b []byte) {
	t.Helper()
	n, err := s.WriteChunk(t.Context(), key, chunk, bytes.NewReader(b))
	if err != nil || n != int64(len(b)) {
		t.Fatalf("WriteChunk(%q, %+v) = %d, %v; want %d, nil", key, chunk, n, err, len(b))
	}
}

func assemble(t *testing.T, s *Store, key string, totalChunks, size int) string {
	t.Helper()
	objKey, err := s.Assemble(t.Context(), key, totalChunks, int64(size))
	if err != nil {
		t.Fatalf("Assemble(%q, %d, %d): %v", key, totalChunks, size, err)
	}
	return objKey
}

func readAll(t *testing.T, s *Store, objKey string) []byte {
	t.Helper()
	obj, err := s.Open(t.Context(), objKey)
	if err != nil {
		t.Fatalf("Open(%q): %v", objKey, err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		t.Fatalf("reading %q: %v", objKey, err)
	}
	return b
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
