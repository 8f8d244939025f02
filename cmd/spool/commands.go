package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/spoolhq/spool/internal/app"
	"github.com/spoolhq/spool/internal/auth"
	"github.com/spoolhq/spool/internal/gcpace"
)

// serve runs the server until ctx is cancelled (SIGINT, SIGTERM), then
// drains it (app.Main.Close: --drain-grace, then --shutdown-timeout). A
// second SIGINT or SIGTERM during the drain exits at once, cutting what
// still runs (exit 130). Once started, the collector is paced by
// gcHeadroom (paceGC).
func serve(ctx context.Context, cfg app.Config, log *slog.Logger, gcHeadroom int64, getenv func(string) string) error {
	m := app.New(cfg, log)
	if err := m.Run(ctx); err != nil {
		return err
	}
	releaseStartupGarbage()
	defer paceGC(gcHeadroom, getenv, log)()
	<-ctx.Done()
	again := make(chan os.Signal, 1)
	signal.Notify(again, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(again)
	log.Info("shutting down", "drain_grace", cfg.DrainGrace, "shutdown_timeout", cfg.ShutdownTimeout)
	closed := make(chan error, 1)
	go func() { closed <- m.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			return &failure{err}
		}
		return nil
	case sig := <-again:
		log.Warn("second signal: exiting without finishing the drain", "signal", sig.String())
		return fmt.Errorf("stopped by a second %v during the drain: %w", sig, context.Canceled)
	}
}

// paceGC paces Go's garbage collector by headroom for the server's life
// (internal/gcpace) and returns what stops it. It leaves the collector
// alone for a headroom of 0, or when the operator set GOGC: theirs is the
// word on how the collector runs. It logs which of the three it is.
func paceGC(headroom int64, getenv func(string) string, log *slog.Logger) (stop func()) {
	if v := getenv("GOGC"); v != "" {
		log.Info("garbage collection paced by GOGC from the environment; --gc-headroom is not used", "gogc", v)
		return func() {}
	}
	if headroom == 0 {
		log.Info("garbage collection paced by Go's default, GOGC=100 (--gc-headroom 0)")
		return func() {}
	}
	log.Info("garbage collection paced by headroom", "gc_headroom_bytes", headroom)
	return gcpace.Start(headroom)
}

// releaseStartupGarbage collects what starting left behind and returns it
// to the OS. Most of it is the migration parser's (goose keeps 4 MiB scan
// buffers in a sync.Pool, one per migration file parsed at once); left
// alone, it stays resident until uploads trigger two collections, and it
// counts as live in the first, doubling into the next heap goal. The
// second GC empties the pool's victim cache; FreeOSMemory then hands the
// freed pages back.
func releaseStartupGarbage() {
	runtime.GC()
	debug.FreeOSMemory()
}

// secretMissing reports whether the data dir a token is signed for has
// no secret yet. A dir that does not exist is refused: run from another
// directory, or before the server's first start, the token would be
// signed with a secret made for it there, which the server never reads,
// and every request with it refused. A dir without a secret gets one
// (Config.Secret), which a server started on it then uses.
func secretMissing(dir string) (bool, error) {
	if info, err := os.Stat(dir); err != nil || !info.IsDir() {
		return false, fmt.Errorf("there is no data dir %q here: run this where the server keeps its data (spool serve makes the dir and its secret on its first start), pass --data-dir, or set SPOOL_JWT_SECRET to the server's secret", dir)
	}
	_, err := os.Stat(filepath.Join(dir, app.SecretFile))
	return errors.Is(err, fs.ErrNotExist), nil
}

// token prints a bearer token for a user, signed with the server's secret.
func token(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg := app.DefaultConfig()
	fs := flag.NewFlagSet("spool token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	user := fs.String("user", "", "the user `NAME` the token is for (required)")
	ttl := fs.Duration("ttl", 30*24*time.Hour, "how long the token is valid")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "the server's data `DIR` (where its secret is kept)")
	if err := parseFlags(fs, args, getenv); err != nil {
		return err
	}
	if *user == "" {
		return fmt.Errorf("--user is required")
	}
	if secret := getenv("SPOOL_JWT_SECRET"); secret != "" {
		b, err := auth.ParseSecret(secret)
		if err != nil {
			return fmt.Errorf("SPOOL_JWT_SECRET: %w", err)
		}
		cfg.JWTSecret = b
	}
	fresh := false
	if len(cfg.JWTSecret) == 0 {
		var err error
		if fresh, err = secretMissing(cfg.DataDir); err != nil {
			return err
		}
	}
	secret, err := cfg.Secret()
	if err != nil {
		return err
	}
	issuer, err := auth.NewIssuer(secret)
	if err != nil {
		return err
	}
	tok, err := issuer.Issue(*user, *ttl)
	if err != nil {
		return err
	}
	if fresh {
		fmt.Fprintf(stderr, "spool: made a new secret in %s: a server started on %s accepts this token\n",
			filepath.Join(cfg.DataDir, app.SecretFile), cfg.DataDir)
	}
	_, err = fmt.Fprintln(stdout, tok)
	return err
}
