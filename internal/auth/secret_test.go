package auth

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestParseSecret(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{strings.Repeat("s", 32), strings.Repeat("s", 32), false},
		{strings.Repeat("s", 64), strings.Repeat("s", 64), false},
		{"  " + strings.Repeat("s", 32) + "\n", strings.Repeat("s", 32), false},
		{strings.Repeat("é", 16), strings.Repeat("é", 16), false}, // 32 bytes
		{"", "", true},
		{strings.Repeat("s", 31), "", true},
		{" " + strings.Repeat("s", 31) + " ", "", true},
	}
	for _, tt := range tests {
		got, err := ParseSecret(tt.in)
		if gotErr := err != nil; gotErr != tt.wantErr {
			t.Errorf("ParseSecret(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if string(got) != tt.want {
			t.Errorf("ParseSecret(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestParseSecretErrorSaysWhy(t *testing.T) {
	_, err := ParseSecret("hunter2-but-short")
	if err == nil {
		t.Fatal("ParseSecret(short) error = nil")
	}
	if msg := err.Error(); !strings.Contains(msg, "at least 32 bytes") || strings.Contains(msg, "hunter2") {
		t.Errorf("ParseSecret error = %q, want it to say \"at least 32 bytes\" without the secret", msg)
	}
}

func TestLoadOrCreateSecretCreates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "spool")
	path := filepath.Join(dir, "jwt.key")

	secret, err := LoadOrCreateSecret(path)
	if err != nil {
		t.Fatalf("LoadOrCreateSecret: %v", err)
	}
	if len(secret) != 64 {
		t.Errorf("created secret is %d bytes, want 64 hex digits", len(secret))
	}
	if _, err := hex.DecodeString(string(secret)); err != nil {
		t.Errorf("created secret %q is not hex: %v", secret, err)
	}

	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := info.Mode().Perm(), os.FileMode(0o600); got != want {
		t.Errorf("secret file mode = %v, want %v", got, want)
	}
	dirInfo, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := dirInfo.Mode().Perm(), os.FileMode(0o700); got != want {
		t.Errorf("secret directory mode = %v, want %v", got, want)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("secret directory holds %d entries, want 1 (no temporary files left)", len(entries))
	}

	again, err := LoadOrCreateSecret(path)
	if err != nil {
		t.Fatalf("LoadOrCreateSecret (second time): %v", err)
	}
	if !bytes.Equal(again, secret) {
		t.Errorf("second LoadOrCreateSecret = %q, want the first secret %q", again, secret)
	}
	// The file content works as SPOOL_JWT_SECRET too.
	content, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fromEnv, err := ParseSecret(string(content))
	if err != nil || !bytes.Equal(fromEnv, secret) {
		t.Errorf("ParseSecret(file content) = (%q, %v), want (%q, nil)", fromEnv, err, secret)
	}
}

func TestLoadOrCreateSecretReads(t *testing.T) {
	raw := string([]byte{0x00, 0xff, 0x10, 0x80}) + strings.Repeat("r", 28)
	tests := []struct {
		name    string
		content string
		want    string
		wantErr bool
	}{
		{"hex with newline", strings.Repeat("ab", 32) + "\n", strings.Repeat("ab", 32), false},
		{"raw bytes", raw, raw, false},
		{"surrounded by white space", "\n\t " + strings.Repeat("k", 40) + " \r\n", strings.Repeat("k", 40), false},
		{"too short", "short\n", "", true},
		{"empty", "", "", true},
	}
	for _, tt := range tests {
		path := filepath.Join(t.TempDir(), "key")
		if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := LoadOrCreateSecret(path)
		if gotErr := err != nil; gotErr != tt.wantErr {
			t.Errorf("%s: LoadOrCreateSecret error = %v, want error %v", tt.name, err, tt.wantErr)
			continue
		}
		if string(got) != tt.want {
			t.Errorf("%s: LoadOrCreateSecret = %q, want %q", tt.name, got, tt.want)
		}
		if tt.wantErr {
			// A bad file is reported, never replaced.
			if content, _ := os.ReadFile(path); string(content) != tt.content {
				t.Errorf("%s: file changed to %q", tt.name, content)
			}
		}
	}
}

func TestLoadOrCreateSecretUnreadable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key")
	if err := os.Mkdir(path, 0o700); err != nil { // a directory cannot be read as a file
		t.Fatal(err)
	}
	if secret, err := LoadOrCreateSecret(path); err == nil {
		t.Errorf("LoadOrCreateSecret(directory) = %q, want an error", secret)
	}
}

func TestLoadOrCreateSecretConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key")
	const n = 16
	secrets := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { secrets[i], errs[i] = LoadOrCreateSecret(path) })
	}
	wg.Wait()
	onDisk, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if errs[i] != nil {
			t.Errorf("caller %d: %v", i, errs[i])
			continue
		}
		if !bytes.Equal(secrets[i], bytes.TrimSpace(onDisk)) {
			t.Errorf("caller %d got %q, but the file holds %q", i, secrets[i], onDisk)
		}
	}
}
