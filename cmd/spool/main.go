// Command spool runs the spool upload server and its tools:
//
//	spool serve [--addr HOST:PORT] [--data-dir DIR] …   run the server
//	spool token --user NAME [--data-dir DIR]             print a bearer token
//	spool migrate [--database-url URL] [--data-dir DIR]  apply schema migrations
//	spool upload [--server URL] [--token T] FILE...      upload files, print their URLs
//	spool ls [--server URL] [--token T] [--all]          list the caller's media
//
// Every flag has an environment variable (SPOOL_ADDR, SPOOL_SERVER,
// SPOOL_TOKEN, …); a flag given on the command line wins over the
// environment. upload and ls are clients of a running server, through its
// public API only (docs/CLI.md).
//
// spool exits 0 on success, 1 when the server or the network failed the
// work, 2 on bad usage or input, and 130 when interrupted.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spoolhq/spool/internal/redisurl"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "spool:", err)
		}
		os.Exit(exitCode(err))
	}
}

// exitCode tells scripts what kind of error ended spool: 130 an interrupt
// (Ctrl-C), 1 a failure of the work itself, 2 anything else (bad usage or
// input, a server that would not start).
func exitCode(err error) int {
	var f *failure
	switch {
	case errors.Is(err, context.Canceled):
		return 130
	case errors.As(err, &f):
		return 1
	}
	return 2
}

const usage = `usage: spool <command> [flags]

commands:
  serve   run the server (default: 127.0.0.1:8080, data in ./data)
  token   print a bearer token for a user
  migrate apply the database's pending schema migrations (serve does too)
  upload  upload files to a server (resumable) and print their media URLs
  ls      list your media on a server

upload and ls take --server (SPOOL_SERVER, default http://127.0.0.1:8080)
and --token (SPOOL_TOKEN).

Run "spool <command> -h" for a command's flags.`

// run dispatches a command; it is main without the process around it, so
// tests can call it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return errors.New("no command given")
	}
	switch args[0] {
	case "serve":
		cfg, proc, err := serveConfig(args[1:], getenv, stderr)
		if err != nil {
			return err
		}
		log := proc.Log.logger(stderr)
		redisurl.LogTo(log)
		tracing, flush, err := startTracing(ctx, getenv, log)
		if err != nil {
			return err
		}
		defer flush()
		cfg.TracerProvider, cfg.TracePropagator = tracing.Provider, tracing.Propagator
		return serve(ctx, cfg, log, proc.GCHeadroom, getenv)
	case "token":
		return token(args[1:], getenv, stdout, stderr)
	case "migrate":
		return migrate(ctx, args[1:], getenv, stdout, stderr)
	case "upload":
		return uploadFiles(ctx, args[1:], getenv, stdout, stderr)
	case "ls":
		return listMedia(ctx, args[1:], getenv, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	default:
		fmt.Fprintln(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
}
