package media

import (
	"math"
	"testing"
)

func TestAudioFactsAndPeaks(t *testing.T) {
	t.Parallel()
	sine := []string{"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=2"}
	tests := []struct {
		name, mimeType, codec string
		args                  []string
	}{
		{"sine.wav", "audio/wav", "pcm_s16le", sine},
		{"sine.mp3", "audio/mpeg", "mp3", append(sine, "-c:a", "libmp3lame")},
		{"sine.ogg", "audio/ogg", "vorbis", append(sine, "-c:a", "libvorbis")},
	}
	p := newTestProcessor(t, Options{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := processFile(t, p, makeMedia(t, tt.name, tt.args...), tt.mimeType)
			a := res.Audio
			if a == nil || a.Codec != tt.codec || intValue(a.Channels) != 1 || intValue(a.SampleRate) != 44100 {
				t.Fatalf("audio facts %+v, want %s, mono, 44100 Hz", a, tt.codec)
			}
			if res.Duration == nil || math.Abs(*res.Duration-2) > 0.1 {
				t.Errorf("duration %v, want about 2 s", res.Duration)
			}
			if len(a.Peaks) != 256 {
				t.Fatalf("%d peaks, want 256", len(a.Peaks))
			}
			// ffmpeg's sine source has amplitude 1/8: every stretch peaks
			// near 12.5 % (lossy codecs wobble, and their first frames fade in).
			for i, v := range a.Peaks[4:252] {
				if v < 9 || v > 16 {
					t.Fatalf("peak %d is %d, want about 12 (all: %v)", i+4, v, a.Peaks)
				}
			}
			if res.Video != nil || res.Thumbnails != nil || len(res.Skipped) != 0 {
				t.Errorf("an audio result has video %v, thumbnails %v, skipped %q", res.Video, res.Thumbnails, res.Skipped)
			}
		})
	}
}

func TestSilenceHasFlatPeaks(t *testing.T) {
	t.Parallel()
	src := makeMedia(t, "silence.wav", "-f", "lavfi", "-i", "anullsrc=r=8000:cl=stereo", "-t", "1.5")
	res := processFile(t, newTestProcessor(t, Options{}), src, "audio/wav")
	if res.Audio == nil || intValue(res.Audio.Channels) != 2 || len(res.Audio.Peaks) != 256 {
		t.Fatalf("audio %+v, want stereo with 256 peaks", res.Audio)
	}
	for i, v := range res.Audio.Peaks {
		if v != 0 {
			t.Fatalf("peak %d of silence is %d", i, v)
		}
	}
}

func TestAudioOnlyWebMLabelledVideoIsProcessedAsAudio(t *testing.T) {
	t.Parallel()
	src := makeMedia(t, "voice.webm", "-f", "lavfi", "-i", "sine=frequency=300:duration=2", "-c:a", "libopus")
	res := processFile(t, newTestProcessor(t, Options{}), src, "video/webm")
	if res.Audio == nil || res.Audio.Codec != "opus" || len(res.Audio.Peaks) != 256 || res.Video != nil {
		t.Fatalf("result %+v, want opus audio facts and no video", res)
	}
	if len(res.Skipped) != 1 {
		t.Errorf("skipped %q, want a note that it had no video", res.Skipped)
	}
}

func TestVideoFileLabelledAudioIsABadFile(t *testing.T) {
	t.Parallel()
	src := makeMedia(t, "clip.mp4", "-f", "lavfi", "-i", "testsrc=duration=1", "-c:v", "libx264", "-preset", "ultrafast")
	_, err := newTestProcessor(t, Options{}).Process(t.Context(), src, "audio/mp4", t.TempDir())
	wantBadFile(t, err, "the file has no audio stream")
}
