package media

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"os"
	"path/filepath"

	"github.com/gen2brain/webp"
)

// thumbnailSides are the long sides of the derivatives, smallest first.
var thumbnailSides = []int{320, 1280}

const (
	// WebP rather than JPEG: it keeps alpha (a transparent PNG's thumbnail
	// stays transparent instead of gaining a background), its files are
	// smaller (a quarter of image/jpeg's at quality 82 on the noisy test
	// photo), and every current browser shows it. Method 2 encodes a
	// 1280 px thumbnail about 1.8× slower than image/jpeg; method 4
	// (libwebp's default) was 5× slower again for 1% smaller files
	// (docs/BENCHMARKS.md, "Media processing").
	thumbnailMIME    = "image/webp"
	thumbnailQuality = 80
	thumbnailMethod  = 2
)

// thumbnailSizes returns the long sides to make for an image whose long
// side is long: each of thumbnailSides it exceeds, then its own size once
// if it is smaller than the next; never an upscale, never a duplicate.
func thumbnailSizes(long int) []int {
	var sizes []int
	for _, side := range thumbnailSides {
		if long <= side {
			return append(sizes, long)
		}
		sizes = append(sizes, side)
	}
	return sizes
}

// derive writes img's thumbnails into workDir as name-<long side>.webp and
// sets res.Thumbnails and res.Placeholder. Encoding from pixels is what
// strips metadata: nothing of the source's EXIF, XMP or ICC is carried.
func (p *Processor) derive(ctx context.Context, img image.Image, workDir, name string, res *Result) error {
	b := img.Bounds()
	sizes := thumbnailSizes(max(b.Dx(), b.Dy()))
	// Largest first, each smaller one from the one before: resizing a
	// 1280 px image to 320 costs a fraction of resizing the original.
	scaled := make([]*image.NRGBA, len(sizes))
	from := img
	for i := len(sizes) - 1; i >= 0; i-- {
		scaled[i] = fit(from, sizes[i])
		from = scaled[i]
		if err := ctxErr(ctx); err != nil {
			return err
		}
	}
	for i, thumb := range scaled {
		path := filepath.Join(workDir, fmt.Sprintf("%s-%d.webp", name, sizes[i]))
		if err := writeWebP(path, thumb); err != nil {
			return err
		}
		res.Thumbnails = append(res.Thumbnails, Derived{
			Width: thumb.Bounds().Dx(), Height: thumb.Bounds().Dy(), MimeType: thumbnailMIME, Path: path,
		})
		if err := ctxErr(ctx); err != nil {
			return err
		}
	}
	hash := placeholder(scaled[0])
	res.Placeholder = &hash
	return nil
}

func writeWebP(path string, img image.Image) error {
	var buf bytes.Buffer
	if err := webp.Encode(&buf, img, webp.Options{Quality: thumbnailQuality, Method: thumbnailMethod}); err != nil {
		return fmt.Errorf("media: encoding %s: %w", filepath.Base(path), err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("media: %w", err)
	}
	return nil
}
