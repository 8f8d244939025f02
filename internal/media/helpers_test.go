package media

import (
	"bytes"
	"context"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	xwebp "golang.org/x/image/webp"

	"github.com/spoolhq/spool/internal/required"
)

// requireTool skips a test that needs an external tool where it is not
// installed, saying so; with CI set (as .ci/run does) it fails instead.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	required.Missing(t, "%s is not installed (install Debian's ffmpeg; .ci/run does)", name)
	return ""
}

func newTestProcessor(t *testing.T, o Options) *Processor {
	t.Helper()
	p, err := New(o)
	if err != nil {
		t.Fatalf("New(%+v): %v", o, err)
	}
	return p
}

// process runs Process on data written to a temp file and returns the
// result; workDir is a fresh temp dir.
func process(t *testing.T, p *Processor, data []byte, mimeType string) (*Result, error) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p.Process(context.Background(), src, mimeType, t.TempDir())
}

func mustProcess(t *testing.T, p *Processor, data []byte, mimeType string) *Result {
	t.Helper()
	res, err := process(t, p, data, mimeType)
	if err != nil {
		t.Fatalf("Process(%s): %v", mimeType, err)
	}
	return res
}

// photo is a w×h picture of gradients and noise: like a photo, it does
// not compress to nothing.
func photo(w, h int, seed uint64) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	rng := rand.New(rand.NewPCG(seed, seed+1))
	for y := range h {
		for x := range w {
			n := uint8(rng.IntN(40))
			img.SetNRGBA(x, y, color.NRGBA{uint8(x*200/w) + n, uint8(y*200/h) + n, uint8((x+y)*100/(w+h)) + n, 255})
		}
	}
	return img
}

func encodeJPEG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// withAPP1 inserts an APP1 segment holding payload right after a JPEG's
// SOI marker, where EXIF lives.
func withAPP1(jpg, payload []byte) []byte {
	seg := []byte{0xff, 0xe1, 0, 0}
	binary.BigEndian.PutUint16(seg[2:], uint16(len(payload)+2))
	out := append([]byte{}, jpg[:2]...)
	out = append(out, seg...)
	out = append(out, payload...)
	return append(out, jpg[2:]...)
}

// ifdEntry is one 12-byte TIFF IFD entry; value holds the 4 value bytes
// (or an offset from the TIFF header).
type ifdEntry struct {
	tag, typ uint16
	count    uint32
	value    [4]byte
}

// exifPayload builds an APP1 EXIF payload, big-endian TIFF, with IFD0's
// entries and, when gps is non-nil, a GPS IFD after it (IFD0 must then
// contain a 0x8825 entry, whose offset this fills in) followed by extra
// bytes that GPS entries may point into.
func exifPayload(ifd0 []ifdEntry, gps []ifdEntry, extra []byte) []byte {
	be := binary.BigEndian
	tiff := []byte("MM\x00\x2a\x00\x00\x00\x08")
	ifdLen := func(n int) int { return 2 + 12*n + 4 }
	gpsOffset := 8 + ifdLen(len(ifd0))
	writeIFD := func(entries []ifdEntry) {
		tiff = be.AppendUint16(tiff, uint16(len(entries)))
		for _, e := range entries {
			if e.tag == 0x8825 {
				be.PutUint32(e.value[:], uint32(gpsOffset))
			}
			tiff = be.AppendUint16(tiff, e.tag)
			tiff = be.AppendUint16(tiff, e.typ)
			tiff = be.AppendUint32(tiff, e.count)
			tiff = append(tiff, e.value[:]...)
		}
		tiff = be.AppendUint32(tiff, 0)
	}
	writeIFD(ifd0)
	if gps != nil {
		writeIFD(gps)
	}
	tiff = append(tiff, extra...)
	return append([]byte("Exif\x00\x00"), tiff...)
}

// pngChunk is one PNG chunk with its CRC.
func pngChunk(kind string, data []byte) []byte {
	out := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
	out = append(out, kind...)
	out = append(out, data...)
	return binary.BigEndian.AppendUint32(out, crc32.ChecksumIEEE(append([]byte(kind), data...)))
}

// pngHeader is a PNG signature and an IHDR declaring w×h 8-bit RGBA.
func pngHeader(w, h uint32) []byte {
	ihdr := binary.BigEndian.AppendUint32(nil, w)
	ihdr = binary.BigEndian.AppendUint32(ihdr, h)
	ihdr = append(ihdr, 8, 6, 0, 0, 0)
	return append([]byte("\x89PNG\r\n\x1a\n"), pngChunk("IHDR", ihdr)...)
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// decodeThumbnail decodes a derivative and checks it is the WebP of the
// size Result says.
func decodeThumbnail(t *testing.T, d Derived) image.Image {
	t.Helper()
	if d.MimeType != "image/webp" {
		t.Fatalf("thumbnail %s: MimeType %q, want image/webp", d.Path, d.MimeType)
	}
	img, err := xwebp.Decode(bytes.NewReader(readFile(t, d.Path)))
	if err != nil {
		t.Fatalf("decoding thumbnail %s: %v", d.Path, err)
	}
	if got := img.Bounds().Size(); got != image.Pt(d.Width, d.Height) {
		t.Fatalf("thumbnail %s is %v, Result says %d×%d", d.Path, got, d.Width, d.Height)
	}
	return img
}

type size struct{ w, h int }

func thumbnailSizesOf(res *Result) []size {
	var out []size
	for _, d := range res.Thumbnails {
		out = append(out, size{d.Width, d.Height})
	}
	return out
}

func intValue(p *int) int {
	if p == nil {
		return -1
	}
	return *p
}
