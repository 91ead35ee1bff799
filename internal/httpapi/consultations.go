package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/consultations"
)

// Consultations is what the consultation and transcript endpoints need (consultations.Service has it).
type Consultations interface {
	ListConsultations(ctx context.Context, p consult.Provider) ([]consultations.ConsultationView, error)
	CreateConsultation(ctx context.Context, p consult.Provider, actor string, n consultations.NewConsultation) (consultations.ConsultationView, error)
	ProviderConsultation(ctx context.Context, p consult.Provider, id string) (consultations.ConsultationView, error)
	EndConsultation(ctx context.Context, p consult.Provider, actor, id string) (consultations.ConsultationView, error)
	CheckTranscriptAccess(ctx context.Context, by consultations.Caller, consultationID string) error
	SaveTranscript(ctx context.Context, by consultations.Caller, consultationID string, msgs []consultations.TranscriptMessage) (consultations.SavedTranscript, error)
	Transcript(ctx context.Context, by consultations.Caller, consultationID string) (consultations.TranscriptView, error)
}

func (a *api) listConsultations(w http.ResponseWriter, r *http.Request, c caller) {
	list, err := a.Consultations.ListConsultations(r.Context(), c.provider)
	a.reply(w, r, http.StatusOK, map[string]any{"consultations": list}, err)
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
	v, err := a.Consultations.CreateConsultation(r.Context(), c.provider, c.actor, consultations.NewConsultation{Title: req.Title, TTL: ttl, PatientID: req.PatientID})
	a.reply(w, r, http.StatusCreated, v, err)
}

func (a *api) getConsultation(w http.ResponseWriter, r *http.Request, c caller) {
	v, err := a.Consultations.ProviderConsultation(r.Context(), c.provider, r.PathValue("id"))
	a.reply(w, r, http.StatusOK, v, err)
}

func (a *api) endConsultation(w http.ResponseWriter, r *http.Request, c caller) {
	v, err := a.Consultations.EndConsultation(r.Context(), c.provider, c.actor, r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.EndConsultation(v.ID)
	writeJSON(w, http.StatusOK, v)
}

func (a *api) saveTranscript(w http.ResponseWriter, r *http.Request, by consultations.Caller) {
	id := r.PathValue("id")
	// Refuse a caller who may not save before reading what may be megabytes.
	if err := a.Consultations.CheckTranscriptAccess(r.Context(), by, id); err != nil {
		a.fail(w, r, err)
		return
	}
	var req struct {
		Messages []consultations.TranscriptMessage `json:"messages"`
	}
	if err := a.decodeLarge(w, r, &req, largeBody{limit: maxTranscriptBody, readTimeout: transcriptReadTimeout,
		what: "the transcript is too large: its request body may be at most %d MiB"}); err != nil {
		a.fail(w, r, err)
		return
	}
	saved, err := a.Consultations.SaveTranscript(r.Context(), by, id, req.Messages)
	a.reply(w, r, http.StatusOK, saved, err)
}

func (a *api) getTranscript(w http.ResponseWriter, r *http.Request, by consultations.Caller) {
	v, err := a.Consultations.Transcript(r.Context(), by, r.PathValue("id"))
	a.reply(w, r, http.StatusOK, v, err)
}
