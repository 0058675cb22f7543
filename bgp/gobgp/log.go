package gobgp

import (
	"context"
	"fmt"
	"log/slog"
	"sort"

	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
)

// slogAdapter implements GoBGP's pkg/log Logger on top of log/slog.
//
// Levels: GoBGP's Debug -> slog Debug, Info -> Info, Warn -> Warn,
// Error/Fatal/Panic -> Error. GoBGP's Fatal does not exit the process here
// (a library must not); Panic logs and then panics, because GoBGP calls it
// only for "code logic bug" states and does not expect it to return.
// GetLevel reports Debug only when the slog handler has Debug enabled, so
// GoBGP skips building its (expensive) debug messages otherwise.
type slogAdapter struct {
	l *slog.Logger
}

func newSlogAdapter(l *slog.Logger) *slogAdapter {
	return &slogAdapter{l: l.With("component", "gobgp")}
}

func (a *slogAdapter) log(level slog.Level, msg string, fields gobgplog.Fields) {
	ctx := context.Background()
	if !a.l.Enabled(ctx, level) {
		return
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	attrs := make([]slog.Attr, 0, len(keys))
	for _, k := range keys {
		attrs = append(attrs, slog.Any(fieldKey(k), fields[k]))
	}
	a.l.LogAttrs(ctx, level, msg, attrs...)
}

// fieldKey maps GoBGP's field names to the project's stable keys.
func fieldKey(k string) string {
	switch k {
	case "Key":
		return "peer"
	case "Topic":
		return "topic"
	case "Err", "Error":
		return "err"
	default:
		return k
	}
}

func (a *slogAdapter) Panic(msg string, fields gobgplog.Fields) {
	a.log(slog.LevelError, msg, fields)
	panic(fmt.Sprintf("gobgp: %s %v", msg, fields))
}

func (a *slogAdapter) Fatal(msg string, fields gobgplog.Fields) {
	a.log(slog.LevelError, msg, fields)
}
func (a *slogAdapter) Error(msg string, fields gobgplog.Fields) {
	a.log(slog.LevelError, msg, fields)
}
func (a *slogAdapter) Warn(msg string, fields gobgplog.Fields) {
	a.log(slog.LevelWarn, msg, fields)
}
func (a *slogAdapter) Info(msg string, fields gobgplog.Fields) {
	a.log(slog.LevelInfo, msg, fields)
}
func (a *slogAdapter) Debug(msg string, fields gobgplog.Fields) {
	a.log(slog.LevelDebug, msg, fields)
}

// SetLevel is ignored: the slog handler decides.
func (a *slogAdapter) SetLevel(gobgplog.LogLevel) {}

func (a *slogAdapter) GetLevel() gobgplog.LogLevel {
	if a.l.Enabled(context.Background(), slog.LevelDebug) {
		return gobgplog.DebugLevel
	}
	return gobgplog.InfoLevel
}
