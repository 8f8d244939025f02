// Command tusdpeer is the peer in spool's benchmarks: tusd v2's file store
// behind tusd's own handler, the way tusd's documentation mounts it, with
// creation and termination enabled and the file locker tusd pairs with its
// file store. It lives in a module of its own so that spool's go.mod never
// depends on tusd; `go test ./...` and `go vet ./...` from spool's root do
// not descend into it.
//
//	tusdpeer -dir DIR [-addr 127.0.0.1:0]
//
//	POST   /files/       create an upload (Upload-Length)
//	HEAD   /files/ID     its offset
//	PATCH  /files/ID     append at Upload-Offset
//	DELETE /files/ID     terminate it
//
// It logs at warn level and above, as the benchmarks run spool
// (--log-level warn), so neither pays for a log line per request. It
// prints its listen address on stdout once it is listening.
package main

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/tus/tusd/v2/pkg/filelocker"
	"github.com/tus/tusd/v2/pkg/filestore"
	tusd "github.com/tus/tusd/v2/pkg/handler"
	"golang.org/x/exp/slog" // tusd v2.9 takes x/exp/slog's Logger
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address `HOST:PORT`")
	dir := flag.String("dir", "", "the `DIR`ectory uploads are stored in (required; created if missing)")
	flag.Parse()
	if *dir == "" {
		log.Fatal("tusdpeer: -dir is required")
	}
	if err := os.MkdirAll(*dir, 0o750); err != nil {
		log.Fatalf("tusdpeer: %v", err)
	}

	composer := tusd.NewStoreComposer()
	filestore.New(*dir).UseIn(composer)
	filelocker.New(*dir).UseIn(composer)
	h, err := tusd.NewHandler(tusd.Config{
		BasePath:      "/files/",
		StoreComposer: composer,
		Logger:        slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		// Creation is always on; termination is on unless disabled.
		DisableTermination: false,
	})
	if err != nil {
		log.Fatalf("tusdpeer: %v", err)
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("tusdpeer: %v", err)
	}
	fmt.Println(ln.Addr().String())

	mux := http.NewServeMux()
	mux.Handle("/files/", http.StripPrefix("/files/", h))
	mux.Handle("/files", http.StripPrefix("/files", h))
	srv := &http.Server{Handler: mux}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-stop
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("tusdpeer: %v", err)
	}
}
