package media

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// probe is the part of ffprobe's JSON (-show_format -show_streams) that
// Process reads.
type probe struct {
	Streams []probeStream `json:"streams"`
	Format  struct {
		FormatName string `json:"format_name"`
		Duration   string `json:"duration"`
		BitRate    string `json:"bit_rate"`
	} `json:"format"`
}

type probeStream struct {
	CodecType    string            `json:"codec_type"`
	CodecName    string            `json:"codec_name"`
	Width        int               `json:"width"`
	Height       int               `json:"height"`
	AvgFrameRate string            `json:"avg_frame_rate"`
	RFrameRate   string            `json:"r_frame_rate"`
	Channels     int               `json:"channels"`
	SampleRate   string            `json:"sample_rate"`
	Duration     string            `json:"duration"`
	Tags         map[string]string `json:"tags"`
	SideData     []struct {
		Type     string  `json:"side_data_type"`
		Rotation float64 `json:"rotation"`
	} `json:"side_data_list"`
	Disposition struct {
		AttachedPic int `json:"attached_pic"`
	} `json:"disposition"`
}

// probeFile runs ffprobe on path. A file ffprobe cannot read is a bad file:
// the file is local and whole, so nothing but its content can be wrong.
func (p *Processor) probeFile(ctx context.Context, path string) (*probe, error) {
	args := append(append([]string{}, quietArgs[1:]...), // ffprobe has no -nostdin
		"-threads", "1", "-print_format", "json", "-show_format", "-show_streams", path)
	out, err := p.run(ctx, p.ffprobe, args...)
	var failed *toolError
	if errors.As(err, &failed) {
		return nil, badFile(failed, "the file could not be read as audio or video")
	}
	if err != nil {
		return nil, err
	}
	var pr probe
	if err := json.Unmarshal(out, &pr); err != nil {
		return nil, fmt.Errorf("media: reading ffprobe's output: %w", err)
	}
	return &pr, nil
}

// stream returns the first stream of codecType ("video", "audio"); a cover
// picture in an audio file is not a video stream.
func (pr *probe) stream(codecType string) *probeStream {
	for i := range pr.Streams {
		s := &pr.Streams[i]
		if s.CodecType == codecType && s.Disposition.AttachedPic == 0 {
			return s
		}
	}
	return nil
}

// duration is the container's duration, else the stream's, in seconds.
func (pr *probe) duration(s *probeStream) *float64 {
	for _, text := range []string{pr.Format.Duration, s.Duration} {
		if d, err := strconv.ParseFloat(text, 64); err == nil && d >= 0 && !math.IsInf(d, 0) {
			return &d
		}
	}
	return nil
}

// containerFormats are, per MIME type, the names of ffprobe's demuxer that
// such a file is read by (format_name lists several, comma-separated).
var containerFormats = map[string]string{
	"video/mp4":        "mp4",
	"video/quicktime":  "mov",
	"audio/mp4":        "mp4",
	"audio/x-m4a":      "m4a",
	"video/webm":       "webm",
	"audio/webm":       "webm",
	"video/x-matroska": "matroska",
	"video/ogg":        "ogg",
	"audio/ogg":        "ogg",
	"audio/mpeg":       "mp3",
	"audio/wav":        "wav",
	"audio/x-wav":      "wav",
	"audio/wave":       "wav",
	"audio/flac":       "flac",
}

// checkContainer refuses a file whose container is not what mimeType says.
// Types not in containerFormats are taken on trust.
func (pr *probe) checkContainer(mimeType string) error {
	want, known := containerFormats[mimeType]
	if !known {
		return nil
	}
	for name := range strings.SplitSeq(pr.Format.FormatName, ",") {
		if name == want {
			return nil
		}
	}
	return badFile(nil, "the file is of format %q, not the %s its type says", pr.Format.FormatName, mimeType)
}

// isMP4 reports whether the file is read by the ISO BMFF (MP4, MOV) demuxer.
func (pr *probe) isMP4() bool {
	return strings.HasPrefix(pr.Format.FormatName, "mov,mp4")
}

// isMatroska reports whether the file is Matroska or WebM.
func (pr *probe) isMatroska() bool {
	return strings.HasPrefix(pr.Format.FormatName, "matroska")
}

// rotation is the stream's display rotation in degrees, 0, 90, 180 or 270,
// from its display matrix, else its legacy "rotate" tag.
func (s *probeStream) rotation() int {
	degrees := 0.0
	found := false
	for _, sd := range s.SideData {
		if sd.Type == "Display Matrix" {
			degrees, found = sd.Rotation, true
			break
		}
	}
	if !found {
		if tag, err := strconv.ParseFloat(s.Tags["rotate"], 64); err == nil {
			degrees = tag
		}
	}
	quarter := int(math.Round(degrees/90)) % 4
	return (quarter + 4) % 4 * 90
}

// displaySize is the stream's width and height as shown: swapped for a
// quarter turn.
func (s *probeStream) displaySize() (int, int) {
	if r := s.rotation(); r == 90 || r == 270 {
		return s.Height, s.Width
	}
	return s.Width, s.Height
}

// frameRate parses "30000/1001"; nil for "0/0" or nonsense.
func (s *probeStream) frameRate() *float64 {
	for _, text := range []string{s.AvgFrameRate, s.RFrameRate} {
		num, den, ok := strings.Cut(text, "/")
		if !ok {
			continue
		}
		n, err1 := strconv.ParseFloat(num, 64)
		d, err2 := strconv.ParseFloat(den, 64)
		if err1 == nil && err2 == nil && n > 0 && d > 0 {
			rate := n / d
			return &rate
		}
	}
	return nil
}

// positiveInt parses text, nil unless it is a positive integer.
func positiveInt[T int | int64](text string) *T {
	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil || n <= 0 {
		return nil
	}
	v := T(n)
	return &v
}
