package gcs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"cloud.google.com/go/storage"
)

// errWriteStalled is why a write was abandoned: GCS took none of its
// bytes for the Store's retryFor.
var errWriteStalled = errors.New("write stalled")

// writer is a storage.Writer that gives up on GCS: its context ends once
// one of its writes, or its Close, has waited on GCS for the Store's
// retryFor, retries included. The library retries the request that
// starts an upload until its context ends, whatever the retry policy, and
// a chunk's context does not end while its body waits to be read
// (net/http notices a client gone only past the body): in an outage a
// chunk PUT, or a tus PATCH, waited as long as the outage. Only the time
// GCS keeps a write waiting counts, not the time a slow client takes to
// send the next bytes. Every object the Store writes goes through one.
type writer struct {
	*storage.Writer
	ctx     context.Context
	cancel  context.CancelCauseFunc
	limit   time.Duration
	timer   *time.Timer // armed only while a write, or Close, waits
	stalled error
}

// newWriter returns a writer of obj, in pieces of chunkSize bytes
// (storage.Writer.ChunkSize).
func (s *Store) newWriter(ctx context.Context, obj *storage.ObjectHandle, chunkSize int) *writer {
	wctx, cancel := context.WithCancelCause(ctx)
	w := &writer{
		Writer:  obj.NewWriter(wctx),
		ctx:     wctx,
		cancel:  cancel,
		limit:   s.retryFor,
		stalled: fmt.Errorf("%w: GCS took none of its bytes for %v", errWriteStalled, s.retryFor),
	}
	w.ChunkSize = chunkSize
	w.timer = time.AfterFunc(s.retryFor, func() { cancel(w.stalled) })
	w.timer.Stop()
	return w
}

func (w *writer) Write(p []byte) (int, error) {
	w.timer.Reset(w.limit)
	defer w.timer.Stop()
	return w.Writer.Write(p)
}

// Close finalises the object: it sends the last piece, and waits for GCS
// to store it.
func (w *writer) Close() error {
	w.timer.Reset(w.limit)
	defer w.release()
	return w.Writer.Close()
}

// Abandon ends the upload without finalising the object: an earlier one
// of the same name stays as it was.
func (w *writer) Abandon() {
	defer w.release()
	w.cancel(nil)
	_ = w.Writer.Close() // waits for the upload goroutine; the error is the cancellation
}

func (w *writer) release() {
	w.timer.Stop()
	w.cancel(nil)
}

// err is err of a write or Close, translated, and saying so if the
// writer gave up on GCS.
func (w *writer) err(err error) error {
	err = translate(err)
	if context.Cause(w.ctx) == w.stalled {
		err = fmt.Errorf("%w (%w)", w.stalled, err)
	}
	return err
}
