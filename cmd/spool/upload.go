package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/cwriter"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/spoolhq/spool/internal/client"
	"github.com/spoolhq/spool/internal/usertimeout"
)

// defaultServer is where the client commands look without --server or
// SPOOL_SERVER: serve's default address.
const defaultServer = "http://127.0.0.1:8080"

// maxParallel bounds --parallel: more chunks at once than this only add
// memory and connections, not speed.
const maxParallel = 64

// uploadFiles sends files to a server, in as few batches as it takes, and
// prints each file's media URL on stdout ("PATH\tURL"); progress goes to
// stderr.
func uploadFiles(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("spool upload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: spool upload [flags] FILE...")
		fs.PrintDefaults()
	}
	remote := addRemoteFlags(fs)
	parallel := fs.Int("parallel", client.DefaultParallel, fmt.Sprintf("chunks sent at once, 1 to %d", maxParallel))
	paths, err := parseInterspersed(fs, args, getenv)
	if err != nil {
		return err
	}
	if *parallel < 1 || *parallel > maxParallel {
		return fmt.Errorf("--parallel must be 1 to %d, got %d", maxParallel, *parallel)
	}
	if len(paths) == 0 {
		return errors.New("no files given (spool upload [flags] FILE...)")
	}
	c, err := remote.client(*parallel)
	if err != nil {
		return err
	}
	// Tests run the server in-process, and its shutdown waits for open
	// connections: leave none behind.
	defer c.HTTP.CloseIdleConnections()
	files, err := openFiles(paths)
	if err != nil {
		return err
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()

	view := newProgressView(stderr, files)
	results, err := c.UploadFiles(ctx, files, client.UploadOptions{Parallel: *parallel, Observer: view})
	view.wait()
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("interrupted; run the same command again to resume (%w)", err)
	}
	if err != nil {
		return &failure{fmt.Errorf("could not start the upload: %w", err)}
	}
	failed := 0
	for i, r := range results {
		if r.Err != nil {
			failed++
			fmt.Fprintf(stderr, "spool: %s: %v\n", files[i].Path, r.Err)
			continue
		}
		fmt.Fprintf(stdout, "%s\t%s\n", files[i].Path, r.Media.URL)
	}
	if failed > 0 {
		return &failure{fmt.Errorf("%d of %d files failed; run the same command again to resume them", failed, len(files))}
	}
	return nil
}

// failure is an error of the work itself (the server refused it, the
// network failed it), not of how spool was called: it exits 1, not 2.
type failure struct{ err error }

func (f *failure) Error() string { return f.err.Error() }
func (f *failure) Unwrap() error { return f.err }

// parseInterspersed is parseFlags that also takes flags after the first
// argument (spool upload a.mp4 --parallel 8), returning the arguments.
// "--" ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string, getenv func(string) string) ([]string, error) {
	if err := parseFlags(fs, args, getenv); err != nil {
		return nil, err
	}
	var rest []string
	for fs.NArg() > 0 {
		if used := len(args) - fs.NArg(); used > 0 && args[used-1] == "--" {
			return append(rest, fs.Args()...), nil
		}
		rest = append(rest, fs.Arg(0))
		args = fs.Args()[1:]
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
	}
	return rest, nil
}

// remoteFlags are the flags of every command that calls a server.
type remoteFlags struct {
	server, token string
}

func addRemoteFlags(fs *flag.FlagSet) *remoteFlags {
	r := &remoteFlags{}
	fs.StringVar(&r.server, "server", defaultServer, "the spool server's base `URL`")
	fs.StringVar(&r.token, "token", "", "bearer `TOKEN` (spool token --user NAME prints one)")
	return r
}

// client checks the flags and returns a client of the server that keeps
// up to conns connections open.
func (r *remoteFlags) client(conns int) (*client.Client, error) {
	u, err := url.Parse(r.server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("--server %q is not a server URL such as %s", r.server, defaultServer)
	}
	token, err := tokenFlag(r.token)
	if err != nil {
		return nil, err
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	// The default keeps 2 idle connections per host: parallel chunks
	// would open and close connections all the time.
	transport.MaxIdleConnsPerHost = conns
	// A path that died silently (a laptop changing networks, a
	// partition) fails what was sent into it within usertimeout.Default,
	// and a connection awaiting an answer on it about as soon, instead
	// of after TCP's retransmissions, about 15 minutes; the attempt is
	// retried on a new connection. Chunk bodies have the client's stall
	// watch besides (client.DefaultStallTimeout).
	transport.DialContext = usertimeout.Dialer(usertimeout.Default).DialContext
	// A server that took a chunk but never answers must not hang the
	// upload: the attempt fails and is retried.
	transport.ResponseHeaderTimeout = 2 * time.Minute
	return &client.Client{Server: strings.TrimRight(r.server, "/"), Token: token, HTTP: &http.Client{Transport: transport}}, nil
}

// tokenFlag returns the token of --token (or SPOOL_TOKEN) as spool token
// prints it. A pasted header value, "Bearer " and the token, is taken as
// the web uploader takes it; any other value of more than one word
// ("Basic …", a token with a space) is refused before it is sent, naming
// the flag: the server could only say that the header it received must
// be "Bearer " and a token. The value itself is never repeated.
func tokenFlag(v string) (string, error) {
	words := strings.Fields(v)
	switch {
	case len(words) == 0:
		return "", errors.New("no token: pass --token or set SPOOL_TOKEN (spool token --user NAME prints one)")
	case len(words) == 1:
		return words[0], nil
	case len(words) == 2 && strings.EqualFold(words[0], "Bearer"):
		return words[1], nil
	}
	return "", fmt.Errorf("--token (or SPOOL_TOKEN) takes the token alone, as spool token prints it; this one has %d words, starting %q", len(words), words[0])
}

// openFiles opens every file or none, so bad input fails before anything
// is sent.
func openFiles(paths []string) ([]*client.File, error) {
	var files []*client.File
	for _, p := range paths {
		f, err := client.OpenFile(p)
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			return nil, err
		}
		files = append(files, f)
	}
	return files, nil
}

// progressView shows an upload's progress on stderr.
type progressView interface {
	client.Observer
	// wait returns once everything is shown.
	wait()
}

// newProgressView draws a bar per file on a terminal, and elsewhere (a
// log, a pipe, a test) writes a plain line per file and event instead of
// escape codes.
func newProgressView(stderr io.Writer, files []*client.File) progressView {
	names := make([]string, len(files))
	sizes := make([]int64, len(files))
	for i, f := range files {
		names[i], sizes[i] = f.Path, f.Input.Size
	}
	if !cwriter.New(stderr).IsTerminal() {
		return &lineView{out: stderr, names: names}
	}
	return &barView{
		progress: mpb.New(mpb.WithOutput(stderr)),
		names:    names,
		sizes:    sizes,
		phases:   make([]phase, len(files)),
		bars:     make([]*mpb.Bar, len(files)),
		hashed:   make([]int64, len(files)),
		finished: make([]bool, len(files)),
		retrying: make([]bool, len(files)),
		pending:  make([]int64, len(files)),
		shownAt:  make([]time.Time, len(files)),
	}
}

// formatSize writes a byte count for people: whole bytes below 1 KiB
// ("13 B"), else one decimal in binary units ("1.5 MiB"). mpb's
// SizeB1024 writes bytes as "13.0 b", so they are formatted here.
func formatSize(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("% .1f", decor.SizeB1024(n))
}

// alreadyUploaded says that nothing of a file was sent, naming its media:
// the caller's earlier file, or the new one sharing its bytes.
func alreadyUploaded(mediaID string) string {
	return "already uploaded as media " + mediaID + ", nothing sent"
}

// plannedMedia is the id of the media an upload was planned with, "?" if
// none.
func plannedMedia(up client.Upload) string {
	if up.Media == nil {
		return "?"
	}
	return up.Media.ID
}

// briefly names why a request is being tried again in a few words, to
// fit beside a bar: the cause of no answer, else the server's code.
func briefly(err error) string {
	if e, ok := errors.AsType[*client.NoAnswerError](err); ok {
		return e.Reason()
	}
	if e, ok := errors.AsType[*client.GraphQLError](err); ok && e.Code != "" {
		return e.Code
	}
	if e, ok := errors.AsType[*client.HTTPError](err); ok {
		if e.Code != "" {
			return e.Code
		}
		return fmt.Sprintf("HTTP %d", e.Status)
	}
	return err.Error()
}

// lineView writes a line when a file starts and when it ends, and when
// one of its requests is tried again for a reason not said before.
type lineView struct {
	mu    sync.Mutex
	out   io.Writer
	names []string
	said  map[string]bool // "file index\x00reason" of each retry line written
}

func (v *lineView) Hashed(int, int64) {}

func (v *lineView) Started(i int, up client.Upload) {
	if up.Deduplicated {
		return // Finished says so
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	msg := fmt.Sprintf("%s: %s, %s", v.names[i], formatSize(up.TotalSize), up.Strategy)
	if up.TotalChunks > 1 {
		msg += fmt.Sprintf(" in %d chunks", up.TotalChunks)
	}
	if n := up.Progress.UploadedChunks; n > 0 {
		msg += fmt.Sprintf(", resuming: %d received before", n)
	}
	fmt.Fprintln(v.out, msg)
}

func (v *lineView) Sent(int, int64) {}

func (v *lineView) Retrying(i int, err error, wait time.Duration) {
	v.mu.Lock()
	defer v.mu.Unlock()
	key := fmt.Sprintf("%d\x00%v", i, err)
	if v.said[key] {
		return // parallel chunks failing alike say it once
	}
	if v.said == nil {
		v.said = map[string]bool{}
	}
	v.said[key] = true
	fmt.Fprintf(v.out, "%s: trying again in %s: %v\n", v.names[i], wait.Round(100*time.Millisecond), err)
}

func (v *lineView) Finished(i int, r client.Result) {
	v.mu.Lock()
	defer v.mu.Unlock()
	switch {
	case r.Err != nil:
		fmt.Fprintf(v.out, "%s: stopped\n", v.names[i])
	case r.AlreadyUploaded():
		fmt.Fprintf(v.out, "%s: %s\n", v.names[i], alreadyUploaded(r.Media.ID))
	default:
		fmt.Fprintf(v.out, "%s: uploaded\n", v.names[i])
	}
}

func (v *lineView) wait() {}

// redrawEvery batches the bytes a bar is moved by: the transport reads
// 32 KiB at a time, far more often than a bar is worth redrawing.
const redrawEvery = 100 * time.Millisecond

// phase is what a bar says its file is doing when that is not sending:
// "hashing 42%", or that it was uploaded before. mpb reads it while
// drawing, so it has a lock of its own, never held while calling mpb.
type phase struct {
	mu   sync.Mutex
	text string
}

func (p *phase) set(text string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.text = text
}

func (p *phase) get(decor.Statistics) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.text
}

// barView draws a bar per file: its phase, then bytes, percent, speed and
// time left.
type barView struct {
	progress *mpb.Progress
	names    []string
	sizes    []int64
	phases   []phase

	mu       sync.Mutex
	bars     []*mpb.Bar  // made by the file's first event
	hashed   []int64     // bytes read to hash, per file
	finished []bool      // per file: Finished was called
	retrying []bool      // per file: its phase says it is retrying
	pending  []int64     // bytes sent but not shown yet, per file
	shownAt  []time.Time // when each bar last moved
}

// barLocked returns file i's bar, making it first if need be; v.mu is
// held.
func (v *barView) barLocked(i int) *mpb.Bar {
	if v.bars[i] == nil {
		v.bars[i] = v.progress.AddBar(v.sizes[i],
			mpb.PrependDecorators(
				decor.Name(v.names[i], decor.WCSyncSpaceR),
				decor.Any(v.phases[i].get, decor.WCSyncSpaceR),
				decor.Counters(decor.SizeB1024(0), "% .1f / % .1f", decor.WCSyncSpace),
			),
			mpb.AppendDecorators(
				decor.Percentage(decor.WCSyncSpace),
				decor.EwmaSpeed(decor.SizeB1024(0), "% .1f", 30, decor.WCSyncSpace),
				decor.OnAbort(decor.OnComplete(decor.EwmaETA(decor.ET_STYLE_GO, 30, decor.WCSyncSpace), "done"), "stopped"),
			),
		)
		v.shownAt[i] = time.Now()
	}
	return v.bars[i]
}

func (v *barView) Hashed(i int, n int64) {
	v.mu.Lock()
	v.barLocked(i)
	v.hashed[i] += n
	percent := v.hashed[i] * 100 / max(v.sizes[i], 1)
	v.mu.Unlock()
	v.phases[i].set(fmt.Sprintf("hashing %d%%", percent))
}

func (v *barView) Started(i int, up client.Upload) {
	v.mu.Lock()
	bar := v.barLocked(i)
	v.shownAt[i] = time.Now()
	v.mu.Unlock()
	if up.Deduplicated {
		v.phases[i].set(alreadyUploaded(plannedMedia(up)))
		return
	}
	v.phases[i].set("")
	bar.SetCurrent(up.Progress.UploadedBytes)
}

// Retrying says so in the file's phase until its bytes move again: while
// a server restarts, its bars would otherwise stand still without a word.
func (v *barView) Retrying(i int, err error, _ time.Duration) {
	v.mu.Lock()
	v.retrying[i] = true
	v.mu.Unlock()
	v.phases[i].set("retrying (" + briefly(err) + ")")
}

func (v *barView) Sent(i int, n int64) {
	v.mu.Lock()
	if n > 0 && v.retrying[i] {
		v.retrying[i] = false
		v.phases[i].set("")
	}
	v.pending[i] += n
	now := time.Now()
	elapsed := now.Sub(v.shownAt[i])
	if n > 0 && elapsed < redrawEvery {
		v.mu.Unlock()
		return
	}
	bar, move := v.bars[i], v.pending[i]
	v.pending[i], v.shownAt[i] = 0, now
	v.mu.Unlock()
	if move < 0 {
		bar.IncrInt64(move) // an attempt failed: its bytes will be sent again
		return
	}
	// Time since the bar last moved, whichever chunk moved it, makes the
	// speed that of all the file's chunks together.
	bar.EwmaIncrInt64(move, elapsed)
}

func (v *barView) Finished(i int, r client.Result) {
	v.mu.Lock()
	// A file found in the library was never started: its bar may be new.
	bar, move, elapsed := v.barLocked(i), v.pending[i], time.Since(v.shownAt[i])
	v.pending[i], v.finished[i] = 0, true
	v.mu.Unlock()
	if r.Err != nil {
		bar.Abort(false)
		return
	}
	switch {
	case r.InLibrary:
		v.phases[i].set(alreadyUploaded(r.Media.ID))
	case !r.Upload.Deduplicated:
		v.phases[i].set("") // a retried complete's "retrying"
	}
	if !r.AlreadyUploaded() {
		// A file sent within one redraw period still gets its speed.
		bar.EwmaIncrInt64(move, elapsed)
	}
	bar.SetCurrent(v.sizes[i])
}

// wait stops the bars of files that never finished (hashing or planning
// failed, or was interrupted), then waits until every bar is drawn.
func (v *barView) wait() {
	v.mu.Lock()
	var stopped []*mpb.Bar
	for i, bar := range v.bars {
		if bar != nil && !v.finished[i] {
			stopped = append(stopped, bar)
		}
	}
	v.mu.Unlock()
	for _, bar := range stopped {
		bar.Abort(false)
	}
	v.progress.Wait()
}
