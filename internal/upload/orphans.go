package upload

import (
	"context"
	"fmt"
	"strings"

	"github.com/spoolhq/spool/ent"
	"github.com/spoolhq/spool/ent/mediafile"
	"github.com/spoolhq/spool/ent/uploadsession"
)

// derivedKey is where processing stores something it made from a media
// file: "OWNER/MEDIA_ID/name". The media id in the key lets the orphan
// sweep leave a file being processed alone before its row names the key.
func derivedKey(ownerID, mediaID, name string) string {
	return ownerID + "/" + mediaID + "/" + name
}

// mediaOfDerivedKey returns the media id of a key derivedKey made, or "".
// A name starting with "." is no derivative but a store's temporary (an
// interrupted Put of one, on local disk): nothing ever names it, so
// processing's protection must not keep it once that run is dead, or a
// temporary of a run killed mid-Put would outlive the orphan pass that
// follows the restart.
func mediaOfDerivedKey(key string) string {
	parts := strings.Split(key, "/")
	if len(parts) == 3 && strings.HasPrefix(parts[1], "med_") && !strings.HasPrefix(parts[2], ".") {
		return parts[1]
	}
	return ""
}

// RemoveOrphans removes stored bytes that no record owns and that are
// older than Config.OrphanAge: an upload's bytes whose session is gone or
// finished, and objects (assembled files, derivatives, temporaries of an
// interrupted write) that no media file names. Such bytes are what a
// crash between a store call and its transaction leaves (invariant 10).
// It returns how many items it removed.
//
// Every undeleted or unpurged media row is read to know which keys are
// in use, so the cost grows with the number of files: the sweeper runs
// it less often than its other steps.
func (s *Service) RemoveOrphans(ctx context.Context) (int, error) {
	cutoff := s.now().Add(-s.cfg.OrphanAge)
	var old []StoredItem
	err := s.store.Walk(ctx, func(it StoredItem) error {
		if it.ModTime.Before(cutoff) {
			old = append(old, it)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("walking the store: %w", err)
	}
	if len(old) == 0 {
		return 0, nil
	}
	owned, err := s.ownedKeys(ctx)
	if err != nil {
		return 0, err
	}
	removed := 0
	for _, it := range old {
		switch {
		case it.Upload && owned.uploads[it.Key]:
			continue
		case it.Upload:
			err = s.store.Discard(ctx, it.Key)
		case owned.objects[it.Key] || owned.media[mediaOfDerivedKey(it.Key)]:
			continue
		default:
			err = s.store.Delete(ctx, it.Key)
		}
		if err != nil {
			return removed, fmt.Errorf("removing orphaned %s: %w", it.Key, err)
		}
		s.log.InfoContext(ctx, "removed orphaned bytes", "key", it.Key, "upload", it.Upload)
		removed++
	}
	return removed, nil
}

// ownedKeys is what records own in the store.
type ownedKeys struct {
	uploads map[string]bool // keys of unfinished uploads
	objects map[string]bool // objects named by a media file not yet purged
	media   map[string]bool // ids of media being processed: their derivatives are on the way
}

func (s *Service) ownedKeys(ctx context.Context) (ownedKeys, error) {
	o := ownedKeys{uploads: map[string]bool{}, objects: map[string]bool{}, media: map[string]bool{}}
	sessions, err := s.db.UploadSession.Query().
		Where(uploadsession.StatusIn(StatusInitialized, StatusUploading, StatusAssembling)).
		Select(uploadsession.FieldStorageKey, uploadsession.FieldStatus).All(s.plannedEachRun(ctx))
	if err != nil {
		return o, fmt.Errorf("listing unfinished uploads: %w", err)
	}
	for _, sess := range sessions {
		o.uploads[sess.StorageKey] = true
		if sess.Status == StatusAssembling {
			o.objects[sess.StorageKey] = true // assembled, its media not yet created
		}
	}
	err = s.eachUnpurgedMedia(ctx, orphanPage, func(media []*ent.MediaFile) {
		for _, m := range media {
			o.objects[m.StorageKey] = true
			for _, t := range m.Thumbnails {
				o.objects[t.Key] = true
			}
			if m.Status == mediafile.StatusPROCESSING {
				o.media[m.ID] = true
			}
		}
	})
	return o, err
}

// orphanPage is how many media files ownedKeys reads at a time.
const orphanPage = 1000

// eachUnpurgedMedia calls fn with every media file not yet purged, page
// files at a time in id order, each page read after the last one (its
// storage key, thumbnails and status). A page starts after the last id
// of the one before, not at an offset: files purged or added meanwhile
// move no other file across a page's edge, so none that stays unpurged
// throughout is missed. Missed, its bytes would look orphaned and be
// deleted. An offset also reread every earlier page's rows at each page.
// Each page is planned at its run on PostgreSQL (plannedEachRun): a plan
// kept from a young table's could sort the whole table for every page.
func (s *Service) eachUnpurgedMedia(ctx context.Context, page int, fn func([]*ent.MediaFile)) error {
	ctx = s.plannedEachRun(ctx)
	after := ""
	for {
		media, err := s.db.MediaFile.Query().Where(mediafile.PurgedAtIsNil(), mediafile.IDGT(after)).
			Order(mediafile.ByID()).Limit(page).
			Select(mediafile.FieldStorageKey, mediafile.FieldThumbnails, mediafile.FieldStatus).All(ctx)
		if err != nil {
			return fmt.Errorf("listing media: %w", err)
		}
		fn(media)
		if len(media) < page {
			return nil
		}
		after = media[len(media)-1].ID
	}
}
