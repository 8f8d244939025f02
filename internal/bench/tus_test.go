//go:build linux

package bench

import (
	"context"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"
)

var tusRounds = flag.Int("tus-rounds", 5, "rounds of every tus configuration (go test … -bench Tus -args -tus-rounds N)")

// tusConfig is one way a tus client sends a file.
type tusConfig struct {
	name  string
	size  int64
	patch int64 // bytes per PATCH
	parts int   // >1: that many partial uploads at once, then a final one
}

func (c tusConfig) String() string { return c.name }

// BenchmarkTus sends the same bytes, in the same PATCHes, to spool's tus
// endpoint (/files/, a long-lived `spool serve` on its embedded engines)
// and to tusd's own server with its file store (the tusd peer), in
// alternating order, round after round: one upload in 8 MiB PATCHes (the
// chunk size), one in 3 MiB PATCHes (so most PATCHes end inside a chunk
// of spool's), and four partial uploads at once joined by a final one
// (concatenation, as tus-js-client's parallelUploads does). It reports
// MiB/s, spool ÷ tusd (the median of the rounds' ratios) and each
// server's CPU per GiB, measured over the PATCHes and the final POST.
// It asserts nothing about speed: the numbers are for
// docs/BENCHMARKS.md.
func BenchmarkTus(b *testing.B) {
	if testing.Short() {
		b.Skip("uploads GiBs through two servers; skipped under -short (run `make bench-tus`)")
	}
	dir := b.TempDir()
	if free := freeBytes(b, dir); free < 2*gib {
		b.Skipf("needs 2 GiB free under %s; %d MiB free", dir, free/mib)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	binDir := mkdir(b, dir, "bin")
	spoolBin, _ := buildBinaries(b, binDir)
	tusdBin := buildTusdPeer(b, binDir)
	data := chunkData()
	c := newClient()

	spool := startSpool(ctx, b, spoolBin, mkdir(b, dir, "spool"))
	tusd := startTusd(b, tusdBin, mkdir(b, dir, "tusd"))
	spoolT := &tusTarget{name: "spool", url: spool.url + "/files/", proc: spool.process, spool: spool,
		headers: map[string]string{"Authorization": "Bearer " + spool.token}}
	tusdT := &tusTarget{name: "tusd", url: tusd.url, proc: tusd.process}

	configs := []tusConfig{
		{"512 MiB, 8 MiB PATCHes", smallSize, chunkSize, 1},
		{"512 MiB, 3 MiB PATCHes", smallSize, 3 * mib, 1},
		{"512 MiB, 4 parts at once", smallSize, chunkSize, 4},
	}
	// One untimed upload to each first, so no timed run pays for first
	// use (connections, heaps, page-cache memory).
	for _, t := range []*tusTarget{spoolT, tusdT} {
		t.upload(ctx, b, c, configs[0], data)
	}
	b.ResetTimer()
	fmt.Printf("\ntus: %d rounds of %d configurations, load average %s\n", *tusRounds, len(configs), loadAverage(b))
	results := map[string]map[string][]run{}
	for _, cfg := range configs {
		results[cfg.name] = map[string][]run{}
	}
	for r := range *tusRounds {
		for i, cfg := range configs {
			order := []*tusTarget{spoolT, tusdT}
			if (r+i)%2 == 1 {
				order[0], order[1] = order[1], order[0]
			}
			for _, t := range order {
				syscall.Sync()
				got := t.upload(ctx, b, c, cfg, data)
				results[cfg.name][t.name] = append(results[cfg.name][t.name], got)
				fmt.Printf("  round %d  %-26s %-6s %6.0f MiB/s  CPU s/GiB: server %.2f, client %.2f\n", r+1, cfg, t.name,
					got.mibPerSec(cfg.size), cpuPerGiB(got.cpu, cfg.size), cpuPerGiB(got.client, cfg.size))
			}
		}
	}
	b.StopTimer()

	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "configuration\ttarget\tMiB/s (median)\tspool ÷ tusd\tserver CPU s/GiB\tspool CPU ÷ tusd's\t")
	for _, cfg := range configs {
		s, t := results[cfg.name]["spool"], results[cfg.name]["tusd"]
		var speed, cpu []float64
		for i := range s {
			speed = append(speed, s[i].mibPerSec(cfg.size)/t[i].mibPerSec(cfg.size))
			cpu = append(cpu, s[i].cpu.Seconds()/t[i].cpu.Seconds())
		}
		for _, name := range []string{"tusd", "spool"} {
			var rates, cpus []float64
			for _, got := range results[cfg.name][name] {
				rates = append(rates, got.mibPerSec(cfg.size))
				cpus = append(cpus, cpuPerGiB(got.cpu, cfg.size))
			}
			ratio, cpuRatio := "", ""
			if name == "spool" {
				ratio, cpuRatio = fmt.Sprintf("%.2f", median(speed)), fmt.Sprintf("%.2f", median(cpu))
			}
			fmt.Fprintf(tw, "%s\t%s\t%.0f\t%s\t%.2f\t%s\t\n", cfg, name, median(rates), ratio, median(cpus), cpuRatio)
		}
	}
	tw.Flush()
}

// tusTarget is a tus server under test.
type tusTarget struct {
	name    string
	url     string // the creation URL, ending in /files/
	proc    *process
	headers map[string]string // sent with every request (spool's token)
	spool   *spoolServer      // set for spool: the upload becomes media, deleted after
}

// upload sends one file as cfg says and returns the measurement over its
// PATCHes (and the final POST of a concatenation); it then removes what
// the upload left.
func (t *tusTarget) upload(ctx context.Context, b *testing.B, c *http.Client, cfg tusConfig, data []byte) run {
	b.Helper()
	share := cfg.size / int64(cfg.parts)
	var uploads []string
	var streams [][]chunkPUT
	for i := range cfg.parts {
		size := share
		if i == cfg.parts-1 {
			size = cfg.size - share*int64(cfg.parts-1)
		}
		h := map[string]string{"Upload-Metadata": tusMetadata("bench.mp4", "video/mp4")}
		if cfg.parts > 1 {
			h = map[string]string{"Upload-Concat": "partial"}
		}
		u, err := t.create(ctx, c, size, h)
		if err != nil {
			t.proc.fail(b, "%v", err)
		}
		uploads = append(uploads, u)
		stream := tusChunks(u, size, cfg.patch)
		for i := range stream {
			for k, v := range t.headers {
				stream[i].headers[k] = v
			}
		}
		streams = append(streams, stream)
	}
	cpu, client := t.proc.cpuTime(b), clientCPUTime(b)
	began := time.Now()
	_, err := sendStreams(ctx, c, streams, data)
	if err != nil {
		t.proc.fail(b, "%v", err)
	}
	final := uploads[0]
	if cfg.parts > 1 {
		var paths []string
		for _, u := range uploads {
			paths = append(paths, u[strings.Index(u, "/files/"):])
		}
		final, err = t.create(ctx, c, 0, map[string]string{
			"Upload-Concat":   "final;" + strings.Join(paths, " "),
			"Upload-Metadata": tusMetadata("bench.mp4", "video/mp4"),
		})
		if err != nil {
			t.proc.fail(b, "%v", err)
		}
	}
	got := run{elapsed: time.Since(began), cpu: t.proc.cpuTime(b) - cpu, client: clientCPUTime(b) - client}
	if t.spool == nil {
		toDelete := uploads
		if cfg.parts > 1 {
			toDelete = append(toDelete, final)
		}
		for _, u := range toDelete {
			if err := tusDeleteWith(ctx, c, u, t.headers); err != nil {
				t.proc.fail(b, "%v", err)
			}
		}
		return got
	}
	mediaID, err := t.mediaOf(ctx, c, final)
	if err != nil {
		t.proc.fail(b, "%v", err)
	}
	if err := t.spool.awaitProcessed(ctx, c, mediaID); err != nil {
		t.proc.fail(b, "%v", err)
	}
	if err := t.spool.deleteMedia(ctx, c, mediaID); err != nil {
		t.proc.fail(b, "%v", err)
	}
	return got
}

// create POSTs a tus creation request and returns the upload's URL; size
// 0 leaves Upload-Length out (a final upload of a concatenation).
func (t *tusTarget) create(ctx context.Context, c *http.Client, size int64, headers map[string]string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Tus-Resumable", "1.0.0")
	if size > 0 {
		req.Header.Set("Upload-Length", strconv.FormatInt(size, 10))
	}
	for k, v := range t.headers {
		req.Header.Set(k, v)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("%s: tus create: %s: %s", t.name, resp.Status, answer)
	}
	loc, err := resp.Location()
	if err != nil {
		return "", fmt.Errorf("%s: tus create: %w", t.name, err)
	}
	return loc.String(), nil
}

// mediaOf HEADs a finished spool tus upload for its media id.
func (t *tusTarget) mediaOf(ctx context.Context, c *http.Client, upload string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, upload, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Tus-Resumable", "1.0.0")
	for k, v := range t.headers {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	id := resp.Header.Get("Spool-Media-Id")
	if resp.StatusCode != http.StatusOK || id == "" {
		return "", fmt.Errorf("HEAD %s: %s, Spool-Media-Id %q", upload, resp.Status, id)
	}
	return id, nil
}

// tusMetadata is an Upload-Metadata header naming a file and its type.
func tusMetadata(name, mimeType string) string {
	enc := base64.StdEncoding.EncodeToString
	return "filename " + enc([]byte(name)) + ",filetype " + enc([]byte(mimeType))
}

// tusDeleteWith terminates a tus upload, sending headers too.
func tusDeleteWith(ctx context.Context, c *http.Client, upload string, headers map[string]string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, upload, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Tus-Resumable", "1.0.0")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("tus delete %s: %s", upload, resp.Status)
	}
	return nil
}
