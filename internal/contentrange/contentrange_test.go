package contentrange

import (
	"math"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	const maxInt = "9223372036854775807"
	tests := []struct {
		in   string
		want Range
	}{
		{"bytes 0-99/1000", Range{0, 99, 1000}},
		{"bytes 900-999/1000", Range{900, 999, 1000}},
		{"bytes 0-0/1", Range{0, 0, 1}},
		{"bytes 0-8388607/*", Range{0, 8388607, -1}},
		{"bytes */1000", Range{-1, -1, 1000}},
		{"bytes */0", Range{-1, -1, 0}},
		{"Bytes 1-2/3", Range{1, 2, 3}},
		{"BYTES */5", Range{-1, -1, 5}},
		{"  bytes 1-2/3\t", Range{1, 2, 3}},
		{"bytes 007-010/0100", Range{7, 10, 100}},
		{"bytes 5368709119-5368709119/5368709120", Range{5368709119, 5368709119, 5368709120}}, // 5 GiB
		{"bytes 0-9223372036854775806/" + maxInt, Range{0, math.MaxInt64 - 1, math.MaxInt64}}, // largest range
		{"bytes 0-9223372036854775806/*", Range{0, math.MaxInt64 - 1, -1}},                    // largest open range
		{"bytes */" + maxInt, Range{-1, -1, math.MaxInt64}},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if err != nil {
			t.Errorf("Parse(%q) error = %v, want %+v", tt.in, err, tt.want)
			continue
		}
		if got != tt.want {
			t.Errorf("Parse(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestParseRejects(t *testing.T) {
	tests := []struct {
		in      string
		wantMsg string // part of the error message
	}{
		{"", "want \"bytes"},
		{"bytes", "want \"bytes"},
		{"bytes=0-1/2", "want \"bytes"},
		{"items 0-1/2", `unit "items" is not "bytes"`},
		{"bits 0-1/2", `unit "bits"`},
		{"bytes 0-1", `missing "/total"`},
		{"bytes 0-1/", "missing total length"},
		{"bytes */*", "neither a range nor a total"},
		{"bytes */", "missing total length"},
		{"bytes 5/10", "is not first-last"},
		{"bytes -1/10", "missing first byte position"},
		{"bytes 1-/10", "missing last byte position"},
		{"bytes +1-2/10", `first byte position "+1" is not a decimal number`},
		{"bytes 1-+2/10", `last byte position "+2"`},
		{"bytes -1-2/10", "missing first byte position"},
		{"bytes 1--2/10", `last byte position "-2"`},
		{"bytes 1-2/+10", `total length "+10"`},
		{"bytes 1-2/-10", `total length "-10"`},
		{"bytes 1 -2/10", `first byte position "1 "`},
		{"bytes 1- 2/10", `last byte position " 2"`},
		{"bytes  1-2/10", `first byte position " 1"`},
		{"bytes 1-2 /10", `last byte position "2 "`},
		{"bytes 1-2/ 10", `total length " 10"`},
		{"bytes 1-2/10 ", ""}, // trailing white space is not part of the value: accepted
		{"bytes 1-2/10x", `total length "10x"`},
		{"bytes 1-2/10/20", `total length "10/20"`},
		{"bytes 1-2/10, 3-4/10", `total length "10, 3-4/10"`},
		{"bytes 0x1-2/10", `first byte position "0x1"`},
		{"bytes 1_0-20/30", `first byte position "1_0"`},
		{"bytes 1.5-2/10", `first byte position "1.5"`},
		{"bytes ١-٢/10", "not a decimal number"}, // Arabic-Indic digits
		{"bytes 5-4/10", "first byte position 5 is after last byte position 4"},
		{"bytes 0-10/10", "last byte position 10 is not less than total length 10"},
		{"bytes 0-0/0", "last byte position 0 is not less than total length 0"},
		{"bytes 0-9223372036854775808/*", `last byte position "9223372036854775808" is too large`},
		{"bytes 0-1/9223372036854775808", `total length "9223372036854775808" is too large: at most 9223372036854775807`},
		{"bytes 99999999999999999999999-1/2", "too large"},
		{"bytes 0-9223372036854775807/*", "last byte position 9223372036854775807 is too large"},
		{"bytes */-1", `total length "-1"`},
		{"bytes *-5/10", `first byte position "*"`},
		{"bytes 0-1/2\x00", `total length "2\x00"`},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if tt.wantMsg == "" {
			if err != nil {
				t.Errorf("Parse(%q) error = %v, want nil", tt.in, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("Parse(%q) = %+v, want an error containing %q", tt.in, got, tt.wantMsg)
			continue
		}
		if !strings.Contains(err.Error(), tt.wantMsg) {
			t.Errorf("Parse(%q) error = %q, want it to contain %q", tt.in, err, tt.wantMsg)
		}
	}
}

func TestLenAndString(t *testing.T) {
	tests := []struct {
		r       Range
		wantLen int64
		wantStr string
	}{
		{Range{0, 99, 1000}, 100, "bytes 0-99/1000"},
		{Range{5, 5, 6}, 1, "bytes 5-5/6"},
		{Range{0, 8388607, -1}, 8388608, "bytes 0-8388607/*"},
		{Range{-1, -1, 1000}, 0, "bytes */1000"},
		{Range{0, math.MaxInt64 - 1, math.MaxInt64}, math.MaxInt64, "bytes 0-9223372036854775806/9223372036854775807"},
	}
	for _, tt := range tests {
		if got := tt.r.Len(); got != tt.wantLen {
			t.Errorf("%+v.Len() = %d, want %d", tt.r, got, tt.wantLen)
		}
		if got := tt.r.String(); got != tt.wantStr {
			t.Errorf("%+v.String() = %q, want %q", tt.r, got, tt.wantStr)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"bytes 0-99/1000", "bytes 0-8388607/*", "bytes */1000", "bytes */*", "Bytes 007-010/0100",
		"bytes 0-9223372036854775806/9223372036854775807", "bytes 0-9223372036854775807/*",
		"bytes +1-2/10", "bytes 5-4/10", "bytes 0-10/10", "bytes 1-2/10 x", "items 0-1/2", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		r, err := Parse(h)
		if err != nil {
			return
		}
		// The value is one of the two documented shapes.
		if r.First < 0 {
			if r.First != -1 || r.Last != -1 || r.Total < 0 {
				t.Fatalf("Parse(%q) = %+v, not a valid status query", h, r)
			}
		} else if r.Last < r.First || r.Total < -1 || (r.Total >= 0 && r.Last >= r.Total) {
			t.Fatalf("Parse(%q) = %+v, not a valid range", h, r)
		}
		if n := r.Len(); n < 0 || (r.First >= 0 && n < 1) {
			t.Fatalf("Parse(%q).Len() = %d", h, n)
		}
		// It starts with the unit.
		if !strings.HasPrefix(strings.ToLower(strings.Trim(h, " \t")), "bytes ") {
			t.Fatalf("Parse(%q) accepted a value not starting with \"bytes \"", h)
		}
		// Formatting and parsing again gives the same value.
		s := r.String()
		again, err := Parse(s)
		if err != nil {
			t.Fatalf("Parse(%q.String() = %q) error = %v", h, s, err)
		}
		if again != r {
			t.Fatalf("Parse(%q) = %+v, want %+v (from %q)", s, again, r, h)
		}
		if again.String() != s {
			t.Fatalf("String is not stable: %q then %q", s, again.String())
		}
	})
}

// FuzzFromValues checks the other direction: every valid value
// formats to a header that parses back to it.
func FuzzFromValues(f *testing.F) {
	f.Add(int64(0), int64(99), int64(1000))
	f.Add(int64(-1), int64(-1), int64(1000))
	f.Add(int64(0), int64(math.MaxInt64-1), int64(-1))
	f.Add(int64(5), int64(4), int64(10))
	f.Fuzz(func(t *testing.T, first, last, total int64) {
		r := Range{first, last, total}
		valid := total >= -1 && last < math.MaxInt64 && (total < 0 || last < total)
		if first == -1 && last == -1 {
			valid = total >= 0
		} else {
			valid = valid && first >= 0 && first <= last
		}
		got, err := Parse(r.String())
		if valid && (err != nil || got != r) {
			t.Fatalf("Parse(%q) = (%+v, %v), want %+v", r.String(), got, err, r)
		}
		if !valid && err == nil && got == r {
			t.Fatalf("Parse(%q) = %+v, an invalid value", r.String(), got)
		}
	})
}
