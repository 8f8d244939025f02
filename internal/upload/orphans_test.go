package upload_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/spoolhq/spool/ent/mediafile"
	"github.com/spoolhq/spool/internal/media"
	"github.com/spoolhq/spool/internal/storage/localfs"
	"github.com/spoolhq/spool/internal/upload"
)

// TestRemoveOrphans leaves a store as crashes leave it (bytes written
// before the transaction that would have named them) next to bytes that
// records own, and checks that one pass removes exactly the former, and
// only once they are older than OrphanAge.
// It runs on both engines: on PostgreSQL the check's reads are planned at
// each run, through their context (Service.plannedEachRun).
func TestRemoveOrphans(t *testing.T) {
	onEnginesClocked(t, newFakeClock, removeOrphans)
}

func removeOrphans(t *testing.T, e *testEnv) {
	ctx := context.Background()
	owner := e.user(t, "alice")

	unfinished := e.initOne(t, owner, mp4Spec("unfinished.mp4", file11))
	e.mustSend(t, unfinished.ID, 0, file11)
	_, ready := e.uploadProcessed(t, owner, "ready.mp4")
	// Another user's, so that dedup does not make it share ready's bytes.
	other := e.user(t, "bob")
	_, processing := e.uploadProcessed(t, other, "processing.mp4")
	e.unprocess(t, processing.ID)
	store, err := localfs.New(e.dir) // the service's files, seen directly
	if err != nil {
		t.Fatal(err)
	}
	put := func(key string) {
		t.Helper()
		if err := store.Put(ctx, key, bytes.NewReader([]byte("derived")), "image/jpeg"); err != nil {
			t.Fatalf("Put(%s): %v", key, err)
		}
	}
	// Owned: a READY file's thumbnail, and what processing is writing.
	readyThumb := owner + "/" + ready.ID + "/thumb-320.jpg"
	put(readyThumb)
	if err := e.db.MediaFile.UpdateOneID(ready.ID).
		SetThumbnails([]media.Thumbnail{{Width: 320, Height: 180, MimeType: "image/jpeg", Key: readyThumb}}).
		Exec(ctx); err != nil {
		t.Fatal(err)
	}
	inFlight := other + "/" + processing.ID + "/thumb-320.jpg"
	put(inFlight)
	// Orphans: a crash before initBatch's commit, a derivative of a
	// media file that never committed, and an interrupted Put.
	if err := store.Prepare(ctx, owner+"/upl_neverCommitted", 100); err != nil {
		t.Fatal(err)
	}
	lost := owner + "/med_neverCommitted/thumb-320.jpg"
	put(lost)
	tmp := filepath.Join(e.dir, "objects", owner, ".ready.jpg.put-123")
	if err := os.WriteFile(tmp, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A Put of a file still PROCESSING cut short by a kill: the run that
	// wrote it is dead, and its retry writes temporaries of its own.
	killedPut := filepath.Join(e.dir, "objects", other, processing.ID, ".thumb-1280.jpg.put-456")
	if err := os.WriteFile(killedPut, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	all := walkKeys(t, store)

	// Young bytes are left alone, whoever owns them.
	if n, err := e.svc.RemoveOrphans(ctx); err != nil || n != 0 {
		t.Fatalf("RemoveOrphans of young bytes = %d, %v; want 0, nil", n, err)
	}
	if got := walkKeys(t, store); !slices.Equal(got, all) {
		t.Fatalf("young bytes changed: %v, was %v", got, all)
	}

	e.clock.Advance(time.Since(e.clock.Now()) + e.cfg.OrphanAge + time.Minute)
	n, err := e.svc.RemoveOrphans(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"object " + other + "/" + processing.ID + "/thumb-320.jpg",
		"object " + owner + "/" + ready.ID + "/thumb-320.jpg",
		"object " + processing.StorageKey,
		"object " + ready.StorageKey,
		"upload " + unfinished.StorageKey,
	}
	slices.Sort(want)
	if got := walkKeys(t, store); !slices.Equal(got, want) || n != 4 {
		t.Errorf("after RemoveOrphans (%d removed) the store holds\n%v\nwant\n%v (4 removed)", n, got, want)
	}
	if m := e.waitMedia(t, owner, ready.ID); m.Status != mediafile.StatusREADY || !bytes.Equal(readMedia(t, e, ready.ID), file11) {
		t.Errorf("the READY file suffered: status %s", m.Status)
	}
	// A second pass has nothing left to remove, except that the sweeper,
	// which the clock's jump made re-run the PROCESSING file, may have
	// finished it meanwhile: a READY file does not name the in-flight
	// thumbnail, which is then rightly an orphan. PROCESSING only ever
	// moves on, so a file still PROCESSING after the pass was so during it.
	n, err = e.svc.RemoveOrphans(ctx)
	if err != nil {
		t.Fatal(err)
	}
	still, err := e.db.MediaFile.Get(ctx, processing.ID)
	if err != nil {
		t.Fatal(err)
	}
	if allowed := map[bool]int{true: 0, false: 1}[still.Status == mediafile.StatusPROCESSING]; n > allowed {
		t.Errorf("a second pass removed %d with the file %s, want at most %d", n, still.Status, allowed)
	}
}

func walkKeys(t *testing.T, s upload.Store) []string {
	t.Helper()
	var out []string
	err := s.Walk(context.Background(), func(it upload.StoredItem) error {
		kind := "object "
		if it.Upload {
			kind = "upload "
		}
		out = append(out, kind+it.Key)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}
