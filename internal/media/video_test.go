package media

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// makeMedia runs ffmpeg with args to write dir/name and returns its path.
func makeMedia(t *testing.T, name string, args ...string) string {
	t.Helper()
	ffmpeg := requireTool(t, "ffmpeg")
	out := filepath.Join(t.TempDir(), name)
	cmd := exec.Command(ffmpeg, append(append([]string{"-nostdin", "-hide_banner", "-v", "error", "-threads", "1"}, args...), "-y", out)...)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("making %s: %v: %s", name, err, msg)
	}
	return out
}

// testsrc is ffmpeg's test pattern, 320×240 at 25 fps for 3 s, with a 3 s
// 440 Hz sine as sound.
var testsrc = []string{
	"-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:duration=3",
	"-f", "lavfi", "-i", "sine=frequency=440:duration=3",
}

var h264AAC = []string{"-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac"}

func processFile(t *testing.T, p *Processor, src, mimeType string) *Result {
	t.Helper()
	res, err := p.Process(context.Background(), src, mimeType, t.TempDir())
	if err != nil {
		t.Fatalf("Process(%s, %s): %v", filepath.Base(src), mimeType, err)
	}
	return res
}

// probeJSON is ffprobe's view of a file, for comparing two files.
func probeJSON(t *testing.T, path string) *probe {
	t.Helper()
	out, err := exec.Command(requireTool(t, "ffprobe"), "-v", "error", "-print_format", "json", "-show_format", "-show_streams", path).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	var pr probe
	if err := json.Unmarshal(out, &pr); err != nil {
		t.Fatal(err)
	}
	return &pr
}

// packetHashes is the MD5 of each stream's packets, read by stream copy:
// equal for two files only if no stream was re-encoded.
func packetHashes(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command(requireTool(t, "ffmpeg"), "-nostdin", "-v", "error", "-i", path, "-map", "0", "-c", "copy", "-f", "streamhash", "-hash", "md5", "-").Output()
	if err != nil {
		t.Fatalf("hashing the packets of %s: %v", path, err)
	}
	return string(out)
}

func checkVideo(t *testing.T, res *Result, w, h int, codec string) {
	t.Helper()
	if intValue(res.Width) != w || intValue(res.Height) != h {
		t.Errorf("size %d×%d, want %d×%d", intValue(res.Width), intValue(res.Height), w, h)
	}
	if res.Duration == nil || math.Abs(*res.Duration-3) > 0.1 {
		t.Errorf("duration %v, want about 3 s", res.Duration)
	}
	if res.Video == nil || res.Video.Codec != codec || res.Video.FrameRate == nil || *res.Video.FrameRate != 25 ||
		res.Video.Bitrate == nil || *res.Video.Bitrate <= 0 {
		t.Fatalf("video facts %+v, want codec %s at 25 fps with a bit rate", res.Video, codec)
	}
	long := max(w, h)
	if len(res.Thumbnails) != 1 || res.Thumbnails[0].Width != w || res.Thumbnails[0].Height != h || long > 320 {
		t.Errorf("thumbnails %v, want one poster frame of %d×%d", thumbnailSizesOf(res), w, h)
	}
	if res.Placeholder == nil {
		t.Error("no placeholder from the poster frame")
	}
	if len(res.Skipped) != 0 {
		t.Errorf("skipped %q", res.Skipped)
	}
}

func TestMP4WithMoovAtTheEndIsRemuxedByStreamCopy(t *testing.T) {
	t.Parallel()
	src := makeMedia(t, "late-moov.mp4", append(slices.Clone(testsrc), h264AAC...)...)
	if first, err := fileMoovFirst(src); err != nil || first {
		t.Fatalf("ffmpeg's default MP4 has moov first=%v (%v); the test needs it at the end", first, err)
	}
	res := processFile(t, newTestProcessor(t, Options{}), src, "video/mp4")
	checkVideo(t, res, 320, 240, "h264")
	if res.Faststart == "" || !res.Video.Faststart {
		t.Fatalf("Faststart %q, VideoInfo.Faststart %v; want a remuxed copy", res.Faststart, res.Video.Faststart)
	}
	if first, err := fileMoovFirst(res.Faststart); err != nil || !first {
		t.Errorf("the remuxed copy has moov first=%v (%v)", first, err)
	}
	before, after := probeJSON(t, src), probeJSON(t, res.Faststart)
	codecs := func(pr *probe) (out []string) {
		for _, s := range pr.Streams {
			out = append(out, s.CodecType+"/"+s.CodecName)
		}
		return out
	}
	if !slices.Equal(codecs(before), codecs(after)) || len(after.Streams) != 2 {
		t.Errorf("streams %v became %v", codecs(before), codecs(after))
	}
	if before.Format.Duration != after.Format.Duration {
		t.Errorf("duration %s became %s", before.Format.Duration, after.Format.Duration)
	}
	if hb, ha := packetHashes(t, src), packetHashes(t, res.Faststart); hb != ha {
		t.Errorf("packets changed, so a stream was re-encoded:\n%s\nbecame\n%s", hb, ha)
	}
}

func TestFaststartMP4IsLeftAsItIs(t *testing.T) {
	t.Parallel()
	src := makeMedia(t, "faststart.mp4", append(append(slices.Clone(testsrc), h264AAC...), "-movflags", "+faststart")...)
	res := processFile(t, newTestProcessor(t, Options{}), src, "video/mp4")
	checkVideo(t, res, 320, 240, "h264")
	if res.Faststart != "" || !res.Video.Faststart {
		t.Errorf("Faststart %q, VideoInfo.Faststart %v; want no copy and true", res.Faststart, res.Video.Faststart)
	}
}

func TestMOVIsRemuxedAsMOV(t *testing.T) {
	t.Parallel()
	src := makeMedia(t, "clip.mov", append(slices.Clone(testsrc), h264AAC...)...)
	res := processFile(t, newTestProcessor(t, Options{}), src, "video/quicktime")
	checkVideo(t, res, 320, 240, "h264")
	if filepath.Ext(res.Faststart) != ".mov" || !res.Video.Faststart {
		t.Fatalf("Faststart %q, VideoInfo.Faststart %v; want a .mov copy", res.Faststart, res.Video.Faststart)
	}
	if name := probeJSON(t, res.Faststart).Format.FormatName; !strings.HasPrefix(name, "mov") {
		t.Errorf("the copy's format is %q", name)
	}
}

func TestWebMPlaysProgressivelyWithoutRemux(t *testing.T) {
	t.Parallel()
	src := makeMedia(t, "clip.webm", append(slices.Clone(testsrc),
		"-c:v", "libvpx", "-deadline", "realtime", "-b:v", "300k", "-c:a", "libopus")...)
	res := processFile(t, newTestProcessor(t, Options{}), src, "video/webm")
	checkVideo(t, res, 320, 240, "vp8")
	if res.Faststart != "" || !res.Video.Faststart {
		t.Errorf("Faststart %q, VideoInfo.Faststart %v; want no copy and true", res.Faststart, res.Video.Faststart)
	}
}

func TestRotatedVideoReportsDisplaySize(t *testing.T) {
	t.Parallel()
	plain := makeMedia(t, "plain.mp4", append(slices.Clone(testsrc), h264AAC...)...)
	// ffmpeg 5.1 writes a stream-copied "rotate" tag as a display matrix.
	src := makeMedia(t, "rotated.mp4", "-i", plain, "-map", "0", "-c", "copy", "-metadata:s:v:0", "rotate=90")
	if rot := probeJSON(t, src).stream("video").rotation(); rot != 90 && rot != 270 {
		t.Fatalf("the test video's rotation is %d, want a quarter turn", rot)
	}
	res := processFile(t, newTestProcessor(t, Options{}), src, "video/mp4")
	checkVideo(t, res, 240, 320, "h264")
	decodeThumbnail(t, res.Thumbnails[0]) // checks it is 240×320 as Result says
}

func TestVideoOfAnotherContainerThanItsMIMEIsABadFile(t *testing.T) {
	t.Parallel()
	src := makeMedia(t, "clip.webm", append(slices.Clone(testsrc),
		"-c:v", "libvpx", "-deadline", "realtime", "-c:a", "libopus")...)
	_, err := newTestProcessor(t, Options{}).Process(context.Background(), src, "video/mp4", t.TempDir())
	wantBadFile(t, err, `not the video/mp4 its type says`)
}

func TestUnreadableVideoIsABadFile(t *testing.T) {
	t.Parallel()
	requireTool(t, "ffprobe")
	res, err := process(t, newTestProcessor(t, Options{}), []byte("\x00\x00\x00\x18ftypmp42 garbage garbage garbage"), "video/mp4")
	if res != nil {
		t.Errorf("result %+v for garbage", res)
	}
	wantBadFile(t, err, "the file could not be read as audio or video")
	// The uploader reads it: ffprobe's words, without the server's paths
	// or FFmpeg's log prefixes, on one line.
	if msg := err.Error(); strings.ContainsAny(msg, "/\n") || strings.Contains(msg, " @ 0x") || !strings.Contains(msg, "file: ") {
		t.Errorf("error %q, want ffprobe's words with its input named \"file\", no path, prefix or line break", msg)
	}
}

func TestToolWords(t *testing.T) {
	t.Parallel()
	stderr := "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x560375c4e1c0] moov atom not found\n" +
		"data/files/objects/usr_1/upl_2: Invalid data found when processing input\n\n" +
		"[out#0/png @ 0x55d0] Error opening output /tmp/work/poster-frame.png\n"
	args := []string{"-v", "error", "-i", "data/files/objects/usr_1/upl_2", "-map", "0:v:0", "-y", "/tmp/work/poster-frame.png"}
	want := "moov atom not found; file: Invalid data found when processing input; Error opening output file"
	if got := toolWords(stderr, args); got != want {
		t.Errorf("toolWords = %q, want %q", got, want)
	}
}

func TestWithoutFFmpegAndFFprobe(t *testing.T) {
	t.Parallel()
	src := makeMedia(t, "late-moov.mp4", append(slices.Clone(testsrc), h264AAC...)...)
	nowhere := filepath.Join(t.TempDir(), "not-installed")
	p := newTestProcessor(t, Options{FFmpeg: nowhere + "/ffmpeg", FFprobe: nowhere + "/ffprobe"})

	res := processFile(t, p, src, "video/mp4")
	if len(res.Skipped) != 1 || !strings.Contains(res.Skipped[0], "ffprobe is not installed") ||
		res.Thumbnails != nil || res.Faststart != "" {
		t.Errorf("video without tools: %+v, want only a Skipped note", res)
	}
	image := mustProcess(t, p, encodeJPEG(t, photo(400, 300, 10)), "image/jpeg")
	if len(image.Thumbnails) != 2 || len(image.Skipped) != 0 {
		t.Errorf("image without tools: %+v, want its thumbnails", image)
	}
}

func TestWithFFprobeButNotFFmpeg(t *testing.T) {
	t.Parallel()
	src := makeMedia(t, "late-moov.mp4", append(slices.Clone(testsrc), h264AAC...)...)
	p := newTestProcessor(t, Options{FFmpeg: filepath.Join(t.TempDir(), "ffmpeg")})
	res := processFile(t, p, src, "video/mp4")
	if intValue(res.Width) != 320 || res.Duration == nil || res.Video == nil || res.Video.Faststart {
		t.Errorf("%+v: want the probed facts, Faststart false", res)
	}
	if len(res.Skipped) != 1 || !strings.Contains(res.Skipped[0], "ffmpeg is not installed") || res.Faststart != "" || res.Thumbnails != nil {
		t.Errorf("skipped %q, faststart %q, thumbnails %v; want only the note", res.Skipped, res.Faststart, res.Thumbnails)
	}
}

func TestTimedOutToolIsNotABadFile(t *testing.T) {
	t.Parallel()
	src := makeMedia(t, "late-moov.mp4", append(slices.Clone(testsrc), h264AAC...)...)
	// A stand-in ffprobe that hangs: the one case a real tool cannot be
	// made to show on demand.
	hanging := filepath.Join(t.TempDir(), "ffprobe")
	if err := os.WriteFile(hanging, []byte("#!/bin/sh\nexec sleep 600\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, o := range []Options{
		{Timeout: 1}, // 1 ns: cut short before it starts
		{Timeout: 100 * time.Millisecond, FFprobe: hanging}, // killed while running
	} {
		p := newTestProcessor(t, o)
		_, err := p.Process(context.Background(), src, "video/mp4", t.TempDir())
		if err == nil || IsBadFile(err) || !strings.Contains(err.Error(), "ran longer than the "+o.Timeout.String()+" limit") {
			t.Errorf("Timeout %v: error %v, want a transient timeout", o.Timeout, err)
		}
	}
}

func TestAnimatedWebPUsesFirstFrame(t *testing.T) {
	t.Parallel()
	src := makeMedia(t, "anim.webp", "-f", "lavfi", "-i", "testsrc=size=400x300:rate=5:duration=1", "-c:v", "libwebp_anim", "-loop", "0")
	if data := readFile(t, src); !isAnimatedWebP(data) {
		t.Fatalf("ffmpeg's libwebp_anim output is not flagged animated: % x", data[:24])
	}
	res := processFile(t, newTestProcessor(t, Options{}), src, "image/webp")
	if got, want := thumbnailSizesOf(res), []size{{320, 240}, {400, 300}}; !slices.Equal(got, want) {
		t.Errorf("thumbnails %v, want %v", got, want)
	}
}
