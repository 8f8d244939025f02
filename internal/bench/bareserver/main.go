// Command bareserver is the baseline of spool's data-plane benchmark: the
// least an HTTP server can do to put chunks of a file on disk. It keeps one
// file, created at its full size, and writes each chunk's body at the
// offset the request names, each socket read as it comes, with nothing
// else around it: no auth, database, checksum or type check. Flags add,
// one at a time, what spool's local-disk engine does per chunk, so the
// benchmark can price each:
//
//   - -crc32c computes each chunk's CRC32C while writing it;
//
//   - -open-per-chunk opens the file for each chunk (and fstats it, as
//     spool checks the chunk against the file's size) and closes it after,
//     instead of keeping it open across requests;
//
//   - -fill fills a buffer of -fill-size bytes (1 MiB unless told;
//     the benchmark passes the write size spool's local engine picks on
//     its machine) before each write, as spool does, instead of writing
//     each socket read;
//
//   - -sync-range starts the chunk's writeback with
//     sync_file_range(SYNC_FILE_RANGE_WRITE) once it is written, as
//     spool's tus pieces do (its chunk PUTs do not);
//
//   - -fsync fsyncs the file after each chunk (the durable baseline, as
//     spool --fsync-chunks).
//
//     bareserver -file PATH [-addr 127.0.0.1:0] [-crc32c] [-open-per-chunk] [-fill [-fill-size N]] [-sync-range | -fsync]
//
//     POST /reset?size=N      (re)create the file, empty, at N bytes
//     PUT  /chunk?offset=N    write the body at offset N
//     DELETE /file            remove the file
//
// It prints its listen address on stdout once it is listening.
package main

import (
	"errors"
	"flag"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
)

// copyBufferSize is the buffer a chunk is copied through without -fill,
// the baseline as every earlier run measured it; a socket read seldom
// fills it.
const copyBufferSize = 1 << 20

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address `HOST:PORT`")
	path := flag.String("file", "", "the `PATH` of the file chunks are written to (required)")
	crc := flag.Bool("crc32c", false, "compute each chunk's CRC32C while writing it")
	openPerChunk := flag.Bool("open-per-chunk", false, "open, fstat and close the file for each chunk, as spool does")
	syncRange := flag.Bool("sync-range", false, "start each chunk's writeback with sync_file_range, as spool does")
	fsync := flag.Bool("fsync", false, "fsync the file after each chunk")
	fill := flag.Bool("fill", false, "fill the buffer before each write, as spool does")
	fillSize := flag.Int("fill-size", copyBufferSize, "the buffer's size in bytes with -fill")
	flag.Parse()
	if *path == "" {
		log.Fatal("bareserver: -file is required")
	}
	if *fillSize < 1 {
		log.Fatal("bareserver: -fill-size must be positive")
	}
	if *syncRange && *fsync {
		log.Fatal("bareserver: -sync-range and -fsync exclude each other")
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("bareserver: %v", err)
	}
	fmt.Println(ln.Addr().String())

	bufferSize := copyBufferSize
	if *fill {
		bufferSize = *fillSize
	}
	s := &server{path: *path, crc: *crc, openPerChunk: *openPerChunk, syncRange: *syncRange, fsync: *fsync, fill: *fill, buffers: sync.Pool{New: func() any {
		b := make([]byte, bufferSize)
		return &b
	}}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /reset", s.reset)
	mux.HandleFunc("PUT /chunk", s.putChunk)
	mux.HandleFunc("DELETE /file", s.remove)
	srv := &http.Server{Handler: mux}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-stop
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("bareserver: %v", err)
	}
	s.close()
}

type server struct {
	path         string
	crc          bool
	openPerChunk bool
	syncRange    bool
	fsync        bool
	fill         bool
	buffers      sync.Pool // of *[]byte, copyBufferSize long, or -fill-size with -fill

	mu sync.RWMutex // guards f against reset and remove while chunks write
	f  *os.File
}

func (s *server) reset(w http.ResponseWriter, r *http.Request) {
	size, err := strconv.ParseInt(r.URL.Query().Get("size"), 10, 64)
	if err != nil || size < 0 {
		http.Error(w, "size must be a byte count", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeLocked()
	_ = os.Remove(s.path)
	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o640)
	if err == nil {
		err = f.Truncate(size) // sparse, as spool's Prepare
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	s.f = f
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) putChunk(w http.ResponseWriter, r *http.Request) {
	offset, err := strconv.ParseInt(r.URL.Query().Get("offset"), 10, 64)
	if err != nil || offset < 0 {
		http.Error(w, "offset must be a byte count", http.StatusBadRequest)
		return
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.f == nil {
		http.Error(w, "no file: POST /reset first", http.StatusConflict)
		return
	}
	f := s.f
	if s.openPerChunk {
		var err error
		if f, err = os.OpenFile(s.path, os.O_WRONLY, 0); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer f.Close()
		info, err := f.Stat()
		if err != nil || offset > info.Size() {
			http.Error(w, fmt.Sprintf("offset %d outside the file (%v)", offset, err), http.StatusBadRequest)
			return
		}
	}
	buf := s.buffers.Get().(*[]byte)
	defer s.buffers.Put(buf)
	var body io.Reader = struct{ io.Reader }{r.Body} // hides any WriterTo, so the copy goes through buf
	if s.crc {
		body = &crcReader{r: r.Body, h: crc32.New(castagnoli)}
	}
	var n int64
	if s.fill {
		n, err = fillAndWrite(io.NewOffsetWriter(f, offset), body, *buf)
	} else {
		n, err = io.CopyBuffer(io.NewOffsetWriter(f, offset), body, *buf)
	}
	if err == nil && s.fsync {
		err = f.Sync()
	}
	if err == nil && s.syncRange {
		err = startWriteback(f, offset, n)
	}
	if err == nil && s.openPerChunk {
		err = f.Close()
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if r.ContentLength >= 0 && n != r.ContentLength {
		http.Error(w, fmt.Sprintf("got %d of %d bytes", n, r.ContentLength), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// fillAndWrite copies r to w through buf, writing only full buffers (and
// the tail), as spool's local-disk engine does, except that localfs also
// fills a chunk's last buffer in halves: that shortens the wait after the
// last byte by tens of µs and costs no CPU the variants can see, so the
// variants leave it out.
func fillAndWrite(w io.Writer, r io.Reader, buf []byte) (int64, error) {
	var written int64
	for {
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			written += int64(m)
			if werr != nil {
				return written, werr
			}
		}
		switch rerr {
		case nil:
		case io.EOF, io.ErrUnexpectedEOF:
			return written, nil
		default:
			return written, rerr
		}
	}
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crcReader hashes what it reads, as spool's chunk reader does.
type crcReader struct {
	r io.Reader
	h hash.Hash32
}

func (c *crcReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	return n, err
}

func (s *server) remove(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeLocked()
	if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeLocked()
}

func (s *server) closeLocked() {
	if s.f != nil {
		_ = s.f.Close()
		s.f = nil
	}
}
