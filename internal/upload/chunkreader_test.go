package upload

import (
	"bytes"
	"errors"
	"hash"
	"hash/crc32"
	"io"
	"testing"
	"testing/iotest"

	"github.com/spoolhq/spool/internal/digest"
)

func newTestChunkReader(r io.Reader, size int64) *chunkReader {
	return &chunkReader{r: r, remaining: size, hashes: []hash.Hash{crc32.New(crc32.MakeTable(crc32.Castagnoli))}}
}

// countingReader counts the bytes taken from the underlying body.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + 3)
	}
	return b
}

func TestChunkReaderExactSize(t *testing.T) {
	t.Parallel()
	data := pattern(1000)
	// OneByteReader makes the reader go through many small reads.
	cr := newTestChunkReader(iotest.OneByteReader(bytes.NewReader(data)), 1000)
	got, err := io.ReadAll(cr)
	if err != nil {
		t.Fatalf("ReadAll = %v, want nil", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("passed %d bytes, want the %d sent", len(got), len(data))
	}
	if cr.read != 1000 || cr.remaining != 0 || cr.bodyErr != nil {
		t.Fatalf("read %d, remaining %d, bodyErr %v; want 1000, 0, nil", cr.read, cr.remaining, cr.bodyErr)
	}
	if got, want := cr.hashes[0].(hash.Hash32).Sum32(), crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli)); got != want {
		t.Fatalf("crc32c = %08x, want %08x", got, want)
	}
}

func TestChunkReaderTooLong(t *testing.T) {
	t.Parallel()
	for _, extra := range []int{1, 4096} {
		data := pattern(1000 + extra)
		body := &countingReader{r: bytes.NewReader(data)}
		cr := newTestChunkReader(body, 1000)
		got, err := io.ReadAll(cr)
		if !errors.Is(err, errChunkTooLong) {
			t.Fatalf("extra %d: ReadAll err = %v, want errChunkTooLong", extra, err)
		}
		if len(got) != 1000 || !bytes.Equal(got, data[:1000]) {
			t.Fatalf("extra %d: passed %d bytes, want exactly the first 1000", extra, len(got))
		}
		// It may peek one byte past the chunk to notice, never more.
		if body.n != 1001 {
			t.Fatalf("extra %d: took %d bytes from the body, want 1001", extra, body.n)
		}
		if cr.bodyErr != nil {
			t.Fatalf("extra %d: bodyErr = %v, want nil (the body did not fail)", extra, cr.bodyErr)
		}
	}
}

func TestChunkReaderShort(t *testing.T) {
	t.Parallel()
	data := pattern(600)
	cr := newTestChunkReader(bytes.NewReader(data), 1000)
	got, err := io.ReadAll(cr)
	if err != nil {
		t.Fatalf("ReadAll = %v, want nil (EOF)", err)
	}
	if len(got) != 600 || cr.read != 600 || cr.remaining != 400 {
		t.Fatalf("passed %d, read %d, remaining %d; want 600, 600, 400", len(got), cr.read, cr.remaining)
	}
	if cr.bodyErr != nil {
		t.Fatalf("bodyErr = %v, want nil: a short body is not a broken one", cr.bodyErr)
	}
}

func TestChunkReaderBodyError(t *testing.T) {
	t.Parallel()
	errHangUp := errors.New("client hung up")
	tests := []struct {
		name string
		sent int
	}{
		{"mid-chunk", 400},
		{"at the start", 0},
		// All bytes arrived but the body failed instead of ending: still
		// the client's failure, not the storage's.
		{"after the last byte", 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := io.MultiReader(bytes.NewReader(pattern(tt.sent)), iotest.ErrReader(errHangUp))
			cr := newTestChunkReader(body, 1000)
			got, err := io.ReadAll(cr)
			if !errors.Is(err, errHangUp) {
				t.Fatalf("ReadAll err = %v, want %v", err, errHangUp)
			}
			if len(got) != tt.sent || cr.read != int64(tt.sent) {
				t.Fatalf("passed %d, read %d; want %d", len(got), cr.read, tt.sent)
			}
			if !errors.Is(cr.bodyErr, errHangUp) {
				t.Fatalf("bodyErr = %v, want %v", cr.bodyErr, errHangUp)
			}
		})
	}
}

func TestChunkReaderDigests(t *testing.T) {
	t.Parallel()
	data := []byte("hello")
	cr := newTestChunkReader(bytes.NewReader(data), 5)
	cr.hashes = append(cr.hashes, digest.NewHash("md5"), digest.NewHash("sha256"))
	if _, err := io.ReadAll(cr); err != nil {
		t.Fatal(err)
	}
	if got := cr.hashes[1].Sum(nil); !bytes.Equal(got, mustHex(t, md5Hello)) {
		t.Errorf("md5 = %x, want %s", got, md5Hello)
	}
	if got := cr.hashes[2].Sum(nil); !bytes.Equal(got, mustHex(t, sha256Hello)) {
		t.Errorf("sha256 = %x, want %s", got, sha256Hello)
	}
}
