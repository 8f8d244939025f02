package upload

import "testing"

func TestPlanFile(t *testing.T) {
	t.Parallel()
	cfg := Config{SingleThreshold: 1 * MiB, ChunkSize: 5 * MiB}.withDefaults()
	tests := []struct {
		name      string
		size      int64
		strategy  Strategy
		chunkSize int64
		chunks    int
	}{
		{"one byte", 1, StrategySingle, 1, 1},
		{"just under threshold", 1*MiB - 1, StrategySingle, 1*MiB - 1, 1},
		{"at threshold", 1 * MiB, StrategySingle, 1 * MiB, 1},
		{"just over threshold", 1*MiB + 1, StrategyChunked, 5 * MiB, 1},
		{"one chunk minus a byte", 5*MiB - 1, StrategyChunked, 5 * MiB, 1},
		{"exactly one chunk", 5 * MiB, StrategyChunked, 5 * MiB, 1},
		{"one chunk plus a byte", 5*MiB + 1, StrategyChunked, 5 * MiB, 2},
		{"exact multiple", 10 * MiB, StrategyChunked, 5 * MiB, 2},
		{"short last chunk", 11 * MiB, StrategyChunked, 5 * MiB, 3},
		{"5 GiB", 5 * GiB, StrategyChunked, 5 * MiB, 1024},
		{"5 GiB plus a byte", 5*GiB + 1, StrategyChunked, 5 * MiB, 1025},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := cfg.planFile(tt.size)
			want := plan{strategy: tt.strategy, chunkSize: tt.chunkSize, totalChunks: tt.chunks}
			if got != want {
				t.Errorf("planFile(%d) = %+v, want %+v", tt.size, got, want)
			}
		})
	}
}

func TestPlanFileDefaults5GiB(t *testing.T) {
	t.Parallel()
	// With the defaults (150 MiB threshold, 8 MiB chunks) a 5 GiB video
	// is 640 full chunks.
	cfg := DefaultConfig()
	p := cfg.planFile(5 * GiB)
	if p.strategy != StrategyChunked || p.chunkSize != 8*MiB || p.totalChunks != 640 {
		t.Fatalf("planFile(5 GiB) = %+v, want CHUNKED, 8 MiB, 640 chunks", p)
	}
	assertChunksCover(t, 5*GiB, p)
}

// assertChunksCover checks that the chunks of p lie back to back, are all
// full but the last, and add up to size.
func assertChunksCover(t *testing.T, size int64, p plan) {
	t.Helper()
	var sum int64
	for i := range p.totalChunks {
		ref, ok := chunkRef(size, p.chunkSize, p.totalChunks, i)
		if !ok {
			t.Fatalf("chunkRef(%d) not ok, want ok", i)
		}
		if ref.Index != i || ref.Offset != sum {
			t.Fatalf("chunk %d = %+v, want index %d at offset %d", i, ref, i, sum)
		}
		if i < p.totalChunks-1 && ref.Size != p.chunkSize {
			t.Fatalf("chunk %d size = %d, want %d (only the last may be short)", i, ref.Size, p.chunkSize)
		}
		if ref.Size <= 0 {
			t.Fatalf("chunk %d size = %d, want > 0", i, ref.Size)
		}
		sum += ref.Size
	}
	if sum != size {
		t.Fatalf("chunk sizes sum to %d, want %d", sum, size)
	}
}

func TestChunksCoverFile(t *testing.T) {
	t.Parallel()
	cfg := Config{SingleThreshold: 1 * MiB, ChunkSize: 5 * MiB}.withDefaults()
	for _, size := range []int64{1, 1 * MiB, 1*MiB + 1, 5 * MiB, 5*MiB + 1, 10 * MiB, 11 * MiB, 5 * GiB, 5*GiB + 1} {
		assertChunksCover(t, size, cfg.planFile(size))
	}
}

func TestChunkRef(t *testing.T) {
	t.Parallel()
	const (
		total     = 11 * MiB
		chunkSize = 5 * MiB
		chunks    = 3
	)
	tests := []struct {
		index int
		want  ChunkRef
		ok    bool
	}{
		{-1, ChunkRef{}, false},
		{0, ChunkRef{Index: 0, Offset: 0, Size: 5 * MiB}, true},
		{1, ChunkRef{Index: 1, Offset: 5 * MiB, Size: 5 * MiB}, true},
		{2, ChunkRef{Index: 2, Offset: 10 * MiB, Size: 1 * MiB}, true},
		{3, ChunkRef{}, false},
		{1 << 30, ChunkRef{}, false},
	}
	for _, tt := range tests {
		got, ok := chunkRef(total, chunkSize, chunks, tt.index)
		if got != tt.want || ok != tt.ok {
			t.Errorf("chunkRef(index %d) = %+v, %v; want %+v, %v", tt.index, got, ok, tt.want, tt.ok)
		}
	}

	// An exact multiple has a full last chunk.
	got, ok := chunkRef(10*MiB, chunkSize, 2, 1)
	if want := (ChunkRef{Index: 1, Offset: 5 * MiB, Size: 5 * MiB}); got != want || !ok {
		t.Errorf("last chunk of 10 MiB = %+v, %v; want %+v, true", got, ok, want)
	}
	// The last chunk of a 5 GiB + 1 byte file is one byte, at 5 GiB.
	got, ok = chunkRef(5*GiB+1, chunkSize, 1025, 1024)
	if want := (ChunkRef{Index: 1024, Offset: 5 * GiB, Size: 1}); got != want || !ok {
		t.Errorf("last chunk of 5 GiB+1 = %+v, %v; want %+v, true", got, ok, want)
	}
}
