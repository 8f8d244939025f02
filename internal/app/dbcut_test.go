package app_test

import (
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/spoolhq/spool/internal/app"
	"github.com/spoolhq/spool/internal/database/dbtest"
	"github.com/spoolhq/spool/internal/jobs"
)

// TestDatabaseCutDuringComplete cuts PostgreSQL for 5 s in the middle of
// six concurrent completes, right after the COMMIT of the first
// transaction that completes one (which commits on the server while
// spool sees the connection die: an ambiguous commit), each upload
// watched by a subscriber. Clients retry
// complete as they would. Every subscriber must end at COMPLETED with its
// media READY: no upload completes without its processing job, a failed
// processing is retried within seconds, and a retried complete
// publishes. The delay from the database's return to each final event is
// logged, not asserted.
func TestDatabaseCutDuringComplete(t *testing.T) {
	dbURL := dbtest.Postgres(t)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := startDBProxy(t, u.Host)
	u.Host = proxy.Addr()
	// pgx then sends each statement's text, not a cached statement's
	// name, so the proxy can see which transaction creates a media file.
	q := u.Query()
	q.Set("default_query_exec_mode", "exec")
	u.RawQuery = q.Encode()
	s := startSpool(t, func(c *app.Config) {
		c.DatabaseURL = u.String()
		c.Jobs.PollInterval = jobs.DefaultConfig().PollInterval // production's pace
	})
	tok := s.token("alice")

	const n = 6
	type watched struct {
		id     string
		events <-chan progress
	}
	files := make([][]byte, n)
	ups := make([]watched, n)
	for i := range ups {
		files[i] = fileBytes("video/mp4", 6<<20, uint64(100+i))
		up := s.initBatch(tok, map[string]any{"fileName": "clip.mp4", "size": len(files[i]), "mimeType": "video/mp4"}).Uploads[0]
		for _, c := range up.ChunkURLs {
			sendChunk(t, c, files[i], 200)
		}
		ws := s.dialWS(tok, nil)
		ws.subscribe("up", `subscription($id: ID!) { uploadProgress(uploadId: $id) { uploadId status mediaId mediaStatus } }`,
			map[string]any{"id": up.ID})
		ups[i] = watched{id: up.ID, events: collect(ws, "up")}
		if first := <-ups[i].events; first.Status != "UPLOADING" {
			t.Fatalf("snapshot of %s: %+v, want UPLOADING", up.ID, first)
		}
	}

	// The cut comes right after the commit of the first transaction that
	// completes an upload (it creates the media file).
	cut := proxy.CutOn(`insert into "media_files"`, "commit", 5*time.Second)
	var wg sync.WaitGroup
	tries := make([]int, n)
	for i, up := range ups {
		wg.Go(func() {
			// A client retrying complete until it answers, as the CLI does.
			deadline := time.Now().Add(2 * time.Minute)
			for {
				tries[i]++
				var out struct{ Complete media }
				errs := s.gql(tok, `mutation($id: ID!) { complete(uploadId: $id) { id } }`, map[string]any{"id": up.id}, &out)
				if len(errs) == 0 && out.Complete.ID != "" {
					return
				}
				if time.Now().After(deadline) {
					t.Errorf("complete(%s) still failing after 2 minutes: %v", up.id, errs)
					return
				}
				time.Sleep(250 * time.Millisecond)
			}
		})
	}
	var window cutWindow
	select {
	case window = <-cut:
	case <-time.After(time.Minute):
		t.Fatal("no COMMIT passed the proxy within a minute of the completes")
	}
	wg.Wait()

	// Each subscription is drained at once, so the time of its last
	// event is when it arrived.
	type ending struct {
		last progress
		at   time.Time
	}
	endings := make([]ending, n)
	var drain sync.WaitGroup
	for i, up := range ups {
		drain.Go(func() {
			for p := range up.events {
				endings[i] = ending{p, time.Now()}
			}
		})
	}
	drain.Wait()
	var worst time.Duration
	for i, up := range ups {
		last := endings[i].last
		if last.Status != "COMPLETED" || last.MediaStatus != "READY" {
			t.Errorf("upload %s: last event %+v, want COMPLETED with media READY", up.id, last)
			continue
		}
		delay := endings[i].at.Sub(window.until)
		worst = max(worst, delay)
		t.Logf("upload %s: complete answered after %d tries; final READY %v after the database came back", up.id, tries[i], delay.Round(time.Millisecond))
	}
	t.Logf("database cut %v; the last subscriber's final event came %v after it was back", window.until.Sub(window.from).Round(time.Millisecond), worst.Round(time.Millisecond))
}
