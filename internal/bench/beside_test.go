//go:build linux

package bench

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spoolhq/spool/internal/jobs"
)

// The data plane beside processing: a real `spool serve` takes 256 MiB
// uploads (8 MiB chunks, 4 PUTs at a time) in phases that alternate, round
// by round, between processing idle and processing kept busy by a
// background client that completes 12 MP JPEG uploads so that the
// processing queue never runs dry. Their throughput ratio is what
// processing costs the data plane at a --processing-workers setting.
const (
	besideFileSize = 256 * mib
	besideUploads  = 2 // data-plane uploads per phase
	besidePUTs     = 4 // chunk PUTs in flight
)

var besideRounds = flag.Int("beside-rounds", 5, "rounds of the data plane beside processing, per worker setting (go test … -args -beside-rounds N)")

// besideProcessing returns the measurement for spool started with flags,
// which process workers files at once: the feeder keeps two more images
// than that waiting, so a worker that finishes finds the next at once.
func besideProcessing(workers int, flags ...string) func(b *testing.B, dir string) comparison {
	return func(b *testing.B, dir string) comparison {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		photo := besidePhoto(b, dir)
		bin := filepath.Join(dir, "bin", "spool")
		if _, err := os.Stat(bin); err != nil {
			bin = buildBinary(b, mkdir(b, dir, "bin"), "./cmd/spool")
		}
		client := newClient()
		s := startSpool(ctx, b, bin, mkdir(b, dir, fmt.Sprintf("spool-beside-%d", workers)), flags...)
		defer s.stop()
		name := fmt.Sprintf("data plane beside processing, %d worker(s)", workers)
		c := comparison{
			name: name, key: fmt.Sprintf("beside-%dw", workers), unit: "MiB/s", baseline: "processing idle",
			work: besideUploads * besideFileSize / mib, per: "GiB", perWork: float64(besideUploads*besideFileSize) / gib,
		}
		load := loadAverage(b)

		idle := func() sample {
			smp, _, _, ids := besideUploadPhase(ctx, b, client, s)
			finishBesideUploads(ctx, b, client, s, ids, nil)
			return smp
		}
		var images int
		var imageTime time.Duration
		busy := func() sample {
			f := startFeeder(ctx, client, s, photo, workers+2)
			if err := f.awaitReady(ctx, 1); err != nil {
				s.fail(b, "feeding images: %v", err)
			}
			smp, from, to, ids := besideUploadPhase(ctx, b, client, s)
			images += f.readyBetween(from, to)
			imageTime += to.Sub(from)
			imageIDs, err := f.stop()
			if err != nil {
				s.fail(b, "feeding images: %v", err)
			}
			finishBesideUploads(ctx, b, client, s, ids, imageIDs)
			return smp
		}
		// Unmeasured: the first uploads, and the first image, whose
		// processing compiles the WebP encoder (once per process).
		idle()
		busy()
		images, imageTime = 0, 0

		fmt.Printf("\n%s: %d × %d MiB per phase in %d MiB chunks, %d PUTs at a time, %d rounds\n",
			name, besideUploads, besideFileSize/mib, chunkSize/mib, besidePUTs, *besideRounds)
		for r := range *besideRounds {
			// Which phase goes first alternates, so neither always meets
			// the other's leftovers (writeback, dirty pages).
			var a, bb sample
			if r%2 == 0 {
				a, bb = idle(), busy()
			} else {
				bb, a = busy(), idle()
			}
			c.others, c.spool = append(c.others, a), append(c.spool, bb)
			fmt.Printf("  round %d  idle %5.0f MiB/s, %.2f server CPU s/GiB   busy %5.0f MiB/s, %.2f server CPU s/GiB   busy/idle %.2f\n", r+1,
				c.work/a.wall.Seconds(), a.cpu.Seconds()/c.perWork, c.work/bb.wall.Seconds(), bb.cpu.Seconds()/c.perWork,
				a.wall.Seconds()/bb.wall.Seconds())
		}
		rate := float64(images) / imageTime.Seconds()
		c.notes = append(c.notes,
			fmt.Sprintf("%s: %d images processed in %.1f s of busy phases: %.2f images/s; load average %s before, %s after",
				name, images, imageTime.Seconds(), rate, load, loadAverage(b)))
		c.metrics = map[string]float64{c.key + "-images/s": rate}
		return c
	}
}

// besideWorkerSettings are the --processing-workers settings measured:
// the default (half the CPUs) and one per CPU.
func besideWorkerSettings() []func(b *testing.B, dir string) comparison {
	cpus := runtime.NumCPU()
	return []func(b *testing.B, dir string) comparison{
		besideProcessing(jobs.DefaultConfig().ProcessingWorkers),
		besideProcessing(cpus, "--processing-workers", strconv.Itoa(cpus)),
	}
}

// besideFiles numbers the data-plane files across the whole run.
var besideFiles int

// besideUploadPhase sends besideUploads files through the data plane, one
// after the other, and returns the sum of their chunk-sending times and of
// the server's CPU time meanwhile, when the first PUT started and the
// last answer came, and the upload ids, still to complete. Every file's
// bytes differ (a numbered chunk, repeated), so none is a duplicate of
// another still stored.
func besideUploadPhase(ctx context.Context, b *testing.B, c *http.Client, s *spoolServer) (sample, time.Time, time.Time, []string) {
	b.Helper()
	type file struct {
		data []byte
		sum  string
	}
	var files []file
	for range besideUploads {
		besideFiles++
		data := chunkData()
		binary.BigEndian.PutUint64(data[64:], uint64(besideFiles))
		files = append(files, file{data, fileSums(data, besideFileSize)[besideFileSize]})
	}
	syscall.Sync() // the previous phase's dirty pages are not this one's work
	var smp sample
	var from time.Time
	var ids []string
	for _, f := range files {
		data := f.data
		id, puts, err := s.initUpload(ctx, c, besideFileSize, f.sum)
		if err != nil {
			s.fail(b, "%v", err)
		}
		cpu := s.cpuTime(b)
		if from.IsZero() {
			from = time.Now()
		}
		elapsed, err := sendChunks(ctx, c, puts, besidePUTs, data)
		if err != nil {
			s.fail(b, "%v", err)
		}
		smp.wall += elapsed
		smp.cpu += s.cpuTime(b) - cpu
		ids = append(ids, id)
	}
	return smp, from, time.Now(), ids
}

// finishBesideUploads completes the phase's uploads, waits until their
// processing has checked them, deletes the images the feeder made, then
// the uploads' media, and waits until no file is left.
func finishBesideUploads(ctx context.Context, b *testing.B, c *http.Client, s *spoolServer, uploadIDs, imageIDs []string) {
	b.Helper()
	var mediaIDs []string
	for _, id := range uploadIDs {
		mediaID, err := s.complete(ctx, c, id)
		if err != nil {
			s.fail(b, "%v", err)
		}
		mediaIDs = append(mediaIDs, mediaID)
	}
	for _, id := range mediaIDs {
		if err := s.awaitProcessed(ctx, c, id); err != nil {
			s.fail(b, "%v", err)
		}
	}
	all := append(imageIDs, mediaIDs...)
	for _, id := range all[:len(all)-1] {
		var out struct {
			DeleteMedia string `json:"deleteMedia"`
		}
		if err := s.graphQL(ctx, c, `mutation($id: ID!) { deleteMedia(id: $id) }`, map[string]any{"id": id}, &out); err != nil {
			s.fail(b, "deleteMedia: %v", err)
		}
	}
	// The last one waits until no file is stored.
	if err := s.deleteMedia(ctx, c, all[len(all)-1]); err != nil {
		s.fail(b, "%v", err)
	}
}

// besidePhoto is the feeder's JPEG: the thumbnail comparison's 12 MP
// photo, made once.
func besidePhoto(b *testing.B, dir string) []byte {
	b.Helper()
	path := filepath.Join(dir, "photo.jpg")
	if _, err := os.Stat(path); err != nil {
		writeBenchPhoto(b, path)
	}
	photo, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	return photo
}

// feeder keeps processing busy: it keeps inFlight JPEG uploads completed
// and not yet processed, each with different bytes (a numbered comment
// segment) so spool's deduplication cannot skip their processing, and
// notes when each became READY.
type feeder struct {
	s        *spoolServer
	c        *http.Client
	photo    []byte
	inFlight int

	mu      sync.Mutex
	readyAt []time.Time
	ids     []string // every image's media id
	cond    chan struct{}

	quit chan struct{}
	done chan struct{}
	err  error // set when done is closed
}

// feederImages numbers the feeder's images across the whole run.
var feederImages int

func startFeeder(ctx context.Context, c *http.Client, s *spoolServer, photo []byte, inFlight int) *feeder {
	f := &feeder{s: s, c: c, photo: photo, inFlight: inFlight, cond: make(chan struct{}, 1),
		quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		f.err = f.run(ctx)
	}()
	return f
}

func (f *feeder) run(ctx context.Context) error {
	var pending []string
	stopping := false
	for {
		if !stopping {
			select {
			case <-f.quit:
				stopping = true
			default:
			}
		}
		if stopping && len(pending) == 0 {
			return nil
		}
		for !stopping && len(pending) < f.inFlight {
			id, err := f.uploadImage(ctx)
			if err != nil {
				return err
			}
			pending = append(pending, id)
		}
		var out struct {
			Nodes []struct {
				ID              string  `json:"id"`
				Status          string  `json:"status"`
				ProcessingError *string `json:"processingError"`
			} `json:"nodes"`
		}
		if err := f.s.graphQL(ctx, f.c, `query($ids: [ID!]!) { nodes(ids: $ids) { ... on MediaFile { id status processingError } } }`,
			map[string]any{"ids": pending}, &out); err != nil {
			return fmt.Errorf("reading the images' status: %w", err)
		}
		now := time.Now()
		pending = pending[:0]
		for _, n := range out.Nodes {
			switch n.Status {
			case "PROCESSING":
				pending = append(pending, n.ID)
			case "READY":
				f.mu.Lock()
				f.readyAt = append(f.readyAt, now)
				f.mu.Unlock()
				select {
				case f.cond <- struct{}{}:
				default:
				}
			default:
				return fmt.Errorf("image %s is %s (%v), want READY", n.ID, n.Status, n.ProcessingError)
			}
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// uploadImage uploads and completes one new variant of the photo and
// returns its media id.
func (f *feeder) uploadImage(ctx context.Context) (string, error) {
	feederImages++
	comment := fmt.Appendf(nil, "spool bench image %09d", feederImages)
	img := make([]byte, 0, len(f.photo)+4+len(comment))
	img = append(img, f.photo[:2]...) // SOI
	img = append(img, 0xFF, 0xFE)     // COM
	img = binary.BigEndian.AppendUint16(img, uint16(2+len(comment)))
	img = append(append(img, comment...), f.photo[2:]...)
	digest := sha256.Sum256(img)
	id, puts, err := f.s.initUploadOf(ctx, f.c, fmt.Sprintf("photo-%d.jpg", feederImages), "image/jpeg",
		int64(len(img)), hex.EncodeToString(digest[:]))
	if err != nil {
		return "", err
	}
	for _, p := range puts {
		if err := sendChunk(ctx, f.c, p, img[p.offset:p.offset+p.size]); err != nil {
			return "", err
		}
	}
	mediaID, err := f.s.complete(ctx, f.c, id)
	if err != nil {
		return "", err
	}
	f.mu.Lock()
	f.ids = append(f.ids, mediaID)
	f.mu.Unlock()
	return mediaID, nil
}

// awaitReady waits until n images are READY.
func (f *feeder) awaitReady(ctx context.Context, n int) error {
	for {
		f.mu.Lock()
		got := len(f.readyAt)
		f.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-f.cond:
		case <-f.done:
			if f.err == nil {
				f.err = errors.New("the feeder stopped")
			}
			return f.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// readyBetween counts the images seen READY from from to to.
func (f *feeder) readyBetween(from, to time.Time) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, t := range f.readyAt {
		if !t.Before(from) && !t.After(to) {
			n++
		}
	}
	return n
}

// stop makes no more images, waits until those in flight are processed,
// and returns every image's media id.
func (f *feeder) stop() ([]string, error) {
	close(f.quit)
	<-f.done
	return f.ids, f.err
}

// loadAverage is /proc/loadavg's 1, 5 and 15 minute load averages.
func loadAverage(b *testing.B) string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		b.Fatal(err)
	}
	return strings.Join(strings.Fields(string(raw))[:3], " ")
}
