// Package consult is telemed's domain: providers, consultations, the roles people play in them, the
// waiting room, and the audit trail. It knows nothing of HTTP, SQL or WebSockets.
package consult

import (
	"errors"
	"time"
)

// Role is what a participant is in a consultation.
type Role string

// The roles in a consultation.
const (
	// RoleProvider is the clinician whose consultation it is.
	RoleProvider Role = "provider"
	// RolePatient is the patient, who holds the consultation's patient link.
	RolePatient Role = "patient"
	// RoleGuest is an invited interpreter, family member or caregiver.
	RoleGuest Role = "guest"
	// RoleClinician is another clinician, invited, who may admit and remove people like the provider.
	RoleClinician Role = "clinician"
	// RoleDevice is a patient's monitoring device agent: it joins consultations of its patient to
	// stream readings, without media and without waiting to be admitted.
	RoleDevice Role = "device"
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r.Person() || r == RoleDevice }

// Person reports whether r is a person rather than a device.
func (r Role) Person() bool {
	return r == RoleProvider || r == RolePatient || r == RoleGuest || r == RoleClinician
}

// Invited reports whether r is a role that people are invited into, one invitation each.
func (r Role) Invited() bool { return r == RoleGuest || r == RoleClinician }

// Admits reports whether r may admit, decline and remove people, and let them share a screen.
func (r Role) Admits() bool { return r == RoleProvider || r == RoleClinician }

// Invitation is one more person asked into a consultation: an interpreter, a family member, a
// caregiver (RoleGuest) or another clinician (RoleClinician). Its link names it.
type Invitation struct {
	ID             string
	ConsultationID string
	Role           Role
	Name           string
	CreatedAt      time.Time
	RevokedAt      *time.Time
}

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
	// PatientRemovedAt is set once a provider or clinician removed the patient from the call: the
	// patient link no longer joins.
	PatientRemovedAt *time.Time
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
	// AuditRemoved is a person taken out of the call by a provider or clinician; its detail is who.
	AuditRemoved = "participant.removed"
	// AuditInvited and AuditInvitationRevoked are invitations made and revoked; the detail is the
	// invitation's id and role, never the name.
	AuditInvited           = "invitation.created"
	AuditInvitationRevoked = "invitation.revoked"
	// AuditTranscriptSaved is a save of the consultation's chat transcript; its detail is the number
	// of messages, never their text.
	AuditTranscriptSaved = "transcript.saved"
	// AuditQualityReported is a connection test or an end-of-call quality summary kept with the
	// consultation; its detail is the kind and, for a call, the number of peers, never the figures.
	AuditQualityReported = "quality.reported"

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

// QualityKind is what a quality report describes.
type QualityKind string

// The kinds of quality report.
const (
	// QualityPrecall is the connection test a person runs on the device check page, before the visit.
	QualityPrecall QualityKind = "precall"
	// QualityCall is a person's summary, at the end of a call, of the connection to each other person.
	QualityCall QualityKind = "call"
)

// QualityReport is a connection test or an end-of-call summary, kept with the consultation for
// support. Who made it comes from their link or session, never from what they sent.
type QualityReport struct {
	ID             string
	ConsultationID string
	Kind           QualityKind
	// Role and Name are the reporter's: the role of their link, the invitation's or provider's name
	// ("" for the patient, whose name the server does not know).
	Role Role
	Name string
	// Reporter names one person for the per-person limit: the role, and the invitation for an
	// invited person ("guest i_4hd2...").
	Reporter string
	At       time.Time
	// Figures is the measurements as JSON, as package consultations checked and encoded them. It never
	// holds an IP address.
	Figures string
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
	ErrCallFull          = errors.New("the call already holds as many people as it may")
	ErrRemoved           = errors.New("removed from this consultation")
	ErrWaitingRoomFull   = errors.New("the waiting room is full")
	ErrTooManyDevices    = errors.New("too many devices are in this consultation")
	ErrDeviceRevoked     = errors.New("the device has been revoked, or is not the consultation's patient's")
)
