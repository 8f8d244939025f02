package filename

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

func TestSanitize(t *testing.T) {
	long := strings.Repeat("a", 300)
	tests := []struct {
		name, in, want string
	}{
		{"plain", "holiday.mp4", "holiday.mp4"},
		{"keeps case and unicode", "Été à Paris 🎬.MOV", "Été à Paris 🎬.MOV"},
		{"unix path", "/home/me/videos/clip.mp4", "clip.mp4"},
		{"windows path", `C:\Users\me\clip.mp4`, "clip.mp4"},
		{"mixed path", `a/b\c/d.png`, "d.png"},
		{"traversal", "../../etc/passwd", "passwd"},
		{"trailing slash", "videos/", Fallback},
		{"empty", "", Fallback},
		{"dot", ".", Fallback},
		{"dot dot", "..", Fallback},
		{"dots and spaces", " . .. ", Fallback},
		{"only reserved", "???", "___"},
		{"reserved chars", `a<b>c:d"e|f?g*h.txt`, "a_b_c_d_e_f_g_h.txt"},
		{"leading dot hidden file", ".bashrc", "bashrc"},
		{"trailing dots and spaces", "  clip.mp4. . ", "clip.mp4"},
		{"whitespace runs", "my \t\n  holiday\u00a0\u3000video.mp4", "my holiday video.mp4"},
		{"NUL and controls", "cl\x00ip\x1b[31m\x7f.mp4", "clip[31m.mp4"},
		{"next line is space", "a\u0085b", "a b"},
		{"control between spaces", "a \x00 b", "a b"},
		{"bidi override", "photo\u202egpj.exe", "photogpj.exe"},
		{"isolates and marks", "\u2066a\u2069\u200e\u200fb\u061c", "ab"},
		{"byte order mark", "\ufeffclip.mp4", "clip.mp4"},
		{"invalid UTF-8", "clip\xff\xfe.mp4", "clip\ufffd.mp4"},
		{"NFD to NFC", "Cafe\u0301.jpg", "Caf\u00e9.jpg"},
		{"composes after removal", "e\u202e\u0301.jpg", "\u00e9.jpg"},
		{"hangul jamo", "\u1112\u1161\u11ab.png", "\ud55c.png"},
		{"windows device", "CON", "_CON"},
		{"windows device with extension", "nul.txt", "_nul.txt"},
		{"windows device com", "com1.mp3", "_com1.mp3"},
		{"not a device", "console.txt", "console.txt"},
		{"not a device com0", "COM0", "COM0"},
		{"long keeps extension", long + ".mp4", strings.Repeat("a", 251) + ".mp4"},
		{"long without extension", long, strings.Repeat("a", 255)},
		{"long extension not kept", "a." + long, "a." + strings.Repeat("a", 253)},
		{"long cut before trailing dots", strings.Repeat("a", 250) + "....." + strings.Repeat("b", 10) + ".mp4", strings.Repeat("a", 250) + ".mp4"},
		{"long multibyte", strings.Repeat("é", 200) + ".mp4", strings.Repeat("é", 125) + ".mp4"},
		{"long cut keeps marks", strings.Repeat("a", 250) + "q\u0307\u0307.mp4", strings.Repeat("a", 250) + ".mp4"},
	}
	for _, tt := range tests {
		if got := Sanitize(tt.in); got != tt.want {
			t.Errorf("%s: Sanitize(%q) = %q, want %q", tt.name, tt.in, got, tt.want)
		}
	}
}

func TestSanitizeOnlyMarks(t *testing.T) {
	in := strings.Repeat("\u0301", 300)
	got := Sanitize(in)
	if len(got) > MaxBytes || !utf8.ValidString(got) || got == "" {
		t.Errorf("Sanitize(300 combining marks) = %q (%d bytes), want a valid non-empty name of at most %d bytes", got, len(got), MaxBytes)
	}
}

func FuzzSanitize(f *testing.F) {
	for _, s := range []string{
		"holiday.mp4", "../../etc/passwd", `C:\x\y.png`, ".", "..", "", " . ",
		"cl\x00ip\x1b.mp4", "photo\u202egpj.exe", "Cafe\u0301.jpg", "e\u202e\u0301",
		"<\u0338", "CON.txt", "\xff\xfe", strings.Repeat("é", 200) + ".mp4",
		strings.Repeat("a", 250) + "q\u0307\u0307.mp4", strings.Repeat("\u0301", 300),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got := Sanitize(in)
		if !utf8.ValidString(got) {
			t.Fatalf("Sanitize(%q) = %q, not valid UTF-8", in, got)
		}
		if got == "" || len(got) > MaxBytes {
			t.Fatalf("Sanitize(%q) = %q (%d bytes), want 1 to %d bytes", in, got, len(got), MaxBytes)
		}
		if got == "." || got == ".." {
			t.Fatalf("Sanitize(%q) = %q", in, got)
		}
		for _, r := range got {
			if unicode.IsControl(r) || isBidiControl(r) || strings.ContainsRune(`<>:"/\|?*`, r) {
				t.Fatalf("Sanitize(%q) = %q, contains %U", in, got, r)
			}
		}
		if strings.Trim(got, " .") != got {
			t.Fatalf("Sanitize(%q) = %q, starts or ends with a space or dot", in, got)
		}
		if strings.Contains(got, "  ") {
			t.Fatalf("Sanitize(%q) = %q, contains a run of spaces", in, got)
		}
		if !norm.NFC.IsNormalString(got) {
			t.Fatalf("Sanitize(%q) = %q, not NFC", in, got)
		}
		if again := Sanitize(got); again != got {
			t.Fatalf("Sanitize(Sanitize(%q)) = %q, want %q", in, again, got)
		}
	})
}
