package media

import (
	"image"

	"golang.org/x/image/draw"
)

// fit returns src scaled so that its long side is at most side, never
// scaled up, on the calling goroutine alone. imaging's resizers spread one
// image over every CPU, so one processing worker took all of them while it
// resized and --processing-workers did not bound processing's CPU
// (docs/BENCHMARKS.md, "the data plane beside processing").
//
// A large reduction is done in two steps: an approximate bilinear pass to
// twice the target size, cheap whatever the source's size, then
// Catmull-Rom from there, which sees enough pixels to smooth away the
// first pass's aliasing.
func fit(src image.Image, side int) *image.NRGBA {
	b := src.Bounds()
	w, h := b.Dx(), b.Dy()
	tw, th := w, h
	if w > side || h > side {
		if w >= h {
			tw, th = side, max(1, h*side/w)
		} else {
			tw, th = max(1, w*side/h), side
		}
	}
	dst := image.NewNRGBA(image.Rect(0, 0, tw, th))
	if tw == w && th == h {
		draw.Draw(dst, dst.Bounds(), src, b.Min, draw.Src)
		return dst
	}
	from := src
	if w > 4*tw && h > 4*th {
		mid := image.NewNRGBA(image.Rect(0, 0, 2*tw, 2*th))
		draw.ApproxBiLinear.Scale(mid, mid.Bounds(), src, b, draw.Src, nil)
		from = mid
	}
	draw.CatmullRom.Scale(dst, dst.Bounds(), from, from.Bounds(), draw.Src, nil)
	return dst
}
