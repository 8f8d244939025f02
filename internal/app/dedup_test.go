package app_test

import (
	"bytes"
	"io/fs"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spoolhq/spool/internal/app"
	"github.com/spoolhq/spool/internal/eventually"
)

// objectFiles lists the finished objects under the data dir.
func objectFiles(t *testing.T, dataDir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(filepath.Join(dataDir, "files", "objects"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walking the objects: %v", err)
	}
	return files
}

const dedupInitOp = `mutation($input: InitBatchInput!) { initBatch(input: $input) { uploads {
	id status deduplicated chunkUrls { chunkIndex } progress { status percent uploadedBytes totalBytes }
	media { id url status fileName fileSize } } } }`

type dedupUpload struct {
	ID           string     `json:"id"`
	Status       string     `json:"status"`
	Deduplicated bool       `json:"deduplicated"`
	ChunkURLs    []chunkURL `json:"chunkUrls"`
	Progress     progress   `json:"progress"`
	Media        *media     `json:"media"`
}

// TestDedupThroughGraphQL: an initBatch declaring the SHA-256 of a file
// the user already has is an instant upload whose media downloads the
// same bytes; the two files share one object, charged once, which stays
// while either is kept and goes, with its quota, when both are deleted.
// Another user declaring the same digest uploads as usual.
func TestDedupThroughGraphQL(t *testing.T) {
	t.Parallel()
	var dataDir string
	s := startSpool(t, func(c *app.Config) { dataDir = c.DataDir })
	alice, bob := s.token("alice"), s.token("bob")
	video := fileBytes("video/mp4", 300<<10, 61)
	size := int64(len(video))
	orig := s.uploadFile(alice, "orig.mp4", "video/mp4", video)
	eventually.Holds(t, "the original to be READY", func() bool {
		var out struct{ Node media }
		s.mustGQL(alice, `query($id: ID!) { node(id: $id) { ... on MediaFile { id status } } }`, vars("id", orig.ID), &out)
		return out.Node.Status == "READY"
	})

	initCopy := func(token, name string) dedupUpload {
		t.Helper()
		f := file(name, "video/mp4", size)
		f["sha256"] = strings.ToUpper(sha256hex(video))
		var out struct {
			InitBatch struct{ Uploads []dedupUpload }
		}
		s.mustGQL(token, dedupInitOp, vars("input", map[string]any{"files": []any{f}}), &out)
		return out.InitBatch.Uploads[0]
	}
	cp := initCopy(alice, "copy.mp4")
	if cp.Status != "COMPLETED" || !cp.Deduplicated || len(cp.ChunkURLs) != 0 {
		t.Fatalf("copy: got %s (deduplicated %v) with %d chunk URLs, want COMPLETED, deduplicated, none", cp.Status, cp.Deduplicated, len(cp.ChunkURLs))
	}
	if p := cp.Progress; p.Status != "COMPLETED" || p.Percent != 100 || p.UploadedBytes != size || p.TotalBytes != size {
		t.Errorf("copy's progress: got %+v, want COMPLETED at 100%% with all %d bytes", p, size)
	}
	if m := cp.Media; m == nil || m.ID == orig.ID || m.Status != "READY" || m.FileName != "copy.mp4" || m.FileSize != size {
		t.Fatalf("copy's media: got %+v, want a new READY copy.mp4 of %d bytes", m, size)
	}
	if _, body := get(t, cp.Media.URL, nil); !bytes.Equal(body, video) {
		t.Errorf("downloading the copy: got %d bytes, want the %d of the file", len(body), size)
	}
	if got := s.me(alice).UsedBytes; got != size {
		t.Errorf("usedBytes with the copy: got %d, want %d (the bytes once)", got, size)
	}
	if got := objectFiles(t, dataDir); len(got) != 1 {
		t.Errorf("objects with the copy: got %v, want one", got)
	}

	// bob declaring alice's digest uploads like anyone else.
	theirs := initCopy(bob, "mine.mp4")
	if theirs.Status != "INITIALIZED" || theirs.Deduplicated || theirs.Media != nil || len(theirs.ChunkURLs) != 1 {
		t.Errorf("bob's upload: got %s (deduplicated %v, media %v, %d chunk URLs), want INITIALIZED with its chunk URL",
			theirs.Status, theirs.Deduplicated, theirs.Media, len(theirs.ChunkURLs))
	}
	if got := s.me(bob).UsedBytes; got != size {
		t.Errorf("bob's usedBytes: got %d, want %d", got, size)
	}

	// Deleting the original keeps the copy whole.
	s.mustGQL(alice, opDeleteMedia, vars("id", orig.ID), nil)
	var again struct{ Node media }
	s.mustGQL(alice, `query($id: ID!) { node(id: $id) { ... on MediaFile { id url status } } }`, vars("id", cp.Media.ID), &again)
	resp, body := get(t, again.Node.URL, nil)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, video) {
		t.Errorf("downloading the copy after deleting the original: got %d with %d bytes, want 200 with the file", resp.StatusCode, len(body))
	}
	if got := s.me(alice).UsedBytes; got != size {
		t.Errorf("usedBytes after deleting the original: got %d, want %d", got, size)
	}

	// Deleting both frees the quota and the store.
	s.mustGQL(alice, opDeleteMedia, vars("id", cp.Media.ID), nil)
	if got := s.me(alice).UsedBytes; got != 0 {
		t.Errorf("usedBytes after deleting both: got %d, want 0", got)
	}
	eventually.Holds(t, "the shared object to be removed", func() bool { return len(objectFiles(t, dataDir)) == 0 })
}
