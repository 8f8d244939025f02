package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"cloud.google.com/go/storage"
	"google.golang.org/api/iterator"

	"github.com/spoolhq/spool/internal/required"
	"github.com/spoolhq/spool/internal/storage/gcs/gcstest"
)

// TestCrashAnywhereLeavesNoOrphans is issue 9's proof of invariants 7 and
// 10 on both engine sets: a server killed with SIGKILL at a random point
// of a mix of concurrent uploads (mid-upload, mid-complete,
// mid-processing), then restarted, runs its start-up sweep and orphan
// pass, after which, checked from outside (the database's tables and the
// store's objects):
//
//   - every stored byte belongs to a record: staged bytes or parts to an
//     unfinished upload, an object to an unpurged media file (its
//     object or a thumbnail) or to an upload still ASSEMBLING;
//   - every READY media file's object and thumbnails exist, the object
//     of the size the row says;
//   - nothing acknowledged is lost: every upload whose complete returned
//     before the kill ends READY.
//
// The files are real media (PNG, JPEG, and an MP4 whose moov follows its
// mdat, so processing stores a faststart copy and deletes the original),
// so processing runs in full.
func TestCrashAnywhereLeavesNoOrphans(t *testing.T) {
	mp4 := lateMoovMP4(t)
	// Most of a round is waiting (River's leader, rescuer and scheduler),
	// so the two engine sets run side by side.
	t.Run("embedded", func(t *testing.T) {
		t.Parallel()
		crashRounds(t, newEmbedded(t), mp4)
	})
	t.Run("production", func(t *testing.T) {
		t.Parallel()
		crashRounds(t, newProductionEngines(t), mp4)
	})
}

// crashRounds is the test on one engine set.
func crashRounds(t *testing.T, e *crashEngines, mp4 []byte) {
	const rounds = 4
	start := time.Now()
	db := e.openDB(t)
	token := e.token(t, "alice")
	args := slices.Concat(e.engines, []string{
		// Bytes left by the kill are removed by the next start's pass.
		"--orphan-age", "1ms",
		// A job of the killed server is rescued testRescueAfter after it
		// started.
		"--job-timeout", testJobTimeout.String(), "--job-rescue-after", testRescueAfter.String(),
	})
	srv := e.serve(t, args...)
	waitStartupPasses(t, db, 0)
	acked := map[string]string{} // upload id → media id, for every complete that returned
	var retry []string           // uploads whose complete was cut off by a kill
	for round := range rounds {
		rng := rand.New(rand.NewPCG(9, uint64(round)))
		kp := killPoint(round % 3) // each kill point once, then drawn
		if round >= 3 {
			kp = killPoint(rng.IntN(3))
		}
		r := runRound(t, srv, token, rng, kp, mp4)
		for up, m := range r.acked() {
			acked[up] = m
		}
		retry = append(retry, r.cutOff()...)
		t.Logf("round %d: %s; %s", round, r.describeKill(), describeAtKill(t, db, e, r))

		ranJobs := runningJobs(t, db)
		clearLeader(t, db)
		if ranJobs > 0 {
			// River's rescuer runs when the new leader starts (and every
			// 30 s after): restart once the rescue delay has passed, so
			// that first run finds the killed server's jobs.
			poll(t, "the rescue delay to pass", func() bool { return time.Since(r.killedAt) > testRescueAfter+500*time.Millisecond })
		}
		lastJob := maxJobID(t, db)
		srv = e.serve(t, args...)
		waitStartupPasses(t, db, lastJob)
		waitSettled(t, db, srv.log)
		checkStore(t, db, e, acked)

		// A client whose complete was cut off sends it again; the next
		// round's check (or the last one below) finds its media READY.
		for _, up := range retry {
			var done struct{ Complete struct{ ID string } }
			if err := tryGQL(srv.url, token, `mutation($id: ID!) { complete(uploadId: $id) { id } }`, map[string]any{"id": up}, &done); err != nil {
				t.Errorf("round %d: complete of %s again after the restart: %v", round, up, err)
				continue
			}
			acked[up] = done.Complete.ID
		}
		retry = nil
	}
	waitSettled(t, db, srv.log)
	checkStore(t, db, e, acked)
	t.Logf("%d rounds, %d files acknowledged, in %v", rounds, len(acked), time.Since(start).Round(time.Millisecond))
}

// crashEngines is an engine set spool runs on, and how the test reads
// its database and store from outside.
type crashEngines struct {
	*walkthrough
	driver, dsn string
	walk        func(t *testing.T) []storedBytes
}

// storedBytes is one object or file in the store.
type storedBytes struct {
	upload bool   // staged bytes or parts of an unfinished upload
	key    string // the upload's key (upload) or the object's
	name   string // where it is, for messages
	size   int64
}

// newEmbedded is `spool serve --data-dir DIR` with no engine URLs: SQLite
// in DIR and the files under DIR/files.
func newEmbedded(t *testing.T) *crashEngines {
	dir := t.TempDir()
	w := &walkthrough{
		env:     append(userEnv(), runMainEnv+"=1", "SPOOL_JWT_SECRET="+goodSecret),
		engines: []string{"--data-dir", dir, "--single-threshold", "1MiB", "--chunk-size", "5MiB"},
	}
	files := filepath.Join(dir, "files")
	return &crashEngines{
		walkthrough: w,
		driver:      "sqlite",
		dsn:         "file:" + filepath.Join(dir, "spool.db") + "?_pragma=busy_timeout(10000)",
		walk: func(t *testing.T) []storedBytes {
			var out []storedBytes
			err := filepath.WalkDir(files, func(name string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				info, err := d.Info()
				if err != nil {
					return err
				}
				rel, _ := filepath.Rel(files, name)
				tree, key, _ := strings.Cut(filepath.ToSlash(rel), "/")
				out = append(out, storedBytes{upload: tree == "staging", key: key, name: rel, size: info.Size()})
				if tree != "staging" && tree != "objects" {
					out[len(out)-1].key = "" // nothing owns a file elsewhere
				}
				return nil
			})
			if err != nil {
				t.Fatalf("walking %s: %v", files, err)
			}
			return out
		},
	}
}

// newProductionEngines is the walk-through's engines (PostgreSQL, Redis,
// the GCS emulator) with media processing on.
func newProductionEngines(t *testing.T) *crashEngines {
	w := newWalkthrough(t)
	w.engines = slices.DeleteFunc(slices.Clone(w.engines), func(a string) bool { return a == "--media-processing=false" })
	bucket, prefix, _ := strings.Cut(strings.TrimPrefix(w.storage[1], "gs://"), "/")
	return &crashEngines{
		walkthrough: w,
		driver:      "pgx",
		dsn:         w.database,
		walk:        bucketWalk(gcstest.NewClient(t, w.emulator), bucket, prefix),
	}
}

// bucketWalk lists what spool keeps under prefix in bucket: parts and
// temporary objects of unfinished uploads, and objects.
func bucketWalk(client *storage.Client, bucket, prefix string) func(t *testing.T) []storedBytes {
	return func(t *testing.T) []storedBytes {
		var out []storedBytes
		it := client.Bucket(bucket).Objects(context.Background(), &storage.Query{Prefix: prefix + "/"})
		for {
			attrs, err := it.Next()
			if errors.Is(err, iterator.Done) {
				return out
			}
			if err != nil {
				t.Fatalf("listing the bucket: %v", err)
			}
			rest := strings.TrimPrefix(attrs.Name, prefix+"/")
			area, name, _ := strings.Cut(rest, "/")
			b := storedBytes{name: attrs.Name, size: attrs.Size}
			switch area {
			case "parts", "tmp": // parts/KEY/000000, parts/KEY/prepared
				b.upload, b.key = true, path.Dir(name)
			case "objects":
				b.key = name
			}
			out = append(out, b)
		}
	}
}

func (e *crashEngines) openDB(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open(e.driver, e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// killPoint is where in a round the server is killed.
type killPoint int

const (
	// killMidUpload kills after the k-th chunk PUT of the round returns.
	killMidUpload killPoint = iota
	// killMidComplete kills a moment after a complete is sent, before
	// its answer.
	killMidComplete
	// killMidProcessing kills a moment after a video's complete returns,
	// while it is being processed.
	killMidProcessing
)

// crashFile is one upload of a round and what became of it.
type crashFile struct {
	name, mime string
	data       []byte
	goal       int  // chunks to send; a complete follows if it is all of them
	trigger    bool // its complete is the one the kill point watches

	// Set while the round runs, under round.mu.
	id       string
	sent     int    // chunks sent
	inFlight bool   // a complete was sent and has not returned
	mediaID  string // what the complete returned
}

// round is one round's uploads and its kill.
type round struct {
	kp       killPoint
	delay    time.Duration // after the complete, for killMidComplete and killMidProcessing
	afterPut int           // the PUT to kill after, for killMidUpload
	files    []*crashFile
	srv      *replica

	mu       sync.Mutex
	puts     int
	killedAt time.Time
	killNote string
	killOnce sync.Once
	dead     chan struct{}
}

// runRound makes a round's files, uploads them concurrently through srv
// and kills srv at the round's kill point; it returns once every upload
// stopped.
func runRound(t *testing.T, srv *replica, token string, rng *rand.Rand, kp killPoint, mp4 []byte) *round {
	t.Helper()
	r := &round{kp: kp, srv: srv, dead: make(chan struct{})}
	r.files = roundFiles(rng, mp4)
	planned := 0
	for _, f := range r.files {
		planned += f.goal
	}
	switch kp {
	case killMidUpload:
		r.afterPut = 1 + rng.IntN(max(1, planned-1))
	case killMidComplete:
		r.delay = time.Duration(rng.IntN(20_000)) * time.Microsecond
	case killMidProcessing:
		r.delay = time.Duration(rng.IntN(500)) * time.Millisecond
	}

	var wg sync.WaitGroup
	for _, f := range r.files {
		wg.Go(func() {
			// Each file is a batch of its own, so the kill may also cut
			// an initBatch short (its storage prepared, its row not).
			chunks, err := initOne(srv.url, token, f)
			if err != nil {
				return
			}
			r.mu.Lock()
			f.id, f.goal = chunks.ID, min(f.goal, len(chunks.ChunkUrls))
			r.mu.Unlock()
			for n, c := range chunks.ChunkUrls[:f.goal] {
				if r.isDead() || putChunk(c.URL, f.data[c.Offset:c.Offset+c.Size]) != nil {
					return
				}
				r.mu.Lock()
				f.sent, r.puts = n+1, r.puts+1
				puts := r.puts
				r.mu.Unlock()
				if r.kp == killMidUpload && puts == r.afterPut {
					r.kill(fmt.Sprintf("killed after chunk PUT %d of %d planned (chunk %d of %s)", puts, planned, n, f.name))
				}
			}
			if f.goal < len(chunks.ChunkUrls) || r.isDead() {
				return
			}
			r.complete(token, f)
		})
	}
	wg.Wait()
	r.kill("killed after every upload had stopped (the kill point was never reached)")
	return r
}

// complete sends f's complete, arming the kill if f is the trigger.
func (r *round) complete(token string, f *crashFile) {
	r.mu.Lock()
	f.inFlight = true
	r.mu.Unlock()
	if f.trigger && r.kp == killMidComplete {
		time.AfterFunc(r.delay, func() {
			r.kill(fmt.Sprintf("killed %v after the complete of %s (%d chunks) was sent", r.delay, f.name, f.goal))
		})
	}
	var done struct{ Complete struct{ ID string } }
	err := tryGQL(r.srv.url, token, `mutation($id: ID!) { complete(uploadId: $id) { id } }`, map[string]any{"id": f.id}, &done)
	r.mu.Lock()
	if err == nil {
		f.inFlight, f.mediaID = false, done.Complete.ID
	}
	r.mu.Unlock()
	if err == nil && f.trigger && r.kp == killMidProcessing {
		time.Sleep(r.delay)
		r.kill(fmt.Sprintf("killed %v after the complete of %s returned", r.delay, f.name))
	}
}

func (r *round) isDead() bool {
	select {
	case <-r.dead:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL to the round's server, once.
func (r *round) kill(note string) {
	r.killOnce.Do(func() {
		r.srv.stopped = true
		_ = r.srv.cmd.Process.Signal(syscall.SIGKILL)
		<-r.srv.done
		r.mu.Lock()
		r.killedAt, r.killNote = time.Now(), note
		r.mu.Unlock()
		close(r.dead)
	})
}

func (r *round) describeKill() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.killNote
}

// acked returns the uploads whose complete returned, with their media.
func (r *round) acked() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := map[string]string{}
	for _, f := range r.files {
		if f.mediaID != "" {
			m[f.id] = f.mediaID
		}
	}
	return m
}

// cutOff returns the uploads whose complete the kill cut off.
func (r *round) cutOff() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ids []string
	for _, f := range r.files {
		if f.inFlight {
			ids = append(ids, f.id)
		}
	}
	return ids
}

// roundFiles makes a round's files: two or three PNGs of 6–11 MiB
// (CHUNKED: 2 or 3 chunks of 5 MiB), a small PNG and a JPEG (SINGLE),
// and an MP4 with its moov last, small or of two chunks. Each is new
// bytes, so none is a duplicate of another. Most are completed; the
// rest stop after some or all of their chunks.
func roundFiles(rng *rand.Rand, mp4 []byte) []*crashFile {
	files := []*crashFile{
		{name: "big-a.png", mime: "image/png", data: paddedPNG(rng, 6<<20+rng.IntN(5<<20))},
		{name: "big-b.png", mime: "image/png", data: paddedPNG(rng, 6<<20+rng.IntN(5<<20))},
		{name: "small.png", mime: "image/png", data: paddedPNG(rng, rng.IntN(64<<10))},
		{name: "photo.jpg", mime: "image/jpeg", data: smallJPEG(rng)},
		{name: "clip.mp4", mime: "video/mp4", data: paddedMP4(rng, mp4, []int{64, 6 << 20}[rng.IntN(2)])},
	}
	if rng.IntN(2) == 0 {
		files = append(files, &crashFile{name: "big-c.png", mime: "image/png", data: paddedPNG(rng, 6<<20+rng.IntN(5<<20))})
	}
	for _, f := range files {
		chunks := max(1, (len(f.data)+5<<20-1)/(5<<20))
		if len(f.data) <= 1<<20 {
			chunks = 1
		}
		f.goal = chunks // complete
		if rng.IntN(3) == 0 {
			f.goal = rng.IntN(chunks + 1) // stop after 0..all chunks, no complete
			if f.goal == chunks {
				f.goal = chunks - 1 + rng.IntN(2)
			}
		}
	}
	// The kill points watch big-a's complete (a multi-chunk assembly)
	// and clip.mp4's (a faststart remux); both are completed.
	files[0].goal, files[0].trigger = (len(files[0].data)+5<<20-1)/(5<<20), true
	files[4].trigger = true
	if len(files[4].data) > 1<<20 {
		files[4].goal = 2
	} else {
		files[4].goal = 1
	}
	return files
}

// paddedPNG is a small random PNG with a private ancillary chunk of pad
// random bytes after its header: decoders skip it, and it makes the file
// as large as the test needs.
func paddedPNG(rng *rand.Rand, pad int) []byte {
	img := image.NewNRGBA(image.Rect(0, 0, 40+rng.IntN(60), 30+rng.IntN(40)))
	for i := range img.Pix {
		img.Pix[i] = byte(rng.UintN(256))
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		panic(err)
	}
	const afterIHDR = 8 + 25
	raw := b.Bytes()
	chunk := make([]byte, 12+pad)
	binary.BigEndian.PutUint32(chunk, uint32(pad))
	copy(chunk[4:], "spOl")
	fillRandom(rng, chunk[8:8+pad])
	binary.BigEndian.PutUint32(chunk[8+pad:], crc32.ChecksumIEEE(chunk[4:8+pad]))
	return slices.Concat(raw[:afterIHDR], chunk, raw[afterIHDR:])
}

func smallJPEG(rng *rand.Rand) []byte {
	img := image.NewRGBA(image.Rect(0, 0, 64, 48))
	tint := color.RGBA{uint8(rng.UintN(256)), uint8(rng.UintN(256)), uint8(rng.UintN(256)), 255}
	for y := range 48 {
		for x := range 64 {
			img.Set(x, y, color.RGBA{uint8(x * 4), uint8(y * 5), tint.B, 255})
		}
	}
	img.Set(0, 0, tint)
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 90}); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// paddedMP4 is the MP4 with a free box of pad random bytes at its end, so
// each copy is new bytes; the remux drops it.
func paddedMP4(rng *rand.Rand, mp4 []byte, pad int) []byte {
	box := make([]byte, 8+pad)
	binary.BigEndian.PutUint32(box, uint32(8+pad))
	copy(box[4:], "free")
	fillRandom(rng, box[8:])
	return slices.Concat(mp4, box)
}

func fillRandom(rng *rand.Rand, b []byte) {
	for i := 0; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], rng.Uint64())
	}
	for i := len(b) &^ 7; i < len(b); i++ {
		b[i] = byte(rng.UintN(256))
	}
}

// lateMoovMP4 makes a 1 s MP4 whose moov box follows its mdat (ffmpeg's
// default without +faststart), so processing stores a faststart copy.
// It skips the test where ffmpeg is not installed, and fails if CI is
// set (.ci/run installs it).
func lateMoovMP4(t *testing.T) []byte {
	t.Helper()
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		required.Missing(t, "ffmpeg is not installed (the crash test processes a video; .ci/run installs it)")
	}
	out := filepath.Join(t.TempDir(), "clip.mp4")
	cmd := exec.Command(ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10:duration=1",
		"-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if i, j := bytes.Index(b, []byte("mdat")), bytes.Index(b, []byte("moov")); i < 0 || j < i {
		t.Fatalf("ffmpeg's MP4 has moov at %d and mdat at %d: want moov last", j, i)
	}
	return b
}

// plannedUpload is an upload as initBatch plans it.
type plannedUpload struct {
	ID        string
	ChunkUrls []struct {
		URL    string
		Offset int64
		Size   int64
	}
}

// initOne plans f as a batch of its own.
func initOne(base, token string, f *crashFile) (plannedUpload, error) {
	var plan struct {
		InitBatch struct{ Uploads []plannedUpload }
	}
	err := tryGQL(base, token, `mutation($f: [FileInput!]!) { initBatch(input: {files: $f}) { uploads { id chunkUrls { url offset size } } } }`,
		map[string]any{"f": []any{map[string]any{"fileName": f.name, "size": len(f.data), "mimeType": f.mime}}}, &plan)
	if err != nil {
		return plannedUpload{}, err
	}
	if len(plan.InitBatch.Uploads) != 1 {
		return plannedUpload{}, fmt.Errorf("initBatch planned %d uploads, want 1", len(plan.InitBatch.Uploads))
	}
	return plan.InitBatch.Uploads[0], nil
}

// tryGQL is gql for a server that may die under it: it returns an error
// instead of failing the test.
func tryGQL(base, token, query string, vars map[string]any, out any) error {
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequest(http.MethodPost, base+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var res struct {
		Data   json.RawMessage `json:"data"`
		Errors []struct {
			Message string `json:"message"`
		} `json:"errors"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return fmt.Errorf("decoding the answer (HTTP %d): %w", resp.StatusCode, err)
	}
	if len(res.Errors) > 0 {
		return fmt.Errorf("GraphQL errors: %+v", res.Errors)
	}
	return json.Unmarshal(res.Data, out)
}

func putChunk(url string, body []byte) error {
	req, err := http.NewRequest(http.MethodPut, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("PUT %s: %d %s", url, resp.StatusCode, b)
	}
	return nil
}

// queryInt runs a query that returns one integer.
func queryInt(t *testing.T, db *sql.DB, q string) int64 {
	t.Helper()
	var n sql.NullInt64
	if err := db.QueryRow(q).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n.Int64
}

func maxJobID(t *testing.T, db *sql.DB) int64 {
	return queryInt(t, db, `SELECT max(id) FROM river_job`)
}

func runningJobs(t *testing.T, db *sql.DB) int64 {
	return queryInt(t, db, `SELECT count(*) FROM river_job WHERE state = 'running'`)
}

// clearLeader ends the killed server's leadership of River, as the
// expiry of its lease would 10–15 s later: the restarted server then
// leads at once and inserts the start-up sweep and orphan pass, instead
// of every round waiting out the lease.
func clearLeader(t *testing.T, db *sql.DB) {
	t.Helper()
	if _, err := db.Exec(`DELETE FROM river_leader`); err != nil {
		t.Fatalf("clearing River's leader: %v", err)
	}
}

// waitStartupPasses waits until a sweep and an orphan pass newer than
// job afterID have completed.
func waitStartupPasses(t *testing.T, db *sql.DB, afterID int64) {
	t.Helper()
	for _, kind := range []string{"spool_sweep", "spool_remove_orphans"} {
		q := fmt.Sprintf(`SELECT count(*) FROM river_job WHERE kind = '%s' AND id > %d AND state = 'completed'`, kind, afterID)
		poll(t, "the start-up "+kind+" job to complete", func() bool { return queryInt(t, db, q) > 0 })
	}
}

// waitSettled waits until no media file is PROCESSING and no purge is
// waiting. If they do not settle it fails with what is still open and
// the logs given (the servers').
func waitSettled(t *testing.T, db *sql.DB, logs ...fmt.Stringer) {
	t.Helper()
	pollExplained(t, "processing and purges to finish", func() bool {
		return queryInt(t, db, `SELECT count(*) FROM media_files WHERE status = 'PROCESSING' AND deleted_at IS NULL`) == 0 &&
			queryInt(t, db, `SELECT count(*) FROM river_job WHERE `+openJobs) == 0
	}, func() string { return unsettled(t, db, logs) })
}

// openJobs selects the jobs waitSettled waits for: all but the periodic
// passes, until they end.
const openJobs = `kind <> 'spool_sweep' AND kind <> 'spool_remove_orphans'
	AND state IN ('available', 'pending', 'retryable', 'running', 'scheduled')`

// unsettled lists the media files still PROCESSING and the open jobs
// with their attempts, then the last lines of each log, where a job's
// errors are (River's errors column is binary JSONB on SQLite).
func unsettled(t *testing.T, db *sql.DB, logs []fmt.Stringer) string {
	t.Helper()
	var b strings.Builder
	list := func(title, query string) {
		rows, err := db.Query(query)
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", title, err)
			return
		}
		defer rows.Close()
		fmt.Fprintf(&b, "%s:\n", title)
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]sql.NullString, len(cols))
			dest := make([]any, len(cols))
			for i := range vals {
				dest[i] = &vals[i]
			}
			if err := rows.Scan(dest...); err != nil {
				fmt.Fprintf(&b, "  %v\n", err)
				return
			}
			for i, v := range vals {
				fmt.Fprintf(&b, "  %s=%s", cols[i], v.String)
			}
			b.WriteString("\n")
		}
	}
	list("media PROCESSING", `SELECT id, CAST(created_at AS TEXT) AS created_at FROM media_files WHERE status = 'PROCESSING' AND deleted_at IS NULL`)
	list("open jobs", `SELECT id, kind, state, attempt, CAST(attempted_at AS TEXT) AS attempted_at,
		CAST(scheduled_at AS TEXT) AS scheduled_at FROM river_job WHERE `+openJobs+` ORDER BY id`)
	for _, l := range logs {
		lines := strings.Split(strings.TrimSpace(l.String()), "\n")
		fmt.Fprintf(&b, "the server's log, its last %d lines:\n%s\n", min(len(lines), 200), strings.Join(lines[max(0, len(lines)-200):], "\n"))
	}
	return b.String()
}

// records is what the database says owns stored bytes.
type records struct {
	sessions map[string]string // storage key → status
	media    []crashMedia
}

type crashMedia struct {
	id, uploadID, status, key, problem string
	size                               int64
	thumbs                             []string
	deleted, purged                    bool
}

func readRecords(t *testing.T, db *sql.DB) records {
	t.Helper()
	rec := records{sessions: map[string]string{}}
	rows, err := db.Query(`SELECT storage_key, status FROM upload_sessions`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var key, status string
		if err := rows.Scan(&key, &status); err != nil {
			t.Fatal(err)
		}
		rec.sessions[key] = status
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows, err = db.Query(`SELECT id, upload_id, status, storage_key, file_size, thumbnails, processing_error,
		deleted_at IS NOT NULL, purged_at IS NOT NULL FROM media_files`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var m crashMedia
		var upload, problem sql.NullString
		var thumbs []byte
		if err := rows.Scan(&m.id, &upload, &m.status, &m.key, &m.size, &thumbs, &problem, &m.deleted, &m.purged); err != nil {
			t.Fatal(err)
		}
		m.uploadID, m.problem = upload.String, problem.String
		var ts []struct{ Key string }
		if len(thumbs) > 0 {
			if err := json.Unmarshal(thumbs, &ts); err != nil {
				t.Fatalf("media %s's thumbnails %s: %v", m.id, thumbs, err)
			}
		}
		for _, th := range ts {
			m.thumbs = append(m.thumbs, th.Key)
		}
		rec.media = append(rec.media, m)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return rec
}

// checkStore checks the three promises of the test against the records
// and the store as they are now.
func checkStore(t *testing.T, db *sql.DB, e *crashEngines, acked map[string]string) {
	t.Helper()
	rec := readRecords(t, db)
	items := e.walk(t)
	owned := map[string]bool{} // object keys
	for _, m := range rec.media {
		if !m.purged {
			owned[m.key] = true
			for _, k := range m.thumbs {
				owned[k] = true
			}
		}
	}
	for key, status := range rec.sessions {
		if status == "ASSEMBLING" {
			owned[key] = true
		}
	}
	objects := map[string]int64{}
	for _, it := range items {
		switch {
		case it.key == "":
			t.Errorf("%s (%d bytes) is outside the store's trees", it.name, it.size)
		case it.upload:
			if st := rec.sessions[it.key]; st != "INITIALIZED" && st != "UPLOADING" && st != "ASSEMBLING" {
				t.Errorf("%s (%d bytes): upload bytes with no unfinished upload (session %q)", it.name, it.size, st)
			}
		default:
			objects[it.key] = it.size
			if !owned[it.key] {
				t.Errorf("%s (%d bytes): an object no record owns", it.name, it.size)
			}
		}
	}
	byID := map[string]crashMedia{}
	for _, m := range rec.media {
		byID[m.id] = m
		if m.status != "READY" || m.deleted {
			continue
		}
		if size, ok := objects[m.key]; !ok || size != m.size {
			t.Errorf("READY media %s: object %s has %d bytes (stored: %v), want %d", m.id, m.key, size, ok, m.size)
		}
		for _, k := range m.thumbs {
			if _, ok := objects[k]; !ok {
				t.Errorf("READY media %s: thumbnail %s is not stored", m.id, k)
			}
		}
	}
	for up, id := range acked {
		m, ok := byID[id]
		switch {
		case !ok:
			t.Errorf("upload %s: its acknowledged media %s is gone", up, id)
		case m.status != "READY":
			t.Errorf("upload %s: its acknowledged media %s is %s (%q), want READY", up, id, m.status, m.problem)
		}
	}
	if testing.Verbose() {
		t.Logf("checked %d stored items, %d sessions, %d media files, %d acknowledged", len(items), len(rec.sessions), len(rec.media), len(acked))
	}
}

// describeAtKill says what the kill interrupted, read from the records
// and the store before the restart.
func describeAtKill(t *testing.T, db *sql.DB, e *crashEngines, r *round) string {
	t.Helper()
	rec := readRecords(t, db)
	ours := map[string]bool{}
	for _, f := range r.files {
		ours[f.id] = true
	}
	statuses := map[string]int{}
	for _, f := range r.files {
		for key, st := range rec.sessions {
			if strings.HasSuffix(key, "/"+f.id) {
				statuses[st]++
			}
		}
	}
	derived := map[string]int{} // media id → derivatives stored
	for _, it := range e.walk(t) {
		if parts := strings.Split(it.key, "/"); !it.upload && len(parts) == 3 {
			derived[parts[1]]++
		}
	}
	var processing, withDerived, ready []string
	for _, m := range rec.media {
		if !ours[m.uploadID] {
			continue
		}
		switch m.status {
		case "PROCESSING":
			processing = append(processing, m.id)
			if derived[m.id] > 0 {
				withDerived = append(withDerived, fmt.Sprintf("%s (%d derivatives stored)", m.id, derived[m.id]))
			}
		case "READY":
			ready = append(ready, m.id)
		}
	}
	r.mu.Lock()
	inFlight := 0
	for _, f := range r.files {
		if f.inFlight {
			inFlight++
		}
	}
	r.mu.Unlock()
	var s []string
	for st, n := range statuses {
		s = append(s, fmt.Sprintf("%d %s", n, st))
	}
	sort.Strings(s)
	return fmt.Sprintf("sessions at the kill: %s; %d completes cut off; media: %d PROCESSING %v, %d READY; %d jobs running",
		strings.Join(s, ", "), inFlight, len(processing), withDerived, len(ready), runningJobs(t, db))
}
