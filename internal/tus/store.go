package tus

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/spoolhq/spool/internal/upload"
)

// Store is tusd's data store over spool's upload service: a tus upload
// is a spool upload (docs/DESIGN.md §tus). tusd calls it with the
// request's context, in which Handler put the caller and the request's
// facts; it answers every failure as a tusd error carrying spool's code.
type Store struct {
	uploads *upload.Service
	status  func(upload.Code) int
	log     *slog.Logger
}

var (
	_ handler.DataStore           = (*Store)(nil)
	_ handler.TerminaterDataStore = (*Store)(nil)
	_ handler.ConcaterDataStore   = (*Store)(nil)
	_ handler.Upload              = (*fileUpload)(nil)
	_ handler.TerminatableUpload  = (*fileUpload)(nil)
	_ handler.ConcatableUpload    = (*fileUpload)(nil)
)

// fileUpload is one tus upload as one request sees it.
type fileUpload struct {
	store  *Store
	req    *request
	userID string
	sess   *upload.Session
	// parts are a final upload's partial uploads, when this request
	// made it (tusd reports them on the POST's answer).
	parts []string
}

// NewUpload creates a tus upload (POST): a partial one (Upload-Concat:
// partial) for its bytes only, a final one by joining its parts
// (ConcatTus, done here since tusd asks the new upload's id before it
// calls ConcatUploads), or a whole file under initBatch's rules.
func (s *Store) NewUpload(ctx context.Context, info handler.FileInfo) (handler.Upload, error) {
	uid, req, err := callerOf(ctx)
	if err != nil {
		return nil, s.tusError(ctx, "creating a tus upload", err)
	}
	var spec upload.FileSpec
	if !info.IsPartial {
		if spec, err = fileSpec(info.MetaData); err != nil {
			return nil, s.tusError(ctx, "creating a tus upload", err)
		}
	}
	spec.Size = info.Size
	if info.IsFinal {
		sess, media, err := s.uploads.ConcatTus(ctx, uid, spec, info.PartialUploads)
		if err != nil {
			return nil, s.tusError(ctx, "joining tus uploads", err)
		}
		u := s.opened(uid, req, sess)
		u.parts = info.PartialUploads
		req.header.Set(HeaderMediaID, media.ID)
		return u, nil
	}
	sess, err := s.uploads.CreateTus(ctx, uid, upload.TusFile{FileSpec: spec, Part: info.IsPartial})
	if err != nil {
		return nil, s.tusError(ctx, "creating a tus upload", err)
	}
	return s.opened(uid, req, sess), nil
}

// fileSpec reads a file's name, type and optional fingerprint and
// sha256 from its Upload-Metadata (Uppy also sends name and type, which
// stand in for filename and filetype).
func fileSpec(meta handler.MetaData) (upload.FileSpec, error) {
	spec := upload.FileSpec{FileName: firstOf(meta, "filename", "name"), MimeType: firstOf(meta, "filetype", "type")}
	if spec.MimeType == "" {
		return spec, upload.Errorf(upload.CodeBadUserInput,
			"Upload-Metadata has no filetype: send the file's MIME type, base64-encoded (filetype dmlkZW8vbXA0 for video/mp4)")
	}
	if spec.FileName == "" {
		return spec, upload.Errorf(upload.CodeBadUserInput,
			"Upload-Metadata has no filename: send the file's name, base64-encoded (filename Y2xpcC5tcDQ= for clip.mp4)")
	}
	if v, ok := meta["fingerprint"]; ok {
		spec.Fingerprint = &v
	}
	if v, ok := meta["sha256"]; ok {
		spec.SHA256 = &v
	}
	return spec, nil
}

func firstOf(meta handler.MetaData, keys ...string) string {
	for _, k := range keys {
		if v := meta[k]; v != "" {
			return v
		}
	}
	return ""
}

// GetUpload loads the caller's tus upload. Someone else's upload, a
// spool upload not made through tus and a terminated one are NOT_FOUND;
// an expired one is SESSION_EXPIRED (410).
func (s *Store) GetUpload(ctx context.Context, id string) (handler.Upload, error) {
	uid, req, err := callerOf(ctx)
	if err != nil {
		return nil, s.tusError(ctx, "loading a tus upload", err)
	}
	sess, err := s.uploads.TusUpload(ctx, uid, id)
	switch {
	case err != nil:
		return nil, s.tusError(ctx, "loading a tus upload", err)
	case sess.Status == upload.StatusCancelled:
		err = upload.Errorf(upload.CodeNotFound, "tus upload %q was terminated", id)
	case sess.Status == upload.StatusExpired:
		err = upload.Errorf(upload.CodeSessionExpired, "tus upload %q expired at %s; start a new one",
			id, sess.ExpiresAt.UTC().Format(http.TimeFormat))
	}
	if err != nil {
		return nil, s.tusError(ctx, "loading a tus upload", err)
	}
	u := s.opened(uid, req, sess)
	if !sess.TusPart && isActive(sess.Status) && sess.Offset() == sess.TotalSize && req.method != http.MethodDelete {
		// Every byte is stored but the PATCH that stored the last one
		// failed to complete the upload (storage trouble, a crash). tusd
		// finishes an upload only on the PATCH that fills it, and a tus
		// client that HEADs a full upload takes it as done: finish it
		// here, or it would never complete.
		if err := u.FinishUpload(ctx); err != nil {
			return nil, err
		}
	}
	return u, nil
}

func isActive(st upload.Status) bool {
	return st == upload.StatusInitialized || st == upload.StatusUploading
}

// opened returns sess as a fileUpload, and sets the answer's headers
// about it.
func (s *Store) opened(uid string, req *request, sess *upload.Session) *fileUpload {
	u := &fileUpload{store: s, req: req, userID: uid}
	u.update(sess)
	return u
}

// update notes the upload's new state, and sets what the answer says of
// it: when it expires while unfinished (expiration extension), and its
// media once completed.
func (u *fileUpload) update(sess *upload.Session) {
	u.sess = sess
	hd := u.req.header
	if isActive(sess.Status) {
		hd.Set(HeaderExpires, sess.ExpiresAt.UTC().Format(http.TimeFormat))
	} else {
		hd.Del(HeaderExpires)
	}
	if id := sess.Progress.MediaID; id != nil {
		hd.Set(HeaderMediaID, *id)
	}
}

func (u *fileUpload) GetInfo(ctx context.Context) (handler.FileInfo, error) {
	sess := u.sess
	info := handler.FileInfo{
		ID: sess.ID, Size: sess.TotalSize, Offset: sess.Offset(),
		IsPartial: sess.TusPart, IsFinal: len(u.parts) > 0, PartialUploads: u.parts,
	}
	if !sess.TusPart {
		info.MetaData = handler.MetaData{"filename": sess.OriginalName, "filetype": sess.MimeType}
	}
	return info, nil
}

// WriteChunk appends a PATCH's (or a creation-with-upload POST's) body
// at offset. Every byte the service stored counts, even when the body
// broke: the offset tusd then tells the client is exactly what is
// stored, so a resumed client re-sends only what was lost.
func (u *fileUpload) WriteChunk(ctx context.Context, offset int64, src io.Reader) (int64, error) {
	if u.req.method == http.MethodPost && offset != 0 {
		// A creation that resumed an upload by its fingerprint: the body
		// starts at byte 0 but the upload is further on. Nothing of it
		// is taken; the answer's Upload-Offset tells where to go on.
		return 0, nil
	}
	body := &endedBody{r: src, watched: u.req.body}
	// u.sess was read for this request (GetUpload, NewUpload): AppendTo
	// does not read it again.
	sess, err := u.store.uploads.AppendTo(ctx, u.sess, offset, body,
		upload.AppendOptions{ContentLength: u.req.contentLength, Expect: u.req.expect})
	if err == nil {
		u.update(sess)
		return sess.Offset() - offset, nil
	}
	if upload.ErrorCode(err) == upload.CodeOffsetMismatch {
		return 0, u.store.tusError(ctx, "appending to a tus upload", err)
	}
	// Some bytes may have been stored before the failure.
	written := int64(0)
	if fresh, ferr := u.store.uploads.TusUpload(ctx, u.userID, u.sess.ID); ferr == nil {
		u.update(fresh)
		written = max(0, fresh.Offset()-offset)
	}
	if !body.ended() {
		// The body broke or tusd stopped it: tusd answers with why
		// (interrupted, read timeout, connection reset, too long).
		return written, nil
	}
	return written, u.store.tusError(ctx, "appending to a tus upload", err)
}

// endedBody is tusd's body as the service should see it: ending in io.EOF
// only if the client sent all of it, else in the reason it stopped.
type endedBody struct {
	r       io.Reader
	watched *watchedBody
	end     error
}

func (b *endedBody) Read(p []byte) (int, error) {
	if b.end != nil {
		return 0, b.end
	}
	n, err := b.r.Read(p)
	if errors.Is(err, io.EOF) {
		b.end = b.watched.endOf()
		err = b.end
	}
	return n, err
}

// ended reports whether the body reached the client's end, or has not
// ended yet (the service stopped reading first).
func (b *endedBody) ended() bool { return b.end == nil || b.end == io.EOF }

func (u *fileUpload) GetReader(ctx context.Context) (io.ReadCloser, error) {
	// Downloads are off (Config.DisableDownload): files are served by
	// /media/ once completed.
	return nil, handler.ErrNotImplemented
}

// FinishUpload completes an upload whose last byte is stored: the media
// file is created and processing starts; the answer names the media
// (Spool-Media-Id). A partial upload is left as it is, for its final
// upload to join.
func (u *fileUpload) FinishUpload(ctx context.Context) error {
	if u.sess.TusPart {
		return nil
	}
	media, err := u.store.uploads.Complete(ctx, u.userID, u.sess.ID)
	if err != nil {
		return u.store.tusError(ctx, "completing a tus upload", err)
	}
	u.req.header.Del(HeaderExpires)
	u.req.header.Set(HeaderMediaID, media.ID)
	return nil
}

func (s *Store) AsTerminatableUpload(up handler.Upload) handler.TerminatableUpload {
	return up.(*fileUpload)
}

// Terminate cancels the upload (termination extension: DELETE) and frees
// its bytes. A completed upload is ALREADY_FINISHED (409): its media is
// deleted through GraphQL (deleteMedia).
func (u *fileUpload) Terminate(ctx context.Context) error {
	if _, err := u.store.uploads.Cancel(ctx, u.userID, u.sess.ID); err != nil {
		return u.store.tusError(ctx, "terminating a tus upload", err)
	}
	return nil
}

func (s *Store) AsConcatableUpload(up handler.Upload) handler.ConcatableUpload {
	return up.(*fileUpload)
}

// ConcatUploads has nothing left to do: NewUpload joined the parts when
// it created the final upload (tusd passes them here in the same order).
func (u *fileUpload) ConcatUploads(ctx context.Context, partialUploads []handler.Upload) error {
	return nil
}

// callerOf returns the caller and the request's facts Handler put in ctx.
func callerOf(ctx context.Context) (string, *request, error) {
	uid, err := upload.CallerFrom(ctx)
	if err != nil {
		return "", nil, err
	}
	req, err := requestOf(ctx)
	return uid, req, err
}

// tusError turns err into the tusd error that answers it: spool's code
// and message in the body ("CODE: message"), the status of the one table
// (460 for CHECKSUM_MISMATCH, as tus's checksum extension says) and
// Retry-After when the error has a wait. Server failures are logged here,
// once, with what spool was doing (op); clients get only the code.
func (s *Store) tusError(ctx context.Context, op string, err error) handler.Error {
	code := upload.ErrorCode(err)
	status := s.status(code)
	if code == upload.CodeChecksumMismatch {
		status = checksumMismatchStatus
	}
	switch {
	case code == upload.CodeUnavailable:
		s.uploads.NoteUnavailable("tus: "+op, err)
	case status >= 500:
		s.log.ErrorContext(ctx, "tus request failed", "op", op, "code", code, "err", err)
	}
	e := handler.NewError(string(code), upload.ErrorMessage(err), status)
	if secs := upload.RetryAfterSeconds(err); secs > 0 {
		e.HTTPResponse.Header["Retry-After"] = strconv.FormatInt(secs, 10)
	}
	return e
}
