// Package media turns a stored file into what a frontend shows: its
// dimensions and duration, thumbnails, a ThumbHash placeholder, video and
// audio facts, and a progressive-download (faststart) copy of an MP4/MOV
// whose index sits at its end. It works on local files and knows nothing
// of uploads, databases or storage: internal/upload's processing job
// downloads the object, calls it and stores what it makes
// (docs/DESIGN.md, DESIGN §Processing).
package media

// Thumbnail is one stored derivative image of a media file: a resized
// image, or a video's poster frame resized. Key is where the store keeps
// its bytes; the API turns it into a signed URL.
type Thumbnail struct {
	Width    int    `json:"width"`
	Height   int    `json:"height"`
	MimeType string `json:"mimeType"`
	Key      string `json:"key"`
}

// VideoInfo is what ffprobe says of a video's first video stream.
type VideoInfo struct {
	Codec     string   `json:"codec"`
	FrameRate *float64 `json:"frameRate,omitempty"`
	// Bitrate is the container's overall bit rate, bits per second.
	Bitrate *int64 `json:"bitrate,omitempty"`
	// Faststart is true when the file's moov box comes before its media
	// data (as stored, after any remux), so playback can start before
	// the whole file has downloaded.
	Faststart bool `json:"faststart"`
}

// AudioInfo is what ffprobe says of the first audio stream, with a
// waveform: Peaks holds 256 values from 0 to 100, the loudest sample of
// each 1/256th of the duration.
type AudioInfo struct {
	Codec      string `json:"codec"`
	Channels   *int   `json:"channels,omitempty"`
	SampleRate *int   `json:"sampleRate,omitempty"`
	Peaks      []int  `json:"peaks"`
}
