package upload

import (
	"context"
	"io"
	"mime"
	"path/filepath"
	"strings"

	"github.com/spoolhq/spool/ent"
)

// UploadImage stores a small image sent whole in one request (GraphQL
// multipart uploadImage). It goes through the same path as any upload, a
// one-file batch whose chunks are received and then completed, so the
// type, size, quota, name and content checks are exactly the chunked
// path's. An image that fails them is cancelled at once, so its reserved
// bytes return to the quota instead of waiting for the sweeper.
//
// It returns INVALID_TYPE for anything but an image, FILE_TOO_LARGE above
// MaxInlineImageSize, and what InitBatch, ReceiveChunk and Complete return.
func (s *Service) UploadImage(ctx context.Context, userID string, f FileSpec, body io.Reader) (*ent.MediaFile, error) {
	// Multipart clients that cannot tell a part's type send none or
	// application/octet-stream; the name is then the best guess, and the
	// content sniffing of chunk 0 still has the last word.
	if m := normalizeMIME(f.MimeType); m == "" || m == "application/octet-stream" {
		f.MimeType = mime.TypeByExtension(strings.ToLower(filepath.Ext(f.FileName)))
	}
	if mt, ok := s.cfg.mediaTypeOf(f.MimeType); ok && mt != MediaImage {
		return nil, Errorf(CodeInvalidType, "uploadImage takes images; send %q (%s) with initBatch", f.FileName, f.MimeType)
	}
	if f.Size > s.cfg.MaxInlineImageSize {
		return nil, Errorf(CodeFileTooLarge, "uploadImage takes images up to %d bytes, %q is %d; send it with initBatch",
			s.cfg.MaxInlineImageSize, f.FileName, f.Size)
	}
	batch, err := s.InitBatch(ctx, userID, BatchSpec{Files: []FileSpec{f}})
	if err != nil {
		return nil, err
	}
	sess := batch.Uploads[0]
	m, err := s.receiveWhole(ctx, userID, sess, body)
	if err != nil {
		// The client may be gone; the reservation must still be freed.
		if _, cerr := s.Cancel(context.WithoutCancel(ctx), userID, sess.ID); cerr != nil && ErrorCode(cerr) != CodeAlreadyFinished {
			s.log.WarnContext(ctx, "cancelling a failed inline upload", "upload_id", sess.ID, "err", cerr)
		}
		return nil, err
	}
	return m, nil
}

// receiveWhole feeds body to the session chunk by chunk, as the plan
// cuts it, then completes the session.
func (s *Service) receiveWhole(ctx context.Context, userID string, sess *Session, body io.Reader) (*ent.MediaFile, error) {
	for i := range sess.TotalChunks {
		ref, err := sessionChunk(sess.UploadSession, i)
		if err != nil {
			return nil, err
		}
		// The session is the caller's and already loaded: receive, not
		// ReceiveChunk, which would load it again for every chunk.
		if _, err := s.receive(ctx, sess.UploadSession, ref, heldUnknown, io.LimitReader(body, ref.Size), ReceiveOptions{OwnerID: userID, ContentLength: -1}); err != nil {
			return nil, err
		}
	}
	// The declared size came from the same request as the bytes, but a
	// body that runs on past it is not the file that was described.
	if n, _ := io.CopyN(io.Discard, body, 1); n > 0 {
		return nil, Errorf(CodeChunkTooLarge, "%q has more bytes than its declared size %d", sess.FileName, sess.TotalSize)
	}
	return s.Complete(ctx, userID, sess.ID)
}
