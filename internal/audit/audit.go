// Package audit writes telemed's audit trail: who did what to which consultation or patient, and
// when. Every use case records through one Log, so a failed write is logged the same way everywhere.
package audit

import (
	"context"
	"log/slog"
	"time"

	"github.com/telemed/telemed/internal/consult"
)

// Appender is where audit lines are kept (store.AuditLog has it).
type Appender interface {
	AppendAudit(ctx context.Context, e consult.AuditEvent) error
}

// Log appends to the audit trail.
type Log struct {
	to  Appender
	now func() time.Time
	log *slog.Logger
}

// New returns a Log writing to a. now is the clock (time.Now if nil); log receives failed writes
// (slog.Default() if nil).
func New(a Appender, now func() time.Time, log *slog.Logger) *Log {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.Default()
	}
	return &Log{to: a, now: now, log: log}
}

// Record appends e, stamped now if it has no time. A failure is logged, not returned: the audit must
// not stop a call that is under way, but an operator must see that a line is missing.
func (l *Log) Record(ctx context.Context, e consult.AuditEvent) {
	if e.At.IsZero() {
		e.At = l.now()
	}
	if err := l.to.AppendAudit(ctx, e); err != nil {
		l.log.Error("audit write failed", "action", e.Action, "consultation", e.ConsultationID, "patient", e.PatientID, "err", err)
	}
}
