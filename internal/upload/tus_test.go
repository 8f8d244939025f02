package upload_test

import (
	"bytes"
	"context"
	"crypto/sha1"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/spoolhq/spool/internal/upload"
)

// createTus creates a tus upload of data as a video.
func (e *testEnv) createTus(t *testing.T, userID string, data []byte) *upload.Session {
	t.Helper()
	sess, err := e.svc.CreateTus(context.Background(), userID, upload.TusFile{FileSpec: mp4Spec("clip.mp4", data)})
	if err != nil {
		t.Fatalf("CreateTus: %v", err)
	}
	if !sess.Tus || sess.Offset() != 0 {
		t.Fatalf("CreateTus gave tus=%v offset=%d, want a tus upload at 0", sess.Tus, sess.Offset())
	}
	return sess
}

// appendBytes appends body at offset, declaring its length.
func (e *testEnv) appendBytes(userID, id string, offset int64, body []byte, expect ...upload.Digest) (*upload.Session, error) {
	return e.svc.Append(context.Background(), userID, id, offset, bytes.NewReader(body),
		upload.AppendOptions{ContentLength: int64(len(body)), Expect: expect})
}

// offsetOf reads the upload's offset afresh.
func (e *testEnv) offsetOf(t *testing.T, userID, id string) int64 {
	t.Helper()
	sess, err := e.svc.Session(context.Background(), userID, id)
	if err != nil {
		t.Fatalf("Session(%s): %v", id, err)
	}
	return sess.Offset()
}

// completedBytes completes the upload and returns its file's bytes.
func (e *testEnv) completedBytes(t *testing.T, userID, id string) []byte {
	t.Helper()
	m, err := e.svc.Complete(context.Background(), userID, id)
	if err != nil {
		t.Fatalf("Complete(%s): %v", id, err)
	}
	got, err := os.ReadFile(filepath.Join(e.dir, "objects", filepath.FromSlash(m.StorageKey)))
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestTusAppendsOfAnySize sends a 12 MiB file (5 MiB chunks) in PATCHes
// of 1.5 MiB, which end inside chunks and cross their boundaries: after
// each, the offset is exactly the bytes sent, progress counts them, the
// chunks filled are received, and the file completes byte-exact.
func TestTusAppendsOfAnySize(t *testing.T) {
	t.Parallel()
	e := newTestService(t, testConfig())
	alice := e.user(t, "alice")
	data := mp4Bytes(12*MiB, 1)
	sess := e.createTus(t, alice, data)
	step := int64(3 * MiB / 2)
	for off := int64(0); off < int64(len(data)); off += step {
		end := min(off+step, int64(len(data)))
		got, err := e.appendBytes(alice, sess.ID, off, data[off:end])
		if err != nil {
			t.Fatalf("Append at %d: %v", off, err)
		}
		if got.Offset() != end {
			t.Fatalf("after appending [%d, %d): offset %d", off, end, got.Offset())
		}
		if got.Progress.UploadedBytes != end {
			t.Errorf("after appending [%d, %d): uploadedBytes %d, want %d", off, end, got.Progress.UploadedBytes, end)
		}
		if want := int(end / (5 * MiB)); end < int64(len(data)) && got.Progress.UploadedChunks != want {
			t.Errorf("after appending [%d, %d): %d chunks received, want %d", off, end, got.Progress.UploadedChunks, want)
		}
	}
	if got := e.completedBytes(t, alice, sess.ID); !bytes.Equal(got, data) {
		t.Fatalf("the completed file differs from what was sent (%d bytes, want %d)", len(got), len(data))
	}
	if evs := e.broker.eventsOf(sess.ID); len(evs) < 9 {
		t.Errorf("%d progress events published, want one per PATCH at least (9)", len(evs))
	}
}

// brokenBody yields n bytes of data, then fails as a dropped connection.
type brokenBody struct {
	r io.Reader
}

func (b *brokenBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		return n, io.ErrUnexpectedEOF
	}
	return n, err
}

// TestTusBrokenPatchKeepsItsBytes: a PATCH whose connection drops inside
// a chunk keeps every byte that arrived, so the client resumes from
// there and re-sends nothing it had sent.
func TestTusBrokenPatchKeepsItsBytes(t *testing.T) {
	t.Parallel()
	e := newTestService(t, testConfig())
	alice := e.user(t, "alice")
	data := mp4Bytes(11*MiB, 2)
	sess := e.createTus(t, alice, data)
	cut := int64(7*MiB + 12345) // inside chunk 1
	_, err := e.svc.Append(context.Background(), alice, sess.ID, 0, &brokenBody{bytes.NewReader(data[:cut])},
		upload.AppendOptions{ContentLength: int64(len(data))})
	if err != nil {
		t.Fatalf("Append of a broken body: %v, want what arrived kept", err)
	}
	if got := e.offsetOf(t, alice, sess.ID); got != cut {
		t.Fatalf("offset after the break = %d, want %d (every byte that arrived)", got, cut)
	}
	if _, err := e.appendBytes(alice, sess.ID, cut, data[cut:]); err != nil {
		t.Fatalf("resuming at %d: %v", cut, err)
	}
	if got := e.completedBytes(t, alice, sess.ID); !bytes.Equal(got, data) {
		t.Fatal("the completed file differs from what was sent")
	}
}

// TestTusChecksum: a PATCH under Upload-Checksum that matches is kept
// whole, across chunk boundaries; one that does not is kept not at all,
// and the offset stays where it was.
func TestTusChecksum(t *testing.T) {
	t.Parallel()
	e := newTestService(t, testConfig())
	alice := e.user(t, "alice")
	data := mp4Bytes(12*MiB, 3)
	sess := e.createTus(t, alice, data)
	first := data[:3*MiB]
	sum := sha1.Sum(first)
	if _, err := e.appendBytes(alice, sess.ID, 0, first, upload.Digest{Alg: "sha1", Sum: sum[:]}); err != nil {
		t.Fatalf("Append with a matching sha1: %v", err)
	}
	second := data[3*MiB : 9*MiB] // ends chunk 0, goes into chunk 1
	bad := sha1.Sum(second[1:])
	_, err := e.appendBytes(alice, sess.ID, 3*MiB, second, upload.Digest{Alg: "sha1", Sum: bad[:]})
	wantCode(t, err, upload.CodeChecksumMismatch)
	if got := e.offsetOf(t, alice, sess.ID); got != 3*MiB {
		t.Fatalf("offset after a mismatch = %d, want %d (nothing of the body kept)", got, 3*MiB)
	}
	good := sha1.Sum(second)
	if _, err := e.appendBytes(alice, sess.ID, 3*MiB, second, upload.Digest{Alg: "sha1", Sum: good[:]}); err != nil {
		t.Fatalf("re-sending with the right sha1: %v", err)
	}
	if _, err := e.appendBytes(alice, sess.ID, 9*MiB, data[9*MiB:]); err != nil {
		t.Fatal(err)
	}
	if got := e.completedBytes(t, alice, sess.ID); !bytes.Equal(got, data) {
		t.Fatal("the completed file differs from what was sent")
	}
}

// TestTusRefusals: what Append refuses, and that a refusal moves nothing.
func TestTusRefusals(t *testing.T) {
	t.Parallel()
	e := newTestService(t, testConfig())
	alice, bob := e.user(t, "alice"), e.user(t, "bob")
	data := mp4Bytes(6*MiB, 4)
	sess := e.createTus(t, alice, data)
	if _, err := e.appendBytes(alice, sess.ID, 0, data[:MiB]); err != nil {
		t.Fatal(err)
	}

	_, err := e.appendBytes(alice, sess.ID, 0, data[:MiB])
	wantCode(t, err, upload.CodeOffsetMismatch)
	_, err = e.appendBytes(alice, sess.ID, 2*MiB, data[2*MiB:3*MiB])
	wantCode(t, err, upload.CodeOffsetMismatch)
	_, err = e.appendBytes(bob, sess.ID, MiB, data[MiB:2*MiB])
	wantCode(t, err, upload.CodeNotFound)
	_, err = e.appendBytes(alice, "upl_nope", 0, data[:MiB])
	wantCode(t, err, upload.CodeNotFound)
	_, err = e.svc.Append(context.Background(), alice, sess.ID, MiB, bytes.NewReader(data[MiB:]),
		upload.AppendOptions{ContentLength: int64(len(data))})
	wantCode(t, err, upload.CodeChunkTooLarge)
	// Undeclared length: the body is read to the upload's end, then
	// found too long.
	_, err = e.svc.Append(context.Background(), alice, sess.ID, MiB, bytes.NewReader(append(bytes.Clone(data[MiB:]), 'x')),
		upload.AppendOptions{ContentLength: -1})
	wantCode(t, err, upload.CodeChunkTooLarge)

	// The chunk API is not for tus uploads, and Append not for others.
	_, err = e.svc.ChunkURL(context.Background(), alice, sess.ID, 0)
	wantCode(t, err, upload.CodeBadUserInput)
	_, err = e.svc.ReceiveChunk(context.Background(), sess.ID, 0, bytes.NewReader(data[:5*MiB]), upload.ReceiveOptions{ContentLength: 5 * MiB})
	wantCode(t, err, upload.CodeBadUserInput)
	other := e.initOne(t, alice, mp4Spec("other.mp4", data))
	_, err = e.appendBytes(alice, other.ID, 0, data[:MiB])
	wantCode(t, err, upload.CodeNotFound)

	// Cancelled: nothing more is taken.
	if _, err := e.svc.Cancel(context.Background(), alice, sess.ID); err != nil {
		t.Fatal(err)
	}
	_, err = e.appendBytes(alice, sess.ID, MiB, data[MiB:2*MiB])
	wantCode(t, err, upload.CodeAlreadyFinished)
}

// TestTusFirstBytesAreSniffed: a tus upload's first bytes must be of its
// declared type, as chunk 0's are; a partial upload has no type yet.
func TestTusFirstBytesAreSniffed(t *testing.T) {
	t.Parallel()
	e := newTestService(t, testConfig())
	alice := e.user(t, "alice")
	png := pngBytes(2 * MiB)
	sess := e.createTus(t, alice, mp4Bytes(2*MiB, 5))
	_, err := e.appendBytes(alice, sess.ID, 0, png[:MiB])
	wantCode(t, err, upload.CodeTypeMismatch)
	if got := e.offsetOf(t, alice, sess.ID); got != 0 {
		t.Fatalf("offset after a refused first PATCH = %d, want 0", got)
	}

	part, err := e.svc.CreateTus(context.Background(), alice, upload.TusFile{FileSpec: upload.FileSpec{Size: 2 * MiB}, Part: true})
	if err != nil {
		t.Fatalf("CreateTus of a part without name or type: %v", err)
	}
	if !part.TusPart {
		t.Fatal("a partial upload is not marked as a part")
	}
	if _, err := e.appendBytes(alice, part.ID, 0, png); err != nil {
		t.Fatalf("appending to a part: %v", err)
	}
	_, err = e.svc.CreateTus(context.Background(), alice, upload.TusFile{FileSpec: upload.FileSpec{FileName: "x", Size: MiB}})
	wantCode(t, err, upload.CodeInvalidType)
}

// failingPieces is a store whose WritePiece fails after storing half of
// what it is given.
type failingPieces struct{ upload.Store }

func (f failingPieces) WritePiece(ctx context.Context, key string, chunk upload.ChunkRef, at int64, body io.Reader) (int64, error) {
	n, err := f.Store.WritePiece(ctx, key, chunk, at, io.LimitReader(body, (chunk.Size-at)/2))
	if err != nil {
		return n, err
	}
	return n, errors.New("disk on fire")
}

// TestTusStorageFailure: when the store fails, the offset stays where
// the last recorded piece left it and the error is retryable.
func TestTusStorageFailure(t *testing.T) {
	t.Parallel()
	e := newTestServiceThrough(t, testConfig(), func(s upload.Store) upload.Store { return failingPieces{s} })
	alice := e.user(t, "alice")
	data := mp4Bytes(6*MiB, 6)
	sess := e.createTus(t, alice, data)
	_, err := e.appendBytes(alice, sess.ID, 0, data)
	wantCode(t, err, upload.CodeStorageUnavailable)
	if got := e.offsetOf(t, alice, sess.ID); got != 0 {
		t.Fatalf("offset after a storage failure = %d, want 0", got)
	}
}

// sendParts creates a partial upload for each slice of data cut at the
// given sizes and sends it whole, returning their ids.
func (e *testEnv) sendParts(t *testing.T, userID string, data []byte, sizes ...int64) []string {
	t.Helper()
	var ids []string
	off := int64(0)
	for _, n := range sizes {
		part, err := e.svc.CreateTus(context.Background(), userID, upload.TusFile{FileSpec: upload.FileSpec{Size: n}, Part: true})
		if err != nil {
			t.Fatalf("CreateTus of a part: %v", err)
		}
		if _, err := e.appendBytes(userID, part.ID, 0, data[off:off+n]); err != nil {
			t.Fatalf("sending part [%d, %d): %v", off, off+n, err)
		}
		ids = append(ids, part.ID)
		off += n
	}
	return ids
}

// TestTusConcat joins three partial uploads of odd sizes, sent in any
// order, into a file that completes byte-exact; the parts end and their
// quota becomes the file's.
func TestTusConcat(t *testing.T) {
	t.Parallel()
	e := newTestService(t, testConfig())
	alice := e.user(t, "alice")
	data := mp4Bytes(13*MiB+7, 7)
	ids := e.sendParts(t, alice, data, 5*MiB+1, 3*MiB+5, 5*MiB+1)
	if got := e.reserved(t, alice); got != int64(len(data)) {
		t.Fatalf("reserved %d bytes for the parts, want %d", got, len(data))
	}
	sess, m, err := e.svc.ConcatTus(context.Background(), alice, mp4Spec("joined.mp4", data), ids)
	if err != nil {
		t.Fatalf("ConcatTus: %v", err)
	}
	if sess.Status != upload.StatusCompleted || m.FileSize != int64(len(data)) {
		t.Fatalf("joined upload is %s with a %d-byte file, want COMPLETED with %d", sess.Status, m.FileSize, len(data))
	}
	got, err := os.ReadFile(filepath.Join(e.dir, "objects", filepath.FromSlash(m.StorageKey)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("the joined file differs from the parts sent")
	}
	if got := e.reserved(t, alice); got != int64(len(data)) {
		t.Errorf("reserved %d bytes after the join, want %d (the file's)", got, len(data))
	}
	for _, id := range ids {
		if st := e.stored(t, id).Status; st != upload.StatusCancelled {
			t.Errorf("part %s is %s after the join, want CANCELLED", id, st)
		}
		if p := e.stagingPath(t, id); exists(t, p) {
			t.Errorf("part %s's bytes are still stored at %s", id, p)
		}
	}
	// A part cannot be joined twice.
	_, _, err = e.svc.ConcatTus(context.Background(), alice, mp4Spec("again.mp4", data), ids)
	wantCode(t, err, upload.CodeBadUserInput)
}

// TestTusConcatRefusals: parts that are not the caller's finished parts,
// a size that is not their sum, and bytes not of the declared type.
func TestTusConcatRefusals(t *testing.T) {
	t.Parallel()
	e := newTestService(t, testConfig())
	alice, bob := e.user(t, "alice"), e.user(t, "bob")
	data := mp4Bytes(4*MiB, 8)
	ids := e.sendParts(t, alice, data, 2*MiB, 2*MiB)
	unfinished, err := e.svc.CreateTus(context.Background(), alice, upload.TusFile{FileSpec: upload.FileSpec{Size: MiB}, Part: true})
	if err != nil {
		t.Fatal(err)
	}
	whole := e.createTus(t, alice, data)
	for name, tc := range map[string]struct {
		user string
		spec upload.FileSpec
		ids  []string
		want upload.Code
	}{
		"none":             {alice, mp4Spec("x.mp4", data), nil, upload.CodeBadUserInput},
		"another user's":   {bob, mp4Spec("x.mp4", data), ids, upload.CodeBadUserInput},
		"unfinished part":  {alice, mp4Spec("x.mp4", make([]byte, 5*MiB)), append(ids, unfinished.ID), upload.CodeBadUserInput},
		"not a part":       {alice, mp4Spec("x.mp4", make([]byte, 8*MiB)), append(ids, whole.ID), upload.CodeBadUserInput},
		"listed twice":     {alice, mp4Spec("x.mp4", make([]byte, 6*MiB)), append(ids, ids[0]), upload.CodeBadUserInput},
		"size not the sum": {alice, mp4Spec("x.mp4", data[:3*MiB]), ids, upload.CodeBadUserInput},
		"type refused":     {alice, upload.FileSpec{FileName: "x.exe", Size: 4 * MiB, MimeType: "application/x-msdownload"}, ids, upload.CodeInvalidType},
	} {
		_, _, err := e.svc.ConcatTus(context.Background(), tc.user, tc.spec, tc.ids)
		if upload.ErrorCode(err) != tc.want {
			t.Errorf("%s: err = %v, want %s", name, err, tc.want)
		}
	}
	for _, id := range ids {
		if st := e.stored(t, id).Status; st != upload.StatusUploading {
			t.Fatalf("part %s is %s after refused joins, want UPLOADING (untouched)", id, st)
		}
	}
	// Bytes of another type: the join fails, its quota returns.
	png := pngBytes(4 * MiB)
	pngIDs := e.sendParts(t, alice, png, 3*MiB, MiB)
	before := e.reserved(t, alice)
	_, _, err = e.svc.ConcatTus(context.Background(), alice, mp4Spec("fake.mp4", png), pngIDs)
	wantCode(t, err, upload.CodeTypeMismatch)
	if got := e.reserved(t, alice); got != before-4*MiB {
		t.Errorf("reserved %d after a refused join, want %d (the parts' quota returned)", got, before-4*MiB)
	}
}

// keepingLess is a store whose WritePiece, when the body breaks, keeps
// nothing of what it read, as GCS does when it cannot finalise the piece.
type keepingLess struct{ upload.Store }

func (k keepingLess) WritePiece(ctx context.Context, key string, chunk upload.ChunkRef, at int64, body io.Reader) (int64, error) {
	n, err := io.Copy(io.Discard, body)
	if err != nil {
		return 0, errors.Join(err, errors.New("piece not kept"))
	}
	return k.Store.WritePiece(ctx, key, chunk, at, bytes.NewReader(make([]byte, n)))
}

// TestTusBrokenBodyAndStoreFailure: a body that breaks while the store
// keeps nothing of it records nothing, so the offset (and the tail's
// CRC32C) stay those of what is stored, and the upload still completes.
func TestTusBrokenBodyAndStoreFailure(t *testing.T) {
	t.Parallel()
	e := newTestServiceThrough(t, testConfig(), func(s upload.Store) upload.Store { return keepingLess{s} })
	alice := e.user(t, "alice")
	data := mp4Bytes(6*MiB, 11)
	sess := e.createTus(t, alice, data)
	_, err := e.svc.Append(context.Background(), alice, sess.ID, 0, &brokenBody{bytes.NewReader(data[:MiB])},
		upload.AppendOptions{ContentLength: int64(len(data))})
	wantCode(t, err, upload.CodeStorageUnavailable)
	if got := e.offsetOf(t, alice, sess.ID); got != 0 {
		t.Fatalf("offset after a piece the store did not keep = %d, want 0", got)
	}
}
