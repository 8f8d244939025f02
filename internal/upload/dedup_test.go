package upload_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spoolhq/spool/ent"
	"github.com/spoolhq/spool/ent/mediafile"
	"github.com/spoolhq/spool/internal/database/dbtest"
	"github.com/spoolhq/spool/internal/eventually"
	"github.com/spoolhq/spool/internal/media"
	"github.com/spoolhq/spool/internal/upload"
)

// onBothDatabases runs test on a Service over SQLite and over PostgreSQL,
// each opened (and migrated) as spool opens it.
func onBothDatabases(t *testing.T, test func(t *testing.T, e *testEnv)) {
	t.Helper()
	onBothDatabasesWith(t, testConfig(), test)
}

// onBothDatabasesWith is onBothDatabases with a Service of cfg.
func onBothDatabasesWith(t *testing.T, cfg upload.Config, test func(t *testing.T, e *testEnv)) {
	t.Helper()
	open := map[string]func(t *testing.T) (dbURL, sqlitePath string){
		"sqlite":   func(t *testing.T) (string, string) { return "", filepath.Join(t.TempDir(), "spool.db") },
		"postgres": func(t *testing.T) (string, string) { return dbtest.Postgres(t), "" },
	}
	for _, name := range []string{"sqlite", "postgres"} {
		t.Run(name, func(t *testing.T) {
			dbURL, sqlitePath := open[name](t)
			e, err := newEnvOn(t, dbURL, sqlitePath, filepath.Join(t.TempDir(), "files"), newFakeClock(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			test(t, e)
		})
	}
}

// smallVideo is a SINGLE file (the test config chunks above 1 MiB).
var smallVideo = mp4Bytes(300*KiB, 21)

// uploadReady uploads data, completes it and waits until it is READY.
func (e *testEnv) uploadReady(t *testing.T, userID, name string, data []byte) (*upload.Session, *ent.MediaFile) {
	t.Helper()
	sess := e.initOne(t, userID, mp4Spec(name, data))
	if sess.Deduplicated {
		t.Fatalf("upload of %s was deduplicated, want a real upload", name)
	}
	e.sendAll(t, sess, data)
	m, err := e.svc.Complete(context.Background(), userID, sess.ID)
	if err != nil {
		t.Fatalf("Complete(%s): %v", sess.ID, err)
	}
	m = e.waitMedia(t, userID, m.ID)
	if m.Status != mediafile.StatusREADY {
		t.Fatalf("media %s is %s (%v), want READY", m.ID, m.Status, m.ProcessingError)
	}
	return sess, m
}

// withSHA256 is mp4Spec with a declared SHA-256.
func withSHA256(name string, data []byte, sum string) upload.FileSpec {
	f := mp4Spec(name, data)
	f.SHA256 = &sum
	return f
}

// objectPath is where localfs keeps a finished object.
func (e *testEnv) objectPath(key string) string {
	return filepath.Join(e.dir, "objects", filepath.FromSlash(key))
}

// objects lists the finished objects in the store.
func (e *testEnv) objects(t *testing.T) []string { t.Helper(); return e.filesUnder(t, "objects") }

// mediaRow is a media file's row as stored, deleted or not.
func (e *testEnv) mediaRow(t *testing.T, id string) *ent.MediaFile {
	t.Helper()
	m, err := e.db.MediaFile.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("loading media %s: %v", id, err)
	}
	return m
}

// addDerivatives gives a media file what processing makes: a stored
// thumbnail and the probed facts. It returns the thumbnail's bytes.
func (e *testEnv) addDerivatives(t *testing.T, m *ent.MediaFile) []byte {
	t.Helper()
	key := m.OwnerID + "/thumbs/" + m.ID + "-0.jpg"
	thumb := []byte("\xff\xd8\xff thumbnail of " + m.ID)
	if err := os.MkdirAll(filepath.Dir(e.objectPath(key)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.objectPath(key), thumb, 0o600); err != nil {
		t.Fatal(err)
	}
	fps := 25.0
	err := e.db.MediaFile.UpdateOneID(m.ID).
		SetThumbnails([]media.Thumbnail{{Width: 64, Height: 36, MimeType: "image/jpeg", Key: key}}).
		SetPlaceholder("3OcRJYB4d3h/iIeHeEh3eIhw+j2w").SetWidth(1280).SetHeight(720).SetDuration(12.5).
		SetVideo(&media.VideoInfo{Codec: "h264", FrameRate: &fps, Faststart: true}).
		Exec(context.Background())
	if err != nil {
		t.Fatalf("adding derivatives to %s: %v", m.ID, err)
	}
	return thumb
}

// sweep waits for the jobs already queued (a deletion's purge), runs
// the sweeper once and waits for the jobs it queued, so the store can be
// checked as a finished sweep leaves it.
func (e *testEnv) sweep(t *testing.T) upload.SweepResult {
	t.Helper()
	e.waitJobsDone(t)
	r, err := e.svc.Sweep(context.Background())
	if err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	e.waitJobsDone(t)
	return r
}

// waitJobsDone polls until no job is waiting, running or due a retry.
func (e *testEnv) waitJobsDone(t *testing.T) {
	t.Helper()
	eventually.Holds(t, "the queued jobs to finish", func() bool {
		var n int
		err := e.sql.QueryRowContext(context.Background(),
			`SELECT count(*) FROM river_job WHERE state IN ('available', 'running', 'retryable', 'scheduled', 'pending')`).Scan(&n)
		if err != nil {
			t.Fatalf("counting jobs: %v", err)
		}
		return n == 0
	})
}

func wantReserved(t *testing.T, e *testEnv, userID string, want int64, when string) {
	t.Helper()
	if got := e.reserved(t, userID); got != want {
		t.Fatalf("reserved %s = %d, want %d", when, got, want)
	}
}

func readThumbnail(t *testing.T, e *testEnv, mediaID string, n int) []byte {
	t.Helper()
	_, obj, err := e.svc.OpenThumbnail(context.Background(), mediaID, n)
	if err != nil {
		t.Fatalf("OpenThumbnail(%s, %d): %v", mediaID, n, err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// An initBatch declaring the SHA-256 of a READY file of the caller's, of
// the same size and type, is an instant upload: COMPLETED at once, a READY
// media file sharing the original's object and derivatives, nothing more
// charged to the quota, and its progress published.
func TestDedupAtInit(t *testing.T) {
	t.Parallel()
	onBothDatabases(t, func(t *testing.T, e *testEnv) {
		ctx := context.Background()
		alice := e.user(t, "alice")
		_, orig := e.uploadReady(t, alice, "orig.mp4", smallVideo)
		thumb := e.addDerivatives(t, orig)
		orig = e.mediaRow(t, orig.ID)
		size := int64(len(smallVideo))
		wantReserved(t, e, alice, size, "after the original")

		watch, cancel := context.WithCancel(ctx)
		defer cancel()
		events, err := e.svc.WatchUser(watch, alice)
		if err != nil {
			t.Fatal(err)
		}
		// The case of the hex digest does not matter.
		sess := e.initOne(t, alice, withSHA256("copy.mp4", smallVideo, strings.ToUpper(sha256Hex(smallVideo))))

		if sess.Status != upload.StatusCompleted || !sess.Deduplicated {
			t.Fatalf("session is %s (deduplicated %v), want COMPLETED and deduplicated", sess.Status, sess.Deduplicated)
		}
		p := sess.Progress
		if p.Percent != 100 || p.UploadedBytes != size || p.UploadedChunks != sess.TotalChunks || len(p.FailedChunks) != 0 {
			t.Errorf("progress = %d%%, %d bytes, %d/%d chunks, failed %v; want 100%%, %d bytes, every chunk",
				p.Percent, p.UploadedBytes, p.UploadedChunks, sess.TotalChunks, p.FailedChunks, size)
		}
		if urls := e.chunkURLs(t, sess); len(urls) != 0 {
			t.Errorf("chunk URLs = %d, want none", len(urls))
		}
		if p.MediaID == nil || p.MediaStatus == nil || *p.MediaStatus != upload.MediaReady {
			t.Fatalf("progress media = %v (%v), want a READY media file", p.MediaID, p.MediaStatus)
		}
		m, err := e.svc.UploadMedia(ctx, alice, sess.ID)
		if err != nil || m == nil || m.ID != *p.MediaID {
			t.Fatalf("UploadMedia = %v, %v; want media %s", m, err, *p.MediaID)
		}
		if m.ID == orig.ID || m.FileName != "copy.mp4" || m.OwnerID != alice || m.FileSize != size ||
			m.Status != mediafile.StatusREADY || m.StorageKey != orig.StorageKey ||
			m.ContentHash == nil || *m.ContentHash != sha256Hex(smallVideo) ||
			m.ProcessedAt == nil || !m.ProcessedAt.Equal(*orig.ProcessedAt) {
			t.Errorf("media = %+v;\nwant a new READY file copy.mp4 of alice's sharing %+v", m, orig)
		}
		if len(m.Thumbnails) != 1 || m.Thumbnails[0] != orig.Thumbnails[0] || *m.Placeholder != *orig.Placeholder ||
			*m.Width != 1280 || *m.Height != 720 || *m.Duration != 12.5 || m.Video == nil || *m.Video.FrameRate != 25 {
			t.Errorf("derivatives = %v %v %v×%v %v %+v, want the original's", m.Thumbnails, m.Placeholder, m.Width, m.Height, m.Duration, m.Video)
		}
		if got := readMedia(t, e, m.ID); !bytes.Equal(got, smallVideo) {
			t.Errorf("the copy's bytes differ from the file (%d bytes, want %d)", len(got), len(smallVideo))
		}
		if got := readThumbnail(t, e, m.ID, 0); !bytes.Equal(got, thumb) {
			t.Errorf("the copy's thumbnail = %q, want %q", got, thumb)
		}
		wantReserved(t, e, alice, size, "after the instant upload")
		if got := e.objects(t); len(got) != 2 {
			t.Errorf("objects = %v, want the file and its thumbnail only", got)
		}
		if again, err := e.svc.Complete(ctx, alice, sess.ID); err != nil || again.ID != m.ID {
			t.Errorf("Complete = %v, %v; want media %s", again, err, m.ID)
		}

		// A myUploads subscriber hears of it, COMPLETED and READY.
		for ev := range events {
			if ev.UploadID != sess.ID {
				continue
			}
			if ev.Status != upload.StatusCompleted || ev.MediaStatus == nil || *ev.MediaStatus != upload.MediaReady || ev.Percent != 100 {
				t.Errorf("event = %s %d%% media %v, want COMPLETED 100%% READY", ev.Status, ev.Percent, ev.MediaStatus)
			}
			break
		}
	})
}

// A declared SHA-256 shares nothing unless it names a READY, undeleted
// file of the same user, size and type: every other case is an upload
// like any other, charged to the quota. Bob declaring alice's digest
// learns nothing of her files.
func TestDedupOnlyOfOwnReadyFiles(t *testing.T) {
	t.Parallel()
	onBothDatabases(t, func(t *testing.T, e *testEnv) {
		ctx := context.Background()
		alice, bob := e.user(t, "alice"), e.user(t, "bob")
		sum := sha256Hex(smallVideo)
		size := int64(len(smallVideo))
		tests := []struct {
			name   string
			owner  string
			spec   upload.FileSpec
			change func(t *testing.T, m *ent.MediaFile) // to the original first
		}{
			{"another user's file", bob, withSHA256("a.mp4", smallVideo, sum), nil},
			{"a PROCESSING file", alice, withSHA256("a.mp4", smallVideo, sum), func(t *testing.T, m *ent.MediaFile) { e.unprocess(t, m.ID) }},
			{"a FAILED file", alice, withSHA256("a.mp4", smallVideo, sum), func(t *testing.T, m *ent.MediaFile) {
				if err := e.db.MediaFile.UpdateOneID(m.ID).SetStatus(mediafile.StatusFAILED).Exec(ctx); err != nil {
					t.Fatal(err)
				}
			}},
			{"a deleted file", alice, withSHA256("a.mp4", smallVideo, sum), func(t *testing.T, m *ent.MediaFile) {
				if err := e.svc.DeleteMedia(ctx, alice, m.ID); err != nil {
					t.Fatal(err)
				}
			}},
			{"another size", alice, upload.FileSpec{FileName: "a.mp4", Size: size + 1, MimeType: "video/mp4", SHA256: &sum}, nil},
			{"another type", alice, upload.FileSpec{FileName: "a.mov", Size: size, MimeType: "video/quicktime", SHA256: &sum}, nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, orig := e.uploadReady(t, alice, "orig.mp4", smallVideo)
				if tt.change != nil {
					tt.change(t, orig)
				}
				before := e.reserved(t, tt.owner)
				sess := e.initOne(t, tt.owner, tt.spec)
				if sess.Status != upload.StatusInitialized || sess.Deduplicated || len(e.chunkURLs(t, sess)) != sess.TotalChunks {
					t.Fatalf("session is %s (deduplicated %v), want an INITIALIZED upload with its chunk URLs", sess.Status, sess.Deduplicated)
				}
				if got, want := e.reserved(t, tt.owner), before+tt.spec.Size; got != want {
					t.Errorf("reserved = %d, want %d: an upload like any other", got, want)
				}
				if _, err := e.svc.Cancel(ctx, tt.owner, sess.ID); err != nil {
					t.Fatal(err)
				}
				// The next case starts from a file of its own.
				if err := e.svc.DeleteMedia(ctx, alice, orig.ID); err != nil && upload.ErrorCode(err) != upload.CodeNotFound {
					t.Fatal(err)
				}
			})
		}
		for _, bad := range []string{strings.Repeat("a", 63), strings.Repeat("g", 64), sum + "00"} {
			_, err := e.svc.InitBatch(ctx, alice, upload.BatchSpec{Files: []upload.FileSpec{withSHA256("a.mp4", smallVideo, bad)}})
			wantCode(t, err, upload.CodeBadUserInput)
		}
	})
}

// A READY copy wins over resuming an unfinished upload of the same file.
func TestDedupBeforeResume(t *testing.T) {
	t.Parallel()
	e := newTestService(t, testConfig())
	alice := e.user(t, "alice")
	sum := sha256Hex(smallVideo)
	unfinished := e.initOne(t, alice, withSHA256("a.mp4", smallVideo, sum))
	_, orig := e.uploadReady(t, alice, "orig.mp4", smallVideo)
	sess := e.initOne(t, alice, withSHA256("b.mp4", smallVideo, sum))
	if sess.ID == unfinished.ID || !sess.Deduplicated {
		t.Fatalf("got upload %s (deduplicated %v), want a new deduplicated one, not %s resumed", sess.ID, sess.Deduplicated, unfinished.ID)
	}
	if m, _ := e.svc.UploadMedia(context.Background(), alice, sess.ID); m == nil || m.StorageKey != orig.StorageKey {
		t.Errorf("media = %v, want one sharing %s", m, orig.StorageKey)
	}
}

// A file found by processing to duplicate a READY file of the same user
// shares the original's object and derivatives: its own object goes, and
// its bytes are charged once. Deleting either keeps the other whole; the
// bytes and the quota go with the last.
func TestDedupAfterUpload(t *testing.T) {
	t.Parallel()
	onBothDatabases(t, func(t *testing.T, e *testEnv) {
		ctx := context.Background()
		alice := e.user(t, "alice")
		size := int64(len(smallVideo))
		_, orig := e.uploadReady(t, alice, "orig.mp4", smallVideo)
		thumb := e.addDerivatives(t, orig)
		orig = e.mediaRow(t, orig.ID)

		dupSess, dup := e.uploadReady(t, alice, "again.mp4", smallVideo)
		ownKey := e.stored(t, dupSess.ID).StorageKey
		if dup.StorageKey != orig.StorageKey || len(dup.Thumbnails) != 1 || dup.Thumbnails[0] != orig.Thumbnails[0] ||
			dup.Width == nil || *dup.Width != 1280 {
			t.Fatalf("duplicate stores %s with %v, want the original's %s with %v", dup.StorageKey, dup.Thumbnails, orig.StorageKey, orig.Thumbnails)
		}
		if dup.FileName != "again.mp4" || dup.UploadID == nil || *dup.UploadID != dupSess.ID {
			t.Errorf("duplicate is %s of upload %v, want again.mp4 of %s", dup.FileName, dup.UploadID, dupSess.ID)
		}
		wantReserved(t, e, alice, size, "once the duplicate shares the original's bytes")
		e.sweep(t)
		if exists(t, e.objectPath(ownKey)) {
			t.Errorf("the duplicate's own object %s is still stored", ownKey)
		}
		if got := e.objects(t); len(got) != 2 {
			t.Errorf("objects = %v, want the shared file and its thumbnail", got)
		}
		if got := readMedia(t, e, dup.ID); !bytes.Equal(got, smallVideo) {
			t.Errorf("duplicate's bytes differ from the file")
		}
		n, err := e.svc.MediaQuery(alice).Count(ctx)
		if err != nil || n != 2 {
			t.Errorf("visible media = %d, %v; want 2", n, err)
		}

		// Deleting the original keeps the duplicate whole.
		if err := e.svc.DeleteMedia(ctx, alice, orig.ID); err != nil {
			t.Fatal(err)
		}
		e.sweep(t)
		wantReserved(t, e, alice, size, "after deleting the original")
		if got := readMedia(t, e, dup.ID); !bytes.Equal(got, smallVideo) {
			t.Errorf("duplicate's bytes differ after the original's deletion")
		}
		if got := readThumbnail(t, e, dup.ID, 0); !bytes.Equal(got, thumb) {
			t.Errorf("duplicate's thumbnail = %q, want %q", got, thumb)
		}

		// Deleting the last reference frees it all.
		if err := e.svc.DeleteMedia(ctx, alice, dup.ID); err != nil {
			t.Fatal(err)
		}
		e.sweep(t)
		wantReserved(t, e, alice, 0, "after deleting both")
		if got := e.objects(t); len(got) != 0 {
			t.Errorf("objects after deleting both = %v, want none", got)
		}
		for _, id := range []string{orig.ID, dup.ID} {
			if m := e.mediaRow(t, id); m.PurgedAt == nil {
				t.Errorf("media %s not marked purged", id)
			}
		}
	})
}

// Deleting one of two files sharing bytes keeps the other fully working,
// also when the sweeper purges a deleted sharer; the last deletion removes
// the object and derivatives and gives the quota back.
func TestDeleteSharedBytes(t *testing.T) {
	t.Parallel()
	onBothDatabases(t, func(t *testing.T, e *testEnv) {
		ctx := context.Background()
		alice := e.user(t, "alice")
		size := int64(len(smallVideo))
		_, orig := e.uploadReady(t, alice, "orig.mp4", smallVideo)
		thumb := e.addDerivatives(t, orig)
		copies := make([]*ent.MediaFile, 2)
		for i := range copies {
			sess := e.initOne(t, alice, withSHA256("copy.mp4", smallVideo, sha256Hex(smallVideo)))
			m, err := e.svc.UploadMedia(ctx, alice, sess.ID)
			if err != nil || m == nil {
				t.Fatalf("UploadMedia = %v, %v", m, err)
			}
			copies[i] = m
		}
		wantReserved(t, e, alice, size, "with three files sharing one object")
		stillWhole := func(live *ent.MediaFile, after string) {
			t.Helper()
			if got := readMedia(t, e, live.ID); !bytes.Equal(got, smallVideo) {
				t.Fatalf("%s's bytes differ after %s", live.ID, after)
			}
			if got := readThumbnail(t, e, live.ID, 0); !bytes.Equal(got, thumb) {
				t.Fatalf("%s's thumbnail = %q after %s, want %q", live.ID, got, after, thumb)
			}
		}

		if err := e.svc.DeleteMedia(ctx, alice, orig.ID); err != nil {
			t.Fatal(err)
		}
		e.sweep(t)
		wantReserved(t, e, alice, size, "after deleting the original")
		stillWhole(copies[0], "deleting the original")
		stillWhole(copies[1], "deleting the original")

		// A deletion whose purge was lost (a crash after commit) is the
		// sweeper's; it must leave bytes another file uses.
		if err := e.db.MediaFile.UpdateOneID(copies[0].ID).SetDeletedAt(e.clock.Now()).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		if r := e.sweep(t); r.Purged != 1 {
			t.Errorf("sweep purged %d, want 1", r.Purged)
		}
		if m := e.mediaRow(t, copies[0].ID); m.PurgedAt == nil {
			t.Errorf("the swept copy is not marked purged")
		}
		stillWhole(copies[1], "the sweeper purged a sharer")

		if err := e.svc.DeleteMedia(ctx, alice, copies[1].ID); err != nil {
			t.Fatal(err)
		}
		e.sweep(t)
		wantReserved(t, e, alice, 0, "after deleting the last sharer")
		if got := e.objects(t); len(got) != 0 {
			t.Errorf("objects after deleting every sharer = %v, want none", got)
		}
		_, _, err := e.svc.OpenMedia(ctx, copies[1].ID)
		wantCode(t, err, upload.CodeNotFound)
	})
}

// Two replicas deleting the two files that share bytes at the same moment
// give the quota back exactly once and leave no bytes behind: each
// deletion takes the owner's row before counting the references, so the
// second sees the first.
func TestPostgresDeleteSharersAtOnce(t *testing.T) {
	t.Parallel()
	rs := newReplicas(t, 2, testConfig())
	ctx := context.Background()
	alice := rs[0].user(t, "alice")
	for round := range 6 {
		_, orig := rs[0].uploadReady(t, alice, "orig.mp4", smallVideo)
		sess := rs[1].initOne(t, alice, withSHA256("copy.mp4", smallVideo, sha256Hex(smallVideo)))
		if !sess.Deduplicated {
			t.Fatalf("round %d: the copy was not deduplicated", round)
		}
		ids := []string{orig.ID, *sess.Progress.MediaID}
		race(2, func(i int) {
			if err := rs[i].svc.DeleteMedia(ctx, alice, ids[i]); err != nil {
				t.Errorf("round %d: DeleteMedia on replica %d: %v", round, i, err)
			}
		})
		rs[0].sweep(t)
		wantReserved(t, rs[0], alice, 0, "after both sharers are deleted")
		if got := rs[0].objects(t); len(got) != 0 {
			t.Fatalf("round %d: objects after deleting both = %v, want none", round, got)
		}
	}
}

// A deletion of the original racing an instant upload of its bytes either
// loses the race (the copy shares the bytes, which stay) or wins it (the
// file is planned as a new upload): never a copy whose bytes are gone.
func TestPostgresDeleteRacesDedup(t *testing.T) {
	t.Parallel()
	rs := newReplicas(t, 2, testConfig())
	ctx := context.Background()
	alice := rs[0].user(t, "alice")
	size := int64(len(smallVideo))
	for round := range 6 {
		_, orig := rs[0].uploadReady(t, alice, "orig.mp4", smallVideo)
		var sess *upload.Session
		race(2, func(i int) {
			if i == 0 {
				if err := rs[0].svc.DeleteMedia(ctx, alice, orig.ID); err != nil {
					t.Errorf("round %d: DeleteMedia: %v", round, err)
				}
				return
			}
			b, err := rs[1].svc.InitBatch(ctx, alice, upload.BatchSpec{Files: []upload.FileSpec{withSHA256("copy.mp4", smallVideo, sha256Hex(smallVideo))}})
			if err != nil {
				t.Errorf("round %d: InitBatch: %v", round, err)
				return
			}
			sess = b.Uploads[0]
		})
		if t.Failed() {
			return
		}
		rs[0].sweep(t)
		wantReserved(t, rs[0], alice, size, "after the race")
		if sess.Deduplicated {
			if got := readMedia(t, rs[1], *sess.Progress.MediaID); !bytes.Equal(got, smallVideo) {
				t.Fatalf("round %d: the copy's bytes differ", round)
			}
			if err := rs[1].svc.DeleteMedia(ctx, alice, *sess.Progress.MediaID); err != nil {
				t.Fatal(err)
			}
		} else {
			if sess.Status != upload.StatusInitialized {
				t.Fatalf("round %d: the copy is %s, want INITIALIZED when not deduplicated", round, sess.Status)
			}
			if got := rs[0].objects(t); len(got) != 0 {
				t.Fatalf("round %d: objects after the original's deletion = %v, want none", round, got)
			}
			if _, err := rs[1].svc.Cancel(ctx, alice, sess.ID); err != nil {
				t.Fatal(err)
			}
		}
		rs[0].sweep(t)
		wantReserved(t, rs[0], alice, 0, "at the end of a round")
		if got := rs[0].objects(t); len(got) != 0 {
			t.Fatalf("round %d: objects at the end = %v, want none", round, got)
		}
	}
}

// Processing that finds a duplicate racing the original's deletion never
// leaves the duplicate on bytes that are gone, and its bytes are charged
// once whichever way the race goes.
func TestPostgresDeleteRacesProcessing(t *testing.T) {
	t.Parallel()
	rs := newReplicas(t, 2, testConfig())
	ctx := context.Background()
	alice := rs[0].user(t, "alice")
	size := int64(len(smallVideo))
	for round := range 6 {
		_, orig := rs[0].uploadReady(t, alice, "orig.mp4", smallVideo)
		dupSess := rs[1].initOne(t, alice, mp4Spec("again.mp4", smallVideo))
		rs[1].sendAll(t, dupSess, smallVideo)
		var dupID string
		race(2, func(i int) {
			if i == 0 {
				if err := rs[0].svc.DeleteMedia(ctx, alice, orig.ID); err != nil {
					t.Errorf("round %d: DeleteMedia: %v", round, err)
				}
				return
			}
			m, err := rs[1].svc.Complete(ctx, alice, dupSess.ID)
			if err != nil {
				t.Errorf("round %d: Complete: %v", round, err)
				return
			}
			dupID = m.ID
		})
		if t.Failed() {
			return
		}
		dup := rs[1].waitMedia(t, alice, dupID)
		rs[0].sweep(t)
		wantReserved(t, rs[0], alice, size, "after the race")
		if got := readMedia(t, rs[1], dup.ID); !bytes.Equal(got, smallVideo) {
			t.Fatalf("round %d: the duplicate's bytes differ", round)
		}
		if got := rs[0].objects(t); len(got) != 1 {
			t.Fatalf("round %d: objects = %v, want the duplicate's bytes only", round, got)
		}
		if err := rs[1].svc.DeleteMedia(ctx, alice, dup.ID); err != nil {
			t.Fatal(err)
		}
		rs[0].sweep(t)
		wantReserved(t, rs[0], alice, 0, "at the end of a round")
		if got := rs[0].objects(t); len(got) != 0 {
			t.Fatalf("round %d: objects at the end = %v, want none", round, got)
		}
	}
}
