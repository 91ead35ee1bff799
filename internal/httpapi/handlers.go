package httpapi

import (
	"net/http"
	"time"

	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/service"
)

type providerJSON struct {
	ID    string `json:"id"`
	Email string `json:"email"`
	Name  string `json:"name"`
}

func toJSON(p consult.Provider) providerJSON {
	return providerJSON{ID: p.ID, Email: p.Email, Name: p.Name}
}

func (a *api) setupNeeded(w http.ResponseWriter, r *http.Request) {
	needed, err := a.Service.SetupNeeded(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"needed": needed})
}

func (a *api) setup(w http.ResponseWriter, r *http.Request) {
	var req struct{ Token, Email, Name, Password string }
	if err := decode(r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	p, err := a.Service.Setup(r.Context(), req.Token, req.Email, req.Name, req.Password)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.Logger.Info("first provider account created in the browser", "provider", p.ID)
	token, err := a.Service.NewSession(r.Context(), p.ID)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.setCookie(w, token, int(service.SessionTTL/time.Second))
	writeJSON(w, http.StatusCreated, map[string]any{"provider": toJSON(p)})
}

func (a *api) login(w http.ResponseWriter, r *http.Request) {
	var req struct{ Email, Password string }
	if err := decode(r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	token, p, err := a.Service.Login(r.Context(), req.Email, req.Password)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.setCookie(w, token, int(service.SessionTTL/time.Second))
	writeJSON(w, http.StatusOK, map[string]any{"provider": toJSON(p)})
}

func (a *api) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(SessionCookie); err == nil {
		if err := a.Service.Logout(r.Context(), c.Value); err != nil {
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

func (a *api) listConsultations(w http.ResponseWriter, r *http.Request, c caller) {
	list, err := a.Service.ListConsultations(r.Context(), c.provider)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"consultations": list})
}

func (a *api) createConsultation(w http.ResponseWriter, r *http.Request, c caller) {
	var req struct {
		Title     string `json:"title"`
		ExpiresIn string `json:"expires_in"`
	}
	if err := decode(r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	var ttl time.Duration
	if req.ExpiresIn != "" {
		d, err := time.ParseDuration(req.ExpiresIn)
		if err != nil {
			a.fail(w, r, &service.Error{Code: "bad_field", Message: "expires_in must be a duration such as \"90m\" or \"24h\""})
			return
		}
		ttl = d
	}
	v, err := a.Service.CreateConsultation(r.Context(), c.provider, c.actor, service.NewConsultation{Title: req.Title, TTL: ttl})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, v)
}

func (a *api) getConsultation(w http.ResponseWriter, r *http.Request, c caller) {
	v, err := a.Service.ProviderConsultation(r.Context(), c.provider, r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (a *api) endConsultation(w http.ResponseWriter, r *http.Request, c caller) {
	v, err := a.Service.EndConsultation(r.Context(), c.provider, c.actor, r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.EndConsultation(v.ID)
	writeJSON(w, http.StatusOK, v)
}
