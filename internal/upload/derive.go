package upload

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spoolhq/spool/ent"
	"github.com/spoolhq/spool/ent/mediafile"
	"github.com/spoolhq/spool/internal/media"
)

// Processor makes what a frontend shows from a local file
// (internal/media's Processor).
type Processor interface {
	Process(ctx context.Context, src, mimeType, workDir string) (*media.Result, error)
}

// preparer is a Processor told, as a batch makes its uploads, the type of
// each file whose bytes are on their way, so that it can get ready to
// process it (media.Processor.Prepare). Prepare must return at once.
type preparer interface {
	Prepare(mimeType string)
}

// prepareFor tells the processor, if it would know, of the new uploads'
// types.
func (s *Service) prepareFor(made map[string]*ent.UploadSession) {
	p, ok := s.processor.(preparer)
	if !ok {
		return
	}
	for _, sess := range made {
		p.Prepare(sess.MimeType)
	}
}

// derivation is what the derive step adds to a READY media file: the
// facts processing read and the derivatives it stored.
type derivation struct {
	res    *media.Result
	thumbs []media.Thumbnail
	// storageKey and size are the faststart copy's, when processing
	// stored one in place of the original; "" otherwise.
	storageKey string
	size       int64
}

// apply adds the derivation to the update that saves the media.
func (d derivation) apply(u *ent.MediaFileUpdate) *ent.MediaFileUpdate {
	if d.res == nil {
		return u
	}
	u = u.SetNillableWidth(d.res.Width).SetNillableHeight(d.res.Height).
		SetNillableDuration(d.res.Duration).SetNillablePlaceholder(d.res.Placeholder)
	if len(d.thumbs) > 0 {
		u = u.SetThumbnails(d.thumbs)
	}
	if d.res.Video != nil {
		u = u.SetVideo(d.res.Video)
	}
	if d.res.Audio != nil {
		u = u.SetAudio(d.res.Audio)
	}
	if len(d.res.Skipped) > 0 {
		s := strings.Join(d.res.Skipped, "; ")
		// A READY file's processingError says what processing skipped.
		u = u.SetProcessingError(s)
	}
	if d.storageKey != "" {
		u = u.SetStorageKey(d.storageKey).SetFileSize(d.size)
	}
	return u
}

// badFileError is a problem with the file itself, which no retry fixes.
type badFileError struct{ problem string }

func (e *badFileError) Error() string { return e.problem }

// derive reads what a verified file's type allows from src, its local
// copy (internal/media), and stores the derivatives beside it, under
// OWNER/MEDIA_ID/ (invariant 10), with keys that depend only on the
// media, so a retried run overwrites its predecessor's. Scratch files go
// in work. A *badFileError ends processing FAILED at once; any other
// error is retried.
func (s *Service) derive(ctx context.Context, m *ent.MediaFile, src, work string) (derivation, error) {
	if s.processor == nil {
		return derivation{}, nil
	}
	res, err := s.processor.Process(ctx, src, m.MimeType, work)
	if media.IsBadFile(err) {
		return derivation{}, &badFileError{problem: err.Error()}
	}
	if err != nil {
		return derivation{}, err
	}
	d := derivation{res: res}
	for _, t := range res.Thumbnails {
		key := derivedKey(m.OwnerID, m.ID, filepath.Base(t.Path)) // media names them by kind and size
		if err := s.putFile(ctx, key, t.Path, t.MimeType); err != nil {
			return derivation{}, err
		}
		d.thumbs = append(d.thumbs, media.Thumbnail{Width: t.Width, Height: t.Height, MimeType: t.MimeType, Key: key})
	}
	if res.Faststart != "" {
		info, err := os.Stat(res.Faststart)
		if err != nil {
			return derivation{}, err
		}
		d.storageKey = derivedKey(m.OwnerID, m.ID, filepath.Base(res.Faststart))
		d.size = info.Size()
		if err := s.putFile(ctx, d.storageKey, res.Faststart, m.MimeType); err != nil {
			return derivation{}, err
		}
	}
	return d, nil
}

// localCopy returns a local file holding the object: the store's own
// file when it keeps one, else a copy downloaded into dir (read once,
// however many steps then read the file).
func (s *Service) localCopy(ctx context.Context, key, dir string) (string, error) {
	if lf, ok := s.store.(LocalFiler); ok {
		return lf.LocalPath(key)
	}
	obj, err := s.store.Open(ctx, key)
	if err != nil {
		return "", fmt.Errorf("opening the object: %w", err)
	}
	defer obj.Close()
	name := filepath.Join(dir, "original")
	f, err := os.Create(name)
	if err != nil {
		return "", err
	}
	_, err = io.Copy(f, ctxReader{ctx, obj})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("downloading the object: %w", err)
	}
	return name, nil
}

func (s *Service) putFile(ctx context.Context, key, name, contentType string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := s.store.Put(ctx, key, f, contentType); err != nil {
		return fmt.Errorf("storing %s: %w", key, err)
	}
	return nil
}

// hasReadyCopy reports whether the owner has another READY file with the
// same bytes under another key: shareDuplicate will make the media
// share it (dedup.go), so deriving its own would be wasted.
func (s *Service) hasReadyCopy(ctx context.Context, m *ent.MediaFile, sum string) (bool, error) {
	ok, err := s.db.MediaFile.Query().
		Where(append(readyCopies(m.OwnerID, sum, m.FileSize, m.MimeType),
			mediafile.IDNEQ(m.ID), mediafile.StorageKeyNEQ(m.StorageKey))...).
		Exist(ctx)
	if err != nil {
		return false, fmt.Errorf("looking for a copy of media %s: %w", m.ID, err)
	}
	return ok, nil
}
