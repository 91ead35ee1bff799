package httpapi

import (
	"context"
	"net/http"

	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/consultations"
)

// Invitations is what the invitation endpoints need (consultations.Service has it).
type Invitations interface {
	Invite(ctx context.Context, by consultations.Caller, consultationID string, role consult.Role, name string) (consultations.InvitationView, error)
	Invitations(ctx context.Context, by consultations.Caller, consultationID string) ([]consultations.InvitationView, error)
	RevokeInvitation(ctx context.Context, by consultations.Caller, consultationID, invitationID string) (consultations.InvitationView, error)
}

func (a *api) invite(w http.ResponseWriter, r *http.Request, by consultations.Caller) {
	var req struct {
		Role string `json:"role"`
		Name string `json:"name"`
	}
	if err := decode(r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	v, err := a.Invitations.Invite(r.Context(), by, r.PathValue("id"), consult.Role(req.Role), req.Name)
	a.reply(w, r, http.StatusCreated, v, err)
}

func (a *api) listInvitations(w http.ResponseWriter, r *http.Request, by consultations.Caller) {
	list, err := a.Invitations.Invitations(r.Context(), by, r.PathValue("id"))
	a.reply(w, r, http.StatusOK, map[string]any{"invitations": list}, err)
}

func (a *api) revokeInvitation(w http.ResponseWriter, r *http.Request, by consultations.Caller) {
	id := r.PathValue("id")
	v, err := a.Invitations.RevokeInvitation(r.Context(), by, id, r.PathValue("inv"))
	if err == nil {
		a.InvitationRevoked(id, v.ID)
	}
	a.reply(w, r, http.StatusOK, v, err)
}
