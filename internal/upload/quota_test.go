package upload_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/spoolhq/spool/internal/upload"
)

// TestQuotaOfABatch: a batch reserves its new uploads' bytes in one step,
// all or nothing. Three files that each fit the quota but not together
// are refused, with their total in the message, and leave nothing
// reserved or created; two of them fit.
func TestQuotaOfABatch(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.DefaultQuota = 30 * MiB
	e := newTestService(t, cfg)
	owner := e.user(t, "alice")
	ctx := context.Background()
	specs := []upload.FileSpec{mp4Spec("a.mp4", file11), mp4Spec("b.mp4", file11), mp4Spec("c.mp4", file11)}

	_, err := e.svc.InitBatch(ctx, owner, upload.BatchSpec{Files: specs})
	wantCode(t, err, upload.CodeQuotaExceeded)
	if want := "these 3 uploads need 34603008 bytes but only 31457280 of your 31457280-byte quota are free"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error = %v, want it to say %q", err, want)
	}
	if got := e.reserved(t, owner); got != 0 {
		t.Errorf("reserved after a refused batch = %d, want 0", got)
	}
	if n := e.db.UploadSession.Query().CountX(ctx); n != 0 {
		t.Errorf("a refused batch left %d uploads", n)
	}

	b, err := e.svc.InitBatch(ctx, owner, upload.BatchSpec{Files: specs[:2]})
	if err != nil {
		t.Fatalf("InitBatch of two: %v", err)
	}
	if got, want := e.reserved(t, owner), 22*MiB; got != want {
		t.Errorf("reserved after a batch of two = %d, want %d", got, want)
	}
	for i, u := range b.Uploads {
		if u.FileName != specs[i].FileName || u.TotalSize != specs[i].Size {
			t.Errorf("upload %d is %s of %d bytes, want %s of %d", i, u.FileName, u.TotalSize, specs[i].FileName, specs[i].Size)
		}
	}
}

func TestQuotaReservations(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.DefaultQuota = 30 * MiB
	e := newTestService(t, cfg)
	owner := e.user(t, "alice")
	ctx := context.Background()

	a := e.initOne(t, owner, mp4Spec("a.mp4", file11))
	if got, want := e.reserved(t, owner), 11*MiB; got != want {
		t.Fatalf("reserved after one init = %d, want %d", got, want)
	}
	b := e.initOne(t, owner, mp4Spec("b.mp4", file11))
	if got, want := e.reserved(t, owner), 22*MiB; got != want {
		t.Fatalf("reserved after two inits = %d, want %d", got, want)
	}

	// A third 11 MiB file would need 33 MiB of a 30 MiB quota.
	_, err := e.svc.InitBatch(ctx, owner, upload.BatchSpec{Files: []upload.FileSpec{mp4Spec("c.mp4", file11)}})
	wantCode(t, err, upload.CodeQuotaExceeded)
	if got, want := e.reserved(t, owner), 22*MiB; got != want {
		t.Fatalf("reserved after a refused init = %d, want %d", got, want)
	}

	// Cancelling gives the bytes back.
	if _, err := e.svc.Cancel(ctx, owner, b.ID); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	if got, want := e.reserved(t, owner), 11*MiB; got != want {
		t.Fatalf("reserved after cancel = %d, want %d", got, want)
	}
	// A cancel that is refused gives nothing back twice.
	_, err = e.svc.Cancel(ctx, owner, b.ID)
	wantCode(t, err, upload.CodeAlreadyFinished)
	if got, want := e.reserved(t, owner), 11*MiB; got != want {
		t.Fatalf("reserved after a second cancel = %d, want %d", got, want)
	}

	// A completed upload keeps its bytes until its media is deleted.
	e.sendAll(t, a, file11)
	m, err := e.svc.Complete(ctx, owner, a.ID)
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	if got, want := e.reserved(t, owner), 11*MiB; got != want {
		t.Fatalf("reserved after complete = %d, want %d", got, want)
	}
	if err := e.svc.DeleteMedia(ctx, owner, m.ID); err != nil {
		t.Fatalf("DeleteMedia: %v", err)
	}
	if got := e.reserved(t, owner); got != 0 {
		t.Fatalf("reserved after delete = %d, want 0", got)
	}
	wantCode(t, e.svc.DeleteMedia(ctx, owner, m.ID), upload.CodeNotFound)
	if got := e.reserved(t, owner); got != 0 {
		t.Fatalf("reserved after deleting twice = %d, want 0", got)
	}
	_, err = e.svc.Media(ctx, owner, m.ID)
	wantCode(t, err, upload.CodeNotFound)

	// Now the whole quota is free again: exactly 30 MiB fits.
	exact := upload.FileSpec{FileName: "big.mp4", Size: 30 * MiB, MimeType: "video/mp4"}
	e.initOne(t, owner, exact)
	if got, want := e.reserved(t, owner), 30*MiB; got != want {
		t.Fatalf("reserved at the quota = %d, want %d", got, want)
	}
	one := upload.FileSpec{FileName: "one.mp4", Size: 1, MimeType: "video/mp4"}
	_, err = e.svc.InitBatch(ctx, owner, upload.BatchSpec{Files: []upload.FileSpec{one}})
	wantCode(t, err, upload.CodeQuotaExceeded)
}

// TestQuotaConcurrentInits: concurrent inits can never together exceed
// the quota (invariant 6).
func TestQuotaConcurrentInits(t *testing.T) {
	t.Parallel()
	e := newTestService(t, testConfig())
	owner := e.user(t, "alice")
	const (
		callers = 20
		fits    = 7
		size    = 2 * MiB
	)
	quota := fits*size + size/2
	e.setQuota(t, owner, quota)

	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  = make([]error, callers)
	)
	for i := range callers {
		wg.Go(func() {
			<-start
			_, errs[i] = e.svc.InitBatch(context.Background(), owner, upload.BatchSpec{Files: []upload.FileSpec{
				{FileName: "f.mp4", Size: size, MimeType: "video/mp4"},
			}})
		})
	}
	close(start)
	wg.Wait()

	succeeded := 0
	for i, err := range errs {
		switch {
		case err == nil:
			succeeded++
		case upload.ErrorCode(err) != upload.CodeQuotaExceeded:
			t.Errorf("InitBatch #%d = %v, want success or QUOTA_EXCEEDED", i, err)
		}
	}
	if succeeded != fits {
		t.Errorf("%d of %d inits succeeded, want exactly %d", succeeded, callers, fits)
	}
	if got := e.reserved(t, owner); got > quota || got != int64(succeeded)*size {
		t.Errorf("reserved = %d, want %d (%d uploads) and at most the quota %d", got, int64(succeeded)*size, succeeded, quota)
	}
	if n := e.countSessions(t, owner); n != succeeded {
		t.Errorf("sessions = %d, want %d", n, succeeded)
	}
	if n := len(e.stagingFiles(t)); n != succeeded {
		t.Errorf("staging files = %d, want %d: refused inits must leave nothing", n, succeeded)
	}
}
