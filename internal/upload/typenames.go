package upload

import "strings"

// formatNames are what people call the accepted types. Several MIME types
// are aliases of one format (audio/wav, audio/x-wav and audio/wave), and
// a refusal that listed each would read like a configuration dump.
var formatNames = map[string]string{
	"video/mp4":       "MP4",
	"video/webm":      "WebM",
	"video/quicktime": "MOV",
	"image/jpeg":      "JPEG",
	"image/png":       "PNG",
	"image/gif":       "GIF",
	"image/webp":      "WebP",
	"audio/mpeg":      "MP3",
	"audio/mp4":       "M4A",
	"audio/x-m4a":     "M4A",
	"audio/aac":       "AAC",
	"audio/wav":       "WAV",
	"audio/x-wav":     "WAV",
	"audio/wave":      "WAV",
	"audio/ogg":       "Ogg",
	"audio/flac":      "FLAC",
	"audio/webm":      "WebM",
}

// formatList names each format of mimeTypes once, in their order; a type
// without a common name (one an operator added) is shown as it is.
func formatList(mimeTypes []string) string {
	var names []string
	seen := make(map[string]bool)
	for _, m := range mimeTypes {
		name, ok := formatNames[normalizeMIME(m)]
		if !ok {
			name = m
		}
		if !seen[name] {
			seen[name] = true
			names = append(names, name)
		}
	}
	return strings.Join(names, ", ")
}
