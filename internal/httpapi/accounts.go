package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/telemed/telemed/internal/accounts"
	"github.com/telemed/telemed/internal/consult"
)

// Accounts is what the sign-in and setup endpoints need (accounts.Service has it).
type Accounts interface {
	Authenticator
	SetupNeeded(ctx context.Context) (bool, error)
	Setup(ctx context.Context, token, email, name, password string) (consult.Provider, error)
	NewSession(ctx context.Context, providerID string) (string, error)
	Login(ctx context.Context, email, password string) (string, consult.Provider, error)
	Logout(ctx context.Context, token string) error
}

type providerJSON struct {
	ID    string `json:"id"`
	Email string `json:"email"`
	Name  string `json:"name"`
}

func toJSON(p consult.Provider) providerJSON {
	return providerJSON{ID: p.ID, Email: p.Email, Name: p.Name}
}

func (a *api) setupNeeded(w http.ResponseWriter, r *http.Request) {
	needed, err := a.Accounts.SetupNeeded(r.Context())
	a.reply(w, r, http.StatusOK, map[string]bool{"needed": needed}, err)
}

func (a *api) setup(w http.ResponseWriter, r *http.Request) {
	var req struct{ Token, Email, Name, Password string }
	if err := decode(r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	p, err := a.Accounts.Setup(r.Context(), req.Token, req.Email, req.Name, req.Password)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.Logger.Info("first provider account created in the browser", "provider", p.ID)
	token, err := a.Accounts.NewSession(r.Context(), p.ID)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.signedIn(w, http.StatusCreated, token, p)
}

func (a *api) login(w http.ResponseWriter, r *http.Request) {
	var req struct{ Email, Password string }
	if err := decode(r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	token, p, err := a.Accounts.Login(r.Context(), req.Email, req.Password)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.signedIn(w, http.StatusOK, token, p)
}

// signedIn sets the new session's cookie and answers with the provider signed in.
func (a *api) signedIn(w http.ResponseWriter, status int, token string, p consult.Provider) {
	a.setCookie(w, token, int(accounts.SessionTTL/time.Second))
	writeJSON(w, status, map[string]any{"provider": toJSON(p)})
}

func (a *api) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(SessionCookie); err == nil {
		if err := a.Accounts.Logout(r.Context(), c.Value); err != nil {
			a.fail(w, r, err)
			return
		}
	}
	a.setCookie(w, "", -1)
	w.WriteHeader(http.StatusNoContent)
}

func (a *api) me(w http.ResponseWriter, r *http.Request, c caller) {
	writeJSON(w, http.StatusOK, toJSON(c.provider))
}
