// Package store defines where telemed keeps its records. Implementations live in subpackages (sqlite
// now); storetest holds the conformance suite every implementation must pass.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/telemed/telemed/internal/consult"
)

// Errors every implementation returns, so callers can tell outcomes apart.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("already exists")
)

// Store keeps providers, their sessions and API tokens, consultations, saved chat transcripts,
// settings and the audit trail.
type Store interface {
	CreateProvider(ctx context.Context, p consult.Provider) error
	ProviderByEmail(ctx context.Context, email string) (consult.Provider, error)
	ProviderByID(ctx context.Context, id string) (consult.Provider, error)
	CountProviders(ctx context.Context) (int, error)

	// CreateSession stores a sign-in session under the hash of its token.
	CreateSession(ctx context.Context, tokenHash, providerID string, expiresAt time.Time) error
	// SessionProvider returns the provider of an unexpired session.
	SessionProvider(ctx context.Context, tokenHash string, now time.Time) (consult.Provider, error)
	DeleteSession(ctx context.Context, tokenHash string) error
	// DeleteExpiredSessions removes sessions that expired before now.
	DeleteExpiredSessions(ctx context.Context, now time.Time) error

	CreateAPIToken(ctx context.Context, tokenHash, providerID, name string, now time.Time) error
	// APITokenProvider returns the provider of an unrevoked API token.
	APITokenProvider(ctx context.Context, tokenHash string) (consult.Provider, error)

	CreateConsultation(ctx context.Context, c consult.Consultation) error
	Consultation(ctx context.Context, id string) (consult.Consultation, error)
	// ListConsultations returns a provider's consultations, newest first.
	ListConsultations(ctx context.Context, providerID string, limit int) ([]consult.Consultation, error)
	EndConsultation(ctx context.Context, id string, at time.Time) error

	// PutTranscript stores the transcript of t.ConsultationID, replacing any earlier one. It returns
	// ErrNotFound if the consultation does not exist.
	PutTranscript(ctx context.Context, t consult.Transcript) error
	// Transcript returns a consultation's saved transcript, with its messages in the order they were
	// saved; ErrNotFound when none has been saved.
	Transcript(ctx context.Context, consultationID string) (consult.Transcript, error)

	AppendAudit(ctx context.Context, e consult.AuditEvent) error
	// Audit returns a consultation's audit trail, oldest first.
	Audit(ctx context.Context, consultationID string) ([]consult.AuditEvent, error)

	// EnsureSetting returns the value stored under key, storing value first if there is none. Nodes
	// sharing a database agree on the value that won.
	EnsureSetting(ctx context.Context, key, value string) (string, error)
	Setting(ctx context.Context, key string) (string, error)
	PutSetting(ctx context.Context, key, value string) error
	DeleteSetting(ctx context.Context, key string) error

	// Ping reports whether the store can serve requests.
	Ping(ctx context.Context) error
	Close() error
}
