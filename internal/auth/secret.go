package auth

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ParseSecret returns the signing secret given as text, as in the
// SPOOL_JWT_SECRET environment variable: the bytes of s with surrounding
// white space removed (a trailing newline from a secrets file or
// Kubernetes secret is not part of the secret). It returns an error if
// fewer than MinSecretSize bytes remain. The error never contains the
// secret.
func ParseSecret(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if len(s) < MinSecretSize {
		return nil, fmt.Errorf("auth: secret is %d bytes, must be at least %d bytes", len(s), MinSecretSize)
	}
	return []byte(s), nil
}

// LoadOrCreateSecret returns the signing secret stored in the file at
// path, creating the file if it does not exist.
//
// The secret is the file's content with surrounding white space removed,
// taken as bytes exactly as ParseSecret takes text, so the same content
// works in the file and in SPOOL_JWT_SECRET. A created file holds 32
// random bytes written as 64 hex digits (and the secret is those digits);
// a file holding 32 or more raw bytes works as well.
//
// A new file gets mode 0600 and missing parent directories mode 0700. It
// appears complete or not at all: the secret is written to a temporary
// file and then linked into place, and if another process created the file
// meanwhile, its secret is returned instead.
//
// It returns an error if the file cannot be read or created, or holds
// fewer than MinSecretSize bytes.
func LoadOrCreateSecret(path string) ([]byte, error) {
	secret, err := readSecret(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return secret, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("auth: creating secret directory: %w", err)
	}
	secret, err = createSecret(path)
	if errors.Is(err, fs.ErrExist) {
		return readSecret(path) // another process got there first
	}
	return secret, err
}

func readSecret(path string) ([]byte, error) {
	content, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: reading secret: %w", err)
	}
	secret, err := ParseSecret(string(content))
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return secret, nil
}

// createSecret writes a new random secret to path. It returns an error
// wrapping fs.ErrExist if path already exists, and leaves it untouched.
func createSecret(path string) ([]byte, error) {
	secret := []byte(hex.EncodeToString(randomBytes(32)))

	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*") // mode 0600
	if err != nil {
		return nil, fmt.Errorf("auth: creating secret: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(append(bytes.Clone(secret), '\n'))
	if err == nil {
		err = tmp.Sync()
	}
	if closeErr := tmp.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return nil, fmt.Errorf("auth: writing secret: %w", err)
	}
	// Unlike rename, link fails if path exists, so two processes starting
	// at once cannot each keep a secret the other overwrote.
	if err := os.Link(tmp.Name(), path); err != nil {
		return nil, fmt.Errorf("auth: creating secret: %w", err)
	}
	syncDir(dir)
	return secret, nil
}

// syncDir makes a new directory entry durable where the platform allows;
// failing to is not worth failing the start-up for.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b) // never fails; it crashes the program rather than return short
	return b
}
