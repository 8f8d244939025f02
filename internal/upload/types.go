package upload

import (
	"time"

	"github.com/spoolhq/spool/ent"
	"github.com/spoolhq/spool/ent/mediafile"
	"github.com/spoolhq/spool/ent/uploadsession"
	"github.com/spoolhq/spool/internal/media"
)

// Status is an upload session's place in its state machine
// (docs/DESIGN.md §State machine).
type Status = uploadsession.Status

const (
	StatusInitialized = uploadsession.StatusINITIALIZED
	StatusUploading   = uploadsession.StatusUPLOADING
	StatusAssembling  = uploadsession.StatusASSEMBLING
	StatusCompleted   = uploadsession.StatusCOMPLETED
	StatusFailed      = uploadsession.StatusFAILED
	StatusCancelled   = uploadsession.StatusCANCELLED
	StatusExpired     = uploadsession.StatusEXPIRED
)

// Strategy says whether a file goes up in one request or in chunks.
type Strategy = uploadsession.Strategy

const (
	StrategySingle  = uploadsession.StrategySINGLE
	StrategyChunked = uploadsession.StrategyCHUNKED
)

// MediaType is the kind of media a file is.
type MediaType = mediafile.MediaType

const (
	MediaImage = mediafile.MediaTypeIMAGE
	MediaVideo = mediafile.MediaTypeVIDEO
	MediaAudio = mediafile.MediaTypeAUDIO
)

// MediaStatus is where a media file is in processing: PROCESSING from
// complete() until its content is checked, then READY or FAILED.
type MediaStatus = mediafile.Status

const (
	MediaPending    = mediafile.StatusPENDING
	MediaProcessing = mediafile.StatusPROCESSING
	MediaReady      = mediafile.StatusREADY
	MediaFailed     = mediafile.StatusFAILED
)

// Session is one file's upload as the API shows it: the stored session and
// the progress derived from its chunks.
type Session struct {
	*ent.UploadSession
	Progress Progress
	missing  []int // chunk indexes not received, in order
}

// Batch is one initBatch call and its sessions, in the order of its files.
type Batch struct {
	ID      string
	Uploads []*Session
}

// ChunkURL tells a client where and how to send one chunk.
type ChunkURL struct {
	ChunkIndex int
	URL        string
	Method     string
	Headers    []Header
	Offset     int64
	Size       int64
	ExpiresAt  time.Time
}

// Header is one HTTP header a client must send with a chunk.
type Header struct {
	Name  string
	Value string
}

// FileSpec is one file a client wants to upload.
type FileSpec struct {
	FileName        string
	Size            int64
	MimeType        string
	SHA256          *string
	Fingerprint     *string
	DurationSeconds *int
}

// BatchSpec is the input of InitBatch.
type BatchSpec struct {
	Files     []FileSpec
	ChannelID *string

	// tus, set by CreateTus, makes the batch's one file a tus upload.
	tus *TusFile
}

// Signer makes the URLs spool hands out for its own data plane. The HTTP
// layer implements it, since it owns the routes that verify them.
type Signer interface {
	ChunkURL(uploadID string, index int, expires time.Time) string
	MediaURL(mediaID, fileName string, expires time.Time) string
	// ThumbnailURL is where spool serves the media's thumbnail number n
	// (its index in MediaFile.Thumbnails).
	ThumbnailURL(mediaID string, n int, expires time.Time) string
}

// Thumbnail is one of a media file's thumbnails as the API shows it: the
// stored derivative and a signed URL to fetch it.
type Thumbnail struct {
	media.Thumbnail
	URL string
}
