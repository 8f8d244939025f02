package media

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"strconv"
)

const (
	// peakCount is the number of waveform values in AudioInfo.Peaks.
	peakCount = 256
	// peakSampleRate is the rate ffmpeg resamples to for the waveform:
	// plenty to find each 1/256th's loudest moment, and 16 KB a second.
	peakSampleRate = 8000
)

func (p *Processor) processAudio(ctx context.Context, src, mimeType string, res *Result) error {
	if p.ffprobe == "" {
		res.skip("ffprobe is not installed: duration, audio facts and waveform skipped")
		return nil
	}
	pr, err := p.probeFile(ctx, src)
	if err != nil {
		return err
	}
	if err := pr.checkContainer(mimeType); err != nil {
		return err
	}
	return p.describeAudio(ctx, src, pr, res)
}

// describeAudio sets the audio facts of a probed file and its waveform.
func (p *Processor) describeAudio(ctx context.Context, src string, pr *probe, res *Result) error {
	audio := pr.stream("audio")
	if audio == nil {
		return badFile(nil, "the file has no audio stream")
	}
	res.Duration = pr.duration(audio)
	res.Audio = &AudioInfo{
		Codec:      audio.CodecName,
		SampleRate: positiveInt[int](audio.SampleRate),
	}
	if audio.Channels > 0 {
		res.Audio.Channels = &audio.Channels
	}
	if p.ffmpeg == "" {
		res.skip("ffmpeg is not installed: waveform skipped")
		return nil
	}
	peaks, err := p.peaks(ctx, src)
	var failed *toolError
	if errors.As(err, &failed) {
		res.skip("no waveform: %v", failed)
		return nil
	}
	if err != nil {
		return err
	}
	res.Audio.Peaks = peaks
	return nil
}

// peaks decodes the first audio stream to mono 16-bit PCM through a pipe
// and folds it into peakCount values from 0 to 100.
func (p *Processor) peaks(ctx context.Context, src string) ([]int, error) {
	args := append(append([]string{}, quietArgs...),
		"-threads", "1", "-i", src, "-map", "0:a:0", "-vn", "-sn", "-dn",
		"-ac", "1", "-ar", strconv.Itoa(peakSampleRate), "-threads", "1", "-filter_threads", "1",
		"-f", "s16le", "-")
	folder := newPeakFolder(peakCount)
	err := p.stream(ctx, p.ffmpeg, args, func(r io.Reader) error {
		return folder.readPCM(bufio.NewReaderSize(r, 64<<10))
	})
	if err != nil {
		return nil, err
	}
	return folder.peaks(), nil
}

// peakFolder keeps the loudest absolute sample of each stretch of a stream
// of unknown length in at most 2n bins: when they fill, neighbours merge
// and each bin covers twice the samples. Memory stays fixed however long
// the audio, and no duration is needed beforehand.
type peakFolder struct {
	n      int
	bins   []int32
	perBin int // samples each bin covers
	inLast int // samples in the last bin so far
}

func newPeakFolder(n int) *peakFolder {
	return &peakFolder{n: n, bins: make([]int32, 0, 2*n), perBin: 1}
}

func (f *peakFolder) add(sample int16) {
	level := int32(sample)
	if level < 0 {
		level = -level
	}
	if f.inLast == 0 {
		f.bins = append(f.bins, 0)
	}
	last := len(f.bins) - 1
	f.bins[last] = max(f.bins[last], level)
	f.inLast++
	if f.inLast < f.perBin {
		return
	}
	f.inLast = 0
	if len(f.bins) == 2*f.n {
		for i := range f.n {
			f.bins[i] = max(f.bins[2*i], f.bins[2*i+1])
		}
		f.bins = f.bins[:f.n]
		f.perBin *= 2
	}
}

// readPCM adds every little-endian signed 16-bit sample of r.
func (f *peakFolder) readPCM(r io.Reader) error {
	buf := make([]byte, 32<<10)
	var carry []byte // an odd byte left from the previous read
	for {
		n, err := r.Read(buf)
		data := buf[:n]
		if len(carry) > 0 && n > 0 {
			f.add(int16(binary.LittleEndian.Uint16([]byte{carry[0], data[0]})))
			data, carry = data[1:], nil
		}
		for len(data) >= 2 {
			f.add(int16(binary.LittleEndian.Uint16(data)))
			data = data[2:]
		}
		if len(data) == 1 {
			carry = []byte{data[0]}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// peaks spreads the bins over n values, each the loudest of its share, as
// a percentage of full scale.
func (f *peakFolder) peaks() []int {
	out := make([]int, f.n)
	bins := len(f.bins)
	if bins == 0 {
		return out
	}
	for i := range out {
		from, to := i*bins/f.n, (i+1)*bins/f.n
		if to <= from {
			to = from + 1
		}
		var loudest int32
		for _, b := range f.bins[from:to] {
			loudest = max(loudest, b)
		}
		out[i] = min(100, int((loudest*100+16383)/32767))
	}
	return out
}
