// Command spool runs the spool upload server and its tools:
//
//	spool serve [--addr HOST:PORT] [--data-dir DIR] …   run the server
//	spool token --user NAME [--data-dir DIR]             print a bearer token
//	spool migrate [--database-url URL] [--data-dir DIR]  apply schema migrations
//
// Every flag of serve has an environment variable (SPOOL_ADDR, …); a flag
// given on the command line wins over the environment.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "spool:", err)
		}
		os.Exit(2)
	}
}

const usage = `usage: spool <command> [flags]

commands:
  serve   run the server (default: 127.0.0.1:8080, data in ./data)
  token   print a bearer token for a user
  migrate apply the database's pending schema migrations (serve does too)

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
		cfg, level, err := serveConfig(args[1:], getenv, stderr)
		if err != nil {
			return err
		}
		log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
		return serve(ctx, cfg, log)
	case "token":
		return token(args[1:], getenv, stdout, stderr)
	case "migrate":
		return migrate(ctx, args[1:], getenv, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	default:
		fmt.Fprintln(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
}
