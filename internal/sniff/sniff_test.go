package sniff

import (
	"strings"
	"testing"
)

// Heads of real files of each kind (first bytes only).
var (
	mp4Head       = []byte("\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41")
	movHead       = []byte("\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00qt  ")
	oldMovHead    = []byte("\x00\x00\x00\x08wide\x00\x01\x2e\x3fmdat")
	moovHead      = []byte("\x00\x00\x01\x00moov\x00\x00\x00\x6cmvhd")
	m4aHead       = []byte("\x00\x00\x00\x1cftypM4A \x00\x00\x02\x00M4A isomiso2")
	webmHead      = []byte("\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\x82\x84webm")
	jpegHead      = []byte("\xff\xd8\xff\xe0\x00\x10JFIF\x00")
	pngHead       = []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR")
	gif87Head     = []byte("GIF87a\x01\x00\x01\x00")
	gif89Head     = []byte("GIF89a\x01\x00\x01\x00")
	webpHead      = []byte("RIFF\x24\x00\x00\x00WEBPVP8 ")
	wavHead       = []byte("RIFF\x24\x08\x00\x00WAVEfmt ")
	rf64Head      = []byte("RF64\xff\xff\xff\xffWAVEds64")
	id3Head       = []byte("ID3\x04\x00\x00\x00\x00\x00\x23")
	mp3FrameHead  = []byte("\xff\xfb\x90\x64\x00")     // MPEG-1 layer III, 128 kbit/s, 44.1 kHz
	mp2FrameHead  = []byte("\xff\xf3\x48\xc4\x00")     // MPEG-2 layer III
	adtsHead      = []byte("\xff\xf1\x50\x80\x02\x1f") // MPEG-4 AAC, no CRC
	adtsMPEG2Head = []byte("\xff\xf9\x50\x80\x02\x1f") // MPEG-2 AAC, no CRC
	oggHead       = []byte("OggS\x00\x02\x00\x00\x00\x00")
	flacHead      = []byte("fLaC\x00\x00\x00\x22")
	textHead      = []byte("<!DOCTYPE html><html>")
	exeHead       = []byte("MZ\x90\x00\x03\x00\x00\x00")
	zipHead       = []byte("PK\x03\x04\x14\x00")
)

func TestMatches(t *testing.T) {
	tests := []struct {
		mimeType string
		head     []byte
		want     bool
	}{
		// ISO-BMFF: any brand passes for any of the family's types.
		{"video/mp4", mp4Head, true},
		{"video/mp4", movHead, true},
		{"video/quicktime", movHead, true},
		{"video/quicktime", mp4Head, true},
		{"video/quicktime", oldMovHead, true},
		{"video/quicktime", moovHead, true},
		{"video/mp4", oldMovHead, true},
		{"audio/mp4", m4aHead, true},
		{"audio/x-m4a", m4aHead, true},
		{"audio/x-m4a", mp4Head, true},
		{"audio/aac", m4aHead, true},
		{"video/mp4", webmHead, false},
		{"video/mp4", jpegHead, false},
		{"video/mp4", []byte("\x00\x00\x00\x20ftyp")[:7], false},

		{"video/webm", webmHead, true},
		{"audio/webm", webmHead, true},
		{"video/webm", mp4Head, false},

		{"image/jpeg", jpegHead, true},
		{"image/jpeg", []byte("\xff\xd8\xff"), true},
		{"image/jpeg", []byte("\xff\xd8"), false},
		{"image/jpeg", pngHead, false},
		{"image/png", pngHead, true},
		{"image/png", pngHead[:7], false},
		{"image/png", gif89Head, false},
		{"image/gif", gif87Head, true},
		{"image/gif", gif89Head, true},
		{"image/gif", []byte("GIF88a"), false},
		{"image/webp", webpHead, true},
		{"image/webp", wavHead, false},

		{"audio/mpeg", id3Head, true},
		{"audio/mpeg", mp3FrameHead, true},
		{"audio/mpeg", mp2FrameHead, true},
		{"audio/mp3", mp3FrameHead, true},
		{"audio/mpeg", adtsHead, false},                   // layer 00 is AAC, not MPEG audio
		{"audio/mpeg", []byte("\xff\xfb\xf0\x64"), false}, // bitrate index 15 is reserved
		{"audio/mpeg", []byte("\xff\xfb\x9c\x64"), false}, // sample rate index 3 is reserved
		{"audio/mpeg", []byte("\xff\xeb\x90\x64"), false}, // version 01 is reserved
		{"audio/mpeg", jpegHead, false},

		{"audio/aac", adtsHead, true},
		{"audio/aac", adtsMPEG2Head, true},
		{"audio/aac", id3Head, true},
		{"audio/aac", mp3FrameHead, false},
		{"audio/mp4", adtsHead, false},

		{"audio/wav", wavHead, true},
		{"audio/x-wav", wavHead, true},
		{"audio/wave", wavHead, true},
		{"audio/wav", rf64Head, true},
		{"audio/wav", webpHead, false},
		{"audio/wav", []byte("RIFF\x24\x08\x00\x00WAV"), false},

		{"audio/ogg", oggHead, true},
		{"audio/ogg", flacHead, false},
		{"audio/flac", flacHead, true},
		{"audio/x-flac", flacHead, true},
		{"audio/flac", oggHead, false},

		// MIME types are compared case-insensitively, without parameters.
		{"Video/MP4", mp4Head, true},
		{"video/webm; codecs=\"vp9,opus\"", webmHead, true},
		{" audio/ogg ;codecs=opus", oggHead, true},
		{"IMAGE/PNG;charset=binary", pngHead, true},

		// Unknown or empty MIME types and heads never match.
		{"application/octet-stream", mp4Head, false},
		{"text/html", textHead, false},
		{"video/x-matroska", webmHead, false},
		{"", mp4Head, false},
		{"video/mp4", nil, false},
		{"image/jpeg", exeHead, false},
		{"video/mp4", zipHead, false},
	}
	for _, tt := range tests {
		if got := Matches(tt.mimeType, tt.head); got != tt.want {
			t.Errorf("Matches(%q, %q) = %v, want %v", tt.mimeType, tt.head, got, tt.want)
		}
	}
}

func TestDetect(t *testing.T) {
	tests := []struct {
		name string
		head []byte
		want string
	}{
		{"mp4", mp4Head, "video/mp4"},
		{"quicktime brand", movHead, "video/quicktime"},
		{"quicktime without ftyp", oldMovHead, "video/quicktime"},
		{"quicktime moov first", moovHead, "video/quicktime"},
		{"ftyp without brand", []byte("\x00\x00\x00\x08ftyp"), "video/mp4"},
		{"m4a", m4aHead, "audio/mp4"},
		{"webm", webmHead, "video/webm"},
		{"jpeg", jpegHead, "image/jpeg"},
		{"png", pngHead, "image/png"},
		{"gif87a", gif87Head, "image/gif"},
		{"gif89a", gif89Head, "image/gif"},
		{"webp", webpHead, "image/webp"},
		{"wav", wavHead, "audio/wav"},
		{"rf64", rf64Head, "audio/wav"},
		{"id3", id3Head, "audio/mpeg"},
		{"mp3 frame", mp3FrameHead, "audio/mpeg"},
		{"adts", adtsHead, "audio/aac"},
		{"ogg", oggHead, "audio/ogg"},
		{"flac", flacHead, "audio/flac"},
		{"html", textHead, ""},
		{"exe", exeHead, ""},
		{"zip", zipHead, ""},
		{"riff avi", []byte("RIFF\x00\x00\x00\x00AVI LIST"), ""},
		{"empty", nil, ""},
		{"one byte", []byte{0xFF}, ""},
	}
	for _, tt := range tests {
		if got := Detect(tt.head); got != tt.want {
			t.Errorf("Detect(%s %q) = %q, want %q", tt.name, tt.head, got, tt.want)
		}
	}
}

// Every detected type must be one Matches accepts for the same bytes, or
// error messages would contradict the check.
func TestDetectAgreesWithMatches(t *testing.T) {
	heads := [][]byte{mp4Head, movHead, oldMovHead, m4aHead, webmHead, jpegHead, pngHead,
		gif89Head, webpHead, wavHead, id3Head, mp3FrameHead, adtsHead, oggHead, flacHead}
	for _, head := range heads {
		got := Detect(head)
		if got == "" || !Matches(got, head) {
			t.Errorf("Detect(%q) = %q, which Matches rejects", head, got)
		}
	}
}

func FuzzMatches(f *testing.F) {
	seeds := [][]byte{mp4Head, movHead, oldMovHead, moovHead, m4aHead, webmHead, jpegHead, pngHead,
		gif87Head, gif89Head, webpHead, wavHead, rf64Head, id3Head, mp3FrameHead, mp2FrameHead,
		adtsHead, adtsMPEG2Head, oggHead, flacHead, textHead, exeHead, zipHead, nil}
	for _, head := range seeds {
		f.Add("video/mp4", head)
		f.Add("audio/mpeg; codecs=mp3", head)
	}
	f.Fuzz(func(t *testing.T, mimeType string, head []byte) {
		got := Matches(mimeType, head)

		// Only the first HeadSize bytes may matter.
		if len(head) > HeadSize {
			if short := Matches(mimeType, head[:HeadSize]); short != got {
				t.Errorf("Matches(%q, head) = %v but %v on its first %d bytes", mimeType, got, short, HeadSize)
			}
		}
		// Case and parameters of the MIME type do not matter.
		if upper := Matches(strings.ToUpper(mimeType)+"; x=y", head); upper != Matches(strings.ToLower(mimeType), head) {
			t.Errorf("Matches(%q) differs by case or parameters", mimeType)
		}
		// Unknown types never match.
		if _, known := accepted[essence(mimeType)]; !known && got {
			t.Errorf("Matches(%q, %q) = true for an unknown type", mimeType, head)
		}
		// A detected type is known and accepted for these bytes.
		if detected := Detect(head); detected != "" {
			if _, known := accepted[detected]; !known {
				t.Errorf("Detect(%q) = %q, not a supported type", head, detected)
			}
			if !Matches(detected, head) {
				t.Errorf("Detect(%q) = %q, which Matches rejects", head, detected)
			}
		} else {
			for mt := range accepted {
				if Matches(mt, head) {
					t.Errorf("Detect(%q) = \"\" but Matches(%q) = true", head, mt)
				}
			}
		}
	})
}
