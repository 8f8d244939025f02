package upload

import (
	"context"
	"errors"
	"io"

	"github.com/spoolhq/spool/ent"
)

// tus uploads (docs/DESIGN.md, "tus"). A tus client creates an upload
// with POST /files/, learns its offset with HEAD and appends bytes with
// PATCH at that offset; internal/tus speaks the protocol (through tusd's
// handler) and calls the methods here. A tus upload is a spool upload:
// created under initBatch's rules, stored in the same chunks, completed
// by the same assembly, published to the same subscribers. What differs
// is how bytes arrive: by offset, in PATCHes of any size, so a PATCH may
// end inside a chunk. The bytes it kept there are the session's tail.

// TusFile is what a tus creation request says of its upload.
type TusFile struct {
	FileSpec
	// Part marks a partial upload (Upload-Concat: partial): bytes to be
	// joined into another upload by ConcatTus. It has no name or type of
	// its own, so it is not type-checked, never sniffed, and never shown
	// to subscribers or GraphQL; its bytes count against the quota.
	Part bool
}

// errTusNotImplemented is returned by the parts of the tus service not
// written yet.
var errTusNotImplemented = errors.New("not implemented yet")

// CreateTus creates one tus upload for userID with initBatch's rules
// (type, size limits, quota, fingerprint resume among the user's tus
// uploads) in a batch of its own. It returns what InitBatch returns for
// one file.
func (s *Service) CreateTus(ctx context.Context, userID string, f TusFile) (*Session, error) {
	return nil, errTusNotImplemented
}

// Offset is how many bytes of a tus upload are stored, from the first:
// where the next PATCH must start. It equals TotalSize once every byte is
// stored.
func (sess *Session) Offset() int64 {
	return min(sess.TotalSize, int64(sess.UploadSession.ReceivedChunks)*sess.ChunkSize) + sess.TailBytes
}

// AppendOptions describe one PATCH's body.
type AppendOptions struct {
	// ContentLength is the body's declared length, or -1 if unknown.
	ContentLength int64
	// Expect are the checksums the client declared for the whole body
	// (tus's Upload-Checksum). With one, the body is all or nothing: if
	// it does not match, nothing of it is kept and Append returns
	// CHECKSUM_MISMATCH.
	Expect []Digest
	// Admit, if set, is asked before a byte is read, as for a chunk.
	Admit Admitter
}

// Append stores body at offset of userID's tus upload id, which must be
// where the upload's stored bytes end (Offset), and returns the upload's
// progress with the new offset. Every byte that arrives is kept, even
// when body ends or breaks inside a chunk, except under a declared
// checksum that does not match. Chunks it fills are received as chunk
// PUTs are (stored in place on disk, as parts on GCS, counted and
// published); the last byte does not complete the upload: the caller
// calls Complete.
//
// It returns NOT_FOUND (also for another user's upload), OFFSET_MISMATCH
// when offset is not the upload's, CHUNK_TOO_LARGE for a body past the
// upload's size, CHECKSUM_MISMATCH, TYPE_MISMATCH (first bytes),
// SESSION_EXPIRED, ALREADY_FINISHED, STORAGE_UNAVAILABLE, or what
// opts.Admit returns.
func (s *Service) Append(ctx context.Context, userID, id string, offset int64, body io.Reader, opts AppendOptions) (*Session, error) {
	return nil, errTusNotImplemented
}

// ConcatTus creates an upload of f from userID's finished partial tus
// uploads, joined in the order given (tus concatenation), and completes
// it: the store joins the parts' bytes itself (GCS composes them), the
// file's first bytes are checked against its type, and the parts are
// released. It returns the new upload and its media file, or
// BAD_USER_INPUT for a part that is not a finished part of the caller's,
// INVALID_TYPE, FILE_TOO_LARGE, QUOTA_EXCEEDED, TYPE_MISMATCH or
// STORAGE_UNAVAILABLE.
func (s *Service) ConcatTus(ctx context.Context, userID string, f FileSpec, partIDs []string) (*Session, *ent.MediaFile, error) {
	return nil, nil, errTusNotImplemented
}
