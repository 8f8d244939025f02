package upload

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     Config
		wantErr string // "" means valid
	}{
		{"zero value takes defaults", Config{}, ""},
		{"defaults", DefaultConfig(), ""},
		{"minimum chunk size", Config{ChunkSize: 5 * MiB}, ""},
		{"aligned chunk size", Config{ChunkSize: 5*MiB + 256*KiB}, ""},
		{"max batch files at limit", Config{MaxBatchFiles: 1000}, ""},
		{"one-second lifetimes", Config{ChunkURLTTL: time.Second, SessionTTL: time.Second, MediaURLTTL: time.Second}, ""},

		{"chunk size under 5 MiB", Config{ChunkSize: 5*MiB - 256*KiB}, "at least 5 MiB"},
		{"negative chunk size", Config{ChunkSize: -8 * MiB}, "at least 5 MiB"},
		{"chunk size not a multiple of 256 KiB", Config{ChunkSize: 5*MiB + 1*KiB}, "multiple of 256 KiB"},
		{"chunk size off by one byte", Config{ChunkSize: 8*MiB + 1}, "multiple of 256 KiB"},
		{"negative max batch files", Config{MaxBatchFiles: -1}, "max batch files"},
		{"too many batch files", Config{MaxBatchFiles: 1001}, "max batch files"},
		{"negative single threshold", Config{SingleThreshold: -1}, "single-upload threshold"},
		{"negative max chunk URLs", Config{MaxChunkURLs: -1}, "max chunk URLs"},
		{"chunk URL TTL under a second", Config{ChunkURLTTL: 500 * time.Millisecond}, "at least a second"},
		{"negative session TTL", Config{SessionTTL: -time.Hour}, "at least a second"},
		{"media URL TTL of a nanosecond", Config{MediaURLTTL: 1}, "at least a second"},
		{"negative quota", Config{DefaultQuota: -1}, "quota must not be negative"},
		{"zero max size", Config{MaxSize: map[MediaType]int64{MediaVideo: 0}}, "max VIDEO size"},
		{"negative max size", Config{MaxSize: map[MediaType]int64{MediaImage: -5}}, "max IMAGE size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("Validate() = nil, want an error containing %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("Validate() = %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	if got, want := (Config{}).withDefaults(), DefaultConfig(); !reflect.DeepEqual(got, want) {
		t.Errorf("Config{}.withDefaults() = %+v, want %+v", got, want)
	}
	d := DefaultConfig()
	checks := []struct {
		name      string
		got, want any
	}{
		{"MaxBatchFiles", d.MaxBatchFiles, 5},
		{"SingleThreshold", d.SingleThreshold, 150 * MiB},
		{"ChunkSize", d.ChunkSize, 8 * MiB},
		{"MaxChunkURLs", d.MaxChunkURLs, 100},
		{"SessionTTL", d.SessionTTL, 24 * time.Hour},
		{"DefaultQuota", d.DefaultQuota, 10 * GiB},
		{"MaxSize[VIDEO]", d.MaxSize[MediaVideo], 5 * GiB},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("DefaultConfig().%s = %v, want %v", c.name, c.got, c.want)
		}
	}

	// Fields that are set survive; only the zero ones are filled.
	set := Config{ChunkSize: 5 * MiB, SingleThreshold: 1 * MiB, DefaultQuota: 7}.withDefaults()
	if set.ChunkSize != 5*MiB || set.SingleThreshold != 1*MiB || set.DefaultQuota != 7 {
		t.Errorf("withDefaults changed set fields: %+v", set)
	}
	if set.MaxBatchFiles != d.MaxBatchFiles || set.SessionTTL != d.SessionTTL {
		t.Errorf("withDefaults left zero fields: MaxBatchFiles %d, SessionTTL %v", set.MaxBatchFiles, set.SessionTTL)
	}
}

func TestMediaTypeOf(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	tests := []struct {
		mime string
		want MediaType
		ok   bool
	}{
		{"video/mp4", MediaVideo, true},
		{"Video/MP4; codecs=avc1", MediaVideo, true},
		{"image/png", MediaImage, true},
		{"audio/flac", MediaAudio, true},
		{"application/pdf", "", false},
		{"", "", false},
		{"video/", "", false},
	}
	for _, tt := range tests {
		got, ok := cfg.mediaTypeOf(tt.mime)
		if got != tt.want || ok != tt.ok {
			t.Errorf("mediaTypeOf(%q) = %q, %v; want %q, %v", tt.mime, got, ok, tt.want, tt.ok)
		}
	}
}
