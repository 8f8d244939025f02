package upload

import (
	"context"
	"fmt"

	"github.com/spoolhq/spool/ent/uploadsession"
)

// watch describes one subscription: where its events come from, how to
// read its current state, which events belong to it, and when it is done.
type watch struct {
	topic    Topic
	snapshot func(ctx context.Context) ([]Progress, error)
	include  func(Progress) bool
	// done reports whether the subscription is over, given the latest
	// state of every upload seen; nil means it never ends by itself.
	done func(latest map[string]Progress) bool
}

// WatchUpload streams the progress of the caller's upload: the current
// state first, then every change, closing once the upload is settled (a
// terminal state, and its media processed) or when ctx ends. Media whose
// processing is retried (storage trouble) keeps it open meanwhile. It
// returns NOT_FOUND for someone else's upload.
func (s *Service) WatchUpload(ctx context.Context, userID, uploadID string) (<-chan *Progress, error) {
	if _, err := ownedSession(ctx, s.db, userID, uploadID); err != nil {
		return nil, err
	}
	return s.watch(ctx, watch{
		topic: UploadTopic(uploadID),
		snapshot: func(ctx context.Context) ([]Progress, error) {
			sess, err := s.Session(ctx, userID, uploadID)
			if err != nil {
				return nil, err
			}
			return []Progress{sess.Progress}, nil
		},
		include: func(p Progress) bool { return p.UploadID == uploadID },
		done: func(latest map[string]Progress) bool {
			p, ok := latest[uploadID]
			return ok && p.Settled()
		},
	})
}

// WatchBatch streams the progress of every upload in the caller's batch,
// closing once all of them are settled, as WatchUpload does. It returns
// NOT_FOUND for someone else's batch.
func (s *Service) WatchBatch(ctx context.Context, userID, batchID string) (<-chan *Progress, error) {
	if _, err := s.Batch(ctx, userID, batchID); err != nil {
		return nil, err
	}
	return s.watch(ctx, watch{
		topic: UserTopic(userID),
		snapshot: func(ctx context.Context) ([]Progress, error) {
			b, err := s.Batch(ctx, userID, batchID)
			if err != nil {
				return nil, err
			}
			ps := make([]Progress, len(b.Uploads))
			for i, u := range b.Uploads {
				ps[i] = u.Progress
			}
			return ps, nil
		},
		include: func(p Progress) bool { return p.BatchID == batchID },
		done: func(latest map[string]Progress) bool {
			for _, p := range latest {
				if !p.Settled() {
					return false
				}
			}
			return true
		},
	})
}

// WatchUser streams the progress of all the caller's uploads, starting
// with the unfinished ones, until ctx ends.
func (s *Service) WatchUser(ctx context.Context, userID string) (<-chan *Progress, error) {
	return s.watch(ctx, watch{
		topic: UserTopic(userID),
		snapshot: func(ctx context.Context) ([]Progress, error) {
			ids, err := s.db.UploadSession.Query().
				Where(uploadsession.OwnerID(userID), uploadsession.StatusIn(StatusInitialized, StatusUploading, StatusAssembling)).
				Order(uploadsession.ByID()).IDs(ctx)
			if err != nil {
				return nil, fmt.Errorf("listing unfinished uploads: %w", err)
			}
			var ps []Progress
			for _, id := range ids {
				sess, err := s.Session(ctx, userID, id)
				if err != nil {
					return nil, err
				}
				ps = append(ps, sess.Progress)
			}
			return ps, nil
		},
		include: func(Progress) bool { return true },
	})
}

// watch subscribes before reading the snapshot, so no change falls between
// the two, then forwards only events newer than what the client has. The
// goroutine sends to an unbuffered channel, so a slow client holds back
// only itself; its pending events collapse in the feed meanwhile.
func (s *Service) watch(ctx context.Context, w watch) (<-chan *Progress, error) {
	feed, err := s.broker.Subscribe(ctx, w.topic)
	if err != nil {
		return nil, fmt.Errorf("subscribing to %s %s: %w", w.topic.Kind, w.topic.ID, err)
	}
	first, err := w.snapshot(ctx)
	if err != nil {
		feed.Close()
		return nil, err
	}
	out := make(chan *Progress)
	go func() {
		defer close(out)
		defer feed.Close()
		latest := map[string]Progress{}
		// emit sends p if it is news; it returns false when the client is gone.
		emit := func(p Progress) bool {
			prev, seen := latest[p.UploadID]
			if seen && p.Version <= prev.Version {
				return true
			}
			if seen && p.Percent < prev.Percent {
				p.Percent = prev.Percent
			}
			latest[p.UploadID] = p
			select {
			case out <- &p:
				return true
			case <-ctx.Done():
				return false
			}
		}
		over := func() bool { return w.done != nil && w.done(latest) }
		for _, p := range first {
			if !emit(p) {
				return
			}
		}
		for !over() {
			select {
			case <-ctx.Done():
				return
			case <-feed.Ready():
			}
			events, resync := feed.Drain()
			if resync {
				fresh, err := w.snapshot(ctx)
				if err != nil {
					s.log.Warn("resyncing subscription failed", "topic", w.topic.ID, "err", err)
					return
				}
				events = append(fresh, events...)
			}
			for _, p := range events {
				if !w.include(p) {
					// An upload that stops matching (resumed into a newer
					// batch) leaves this subscription.
					delete(latest, p.UploadID)
				} else if !emit(p) {
					return
				}
				if over() {
					return
				}
			}
		}
	}()
	return out, nil
}
