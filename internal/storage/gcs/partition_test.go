package gcs

import (
	"bytes"
	"errors"
	"io"
	"net"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/spoolhq/spool/internal/blackhole"
	"github.com/spoolhq/spool/internal/storage/gcs/gcstest"
	"github.com/spoolhq/spool/internal/upload"
)

// TestPartitionEndsCalls reaches the emulator over a path that starts
// dropping every packet, as a network partition or a frozen host does,
// through a Store that Open made for STORAGE_EMULATOR_HOST (an endpoint
// over HTTP/1.1, which has no pings of its own), and checks that nothing
// waits on the partition for good:
//
//   - a read sent on a pooled connection fails once Options.TCPUserTimeout
//     passes and its retries give up (it waited for TCP's retransmissions,
//     about 15 minutes);
//   - a chunk's write, and a piece's (a tus PATCH's), whose first request
//     the library retries until its context ends (and a chunk's does
//     not), is abandoned once GCS has taken none of its bytes for
//     Options.MaxRetryDuration;
//
// and once packets flow again the same chunk is written and assembled.
func TestPartitionEndsCalls(t *testing.T) {
	srv := gcstest.Start(t)
	bucket := srv.CreateBucket(t)
	hole := blackhole.Start(t, strings.TrimPrefix(srv.URL, "http://"))
	t.Setenv("STORAGE_EMULATOR_HOST", hole.Addr)
	s, err := Open(t.Context(), "gs://"+bucket+"/partition", Options{
		TCPUserTimeout:   300 * time.Millisecond,
		MaxRetryDuration: 3 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	key := "usr_p/upl_partition"
	data := patternBytes(3 << 20)
	prepare(t, s, key, len(data))
	first := upload.ChunkRef{Size: 1 << 20}
	writeChunk(t, s, key, first, data[:1<<20]) // leaves a connection in the pool

	hole.Drop(t)
	endsInThePartition(t, hole, "a read", func() error {
		_, err := s.StatChunk(t.Context(), key, first)
		return err
	}, func(err error) bool {
		var netErr net.Error
		return errors.As(err, &netErr) || strings.Contains(err.Error(), "timed out")
	})
	hole.Restore(t)

	// The partition starts as the chunk's body is first read: after the
	// upload's marker was checked, before the write's first request.
	second := upload.ChunkRef{Index: 1, Offset: 1 << 20, Size: 2 << 20}
	dropped := false
	body := io.MultiReader(readerFunc(func([]byte) (int, error) {
		hole.Drop(t)
		dropped = true
		return 0, io.EOF
	}), bytes.NewReader(data[1<<20:]))
	endsInThePartition(t, hole, "a chunk's write", func() error {
		_, err := s.WriteChunk(t.Context(), key, second, body)
		if !dropped {
			t.Errorf("the chunk's write ended before the partition: %v", err)
		}
		return err
	}, func(err error) bool { return errors.Is(err, errWriteStalled) })

	hole.Restore(t)

	// The same for a piece of the chunk (a tus PATCH's), which keeps what
	// arrived before its body failed.
	dropped = false
	body = io.MultiReader(readerFunc(func([]byte) (int, error) {
		hole.Drop(t)
		dropped = true
		return 0, io.EOF
	}), bytes.NewReader(data[1<<20:2<<20]))
	endsInThePartition(t, hole, "a piece's write", func() error {
		_, err := s.WritePiece(t.Context(), key, second, 0, body)
		if !dropped {
			t.Errorf("the piece's write ended before the partition: %v", err)
		}
		return err
	}, func(err error) bool { return errors.Is(err, errWriteStalled) })

	hole.Restore(t)
	writeChunk(t, s, key, second, data[1<<20:])
	// Read straight from the emulator: reached at another address, it
	// takes the Host of a download for a bucket's (virtual-hosted style).
	direct := New(srv.Client(t), bucket, "partition", Options{})
	if got := readAll(t, direct, assemble(t, s, key, 2, len(data))); !bytes.Equal(got, data) {
		t.Errorf("the assembled object differs from what was written (%d bytes, want %d)", len(got), len(data))
	}
}

// endsInThePartition runs call, which meets the partition, and checks
// that it fails with an error want accepts. Unbounded, it waits on the
// partition: after 2 minutes the test fails with every goroutine's stack,
// letting packets through so that the cleanups are not stuck behind it.
func endsInThePartition(t *testing.T, hole *blackhole.Hole, what string, call func() error, want func(error) bool) {
	t.Helper()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- call() }()
	select {
	case err := <-done:
		t.Logf("%s in the partition failed after %v: %v", what, time.Since(start).Round(time.Millisecond), err)
		if err == nil || !want(err) {
			t.Errorf("%s in the partition: got %v, want it to fail as the partition's", what, err)
		}
	case <-time.After(2 * time.Minute): // a hang guard
		var stacks strings.Builder
		_ = pprof.Lookup("goroutine").WriteTo(&stacks, 2)
		hole.Restore(t)
		t.Fatalf("%s still waits on the partition 2 minutes on; the goroutines:\n%s", what, stacks.String())
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }
