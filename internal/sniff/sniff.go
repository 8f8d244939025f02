// Package sniff checks a file's first bytes against the MIME type its
// uploader declared, so that a file claiming to be a video, image or audio
// file really starts like one.
//
// It owns nothing but magic numbers: it decides neither which types are
// allowed nor what to do on a mismatch. The checks are deliberately loose
// within a container family (any ISO-BMFF brand passes as MP4 or QuickTime,
// any EBML document as WebM), because browsers and cameras disagree about
// those labels; they exist to catch a file of a different kind altogether.
package sniff

import (
	"bytes"
	"strings"
)

// HeadSize is how many leading bytes of a file callers should pass to
// Matches and Detect. The checks read fewer, but a fixed size keeps
// callers simple and leaves room for stricter checks later.
const HeadSize = 512

// family is one kind of file recognised by its first bytes.
type family int

const (
	unknown family = iota
	isoBMFF        // MP4, QuickTime, M4A: a box with type ftyp/moov/... at offset 4
	ebml           // WebM and Matroska
	jpeg
	png
	gif
	webp
	wav
	id3 // an ID3v2 tag, which precedes MP3 and sometimes AAC data
	mpegAudio
	adts // raw AAC
	ogg
	flac
)

// accepted lists, for each supported MIME type, the families a file
// declared with that type may belong to.
var accepted = map[string][]family{
	"video/mp4":       {isoBMFF},
	"video/quicktime": {isoBMFF},
	"video/webm":      {ebml},
	"image/jpeg":      {jpeg},
	"image/png":       {png},
	"image/gif":       {gif},
	"image/webp":      {webp},
	"audio/mpeg":      {id3, mpegAudio},
	"audio/mp3":       {id3, mpegAudio}, // non-standard, sent by some browsers
	"audio/mp4":       {isoBMFF},
	"audio/x-m4a":     {isoBMFF},
	"audio/aac":       {adts, id3, isoBMFF},
	"audio/wav":       {wav},
	"audio/x-wav":     {wav},
	"audio/wave":      {wav},
	"audio/ogg":       {ogg},
	"audio/flac":      {flac},
	"audio/x-flac":    {flac}, // non-standard, sent by some browsers
	"audio/webm":      {ebml},
}

// Matches reports whether head, the first bytes of a file (normally
// HeadSize of them, fewer for a smaller file), is consistent with
// mimeType. The MIME type is compared case-insensitively and its
// parameters (such as "; codecs=...") are ignored.
//
// It returns false if mimeType is not one this package knows, and false if
// head is too short to hold the type's signature.
func Matches(mimeType string, head []byte) bool {
	want, ok := accepted[essence(mimeType)]
	if !ok {
		return false
	}
	got := classify(head)
	for _, f := range want {
		if f == got {
			return true
		}
	}
	return false
}

// Detect returns the MIME type that head, the first bytes of a file, looks
// like, for messages such as "declared image/png but looks like
// video/mp4". It returns "" if head matches none of the supported types.
//
// Where the bytes do not tell types apart, Detect picks the most common
// one: "video/webm" for any EBML file, "video/mp4" for an ISO-BMFF file
// without a QuickTime or audio brand, "audio/mpeg" for an ID3 tag.
func Detect(head []byte) string {
	switch classify(head) {
	case isoBMFF:
		return detectISOBMFF(head)
	case ebml:
		return "video/webm"
	case jpeg:
		return "image/jpeg"
	case png:
		return "image/png"
	case gif:
		return "image/gif"
	case webp:
		return "image/webp"
	case wav:
		return "audio/wav"
	case id3, mpegAudio:
		return "audio/mpeg"
	case adts:
		return "audio/aac"
	case ogg:
		return "audio/ogg"
	case flac:
		return "audio/flac"
	}
	return ""
}

// essence returns the lower-cased type/subtype of a MIME type, without
// parameters.
func essence(mimeType string) string {
	if i := strings.IndexByte(mimeType, ';'); i >= 0 {
		mimeType = mimeType[:i]
	}
	return strings.ToLower(strings.TrimSpace(mimeType))
}

// classify returns the family head belongs to, or unknown.
func classify(head []byte) family {
	switch {
	case hasISOBMFFBox(head):
		return isoBMFF
	case bytes.HasPrefix(head, []byte{0x1A, 0x45, 0xDF, 0xA3}):
		return ebml
	case bytes.HasPrefix(head, []byte{0xFF, 0xD8, 0xFF}):
		return jpeg
	case bytes.HasPrefix(head, []byte("\x89PNG\r\n\x1a\n")):
		return png
	case bytes.HasPrefix(head, []byte("GIF87a")), bytes.HasPrefix(head, []byte("GIF89a")):
		return gif
	case isRIFF(head, "WEBP"):
		return webp
	case isRIFF(head, "WAVE"):
		return wav
	case bytes.HasPrefix(head, []byte("ID3")):
		return id3
	case isADTS(head):
		return adts
	case isMPEGAudioFrame(head):
		return mpegAudio
	case bytes.HasPrefix(head, []byte("OggS")):
		return ogg
	case bytes.HasPrefix(head, []byte("fLaC")):
		return flac
	}
	return unknown
}

// isoBoxTypes are the box types accepted at offset 4 of an ISO-BMFF file:
// ftyp for any modern file, the others for QuickTime files that predate
// ftyp and start directly with a movie, data or padding atom.
var isoBoxTypes = []string{"ftyp", "moov", "mdat", "wide", "free", "skip", "pnot"}

func hasISOBMFFBox(head []byte) bool {
	if len(head) < 8 {
		return false
	}
	boxType := string(head[4:8])
	for _, t := range isoBoxTypes {
		if boxType == t {
			return true
		}
	}
	return false
}

// detectISOBMFF names an ISO-BMFF file after its major brand.
func detectISOBMFF(head []byte) string {
	if string(head[4:8]) != "ftyp" {
		return "video/quicktime" // only QuickTime starts without ftyp
	}
	if len(head) < 12 {
		return "video/mp4"
	}
	switch string(head[8:12]) {
	case "qt  ":
		return "video/quicktime"
	case "M4A ", "M4B ", "M4P ":
		return "audio/mp4"
	}
	return "video/mp4"
}

// isRIFF reports whether head is a RIFF (or RF64, for WAV files over
// 4 GiB) container of the given form type.
func isRIFF(head []byte, form string) bool {
	if len(head) < 12 || string(head[8:12]) != form {
		return false
	}
	magic := string(head[0:4])
	return magic == "RIFF" || (form == "WAVE" && (magic == "RF64" || magic == "BW64"))
}

// isADTS reports whether head starts with an ADTS frame header: the 12-bit
// sync word 0xFFF followed by an MPEG version bit and a layer of 00.
func isADTS(head []byte) bool {
	return len(head) >= 2 && head[0] == 0xFF && head[1]&0xF6 == 0xF0
}

// isMPEGAudioFrame reports whether head starts with an MPEG audio frame
// header: the 11-bit sync word 0xFFE, then version, layer, bitrate and
// sample-rate fields that are not the reserved values.
func isMPEGAudioFrame(head []byte) bool {
	if len(head) < 2 || head[0] != 0xFF || head[1]&0xE0 != 0xE0 {
		return false
	}
	version := head[1] >> 3 & 0x3
	layer := head[1] >> 1 & 0x3
	if version == 0x1 || layer == 0x0 {
		return false
	}
	if len(head) < 3 {
		return true // a two-byte file cannot say more
	}
	bitrate := head[2] >> 4
	sampleRate := head[2] >> 2 & 0x3
	return bitrate != 0xF && sampleRate != 0x3
}
