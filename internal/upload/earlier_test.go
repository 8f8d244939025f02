package upload_test

import (
	"context"
	"testing"

	"github.com/spoolhq/spool/internal/upload"
)

// TestEarlierUploadsOfABatch: one batch whose files each meet a different
// case of the user's earlier uploads, looked up together (lookUpEarlier),
// gets for each what a batch of that file alone gets: a copy of a READY
// file completes at once, an unfinished upload of the same file, size
// and type resumes (the newest, whether found by fingerprint or by
// sha256), and anything else starts afresh and alone is charged.
func TestEarlierUploadsOfABatch(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.MaxBatchFiles = 10
	onBothDatabasesWith(t, cfg, func(t *testing.T, e *testEnv) {
		ctx := context.Background()
		alice := e.user(t, "alice")
		_, orig := e.uploadReady(t, alice, "orig.mp4", smallVideo)

		named := func(name string, data []byte, fingerprint, sum *string) upload.FileSpec {
			f := mp4Spec(name, data)
			f.Fingerprint, f.SHA256 = fingerprint, sum
			return f
		}
		byFingerprint := e.initOne(t, alice, named("fp.mp4", file11, ptr("fp"), nil))
		e.mustSend(t, byFingerprint.ID, 0, file11)
		bySum := e.initOne(t, alice, named("sum.mp4", file11, nil, ptr(sha256Hex(file11))))
		otherSize := e.initOne(t, alice, named("size.mp4", file11, ptr("size"), nil))
		older := e.initOne(t, alice, named("older.mp4", file11, ptr("both"), nil))
		e.clock.Advance(1e9)
		newer := e.initOne(t, alice, named("newer.mp4", file11, nil, ptr(sha256Hex(file11[1:]))))
		cancelled := e.initOne(t, alice, named("cancelled.mp4", file11, ptr("cancelled"), nil))
		if _, err := e.svc.Cancel(ctx, alice, cancelled.ID); err != nil {
			t.Fatal(err)
		}
		reserved := e.reserved(t, alice)

		bigger := named("size.mp4", append(file11[:len(file11):len(file11)], 0), ptr("size"), nil)
		files := []upload.FileSpec{
			withSHA256("copy.mp4", smallVideo, sha256Hex(smallVideo)),        // a copy
			named("fp.mp4", file11, ptr("fp"), nil),                          // resumes byFingerprint
			named("sum.mp4", file11, ptr("unknown"), ptr(sha256Hex(file11))), // resumes bySum
			bigger, // another size: afresh
			named("both.mp4", file11, ptr("both"), ptr(sha256Hex(file11[1:]))), // resumes newer, not older
			named("cancelled.mp4", file11, ptr("cancelled"), nil),              // afresh
			mp4Spec("plain.mp4", file11),                                       // afresh
		}
		b, err := e.svc.InitBatch(ctx, alice, upload.BatchSpec{Files: files})
		if err != nil {
			t.Fatal(err)
		}
		got := b.Uploads
		if len(got) != len(files) {
			t.Fatalf("%d uploads for %d files", len(got), len(files))
		}
		if !got[0].Deduplicated || got[0].Progress.Status != upload.StatusCompleted || got[0].Progress.MediaID == nil || *got[0].Progress.MediaID == orig.ID {
			t.Errorf("copy.mp4: deduplicated %v, %s; want a COMPLETED copy with a media file of its own", got[0].Deduplicated, got[0].Progress.Status)
		}
		for i, want := range map[int]string{1: byFingerprint.ID, 2: bySum.ID, 4: newer.ID} {
			if got[i].ID != want {
				t.Errorf("%s: upload %s, want the resumed %s", files[i].FileName, got[i].ID, want)
			}
			if got[i].BatchID != b.ID {
				t.Errorf("%s: in batch %s, want the new batch %s", files[i].FileName, got[i].BatchID, b.ID)
			}
		}
		checkCounts(t, got[1].Progress, 5*MiB, 1, []int{})
		earlier := map[string]bool{*orig.UploadID: true, byFingerprint.ID: true, bySum.ID: true, otherSize.ID: true,
			older.ID: true, newer.ID: true, cancelled.ID: true}
		for _, i := range []int{3, 5, 6} {
			if earlier[got[i].ID] || got[i].Progress.Status != upload.StatusInitialized {
				t.Errorf("%s: upload %s %s, want a new INITIALIZED upload", files[i].FileName, got[i].ID, got[i].Progress.Status)
			}
		}
		if again, err := e.svc.Session(ctx, alice, older.ID); err != nil || again.BatchID == b.ID {
			t.Errorf("the older upload of both.mp4 moved into the batch (%v)", err)
		}
		// Only the three new uploads are charged; the copy and the
		// resumed ones are not.
		if want := reserved + bigger.Size + 2*int64(len(file11)); e.reserved(t, alice) != want {
			t.Errorf("reserved = %d, want %d", e.reserved(t, alice), want)
		}
	})
}
