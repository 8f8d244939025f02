package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"time"

	"go.opentelemetry.io/otel"

	"github.com/spoolhq/spool/internal/reqlog"
	"github.com/spoolhq/spool/internal/telemetry"
)

// logFormat is --log-format: how log lines are written.
type logFormat string

const (
	logText logFormat = "text"
	logJSON logFormat = "json"
)

func (f *logFormat) String() string { return string(*f) }

// Set takes text or json; anything else is refused, naming both.
func (f *logFormat) Set(s string) error {
	switch v := logFormat(s); v {
	case logText, logJSON:
		*f = v
		return nil
	}
	return fmt.Errorf("%q is not a log format: want text or json", s)
}

// logOptions are the log's settings from serve's flags.
type logOptions struct {
	Level  slog.Level
	Format logFormat
}

// logger returns the server's logger, writing to w. Lines logged with a
// request's context carry its request_id, user_id, upload_id and
// trace_id (reqlog.Handler).
func (o logOptions) logger(w io.Writer) *slog.Logger {
	ho := &slog.HandlerOptions{Level: o.Level}
	var h slog.Handler = slog.NewTextHandler(w, ho)
	if o.Format == logJSON {
		h = slog.NewJSONHandler(w, ho)
	}
	return slog.New(reqlog.NewHandler(h))
}

// startTracing sets up tracing from the OTEL_* environment (off unless
// OTEL_EXPORTER_OTLP_ENDPOINT is set) and returns it with the function
// that flushes it at exit.
func startTracing(ctx context.Context, getenv func(string) string, log *slog.Logger) (*telemetry.Tracing, func(), error) {
	tracing, err := telemetry.New(ctx, getenv, buildVersion())
	if err != nil {
		return nil, nil, err
	}
	if !tracing.Enabled() {
		return tracing, func() {}, nil
	}
	// The GCS client (cloud.google.com/go/storage and the HTTP transport
	// under it) traces only through the global provider; nothing else in
	// spool reads it. Like the other engines it traces only calls made for
	// a request, not the job queue's.
	otel.SetTracerProvider(telemetry.ChildSpansOnly(tracing.Provider))
	log.Info("tracing requests (OpenTelemetry, OTLP over HTTP)")
	flush := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tracing.Shutdown(ctx); err != nil {
			log.Warn("flushing traces failed", "err", err)
		}
	}
	return tracing, flush, nil
}

// buildVersion is the module version the binary was built at, if known.
func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return ""
}
