package turn

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// pionLogger passes pion's log lines to slog. pion reports a refused or malformed request from a
// stranger as an error; here that is debug-level noise, and telemed logs its own refusals.
type pionLogger struct{ log *slog.Logger }

func (l pionLogger) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{log: l.log.With("pion", scope)}
}

func (l pionLogger) at(level slog.Level, msg string) {
	l.log.Log(context.Background(), level, msg)
}

// atf formats only when the line will be written: pion logs every relayed packet at debug level.
func (l pionLogger) atf(level slog.Level, format string, args []any) {
	if l.log.Enabled(context.Background(), level) {
		l.log.Log(context.Background(), level, fmt.Sprintf(format, args...))
	}
}

func (l pionLogger) Trace(string)              {}
func (l pionLogger) Tracef(string, ...any)     {}
func (l pionLogger) Debug(m string)            { l.at(slog.LevelDebug, m) }
func (l pionLogger) Debugf(f string, a ...any) { l.atf(slog.LevelDebug, f, a) }
func (l pionLogger) Info(m string)             { l.at(slog.LevelDebug, m) }
func (l pionLogger) Infof(f string, a ...any)  { l.atf(slog.LevelDebug, f, a) }
func (l pionLogger) Warn(m string)             { l.at(slog.LevelDebug, m) }
func (l pionLogger) Warnf(f string, a ...any)  { l.atf(slog.LevelDebug, f, a) }
func (l pionLogger) Error(m string)            { l.at(slog.LevelDebug, m) }
func (l pionLogger) Errorf(f string, a ...any) { l.atf(slog.LevelDebug, f, a) }
