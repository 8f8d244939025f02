package gcs

import (
	"hash/crc32"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestCRC32CCombineMatchesConcatenation(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	for trial := range 200 {
		// Split data[:size] at random points, including empty pieces.
		size := rng.IntN(len(data) + 1)
		if trial < 3 {
			size = []int{0, 1, len(data)}[trial]
		}
		cuts := []int{0}
		for range rng.IntN(8) {
			cuts = append(cuts, rng.IntN(size+1))
		}
		cuts = append(cuts, size)
		slices.Sort(cuts)

		var got uint32
		for i := 1; i < len(cuts); i++ {
			piece := data[cuts[i-1]:cuts[i]]
			got = crc32cCombine(got, crc32.Checksum(piece, castagnoli), int64(len(piece)))
		}
		if want := crc32.Checksum(data[:size], castagnoli); got != want {
			t.Fatalf("combining the CRC32Cs of %d bytes cut at %v = %08x, want %08x (the CRC32C of the whole)", size, cuts, got, want)
		}
	}
}

// TestCRC32CCombineLargeLengths checks lengths beyond what the test can
// hash, through associativity: (A+B)+C must equal A+(B+C) for lengths
// of many GiB, as in a 5 GiB file made of 8 MiB parts.
func TestCRC32CCombineLargeLengths(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	for range 100 {
		a, b, c := rng.Uint32(), rng.Uint32(), rng.Uint32()
		lenB, lenC := rng.Int64N(1<<40)+1, rng.Int64N(1<<40)+1
		left := crc32cCombine(crc32cCombine(a, b, lenB), c, lenC)
		right := crc32cCombine(a, crc32cCombine(b, c, lenC), lenB+lenC)
		if left != right {
			t.Fatalf("combine is not associative for lengths %d and %d: %08x != %08x", lenB, lenC, left, right)
		}
	}
	// Zeros: the CRC32C of n zero bytes after A is combine(A, crc(zeros), n).
	zeros := make([]byte, 3<<20)
	a := crc32.Checksum([]byte("spool"), castagnoli)
	got := crc32cCombine(a, crc32.Checksum(zeros, castagnoli), int64(len(zeros)))
	want := crc32.Checksum(append([]byte("spool"), zeros...), castagnoli)
	if got != want {
		t.Errorf("combine with %d zero bytes = %08x, want %08x", len(zeros), got, want)
	}
}
