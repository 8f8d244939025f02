//go:build linux

package bench

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/spoolhq/spool/internal/media"
)

// A media comparison times spool's way of doing one job against a
// well-known tool doing the same job, in the same run, so that their
// ratio means something on a noisy machine.
type comparison struct {
	name     string // what the job is, e.g. "thumbnails of a 12 MP JPEG"
	unit     string // what rate compares them: "images/s", "MiB/s"
	baseline string // the tool spool is compared with
	// work is how many units one op does (1 image, 512 MiB).
	work float64
	// per names the amount CPU and wall time are given for ("image",
	// "GiB") and perWork is how many of it one op does.
	per           string
	perWork       float64
	spool, others []sample
	// key names its ratio's metric (default: the name's first word);
	// notes are printed after the table, metrics reported besides the
	// ratio.
	key     string
	notes   []string
	metrics map[string]float64
}

// sample is one timed op: its wall time and the CPU time it cost
// (user+system, of this process for spool, of the child for a tool).
type sample struct{ wall, cpu time.Duration }

// mediaMeasurements are the comparisons BenchmarkMediaProcessing makes, in
// order. Each prepares its own input under dir and returns its samples;
// more are added by appending here.
var mediaMeasurements = append([]func(b *testing.B, dir string) comparison{
	measureThumbnails,
	measureSHA256,
}, besideWorkerSettings()...)

// BenchmarkMediaProcessing compares spool's media work with standard tools
// (`make bench-media`): thumbnails and ThumbHash of a 12 MP JPEG against
// ImageMagick's convert, and SHA-256 of a 512 MiB file against sha256sum;
// then the data plane's throughput with processing kept busy beside it
// against processing idle (beside_test.go), at the default
// --processing-workers and at one worker per CPU.
func BenchmarkMediaProcessing(b *testing.B) {
	dir := b.TempDir()
	var results []comparison
	for _, measure := range mediaMeasurements {
		results = append(results, measure(b, dir))
	}
	reportComparisons(b, results)
}

const (
	photoWidth, photoHeight = 4000, 3000
	thumbnailRounds         = 5
	hashSize                = 512 * mib
	hashRounds              = 3
)

// measureThumbnails runs, per round, spool's Processor on a 12 MP JPEG (the
// 320 and 1280 px WebP thumbnails and the ThumbHash: what processing does
// per image) and ImageMagick making the same two WebP thumbnails from one
// read of the same file.
func measureThumbnails(b *testing.B, dir string) comparison {
	convert := lookImageMagick(b)
	src := filepath.Join(dir, "photo.jpg")
	writeBenchPhoto(b, src)
	p, err := media.New(media.Options{})
	if err != nil {
		b.Fatal(err)
	}
	c := comparison{name: "thumbnails of a 4000×3000 JPEG", unit: "images/s", baseline: "ImageMagick convert", work: 1, per: "image", perWork: 1}
	ctx := context.Background()
	spoolRun := func() sample {
		return selfCPU(b, func() {
			res, err := p.Process(ctx, src, "image/jpeg", b.TempDir())
			if err != nil || len(res.Thumbnails) != 2 || res.Placeholder == nil {
				b.Fatalf("Process: %+v, %v", res, err)
			}
		})
	}
	out := b.TempDir()
	convertRun := func() sample {
		// -thumbnail resizes and strips profiles; the same quality and
		// libwebp method as spool's thumbnails.
		return childCPU(b, exec.Command(convert, src,
			"-quality", "80", "-define", "webp:method=2",
			"-thumbnail", "1280x1280", "-write", filepath.Join(out, "1280.webp"),
			"-thumbnail", "320x320", filepath.Join(out, "320.webp")))
	}
	// One unmeasured run each: the page cache holds the JPEG, and spool
	// has compiled its WebP encoder (WebAssembly, once per process).
	spoolRun()
	convertRun()
	for range thumbnailRounds {
		c.spool = append(c.spool, spoolRun())
		c.others = append(c.others, convertRun())
	}
	return c
}

// measureSHA256 hashes a 512 MiB file (in the page cache) with Go's
// crypto/sha256, as spool's verification does, and with sha256sum.
func measureSHA256(b *testing.B, dir string) comparison {
	sha256sum := lookBenchTool(b, "sha256sum", "coreutils")
	path := filepath.Join(dir, "hash.bin")
	writeRandomFile(b, path, hashSize)
	c := comparison{name: "SHA-256 of a 512 MiB file", unit: "MiB/s", baseline: "sha256sum", work: hashSize / mib, per: "GiB", perWork: float64(hashSize) / gib}
	var goSum, toolSum string
	spoolRun := func() sample {
		return selfCPU(b, func() { goSum = hashFile(b, path) })
	}
	toolRun := func() sample {
		cmd := exec.Command(sha256sum, path)
		var stdout strings.Builder
		cmd.Stdout = &stdout
		s := childCPU(b, cmd)
		toolSum, _, _ = strings.Cut(stdout.String(), " ")
		return s
	}
	spoolRun() // reads the file into the page cache
	for range hashRounds {
		c.spool = append(c.spool, spoolRun())
		c.others = append(c.others, toolRun())
	}
	if goSum != toolSum {
		b.Fatalf("crypto/sha256 says %s, sha256sum says %s", goSum, toolSum)
	}
	return c
}

func hashFile(b *testing.B, path string) string {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, f, make([]byte, 1<<20)); err != nil {
		b.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// lookBenchTool finds a tool the comparison needs, failing with the Debian
// package to install.
func lookBenchTool(b *testing.B, name, debianPackage string) string {
	path, err := exec.LookPath(name)
	if err != nil {
		b.Fatalf("%s is not installed: apt-get install %s", name, debianPackage)
	}
	return path
}

// lookImageMagick finds ImageMagick's convert: the first of Debian's own
// binary (the one its `convert` links to) and any `convert` on the PATH
// whose -version says ImageMagick. A `convert` that is something else (a
// stand-in ahead of Debian's on the PATH) does not count.
func lookImageMagick(b *testing.B) string {
	for _, name := range []string{"convert-im6.q16", "convert"} {
		path, err := exec.LookPath(name)
		if err != nil {
			continue
		}
		if out, err := exec.Command(path, "-version").Output(); err == nil && strings.Contains(string(out), "ImageMagick") {
			return path
		}
	}
	b.Fatal("ImageMagick is not installed: make bench-media installs Debian's imagemagick, or apt-get install imagemagick")
	return ""
}

// selfCPU times fn and the CPU this process spent meanwhile (all its
// threads: the resizer works on every core).
func selfCPU(b *testing.B, fn func()) sample {
	before, start := rusageSelf(b), time.Now()
	fn()
	wall := time.Since(start)
	return sample{wall: wall, cpu: rusageSelf(b) - before}
}

func rusageSelf(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// childCPU runs cmd and returns its wall time and the CPU it used, as the
// kernel accounted it on exit.
func childCPU(b *testing.B, cmd *exec.Cmd) sample {
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		b.Fatalf("%s: %v: %s", cmd, err, stderr.String())
	}
	wall := time.Since(start)
	return sample{wall: wall, cpu: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()}
}

// writeBenchPhoto writes a photo-like 12 MP JPEG: gradients under noise,
// which compresses about as badly as a real photo.
func writeBenchPhoto(b *testing.B, path string) {
	img := image.NewNRGBA(image.Rect(0, 0, photoWidth, photoHeight))
	rng := rand.New(rand.NewPCG(12, 34))
	for y := range photoHeight {
		for x := range photoWidth {
			n := uint8(rng.IntN(48))
			img.SetNRGBA(x, y, color.NRGBA{
				uint8(x*200/photoWidth) + n, uint8(y*200/photoHeight) + n, uint8((x+y)*100/(photoWidth+photoHeight)) + n, 255,
			})
		}
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(f)
	if err := jpeg.Encode(w, img, &jpeg.Options{Quality: 90}); err != nil {
		b.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}

func writeRandomFile(b *testing.B, path string, size int64) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(56, 78))
	block := make([]byte, 1<<20)
	for written := int64(0); written < size; written += int64(len(block)) {
		for i := range block {
			block[i] = byte(rng.Uint32())
		}
		if _, err := f.Write(block); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}

// reportComparisons prints one row per comparison: medians of rate, wall
// and CPU per unit of work on each side, and spool's rate over the
// baseline's, taken round by round (the two ops of a round run seconds
// apart, so their ratio is less exposed to the machine's swings).
func reportComparisons(b *testing.B, results []comparison) {
	b.ReportMetric(0, "ns/op")
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "job\tspool rate\tbaseline rate\tspool/baseline rate\tCPU s: spool, baseline\twall s: spool, baseline\tbaseline")
	for _, c := range results {
		rate := func(s sample) float64 { return c.work / s.wall.Seconds() }
		perUnit := func(ss []sample, of func(sample) time.Duration) float64 {
			var xs []float64
			for _, s := range ss {
				xs = append(xs, of(s).Seconds()/c.perWork)
			}
			return median(xs)
		}
		var spoolRates, otherRates, ratios []float64
		for i := range c.spool {
			spoolRates = append(spoolRates, rate(c.spool[i]))
			otherRates = append(otherRates, rate(c.others[i]))
			ratios = append(ratios, rate(c.spool[i])/rate(c.others[i]))
		}
		cpu := func(s sample) time.Duration { return s.cpu }
		wall := func(s sample) time.Duration { return s.wall }
		fmt.Fprintf(tw, "%s\t%.2f %s\t%.2f %s\t%.2f (min %.2f, max %.2f)\t%.3f, %.3f per %s\t%.3f, %.3f per %s\t%s\n", c.name,
			median(spoolRates), c.unit, median(otherRates), c.unit, median(ratios), slices.Min(ratios), slices.Max(ratios),
			perUnit(c.spool, cpu), perUnit(c.others, cpu), c.per, perUnit(c.spool, wall), perUnit(c.others, wall), c.per, c.baseline)
		key := c.key
		if key == "" {
			key = strings.Fields(c.name)[0]
		}
		b.ReportMetric(median(ratios), key+"-ratio")
		for name, v := range c.metrics {
			b.ReportMetric(v, name)
		}
	}
	_ = tw.Flush()
	for _, c := range results {
		for _, n := range c.notes {
			fmt.Println(n)
		}
	}
}
