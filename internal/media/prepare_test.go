package media

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// Prepare starts making the WebP encoder in the background for an image
// on its way, once however many images come, and not for other types.
func TestPrepareMakesTheEncoderOnceForImages(t *testing.T) {
	p, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	made := make(chan struct{}, 4)
	release := make(chan struct{})
	p.makeEncoder = func() {
		made <- struct{}{}
		<-release // a slow compile: Prepare must not wait for it
	}
	defer close(release)
	for _, mime := range []string{"video/mp4", "audio/mpeg", "application/pdf"} {
		p.Prepare(mime)
	}
	select {
	case <-made:
		t.Fatal("the encoder was made for a file that is not an image")
	case <-time.After(100 * time.Millisecond):
	}
	for _, mime := range []string{"image/png", "image/jpeg", "IMAGE/WEBP; q=1"} {
		p.Prepare(mime) // returns at once, or the test hangs here
	}
	select {
	case <-made:
	case <-time.After(30 * time.Second): // hang guard
		t.Fatal("the encoder was not made for an image on its way")
	}
	select {
	case <-made:
		t.Fatal("the encoder was made twice")
	case <-time.After(100 * time.Millisecond):
	}
}

// A failure to make the encoder, which libwebp's compile reports by
// panicking, is logged, not a crash of the server.
func TestPrepareLogsAFailedEncoder(t *testing.T) {
	var log bytes.Buffer
	logged := make(chan struct{})
	p, err := New(Options{Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: &log, wrote: logged}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	p.makeEncoder = func() { panic("no memory for compiled code") }
	p.Prepare("image/png")
	select {
	case <-logged:
	case <-time.After(30 * time.Second): // hang guard
		t.Fatal("nothing logged")
	}
	if got := log.String(); !strings.Contains(got, "WebP encoder failed") || !strings.Contains(got, "no memory for compiled code") {
		t.Errorf("logged %q, want the failure and its reason", got)
	}
}

// lockedWriter is the log's writer, which tells of its first line.
type lockedWriter struct {
	mu    sync.Mutex
	w     *bytes.Buffer
	wrote chan struct{}
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, err := l.w.Write(b)
	if l.wrote != nil {
		close(l.wrote)
		l.wrote = nil
	}
	return n, err
}
