package media

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/color"
	"image/color/palette"
	"image/draw"
	"image/gif"
	"image/png"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/gen2brain/webp"
)

func TestNewRejectsInvalidOptions(t *testing.T) {
	t.Parallel()
	for _, o := range []Options{{Timeout: -1}, {MaxPixels: -1}} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) succeeded, want an error", o)
		}
	}
	p := newTestProcessor(t, Options{})
	if p.timeout != DefaultTimeout || p.maxPixels != DefaultMaxPixels {
		t.Errorf("New(Options{}) has timeout %v, max pixels %d; want the defaults %v, %d",
			p.timeout, p.maxPixels, DefaultTimeout, DefaultMaxPixels)
	}
}

func TestThumbnailSizesNeverUpscaleOrRepeat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		long int
		want []int
	}{
		{1, []int{1}},
		{200, []int{200}},
		{320, []int{320}},
		{321, []int{320, 321}},
		{1280, []int{320, 1280}},
		{4000, []int{320, 1280}},
	}
	for _, tt := range tests {
		if got := thumbnailSizes(tt.long); !slices.Equal(got, tt.want) {
			t.Errorf("thumbnailSizes(%d) = %v, want %v", tt.long, got, tt.want)
		}
	}
}

func TestLargeImageGetsBothThumbnailsAndPlaceholder(t *testing.T) {
	t.Parallel()
	p := newTestProcessor(t, Options{})
	res := mustProcess(t, p, encodeJPEG(t, photo(1400, 1050, 1)), "image/jpeg")
	if intValue(res.Width) != 1400 || intValue(res.Height) != 1050 {
		t.Errorf("size %d×%d, want 1400×1050", intValue(res.Width), intValue(res.Height))
	}
	if got, want := thumbnailSizesOf(res), []size{{320, 240}, {1280, 960}}; !slices.Equal(got, want) {
		t.Errorf("thumbnails %v, want %v", got, want)
	}
	for _, d := range res.Thumbnails {
		decodeThumbnail(t, d)
	}
	if res.Placeholder == nil || len(*res.Placeholder) < 20 {
		t.Errorf("placeholder %v, want a ThumbHash", res.Placeholder)
	}
	if len(res.Skipped) != 0 || res.Video != nil || res.Audio != nil || res.Duration != nil {
		t.Errorf("an image's result has %+v", res)
	}
}

func TestSmallImageGetsOneThumbnailAtItsOwnSize(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	if err := png.Encode(&buf, photo(200, 150, 2)); err != nil {
		t.Fatal(err)
	}
	res := mustProcess(t, newTestProcessor(t, Options{}), buf.Bytes(), "image/png")
	if got, want := thumbnailSizesOf(res), []size{{200, 150}}; !slices.Equal(got, want) {
		t.Errorf("thumbnails %v, want %v", got, want)
	}
}

// isRed says whether c is clearly red, as a lossy thumbnail keeps it.
func isRed(c color.Color) bool {
	r, g, b, _ := c.RGBA()
	return r>>8 > 180 && g>>8 < 80 && b>>8 < 80
}

func TestJPEGOrientation6IsApplied(t *testing.T) {
	t.Parallel()
	// Stored 300×200 with a red top-left corner; orientation 6 means "rotate
	// 90° clockwise to display", which puts that corner top-right of a
	// 200×300 picture.
	stored := image.NewNRGBA(image.Rect(0, 0, 300, 200))
	draw.Draw(stored, stored.Bounds(), image.NewUniform(color.NRGBA{40, 60, 200, 255}), image.Point{}, draw.Src)
	draw.Draw(stored, image.Rect(0, 0, 60, 60), image.NewUniform(color.NRGBA{255, 0, 0, 255}), image.Point{}, draw.Src)
	orientation := ifdEntry{tag: 0x0112, typ: 3, count: 1, value: [4]byte{0, 6}}
	jpg := withAPP1(encodeJPEG(t, stored), exifPayload([]ifdEntry{orientation}, nil, nil))

	res := mustProcess(t, newTestProcessor(t, Options{}), jpg, "image/jpeg")
	if intValue(res.Width) != 200 || intValue(res.Height) != 300 {
		t.Fatalf("size %d×%d, want 200×300 (rotated)", intValue(res.Width), intValue(res.Height))
	}
	if got, want := thumbnailSizesOf(res), []size{{200, 300}}; !slices.Equal(got, want) {
		t.Fatalf("thumbnails %v, want %v", got, want)
	}
	thumb := decodeThumbnail(t, res.Thumbnails[0])
	if !isRed(thumb.At(190, 10)) || isRed(thumb.At(10, 10)) || isRed(thumb.At(190, 290)) {
		t.Errorf("thumbnail corners: top-right %v, top-left %v, bottom-right %v; want only top-right red",
			thumb.At(190, 10), thumb.At(10, 10), thumb.At(190, 290))
	}
}

func TestDerivativeOfJPEGWithGPSCarriesNoMetadata(t *testing.T) {
	t.Parallel()
	const secret = "SPOOL-GPS-SECRET-48.8584N"
	method := append([]byte("ASCII\x00\x00\x00"), secret...)
	gpsPointer := ifdEntry{tag: 0x8825, typ: 4, count: 1}
	latRef := ifdEntry{tag: 0x0001, typ: 2, count: 2, value: [4]byte{'N'}}
	// GPSProcessingMethod, pointing past IFD0 (1 entry) and the GPS IFD (2).
	methodEntry := ifdEntry{tag: 0x001b, typ: 7, count: uint32(len(method))}
	methodOffset := 8 + (2 + 12 + 4) + (2 + 2*12 + 4)
	methodEntry.value = [4]byte{0, 0, byte(methodOffset >> 8), byte(methodOffset)}
	exif := exifPayload([]ifdEntry{gpsPointer}, []ifdEntry{latRef, methodEntry}, method)
	jpg := withAPP1(encodeJPEG(t, photo(400, 300, 3)), exif)
	if !bytes.Contains(jpg, []byte(secret)) || !bytes.Contains(jpg, []byte("Exif\x00\x00")) {
		t.Fatal("the source JPEG does not carry the EXIF GPS data it should")
	}

	res := mustProcess(t, newTestProcessor(t, Options{}), jpg, "image/jpeg")
	if len(res.Thumbnails) != 2 {
		t.Fatalf("%d thumbnails, want 2", len(res.Thumbnails))
	}
	for _, d := range res.Thumbnails {
		data := readFile(t, d.Path)
		for _, leak := range []string{secret, "Exif", "EXIF", "MM\x00\x2a", "XMP "} {
			if bytes.Contains(data, []byte(leak)) {
				t.Errorf("thumbnail %s contains %q", filepath.Base(d.Path), leak)
			}
		}
	}
}

func TestPNGWithAlphaKeepsTransparency(t *testing.T) {
	t.Parallel()
	img := image.NewNRGBA(image.Rect(0, 0, 400, 300)) // transparent
	draw.Draw(img, image.Rect(150, 100, 250, 200), image.NewUniform(color.NRGBA{0, 200, 0, 255}), image.Point{}, draw.Src)
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	res := mustProcess(t, newTestProcessor(t, Options{}), buf.Bytes(), "image/png")
	if got, want := thumbnailSizesOf(res), []size{{320, 240}, {400, 300}}; !slices.Equal(got, want) {
		t.Fatalf("thumbnails %v, want %v", got, want)
	}
	for _, d := range res.Thumbnails {
		thumb := decodeThumbnail(t, d)
		if _, _, _, a := thumb.At(5, 5).RGBA(); a != 0 {
			t.Errorf("%d×%d thumbnail: corner %v is not transparent", d.Width, d.Height, thumb.At(5, 5))
		}
		center := thumb.At(d.Width/2, d.Height/2)
		if r, g, _, a := center.RGBA(); a>>8 < 250 || g>>8 < 150 || r>>8 > 60 {
			t.Errorf("%d×%d thumbnail: centre %v is not opaque green", d.Width, d.Height, center)
		}
	}
}

func TestAnimatedGIFUsesFirstFrame(t *testing.T) {
	t.Parallel()
	frame := func(c color.Color) *image.Paletted {
		f := image.NewPaletted(image.Rect(0, 0, 100, 80), palette.Plan9)
		draw.Draw(f, f.Bounds(), image.NewUniform(c), image.Point{}, draw.Src)
		return f
	}
	anim := &gif.GIF{
		Image: []*image.Paletted{frame(color.RGBA{255, 0, 0, 255}), frame(color.RGBA{0, 0, 255, 255})},
		Delay: []int{10, 10},
	}
	var buf bytes.Buffer
	if err := gif.EncodeAll(&buf, anim); err != nil {
		t.Fatal(err)
	}
	res := mustProcess(t, newTestProcessor(t, Options{}), buf.Bytes(), "image/gif")
	if got, want := thumbnailSizesOf(res), []size{{100, 80}}; !slices.Equal(got, want) {
		t.Fatalf("thumbnails %v, want %v", got, want)
	}
	if c := decodeThumbnail(t, res.Thumbnails[0]).At(50, 40); !isRed(c) {
		t.Errorf("thumbnail centre %v, want the first frame's red", c)
	}
}

func TestWebPIsDecoded(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	if err := webp.Encode(&buf, photo(500, 300, 4), webp.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	res := mustProcess(t, newTestProcessor(t, Options{}), buf.Bytes(), "image/webp")
	if intValue(res.Width) != 500 || intValue(res.Height) != 300 {
		t.Errorf("size %d×%d, want 500×300", intValue(res.Width), intValue(res.Height))
	}
	if got, want := thumbnailSizesOf(res), []size{{320, 192}, {500, 300}}; !slices.Equal(got, want) {
		t.Errorf("thumbnails %v, want %v", got, want)
	}
}

// wantBadFile checks err is a *BadFileError whose message contains want.
func wantBadFile(t *testing.T, err error, want string) {
	t.Helper()
	var bad *BadFileError
	if !errors.As(err, &bad) || !IsBadFile(err) {
		t.Fatalf("error %v (%T), want a *BadFileError", err, err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q, want it to say %q", err, want)
	}
}

func TestGarbageAfterAValidHeaderIsABadFile(t *testing.T) {
	t.Parallel()
	garbage := bytes.Repeat([]byte("not pixels, just noise "), 200)
	jpg := encodeJPEG(t, photo(64, 64, 5))
	sos := bytes.Index(jpg, []byte{0xff, 0xda}) // start of scan: the header ends here
	tests := []struct {
		name, mimeType string
		data           []byte
		want           string
	}{
		{"PNG", "image/png", append(pngHeader(64, 64), garbage...), "the file is not a valid PNG image"},
		{"JPEG", "image/jpeg", append(jpg[:sos:sos], garbage...), "the file is not a valid JPEG image"},
		{"GIF", "image/gif", append([]byte("GIF89a\x40\x00\x40\x00\x00\x00\x00"), garbage...), "the file is not a valid GIF image"},
		{"WebP", "image/webp", append([]byte("RIFF\xff\x00\x00\x00WEBPVP8 "), garbage...), "the file is not a valid WebP image"},
		{"not an image", "image/png", garbage, "the file is not a PNG image"},
	}
	p := newTestProcessor(t, Options{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := process(t, p, tt.data, tt.mimeType)
			wantBadFile(t, err, tt.want)
		})
	}
}

func TestImageOfAnotherTypeThanItsMIMEIsABadFile(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	if err := png.Encode(&buf, photo(10, 10, 6)); err != nil {
		t.Fatal(err)
	}
	_, err := process(t, newTestProcessor(t, Options{}), buf.Bytes(), "image/jpeg")
	wantBadFile(t, err, "the file is a PNG image, not the JPEG its type says")
}

func TestDecompressionBombIsRefusedBeforeDecoding(t *testing.T) {
	// Not parallel: TotalAlloc counts every goroutine's allocations, so
	// another test running meanwhile would be measured too.
	// A real PNG declaring 20000×20000 RGBA (1.6 GB decoded) in a few
	// hundred bytes: its IDAT holds a little deflated data, then it ends.
	bomb := pngHeader(20000, 20000)
	bomb = append(bomb, pngChunk("IDAT", []byte{0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01})...)
	bomb = append(bomb, pngChunk("IEND", nil)...)
	src := filepath.Join(t.TempDir(), "bomb.png")
	if err := os.WriteFile(src, bomb, 0o644); err != nil {
		t.Fatal(err)
	}
	p := newTestProcessor(t, Options{})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := p.Process(context.Background(), src, "image/png", t.TempDir())
	runtime.ReadMemStats(&after)
	// The message is checkPixels's, not the decoder's "not enough pixel
	// data", so decoding never started; and nothing near 1.6 GB was taken.
	wantBadFile(t, err, "the image is 20000×20000 (400 MP), above the 100 MP limit")
	if allocated := after.TotalAlloc - before.TotalAlloc; allocated > 16<<20 {
		t.Errorf("refusing the bomb allocated %d MiB", allocated>>20)
	}
}

func TestMaxPixelsIsConfigurable(t *testing.T) {
	t.Parallel()
	p := newTestProcessor(t, Options{MaxPixels: 5000})
	_, err := process(t, p, encodeJPEG(t, photo(100, 51, 7)), "image/jpeg")
	wantBadFile(t, err, "the image is 100×51 (0 MP), above the 0 MP limit")
	if _, err := process(t, p, encodeJPEG(t, photo(100, 50, 7)), "image/jpeg"); err != nil {
		t.Errorf("an image of exactly MaxPixels: %v", err)
	}
}

func TestCancelledContextIsNotABadFile(t *testing.T) {
	t.Parallel()
	src := filepath.Join(t.TempDir(), "src.jpg")
	if err := os.WriteFile(src, encodeJPEG(t, photo(400, 300, 8)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := newTestProcessor(t, Options{}).Process(ctx, src, "image/jpeg", t.TempDir())
	if !errors.Is(err, context.Canceled) || IsBadFile(err) {
		t.Errorf("error %v, want context.Canceled and not a bad file", err)
	}
}

func TestUnwritableWorkDirIsNotABadFile(t *testing.T) {
	t.Parallel()
	src := filepath.Join(t.TempDir(), "src.jpg")
	if err := os.WriteFile(src, encodeJPEG(t, photo(400, 300, 9)), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "gone")
	_, err := newTestProcessor(t, Options{}).Process(context.Background(), src, "image/jpeg", missing)
	if err == nil || IsBadFile(err) {
		t.Errorf("error %v, want a transient error", err)
	}
}

func TestUnknownTypeIsSkipped(t *testing.T) {
	t.Parallel()
	res := mustProcess(t, newTestProcessor(t, Options{}), []byte("%PDF-1.7"), "application/pdf")
	if len(res.Skipped) != 1 || !strings.Contains(res.Skipped[0], "application/pdf") || res.Thumbnails != nil {
		t.Errorf("result %+v, want only a Skipped note naming the type", res)
	}
}
