package main

import (
	"fmt"
	"math"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spoolhq/spool/internal/client"
)

func TestFormatSize(t *testing.T) {
	for _, c := range []struct {
		n    int64
		want string
	}{
		{0, "0 B"},
		{13, "13 B"},
		{1023, "1023 B"},
		{1024, "1.0 KiB"},
		{1536, "1.5 KiB"},
		{5 << 20, "5.0 MiB"},
		{3<<30 + 512<<20, "3.5 GiB"},
	} {
		if got := formatSize(c.n); got != c.want {
			t.Errorf("formatSize(%d) = %q, want %q", c.n, got, c.want)
		}
	}
}

func TestMediaRow(t *testing.T) {
	width, height, seconds := 1920, 1080, 62.4
	created := time.Date(2026, 11, 22, 5, 12, 0, 0, time.Local)
	for _, c := range []struct {
		name string
		m    client.MediaFile
		want string
	}{
		{"a processed video", client.MediaFile{ID: "med_1", MediaType: "VIDEO", FileSize: 40 << 20, Width: &width, Height: &height,
			DurationSeconds: &seconds, Status: "READY", CreatedAt: created, FileName: "big.mp4"},
			"med_1\tvideo\t40.0 MiB\t1920×1080\t1:02\tready\t2026-11-22 05:12\tbig.mp4"},
		{"nothing known yet", client.MediaFile{ID: "med_2", MediaType: "IMAGE", FileSize: 13, Status: "PROCESSING", CreatedAt: created, FileName: "p.png"},
			"med_2\timage\t13 B\t-\t-\tprocessing\t2026-11-22 05:12\tp.png"},
	} {
		if got := mediaRow(c.m); got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
}

func TestFormatLength(t *testing.T) {
	for _, c := range []struct {
		seconds float64
		want    string
	}{
		{0, "0:00"},
		{0.4, "0:00"},
		{7, "0:07"},
		{59.6, "1:00"},
		{62.4, "1:02"},
		{3599, "59:59"},
		{3605, "1:00:05"},
		{-1, "-"},
		{math.NaN(), "-"},
	} {
		if got := formatLength(&c.seconds); got != c.want {
			t.Errorf("formatLength(%v) = %q, want %q", c.seconds, got, c.want)
		}
	}
	if got := formatLength(nil); got != "-" {
		t.Errorf("formatLength(nil) = %q, want -", got)
	}
}

// A retry line says which file, when and why, once per file and reason:
// four parallel chunks refused alike print one line, not four.
func TestLineViewSaysWhatIsRetried(t *testing.T) {
	var out strings.Builder
	v := &lineView{out: &out, names: []string{"a.mp4", "b.mp4"}}
	refused := &client.NoAnswerError{Server: "http://127.0.0.1:8080", Err: syscall.ECONNREFUSED}
	busy := &client.HTTPError{Status: 503, Code: "STORAGE_UNAVAILABLE", Message: "storage is unavailable"}
	for range 4 {
		v.Retrying(0, refused, 1100*time.Millisecond)
	}
	v.Retrying(1, refused, 740*time.Millisecond)
	v.Retrying(0, busy, 2*time.Second)
	want := "a.mp4: trying again in 1.1s: no answer from http://127.0.0.1:8080: connection refused\n" +
		"b.mp4: trying again in 700ms: no answer from http://127.0.0.1:8080: connection refused\n" +
		"a.mp4: trying again in 2s: HTTP 503: storage is unavailable (STORAGE_UNAVAILABLE)\n"
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
}

// Beside a bar, a retry's reason is a few words.
func TestBriefly(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{&client.NoAnswerError{Server: "http://x:8080", Err: syscall.ECONNREFUSED}, "connection refused"},
		{&client.HTTPError{Status: 503, Code: "STORAGE_UNAVAILABLE", Message: "storage is unavailable"}, "STORAGE_UNAVAILABLE"},
		{&client.HTTPError{Status: 502, Message: "<html>bad gateway"}, "HTTP 502"},
		{&client.GraphQLError{Code: "RATE_LIMITED", Message: "slow down"}, "RATE_LIMITED"},
		{fmt.Errorf("chunk 2: %w", &client.GraphQLError{Code: "UNAVAILABLE", Message: "database"}), "UNAVAILABLE"},
	} {
		if got := briefly(c.err); got != c.want {
			t.Errorf("briefly(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}
