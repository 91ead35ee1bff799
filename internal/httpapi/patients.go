package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/monitor"
	"github.com/telemed/telemed/internal/monitoring"
	"github.com/telemed/telemed/internal/store"
	"github.com/telemed/telemed/vitals"
)

// Patients is what the endpoints of a provider's patients' records need (monitoring.Service has it).
type Patients interface {
	AddPatient(ctx context.Context, p consult.Provider, actor, name, birthDate string) (monitoring.PatientView, error)
	ListPatients(ctx context.Context, p consult.Provider) ([]monitoring.PatientView, error)
	ProviderPatient(ctx context.Context, p consult.Provider, id string) (monitoring.PatientView, error)
	CreateEnrollment(ctx context.Context, p consult.Provider, actor, patientID string) (monitoring.EnrollmentView, error)
	ListDevices(ctx context.Context, p consult.Provider, patientID string) ([]monitoring.DeviceView, error)
	RevokeDevice(ctx context.Context, p consult.Provider, actor, deviceID string) (monitoring.DeviceView, error)
	PatientObservations(ctx context.Context, p consult.Provider, patientID string, q store.ObservationQuery) ([]monitoring.ObservationView, bool, error)
	Thresholds(ctx context.Context, p consult.Provider, patientID string) (monitor.Thresholds, error)
	SetThresholds(ctx context.Context, p consult.Provider, actor, patientID string, changes monitor.Thresholds) (monitor.Thresholds, error)
	Alerts(ctx context.Context, p consult.Provider, patientID string, limit int) ([]monitoring.AlertView, error)
	PatientAuditTrail(ctx context.Context, p consult.Provider, patientID string) ([]consult.AuditEvent, error)
}

// monitoringRoutes mounts the remote patient monitoring API (docs/monitoring.md).
func (a *api) monitoringRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/patients", a.provider(a.createPatient))
	mux.HandleFunc("GET /api/v1/patients", a.provider(a.listPatients))
	mux.HandleFunc("GET /api/v1/patients/{id}", a.provider(a.getPatient))
	mux.HandleFunc("POST /api/v1/patients/{id}/enrollments", a.provider(a.createEnrollment))
	mux.HandleFunc("GET /api/v1/patients/{id}/devices", a.provider(a.listDevices))
	mux.HandleFunc("DELETE /api/v1/devices/{id}", a.provider(a.revokeDevice))
	mux.HandleFunc("GET /api/v1/patients/{id}/observations", a.provider(a.patientObservations))
	mux.HandleFunc("GET /api/v1/patients/{id}/thresholds", a.provider(a.getThresholds))
	mux.HandleFunc("PUT /api/v1/patients/{id}/thresholds", a.provider(a.putThresholds))
	mux.HandleFunc("GET /api/v1/patients/{id}/alerts", a.provider(a.patientAlerts))
	mux.HandleFunc("GET /api/v1/patients/{id}/events", a.provider(a.patientEvents))
	mux.HandleFunc("GET /api/v1/patients/{id}/audit", a.provider(a.patientAudit))

	mux.HandleFunc("POST /api/v1/devices/enroll", a.enrollDevice)
	mux.HandleFunc("GET /api/v1/device", a.device(a.deviceSession))
	mux.HandleFunc("POST /api/v1/observations", a.device(a.upload))
}

func (a *api) createPatient(w http.ResponseWriter, r *http.Request, c caller) {
	var req struct {
		Name      string `json:"name"`
		BirthDate string `json:"birth_date"`
	}
	if err := decode(r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	v, err := a.Patients.AddPatient(r.Context(), c.provider, c.actor, req.Name, req.BirthDate)
	a.reply(w, r, http.StatusCreated, v, err)
}

func (a *api) listPatients(w http.ResponseWriter, r *http.Request, c caller) {
	list, err := a.Patients.ListPatients(r.Context(), c.provider)
	a.reply(w, r, http.StatusOK, map[string]any{"patients": list}, err)
}

func (a *api) getPatient(w http.ResponseWriter, r *http.Request, c caller) {
	v, err := a.Patients.ProviderPatient(r.Context(), c.provider, r.PathValue("id"))
	a.reply(w, r, http.StatusOK, v, err)
}

func (a *api) createEnrollment(w http.ResponseWriter, r *http.Request, c caller) {
	v, err := a.Patients.CreateEnrollment(r.Context(), c.provider, c.actor, r.PathValue("id"))
	a.reply(w, r, http.StatusCreated, v, err)
}

func (a *api) listDevices(w http.ResponseWriter, r *http.Request, c caller) {
	list, err := a.Patients.ListDevices(r.Context(), c.provider, r.PathValue("id"))
	a.reply(w, r, http.StatusOK, map[string]any{"devices": list}, err)
}

func (a *api) revokeDevice(w http.ResponseWriter, r *http.Request, c caller) {
	v, err := a.Patients.RevokeDevice(r.Context(), c.provider, c.actor, r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.DeviceRevoked(v.ID)
	writeJSON(w, http.StatusOK, v)
}

func (a *api) patientObservations(w http.ResponseWriter, r *http.Request, c caller) {
	q := r.URL.Query()
	now := a.Now()
	// Up to the future a reading may have (a device's clock a little ahead): what was accepted shows.
	sq := store.ObservationQuery{From: now.Add(-24 * time.Hour), To: now.Add(vitals.MaxFutureSkew)}
	for _, param := range []struct {
		name string
		dst  *time.Time
	}{{"from", &sq.From}, {"to", &sq.To}} {
		if v := q.Get(param.name); v != "" {
			// An unencoded "+01:00" arrives as " 01:00".
			t, err := time.Parse(time.RFC3339Nano, strings.ReplaceAll(v, " ", "+"))
			if err != nil {
				a.fail(w, r, &errcode.Error{Code: errcode.BadField, Message: fmt.Sprintf(
					"%s must be an RFC 3339 time such as 2026-11-24T10:00:00Z, not %q", param.name, v)})
				return
			}
			*param.dst = t
		}
	}
	if !sq.From.Before(sq.To) {
		a.fail(w, r, &errcode.Error{Code: errcode.BadField, Message: fmt.Sprintf("from (%s) must be before to (%s; without to, now)",
			sq.From.UTC().Format(time.RFC3339), sq.To.UTC().Format(time.RFC3339))})
		return
	}
	for _, code := range q["code"] {
		for _, c := range strings.Split(code, ",") {
			if c = strings.TrimSpace(c); c != "" {
				sq.Codes = append(sq.Codes, c)
			}
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > monitoring.MaxObservations {
			a.fail(w, r, &errcode.Error{Code: errcode.BadField, Message: fmt.Sprintf("limit must be a positive number, at most %d", monitoring.MaxObservations)})
			return
		}
		sq.Limit = n
	}
	obs, truncated, err := a.Patients.PatientObservations(r.Context(), c.provider, r.PathValue("id"), sq)
	a.reply(w, r, http.StatusOK, map[string]any{"observations": obs, "truncated": truncated, "from": sq.From.UTC(), "to": sq.To.UTC()}, err)
}

func (a *api) getThresholds(w http.ResponseWriter, r *http.Request, c caller) {
	t, err := a.Patients.Thresholds(r.Context(), c.provider, r.PathValue("id"))
	a.reply(w, r, http.StatusOK, map[string]any{"thresholds": t}, err)
}

func (a *api) putThresholds(w http.ResponseWriter, r *http.Request, c caller) {
	var req struct {
		Thresholds monitor.Thresholds `json:"thresholds"`
	}
	if err := decode(r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	t, err := a.Patients.SetThresholds(r.Context(), c.provider, c.actor, r.PathValue("id"), req.Thresholds)
	a.reply(w, r, http.StatusOK, map[string]any{"thresholds": t}, err)
}

func (a *api) patientAlerts(w http.ResponseWriter, r *http.Request, c caller) {
	var limit int
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > monitoring.MaxAlerts {
			a.fail(w, r, &errcode.Error{Code: errcode.BadField, Message: fmt.Sprintf("limit must be a number from 1 to %d", monitoring.MaxAlerts)})
			return
		}
		limit = n
	}
	list, err := a.Patients.Alerts(r.Context(), c.provider, r.PathValue("id"), limit)
	a.reply(w, r, http.StatusOK, map[string]any{"alerts": list}, err)
}

type auditLine struct {
	At             time.Time `json:"at"`
	Actor          string    `json:"actor"`
	Action         string    `json:"action"`
	ConsultationID string    `json:"consultation_id,omitempty"`
	Detail         string    `json:"detail"`
}

func (a *api) patientAudit(w http.ResponseWriter, r *http.Request, c caller) {
	list, err := a.Patients.PatientAuditTrail(r.Context(), c.provider, r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := make([]auditLine, 0, len(list))
	for _, e := range list {
		out = append(out, auditLine{At: e.At, Actor: e.Actor, Action: e.Action, ConsultationID: e.ConsultationID, Detail: e.Detail})
	}
	writeJSON(w, http.StatusOK, map[string]any{"audit": out})
}
