package media

import (
	"encoding/base64"
	"image"

	thumbhash "github.com/galdor/go-thumbhash"
)

// thumbhashSide is the largest side ThumbHash is meant to read.
const thumbhashSide = 100

// placeholder returns the ThumbHash of img, standard base64.
//
// go-thumbhash copies its input into an image.RGBA, which Go defines as
// alpha-premultiplied, while the reference algorithm reads straight
// (non-premultiplied) RGBA: handing it an NRGBA would darken every
// translucent pixel twice. So the NRGBA's bytes are handed over labelled
// RGBA, which draw.Draw copies as they are; TestPlaceholderMatchesReference
// checks the result against the reference implementation's.
func placeholder(img image.Image) string {
	small := fit(img, thumbhashSide)
	straight := &image.RGBA{Pix: small.Pix, Stride: small.Stride, Rect: small.Rect}
	return base64.StdEncoding.EncodeToString(thumbhash.EncodeImage(straight))
}
