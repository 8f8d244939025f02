package upload_test

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spoolhq/spool/ent"
	"github.com/spoolhq/spool/ent/mediafile"
	"github.com/spoolhq/spool/internal/eventually"
	"github.com/spoolhq/spool/internal/media"
	"github.com/spoolhq/spool/internal/required"
	"github.com/spoolhq/spool/internal/upload"
)

// newProcessingEnv is a test service whose processing derives with a
// real internal/media Processor (opts as given).
func newProcessingEnv(t *testing.T, opts media.Options) *testEnv {
	t.Helper()
	p, err := media.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return newTestServiceWith(t, p)
}

// requireFFmpeg skips a test where ffmpeg is not installed, saying so,
// and fails it when CI is set (.ci/run installs ffmpeg).
func requireFFmpeg(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("ffmpeg"); err == nil {
		return
	}
	required.Missing(t, "ffmpeg is not installed (install Debian's ffmpeg; .ci/run does)")
}

// uploadFile uploads data as mimeType, completes it and waits until its
// processing ends.
func (e *testEnv) uploadFile(t *testing.T, userID, name, mimeType string, data []byte) (*upload.Session, *ent.MediaFile) {
	t.Helper()
	sess := e.initOne(t, userID, upload.FileSpec{FileName: name, Size: int64(len(data)), MimeType: mimeType})
	e.sendAll(t, sess, data)
	m, err := e.svc.Complete(context.Background(), userID, sess.ID)
	if err != nil {
		t.Fatalf("Complete(%s): %v", name, err)
	}
	return sess, e.waitMedia(t, userID, m.ID)
}

// testJPEG is a w×h JPEG of gradients.
func testJPEG(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{uint8(x * 255 / w), uint8(y * 255 / h), uint8((x + y) % 256), 255})
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 85}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestProcessingStoresThumbnails: a completed JPEG becomes READY with its
// dimensions, a ThumbHash and two WebP thumbnails stored under the media's
// own keys, which the service serves.
func TestProcessingStoresThumbnails(t *testing.T) {
	t.Parallel()
	e := newProcessingEnv(t, media.Options{})
	owner := e.user(t, "alice")
	_, m := e.uploadFile(t, owner, "photo.jpg", "image/jpeg", testJPEG(t, 1400, 1050))
	if m.Status != mediafile.StatusREADY || m.ProcessingError != nil {
		t.Fatalf("media is %s (%v), want READY without error", m.Status, m.ProcessingError)
	}
	if m.Width == nil || m.Height == nil || *m.Width != 1400 || *m.Height != 1050 {
		t.Errorf("size %v×%v, want 1400×1050", m.Width, m.Height)
	}
	if m.Placeholder == nil || *m.Placeholder == "" {
		t.Error("no placeholder")
	}
	if len(m.Thumbnails) != 2 || m.Thumbnails[0].Width != 320 || m.Thumbnails[1].Width != 1280 {
		t.Fatalf("thumbnails %+v, want 320 and 1280 wide", m.Thumbnails)
	}
	for i, th := range m.Thumbnails {
		if want := owner + "/" + m.ID + "/"; !strings.HasPrefix(th.Key, want) || th.MimeType != "image/webp" {
			t.Errorf("thumbnail %d is %s at %s, want image/webp under %s", i, th.MimeType, th.Key, want)
		}
		got, obj, err := e.svc.OpenThumbnail(context.Background(), m.ID, i)
		if err != nil {
			t.Fatalf("OpenThumbnail(%d): %v", i, err)
		}
		b, _ := io.ReadAll(obj)
		obj.Close()
		if got.Key != th.Key || !bytes.HasPrefix(b, []byte("RIFF")) || !bytes.Contains(b[:16], []byte("WEBP")) {
			t.Errorf("thumbnail %d: %d bytes starting %q, want a WebP", i, len(b), b[:min(len(b), 16)])
		}
	}
	if _, _, err := e.svc.OpenThumbnail(context.Background(), m.ID, 2); upload.ErrorCode(err) != upload.CodeNotFound {
		t.Errorf("OpenThumbnail(2) = %v, want NOT_FOUND", err)
	}
	links, err := e.svc.Thumbnails(context.Background(), m)
	if err != nil || len(links) != 2 || !strings.Contains(links[0].URL, "/media/"+m.ID+"/thumbnails/0?") {
		t.Errorf("Thumbnails = %+v, %v; want spool's signed thumbnail URLs", links, err)
	}
}

// TestProcessingBadFileFailsAtOnce: bytes that are not the image their
// type says end FAILED with words a user can read, on the first attempt.
func TestProcessingBadFileFailsAtOnce(t *testing.T) {
	t.Parallel()
	e := newProcessingEnv(t, media.Options{})
	owner := e.user(t, "alice")
	garbage := pngBytes(300 * KiB) // a PNG signature, then noise
	_, m := e.uploadFile(t, owner, "broken.png", "image/png", garbage)
	if m.Status != mediafile.StatusFAILED || m.ProcessingError == nil || !strings.Contains(*m.ProcessingError, "PNG") {
		t.Fatalf("media is %s (%v), want FAILED saying the PNG is bad", m.Status, m.ProcessingError)
	}
	if len(m.Thumbnails) != 0 {
		t.Errorf("a bad file got thumbnails: %+v", m.Thumbnails)
	}
	waitJob(t, e, m.ID, "completed")
	if j := e.processingJobOf(t, m.ID); j.attempt != 1 {
		t.Errorf("processing ran %d times, want once: a bad file is no retry's business", j.attempt)
	}
}

// TestProcessingRemuxesToFaststart: an MP4 with its moov box at the end is
// stored again with the moov first; the media names the copy, its size is
// the copy's (and so is the quota's count), and the original is gone.
func TestProcessingRemuxesToFaststart(t *testing.T) {
	t.Parallel()
	requireFFmpeg(t)
	e := newProcessingEnv(t, media.Options{})
	owner := e.user(t, "alice")
	name := filepath.Join(t.TempDir(), "clip.mp4")
	out, err := exec.Command("ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-f", "lavfi",
		"-i", "testsrc=size=320x240:rate=25:duration=2", "-c:v", "mpeg4", "-threads", "1", name).CombinedOutput()
	if err != nil {
		t.Fatalf("making the video: %v\n%s", err, out)
	}
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Index(data, []byte("moov")) < bytes.Index(data, []byte("mdat")) {
		t.Fatal("ffmpeg wrote the moov box first; the test needs it last")
	}
	sess, m := e.uploadFile(t, owner, "clip.mp4", "video/mp4", data)
	if m.Status != mediafile.StatusREADY {
		t.Fatalf("media is %s (%v), want READY", m.Status, m.ProcessingError)
	}
	if want := owner + "/" + m.ID + "/faststart.mp4"; m.StorageKey != want {
		t.Errorf("storage key %s, want the faststart copy's %s", m.StorageKey, want)
	}
	stored := readMedia(t, e, m.ID)
	if int64(len(stored)) != m.FileSize || bytes.Index(stored, []byte("moov")) > bytes.Index(stored, []byte("mdat")) {
		t.Errorf("stored %d bytes (file size %d) with moov at %d and mdat at %d, want moov first",
			len(stored), m.FileSize, bytes.Index(stored, []byte("moov")), bytes.Index(stored, []byte("mdat")))
	}
	if got := e.reserved(t, owner); got != m.FileSize {
		t.Errorf("reserved %d bytes, want the stored copy's %d", got, m.FileSize)
	}
	// The original became a deleted row in the transaction that saved the
	// copy, so its purge job removes it even after a crash (invariant 10).
	retired, err := e.db.MediaFile.Query().Where(mediafile.StorageKey(sess.StorageKey), mediafile.DeletedAtNotNil()).Only(context.Background())
	if err != nil {
		t.Fatalf("the deleted row of the replaced original: %v", err)
	}
	eventually.Holds(t, "the original's purge", func() bool { return e.mediaRow(t, retired.ID).PurgedAt != nil })
	if exists(t, filepath.Join(e.dir, "objects", filepath.FromSlash(sess.StorageKey))) {
		t.Error("the original object is still stored beside its copy")
	}
	if got := e.reserved(t, owner); got != m.FileSize {
		t.Errorf("after the purge, reserved %d bytes, want the stored copy's %d", got, m.FileSize)
	}
	if m.Video == nil || !m.Video.Faststart || m.Video.Codec != "mpeg4" {
		t.Errorf("video facts %+v, want mpeg4 with faststart", m.Video)
	}
	if m.Duration == nil || *m.Duration < 1.9 || *m.Duration > 2.1 || len(m.Thumbnails) == 0 || m.Placeholder == nil {
		t.Errorf("duration %v, %d thumbnails, placeholder %v; want 2 s, a poster and its ThumbHash", m.Duration, len(m.Thumbnails), m.Placeholder)
	}
	if m.ContentHash == nil || *m.ContentHash != sha256Hex(data) {
		t.Errorf("content hash %v, want the uploaded bytes' %s", m.ContentHash, sha256Hex(data))
	}
}

// TestProcessingWithoutTools: with no ffmpeg or ffprobe a video still
// becomes READY, and its processingError says what was skipped.
func TestProcessingWithoutTools(t *testing.T) {
	t.Parallel()
	e := newProcessingEnv(t, media.Options{FFmpeg: "/nonexistent/ffmpeg", FFprobe: "/nonexistent/ffprobe"})
	owner := e.user(t, "alice")
	_, m := e.uploadFile(t, owner, "clip.mp4", "video/mp4", file11)
	if m.Status != mediafile.StatusREADY || m.ProcessingError == nil || !strings.Contains(*m.ProcessingError, "ffprobe") {
		t.Fatalf("media is %s (%v), want READY with a note that ffprobe is missing", m.Status, m.ProcessingError)
	}
	if len(m.Thumbnails) != 0 || m.Video != nil {
		t.Errorf("got thumbnails %+v and video %+v without the tools", m.Thumbnails, m.Video)
	}
}
