package upload

import "testing"

func TestParseHeld(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		text string
		want heldRow
	}{
		{"", heldRow{held: heldNone}},
		{"RECEIVED|5242880|4294967295||sha256:ab|", heldRow{held: heldReceived, size: 5242880, crc32c: 4294967295, digest: "sha256:ab"}},
		{"FAILED|12|0|CHUNK_TOO_SMALL||got 12 | of 20: a|b", heldRow{held: heldFailed, size: 12, errorCode: "CHUNK_TOO_SMALL", err: "got 12 | of 20: a|b"}},
	} {
		got, err := parseHeld(c.text)
		if err != nil || got != c.want {
			t.Errorf("parseHeld(%q) = %+v, %v; want %+v", c.text, got, err, c.want)
		}
	}
	for _, bad := range []string{"RECEIVED|5", "RECEIVED|x|0|||", "RECEIVED|5|y|||"} {
		if got, err := parseHeld(bad); err == nil {
			t.Errorf("parseHeld(%q) = %+v, want an error", bad, got)
		}
	}
}
