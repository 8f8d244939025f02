package media

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

// box is a top-level ISO BMFF box of kind with body bytes of padding.
func box(kind string, body int) []byte {
	out := binary.BigEndian.AppendUint32(nil, uint32(8+body))
	out = append(out, kind...)
	return append(out, make([]byte, body)...)
}

// largeBox is a box using the 64-bit size form (size field 1).
func largeBox(kind string, body int) []byte {
	out := binary.BigEndian.AppendUint32(nil, 1)
	out = append(out, kind...)
	out = binary.BigEndian.AppendUint64(out, uint64(16+body))
	return append(out, make([]byte, body)...)
}

// toEnd is a box whose size field is 0: it runs to the end of the file.
func toEnd(kind string, body int) []byte {
	out := append([]byte{0, 0, 0, 0}, kind...)
	return append(out, make([]byte, body)...)
}

func TestMoovBeforeMdat(t *testing.T) {
	t.Parallel()
	join := func(boxes ...[]byte) []byte { return bytes.Join(boxes, nil) }
	tests := []struct {
		name      string
		file      []byte
		wantFirst bool
		wantErr   string
	}{
		{"faststart", join(box("ftyp", 16), box("moov", 100), box("mdat", 1000)), true, ""},
		{"moov at the end", join(box("ftyp", 16), box("free", 8), box("mdat", 1000), box("moov", 100)), false, ""},
		{"64-bit mdat then moov", join(box("ftyp", 16), largeBox("mdat", 500), box("moov", 20)), false, ""},
		{"64-bit free then moov", join(box("ftyp", 16), largeBox("free", 5), box("moov", 20), box("mdat", 30)), true, ""},
		{"mdat to the end of the file", join(box("ftyp", 16), toEnd("mdat", 300)), false, ""},
		{"moov to the end of the file", join(box("ftyp", 16), toEnd("moov", 300)), true, ""},
		{"neither", join(box("ftyp", 16), box("free", 4)), false, "neither"},
		{"box larger than the file", join(box("ftyp", 16), box("mdat", 100)[:50]), false, "does not fit"},
		{"size smaller than a header", join(box("ftyp", 16), []byte{0, 0, 0, 4}, []byte("moov")), false, "does not fit"},
		{"cut-short header", join(box("ftyp", 16), []byte{0, 0, 0}), false, "cut short"},
		{"64-bit size past the end", join(box("ftyp", 16), largeBox("mdat", 10)[:16]), false, "does not fit"},
		{"64-bit size beyond int64", join(box("ftyp", 16), []byte{0, 0, 0, 1}, []byte("mdat"), bytes.Repeat([]byte{0xff}, 8)), false, "more than the file"},
		{"empty", nil, false, "neither"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			first, err := moovBeforeMdat(bytes.NewReader(tt.file), int64(len(tt.file)))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || first != tt.wantFirst {
				t.Fatalf("got %v, %v; want %v, nil", first, err, tt.wantFirst)
			}
		})
	}
}
