package media

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// posterAt is when the poster frame is taken, at most: far enough in to
// pass a fade from black, and no later than half a short clip.
const posterAt = 1.0

func (p *Processor) processVideo(ctx context.Context, src, mimeType, workDir string, res *Result) error {
	if p.ffprobe == "" {
		res.skip("ffprobe is not installed: duration, dimensions, poster frame and faststart remux skipped")
		return nil
	}
	pr, err := p.probeFile(ctx, src)
	if err != nil {
		return err
	}
	if err := pr.checkContainer(mimeType); err != nil {
		return err
	}
	video := pr.stream("video")
	if video == nil {
		if pr.stream("audio") == nil {
			return badFile(nil, "the file has neither a video nor an audio stream")
		}
		// Browsers label audio-only WebM video/webm; it is still worth a waveform.
		res.skip("the file has no video stream: processed as audio")
		return p.describeAudio(ctx, src, pr, res)
	}
	w, h := video.displaySize()
	if err := p.checkPixels(w, h); err != nil {
		return err
	}
	res.Width, res.Height = &w, &h
	res.Duration = pr.duration(video)
	res.Video = &VideoInfo{
		Codec:     video.CodecName,
		FrameRate: video.frameRate(),
		Bitrate:   positiveInt[int64](pr.Format.BitRate),
		// WebM and Matroska write their header (tracks, codecs) before the
		// clusters of media, so they always play as they download.
		Faststart: pr.isMatroska(),
	}
	if p.ffmpeg == "" {
		res.skip("ffmpeg is not installed: poster frame and faststart remux skipped")
		if pr.isMP4() {
			res.Video.Faststart, _ = fileMoovFirst(src)
		}
		return nil
	}
	if err := p.poster(ctx, src, workDir, res); err != nil {
		return err
	}
	if pr.isMP4() {
		return p.faststart(ctx, src, mimeType, workDir, res)
	}
	return nil
}

// poster takes a frame at min(posterAt, duration/2) and derives thumbnails
// and the placeholder from it. ffmpeg applies the stream's rotation, so the
// frame is upright. A frame ffmpeg cannot make is noted in Skipped: the
// file was probed and may well play.
func (p *Processor) poster(ctx context.Context, src, workDir string, res *Result) error {
	at := 0.0
	if res.Duration != nil {
		at = min(posterAt, *res.Duration/2)
	}
	frame := filepath.Join(workDir, "poster-frame.png")
	defer os.Remove(frame)
	args := append(append([]string{}, quietArgs...),
		"-threads", "1", "-ss", strconv.FormatFloat(at, 'f', 3, 64), "-i", src,
		"-map", "0:v:0", "-frames:v", "1", "-threads", "1", "-filter_threads", "1",
		"-c:v", "png", "-f", "image2", "-y", frame)
	_, err := p.run(ctx, p.ffmpeg, args...)
	var failed *toolError
	if errors.As(err, &failed) {
		res.skip("no poster frame: %v", failed)
		return nil
	}
	if err != nil {
		return err
	}
	img, err := p.decodeImage(frame, "PNG")
	if err != nil {
		return fmt.Errorf("media: reading the poster frame ffmpeg wrote: %w", err)
	}
	return p.derive(ctx, img, workDir, "poster", res)
}

// faststart remuxes an MP4/MOV whose moov box follows its media data into
// one with moov first, copying every stream as it is (no re-encoding), and
// sets Result.Faststart and VideoInfo.Faststart.
func (p *Processor) faststart(ctx context.Context, src, mimeType, workDir string, res *Result) error {
	first, err := fileMoovFirst(src)
	if err != nil {
		res.skip("could not tell where the file's index (moov box) is, so it was not remuxed: %v", err)
		return nil
	}
	if first {
		res.Video.Faststart = true
		return nil
	}
	muxer := "mp4"
	if mimeType == "video/quicktime" {
		muxer = "mov"
	}
	out := filepath.Join(workDir, "faststart."+muxer)
	args := append(append([]string{}, quietArgs...),
		"-threads", "1", "-i", src, "-map", "0", "-c", "copy", "-map_metadata", "0",
		"-movflags", "+faststart", "-f", muxer, "-y", out)
	_, err = p.run(ctx, p.ffmpeg, args...)
	var failed *toolError
	if errors.As(err, &failed) {
		os.Remove(out)
		res.skip("the file's index (moov box) is at its end and the faststart remux failed: %v", failed)
		return nil
	}
	if err != nil {
		os.Remove(out)
		return err
	}
	if first, err := fileMoovFirst(out); err != nil || !first {
		os.Remove(out)
		return fmt.Errorf("media: ffmpeg's faststart remux still has moov after mdat (%v)", err)
	}
	res.Faststart = out
	res.Video.Faststart = true
	return nil
}

func fileMoovFirst(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return false, err
	}
	return moovBeforeMdat(f, info.Size())
}
