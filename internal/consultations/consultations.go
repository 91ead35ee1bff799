// Package consultations is what happens around a video visit, apart from the call itself: creating a
// consultation and its links, checking a link when someone joins (admission), ending it, its saved
// chat transcript, the connection tests and call quality summaries kept with it, and its audit trail. The call's state (waiting room, who is in) is package
// consult's Room, run by the signaling server.
package consultations

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/audit"
	"github.com/telemed/telemed/internal/auth"
	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/monitor"
	"github.com/telemed/telemed/internal/store"
)

// Defaults and limits of consultations.
const (
	DefaultLinkTTL = 24 * time.Hour
	MinLinkTTL     = 5 * time.Minute
	MaxLinkTTL     = 30 * 24 * time.Hour
	MaxTitleLength = 200
)

// Store is what consultations reads and keeps: consultations, transcripts and quality reports, their
// audit trail, and the provider, patient or device a link names.
type Store interface {
	store.Consultations
	store.CallQuality
	ProviderByID(ctx context.Context, id string) (consult.Provider, error)
	Patient(ctx context.Context, id string) (consult.Patient, error)
	Device(ctx context.Context, id string) (monitor.Device, error)
	Audit(ctx context.Context, consultationID string) ([]consult.AuditEvent, error)
}

// Options configure a Service.
type Options struct {
	Store Store
	// Links signs and checks the consultations' links (LoadLinks).
	Links *Links
	// Audit records what is done to consultations.
	Audit *audit.Log
	// Now returns the current time; time.Now if nil.
	Now func() time.Time
}

// Service carries out the consultations use cases.
type Service struct {
	store Store
	links *Links
	audit *audit.Log
	now   func() time.Time
}

// New returns a Service.
func New(o Options) (*Service, error) {
	if o.Store == nil || o.Links == nil || o.Audit == nil {
		return nil, errors.New("consultations: Store, Links and Audit are required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Service{store: o.Store, links: o.Links, audit: o.Audit, now: o.Now}, nil
}

// Audit appends to the audit trail (for the signaling server's joins, admissions and leaves).
func (s *Service) Audit(ctx context.Context, e consult.AuditEvent) { s.audit.Record(ctx, e) }

// ConsultationView is a consultation as its provider sees it, with its two links. Its JSON form is part
// of the public API.
type ConsultationView struct {
	ID        string         `json:"id"`
	Title     string         `json:"title"`
	PatientID string         `json:"patient_id,omitempty"`
	Status    consult.Status `json:"status"`
	CreatedAt time.Time      `json:"created_at"`
	ExpiresAt time.Time      `json:"expires_at"`
	StartURL  string         `json:"start_url"`
	JoinURL   string         `json:"join_url"`
}

// NewConsultation holds what a caller may choose about a new consultation.
type NewConsultation struct {
	Title string
	// TTL is how long the links work; DefaultLinkTTL if zero.
	TTL time.Duration
	// PatientID, if set, makes it a consultation of one of the provider's patients, which the
	// patient's devices join.
	PatientID string
}

// CreateConsultation creates a consultation for the provider and returns it with its links.
func (s *Service) CreateConsultation(ctx context.Context, p consult.Provider, actor string, n NewConsultation) (ConsultationView, error) {
	title := strings.TrimSpace(n.Title)
	if utf8.RuneCountInString(title) > MaxTitleLength {
		return ConsultationView{}, errcode.Errorf(errcode.BadField, "title must be at most %d characters", MaxTitleLength)
	}
	ttl := n.TTL
	if ttl == 0 {
		ttl = DefaultLinkTTL
	}
	if ttl < MinLinkTTL || ttl > MaxLinkTTL {
		return ConsultationView{}, errcode.Errorf(errcode.BadField, "expires_in must be between %s and %s", MinLinkTTL, "720h")
	}
	if n.PatientID != "" {
		pt, err := s.store.Patient(ctx, n.PatientID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return ConsultationView{}, fmt.Errorf("patient %s: %w", n.PatientID, err)
		}
		if err != nil || pt.ProviderID != p.ID {
			return ConsultationView{}, errcode.Errorf(errcode.BadField, "patient_id: no patient %s", errcode.Quote(n.PatientID))
		}
	}
	now := s.now().UTC().Truncate(time.Second)
	c := consult.Consultation{ID: auth.NewID("c_"), ProviderID: p.ID, PatientID: n.PatientID, Title: title, CreatedAt: now, ExpiresAt: now.Add(ttl)}
	if err := s.store.CreateConsultation(ctx, c); err != nil {
		return ConsultationView{}, fmt.Errorf("create consultation: %w", err)
	}
	s.audit.Record(ctx, consult.AuditEvent{Actor: actor, Action: consult.AuditCreated, ConsultationID: c.ID,
		Detail: "expires " + c.ExpiresAt.Format(time.RFC3339)})
	return s.view(c), nil
}

func (s *Service) view(c consult.Consultation) ConsultationView {
	return ConsultationView{
		ID: c.ID, Title: c.Title, PatientID: c.PatientID, Status: c.Status(s.now()), CreatedAt: c.CreatedAt, ExpiresAt: c.ExpiresAt,
		StartURL: s.links.URL(c, consult.RoleProvider), JoinURL: s.links.URL(c, consult.RolePatient),
	}
}

// ProviderConsultation returns one of the provider's consultations.
func (s *Service) ProviderConsultation(ctx context.Context, p consult.Provider, id string) (ConsultationView, error) {
	c, err := s.ownConsultation(ctx, p, id)
	if err != nil {
		return ConsultationView{}, err
	}
	return s.view(c), nil
}

func (s *Service) ownConsultation(ctx context.Context, p consult.Provider, id string) (consult.Consultation, error) {
	c, err := s.store.Consultation(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && c.ProviderID != p.ID) {
		return consult.Consultation{}, errcode.Errorf(errcode.NotFound, "no consultation %s", id)
	}
	return c, err
}

// ListConsultations returns the provider's most recent consultations.
func (s *Service) ListConsultations(ctx context.Context, p consult.Provider) ([]ConsultationView, error) {
	cs, err := s.store.ListConsultations(ctx, p.ID, 200)
	if err != nil {
		return nil, fmt.Errorf("list consultations: %w", err)
	}
	out := make([]ConsultationView, 0, len(cs))
	for _, c := range cs {
		out = append(out, s.view(c))
	}
	return out, nil
}

// EndConsultation ends one of the provider's consultations: its links stop working.
func (s *Service) EndConsultation(ctx context.Context, p consult.Provider, actor, id string) (ConsultationView, error) {
	c, err := s.ownConsultation(ctx, p, id)
	if err != nil {
		return ConsultationView{}, err
	}
	if err := s.store.EndConsultation(ctx, id, s.now()); err != nil {
		return ConsultationView{}, fmt.Errorf("end consultation %s: %w", id, err)
	}
	s.audit.Record(ctx, consult.AuditEvent{Actor: actor, Action: consult.AuditEnded, ConsultationID: id})
	c, err = s.store.Consultation(ctx, id)
	return s.view(c), err
}

// Ticket is what a valid link entitles its holder to.
type Ticket struct {
	Consultation consult.Consultation
	Role         consult.Role
	ProviderName string
	// Expired is set when the link has expired. A holder may still resume a place it already had.
	Expired bool
	// Subject is the device or invitation a link was issued to.
	Subject string
	// Name is the invitation's name, shown for its holder; "" for other links.
	Name string
}

// Admit checks a link token for a consultation. It returns the consult.Err* errors for a bad, expired
// or foreign link and for an ended consultation.
func (s *Service) Admit(ctx context.Context, consultationID, token string) (Ticket, error) {
	claims, err := s.links.Verify(consultationID, token, s.now())
	expired := errors.Is(err, consult.ErrLinkExpired)
	if err != nil && !expired {
		return Ticket{}, err
	}
	c, err := s.store.Consultation(ctx, consultationID)
	if errors.Is(err, store.ErrNotFound) {
		return Ticket{}, consult.ErrWrongConsultation
	}
	if err != nil {
		return Ticket{}, fmt.Errorf("admit to %s: %w", consultationID, err)
	}
	if c.EndedAt != nil {
		return Ticket{}, consult.ErrEnded
	}
	if claims.Role == consult.RoleDevice {
		// A device's link names it: a device revoked since, or moved to another patient, is refused,
		// on a resume too.
		d, err := s.store.Device(ctx, claims.Subject)
		if errors.Is(err, store.ErrNotFound) || (err == nil && (d.RevokedAt != nil || c.PatientID == "" || d.PatientID != c.PatientID)) {
			return Ticket{}, consult.ErrDeviceRevoked
		}
		if err != nil {
			return Ticket{}, fmt.Errorf("admit device to %s: %w", consultationID, err)
		}
	}
	name, err := s.admitPerson(ctx, c, claims.Role, claims.Subject)
	if err != nil {
		return Ticket{}, err
	}
	p, err := s.store.ProviderByID(ctx, c.ProviderID)
	if err != nil {
		return Ticket{}, fmt.Errorf("admit to %s: %w", consultationID, err)
	}
	return Ticket{Consultation: c, Role: claims.Role, Subject: claims.Subject, Name: name, ProviderName: p.Name, Expired: expired}, nil
}

// admitPerson checks the link of a person other than the provider: an invitation must be of this
// consultation and role, and unrevoked; the patient link stops once the patient was removed. It
// returns the invitation's name.
func (s *Service) admitPerson(ctx context.Context, c consult.Consultation, role consult.Role, subject string) (string, error) {
	switch {
	case role == consult.RolePatient && c.PatientRemovedAt != nil:
		return "", consult.ErrRemoved
	case !role.Invited():
		return "", nil
	}
	inv, err := s.store.Invitation(ctx, subject)
	if errors.Is(err, store.ErrNotFound) || (err == nil && (inv.ConsultationID != c.ID || inv.Role != role)) {
		return "", consult.ErrBadToken
	}
	if err != nil {
		return "", fmt.Errorf("admit invitation %s: %w", subject, err)
	}
	if inv.RevokedAt != nil {
		return "", consult.ErrRemoved
	}
	return inv.Name, nil
}

// AuditTrail returns a consultation's audit trail, oldest first.
func (s *Service) AuditTrail(ctx context.Context, consultationID string) ([]consult.AuditEvent, error) {
	return s.store.Audit(ctx, consultationID)
}
