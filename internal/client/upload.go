package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"golang.org/x/sync/errgroup"

	"github.com/spoolhq/spool/internal/filename"
)

// DefaultParallel is how many chunks are in flight at once unless told.
const DefaultParallel = 4

const (
	// maxTries bounds the attempts at one chunk (or one call to the
	// server) before its file fails. Between them exponential backoff
	// waits about 0.5 s, 0.75 s, 1.1 s, … (±50 % jitter, so parallel
	// chunks do not retry in step): about 40 s in all, enough to ride out
	// a restart or a network blip. A longer outage fails the file, and
	// running the upload again resumes it.
	maxTries = 10
	// urlMargin is how long before its expiry a chunk URL is signed anew
	// rather than sent, to fail with 403 on the way.
	urlMargin = time.Minute
	// maxRounds bounds how often a file's chunks are sent and complete
	// called, when complete answers INCOMPLETE (the web uploader's
	// bound too).
	maxRounds = 3
)

// Observer hears how each file of an upload goes, to show it. Its methods
// are called from many goroutines at once.
type Observer interface {
	// Hashed reports n more bytes of the file read to compute its SHA-256
	// (File.Hash), which happens before any file is planned.
	Hashed(file int, n int64)
	// Started is called once per file, before any of its bytes are sent,
	// with the server's plan; up.Progress.UploadedBytes were sent by an
	// earlier run.
	Started(file int, up Upload)
	// Sent reports n more bytes of the file sent. n is negative when an
	// attempt failed: its bytes will be sent again.
	Sent(file int, n int64)
	// Retrying reports that one of the file's requests failed with err
	// and will be tried again after wait (see withRetry): while the
	// server restarts, or the network is down, this is all that happens.
	Retrying(file int, err error, wait time.Duration)
	// Finished is called once per started file, and once per file found
	// in the caller's library (Result.InLibrary), which is never started.
	Finished(file int, r Result)
}

// Result is what became of one file.
type Result struct {
	// Upload is the server's plan of the file; empty when InLibrary.
	Upload Upload
	// Media is the finished file when Err is nil.
	Media MediaFile
	// InLibrary is true when the caller already had this file, READY or
	// PROCESSING, under the same name: an earlier run uploaded it.
	// Nothing was planned or sent, and Media is that file.
	InLibrary bool
	Err       error
}

// AlreadyUploaded reports whether nothing had to be sent: the file was in
// the caller's library (InLibrary, Media is that file), or the server had
// its bytes (Upload.Deduplicated, Media is a new file sharing them).
func (r Result) AlreadyUploaded() bool {
	return r.Err == nil && (r.InLibrary || r.Upload.Deduplicated)
}

// UploadOptions tunes UploadFiles.
type UploadOptions struct {
	// Parallel is how many chunks are in flight at once, across all the
	// files; below 1 means DefaultParallel.
	Parallel int
	// Observer hears about each file; nil means nobody.
	Observer Observer
	// retryWait, when set, replaces the exponential backoff between tries
	// with this constant wait (tests, through QuickRetries).
	retryWait time.Duration
}

// UploadFiles uploads the files as one batch. Each file's SHA-256 is
// computed first, one file after the other (File.Hash, unless its
// Input.SHA256 is set). A file the caller's library already holds, READY
// or PROCESSING, with the same content, name, size and type, is done
// there (InLibrary): running the same upload again after it finished adds
// nothing. initBatch then plans the others: it resumes an unfinished
// upload of any file sent before (by OpenFile's fingerprint or the
// SHA-256), and answers a file whose bytes the caller already has with a
// Deduplicated upload, a new file sharing them, done without a byte sent.
// The chunks the server lacks are then sent, Parallel at a time, each
// retried with exponential backoff when the network or the server fails
// it, and each file is completed.
//
// It returns one Result per file, in order: a file that fails does not
// stop the others. It returns an error only when the batch could not be
// hashed (a read error naming the file) or planned (the transport's
// error, or the server's *GraphQLError: QUOTA_EXCEEDED, UNAUTHENTICATED,
// …), or ctx ended before every file
// finished (ctx's error, with the results so far). Uploads cut short are left
// unfinished on the server: calling UploadFiles again with the same files
// sends only what is missing.
func (c *Client) UploadFiles(ctx context.Context, files []*File, opts UploadOptions) ([]Result, error) {
	parallel := opts.Parallel
	if parallel < 1 {
		parallel = DefaultParallel
	}
	b := &batchUpload{client: c, files: files, observer: opts.Observer, retryWait: opts.retryWait, slots: make(chan struct{}, parallel)}
	if b.observer == nil {
		b.observer = nobody{}
	}
	inputs := make([]FileInput, len(files))
	for i, f := range files {
		// One at a time: reading files in parallel from one disk is
		// slower, not faster.
		if f.Input.SHA256 == "" {
			if err := f.Hash(ctx, func(n int64) { b.observer.Hashed(i, n) }); err != nil {
				return nil, err
			}
		}
		inputs[i] = f.Input
	}
	results := make([]Result, len(files))
	inLibrary, err := c.findInLibrary(ctx, inputs)
	if err != nil {
		return nil, err
	}
	var toPlan []FileInput
	var planned []int // toPlan's files, by index in files
	for i, in := range inputs {
		if m, ok := inLibrary[i]; ok {
			results[i] = Result{Media: m, InLibrary: true}
			b.observer.Finished(i, results[i])
			continue
		}
		toPlan = append(toPlan, in)
		planned = append(planned, i)
	}
	uploads, err := c.planBatches(ctx, toPlan)
	if err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	for j, up := range uploads {
		i := planned[j]
		b.observer.Started(i, up)
		wg.Go(func() {
			media, err := b.sendFile(ctx, i, up)
			results[i] = Result{Upload: up, Media: media, Err: err}
			b.observer.Finished(i, results[i])
		})
	}
	wg.Wait()
	for _, r := range results {
		if r.Err != nil {
			return results, ctx.Err() // nil unless ctx ended, maybe causing r.Err
		}
	}
	return results, nil
}

// findInLibrary finds, for each input, a media file of the caller's,
// READY or still PROCESSING, with its content (SHA-256), name (as the
// server stores it), size and type: a file an earlier run of the same
// upload finished. initBatch would answer a READY one with a new copy
// (Deduplicated) and upload a PROCESSING one again: a second entry in
// the caller's library for every file that finished before an
// interruption. A PROCESSING file is known by the SHA-256 its upload
// declared, as this client's uploads do; if processing then finds other
// bytes it fails the file, and a later run sends it again.
//
// It asks userMedia once for each distinct SHA-256, paging through the
// answers (100 a page). One hash a request, not a list: PostgreSQL reads
// one through the index led by the hash, but plans a list of three or
// more, on a table it has no statistics of yet, as a walk of the
// caller's whole library (TestLibraryLookupReadsItsIndex). Next to
// hashing the file, a request costs little. A server that finds the
// query invalid (one without the contentHash filter) leaves every file to
// initBatch, as before; any other failure (UNAUTHENTICATED, RATE_LIMITED,
// the server unreachable) stops the upload, as initBatch's would: going on
// without the look-up would add the copies it is there to prevent.
func (c *Client) findInLibrary(ctx context.Context, inputs []FileInput) (map[int]MediaFile, error) {
	type sameFile struct {
		sha256, name, mimeType string
		size                   int64
	}
	wanted := map[sameFile][]int{}
	var sums []string
	asked := map[string]bool{}
	for i, in := range inputs {
		if in.SHA256 == "" {
			continue
		}
		k := sameFile{strings.ToLower(in.SHA256), filename.Sanitize(in.FileName), strings.ToLower(in.MimeType), in.Size}
		wanted[k] = append(wanted[k], i)
		if !asked[k.sha256] {
			asked[k.sha256] = true
			sums = append(sums, k.sha256)
		}
	}
	found := map[int]MediaFile{}
	for _, sum := range sums {
		q := MediaQuery{First: 100, ContentHash: sum, Statuses: []string{"READY", "PROCESSING"}}
		for {
			page, err := c.UserMedia(ctx, q)
			if refused, ok := errors.AsType[*GraphQLError](err); ok && refused.Code == "GRAPHQL_VALIDATION_FAILED" {
				return map[int]MediaFile{}, nil
			}
			if err != nil {
				return nil, err
			}
			// Newest first: a file found more than once is answered with
			// its newest copy.
			for _, m := range page.Media {
				for _, i := range wanted[sameFile{m.ContentHash, m.FileName, strings.ToLower(m.MimeType), m.FileSize}] {
					if _, done := found[i]; !done {
						found[i] = m
					}
				}
			}
			if !page.HasNextPage {
				break
			}
			q.After = page.EndCursor
		}
	}
	return found, nil
}

// planBatches plans the files in as few initBatch calls as the server
// takes. The server does not publish its batch limit, so a
// BATCH_TOO_LARGE halves the group until one fits. Not retried otherwise:
// a server that cannot be reached at all is most often a wrong URL,
// better said at once than after 40 s of retries. Groups planned before
// a refusal stay unfinished on the server, resumable by a later run.
func (c *Client) planBatches(ctx context.Context, inputs []FileInput) ([]Upload, error) {
	uploads := make([]Upload, 0, len(inputs))
	group := len(inputs)
	for start := 0; start < len(inputs); {
		end := min(start+group, len(inputs))
		batch, err := c.InitBatch(ctx, inputs[start:end])
		var gerr *GraphQLError
		if errors.As(err, &gerr) && gerr.Code == "BATCH_TOO_LARGE" && end-start > 1 {
			group = (end - start) / 2
			continue
		}
		if err != nil {
			return nil, err
		}
		if len(batch.Uploads) != end-start {
			return nil, fmt.Errorf("the server planned %d uploads for %d files", len(batch.Uploads), end-start)
		}
		uploads = append(uploads, batch.Uploads...)
		start = end
	}
	return uploads, nil
}

// batchUpload is one UploadFiles call under way.
type batchUpload struct {
	client   *Client
	files    []*File
	observer Observer
	// retryWait is UploadOptions.retryWait.
	retryWait time.Duration
	// slots holds a token per chunk in flight, across all files.
	slots chan struct{}
}

// sendFile sends the chunks of one file that the server lacks, then
// completes the file. An upload the server answered as COMPLETED (a file
// it already had) needs neither.
//
// A complete answered INCOMPLETE sends the chunks retry lists, and
// completes again, up to maxRounds in all: a chunk can go missing after
// it was acknowledged, when another client resuming the same upload (the
// command run twice, a browser tab) sends it again and so invalidates it
// until its own copy lands. The command failed there, to be run again.
func (b *batchUpload) sendFile(ctx context.Context, file int, up Upload) (MediaFile, error) {
	if up.Status == "COMPLETED" && up.Media != nil {
		return *up.Media, nil
	}
	urls, err := b.chunksToSend(ctx, file, up)
	for round := 1; ; round++ {
		if err != nil {
			return MediaFile{}, err
		}
		if err := b.sendChunks(ctx, file, up, urls); err != nil {
			return MediaFile{}, err
		}
		m, err := retryFile(ctx, b, file, func() (MediaFile, error) { return b.client.Complete(ctx, up.ID) })
		if !hasCode(err, "INCOMPLETE") || round == maxRounds {
			return m, err
		}
		urls, err = retryFile(ctx, b, file, func() ([]ChunkURL, error) { return b.client.Retry(ctx, up.ID) })
		if hasCode(err, "ALREADY_FINISHED") {
			// The other client completed it: complete answers its media.
			urls, err = nil, nil
		}
		for _, u := range urls {
			// Counted as sent when acknowledged; sent again now.
			b.observer.Sent(file, -u.Size)
		}
	}
}

// sendChunks sends urls' chunks of one file, --parallel at a time across
// the batch. The first chunk that fails for good stops the others.
func (b *batchUpload) sendChunks(ctx context.Context, file int, up Upload, urls []ChunkURL) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, u := range urls {
		if !b.acquire(gctx) {
			break
		}
		g.Go(func() error {
			defer func() { <-b.slots }()
			if err := b.sendChunk(gctx, file, up, u); err != nil {
				return fmt.Errorf("chunk %d: %w", u.ChunkIndex, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return ctx.Err()
}

// acquire waits for a free slot; it returns false, holding none, when ctx
// ends first.
func (b *batchUpload) acquire(ctx context.Context) bool {
	select {
	case b.slots <- struct{}{}:
		if ctx.Err() != nil {
			<-b.slots
			return false
		}
		return true
	case <-ctx.Done():
		return false
	}
}

// chunksToSend lists a URL for every chunk the server lacks. initBatch
// lists at most the server's cap of them; Retry lists them all.
func (b *batchUpload) chunksToSend(ctx context.Context, file int, up Upload) ([]ChunkURL, error) {
	if len(up.ChunkURLs) >= up.TotalChunks-up.Progress.UploadedChunks {
		return up.ChunkURLs, nil
	}
	return retryFile(ctx, b, file, func() ([]ChunkURL, error) { return b.client.Retry(ctx, up.ID) })
}

// sendChunk PUTs one chunk until the server has it, signing its URL anew
// when it expired or was refused.
//
// A URL with a Content-Range header goes to a resumable session (a
// direct SINGLE upload to GCS): the store may keep part of an attempt
// that broke off. Before trying again the client asks spool (retry) where
// to go on, and sends only the rest; if retry lists the chunk no more,
// the store has it whole.
func (b *batchUpload) sendChunk(ctx context.Context, file int, up Upload, u ChunkURL) error {
	chunkStart := int64(u.ChunkIndex) * up.ChunkSize
	counted := int64(0) // bytes of the chunk the store kept before, reported as sent
	resume := false
	_, err := retryFile(ctx, b, file, func() (struct{}, error) {
		switch {
		case resume:
			next, stored, err := b.resumePoint(ctx, up.ID, u.ChunkIndex)
			if err != nil || stored {
				return struct{}{}, err
			}
			u, resume = next, false
		case time.Until(u.ExpiresAt) < urlMargin:
			fresh, err := b.client.RequestChunkURL(ctx, up.ID, u.ChunkIndex)
			if err != nil {
				return struct{}{}, err
			}
			u = fresh
		}
		if kept := u.Offset - chunkStart; kept != counted {
			b.observer.Sent(file, kept-counted)
			counted = kept
		}
		body := &sentCounter{r: b.files[file].section(u.Offset, u.Size), report: func(n int64) { b.observer.Sent(file, n) }}
		err := b.client.PutChunk(ctx, u, body)
		if err != nil {
			body.takeBack()
			if hasStatus(err, http.StatusForbidden) {
				u.ExpiresAt = time.Time{} // sign anew before the next try
			}
			resume = resumable(u)
		}
		return struct{}{}, err
	})
	return err
}

// resumable reports whether u goes to a resumable session: it says which
// bytes it takes with Content-Range.
func resumable(u ChunkURL) bool {
	for _, h := range u.Headers {
		if http.CanonicalHeaderKey(h.Name) == "Content-Range" {
			return true
		}
	}
	return false
}

// resumePoint asks spool where a chunk sent to a resumable session goes
// on: stored is true when retry no longer lists it (the store has it).
func (b *batchUpload) resumePoint(ctx context.Context, uploadID string, index int) (next ChunkURL, stored bool, err error) {
	urls, err := b.client.Retry(ctx, uploadID)
	if err != nil {
		return ChunkURL{}, false, err
	}
	for _, u := range urls {
		if u.ChunkIndex == index {
			return u, false, nil
		}
	}
	return ChunkURL{}, true, nil
}

// retryFile runs op for file with withRetry, telling the observer of each
// failed try that is tried again.
func retryFile[T any](ctx context.Context, b *batchUpload, file int, op func() (T, error)) (T, error) {
	var wait backoff.BackOff = backoff.NewExponentialBackOff()
	if b.retryWait > 0 {
		wait = backoff.NewConstantBackOff(b.retryWait)
	}
	return withRetry(ctx, wait, func(err error, next time.Duration) { b.observer.Retrying(file, err, next) }, op)
}

// withRetry runs op until it succeeds, fails for good (see retryable),
// has failed maxTries times or ctx ends, waiting between tries as wait
// says, or as the server asked (waitAsked). notify hears of each failure
// that is tried again. A refusal for the user's budget that says when it
// has room (RATE_LIMITED with a wait) is the server pacing the upload,
// not failing it: it is tried again after that wait without counting as
// a try, so a tight budget makes an upload slower rather than failed.
// When every counted try failed in a way that trying again might have
// helped, the error says so (*GaveUpError).
func withRetry[T any](ctx context.Context, wait backoff.BackOff, notify func(error, time.Duration), op func() (T, error)) (T, error) {
	started, tries := time.Now(), 0
	return backoff.Retry(ctx, func() (T, error) {
		v, err := op()
		err = retryable(err)
		if err == nil || paced(err) || ctx.Err() != nil {
			return v, err // ctx's end: backoff.Retry returns its cause
		}
		tries++
		if _, permanent := errors.AsType[*backoff.PermanentError](err); !permanent && tries == maxTries {
			return v, backoff.Permanent(&GaveUpError{Tries: tries, Over: time.Since(started), Err: err})
		}
		return v, err
	}, backoff.WithBackOff(wait), backoff.WithMaxElapsedTime(0), backoff.WithNotify(notify))
}

// paced reports whether err is a RATE_LIMITED refusal that said how long
// to wait.
func paced(err error) bool {
	if _, ok := errors.AsType[*askedWait](err); !ok {
		return false
	}
	if g, ok := errors.AsType[*GraphQLError](err); ok {
		return g.Code == "RATE_LIMITED"
	}
	h, ok := errors.AsType[*HTTPError](err)
	return ok && (h.Code == "RATE_LIMITED" || h.Status == http.StatusTooManyRequests)
}

// GaveUpError is a request that failed maxTries times in a row, each time
// in a way that trying again might have helped; Err is the last failure.
type GaveUpError struct {
	Tries int
	Over  time.Duration
	Err   error
}

func (e *GaveUpError) Error() string {
	return fmt.Sprintf("%v (tried %d times over %s)", e.Err, e.Tries, e.Over.Round(time.Second))
}

func (e *GaveUpError) Unwrap() error { return e.Err }

// retryable marks err permanent unless trying again may help: the network
// failed, the server is busy or failing (5xx, 408, 429, RATE_LIMITED,
// UNAVAILABLE, STORAGE_UNAVAILABLE, INTERNAL), a chunk URL was refused (403: it is
// signed anew), or a resumable session kept only part of a chunk (308:
// the rest is sent).
func retryable(err error) error {
	var g *GraphQLError
	var h *HTTPError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &g):
		switch g.Code {
		case "STORAGE_UNAVAILABLE", "INTERNAL", "RATE_LIMITED", "UNAVAILABLE":
			return waitAsked(err, g.RetryAfter)
		}
	case errors.As(err, &h):
		if h.Status >= 500 || h.Status == http.StatusForbidden || h.Status == http.StatusPermanentRedirect ||
			h.Status == http.StatusRequestTimeout || h.Status == http.StatusTooManyRequests {
			return waitAsked(err, h.RetryAfter)
		}
	default:
		return err // the network, or ctx ending (which backoff.Retry sees itself)
	}
	return backoff.Permanent(err)
}

// waitAsked is err, retryable, with the wait its server asked for, if
// any: backoff then waits that long before the next try (it finds the
// RetryAfterError) instead of its own, shorter, interval, which would
// spend the tries on answers the server said would be the same.
func waitAsked(err error, after time.Duration) error {
	if after <= 0 {
		return err
	}
	return &askedWait{err: err, after: &backoff.RetryAfterError{Duration: after}}
}

// askedWait reads as its error; backoff finds the wait in it.
type askedWait struct {
	err   error
	after *backoff.RetryAfterError
}

func (w *askedWait) Error() string   { return w.err.Error() }
func (w *askedWait) Unwrap() []error { return []error{w.err, w.after} }

func hasStatus(err error, status int) bool {
	var h *HTTPError
	return errors.As(err, &h) && h.Status == status
}

// hasCode reports whether err is a GraphQL error with code.
func hasCode(err error, code string) bool {
	var g *GraphQLError
	return errors.As(err, &g) && g.Code == code
}

// sentCounter reports a chunk's bytes as the transport reads them, and
// takes them all back when the attempt fails. Once taken back it reads no
// more: the transport may still read a failed request's body for a while.
type sentCounter struct {
	mu     sync.Mutex
	r      io.Reader
	sent   int64
	done   bool
	report func(n int64)
}

func (s *sentCounter) Read(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return 0, io.ErrClosedPipe
	}
	n, err := s.r.Read(p)
	if n > 0 {
		s.sent += int64(n)
		s.report(int64(n))
	}
	return n, err
}

func (s *sentCounter) takeBack() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done = true
	if s.sent > 0 {
		s.report(-s.sent)
	}
}

// nobody is the Observer when there is none.
type nobody struct{}

func (nobody) Hashed(int, int64)                  {}
func (nobody) Started(int, Upload)                {}
func (nobody) Sent(int, int64)                    {}
func (nobody) Retrying(int, error, time.Duration) {}
func (nobody) Finished(int, Result)               {}
