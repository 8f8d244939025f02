package app_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"math"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"

	"github.com/spoolhq/spool/internal/app"
	"github.com/spoolhq/spool/internal/required"
)

// processedMedia is a MediaFile with what processing adds.
type processedMedia struct {
	ID              string   `json:"id"`
	Status          string   `json:"status"`
	Width           *int     `json:"width"`
	Height          *int     `json:"height"`
	DurationSeconds *float64 `json:"durationSeconds"`
	Placeholder     *string  `json:"placeholder"`
	ProcessingError *string  `json:"processingError"`
	Thumbnails      []struct {
		Width    int    `json:"width"`
		Height   int    `json:"height"`
		MimeType string `json:"mimeType"`
		URL      string `json:"url"`
	} `json:"thumbnails"`
	Audio *struct {
		Codec      string `json:"codec"`
		Channels   *int   `json:"channels"`
		SampleRate *int   `json:"sampleRate"`
		Peaks      []int  `json:"peaks"`
	} `json:"audio"`
}

const processedFields = `id status width height durationSeconds placeholder processingError
	thumbnails { width height mimeType url } audio { codec channels sampleRate peaks }`

// requireFFmpeg skips where ffmpeg is not installed, and fails with CI set.
func requireFFmpeg(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("ffprobe"); err == nil {
		return
	}
	required.Missing(t, "ffmpeg is not installed (.ci/run installs it)")
}

// TestProcessingOverGraphQL: a subscriber sees an image's media go from
// PROCESSING to READY with its thumbnails in the event itself, the
// thumbnails download as WebP, and an audio file's waveform and facts
// read back through userMedia.
func TestProcessingOverGraphQL(t *testing.T) {
	t.Parallel()
	requireFFmpeg(t)
	s := startSpool(t, func(c *app.Config) { c.DeriveMedia = true })
	alice := s.token("alice")

	img := image.NewNRGBA(image.Rect(0, 0, 640, 400))
	for y := range 400 {
		for x := range 640 {
			img.Set(x, y, color.NRGBA{uint8(x), uint8(y), 90, uint8(128 + x%128)})
		}
	}
	var pngData bytes.Buffer
	if err := png.Encode(&pngData, img); err != nil {
		t.Fatal(err)
	}
	u := s.planOne(alice, file("tile.png", "image/png", int64(pngData.Len())))
	ws := s.dialWS(alice, nil)
	ws.subscribe("up", `subscription($id: ID!) { uploadProgress(uploadId: $id) { status mediaStatus media { `+processedFields+` } } }`,
		map[string]any{"id": u.ID})
	for _, c := range u.ChunkURLs {
		sendChunk(t, c, pngData.Bytes(), http.StatusOK)
	}
	s.complete(alice, u.ID)
	var seen []string
	var final processedMedia
	for {
		m := ws.next("up")
		if m.Type == "complete" {
			break
		}
		var ev struct {
			Data struct {
				UploadProgress struct {
					Status      string          `json:"status"`
					MediaStatus *string         `json:"mediaStatus"`
					Media       *processedMedia `json:"media"`
				} `json:"uploadProgress"`
			} `json:"data"`
		}
		if err := json.Unmarshal(m.Payload, &ev); err != nil {
			t.Fatal(err)
		}
		p := ev.Data.UploadProgress
		if p.MediaStatus != nil {
			seen = append(seen, *p.MediaStatus)
			final = *p.Media
		}
	}
	if len(seen) < 2 || seen[0] != "PROCESSING" || seen[len(seen)-1] != "READY" {
		t.Fatalf("media statuses seen %v, want PROCESSING then READY", seen)
	}
	if final.Width == nil || *final.Width != 640 || len(final.Thumbnails) != 2 || final.Placeholder == nil {
		t.Fatalf("READY event's media %+v, want 640 wide with 2 thumbnails and a placeholder", final)
	}
	if th := final.Thumbnails; th[0].Width != 320 || th[0].Height != 200 || th[1].Width != 640 {
		t.Errorf("thumbnails %+v, want 320×200 then 640×400 (never upscaled)", th)
	}
	resp, body := get(t, final.Thumbnails[0].URL, nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "image/webp" || !bytes.HasPrefix(body, []byte("RIFF")) {
		t.Errorf("GET thumbnail: %d %s, %d bytes; want 200 image/webp", resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
	}

	// The thumbnail route's bad input: a forged signature, the media's
	// signature on another media's thumbnails, a number it has not, and
	// no number at all.
	thumb := final.Thumbnails[0].URL
	thumbURL, err := url.Parse(thumb)
	if err != nil {
		t.Fatal(err)
	}
	other := strings.Replace(thumbURL.Path, final.ID, "med_01M8TE0000000000000000000", 1)
	for _, c := range []struct {
		name, url string
		want      int
	}{
		{"forged signature", withQuery(t, thumb, "sig", flipChar(queryParam(t, thumb, "sig"))), http.StatusForbidden},
		{"another media's", s.url + other + "?" + thumbURL.RawQuery, http.StatusForbidden},
		{"a thumbnail it has not", strings.Replace(thumb, "/thumbnails/0?", "/thumbnails/7?", 1), http.StatusNotFound},
		{"not a number", strings.Replace(thumb, "/thumbnails/0?", "/thumbnails/big?", 1), http.StatusNotFound},
	} {
		if resp, body := get(t, c.url, nil); resp.StatusCode != c.want {
			t.Errorf("%s: GET got %d %s, want %d", c.name, resp.StatusCode, body, c.want)
		}
	}

	wav := sineWAV(2, 8000, 440)
	s.uploadFile(alice, "tone.wav", "audio/wav", wav)
	var out struct {
		UserMedia struct {
			Edges []struct{ Node processedMedia } `json:"edges"`
		} `json:"userMedia"`
	}
	for {
		s.mustGQL(alice, `query { userMedia(first: 1, where: {mediaType: AUDIO}) { edges { node { `+processedFields+` } } } }`, nil, &out)
		if n := out.UserMedia.Edges[0].Node; n.Status != "PROCESSING" {
			if n.Status != "READY" || n.Audio == nil || len(n.Audio.Peaks) != 256 || n.DurationSeconds == nil ||
				math.Abs(*n.DurationSeconds-2) > 0.1 || n.Audio.SampleRate == nil || *n.Audio.SampleRate != 8000 {
				t.Errorf("audio media %+v (audio %+v, error %v), want READY, 2 s at 8000 Hz with 256 peaks", n, n.Audio, deref(n.ProcessingError))
			}
			break
		}
	}
}

// sineWAV is a mono 16-bit PCM WAV of a sine wave.
func sineWAV(seconds, rate, freq int) []byte {
	n := seconds * rate
	var b bytes.Buffer
	b.WriteString("RIFF")
	_ = binary.Write(&b, binary.LittleEndian, uint32(36+2*n))
	b.WriteString("WAVEfmt ")
	for _, v := range []any{uint32(16), uint16(1), uint16(1), uint32(rate), uint32(2 * rate), uint16(2), uint16(16)} {
		_ = binary.Write(&b, binary.LittleEndian, v)
	}
	b.WriteString("data")
	_ = binary.Write(&b, binary.LittleEndian, uint32(2*n))
	for i := range n {
		_ = binary.Write(&b, binary.LittleEndian, int16(12000*math.Sin(2*math.Pi*float64(freq)*float64(i)/float64(rate))))
	}
	return b.Bytes()
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
