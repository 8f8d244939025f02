package media

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/gen2brain/webp"
)

// Defaults of Options, applied by New where a field is zero.
const (
	DefaultTimeout   = 2 * time.Minute
	DefaultMaxPixels = 100_000_000
)

// Options configure a Processor. The zero value is usable: tools are looked
// up in PATH and the limits take their defaults.
type Options struct {
	// FFmpeg and FFprobe are the tools' paths; "" looks them up in PATH. A
	// tool that cannot be found is not an error: the steps that need it
	// are skipped and Result.Skipped says so (images need neither).
	FFmpeg, FFprobe string
	// Timeout bounds each run of ffmpeg or ffprobe; 0 means DefaultTimeout.
	Timeout time.Duration
	// MaxPixels refuses images (and video frames) declaring more pixels
	// than this before any decoding: a small file can declare a picture
	// that would take gigabytes to decode. 0 means DefaultMaxPixels.
	MaxPixels int64
	// Logger receives one line per skipped step; nil discards.
	Logger *slog.Logger
}

// Processor turns local media files into what a frontend shows. It holds
// no state between calls (the WebP encoder, made once, is the process's)
// and is safe for concurrent use.
type Processor struct {
	ffmpeg, ffprobe string // "" when absent
	timeout         time.Duration
	maxPixels       int64
	log             *slog.Logger
	// makeEncoder makes the WebP encoder of every thumbnail ready
	// (webp.Init), once, whether Prepare or the first encode asks.
	makeEncoder func()
	prepared    sync.Once
}

// New checks o and finds the tools. It returns an error for a negative
// Timeout or MaxPixels; a tool it cannot find only disables what needs it.
func New(o Options) (*Processor, error) {
	if o.Timeout < 0 {
		return nil, fmt.Errorf("media: Timeout is %v; it must be positive (0 for the default %v)", o.Timeout, DefaultTimeout)
	}
	if o.MaxPixels < 0 {
		return nil, fmt.Errorf("media: MaxPixels is %d; it must be positive (0 for the default %d)", o.MaxPixels, DefaultMaxPixels)
	}
	p := &Processor{timeout: o.Timeout, maxPixels: o.MaxPixels, log: o.Logger, makeEncoder: webp.Init}
	if p.timeout == 0 {
		p.timeout = DefaultTimeout
	}
	if p.maxPixels == 0 {
		p.maxPixels = DefaultMaxPixels
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.ffmpeg = findTool(o.FFmpeg, "ffmpeg")
	p.ffprobe = findTool(o.FFprobe, "ffprobe")
	return p, nil
}

// findTool returns the executable path of the tool, or "" when there is none.
func findTool(configured, name string) string {
	if configured == "" {
		configured = name
	}
	path, err := exec.LookPath(configured)
	if err != nil {
		return ""
	}
	return path
}

// Prepare gets ready for a file of mimeType whose bytes are on their
// way, and returns at once. For an image it starts making the WebP
// encoder its thumbnails need, in the background: libwebp built for
// WebAssembly, compiled at its first use in the process, which took
// about 0.3 s of CPU and kept about 37 MiB (docs/BENCHMARKS.md, "The
// first image after a start"). Made while the image is sent, it no
// longer holds up the first image after a start. Video posters need it
// too, but only images ask: a replica that takes only videos pays for it
// at its first poster, as before, not while their bytes stream in.
func (p *Processor) Prepare(mimeType string) {
	if imageFormats[baseMIME(mimeType)] == "" {
		return
	}
	p.prepared.Do(func() {
		go func() {
			// libwebp's compile panics when it fails; the first encode
			// then panics too, inside processing, which fails that job.
			defer func() {
				if r := recover(); r != nil {
					p.log.Warn("media: making the WebP encoder failed; thumbnails cannot be made", "panic", fmt.Sprint(r))
				}
			}()
			p.makeEncoder()
		}()
	})
}

// Result is what Process learnt and made. Pointer fields are nil when the
// fact does not apply or could not be read (Skipped then says why).
type Result struct {
	// Width and Height are as displayed: after EXIF orientation or a
	// video's rotation.
	Width, Height *int
	// Duration is in seconds, for video and audio.
	Duration *float64
	// Thumbnails are the derivative images written in workDir, smallest
	// first.
	Thumbnails []Derived
	// Placeholder is the ThumbHash of the image or poster frame, standard
	// base64.
	Placeholder *string
	Video       *VideoInfo
	Audio       *AudioInfo
	// Faststart is the path (in workDir) of a remuxed copy of an MP4/MOV
	// whose moov box followed its media data, to be stored in place of the
	// original; "" when the original plays progressively as it is.
	Faststart string
	// Skipped says in plain words what could not be done and why.
	Skipped []string
}

// Derived is one derivative file written in workDir.
type Derived struct {
	Width, Height int
	MimeType      string
	Path          string
}

// Process reads the local file src, which the uploader said is of
// mimeType, and writes its derivatives in workDir (which must exist; the
// caller owns and removes it).
//
// It returns a *BadFileError (see IsBadFile) when the file itself is
// unusable: undecodable, not what mimeType says, or above MaxPixels. Any
// other error (ctx ended, a tool timed out, workDir unwritable) is
// transient. A type it has no processing for yields an empty Result that
// says so in Skipped.
func (p *Processor) Process(ctx context.Context, src, mimeType, workDir string) (*Result, error) {
	if err := ctxErr(ctx); err != nil {
		return nil, err
	}
	if _, err := os.Stat(src); err != nil {
		return nil, fmt.Errorf("media: %w", err)
	}
	mimeType = baseMIME(mimeType)
	res := &Result{}
	var err error
	switch {
	case imageFormats[mimeType] != "":
		err = p.processImage(ctx, src, mimeType, workDir, res)
	case strings.HasPrefix(mimeType, "video/"):
		err = p.processVideo(ctx, src, mimeType, workDir, res)
	case strings.HasPrefix(mimeType, "audio/"):
		err = p.processAudio(ctx, src, mimeType, res)
	default:
		res.skip("no processing for files of type %q", mimeType)
	}
	if err != nil {
		return nil, err
	}
	for _, s := range res.Skipped {
		p.log.Info("media step skipped", "file", src, "mime_type", mimeType, "reason", s)
	}
	return res, nil
}

// baseMIME drops parameters and case: "Video/MP4; codecs=avc1" is video/mp4.
func baseMIME(m string) string {
	m, _, _ = strings.Cut(m, ";")
	return strings.ToLower(strings.TrimSpace(m))
}

func (r *Result) skip(format string, args ...any) {
	r.Skipped = append(r.Skipped, fmt.Sprintf(format, args...))
}

// ctxErr returns ctx's error when it has ended, so a decoder's failure
// caused by cancellation is not mistaken for a bad file.
func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("media: %w", err)
	}
	return nil
}

// MissingTools names the tools (ffmpeg, ffprobe) this Processor could not
// find, so a server can say at start what its processing will skip.
func (p *Processor) MissingTools() []string {
	var missing []string
	if p.ffprobe == "" {
		missing = append(missing, "ffprobe")
	}
	if p.ffmpeg == "" {
		missing = append(missing, "ffmpeg")
	}
	return missing
}
