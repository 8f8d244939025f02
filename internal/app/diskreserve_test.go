package app_test

import (
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/spoolhq/spool/internal/app"
	"github.com/spoolhq/spool/internal/app/apptest"
	"github.com/spoolhq/spool/internal/storage/localfs"
	"github.com/spoolhq/spool/internal/tmpfs"
)

// On a disk that uploads fill, chunks stop at the reserve: the chunk that
// would eat into it is answered 503 "storage is full" with nothing
// written, the reserve stays free for the database, and once space is
// freed the same chunk is taken and the upload completes.
func TestChunksStopAtTheDiskReserve(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	dir := tmpfs.Mount(t, 48*mib)
	reserve := localfs.Reserve{Bytes: 8 * mib}
	s := startSpool(t, func(c *app.Config) { c.DataDir, c.DiskReserve = dir, reserve })
	tok := s.token("alice")
	video := fileBytes("video/mp4", 12*mib, 41) // chunks of 5, 5 and 2 MiB
	up := s.planOne(tok, file("v.mp4", "video/mp4", int64(len(video))))

	// Leave room for the reserve and one chunk and a half.
	filler := tmpfs.FillTo(t, dir, reserve.Bytes+15*mib/2)

	sendChunk(t, up.ChunkURLs[0], video, http.StatusOK)
	a := do(t, http.MethodPut, up.ChunkURLs[1].URL, chunkOf(up.ChunkURLs[1], video), nil)
	if a.Status != http.StatusServiceUnavailable || !strings.Contains(a.Error.Message, "storage is full") {
		t.Fatalf("chunk 1 past the reserve: got %d %s %q; want 503 \"storage is full\"", a.Status, a.Error.Code, a.Error.Message)
	}
	if got := a.Header.Get("Retry-After"); got != "30" {
		t.Errorf("chunk 1 past the reserve: Retry-After %q, want 30 (a full disk stays full until space is freed)", got)
	}
	if f := tmpfs.Free(t, dir); f < reserve.Bytes {
		t.Fatalf("%d bytes free after the refusal, under the reserve of %d", f, reserve.Bytes)
	}
	// The database still has room: another upload is planned.
	s.planOne(tok, file("a.wav", "audio/wav", 2*mib))

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for _, c := range up.ChunkURLs[1:] {
		sendChunk(t, c, video, http.StatusOK)
	}
	m := s.complete(tok, up.ID)
	if resp, body := get(t, m.URL, nil); resp.StatusCode != http.StatusOK || sha256hex(body) != sha256hex(video) {
		t.Errorf("download after space was freed: got %d, %d bytes; want the video", resp.StatusCode, len(body))
	}
}

// A server started on a disk already inside its reserve says so at
// start, before its clients hear "storage is full".
func TestStartInsideTheReserveWarns(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	dir := tmpfs.Mount(t, 32*mib)
	reserve := localfs.Reserve{Bytes: 16 * mib}
	tmpfs.FillTo(t, dir, 8*mib)
	logs := &syncBuffer{}
	apptest.StartLogged(t, slog.New(slog.NewTextHandler(logs, nil)), func(c *app.Config) { c.DataDir, c.DiskReserve = dir, reserve })
	if got := logs.String(); !strings.Contains(got, "less free space than its reserve") || !strings.Contains(got, "reserve_bytes=16777216") {
		t.Fatalf("the log of a start inside the reserve says nothing of it:\n%s", got)
	}
}
