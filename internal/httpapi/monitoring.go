package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/monitor"
	"github.com/telemed/telemed/internal/service"
	"github.com/telemed/telemed/internal/store"
	"github.com/telemed/telemed/vitals"
)

// maxUploadBody bounds a batch upload (docs/monitoring.md): 1000 readings, waveforms included.
const maxUploadBody = 8 << 20

// uploadReadTimeout replaces the server's read deadline for an upload, which may be a backlog sent
// over a slow mobile link once the device is authenticated.
const uploadReadTimeout = 2 * time.Minute

// eventsKeepAlive is how often an idle event stream sends a comment, so that proxies keep it open
// and a page notices a dead server.
const eventsKeepAlive = 20 * time.Second

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

// device wraps a handler that needs a device token.
func (a *api) device(h func(http.ResponseWriter, *http.Request, monitor.Device)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			writeError(w, http.StatusUnauthorized, errcode.Unauthenticated, "send the device token as \"Authorization: Bearer td_...\"")
			return
		}
		d, err := a.Service.DeviceByToken(r.Context(), strings.TrimSpace(token))
		if err != nil {
			a.fail(w, r, err)
			return
		}
		h(w, r, d)
	}
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
	v, err := a.Service.AddPatient(r.Context(), c.provider, c.actor, req.Name, req.BirthDate)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, v)
}

func (a *api) listPatients(w http.ResponseWriter, r *http.Request, c caller) {
	list, err := a.Service.ListPatients(r.Context(), c.provider)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"patients": list})
}

func (a *api) getPatient(w http.ResponseWriter, r *http.Request, c caller) {
	v, err := a.Service.ProviderPatient(r.Context(), c.provider, r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (a *api) createEnrollment(w http.ResponseWriter, r *http.Request, c caller) {
	v, err := a.Service.CreateEnrollment(r.Context(), c.provider, c.actor, r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, v)
}

func (a *api) listDevices(w http.ResponseWriter, r *http.Request, c caller) {
	list, err := a.Service.ListDevices(r.Context(), c.provider, r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"devices": list})
}

func (a *api) revokeDevice(w http.ResponseWriter, r *http.Request, c caller) {
	v, err := a.Service.RevokeDevice(r.Context(), c.provider, c.actor, r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.DeviceRevoked(v.ID)
	writeJSON(w, http.StatusOK, v)
}

func (a *api) patientObservations(w http.ResponseWriter, r *http.Request, c caller) {
	q := r.URL.Query()
	now := a.Service.Now()
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
		if err != nil || n < 1 || n > service.MaxObservations {
			a.fail(w, r, &errcode.Error{Code: errcode.BadField, Message: fmt.Sprintf("limit must be a positive number, at most %d", service.MaxObservations)})
			return
		}
		sq.Limit = n
	}
	obs, truncated, err := a.Service.PatientObservations(r.Context(), c.provider, r.PathValue("id"), sq)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"observations": obs, "truncated": truncated, "from": sq.From.UTC(), "to": sq.To.UTC()})
}

func (a *api) getThresholds(w http.ResponseWriter, r *http.Request, c caller) {
	t, err := a.Service.Thresholds(r.Context(), c.provider, r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"thresholds": t})
}

func (a *api) putThresholds(w http.ResponseWriter, r *http.Request, c caller) {
	var req struct {
		Thresholds monitor.Thresholds `json:"thresholds"`
	}
	if err := decode(r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	t, err := a.Service.SetThresholds(r.Context(), c.provider, c.actor, r.PathValue("id"), req.Thresholds)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"thresholds": t})
}

func (a *api) patientAlerts(w http.ResponseWriter, r *http.Request, c caller) {
	var limit int
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > service.MaxAlerts {
			a.fail(w, r, &errcode.Error{Code: errcode.BadField, Message: fmt.Sprintf("limit must be a number from 1 to %d", service.MaxAlerts)})
			return
		}
		limit = n
	}
	list, err := a.Service.Alerts(r.Context(), c.provider, r.PathValue("id"), limit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"alerts": list})
}

type auditLine struct {
	At             time.Time `json:"at"`
	Actor          string    `json:"actor"`
	Action         string    `json:"action"`
	ConsultationID string    `json:"consultation_id,omitempty"`
	Detail         string    `json:"detail"`
}

func (a *api) patientAudit(w http.ResponseWriter, r *http.Request, c caller) {
	list, err := a.Service.PatientAuditTrail(r.Context(), c.provider, r.PathValue("id"))
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

// patientEvents streams a patient's new alerts and readings as server-sent events.
func (a *api) patientEvents(w http.ResponseWriter, r *http.Request, c caller) {
	id := r.PathValue("id")
	if _, err := a.Service.ProviderPatient(r.Context(), c.provider, id); err != nil {
		a.fail(w, r, err)
		return
	}
	rc := http.NewResponseController(w)
	// The stream outlives the server's deadlines by design. The read deadline matters too: net/http
	// keeps reading the connection to notice a client that went away, and a read that times out
	// would end the stream after ReadTimeout.
	if err := errors.Join(rc.SetWriteDeadline(time.Time{}), rc.SetReadDeadline(time.Time{})); err != nil {
		a.Logger.Debug("could not lift the deadlines for an event stream", "err", err)
	}
	events, cancel := a.Service.Subscribe(service.SubscribeOptions{PatientID: id})
	defer cancel()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, ": connected\n\n")
	rc.Flush()
	keepAlive := time.NewTicker(eventsKeepAlive)
	defer keepAlive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-keepAlive.C:
			// A session that ended or a token revoked since the stream began ends it too.
			if _, aerr := a.authenticate(r); aerr != nil {
				fmt.Fprint(w, "event: unauthenticated\ndata: {}\n\n")
				rc.Flush()
				return
			}
			fmt.Fprint(w, ": keep-alive\n\n")
		case e, ok := <-events:
			if !ok {
				return // fallen behind: the page reconnects and reloads what it missed
			}
			var v any = e.Alert
			if e.Type == service.EventObservation {
				v = e.Observation
			}
			data, err := json.Marshal(v)
			if err != nil {
				a.Logger.Error("encode event", "err", err)
				continue
			}
			fmt.Fprintf(w, "event: %s\ndata: %s\n\n", e.Type, data)
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

func (a *api) enrollDevice(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Code string `json:"code"`
		Name string `json:"name"`
	}
	if err := decode(r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	v, err := a.Service.EnrollDevice(r.Context(), req.Code, req.Name)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, v)
}

func (a *api) deviceSession(w http.ResponseWriter, r *http.Request, d monitor.Device) {
	v, err := a.Service.DeviceSession(r.Context(), d, a.Present)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (a *api) upload(w http.ResponseWriter, r *http.Request, d monitor.Device) {
	if err := http.NewResponseController(w).SetReadDeadline(time.Now().Add(uploadReadTimeout)); err != nil {
		a.Logger.Debug("could not extend the read deadline for an upload", "err", err)
	}
	var req struct {
		BatchID  string            `json:"batch_id"`
		Readings []json.RawMessage `json:"readings"`
	}
	if err := decodeLimit(r, &req, maxUploadBody); err != nil {
		if errors.Is(err, errTooLarge) {
			err = &errcode.Error{Code: errcode.TooLarge, Message: fmt.Sprintf(
				"the batch is too large: its body may be at most %d MiB; send fewer readings at a time", maxUploadBody>>20)}
		}
		a.fail(w, r, err)
		return
	}
	res, err := a.Service.Upload(r.Context(), d, req.BatchID, req.Readings)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}
