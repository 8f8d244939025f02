package media

import (
	"encoding/json"
	"testing"
)

func TestRotationSwapsDisplaySize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		stream string
		w, h   int
	}{
		{"none", `{"width":320,"height":240}`, 320, 240},
		{"display matrix -90", `{"width":320,"height":240,"side_data_list":[{"side_data_type":"Display Matrix","rotation":-90}]}`, 240, 320},
		{"display matrix 90", `{"width":320,"height":240,"side_data_list":[{"side_data_type":"Display Matrix","rotation":90}]}`, 240, 320},
		{"display matrix 180", `{"width":320,"height":240,"side_data_list":[{"side_data_type":"Display Matrix","rotation":180}]}`, 320, 240},
		{"rotate tag 270", `{"width":320,"height":240,"tags":{"rotate":"270"}}`, 240, 320},
		{"matrix wins over tag", `{"width":320,"height":240,"tags":{"rotate":"90"},"side_data_list":[{"side_data_type":"Display Matrix","rotation":0}]}`, 320, 240},
	}
	for _, tt := range tests {
		var s probeStream
		if err := json.Unmarshal([]byte(tt.stream), &s); err != nil {
			t.Fatal(err)
		}
		if w, h := s.displaySize(); w != tt.w || h != tt.h {
			t.Errorf("%s: %d×%d, want %d×%d", tt.name, w, h, tt.w, tt.h)
		}
	}
}

func TestFrameRate(t *testing.T) {
	t.Parallel()
	for text, want := range map[string]float64{"25/1": 25, "30000/1001": 30000.0 / 1001, "0/0": -1, "": -1} {
		got := (&probeStream{AvgFrameRate: text}).frameRate()
		if (got == nil) != (want < 0) || (got != nil && *got != want) {
			t.Errorf("frameRate(%q) = %v, want %v", text, got, want)
		}
	}
}
