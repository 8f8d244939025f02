package upload

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/spoolhq/spool/ent/uploadsession"
)

// TestResumeUnfinishedSkipsFinished: an upload lookUpEarlier found
// unfinished but that finished before the batch moved it (a cancel on
// another replica commits in between, on PostgreSQL) is not resumed: its
// file starts afresh, and it stays in its own batch, while the others in
// the same statement move. Deterministic here, where the race test
// (TestPostgresResumeRacesCancel) meets it only now and then.
func TestResumeUnfinishedSkipsFinished(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openSQLite(t)
	cfg := DefaultConfig()
	s := &Service{db: db.Client, cfg: cfg, log: slog.New(slog.DiscardHandler), now: time.Now}
	tx, err := db.Client.Tx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	owner, err := tx.User.Create().SetSubject("alice").SetQuotaBytes(1 << 30).Save(ctx)
	if err != nil {
		t.Fatal(err)
	}
	batch := func(id string) string {
		if err := tx.UploadBatch.Create().SetID(id).SetOwnerID(owner.ID).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		return id
	}
	old, next := batch("bat_old"), batch("bat_new")
	upload := func(id string, status Status) {
		f := checkedFile{FileSpec: FileSpec{FileName: id + ".mp4", Size: 10}, name: id + ".mp4",
			mimeType: "video/mp4", mediaType: MediaVideo, plan: cfg.planFile(10)}
		if err := s.newSession(tx, owner.ID, old, id, f).SetStatus(status).Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
	upload("upl_active", StatusUploading)
	upload("upl_cancelled", StatusCancelled) // unfinished when read, cancelled since

	resumed, err := s.resumeUnfinished(ctx, tx, next, earlier{
		ready:      make([]bool, 4),
		unfinished: []string{"upl_cancelled", "", "upl_active", "upl_active"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"", "", "upl_active", "upl_active"}; !slices.Equal(resumed, want) {
		t.Errorf("resumed = %q, want %q", resumed, want)
	}
	for id, want := range map[string]string{"upl_active": next, "upl_cancelled": old} {
		sess, err := tx.UploadSession.Query().Where(uploadsession.ID(id)).Only(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if sess.BatchID != want {
			t.Errorf("%s is in batch %s, want %s", id, sess.BatchID, want)
		}
	}
}
