package upload_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/spoolhq/spool/ent/mediafile"
	"github.com/spoolhq/spool/internal/media"
	"github.com/spoolhq/spool/internal/upload"
)

func TestMediaProcessing(t *testing.T) {
	t.Parallel()
	small := pngBytes(200 * KiB)
	tests := []struct {
		name       string
		data       []byte
		mime       string
		sha256     *string
		wantStatus mediafile.Status
	}{
		{"chunked, no declared hash", file11, "video/mp4", nil, mediafile.StatusREADY},
		{"chunked, right hash", file11, "video/mp4", ptr(sha256Hex(file11)), mediafile.StatusREADY},
		{"chunked, wrong hash", file11, "video/mp4", ptr(strings.Repeat("ab", 32)), mediafile.StatusFAILED},
		{"single, right hash", small, "image/png", ptr(sha256Hex(small)), mediafile.StatusREADY},
		{"single, wrong hash", small, "image/png", ptr(sha256Hex(file11)), mediafile.StatusFAILED},
	}
	e := newTestService(t, testConfig())
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A user each: an earlier READY copy would complete the upload at once (dedup).
			owner := e.user(t, tt.name)
			sess := e.initOne(t, owner, upload.FileSpec{
				FileName: "f", Size: int64(len(tt.data)), MimeType: tt.mime, SHA256: tt.sha256, DurationSeconds: ptr(12),
			})
			e.sendAll(t, sess, tt.data)
			m, err := e.svc.Complete(ctx, owner, sess.ID)
			if err != nil {
				t.Fatalf("Complete: %v", err)
			}
			if m.Status != mediafile.StatusPROCESSING && m.Status != mediafile.StatusREADY && m.Status != mediafile.StatusFAILED {
				t.Errorf("status returned by Complete = %s, want PROCESSING (or already done)", m.Status)
			}
			// Until processing reads the file, its hash is the declared one.
			if want := tt.sha256; m.Status == mediafile.StatusPROCESSING &&
				((m.ContentHash == nil) != (want == nil) || want != nil && *m.ContentHash != *want) {
				t.Errorf("content hash of the PROCESSING file = %v, want the declared %v", m.ContentHash, want)
			}
			if m.FileSize != int64(len(tt.data)) || m.MimeType != tt.mime || m.DurationSeconds == nil || *m.DurationSeconds != 12 {
				t.Errorf("media = %d bytes of %s (duration %v), want %d of %s (12 s)", m.FileSize, m.MimeType, m.DurationSeconds, len(tt.data), tt.mime)
			}
			if !strings.HasPrefix(m.ID, "med_") || m.UploadID == nil || *m.UploadID != sess.ID {
				t.Errorf("media id %q for upload %v, want med_… for %s", m.ID, m.UploadID, sess.ID)
			}

			got := e.waitMedia(t, owner, m.ID)
			if got.Status != tt.wantStatus {
				t.Fatalf("status = %s (error %v), want %s", got.Status, got.ProcessingError, tt.wantStatus)
			}
			if got.ContentHash == nil || *got.ContentHash != sha256Hex(tt.data) {
				t.Errorf("content hash = %v, want %s", got.ContentHash, sha256Hex(tt.data))
			}
			if got.ProcessedAt == nil {
				t.Errorf("processed at = nil, want set")
			}
			switch tt.wantStatus {
			case mediafile.StatusFAILED:
				if got.ProcessingError == nil || !strings.Contains(*got.ProcessingError, *tt.sha256) {
					t.Errorf("processing error = %v, want it to name the declared hash", got.ProcessingError)
				}
			case mediafile.StatusREADY:
				if got.ProcessingError != nil {
					t.Errorf("processing error = %q, want none", *got.ProcessingError)
				}
			}
			if b := readMedia(t, e, m.ID); !bytes.Equal(b, tt.data) {
				t.Errorf("stored file differs from what was sent (%d bytes, want %d)", len(b), len(tt.data))
			}
			if u, err := e.svc.MediaURL(context.Background(), got); err != nil || !strings.HasPrefix(u, "http://spool.test/") {
				t.Errorf("MediaURL = %q, %v; want a URL under http://spool.test/", u, err)
			}
		})
	}
}

func TestDeleteMediaRemovesBytes(t *testing.T) {
	t.Parallel()
	e := newTestService(t, testConfig())
	owner := e.user(t, "alice")
	ctx := context.Background()
	sess, m := e.uploadProcessed(t, owner, "a.mp4")
	if err := e.svc.DeleteMedia(ctx, owner, m.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.svc.OpenMedia(ctx, m.ID); upload.ErrorCode(err) != upload.CodeNotFound {
		t.Errorf("OpenMedia after delete = %v, want NOT_FOUND", err)
	}
	if got, err := e.svc.UploadMedia(ctx, owner, sess.ID); got != nil || err != nil {
		t.Errorf("UploadMedia after delete = %v, %v; want nil, nil", got, err)
	}
	// The upload stays COMPLETED, but its media is gone.
	_, err := e.svc.Complete(ctx, owner, sess.ID)
	wantCode(t, err, upload.CodeAlreadyFinished)
	n, err := e.svc.MediaQuery(owner).Count(ctx)
	if err != nil || n != 0 {
		t.Errorf("visible media = %d, %v; want 0", n, err)
	}
}

// heldProcessor derives nothing until released: processing stays at its
// derive step, the media file PROCESSING.
type heldProcessor struct {
	started chan struct{}
	release chan struct{}
}

func (p *heldProcessor) Process(ctx context.Context, _, _, _ string) (*media.Result, error) {
	p.started <- struct{}{}
	select {
	case <-p.release:
	case <-ctx.Done():
	}
	return nil, errors.New("held processing released")
}

// A media file keeps its upload's declared SHA-256 while PROCESSING; one
// that fails before processing read it (its attempts used up) keeps no
// hash, since nothing checked the declared one.
func TestFailedProcessingForgetsTheDeclaredHash(t *testing.T) {
	t.Parallel()
	held := &heldProcessor{started: make(chan struct{}, 1), release: make(chan struct{})}
	e := newTestServiceWith(t, held)
	ctx := context.Background()
	owner := e.user(t, "alice")
	data := pngBytes(10 * KiB)
	sum := sha256Hex(data)
	sess := e.initOne(t, owner, upload.FileSpec{FileName: "p.png", Size: int64(len(data)), MimeType: "image/png", SHA256: &sum})
	e.sendAll(t, sess, data)
	m, err := e.svc.Complete(ctx, owner, sess.ID)
	if err != nil {
		t.Fatal(err)
	}
	<-held.started
	defer close(held.release)
	if got, err := e.svc.Media(ctx, owner, m.ID); err != nil || got.Status != mediafile.StatusPROCESSING ||
		got.ContentHash == nil || *got.ContentHash != sum {
		t.Fatalf("while processing: %v, %v; want PROCESSING with the declared hash %s", got, err, sum)
	}
	if err := e.svc.FailProcessing(ctx, m.ID, "gave up"); err != nil {
		t.Fatal(err)
	}
	if got, err := e.svc.Media(ctx, owner, m.ID); err != nil || got.Status != mediafile.StatusFAILED || got.ContentHash != nil {
		t.Errorf("after FailProcessing: %v, %v; want FAILED with no hash", got, err)
	}
}

// preparedProcessor records the types it is told to prepare for.
type preparedProcessor struct {
	heldProcessor
	mu       sync.Mutex
	prepared []string
}

func (p *preparedProcessor) Prepare(mimeType string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.prepared = append(p.prepared, mimeType)
}

// InitBatch tells a processor that would know the type of each new
// upload, before its bytes arrive (media.Processor makes its WebP
// encoder then), and a batch refused tells it nothing.
func TestInitBatchPreparesTheProcessor(t *testing.T) {
	t.Parallel()
	p := &preparedProcessor{}
	e := newTestServiceWith(t, p)
	ctx := context.Background()
	owner := e.user(t, "alice")
	if _, err := e.svc.InitBatch(ctx, owner, upload.BatchSpec{Files: []upload.FileSpec{
		{FileName: "a.png", Size: 10, MimeType: "image/png"},
		{FileName: "b.mp4", Size: 10, MimeType: "video/mp4"},
	}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.InitBatch(ctx, owner, upload.BatchSpec{Files: []upload.FileSpec{
		{FileName: "c.png", Size: 10, MimeType: "image/png"},
		{FileName: "d.exe", Size: 10, MimeType: "application/x-msdownload"},
	}}); upload.ErrorCode(err) != upload.CodeInvalidType {
		t.Fatalf("a batch with an executable: %v, want INVALID_TYPE", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	slices.Sort(p.prepared)
	if want := []string{"image/png", "video/mp4"}; !slices.Equal(p.prepared, want) {
		t.Errorf("prepared for %q, want %q", p.prepared, want)
	}
}
