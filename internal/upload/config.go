package upload

import (
	"fmt"
	"mime"
	"strings"
	"time"
)

// Size units.
const (
	KiB int64 = 1 << 10
	MiB int64 = 1 << 20
	GiB int64 = 1 << 30
)

// Config holds the upload rules. Zero fields take the defaults of
// DefaultConfig; Validate says what is wrong with a bad one.
type Config struct {
	// MaxBatchFiles is how many files one initBatch may carry.
	MaxBatchFiles int
	// SingleThreshold is the largest file uploaded as one SINGLE chunk.
	SingleThreshold int64
	// ChunkSize is the chunk size of CHUNKED uploads: a multiple of
	// 256 KiB (GCS's resumable granularity) and at least 5 MiB.
	ChunkSize int64
	// MaxChunkURLs caps how many signed URLs an UploadSession lists.
	MaxChunkURLs int
	// ChunkURLTTL is how long a signed chunk URL stays valid.
	ChunkURLTTL time.Duration
	// SessionTTL is how long an upload may stay unfinished.
	SessionTTL time.Duration
	// MediaURLTTL is how long a signed download URL stays valid.
	MediaURLTTL time.Duration
	// DefaultQuota is each new user's quota in bytes.
	DefaultQuota int64
	// MaxSize is the largest file per media type.
	MaxSize map[MediaType]int64
	// AllowedTypes lists the accepted MIME types per media type.
	AllowedTypes map[MediaType][]string
	// DirectUploads makes chunk URLs point at the store itself (GCS V4
	// signed URLs), so bytes never pass through spool.
	DirectUploads bool
	// MaxInlineImageSize is the largest image uploadImage takes in one
	// GraphQL multipart request; bigger files go through initBatch.
	MaxInlineImageSize int64
	// ProxyMedia makes download URLs spool's own (Signer.MediaURL), served
	// by streaming from the store, even when the store hands out URLs
	// itself (ObjectLinker): for a store that cannot sign them.
	ProxyMedia bool
	// OrphanAge is how old stored bytes no record owns must be before the
	// sweeper removes them: younger ones may belong to a transaction that
	// has not committed yet (an initBatch, a complete, processing).
	OrphanAge time.Duration
	// WorkDir is where processing keeps its scratch files (a downloaded
	// copy of a GCS object, thumbnails before they are stored); "" is
	// the system's temporary directory.
	WorkDir string
}

// DefaultConfig returns the defaults documented in docs/CONFIG.md.
func DefaultConfig() Config {
	return Config{
		MaxBatchFiles:   5,
		SingleThreshold: 150 * MiB,
		ChunkSize:       8 * MiB,
		MaxChunkURLs:    100,
		ChunkURLTTL:     30 * time.Minute,
		SessionTTL:      24 * time.Hour,
		MediaURLTTL:     time.Hour,
		OrphanAge:       time.Hour,
		DefaultQuota:    10 * GiB,
		// A multipart request is held in one handler for its whole
		// upload; larger files deserve chunks they can resume.
		MaxInlineImageSize: 10 * MiB,
		MaxSize: map[MediaType]int64{
			MediaVideo: 5 * GiB,
			MediaAudio: 1 * GiB,
			MediaImage: 50 * MiB,
		},
		AllowedTypes: map[MediaType][]string{
			MediaVideo: {"video/mp4", "video/webm", "video/quicktime"},
			MediaImage: {"image/jpeg", "image/png", "image/gif", "image/webp"},
			MediaAudio: {"audio/mpeg", "audio/mp4", "audio/x-m4a", "audio/aac", "audio/wav",
				"audio/x-wav", "audio/wave", "audio/ogg", "audio/flac", "audio/webm"},
		},
	}
}

// withDefaults fills the zero fields of c from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.MaxBatchFiles == 0 {
		c.MaxBatchFiles = d.MaxBatchFiles
	}
	if c.SingleThreshold == 0 {
		c.SingleThreshold = d.SingleThreshold
	}
	if c.ChunkSize == 0 {
		c.ChunkSize = d.ChunkSize
	}
	if c.OrphanAge == 0 {
		c.OrphanAge = d.OrphanAge
	}
	if c.MaxChunkURLs == 0 {
		c.MaxChunkURLs = d.MaxChunkURLs
	}
	if c.ChunkURLTTL == 0 {
		c.ChunkURLTTL = d.ChunkURLTTL
	}
	if c.SessionTTL == 0 {
		c.SessionTTL = d.SessionTTL
	}
	if c.MediaURLTTL == 0 {
		c.MediaURLTTL = d.MediaURLTTL
	}
	if c.DefaultQuota == 0 {
		c.DefaultQuota = d.DefaultQuota
	}
	if c.MaxSize == nil {
		c.MaxSize = d.MaxSize
	}
	if c.MaxInlineImageSize == 0 {
		c.MaxInlineImageSize = d.MaxInlineImageSize
	}
	if c.AllowedTypes == nil {
		c.AllowedTypes = d.AllowedTypes
	}
	return c
}

// minChunkSize and chunkAlign come from object storage: S3 and GCS
// multipart parts must be at least 5 MiB, GCS resumable writes go in
// multiples of 256 KiB.
const (
	minChunkSize = 5 * MiB
	chunkAlign   = 256 * KiB
)

// Validate reports the first thing wrong with c (after defaults).
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.MaxBatchFiles < 1 || c.MaxBatchFiles > 1000:
		return fmt.Errorf("max batch files must be between 1 and 1000, got %d", c.MaxBatchFiles)
	case c.ChunkSize < minChunkSize:
		return fmt.Errorf("chunk size must be at least 5 MiB, got %d bytes", c.ChunkSize)
	case c.ChunkSize%chunkAlign != 0:
		return fmt.Errorf("chunk size must be a multiple of 256 KiB, got %d bytes", c.ChunkSize)
	case c.SingleThreshold < 1:
		return fmt.Errorf("single-upload threshold must be positive, got %d", c.SingleThreshold)
	case c.MaxChunkURLs < 1:
		return fmt.Errorf("max chunk URLs must be positive, got %d", c.MaxChunkURLs)
	case c.MaxInlineImageSize < 1 || c.MaxInlineImageSize > 100*MiB:
		return fmt.Errorf("max inline image size must be between 1 byte and 100 MiB, got %d bytes", c.MaxInlineImageSize)
	case c.ChunkURLTTL < time.Second || c.SessionTTL < time.Second || c.MediaURLTTL < time.Second:
		return fmt.Errorf("URL and session lifetimes must be at least a second")
	case c.OrphanAge < 0:
		return fmt.Errorf("orphan age must not be negative, got %v", c.OrphanAge)
	case c.DefaultQuota < 0:
		return fmt.Errorf("quota must not be negative, got %d", c.DefaultQuota)
	}
	for t, max := range c.MaxSize {
		if max < 1 {
			return fmt.Errorf("max %s size must be positive, got %d", t, max)
		}
	}
	return nil
}

// mediaTypeOf returns the media type a MIME type is allowed as, or false.
// largestMediaType is the media type with the largest size limit.
func (c Config) largestMediaType() MediaType {
	best := MediaVideo
	for t, max := range c.MaxSize {
		if max > c.MaxSize[best] || (max == c.MaxSize[best] && t < best) {
			best = t
		}
	}
	return best
}

func (c Config) mediaTypeOf(mimeType string) (MediaType, bool) {
	m := normalizeMIME(mimeType)
	for t, allowed := range c.AllowedTypes {
		for _, a := range allowed {
			if a == m {
				return t, true
			}
		}
	}
	return "", false
}

// normalizeMIME lower-cases a MIME type and drops its parameters, so
// "Video/MP4; codecs=avc1" is "video/mp4"; malformed input yields "".
func normalizeMIME(s string) string {
	m, _, err := mime.ParseMediaType(s)
	if err != nil {
		return ""
	}
	return strings.ToLower(m)
}
