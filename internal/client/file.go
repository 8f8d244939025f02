package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// File is a local file opened for upload.
type File struct {
	// Path is the file as it was named.
	Path string
	// Input is what initBatch is told about it.
	Input FileInput
	f     *os.File
}

// OpenFile opens a regular, non-empty file for upload and describes it:
// its base name, size, MIME type and fingerprint. It fails, naming the
// path, when the file is missing, unreadable, a directory, not a regular
// file or empty.
func OpenFile(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	file, err := describe(path, f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return file, nil
}

func describe(path string, f *os.File) (*File, error) {
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	switch {
	case info.IsDir():
		return nil, fmt.Errorf("%s is a directory; name the files in it instead", path)
	case !info.Mode().IsRegular():
		return nil, fmt.Errorf("%s is not a regular file", path)
	case info.Size() == 0:
		return nil, fmt.Errorf("%s is empty; there is nothing to upload", path)
	}
	mimeType, err := detectMIME(path, f)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	return &File{
		Path: path,
		Input: FileInput{
			FileName: filepath.Base(path), Size: info.Size(), MimeType: mimeType,
			Fingerprint: fingerprint(abs, info),
		},
		f: f,
	}, nil
}

// fingerprint is a key that stays the same while the file does (same
// place, size and modification time), so a second run resumes the first
// one's upload, and changes when the file is rewritten, so stale chunks
// are never resumed into a new file. It is hashed because the server
// takes at most 512 bytes and has no need to learn local paths.
func fingerprint(absPath string, info os.FileInfo) string {
	key := absPath + "\x00" + strconv.FormatInt(info.Size(), 10) + "\x00" + strconv.FormatInt(info.ModTime().UnixNano(), 10)
	return fmt.Sprintf("spool-cli-v1:%x", sha256.Sum256([]byte(key)))
}

// detectMIME names the file's type from its extension, or, for an
// extension neither spool nor the system knows, from its first 512 bytes.
func detectMIME(path string, r io.ReaderAt) (string, error) {
	ext := strings.ToLower(filepath.Ext(path))
	t := mediaTypeByExtension(ext)
	if t == "" {
		t = mime.TypeByExtension(ext)
	}
	if t == "" {
		head := make([]byte, 512)
		n, err := r.ReadAt(head, 0)
		if err != nil && err != io.EOF {
			return "", err
		}
		t = http.DetectContentType(head[:n])
	}
	// The server wants the bare type: "text/plain; charset=utf-8" is
	// text/plain.
	if bare, _, err := mime.ParseMediaType(t); err == nil {
		t = bare
	}
	return t, nil
}

// mediaTypeByExtension names the audio and video types spool accepts by
// their usual extensions, so they do not depend on the machine: Go falls
// back on the system's tables (/etc/mime.types, …), which minimal images
// lack (Go's own table has no .mp4, .mov or .mp3) and Debian's maps .webm
// to audio/webm, which would file every WebM video as audio. Images are in
// Go's own table.
func mediaTypeByExtension(ext string) string {
	switch ext {
	case ".mp4", ".m4v":
		return "video/mp4"
	case ".mov":
		return "video/quicktime"
	case ".webm":
		return "video/webm"
	case ".mp3":
		return "audio/mpeg"
	case ".m4a":
		return "audio/mp4"
	case ".aac":
		return "audio/aac"
	case ".wav":
		return "audio/wav"
	case ".ogg", ".oga":
		return "audio/ogg"
	case ".flac":
		return "audio/flac"
	}
	return ""
}

// hashBuffer is how much of a file Hash reads at a time: its memory, and
// how often it reports progress and sees ctx end.
const hashBuffer = 1 << 20

// Hash reads the whole file and sets Input.SHA256 to its hex SHA-256,
// reporting each piece read to progress (which may be nil). It reads
// hashBuffer bytes at a time, whatever the file's size. It returns ctx's
// error when ctx ends first, and a read error naming the path; Input is
// unchanged when it fails.
func (f *File) Hash(ctx context.Context, progress func(n int64)) error {
	h := sha256.New()
	buf := make([]byte, hashBuffer)
	r := f.section(0, f.Input.Size)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := r.Read(buf)
		h.Write(buf[:n])
		if n > 0 && progress != nil {
			progress(int64(n))
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("reading %s: %w", f.Path, err)
		}
	}
	f.Input.SHA256 = hex.EncodeToString(h.Sum(nil))
	return nil
}

// section returns the bytes of one chunk.
func (f *File) section(offset, size int64) *io.SectionReader {
	return io.NewSectionReader(f.f, offset, size)
}

// Close closes the file.
func (f *File) Close() error { return f.f.Close() }
