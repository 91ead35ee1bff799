package consultations

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/auth"
	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/store"
)

// Limits of invitations.
const (
	MaxInvitations       = 20 // per consultation, revoked ones included
	MaxInvitationNameLen = 80 // Unicode code points, after trimming; the signaling protocol's name limit
)

// InvitationView is an invitation as its provider sees it, with its link. Its JSON form is part of
// the public API (docs/api.md).
type InvitationView struct {
	ID        string       `json:"id"`
	Role      consult.Role `json:"role"`
	Name      string       `json:"name"`
	JoinURL   string       `json:"join_url"`
	CreatedAt time.Time    `json:"created_at"`
	ExpiresAt time.Time    `json:"expires_at"`
	RevokedAt *time.Time   `json:"revoked_at"`
}

// InvitationURL is the link of an invitation: it names the invitation, so that revoking it stops the
// link, and expires with the consultation.
func (l *Links) InvitationURL(c consult.Consultation, inv consult.Invitation) string {
	return l.url(auth.LinkClaims{ConsultationID: c.ID, Role: inv.Role, ExpiresAt: c.ExpiresAt, Subject: inv.ID})
}

func (s *Service) invitationView(c consult.Consultation, inv consult.Invitation) InvitationView {
	return InvitationView{ID: inv.ID, Role: inv.Role, Name: inv.Name, JoinURL: s.links.InvitationURL(c, inv),
		CreatedAt: inv.CreatedAt, ExpiresAt: c.ExpiresAt, RevokedAt: inv.RevokedAt}
}

// CheckInvitation checks what a provider asks of a new invitation and returns its name as kept:
// trimmed, 1 to MaxInvitationNameLen characters of text.
func CheckInvitation(role consult.Role, name string) (string, error) {
	if !role.Invited() {
		return "", errcode.Errorf(errcode.BadField, "role must be \"guest\" (an interpreter, family member or caregiver) or \"clinician\", not %s", errcode.Quote(string(role)))
	}
	name = strings.TrimSpace(name)
	n := utf8.RuneCountInString(name)
	if n == 0 {
		return "", errcode.Errorf(errcode.BadField, "name is required: it is shown to everyone in the call")
	}
	if n > MaxInvitationNameLen || !utf8.ValidString(name) || strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "", errcode.Errorf(errcode.BadField, "name must be at most %d characters of text", MaxInvitationNameLen)
	}
	return name, nil
}

// Invite asks one more person into a consultation: its provider (or the provider's link) invites a
// guest or another clinician by name.
func (s *Service) Invite(ctx context.Context, by Caller, consultationID string, role consult.Role, name string) (InvitationView, error) {
	actor, c, err := s.invitationAccess(ctx, by, consultationID, "invite people")
	if err != nil {
		return InvitationView{}, err
	}
	if name, err = CheckInvitation(role, name); err != nil {
		return InvitationView{}, err
	}
	if st := c.Status(s.now()); st != consult.StatusOpen {
		return InvitationView{}, errcode.Errorf(errcode.Ended, "this consultation is %s: nobody more can be invited", st)
	}
	inv := consult.Invitation{ID: auth.NewID("i_"), ConsultationID: c.ID, Role: role, Name: name, CreatedAt: s.now().UTC().Truncate(time.Millisecond)}
	err = s.store.CreateInvitation(ctx, inv, MaxInvitations)
	if errors.Is(err, store.ErrLimit) {
		return InvitationView{}, errcode.Errorf(errcode.BadField, "this consultation has %d invitations already, the most it may have", MaxInvitations)
	}
	if err != nil {
		return InvitationView{}, fmt.Errorf("invite to %s: %w", c.ID, err)
	}
	s.audit.Record(ctx, consult.AuditEvent{Actor: actor, Action: consult.AuditInvited, ConsultationID: c.ID, Detail: inv.ID + " " + string(role)})
	return s.invitationView(c, inv), nil
}

// Invitations lists a consultation's invitations, oldest first, revoked ones too.
func (s *Service) Invitations(ctx context.Context, by Caller, consultationID string) ([]InvitationView, error) {
	_, c, err := s.invitationAccess(ctx, by, consultationID, "see the invitations")
	if err != nil {
		return nil, err
	}
	invs, err := s.store.Invitations(ctx, c.ID)
	if err != nil {
		return nil, fmt.Errorf("invitations of %s: %w", c.ID, err)
	}
	out := make([]InvitationView, 0, len(invs))
	for _, inv := range invs {
		out = append(out, s.invitationView(c, inv))
	}
	return out, nil
}

// RevokeInvitation stops an invitation's link. The caller then removes its holder from the call
// (the signaling server's RemoveInvited). Revoking twice answers the invitation as it is.
func (s *Service) RevokeInvitation(ctx context.Context, by Caller, consultationID, invitationID string) (InvitationView, error) {
	actor, c, err := s.invitationAccess(ctx, by, consultationID, "revoke invitations")
	if err != nil {
		return InvitationView{}, err
	}
	inv, err := s.store.Invitation(ctx, invitationID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && inv.ConsultationID != c.ID) {
		return InvitationView{}, errcode.Errorf(errcode.NotFound, "no invitation %s in this consultation", errcode.Quote(invitationID))
	}
	if err != nil {
		return InvitationView{}, fmt.Errorf("invitation %s: %w", invitationID, err)
	}
	if inv.RevokedAt == nil {
		if err := s.store.RevokeInvitation(ctx, inv.ID, s.now()); err != nil {
			return InvitationView{}, fmt.Errorf("revoke invitation %s: %w", inv.ID, err)
		}
		s.audit.Record(ctx, consult.AuditEvent{Actor: actor, Action: consult.AuditInvitationRevoked, ConsultationID: c.ID, Detail: inv.ID + " " + string(inv.Role)})
		if inv, err = s.store.Invitation(ctx, inv.ID); err != nil {
			return InvitationView{}, fmt.Errorf("invitation %s: %w", invitationID, err)
		}
	}
	return s.invitationView(c, inv), nil
}

// invitationAccess is providerAccess, with the consultation.
func (s *Service) invitationAccess(ctx context.Context, by Caller, consultationID, doing string) (string, consult.Consultation, error) {
	actor, err := s.providerAccess(ctx, by, consultationID, doing)
	if err != nil {
		return "", consult.Consultation{}, err
	}
	c, err := s.store.Consultation(ctx, consultationID)
	if err != nil {
		return "", consult.Consultation{}, fmt.Errorf("consultation %s: %w", consultationID, err)
	}
	return actor, c, nil
}

// StopLink makes a removal from the call last: the removed person's invitation is revoked, or the
// patient link of the consultation stops. The signaling server calls it (signal.Options.Removed).
func (s *Service) StopLink(ctx context.Context, consultationID string, role consult.Role, subject string) error {
	switch {
	case role.Invited() && subject != "":
		return s.store.RevokeInvitation(ctx, subject, s.now())
	case role == consult.RolePatient:
		return s.store.RemovePatient(ctx, consultationID, s.now())
	default:
		return nil
	}
}

// Owner returns the provider of a consultation, for the commands that act for them.
func (s *Service) Owner(ctx context.Context, consultationID string) (consult.Provider, error) {
	c, err := s.store.Consultation(ctx, consultationID)
	if errors.Is(err, store.ErrNotFound) {
		return consult.Provider{}, errcode.Errorf(errcode.NotFound, "no consultation %s", errcode.Quote(consultationID))
	}
	if err != nil {
		return consult.Provider{}, fmt.Errorf("consultation %s: %w", consultationID, err)
	}
	return s.store.ProviderByID(ctx, c.ProviderID)
}
