// Package store defines where telemed keeps its records. Implementations live in subpackages:
// sqlite (the embedded default) and postgres, both on the queries of sqlstore; storetest holds the
// conformance suite every implementation must pass.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/monitor"
)

// Errors every implementation returns, so callers can tell outcomes apart.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("already exists")
	// ErrLimit is returned when storing one more would go over a limit the caller gave.
	ErrLimit = errors.New("limit reached")
	// ErrUnavailable is wrapped in the errors of a store that cannot be reached (its database
	// server down, or out of connections), so that callers answer "try again" rather than a fault.
	ErrUnavailable = errors.New("the store does not answer")
)

// Store is everything telemed keeps: the per-context interfaces below, which one implementation
// (SQLite or PostgreSQL) provides together. A use case depends on the ones it uses, never on Store.
type Store interface {
	Accounts
	Consultations
	CallQuality
	Monitoring
	AuditLog
	Settings

	// Ping reports whether the store can serve requests.
	Ping(ctx context.Context) error
	Close() error
}

// Accounts keeps providers, their sign-in sessions and their API tokens.
type Accounts interface {
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
}

// Consultations keeps consultations and their saved chat transcripts.
type Consultations interface {
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

	// CreateInvitation stores an invitation, unless its consultation already has limit of them,
	// revoked ones included (ErrLimit); ErrNotFound if the consultation does not exist.
	CreateInvitation(ctx context.Context, inv consult.Invitation, limit int) error
	// Invitation finds an invitation by id.
	Invitation(ctx context.Context, id string) (consult.Invitation, error)
	// Invitations returns a consultation's invitations, oldest first.
	Invitations(ctx context.Context, consultationID string) ([]consult.Invitation, error)
	// RevokeInvitation marks an invitation revoked; revoking it again keeps the first time.
	RevokeInvitation(ctx context.Context, id string, at time.Time) error
	// RemovePatient records that the patient was removed from a consultation's call, which stops the
	// patient link; removing again keeps the first time.
	RemovePatient(ctx context.Context, consultationID string, at time.Time) error
}

// CallQuality keeps the connection tests and end-of-call quality summaries of consultations.
type CallQuality interface {
	// AddQualityReport stores r, unless its consultation already has perConsultation reports, or
	// r.Reporter has perReporter reports in it (ErrLimit); ErrNotFound if the consultation does not
	// exist.
	AddQualityReport(ctx context.Context, r consult.QualityReport, perConsultation, perReporter int) error
	// QualityReports returns a consultation's quality reports, oldest first.
	QualityReports(ctx context.Context, consultationID string) ([]consult.QualityReport, error)
}

// AuditLog keeps the append-only audit trail.
type AuditLog interface {
	AppendAudit(ctx context.Context, e consult.AuditEvent) error
	// Audit returns a consultation's audit trail, oldest first.
	Audit(ctx context.Context, consultationID string) ([]consult.AuditEvent, error)
	// PatientAudit returns the audit lines about a patient, oldest first.
	PatientAudit(ctx context.Context, patientID string) ([]consult.AuditEvent, error)
}

// Settings keeps the server's named values (the link-signing secret, the setup token, the base URL).
type Settings interface {
	// EnsureSetting returns the value stored under key, storing value first if there is none. Nodes
	// sharing a database agree on the value that won.
	EnsureSetting(ctx context.Context, key, value string) (string, error)
	Setting(ctx context.Context, key string) (string, error)
	PutSetting(ctx context.Context, key, value string) error
	DeleteSetting(ctx context.Context, key string) error
	// TakeSetting removes key if it holds value, reporting whether this call removed it: of callers
	// taking the same key at once, on one node or several, exactly one wins. It makes a one-time value
	// (the setup token) usable once however many requests present it together.
	TakeSetting(ctx context.Context, key, value string) (bool, error)
}

// Monitoring keeps patients, their devices, observations, thresholds and alerts.
type Monitoring interface {
	CreatePatient(ctx context.Context, p consult.Patient) error
	Patient(ctx context.Context, id string) (consult.Patient, error)
	// ListPatients returns a provider's patients by name.
	ListPatients(ctx context.Context, providerID string, limit int) ([]consult.Patient, error)
	// OpenConsultationsOfPatient returns the patient's consultations that have not ended or expired
	// at now, newest first.
	OpenConsultationsOfPatient(ctx context.Context, patientID string, now time.Time) ([]consult.Consultation, error)

	CreateEnrollment(ctx context.Context, e monitor.Enrollment) error
	// RedeemEnrollment uses the unexpired, unused enrollment with this code hash to create d (whose
	// PatientID it sets), in one step. ErrNotFound if there is no such enrollment.
	RedeemEnrollment(ctx context.Context, codeHash string, now time.Time, d *monitor.Device) error
	// DeviceByToken returns the device with this token hash, revoked or not.
	DeviceByToken(ctx context.Context, tokenHash string) (monitor.Device, error)
	Device(ctx context.Context, id string) (monitor.Device, error)
	ListDevices(ctx context.Context, patientID string) ([]monitor.Device, error)
	// RevokeDevice marks a device revoked; revoking twice keeps the first time.
	RevokeDevice(ctx context.Context, id string, at time.Time) error

	// Batch returns a device's earlier upload with this batch id.
	Batch(ctx context.Context, deviceID, batchID string) (monitor.Batch, error)
	// PutBatch stores a batch, its observations and their alerts, and the patient's alert states
	// after them, in one transaction, and marks the device seen at b.ReceivedAt. ErrConflict if the
	// device already has a batch with this id.
	PutBatch(ctx context.Context, b monitor.Batch, obs []monitor.Observation, alerts []monitor.Alert, states monitor.States) error
	// AlertStates returns where a patient's signals stood at their latest readings.
	AlertStates(ctx context.Context, patientID string) (monitor.States, error)
	// Observations returns a patient's observations matching q, oldest first.
	Observations(ctx context.Context, q ObservationQuery) ([]monitor.Observation, error)
	// CountObservations counts what Observations would return without Limit and Offset.
	CountObservations(ctx context.Context, q ObservationQuery) (int, error)
	Observation(ctx context.Context, id string) (monitor.Observation, error)

	// Thresholds returns the thresholds set for a patient (not the defaults of the others).
	Thresholds(ctx context.Context, patientID string) (monitor.Thresholds, error)
	// PutThresholds sets the given codes' thresholds of a patient, keeping the others.
	PutThresholds(ctx context.Context, patientID string, t monitor.Thresholds) error
	// Alerts returns a patient's alerts, newest first.
	Alerts(ctx context.Context, patientID string, limit int) ([]monitor.Alert, error)
}

// ObservationQuery selects a patient's observations.
type ObservationQuery struct {
	PatientID string
	// Codes, when set, keeps only these codes.
	Codes []string
	// From and To bound the time measured, inclusive; zero is unbounded.
	From, To time.Time
	Limit    int // 0 is no limit
	Offset   int
	// Newest makes Limit keep the latest matches rather than the earliest (still returned oldest
	// first): what a chart of a recent range wants when there are more than it can draw.
	Newest bool
}
