package app_test

import (
	"io/fs"
	"net/http"
	"path/filepath"
	"slices"
	"testing"

	"github.com/spoolhq/spool/internal/app"
)

// stagingFiles lists the regular files under the data dir's staging tree.
func stagingFiles(t *testing.T, dataDir string) []string {
	t.Helper()
	var files []string
	root := filepath.Join(dataDir, "files", "staging")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walking %s: %v", root, err)
	}
	return files
}

func TestCancelFreesBytes(t *testing.T) {
	t.Parallel()
	var dataDir string
	s := startSpool(t, func(c *app.Config) { dataDir = c.DataDir })
	tok := s.token("alice")
	video := fileBytes("video/mp4", 6<<20, 30)
	up := s.planOne(tok, file("v.mp4", "video/mp4", int64(len(video))))
	sendChunk(t, up.ChunkURLs[0], video, http.StatusOK)

	if got := stagingFiles(t, dataDir); len(got) != 1 {
		t.Fatalf("staging files while uploading: got %v, want one", got)
	}
	if got := s.me(tok).UsedBytes; got != int64(len(video)) {
		t.Fatalf("usedBytes while uploading: got %d, want %d", got, len(video))
	}
	var out struct{ Cancel session }
	s.mustGQL(tok, `mutation($id: ID!) { cancel(uploadId: $id) { `+uploadFields+` } }`, vars("id", up.ID), &out)
	if got := out.Cancel; got.Status != "CANCELLED" || len(got.ChunkURLs) != 0 {
		t.Errorf("cancel: got %s with %d chunk URLs, want CANCELLED with none", got.Status, len(got.ChunkURLs))
	}
	if got := stagingFiles(t, dataDir); len(got) != 0 {
		t.Errorf("staging files after cancel: got %v, want none", got)
	}
	if got := s.me(tok).UsedBytes; got != 0 {
		t.Errorf("usedBytes after cancel: got %d, want 0", got)
	}
}

func TestResumeByFingerprint(t *testing.T) {
	t.Parallel()
	s := startSpool(t, nil)
	tok := s.token("alice")
	video := fileBytes("video/mp4", 12<<20, 31) // chunks of 5, 5 and 2 MiB
	f := file("v.mp4", "video/mp4", int64(len(video)))
	f["fingerprint"] = "f1"

	first := s.planOne(tok, f)
	sendChunk(t, first.ChunkURLs[0], video, http.StatusOK)

	// The page reloads and plans the same file again.
	b := s.initBatch(tok, f)
	again := b.Uploads[0]
	if again.ID != first.ID {
		t.Fatalf("second initBatch: got upload %s, want the resumed %s", again.ID, first.ID)
	}
	if b.ID == first.BatchID || again.BatchID != b.ID {
		t.Errorf("resumed upload's batch: got %s (new batch %s, old %s), want the new batch", again.BatchID, b.ID, first.BatchID)
	}
	if p := again.Progress; p.UploadedChunks != 1 || p.UploadedBytes != 5<<20 || again.Status != "UPLOADING" {
		t.Errorf("resumed progress: got %s %+v, want UPLOADING with chunk 0", again.Status, p)
	}
	var idx []int
	for _, c := range again.ChunkURLs {
		idx = append(idx, c.ChunkIndex)
	}
	if !slices.Equal(idx, []int{1, 2}) {
		t.Fatalf("resumed chunk URLs: got chunks %v, want [1 2]", idx)
	}
	if got := s.me(tok).UsedBytes; got != int64(len(video)) {
		t.Errorf("usedBytes after resuming: got %d, want %d (reserved once)", got, len(video))
	}
	// Another fingerprint is another file.
	other := file("v.mp4", "video/mp4", int64(len(video)))
	other["fingerprint"] = "f2"
	otherUp := s.planOne(tok, other)
	if otherUp.ID == first.ID {
		t.Errorf("another fingerprint resumed %s, want a new upload", otherUp.ID)
	}
	s.mustGQL(tok, opCancel, vars("id", otherUp.ID), nil)

	for _, c := range again.ChunkURLs {
		sendChunk(t, c, video, http.StatusOK)
	}
	m := s.complete(tok, first.ID)
	if resp, body := get(t, m.URL, nil); resp.StatusCode != http.StatusOK || sha256hex(body) != sha256hex(video) {
		t.Errorf("download of the resumed upload: got %d, %d bytes; want the video", resp.StatusCode, len(body))
	}
	if got := s.me(tok).UsedBytes; got != int64(len(video)) {
		t.Errorf("usedBytes after completing: got %d, want %d (counted once)", got, len(video))
	}
	// A finished upload is not resumed: the same fingerprint starts afresh.
	if got := s.planOne(tok, f).ID; got == first.ID {
		t.Errorf("initBatch after completion resumed the completed upload %s", got)
	}
}
