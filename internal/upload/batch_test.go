package upload_test

import (
	"context"
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/spoolhq/spool/ent"
	"github.com/spoolhq/spool/internal/upload"
)

func ptr[T any](v T) *T { return &v }

func TestInitBatchValidation(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.MaxBatchFiles = 3
	cfg.DefaultQuota = 100 * MiB
	cfg.MaxSize = map[upload.MediaType]int64{
		upload.MediaVideo: 40 * MiB,
		upload.MediaImage: 2 * MiB,
		upload.MediaAudio: 8 * MiB,
	}
	e := newTestService(t, cfg)
	owner := e.user(t, "alice")
	ctx := context.Background()

	valid := upload.FileSpec{FileName: "ok.mp4", Size: 3 * MiB, MimeType: "video/mp4"}
	with := func(change func(f *upload.FileSpec)) upload.FileSpec {
		f := upload.FileSpec{FileName: "bad.mp4", Size: 3 * MiB, MimeType: "video/mp4"}
		change(&f)
		return f
	}
	tests := []struct {
		name  string
		files []upload.FileSpec
		chan_ *string
		want  upload.Code
	}{
		{"no files", nil, nil, upload.CodeBadUserInput},
		{"too many files", []upload.FileSpec{valid, valid, valid, valid}, nil, upload.CodeBatchTooLarge},
		{"zero size", []upload.FileSpec{valid, with(func(f *upload.FileSpec) { f.Size = 0 })}, nil, upload.CodeBadUserInput},
		{"negative size", []upload.FileSpec{valid, with(func(f *upload.FileSpec) { f.Size = -1 })}, nil, upload.CodeBadUserInput},
		{"no name", []upload.FileSpec{valid, with(func(f *upload.FileSpec) { f.FileName = "  " })}, nil, upload.CodeBadUserInput},
		{"sha256 not hex", []upload.FileSpec{valid, with(func(f *upload.FileSpec) { f.SHA256 = ptr(strings.Repeat("g", 64)) })}, nil, upload.CodeBadUserInput},
		{"sha256 too short", []upload.FileSpec{valid, with(func(f *upload.FileSpec) { f.SHA256 = ptr(strings.Repeat("a", 62)) })}, nil, upload.CodeBadUserInput},
		{"sha256 too long", []upload.FileSpec{valid, with(func(f *upload.FileSpec) { f.SHA256 = ptr(strings.Repeat("a", 66)) })}, nil, upload.CodeBadUserInput},
		{"empty fingerprint", []upload.FileSpec{valid, with(func(f *upload.FileSpec) { f.Fingerprint = ptr("") })}, nil, upload.CodeBadUserInput},
		{"huge fingerprint", []upload.FileSpec{valid, with(func(f *upload.FileSpec) { f.Fingerprint = ptr(strings.Repeat("f", 513)) })}, nil, upload.CodeBadUserInput},
		{"negative duration", []upload.FileSpec{valid, with(func(f *upload.FileSpec) { f.DurationSeconds = ptr(-1) })}, nil, upload.CodeBadUserInput},
		{"long channel id", []upload.FileSpec{valid}, ptr(strings.Repeat("c", 257)), upload.CodeBadUserInput},
		{"unaccepted type", []upload.FileSpec{valid, with(func(f *upload.FileSpec) { f.MimeType = "application/pdf" })}, nil, upload.CodeInvalidType},
		{"no type", []upload.FileSpec{valid, with(func(f *upload.FileSpec) { f.MimeType = "" })}, nil, upload.CodeInvalidType},
		{"malformed type", []upload.FileSpec{valid, with(func(f *upload.FileSpec) { f.MimeType = "video/" })}, nil, upload.CodeInvalidType},
		{"video too large", []upload.FileSpec{valid, with(func(f *upload.FileSpec) { f.Size = 40*MiB + 1 })}, nil, upload.CodeFileTooLarge},
		{"image too large", []upload.FileSpec{valid, with(func(f *upload.FileSpec) { f.MimeType = "image/png"; f.Size = 2*MiB + 1 })}, nil, upload.CodeFileTooLarge},
		{"audio too large", []upload.FileSpec{valid, with(func(f *upload.FileSpec) { f.MimeType = "audio/mpeg"; f.Size = 8*MiB + 1 })}, nil, upload.CodeFileTooLarge},
		// The first file is reserved and prepared before the second
		// fails: the transaction and the storage must both roll back.
		{"over quota", []upload.FileSpec{valid, with(func(f *upload.FileSpec) { f.Size = 40 * MiB })}, ptr("ch"), upload.CodeQuotaExceeded},
	}
	e.setQuota(t, owner, 40*MiB)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.svc.InitBatch(ctx, owner, upload.BatchSpec{Files: tt.files, ChannelID: tt.chan_})
			wantCode(t, err, tt.want)
			if upload.ErrorMessage(err) == "internal error" || upload.ErrorMessage(err) == "" {
				t.Errorf("message = %q, want one a person can act on", upload.ErrorMessage(err))
			}
			if n := e.countSessions(t, owner); n != 0 {
				t.Errorf("sessions after a failed batch = %d, want 0", n)
			}
			if n := e.countBatches(t, owner); n != 0 {
				t.Errorf("batches after a failed batch = %d, want 0", n)
			}
			if got := e.reserved(t, owner); got != 0 {
				t.Errorf("reserved after a failed batch = %d, want 0", got)
			}
			if files := e.stagingFiles(t); len(files) != 0 {
				t.Errorf("staging files after a failed batch = %v, want none", files)
			}
		})
	}

	// The limits themselves are allowed.
	b, err := e.svc.InitBatch(ctx, owner, upload.BatchSpec{Files: []upload.FileSpec{
		{FileName: "a.png", Size: 2 * MiB, MimeType: "image/png"},
		{FileName: "b.mp3", Size: 8 * MiB, MimeType: "audio/mpeg"},
		{FileName: "c.mp4", Size: 30 * MiB, MimeType: "video/mp4"},
	}})
	if err != nil {
		t.Fatalf("InitBatch at the limits = %v, want success", err)
	}
	if len(b.Uploads) != 3 {
		t.Fatalf("uploads = %d, want 3", len(b.Uploads))
	}
}

func TestInitBatchPlansFiles(t *testing.T) {
	t.Parallel()
	e := newTestService(t, testConfig())
	owner := e.user(t, "alice")
	upper := strings.ToUpper(sha256Hex(file11))
	b, err := e.svc.InitBatch(context.Background(), owner, upload.BatchSpec{Files: []upload.FileSpec{
		{FileName: "small.png", Size: 1 * MiB, MimeType: "image/png"},
		{FileName: "../../etc/Clip 1.mp4", Size: int64(len(file11)), MimeType: "Video/MP4; codecs=avc1", SHA256: &upper},
	}})
	if err != nil {
		t.Fatal(err)
	}
	small, clip := b.Uploads[0], b.Uploads[1]
	if small.Strategy != upload.StrategySingle || small.TotalChunks != 1 || small.ChunkSize != 1*MiB {
		t.Errorf("1 MiB file planned as %s, %d chunks of %d; want SINGLE, 1 of %d", small.Strategy, small.TotalChunks, small.ChunkSize, 1*MiB)
	}
	if clip.Strategy != upload.StrategyChunked || clip.TotalChunks != 3 || clip.ChunkSize != 5*MiB {
		t.Errorf("11 MiB file planned as %s, %d chunks of %d; want CHUNKED, 3 of %d", clip.Strategy, clip.TotalChunks, clip.ChunkSize, 5*MiB)
	}
	if clip.MimeType != "video/mp4" {
		t.Errorf("mime type = %q, want the normalised %q", clip.MimeType, "video/mp4")
	}
	if clip.Sha256 == nil || *clip.Sha256 != sha256Hex(file11) {
		t.Errorf("sha256 = %v, want it lower-cased", clip.Sha256)
	}
	if clip.OriginalName != "../../etc/Clip 1.mp4" || strings.Contains(clip.FileName, "/") || clip.FileName == "" {
		t.Errorf("file name = %q (original %q), want a sanitised name without slashes", clip.FileName, clip.OriginalName)
	}
	if !strings.HasPrefix(clip.ID, "upl_") || !strings.HasPrefix(b.ID, "bat_") {
		t.Errorf("ids = %q, %q; want upl_… and bat_…", clip.ID, b.ID)
	}
	if want := e.clock.Now().Add(time.Hour); !clip.ExpiresAt.Equal(want) {
		t.Errorf("expires at %v, want %v", clip.ExpiresAt, want)
	}

	urls := e.chunkURLs(t, clip)
	if len(urls) != 3 {
		t.Fatalf("chunk URLs = %d, want 3", len(urls))
	}
	for i, u := range urls {
		wantSize := 5 * MiB
		if i == 2 {
			wantSize = 1 * MiB
		}
		if u.ChunkIndex != i || u.Offset != int64(i)*5*MiB || u.Size != wantSize || u.Method != "PUT" {
			t.Errorf("URL %d = %+v, want chunk %d at %d, %d bytes, PUT", i, u, i, int64(i)*5*MiB, wantSize)
		}
		parsed, err := url.Parse(u.URL)
		if err != nil {
			t.Fatalf("URL %d %q: %v", i, u.URL, err)
		}
		if want := fmt.Sprintf("/uploads/%s/chunks/%d", clip.ID, i); parsed.Host != "spool.test" || parsed.Path != want {
			t.Errorf("URL %d = %q, want http://spool.test%s", i, u.URL, want)
		}
		if parsed.Query().Get("sig") == "" || parsed.Query().Get("exp") != fmt.Sprint(u.ExpiresAt.Unix()) {
			t.Errorf("URL %d = %q, want exp=%d and a sig", i, u.URL, u.ExpiresAt.Unix())
		}
		if want := e.clock.Now().Add(10 * time.Minute); !u.ExpiresAt.Equal(want) {
			t.Errorf("URL %d expires at %v, want %v", i, u.ExpiresAt, want)
		}
	}
}

func TestChunkURLCap(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.MaxChunkURLs = 2
	e := newTestService(t, cfg)
	owner := e.user(t, "alice")
	sess := e.initOne(t, owner, mp4Spec("a.mp4", file11))
	if got := len(e.chunkURLs(t, sess)); got != 2 {
		t.Fatalf("chunk URLs = %d, want the cap 2", got)
	}
	// Retry is not capped, and ChunkURL signs any chunk on demand.
	urls, err := e.svc.Retry(context.Background(), owner, sess.ID)
	if err != nil || len(urls) != 3 {
		t.Fatalf("Retry = %d URLs, %v; want 3, nil", len(urls), err)
	}
	u, err := e.svc.ChunkURL(context.Background(), owner, sess.ID, 2)
	if err != nil || u.ChunkIndex != 2 || u.Size != 1*MiB {
		t.Fatalf("ChunkURL(2) = %+v, %v; want chunk 2 of 1 MiB", u, err)
	}
	for _, i := range []int{-1, 3} {
		_, err := e.svc.ChunkURL(context.Background(), owner, sess.ID, i)
		wantCode(t, err, upload.CodeInvalidChunk)
	}
	// A chunk URL never outlives its upload.
	e.clock.Advance(time.Hour - time.Minute)
	u, err = e.svc.ChunkURL(context.Background(), owner, sess.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !u.ExpiresAt.Equal(sess.ExpiresAt) {
		t.Errorf("URL expires at %v, want the upload's expiry %v", u.ExpiresAt, sess.ExpiresAt)
	}
}

func TestResumeByFingerprint(t *testing.T) {
	t.Parallel()
	e := newTestService(t, testConfig())
	alice := e.user(t, "alice")
	bob := e.user(t, "bob")
	ctx := context.Background()
	spec := mp4Spec("a.mp4", file11)
	spec.Fingerprint = ptr("a.mp4|11534336|1730000000")

	first := e.initOne(t, alice, spec)
	e.mustSend(t, first.ID, 0, file11)
	e.mustSend(t, first.ID, 2, file11)
	reserved := e.reserved(t, alice)

	b, err := e.svc.InitBatch(ctx, alice, upload.BatchSpec{Files: []upload.FileSpec{spec}})
	if err != nil {
		t.Fatalf("InitBatch again: %v", err)
	}
	again := b.Uploads[0]
	if again.ID != first.ID {
		t.Fatalf("second init = upload %s, want the resumed %s", again.ID, first.ID)
	}
	if again.BatchID != b.ID || b.ID == first.BatchID {
		t.Errorf("resumed upload is in batch %s, want the new batch %s", again.BatchID, b.ID)
	}
	checkCounts(t, again.Progress, 6*MiB, 2, []int{})
	if got := e.reserved(t, alice); got != reserved {
		t.Errorf("reserved after resume = %d, want %d (no new reservation)", got, reserved)
	}
	if n := e.countSessions(t, alice); n != 1 {
		t.Errorf("sessions = %d, want 1", n)
	}
	urls := e.chunkURLs(t, again)
	if len(urls) != 1 || urls[0].ChunkIndex != 1 {
		t.Errorf("chunk URLs of the resumed upload = %+v, want only chunk 1", urls)
	}

	// Another user's identical file starts afresh.
	theirs := e.initOne(t, bob, spec)
	if theirs.ID == first.ID {
		t.Fatalf("bob resumed alice's upload %s", first.ID)
	}
	checkCounts(t, theirs.Progress, 0, 0, []int{})

	// A different size is a different file.
	bigger := spec
	bigger.Size++
	other := e.initOne(t, alice, bigger)
	if other.ID == first.ID {
		t.Errorf("a file of another size resumed %s", first.ID)
	}
	if got, want := e.reserved(t, alice), reserved+bigger.Size; got != want {
		t.Errorf("reserved = %d, want %d", got, want)
	}
	// So is another type.
	audio := spec
	audio.MimeType = "audio/mp4"
	if s := e.initOne(t, alice, audio); s.ID == first.ID {
		t.Errorf("a file of another type resumed %s", first.ID)
	}
}

func TestResumeBySHA256(t *testing.T) {
	t.Parallel()
	e := newTestService(t, testConfig())
	alice := e.user(t, "alice")
	spec := mp4Spec("a.mp4", file11)
	spec.SHA256 = ptr(sha256Hex(file11))
	first := e.initOne(t, alice, spec)
	e.mustSend(t, first.ID, 1, file11)

	upper := spec
	upper.SHA256 = ptr(strings.ToUpper(*spec.SHA256))
	again := e.initOne(t, alice, upper)
	if again.ID != first.ID {
		t.Fatalf("init with the same sha256 = %s, want the resumed %s", again.ID, first.ID)
	}
	checkCounts(t, again.Progress, 5*MiB, 1, []int{})
}

func TestNoResumeOfFinishedUploads(t *testing.T) {
	t.Parallel()
	e := newTestService(t, testConfig())
	alice := e.user(t, "alice")
	ctx := context.Background()
	spec := mp4Spec("a.mp4", file11)

	t.Run("expired", func(t *testing.T) {
		spec.Fingerprint = ptr("expired")
		first := e.initOne(t, alice, spec)
		e.mustSend(t, first.ID, 0, file11)
		e.clock.Advance(time.Hour + time.Second)
		again := e.initOne(t, alice, spec)
		if again.ID == first.ID {
			t.Fatalf("an expired upload %s was resumed", first.ID)
		}
		checkCounts(t, again.Progress, 0, 0, []int{})
	})
	t.Run("cancelled", func(t *testing.T) {
		spec.Fingerprint = ptr("cancelled")
		first := e.initOne(t, alice, spec)
		if _, err := e.svc.Cancel(ctx, alice, first.ID); err != nil {
			t.Fatal(err)
		}
		if again := e.initOne(t, alice, spec); again.ID == first.ID {
			t.Fatalf("a cancelled upload %s was resumed", first.ID)
		}
	})
	t.Run("completed", func(t *testing.T) {
		spec.Fingerprint = ptr("completed")
		first := e.initOne(t, alice, spec)
		e.sendAll(t, first, file11)
		if _, err := e.svc.Complete(ctx, alice, first.ID); err != nil {
			t.Fatal(err)
		}
		if again := e.initOne(t, alice, spec); again.ID == first.ID {
			t.Fatalf("a completed upload %s was resumed", first.ID)
		}
	})
}

// A refused type is answered with the formats a person would choose
// among, each once: aliases such as audio/wav and audio/x-wav are one
// WAV, and a type without a common name (added by the operator) shows as
// it is.
func TestInitBatchRefusalNamesEachFormatOnce(t *testing.T) {
	t.Parallel()
	custom := testConfig()
	custom.AllowedTypes = map[upload.MediaType][]string{
		upload.MediaVideo: {"video/mp4", "video/x-matroska"},
		upload.MediaImage: {"image/png", "image/jpeg"},
		upload.MediaAudio: {"audio/wav", "audio/x-wav", "audio/wave", "audio/mpeg"},
	}
	tests := []struct {
		name string
		cfg  upload.Config
		want string
	}{
		{"defaults", testConfig(), `file 1 ("notes.txt"): type "text/plain" is not accepted; send a video (MP4, WebM, MOV), ` +
			`image (JPEG, PNG, GIF, WebP) or audio (MP3, M4A, AAC, WAV, Ogg, FLAC, WebM) file`},
		{"operator's list", custom, `file 1 ("notes.txt"): type "text/plain" is not accepted; send a video (MP4, video/x-matroska), ` +
			`image (PNG, JPEG) or audio (WAV, MP3) file`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestService(t, tt.cfg)
			owner := e.user(t, "alice")
			_, err := e.svc.InitBatch(context.Background(), owner, upload.BatchSpec{Files: []upload.FileSpec{
				{FileName: "notes.txt", Size: 10, MimeType: "text/plain"},
			}})
			wantCode(t, err, upload.CodeInvalidType)
			if got := upload.ErrorMessage(err); got != tt.want {
				t.Errorf("message =\n  %s\nwant\n  %s", got, tt.want)
			}
		})
	}
}

// TestInitBatchAnswersTheStoredRows: initBatch answers with the uploads it
// inserted without reading them back, and what it answers is exactly what
// a read gives afterwards: every column, and the progress. The batch
// mixes new files with a resumed upload and a copy of a READY file (the
// two it does read), on both engines.
func TestInitBatchAnswersTheStoredRows(t *testing.T) {
	t.Parallel()
	onBothDatabases(t, func(t *testing.T, e *testEnv) {
		ctx := context.Background()
		alice := e.user(t, "alice")
		e.uploadReady(t, alice, "orig.mp4", smallVideo)
		resumed := mp4Spec("resumed.mp4", file11)
		resumed.Fingerprint = ptr("resumed.mp4|11534336|1730000000")
		first := e.initOne(t, alice, resumed)
		e.mustSend(t, first.ID, 1, file11)

		fresh := mp4Spec("new.mp4", file11)
		fresh.Fingerprint = ptr("new.mp4|11534336|1730000000")
		fresh.DurationSeconds = ptr(12)
		b, err := e.svc.InitBatch(ctx, alice, upload.BatchSpec{Files: []upload.FileSpec{
			fresh,
			resumed,
			withSHA256("copy.mp4", smallVideo, sha256Hex(smallVideo)),
			mp4Spec("other.mp4", smallVideo),
		}})
		if err != nil {
			t.Fatal(err)
		}
		if b.Uploads[1].ID != first.ID || !b.Uploads[2].Deduplicated {
			t.Fatalf("uploads %s (resumed %s) and deduplicated %v; want the batch to resume and copy",
				b.Uploads[1].ID, first.ID, b.Uploads[2].Deduplicated)
		}
		for i, got := range b.Uploads {
			read, err := e.svc.Session(ctx, alice, got.ID)
			if err != nil {
				t.Fatal(err)
			}
			// cmp compares times with their Equal: the same instant.
			if d := cmp.Diff(read.UploadSession, got.UploadSession,
				cmpopts.IgnoreUnexported(ent.UploadSession{}, ent.UploadSessionEdges{})); d != "" {
				t.Errorf("upload %d (%s) as answered differs from a read (-read +answered):\n%s", i, got.FileName, d)
			}
			if !got.Progress.At.Equal(read.Progress.At) || !reflect.DeepEqual(comparable(got.Progress), comparable(read.Progress)) {
				t.Errorf("upload %d (%s): progress %+v, a read gives %+v", i, got.FileName, got.Progress, read.Progress)
			}
			if g, r := e.chunkURLs(t, got), e.chunkURLs(t, read); len(g) != len(r) {
				t.Errorf("upload %d (%s): %d chunk URLs, a read gives %d", i, got.FileName, len(g), len(r))
			}
			// The row is not bound to initBatch's committed transaction.
			if batch, err := got.QueryBatch().Only(ctx); err != nil || batch.ID != b.ID {
				t.Errorf("upload %d (%s): its batch = %v, %v; want %s", i, got.FileName, batch, err, b.ID)
			}
		}
	})
}
