package media

import (
	"bytes"
	"encoding/binary"
	"testing"
	"testing/iotest"
)

func TestPeakFolderKeepsTheLoudestOfEachStretch(t *testing.T) {
	t.Parallel()
	// 10 000 samples (not a power of two, so bins fold unevenly): silence,
	// with one full-scale click at 1/4 and a half-scale one at 3/4.
	samples := make([]int16, 10_000)
	samples[2_500] = -32768
	samples[7_500] = 16384
	var pcm bytes.Buffer
	for _, s := range samples {
		_ = binary.Write(&pcm, binary.LittleEndian, s)
	}
	f := newPeakFolder(256)
	// One byte at a time: samples split across reads must still pair up.
	if err := f.readPCM(iotest.OneByteReader(&pcm)); err != nil {
		t.Fatal(err)
	}
	if len(f.bins) > 512 {
		t.Fatalf("the folder holds %d bins, want at most 512", len(f.bins))
	}
	peaks := f.peaks()
	if len(peaks) != 256 {
		t.Fatalf("%d peaks, want 256", len(peaks))
	}
	loud := map[int]int{}
	for i, p := range peaks {
		if p != 0 {
			loud[i] = p
		}
	}
	if len(loud) != 2 || loud[64] != 100 || loud[192] != 50 {
		t.Errorf("non-zero peaks %v, want {64:100 192:50}", loud)
	}
}

func TestPeakFolderShortAndEmpty(t *testing.T) {
	t.Parallel()
	f := newPeakFolder(256)
	for _, p := range f.peaks() {
		if p != 0 {
			t.Fatalf("no samples gave peaks %v", f.peaks())
		}
	}
	f.add(32767)
	f.add(0)
	peaks := f.peaks()
	if len(peaks) != 256 || peaks[0] != 100 || peaks[255] != 0 {
		t.Errorf("two samples gave %v…%v, want 100 first and 0 last", peaks[:3], peaks[253:])
	}
}
