package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/telemed/telemed/errcode"
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
		PatientID string `json:"patient_id"`
	}
	if err := decode(r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	var ttl time.Duration
	if req.ExpiresIn != "" {
		d, err := time.ParseDuration(req.ExpiresIn)
		if err != nil {
			a.fail(w, r, &errcode.Error{Code: errcode.BadField, Message: "expires_in must be a duration such as \"90m\" or \"24h\""})
			return
		}
		ttl = d
	}
	v, err := a.Service.CreateConsultation(r.Context(), c.provider, c.actor, service.NewConsultation{Title: req.Title, TTL: ttl, PatientID: req.PatientID})
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

func (a *api) saveTranscript(w http.ResponseWriter, r *http.Request, by service.Caller) {
	id := r.PathValue("id")
	// Refuse a caller who may not save before reading what may be megabytes.
	if err := a.Service.CheckTranscriptAccess(r.Context(), by, id); err != nil {
		a.fail(w, r, err)
		return
	}
	if err := http.NewResponseController(w).SetReadDeadline(time.Now().Add(transcriptReadTimeout)); err != nil {
		a.Logger.Debug("could not extend the read deadline for a transcript", "err", err)
	}
	var req struct {
		Messages []service.TranscriptMessage `json:"messages"`
	}
	if err := decodeLimit(r, &req, maxTranscriptBody); err != nil {
		if errors.Is(err, errTooLarge) {
			err = &errcode.Error{Code: errcode.TooLarge, Message: fmt.Sprintf(
				"the transcript is too large: its request body may be at most %d MiB", maxTranscriptBody>>20)}
		}
		a.fail(w, r, err)
		return
	}
	saved, err := a.Service.SaveTranscript(r.Context(), by, id, req.Messages)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, saved)
}

func (a *api) getTranscript(w http.ResponseWriter, r *http.Request, by service.Caller) {
	v, err := a.Service.Transcript(r.Context(), by, r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}
