package redis

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/spoolhq/spool/internal/upload"
)

// wireVersion is the version of the event format this code writes and the
// only one it reads.
const wireVersion = 1

// wireEvent is the wire form of an upload.Progress. Replicas of different spool
// versions share the channels during a rolling deploy, so the format
// changes compatibly: fields are only ever added (readers ignore the ones
// they do not know) and never renamed or given a new meaning. A change that
// older readers would misread needs a new wireVersion, which they drop.
type wireEvent struct {
	V              int     `json:"v"`
	UploadID       string  `json:"uploadId"`
	BatchID        string  `json:"batchId"`
	OwnerID        string  `json:"ownerId"`
	Status         string  `json:"status"`
	UploadedBytes  int64   `json:"uploadedBytes"`
	TotalBytes     int64   `json:"totalBytes"`
	Percent        int     `json:"percent"`
	UploadedChunks int     `json:"uploadedChunks"`
	TotalChunks    int     `json:"totalChunks"`
	FailedChunks   []int   `json:"failedChunks"` // no omitempty: nil and empty both survive
	MediaID        *string `json:"mediaId,omitempty"`
	// MediaStatus came after wireVersion 1's first release: events from
	// older replicas lack it, and are read as naming no media status.
	MediaStatus *string `json:"mediaStatus,omitempty"`
	Error       *string `json:"error,omitempty"`
	// Version is the upload's version (upload.Progress.Version), not the
	// format's.
	Version int64     `json:"version"`
	At      time.Time `json:"at"`
	// Origin names the Broker that published the event, which delivered
	// it to its own subscribers already and skips it when Redis echoes it
	// back. Older replicas send none, and read every event as another's.
	Origin string `json:"origin,omitempty"`
}

// encodeEvent writes p as published by the Broker named origin.
func encodeEvent(p upload.Progress, origin string) ([]byte, error) {
	return json.Marshal(wireEvent{
		V:              wireVersion,
		UploadID:       p.UploadID,
		BatchID:        p.BatchID,
		OwnerID:        p.OwnerID,
		Status:         string(p.Status),
		UploadedBytes:  p.UploadedBytes,
		TotalBytes:     p.TotalBytes,
		Percent:        p.Percent,
		UploadedChunks: p.UploadedChunks,
		TotalChunks:    p.TotalChunks,
		FailedChunks:   p.FailedChunks,
		MediaID:        p.MediaID,
		MediaStatus:    (*string)(p.MediaStatus),
		Error:          p.Error,
		Version:        p.Version,
		At:             p.At,
		Origin:         origin,
	})
}

// decodeEvent reads an event written by any replica, and the Broker that
// published it ("" from older replicas). It fails on malformed JSON, on a
// format version it does not know, and on an event that names no upload or
// owner, since the hub could not route it.
func decodeEvent(data []byte) (ev upload.Progress, origin string, err error) {
	var e wireEvent
	if err := json.Unmarshal(data, &e); err != nil {
		return upload.Progress{}, "", err
	}
	if e.V != wireVersion {
		return upload.Progress{}, "", fmt.Errorf("unsupported event format version %d (this replica reads %d)", e.V, wireVersion)
	}
	if e.UploadID == "" || e.OwnerID == "" {
		return upload.Progress{}, "", errors.New("event names no upload or no owner")
	}
	return upload.Progress{
		UploadID:       e.UploadID,
		BatchID:        e.BatchID,
		OwnerID:        e.OwnerID,
		Status:         upload.Status(e.Status),
		UploadedBytes:  e.UploadedBytes,
		TotalBytes:     e.TotalBytes,
		Percent:        e.Percent,
		UploadedChunks: e.UploadedChunks,
		TotalChunks:    e.TotalChunks,
		FailedChunks:   e.FailedChunks,
		MediaID:        e.MediaID,
		MediaStatus:    (*upload.MediaStatus)(e.MediaStatus),
		Error:          e.Error,
		Version:        e.Version,
		At:             e.At,
	}, e.Origin, nil
}
