package service

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/telemed/telemed/internal/auth"
	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/store"
)

// ConsultationView is a consultation as its provider sees it, with its two links. Its JSON form is part
// of the public API.
type ConsultationView struct {
	ID        string         `json:"id"`
	Title     string         `json:"title"`
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
}

// CreateConsultation creates a consultation for the provider and returns it with its links.
func (s *Service) CreateConsultation(ctx context.Context, p consult.Provider, actor string, n NewConsultation) (ConsultationView, error) {
	title := strings.TrimSpace(n.Title)
	if utf8.RuneCountInString(title) > MaxTitleLength {
		return ConsultationView{}, userErr("bad_field", "title must be at most %d characters", MaxTitleLength)
	}
	ttl := n.TTL
	if ttl == 0 {
		ttl = DefaultLinkTTL
	}
	if ttl < MinLinkTTL || ttl > MaxLinkTTL {
		return ConsultationView{}, userErr("bad_field", "expires_in must be between %s and %s", MinLinkTTL, "720h")
	}
	now := s.now().UTC().Truncate(time.Second)
	c := consult.Consultation{ID: auth.NewID("c_"), ProviderID: p.ID, Title: title, CreatedAt: now, ExpiresAt: now.Add(ttl)}
	if err := s.store.CreateConsultation(ctx, c); err != nil {
		return ConsultationView{}, fmt.Errorf("create consultation: %w", err)
	}
	s.Audit(ctx, consult.AuditEvent{Actor: actor, Action: consult.AuditCreated, ConsultationID: c.ID,
		Detail: "expires " + c.ExpiresAt.Format(time.RFC3339)})
	return s.view(c), nil
}

func (s *Service) view(c consult.Consultation) ConsultationView {
	return ConsultationView{
		ID: c.ID, Title: c.Title, Status: c.Status(s.now()), CreatedAt: c.CreatedAt, ExpiresAt: c.ExpiresAt,
		StartURL: s.link(c, consult.RoleProvider), JoinURL: s.link(c, consult.RolePatient),
	}
}

func (s *Service) link(c consult.Consultation, role consult.Role) string {
	token := s.links.Sign(auth.LinkClaims{ConsultationID: c.ID, Role: role, ExpiresAt: c.ExpiresAt})
	return s.baseURL + "/c/" + c.ID + "#t=" + token
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
		return consult.Consultation{}, userErr("not_found", "no consultation %s", id)
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
	s.Audit(ctx, consult.AuditEvent{Actor: actor, Action: consult.AuditEnded, ConsultationID: id})
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
	p, err := s.store.ProviderByID(ctx, c.ProviderID)
	if err != nil {
		return Ticket{}, fmt.Errorf("admit to %s: %w", consultationID, err)
	}
	return Ticket{Consultation: c, Role: claims.Role, ProviderName: p.Name, Expired: expired}, nil
}

// AuditTrail returns a consultation's audit trail, oldest first.
func (s *Service) AuditTrail(ctx context.Context, consultationID string) ([]consult.AuditEvent, error) {
	return s.store.Audit(ctx, consultationID)
}
