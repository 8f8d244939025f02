package media

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"image"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"os"
	"strconv"

	"github.com/disintegration/imaging"
	"github.com/gen2brain/webp"
	xwebp "golang.org/x/image/webp"
)

// imageFormats maps the image MIME types Process decodes to the format
// names used in messages and by sniffFormat.
var imageFormats = map[string]string{
	"image/jpeg": "JPEG",
	"image/png":  "PNG",
	"image/gif":  "GIF",
	"image/webp": "WebP",
}

// imageCodec is how one format's header and pixels are read. Each format
// is called by name rather than through image.Decode's registry, because
// both x/image/webp and gen2brain/webp (imported to encode) register
// "webp" there and the registry would pick one by package init order.
type imageCodec struct {
	config func(io.Reader) (image.Config, error)
	decode func(io.Reader) (image.Image, error)
}

var imageCodecs = map[string]imageCodec{
	// imaging.Decode reads the EXIF orientation of a JPEG and applies it.
	"JPEG": {jpeg.DecodeConfig, func(r io.Reader) (image.Image, error) {
		return imaging.Decode(r, imaging.AutoOrientation(true))
	}},
	"PNG": {png.DecodeConfig, png.Decode},
	// A GIF's first frame stands for the animation.
	"GIF":  {gif.DecodeConfig, gif.Decode},
	"WebP": {xwebp.DecodeConfig, decodeWebP},
}

// decodeWebP decodes with x/image/webp (pure Go), which reads still WebP
// only; an animated one (VP8X with ANIM/ANMF chunks) goes to libwebp via
// gen2brain/webp, whose first frame stands for the animation.
func decodeWebP(r io.Reader) (image.Image, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	img, err := xwebp.Decode(bytes.NewReader(data))
	if err == nil || !isAnimatedWebP(data) {
		return img, err
	}
	return webp.Decode(bytes.NewReader(data))
}

// isAnimatedWebP reports whether a WebP's VP8X header sets its animation
// flag (bit 1 of the byte after the chunk header).
func isAnimatedWebP(data []byte) bool {
	return len(data) > 20 && string(data[12:16]) == "VP8X" && data[20]&0x02 != 0
}

// sniffFormat names the image format of a file's first bytes, "" if none
// of imageCodecs.
func sniffFormat(head []byte) string {
	switch {
	case bytes.HasPrefix(head, []byte("\xff\xd8\xff")):
		return "JPEG"
	case bytes.HasPrefix(head, []byte("\x89PNG\r\n\x1a\n")):
		return "PNG"
	case bytes.HasPrefix(head, []byte("GIF87a")), bytes.HasPrefix(head, []byte("GIF89a")):
		return "GIF"
	case len(head) >= 12 && string(head[:4]) == "RIFF" && string(head[8:12]) == "WEBP":
		return "WebP"
	}
	return ""
}

func (p *Processor) processImage(ctx context.Context, src, mimeType, workDir string, res *Result) error {
	img, err := p.decodeImage(src, imageFormats[mimeType])
	if err != nil {
		return err
	}
	if err := ctxErr(ctx); err != nil {
		return err
	}
	w, h := img.Bounds().Dx(), img.Bounds().Dy()
	res.Width, res.Height = &w, &h
	return p.derive(ctx, img, workDir, "thumb", res)
}

// decodeImage decodes the image at path, which must be of format, refusing
// before decoding one that declares more than MaxPixels. It streams the
// file rather than holding its bytes beside the pixels.
func (p *Processor) decodeImage(path, format string) (image.Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("media: %w", err)
	}
	defer f.Close()
	head := make([]byte, 16)
	n, err := io.ReadFull(f, head)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return nil, fmt.Errorf("media: %w", err)
	}
	if got := sniffFormat(head[:n]); got != format {
		if got == "" {
			return nil, badFile(nil, "the file is not a %s image: it does not start like one", format)
		}
		return nil, badFile(nil, "the file is a %s image, not the %s its type says", got, format)
	}
	codec := imageCodecs[format]
	r, err := fromStart(f)
	if err != nil {
		return nil, err
	}
	cfg, err := codec.config(r)
	if err != nil {
		return nil, badFile(err, "the file is not a valid %s image", format)
	}
	if err := p.checkPixels(cfg.Width, cfg.Height); err != nil {
		return nil, err
	}
	if r, err = fromStart(f); err != nil {
		return nil, err
	}
	img, err := codec.decode(r)
	if err != nil {
		return nil, badFile(err, "the file is not a valid %s image", format)
	}
	return img, nil
}

// fromStart rewinds f and buffers it (the decoders read small pieces).
func fromStart(f *os.File) (io.Reader, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("media: %w", err)
	}
	return bufio.NewReaderSize(f, 64<<10), nil
}

// checkPixels refuses a picture whose declared size is empty or above
// MaxPixels: decoding it would allocate 4 bytes or more per pixel.
func (p *Processor) checkPixels(w, h int) error {
	if w <= 0 || h <= 0 {
		return badFile(nil, "the image is %d×%d: it has no pixels", w, h)
	}
	if pixels := int64(w) * int64(h); pixels > p.maxPixels {
		return badFile(nil, "the image is %d×%d (%s MP), above the %s MP limit", w, h, megapixels(pixels), megapixels(p.maxPixels))
	}
	return nil
}

// megapixels writes n pixels in MP with at most one decimal: "400", "12.5".
func megapixels(n int64) string {
	return strconv.FormatFloat(float64(n/100_000)/10, 'f', -1, 64)
}
