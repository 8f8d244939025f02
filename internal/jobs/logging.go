package jobs

import (
	"context"
	"log/slog"
)

// riverLogger is the logger River is given: log with River's Info records
// demoted to Debug. River narrates its own work at Info (that it started,
// that it polls, and every 5 s in which its job counts changed, per
// queue: more lines than all of spool's own on a replica processing
// media), which says nothing an operator acts on; spool logs each job's
// outcome itself. River's warnings and errors pass unchanged.
func riverLogger(log *slog.Logger) *slog.Logger {
	return slog.New(demoteInfo{log.Handler()})
}

// demoteInfo is a slog.Handler that passes records from Info up to (not
// including) Warn on at Debug.
type demoteInfo struct{ next slog.Handler }

func demoted(l slog.Level) slog.Level {
	if l >= slog.LevelInfo && l < slog.LevelWarn {
		return slog.LevelDebug
	}
	return l
}

func (h demoteInfo) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, demoted(l))
}

func (h demoteInfo) Handle(ctx context.Context, r slog.Record) error {
	r.Level = demoted(r.Level)
	return h.next.Handle(ctx, r)
}

func (h demoteInfo) WithAttrs(attrs []slog.Attr) slog.Handler {
	return demoteInfo{h.next.WithAttrs(attrs)}
}

func (h demoteInfo) WithGroup(name string) slog.Handler {
	return demoteInfo{h.next.WithGroup(name)}
}
