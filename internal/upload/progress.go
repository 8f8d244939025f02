package upload

import (
	"context"
	"time"
)

// Progress is the state of one upload as clients see it. It is both the
// answer to confirmChunk and the event published on every change.
type Progress struct {
	UploadID       string
	BatchID        string
	OwnerID        string
	Status         Status
	UploadedBytes  int64
	TotalBytes     int64
	Percent        int
	UploadedChunks int
	TotalChunks    int
	FailedChunks   []int
	MediaID        *string
	// MediaStatus is the status of the upload's media file, set with
	// MediaID.
	MediaStatus *MediaStatus
	Error       *string
	// Version increases with every committed change of the upload, so a
	// subscriber can drop an event that is not newer than what it has.
	Version int64
	At      time.Time
}

// Terminal reports whether the upload's status will not change any more.
func (p Progress) Terminal() bool { return isTerminal(p.Status) }

// Settled reports whether no more events will follow: the upload is
// terminal and its media file, if any, is processed (READY or FAILED).
func (p Progress) Settled() bool {
	return p.Terminal() && (p.MediaStatus == nil || !processing(*p.MediaStatus))
}

// processing reports whether a media file still waits for its result.
func processing(st MediaStatus) bool {
	return st == MediaPending || st == MediaProcessing
}

// Broker fans progress events out to subscribers, possibly on other
// replicas. Delivery is at most once; the database stays the truth.
// internal/progress holds the in-process broker (and the Redis one).
type Broker interface {
	// Publish sends ev to the subscribers of its upload and of its owner.
	// It never blocks on a slow subscriber.
	Publish(ctx context.Context, ev Progress) error

	// Subscribe starts collecting events for topic until the feed is
	// closed. Register before reading a snapshot, so nothing is missed.
	Subscribe(ctx context.Context, topic Topic) (Feed, error)
}

// Topic names a stream of events: one upload's, or all of one user's.
type Topic struct {
	Kind TopicKind
	ID   string
}

// TopicKind tells which events a topic carries.
type TopicKind string

const (
	TopicUpload TopicKind = "upload"
	TopicUser   TopicKind = "user"
)

// UploadTopic is the topic of one upload's events.
func UploadTopic(uploadID string) Topic { return Topic{TopicUpload, uploadID} }

// UserTopic is the topic of all events of one user's uploads.
func UserTopic(userID string) Topic { return Topic{TopicUser, userID} }

// Feed is one subscriber's mailbox. Pending events collapse to the latest
// per upload, so a slow reader costs bounded memory and never blocks a
// publisher.
type Feed interface {
	// Ready is signalled when Drain has something to return.
	Ready() <-chan struct{}
	// Drain returns the pending events, oldest upload first, and whether
	// events may have been lost (e.g. the broker reconnected), in which case
	// the subscriber must read a fresh snapshot.
	Drain() (events []Progress, resync bool)
	// Close stops the feed. It is safe to call more than once.
	Close()
}

// NotifyingFeed is a Feed that can call a function where it would
// signal Ready, so a subscriber needs no goroutine parked on Ready while
// nothing happens. OnReady's fn is called from the publisher's goroutine,
// possibly under the broker's locks: it must return at once and must not
// call the feed back. Once OnReady is set, Ready is no longer signalled.
type NotifyingFeed interface {
	Feed
	OnReady(fn func())
}
