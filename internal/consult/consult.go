// Package consult is telemed's domain: providers, consultations, the roles people play in them, the
// waiting room, and the audit trail. It knows nothing of HTTP, SQL or WebSockets.
package consult

import (
	"errors"
	"time"
)

// Role is what a participant is in a consultation.
type Role string

// The roles of a 1:1 consultation.
const (
	RoleProvider Role = "provider"
	RolePatient  Role = "patient"
	// RoleDevice is a patient's monitoring device agent: it joins consultations of its patient to
	// stream readings, without media and without waiting to be admitted.
	RoleDevice Role = "device"
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r == RoleProvider || r == RolePatient || r == RoleDevice }

// Person reports whether r is a person (provider or patient) rather than a device.
func (r Role) Person() bool { return r == RoleProvider || r == RolePatient }

// Provider is a clinician with an account.
type Provider struct {
	ID           string
	Email        string
	Name         string
	PasswordHash string // argon2id, PHC string format
	CreatedAt    time.Time
}

// Patient is a person a provider cares for: the subject of consultations and of monitoring.
type Patient struct {
	ID         string
	ProviderID string
	Name       string
	BirthDate  string // YYYY-MM-DD, optional
	CreatedAt  time.Time
}

// Consultation is one scheduled meeting between a provider and a patient.
type Consultation struct {
	ID         string
	ProviderID string
	PatientID  string // optional: a consultation of a known patient lets the patient's devices join
	Title      string
	CreatedAt  time.Time
	ExpiresAt  time.Time  // when its links stop working
	EndedAt    *time.Time // set once the provider ends it
}

// Status is where a consultation stands.
type Status string

// Consultation statuses.
const (
	StatusOpen    Status = "open"
	StatusEnded   Status = "ended"
	StatusExpired Status = "expired"
)

// Status reports the consultation's status at now.
func (c Consultation) Status(now time.Time) Status {
	switch {
	case c.EndedAt != nil:
		return StatusEnded
	case !now.Before(c.ExpiresAt):
		return StatusExpired
	default:
		return StatusOpen
	}
}

// AuditEvent is one line of the append-only audit trail: who did what to which consultation.
type AuditEvent struct {
	At             time.Time
	Actor          string // provider id, participant id, or "api:<token id>"
	Action         string // one of the Audit* constants
	ConsultationID string // the consultation it concerns, or ""
	PatientID      string // the patient it concerns (monitoring, exports), or ""
	Detail         string // free text without health data or secrets
}

// Audit actions.
const (
	AuditCreated  = "consultation.created"
	AuditEnded    = "consultation.ended"
	AuditJoined   = "participant.joined"
	AuditAdmitted = "participant.admitted"
	AuditDeclined = "participant.declined"
	AuditLeft     = "participant.left"
	// AuditTranscriptSaved is a save of the consultation's chat transcript; its detail is the number
	// of messages, never their text.
	AuditTranscriptSaved = "transcript.saved"

	AuditPatientCreated    = "patient.created"
	AuditDeviceEnrollment  = "device.enrollment_created"
	AuditDeviceEnrolled    = "device.enrolled"
	AuditDeviceRevoked     = "device.revoked"
	AuditThresholdsChanged = "thresholds.changed"
	// AuditExported is a read of a patient's records through the FHIR API; its detail is what was
	// asked (resource and search parameters), never the data.
	AuditExported = "fhir.exported"
)

// Transcript is a consultation's chat as its provider saved it. A consultation has at most one:
// saving again replaces it.
type Transcript struct {
	ConsultationID string
	SavedAt        time.Time
	SavedBy        string // the actor, as in the audit trail
	Messages       []TranscriptMessage
}

// TranscriptMessage is one chat message of a transcript: text only, never a file.
type TranscriptMessage struct {
	From Role
	Name string    // the sender's display name; may be empty
	Text string    // plain text
	At   time.Time // when the sender sent it, by the sender's clock
}

// Errors of the domain. Adapters map them to protocol error codes and HTTP statuses.
var (
	ErrBadToken          = errors.New("link token is malformed or has been tampered with")
	ErrLinkExpired       = errors.New("link has expired")
	ErrWrongConsultation = errors.New("link is for another consultation, or the consultation does not exist")
	ErrEnded             = errors.New("consultation has ended")
	ErrForbidden         = errors.New("not allowed for this role")
	ErrNotAdmitted       = errors.New("participant is still in the waiting room")
	ErrUnknownPeer       = errors.New("no such participant in this consultation")
	ErrRoomFull          = errors.New("a patient is already admitted")
	ErrWaitingRoomFull   = errors.New("the waiting room is full")
	ErrTooManyDevices    = errors.New("too many devices are in this consultation")
	ErrDeviceRevoked     = errors.New("the device has been revoked, or is not the consultation's patient's")
)
