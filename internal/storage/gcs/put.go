// Writing whole objects, and walking everything the store holds.

package gcs

import (
	"context"
	"fmt"
	"io"
	"path"
	"strings"

	"cloud.google.com/go/storage"
	"google.golang.org/api/iterator"

	"github.com/spoolhq/spool/internal/upload"
)

// Put uploads body as the object objectKey. GCS makes an object visible
// only once its upload finishes, so readers never see a partial one. A
// failed or cancelled Put leaves the old object, if any.
func (s *Store) Put(ctx context.Context, objectKey string, body io.Reader, contentType string) error {
	if err := checkKey(objectKey); err != nil {
		return err
	}
	w := s.newWriter(ctx, s.bucket.Object(s.objectName(objectKey)), s.writeBufferSize)
	w.ContentType = contentType
	bufp := s.buffers.Get().(*[]byte)
	_, err := io.CopyBuffer(w, body, *bufp)
	s.buffers.Put(bufp)
	if err != nil {
		w.Abandon()
		return fmt.Errorf("gcs: put %q: %w", objectKey, w.err(err))
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("gcs: put %q: %w", objectKey, w.err(err))
	}
	return nil
}

// Walk lists the parts and compose temporaries of unfinished uploads,
// reporting each upload's key once with the newest of its objects' times,
// then every finished object.
func (s *Store) Walk(ctx context.Context, fn func(upload.StoredItem) error) error {
	uploads := map[string]upload.StoredItem{}
	for _, dir := range []string{partsDirName, tmpDirName} {
		err := s.eachObject(ctx, s.prefix+dir, func(rest string, attrs *storage.ObjectAttrs) error {
			key := path.Dir(rest)
			if key == "." {
				return nil // not a name this store writes
			}
			it := uploads[key]
			if t := modTime(attrs); t.After(it.ModTime) {
				it.ModTime = t
			}
			it.Key, it.Upload = key, true
			uploads[key] = it
			return nil
		})
		if err != nil {
			return err
		}
	}
	for _, it := range uploads {
		if err := fn(it); err != nil {
			return err
		}
	}
	return s.eachObject(ctx, s.prefix+objectsDirName, func(rest string, attrs *storage.ObjectAttrs) error {
		return fn(upload.StoredItem{Key: rest, ModTime: modTime(attrs)})
	})
}

// eachObject calls fn with every object under prefix, and its name
// without the prefix.
func (s *Store) eachObject(ctx context.Context, prefix string, fn func(rest string, attrs *storage.ObjectAttrs) error) error {
	q := &storage.Query{Prefix: prefix}
	if err := q.SetAttrSelection([]string{"Name", "Updated", "Created"}); err != nil {
		return fmt.Errorf("gcs: walk %s: %w", prefix, err)
	}
	it := s.bucket.Objects(ctx, q)
	for {
		attrs, err := it.Next()
		if err == iterator.Done {
			return nil
		}
		if err != nil {
			return fmt.Errorf("gcs: walk %s: %w", prefix, translate(err))
		}
		if err := fn(strings.TrimPrefix(attrs.Name, prefix), attrs); err != nil {
			return err
		}
	}
}
