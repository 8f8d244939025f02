package localfs

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"testing/iotest"

	"github.com/spoolhq/spool/internal/storage/storagetest"
	"github.com/spoolhq/spool/internal/upload"
)

// The conformance suite again with the smallest write size, so a chunk
// takes many fills of the buffer and ends in a partial one.
func TestConformanceSmallestWrites(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) upload.Store { return newStore(t, Options{WriteSize: minWriteSize}) })
}

func TestWriteSizeOption(t *testing.T) {
	for _, tc := range []struct {
		give, want int
	}{
		{0, DefaultWriteSize()},
		{minWriteSize, minWriteSize},
		{maxWriteSize, maxWriteSize},
		{300 << 10, 300 << 10},
	} {
		s := newStore(t, Options{WriteSize: tc.give})
		buf := s.buffers.get()
		if len(buf) != tc.want {
			t.Errorf("WriteSize %d: buffers of %d bytes, want %d", tc.give, len(buf), tc.want)
		}
		s.buffers.put(buf)
	}
	for _, bad := range []int{-1, 1, minWriteSize - 1, maxWriteSize + 1, 1 << 30} {
		_, err := NewWithOptions(t.TempDir(), Options{WriteSize: bad})
		if err == nil || !strings.Contains(err.Error(), "write size") {
			t.Errorf("WriteSize %d: error %v, want one naming the write size", bad, err)
		}
	}
}

// A chunk whose size is not a multiple of the write size lands whole.
func TestChunkOfUnevenWrites(t *testing.T) {
	s := newStore(t, Options{WriteSize: minWriteSize})
	key := "usr_a/upl_uneven"
	body := strings.Repeat("0123456789abcdef", 3*minWriteSize/16) + "tail"
	if err := s.Prepare(t.Context(), key, int64(len(body))); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	writeChunk(t, s, key, upload.ChunkRef{Size: int64(len(body))}, body)
	if got := assembleAndRead(t, s, key, 1, int64(len(body))); got != body {
		t.Errorf("assembled %d bytes, not the %d written (first difference matters)", len(got), len(body))
	}
}

// The last buffer's worth of a chunk is written in shrinking fills, so
// that little is left to write once the body's last byte is in, and
// every byte still lands in order.
func TestLastWritesShrink(t *testing.T) {
	for _, tc := range []struct {
		name   string
		size   int
		writes []int
	}{
		{"two buffers", 2 * LargeWrite, []int{LargeWrite, LargeWrite / 2, LargeWrite / 4, tailFill, tailFill}},
		{"a buffer and a bit", LargeWrite + 100, []int{LargeWrite, 100}},
		{"less than the tail fill", 1000, []int{1000}},
		{"between one and two tail fills", tailFill + 10, []int{tailFill, 10}},
	} {
		body := bytes.Repeat([]byte("0123456789abcdef"), tc.size/16+1)[:tc.size]
		var w recordingWriter
		// The body comes in reads shorter than asked for, as from a connection.
		n, err := fillAndWrite(&w, iotest.HalfReader(bytes.NewReader(body)), make([]byte, LargeWrite), int64(tc.size))
		if err != nil || n != int64(tc.size) {
			t.Errorf("%s: fillAndWrite = %d, %v; want %d, nil", tc.name, n, err, tc.size)
		}
		if !slices.Equal(w.sizes, tc.writes) {
			t.Errorf("%s: writes of %v bytes, want %v", tc.name, w.sizes, tc.writes)
		}
		if !bytes.Equal(w.data.Bytes(), body) {
			t.Errorf("%s: written bytes differ from the body from byte %d on", tc.name, firstDiff(w.data.String(), string(body)))
		}
	}
}

// recordingWriter keeps what is written to it and the size of each write.
type recordingWriter struct {
	data  bytes.Buffer
	sizes []int
}

func (w *recordingWriter) Write(p []byte) (int, error) {
	w.sizes = append(w.sizes, len(p))
	return w.data.Write(p)
}

// balloon is a /sys with one virtio device of the given id and features
// and, if order is not empty, the page_reporting module's order.
func balloon(id, features, order string) fstest.MapFS {
	sys := fstest.MapFS{
		"bus/virtio/devices/virtio0/device":   {Data: []byte("0x0001\n")}, // a network card
		"bus/virtio/devices/virtio0/features": {Data: []byte("11111111\n")},
		"bus/virtio/devices/virtio3/device":   {Data: []byte(id + "\n")},
		"bus/virtio/devices/virtio3/features": {Data: []byte(features + "\n")},
	}
	if order != "" {
		sys["module/page_reporting/parameters/page_reporting_order"] = &fstest.MapFile{Data: []byte(order + "\n")}
	}
	return sys
}

func TestWriteSizeFollowsFreePageReporting(t *testing.T) {
	const reporting = "0110010100000000000000000000000010000000" // as read off a Firecracker VM
	for _, tc := range []struct {
		name string
		sys  fstest.MapFS
		want int
	}{
		{"no /sys to read", fstest.MapFS{}, LargeWrite},
		{"no balloon", balloon("0x0002", reporting, "9"), LargeWrite},
		{"a balloon without reporting", balloon(virtioBalloon, "0110000100000000", "9"), LargeWrite},
		{"a balloon with too short a feature list", balloon(virtioBalloon, "0110", "9"), LargeWrite},
		{"a balloon reporting", balloon(virtioBalloon, reporting, "9"), SmallWrite},
		{"reporting, at the largest order", balloon(virtioBalloon, reporting, "10"), SmallWrite},
		{"reporting turned off (order past the largest)", balloon(virtioBalloon, reporting, "11"), LargeWrite},
		{"reporting, module's order unreadable", balloon(virtioBalloon, reporting, ""), SmallWrite},
		{"reporting, module's order malformed", balloon(virtioBalloon, reporting, "nine"), SmallWrite},
	} {
		if got := writeSizeFor(tc.sys); got != tc.want {
			t.Errorf("%s: write size %d, want %d", tc.name, got, tc.want)
		}
	}
}

// Up to keptBuffers chunks at once get write-size buffers, reused once
// given back; more get SmallWrite ones.
func TestBuffersKeptAtMost(t *testing.T) {
	s := newStore(t, Options{WriteSize: LargeWrite})
	var held [][]byte
	for i := range keptBuffers + 3 {
		buf := s.buffers.get()
		want := LargeWrite
		if i >= keptBuffers {
			want = SmallWrite
		}
		if len(buf) != want {
			t.Fatalf("buffer %d in use at once: %d bytes, want %d", i+1, len(buf), want)
		}
		held = append(held, buf)
	}
	for _, buf := range held {
		s.buffers.put(buf)
	}
	again := s.buffers.get()
	defer s.buffers.put(again)
	reused := slices.ContainsFunc(held[:keptBuffers], func(b []byte) bool { return &b[0] == &again[0] })
	if len(again) != LargeWrite || !reused {
		t.Errorf("after all were given back: a buffer of %d bytes, one of those kept: %v; want one of those kept", len(again), reused)
	}
	if s.buffers.made != keptBuffers {
		t.Errorf("%d buffers made, want %d", s.buffers.made, keptBuffers)
	}
}
