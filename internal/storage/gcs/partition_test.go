package gcs

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/spoolhq/spool/internal/blackhole"
	"github.com/spoolhq/spool/internal/storage/gcs/gcstest"
	"github.com/spoolhq/spool/internal/upload"
)

// TestPartitionEndsWrites reaches the emulator over a path that starts
// dropping every packet, as a network partition or a frozen host does,
// through a Store that Open made for STORAGE_EMULATOR_HOST (an endpoint
// over HTTP/1.1, which has no pings of its own): a chunk written into the
// partition fails once Options.TCPUserTimeout passes and the retries give
// up, rather than waiting for TCP's retransmissions (about 15 minutes);
// and once packets flow again the same chunk is written and assembled.
func TestPartitionEndsWrites(t *testing.T) {
	srv := gcstest.Start(t)
	bucket := srv.CreateBucket(t)
	hole := blackhole.Start(t, strings.TrimPrefix(srv.URL, "http://"))
	t.Setenv("STORAGE_EMULATOR_HOST", hole.Addr)
	s, err := Open(t.Context(), "gs://"+bucket+"/partition", Options{
		TCPUserTimeout:   300 * time.Millisecond,
		MaxRetryDuration: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	key := "usr_p/upl_partition"
	data := patternBytes(3 << 20)
	prepare(t, s, key, len(data))
	first := upload.ChunkRef{Size: 1 << 20}
	writeChunk(t, s, key, first, data[:1<<20])

	// The partition starts half-way through the chunk's body, once its
	// first bytes are on their way.
	second := upload.ChunkRef{Index: 1, Offset: 1 << 20, Size: 2 << 20}
	var start time.Time
	body := io.MultiReader(bytes.NewReader(data[1<<20:2<<20]), readerFunc(func([]byte) (int, error) {
		hole.Drop(t)
		start = time.Now()
		return 0, io.EOF
	}), bytes.NewReader(data[2<<20:]))
	done := make(chan error, 1)
	go func() {
		_, err := s.WriteChunk(t.Context(), key, second, body)
		done <- err
	}()
	select {
	case err := <-done:
		if start.IsZero() {
			t.Fatalf("the chunk's write ended before the partition: %v", err)
		}
		t.Logf("the chunk written into the partition failed after %v: %v", time.Since(start).Round(time.Millisecond), err)
		var netErr net.Error
		if err == nil || !errors.As(err, &netErr) && !strings.Contains(err.Error(), "timed out") {
			t.Errorf("the chunk written into the partition: got %v, want a network error", err)
		}
	case <-time.After(2 * time.Minute): // a hang guard
		hole.Restore(t)
		t.Fatal("the chunk written into the partition still waits 2 minutes on")
	}

	hole.Restore(t)
	writeChunk(t, s, key, second, data[1<<20:])
	// Read straight from the emulator: reached at another address, it
	// takes the Host of a download for a bucket's (virtual-hosted style).
	direct := New(srv.Client(t), bucket, "partition", Options{})
	if got := readAll(t, direct, assemble(t, s, key, 2, len(data))); !bytes.Equal(got, data) {
		t.Errorf("the assembled object differs from what was written (%d bytes, want %d)", len(got), len(data))
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }
