//go:build linux

package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/spoolhq/spool/internal/client"
)

// newClient is the one HTTP client every request of the benchmark goes
// through, spool's and the bare server's alike.
func newClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: 8,
		DisableCompression:  true,
		WriteBufferSize:     256 << 10,
		ReadBufferSize:      64 << 10,
	}}
}

// chunkPUT is one request that sends a chunk: where to, and which bytes.
type chunkPUT struct {
	method  string
	url     string
	headers map[string]string
	offset  int64 // where the chunk starts in the file
	size    int64
}

// sendChunks PUTs every chunk with the given number of workers, each body
// a prefix of data, and returns the wall time from the first request to
// the last response. Any non-2xx answer fails the run.
func sendChunks(ctx context.Context, c *http.Client, chunks []chunkPUT, workers int, data []byte) (time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan chunkPUT)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	began := time.Now()
	for range workers {
		wg.Go(func() {
			for ch := range next {
				if err := sendChunk(ctx, c, ch, data[:ch.size]); err != nil {
					errs <- err
					cancel()
					return
				}
			}
		})
	}
feed:
	for _, ch := range chunks {
		select {
		case next <- ch:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	elapsed := time.Since(began)
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	return elapsed, ctx.Err()
}

func sendChunk(ctx context.Context, c *http.Client, ch chunkPUT, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, ch.method, ch.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	for k, v := range ch.headers {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", ch.method, ch.url, resp.Status, answer)
	}
	return nil
}

// bareChunks are the requests that send a file of size bytes to the bare
// server in chunks of chunkSize.
func bareChunks(base string, size, chunkSize int64) []chunkPUT {
	var out []chunkPUT
	for off := int64(0); off < size; off += chunkSize {
		out = append(out, chunkPUT{
			method: http.MethodPut,
			url:    fmt.Sprintf("%s/chunk?offset=%d", base, off),
			offset: off,
			size:   min(chunkSize, size-off),
		})
	}
	return out
}

// call sends a request without a body worth timing (reset, delete).
func call(ctx context.Context, c *http.Client, method, url string) error {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, answer)
	}
	return nil
}

// graphQL sends one operation to spool as the bench user and decodes its
// data into out.
func (s *spoolServer) graphQL(ctx context.Context, c *http.Client, query string, vars map[string]any, out any) error {
	return (&client.Client{Server: s.url, Token: s.token, HTTP: c}).Do(ctx, query, vars, out)
}

const chunkURLFields = `chunkIndex url method headers { name value } offset size`

type chunkURL struct {
	ChunkIndex int    `json:"chunkIndex"`
	URL        string `json:"url"`
	Method     string `json:"method"`
	Headers    []struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	} `json:"headers"`
	Offset int64 `json:"offset"`
	Size   int64 `json:"size"`
}

func (u chunkURL) put() chunkPUT {
	h := make(map[string]string, len(u.Headers))
	for _, kv := range u.Headers {
		h[kv.Name] = kv.Value
	}
	return chunkPUT{method: u.Method, url: u.URL, headers: h, offset: u.Offset, size: u.Size}
}

// initUpload plans the upload of one MP4 of size bytes and returns its id
// and a request for every chunk, asking for the URLs spool did not list.
func (s *spoolServer) initUpload(ctx context.Context, c *http.Client, size int64, sha256 string) (string, []chunkPUT, error) {
	return s.initUploadOf(ctx, c, "bench.mp4", "video/mp4", size, sha256)
}

// initUploadOf is initUpload for a file of any name and type; an empty
// sha256 is not declared.
func (s *spoolServer) initUploadOf(ctx context.Context, c *http.Client, fileName, mimeType string, size int64, sha256 string) (string, []chunkPUT, error) {
	file := map[string]any{"fileName": fileName, "size": size, "mimeType": mimeType}
	if sha256 != "" {
		file["sha256"] = sha256
	}
	var init struct {
		InitBatch struct {
			Uploads []struct {
				ID          string     `json:"id"`
				TotalChunks int        `json:"totalChunks"`
				ChunkURLs   []chunkURL `json:"chunkUrls"`
			} `json:"uploads"`
		} `json:"initBatch"`
	}
	err := s.graphQL(ctx, c, `mutation($input: InitBatchInput!) {
		initBatch(input: $input) { uploads { id totalChunks chunkUrls { `+chunkURLFields+` } } } }`,
		map[string]any{"input": map[string]any{"files": []map[string]any{file}}}, &init)
	if err != nil {
		return "", nil, fmt.Errorf("initBatch: %w", err)
	}
	if len(init.InitBatch.Uploads) != 1 {
		return "", nil, fmt.Errorf("initBatch: %d uploads for 1 file", len(init.InitBatch.Uploads))
	}
	up := init.InitBatch.Uploads[0]
	puts := make([]chunkPUT, up.TotalChunks)
	listed := make([]bool, up.TotalChunks)
	for _, u := range up.ChunkURLs {
		puts[u.ChunkIndex], listed[u.ChunkIndex] = u.put(), true
	}
	for i, ok := range listed {
		if ok {
			continue
		}
		var more struct {
			RequestChunkURL chunkURL `json:"requestChunkUrl"`
		}
		err := s.graphQL(ctx, c, `mutation($id: ID!, $i: Int!) { requestChunkUrl(uploadId: $id, chunkIndex: $i) { `+chunkURLFields+` } }`,
			map[string]any{"id": up.ID, "i": i}, &more)
		if err != nil {
			return "", nil, fmt.Errorf("requestChunkUrl %d: %w", i, err)
		}
		puts[i] = more.RequestChunkURL.put()
	}
	return up.ID, puts, nil
}

// complete finishes the upload and returns its media id.
func (s *spoolServer) complete(ctx context.Context, c *http.Client, uploadID string) (string, error) {
	var out struct {
		Complete struct {
			ID  string `json:"id"`
			URL string `json:"url"`
		} `json:"complete"`
	}
	if err := s.graphQL(ctx, c, `mutation($id: ID!) { complete(uploadId: $id) { id url } }`,
		map[string]any{"id": uploadID}, &out); err != nil {
		return "", fmt.Errorf("complete: %w", err)
	}
	if out.Complete.ID == "" || out.Complete.URL == "" {
		return "", errors.New("complete: no media id or url")
	}
	return out.Complete.ID, nil
}

// awaitProcessed waits until spool has hashed the media file in the
// background, so that work does not fall into the next measurement, and
// fails unless its SHA-256 matched what was sent.
func (s *spoolServer) awaitProcessed(ctx context.Context, c *http.Client, mediaID string) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var out struct {
			Node struct {
				Status string `json:"status"`
			} `json:"node"`
		}
		if err := s.graphQL(ctx, c, `query($id: ID!) { node(id: $id) { ... on MediaFile { status } } }`,
			map[string]any{"id": mediaID}, &out); err != nil {
			return fmt.Errorf("reading media status: %w", err)
		}
		switch out.Node.Status {
		case "READY":
			return nil
		case "PROCESSING":
		default:
			return fmt.Errorf("media %s is %s, want READY (was the SHA-256 checked?)", mediaID, out.Node.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("media %s still PROCESSING after 2 minutes", mediaID)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// deleteMedia deletes the media file and waits until its bytes are gone
// from the data dir, so runs never hold more than one file on disk.
func (s *spoolServer) deleteMedia(ctx context.Context, c *http.Client, mediaID string) error {
	var out struct {
		DeleteMedia string `json:"deleteMedia"`
	}
	if err := s.graphQL(ctx, c, `mutation($id: ID!) { deleteMedia(id: $id) }`, map[string]any{"id": mediaID}, &out); err != nil {
		return fmt.Errorf("deleteMedia: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		files, err := s.storedFiles()
		if err != nil {
			return err
		}
		if len(files) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("files still stored 30 s after deleteMedia: %v", files)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// storedFiles lists the regular files in spool's file store (staging and
// objects), to clean up after and to find a staging file.
func (s *spoolServer) storedFiles() ([]string, error) {
	var files []string
	err := filepath.WalkDir(filepath.Join(s.dataDir, "files"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			files = append(files, p)
		}
		return nil
	})
	return files, err
}

// sendStreams sends each stream's chunks in order, all streams at once
// (one worker each), and returns the wall time from the first request to
// the last response. tus appends, so an upload's PATCHes go one at a time;
// parallel tus is several uploads.
func sendStreams(ctx context.Context, c *http.Client, streams [][]chunkPUT, data []byte) (time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(streams))
	var wg sync.WaitGroup
	began := time.Now()
	for _, chunks := range streams {
		wg.Go(func() {
			for _, ch := range chunks {
				if err := sendChunk(ctx, c, ch, data[:ch.size]); err != nil {
					errs <- err
					cancel()
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(began)
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	return elapsed, ctx.Err()
}

// tusCreate creates a tus upload of size bytes and returns its URL.
func tusCreate(ctx context.Context, c *http.Client, base string, size int64) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Upload-Length", strconv.FormatInt(size, 10))
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("tus create: %s: %s", resp.Status, answer)
	}
	loc, err := resp.Location()
	if err != nil {
		return "", fmt.Errorf("tus create: %w", err)
	}
	return loc.String(), nil
}

// tusChunks are the PATCHes that send an upload of size bytes in chunks of
// chunkSize.
func tusChunks(upload string, size, chunkSize int64) []chunkPUT {
	var out []chunkPUT
	for off := int64(0); off < size; off += chunkSize {
		out = append(out, chunkPUT{
			method: http.MethodPatch,
			url:    upload,
			headers: map[string]string{
				"Tus-Resumable": "1.0.0",
				"Upload-Offset": strconv.FormatInt(off, 10),
				"Content-Type":  "application/offset+octet-stream",
			},
			offset: off,
			size:   min(chunkSize, size-off),
		})
	}
	return out
}

// tusDelete terminates a tus upload, removing its file; headers go with
// the request (spool's token).
func tusDelete(ctx context.Context, c *http.Client, upload string, headers map[string]string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, upload, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Tus-Resumable", "1.0.0")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("tus delete %s: %s", upload, resp.Status)
	}
	return nil
}
