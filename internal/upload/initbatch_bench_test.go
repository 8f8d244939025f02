package upload_test

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/api/option"

	"github.com/spoolhq/spool/ent"
	"github.com/spoolhq/spool/ent/mediafile"
	"github.com/spoolhq/spool/internal/storage/gcs"
	"github.com/spoolhq/spool/internal/storage/gcs/gcstest"
	"github.com/spoolhq/spool/internal/upload"
)

// BenchmarkInitBatch measures initBatch of large batches, as a CLI
// uploading a folder sends them: one user, initBatchClients batches in
// flight at once, 200 files each, on the embedded SQLite and on
// PostgreSQL; the files plain, or named by sha256 and fingerprint as the
// web uploader names them (each then looked up for an upload to resume
// and a copy to share); named in batches of 5, the web uploader's batch
// at the default limit; and in batches of 5 files the user has READY,
// each then completed at once as a copy. Each op is one batch. It reports files
// planned per second, the CPU time per file of this process and of the
// whole machine (PostgreSQL's included), and the first and last tenth of
// the batches' median latency, so that a cost growing with the user's
// uploads shows as a ratio above 1.
//
//	go test -run '^$' -bench 'InitBatch$' -benchtime 100x ./internal/upload/
func BenchmarkInitBatch(b *testing.B) {
	const initBatchClients = 4
	for _, engine := range benchEngines(b) {
		for _, c := range []initBatchCase{
			{name: "plain", files: 200},
			{name: "named", named: true, files: 200},
			// The web uploader's batch, at the default --max-batch-files.
			{name: "named-5", named: true, files: 5},
			// Files the user has READY: each completed at once as a copy.
			{name: "copies-5", named: true, copies: true, files: 5},
		} {
			b.Run(engine.name+"/"+c.name, func(sub *testing.B) { initBatches(sub, engine, c, initBatchClients) })
		}
	}
}

// initBatchCase is one kind of batch BenchmarkInitBatch sends.
type initBatchCase struct {
	name   string
	named  bool // files named by sha256 and fingerprint
	copies bool // of files the user has READY (named too)
	files  int  // per batch
}

func initBatches(sub *testing.B, engine benchEngine, c initBatchCase, initBatchClients int) {
	initBatchFiles := c.files
	ctx := context.Background()
	dbURL, path := engine.open(sub)
	cfg := testConfig()
	cfg.MaxBatchFiles = initBatchFiles
	e, err := newEnvOn(sub, dbURL, path, filepath.Join(sub.TempDir(), "files"), nil, cfg)
	if err != nil {
		sub.Fatal(err)
	}
	u, err := e.svc.EnsureUser(ctx, "bench")
	if err != nil {
		sub.Fatal(err)
	}
	if err := e.db.User.UpdateOneID(u.ID).SetQuotaBytes(1 << 50).Exec(ctx); err != nil {
		sub.Fatal(err)
	}
	data := []byte{0xFF, 0xFB} // an MP3 frame's start: the smallest file spool takes
	sum := func(batch, file int) string { return fmt.Sprintf("%064x", batch*initBatchFiles+file) }
	if c.copies {
		// A READY original of every file the batches will name.
		originals := make([]*ent.MediaFileCreate, 0, sub.N*initBatchFiles)
		for i := range sub.N {
			for f := range initBatchFiles {
				originals = append(originals, e.db.MediaFile.Create().SetOwnerID(u.ID).
					SetFileName(fmt.Sprintf("orig-%d-%d.mp3", i, f)).SetMimeType("audio/mpeg").SetMediaType("AUDIO").
					SetFileSize(int64(len(data))).SetStorageKey(fmt.Sprintf("%s/orig-%d-%d", u.ID, i, f)).
					SetStatus(mediafile.StatusREADY).SetContentHash(sum(i, f)).SetCreatedAt(time.Now()))
			}
		}
		for part := range slices.Chunk(originals, 100) {
			if err := e.db.MediaFile.CreateBulk(part...).Exec(ctx); err != nil {
				sub.Fatal(err)
			}
		}
	}
	files := make([]upload.FileSpec, initBatchFiles)
	latencies := make([]time.Duration, sub.N)
	var (
		next int
		mu   sync.Mutex
		wg   sync.WaitGroup
		errs = make(chan error, initBatchClients)
	)
	sub.ResetTimer()
	began, cpu0, all0 := time.Now(), processCPU(sub), machineCPU(sub)
	for range initBatchClients {
		wg.Go(func() {
			batch := make([]upload.FileSpec, len(files))
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= sub.N {
					return
				}
				for f := range batch {
					batch[f] = upload.FileSpec{FileName: fmt.Sprintf("%d-%d.mp3", i, f), Size: int64(len(data)), MimeType: "audio/mpeg"}
					if c.named {
						digest := sum(i, f)
						batch[f].SHA256, batch[f].Fingerprint = &digest, &batch[f].FileName
					}
				}
				t := time.Now()
				b, err := e.svc.InitBatch(ctx, u.ID, upload.BatchSpec{Files: batch})
				if err == nil && c.copies && !b.Uploads[0].Deduplicated {
					err = fmt.Errorf("batch %d: %s was not deduplicated", i, b.Uploads[0].FileName)
				}
				if err != nil {
					errs <- err
					return
				}
				latencies[i] = time.Since(t)
			}
		})
	}
	wg.Wait()
	elapsed, cpu, all := time.Since(began), processCPU(sub)-cpu0, machineCPU(sub)-all0
	sub.StopTimer()
	close(errs)
	if err := <-errs; err != nil {
		sub.Fatalf("InitBatch: %v", err)
	}
	planned := float64(sub.N * initBatchFiles)
	sub.ReportMetric(planned/elapsed.Seconds(), "files/s")
	sub.ReportMetric(float64(cpu.Microseconds())/planned, "spool-cpu-µs/file")
	sub.ReportMetric(float64(all.Microseconds())/planned, "machine-cpu-µs/file")
	if tenth := sub.N / 10; tenth >= 1 {
		first, last := medianDuration(latencies[:tenth]), medianDuration(latencies[sub.N-tenth:])
		sub.ReportMetric(float64(first.Microseconds())/1000, "first-ms/batch")
		sub.ReportMetric(float64(last.Microseconds())/1000, "last-ms/batch")
		sub.ReportMetric(last.Seconds()/first.Seconds(), "last/first")
	}
}

func medianDuration(ds []time.Duration) time.Duration {
	xs := make([]float64, len(ds))
	for i, d := range ds {
		xs[i] = float64(d)
	}
	return time.Duration(median(xs))
}

// BenchmarkInitBatchGCS measures initBatch on GCS, where preparing each
// file writes a marker object: the emulator behind a transport that adds
// gcsRTT to every request, as a round trip to GCS takes from a cloud VM.
// In the same run, the same store prepared one file at a time (what
// spool did before it overlapped them) is the baseline. Each op is one
// batch of gcsBatchFiles files, the web uploader's batch.
//
//	go test -run '^$' -bench InitBatchGCS -benchtime 20x ./internal/upload/
func BenchmarkInitBatchGCS(b *testing.B) {
	const gcsRTT, gcsBatchFiles = 20 * time.Millisecond, 5
	srv := gcstest.Start(b)
	client := srv.Client(b, option.WithHTTPClient(&http.Client{Transport: delayed{gcsRTT, http.DefaultTransport}}))
	store := gcs.New(client, srv.CreateBucket(b), "spool", gcs.Options{
		SignedURLs: &gcs.SignedURLs{GoogleAccessID: gcstest.GoogleAccessID, PrivateKey: gcstest.SigningKey(b), Insecure: true},
	})
	cfg := testConfig()
	cfg.DirectUploads = true
	variants := []struct {
		name  string
		store upload.Store
	}{{"one at a time", oneAtATime{store}}, {"overlapped", store}}
	perBatch := make([]time.Duration, len(variants))
	for i, v := range variants {
		e := newTestServiceOn(b, cfg, v.store)
		u, err := e.svc.EnsureUser(context.Background(), "bench")
		if err != nil {
			b.Fatal(err)
		}
		files := make([]upload.FileSpec, gcsBatchFiles)
		began := time.Now()
		for n := range b.N {
			for f := range files {
				files[f] = upload.FileSpec{FileName: fmt.Sprintf("%d-%d.mp3", n, f), Size: 2, MimeType: "audio/mpeg"}
			}
			if _, err := e.svc.InitBatch(context.Background(), u.ID, upload.BatchSpec{Files: files}); err != nil {
				b.Fatalf("%s: InitBatch: %v", v.name, err)
			}
		}
		perBatch[i] = time.Since(began) / time.Duration(b.N)
	}
	b.ReportMetric(0, "ns/op") // two variants: see the metrics
	b.ReportMetric(float64(perBatch[0].Microseconds())/1000, "one-at-a-time-ms/batch")
	b.ReportMetric(float64(perBatch[1].Microseconds())/1000, "overlapped-ms/batch")
	b.ReportMetric(perBatch[1].Seconds()/perBatch[0].Seconds(), "overlapped/one-at-a-time")
}

// oneAtATime is a GCS store whose files are prepared one at a time.
type oneAtATime struct{ *gcs.Store }

func (oneAtATime) PrepareConcurrency() int { return 1 }

// delayed is a transport that waits rtt before each request.
type delayed struct {
	rtt  time.Duration
	next http.RoundTripper
}

func (d delayed) RoundTrip(r *http.Request) (*http.Response, error) {
	select {
	case <-time.After(d.rtt):
	case <-r.Context().Done():
		return nil, r.Context().Err()
	}
	return d.next.RoundTrip(r)
}
