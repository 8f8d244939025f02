package upload

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/spoolhq/spool/ent"
	"github.com/spoolhq/spool/ent/mediafile"
)

// TestEachUnpurgedMediaMissesNone: the orphan check's walk of the media
// files visits every file that stays unpurged while it walks, even when
// files it has passed are purged meanwhile. It read pages at an offset,
// and a purge behind it moved the next page's first file into the page
// already read: that file's bytes then looked orphaned.
func TestEachUnpurgedMediaMissesNone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openSQLite(t)
	owner := db.Client.User.Create().SetSubject("alice").SetQuotaBytes(1 << 30).SaveX(ctx)
	var ids []string
	for i := range 7 {
		m := db.Client.MediaFile.Create().SetOwnerID(owner.ID).SetFileName(fmt.Sprintf("%d.mp3", i)).
			SetMimeType("audio/mpeg").SetMediaType("AUDIO").SetFileSize(2).SetStorageKey(fmt.Sprintf("%s/%d", owner.ID, i)).
			SetStatus(mediafile.StatusREADY).SetCreatedAt(time.Now()).SaveX(ctx)
		ids = append(ids, m.ID)
	}
	slices.Sort(ids)

	s := &Service{db: db.Client, dialect: db.Dialect}
	var seen []string
	pages := 0
	err := s.eachUnpurgedMedia(ctx, 2, func(media []*ent.MediaFile) {
		pages++
		for _, m := range media {
			seen = append(seen, m.ID)
		}
		// Each page's files are purged once read, as a purge job
		// running beside the walk would.
		for _, m := range media {
			db.Client.MediaFile.UpdateOneID(m.ID).SetPurgedAt(time.Now()).ExecX(ctx)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(seen, ids) {
		t.Errorf("visited %v, want every file once, in id order: %v", seen, ids)
	}
	if pages != 4 {
		t.Errorf("%d pages of 2 for 7 files, want 4", pages)
	}
}
