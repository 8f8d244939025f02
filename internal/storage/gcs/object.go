package gcs

import (
	"context"
	"fmt"
	"io"
	"time"

	"cloud.google.com/go/storage"
)

// object is an upload.Object reading byte ranges of one generation of a
// GCS object on demand. Seek only records the offset; the next Read opens
// a range reader from there.
type object struct {
	ctx     context.Context // the Open call's, which the reads belong to
	handle  *storage.ObjectHandle
	size    int64
	modTime time.Time

	off int64
	r   *storage.Reader // reading from off, or nil
}

func (o *object) Read(p []byte) (int, error) {
	if o.off >= o.size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if o.r == nil {
		r, err := o.handle.NewRangeReader(o.ctx, o.off, -1)
		if err != nil {
			return 0, fmt.Errorf("gcs: read %s at %d: %w", o.handle.ObjectName(), o.off, translate(err))
		}
		o.r = r
	}
	n, err := o.r.Read(p)
	o.off += int64(n)
	switch {
	case err == io.EOF && o.off < o.size:
		return n, fmt.Errorf("gcs: read %s: %w at %d of %d bytes", o.handle.ObjectName(), io.ErrUnexpectedEOF, o.off, o.size)
	case err != nil && err != io.EOF:
		return n, fmt.Errorf("gcs: read %s at %d: %w", o.handle.ObjectName(), o.off, translate(err))
	}
	return n, err
}

func (o *object) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = o.off + offset
	case io.SeekEnd:
		abs = o.size + offset
	default:
		return o.off, fmt.Errorf("gcs: seek: invalid whence %d", whence)
	}
	if abs < 0 {
		return o.off, fmt.Errorf("gcs: seek to negative position %d", abs)
	}
	if abs != o.off {
		o.closeReader()
		o.off = abs
	}
	return abs, nil
}

func (o *object) Close() error {
	o.closeReader()
	return nil
}

func (o *object) closeReader() {
	if o.r != nil {
		o.r.Close() // only releases the connection; nothing to report
		o.r = nil
	}
}

func (o *object) Size() int64        { return o.size }
func (o *object) ModTime() time.Time { return o.modTime }
