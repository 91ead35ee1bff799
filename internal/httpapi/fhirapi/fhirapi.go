// Package fhirapi is the HTTP side of telemed's FHIR R4 API (docs/monitoring.md#fhir-r4): its routes,
// the provider's credentials they take, and answers that are FHIR resources, errors included (an
// EHR's FHIR client understands an OperationOutcome, not telemed's error JSON). The mapping itself is
// package fhir; package httpapi mounts these routes beside the JSON API.
package fhirapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/fhir"
	"github.com/telemed/telemed/internal/monitor"
	"github.com/telemed/telemed/internal/store"
)

// Options configure the FHIR API.
type Options struct {
	// Export reads and audits what is exported. Required.
	Export Export
	// BaseURL is the server's public URL, which references start with.
	BaseURL string
	// Now is the clock; time.Now if nil.
	Now func() time.Time
	// Authenticate returns the provider behind a request (an API token or a session) and how the
	// audit trail names them, or an error whose message tells a person why not. Required.
	Authenticate func(r *http.Request) (p consult.Provider, actor string, err error)
	// UserError returns the HTTP status and message of an error a person can act on, and false for
	// a fault of the server. Required: the JSON API's mapping, so that both answer alike.
	UserError func(err error) (status int, message string, ok bool)
	// Logger receives the server's faults; slog.Default() if nil.
	Logger *slog.Logger
}

// api is the FHIR API's handlers.
type api struct {
	Options
}

// Mount adds the FHIR R4 API's routes, under fhir.BasePath, to mux.
func Mount(mux *http.ServeMux, o Options) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	a := &api{o}
	mux.HandleFunc("GET "+fhir.BasePath+"/metadata", a.fhirMetadata)
	mux.HandleFunc("GET "+fhir.BasePath+"/Patient/{id}", a.fhirProvider(a.fhirPatient))
	mux.HandleFunc("GET "+fhir.BasePath+"/Observation/{id}", a.fhirProvider(a.fhirObservation))
	mux.HandleFunc("GET "+fhir.BasePath+"/Observation", a.fhirProvider(a.fhirSearch))
	mux.HandleFunc(fhir.BasePath+"/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeFHIR(w, http.StatusMethodNotAllowed, fhir.NewOperationOutcome(fhir.IssueNotSupported,
				"this FHIR API is read-only: GET Patient/{id}, Observation/{id}, Observation?patient=... and metadata"))
			return
		}
		writeFHIR(w, http.StatusNotFound, fhir.NewOperationOutcome(fhir.IssueNotFound,
			"no such FHIR endpoint: this server has Patient/{id}, Observation/{id}, Observation?patient=... and metadata"))
	})
}

// Export is what the FHIR API needs (monitoring.Service has it): each read is audited as an export.
type Export interface {
	ExportPatient(ctx context.Context, p consult.Provider, actor, patientID, detail string) (consult.Patient, error)
	ExportObservation(ctx context.Context, p consult.Provider, actor, id string) (monitor.Observation, error)
	ExportObservations(ctx context.Context, p consult.Provider, actor string, q store.ObservationQuery, detail string) ([]monitor.Observation, int, error)
	DeviceName(ctx context.Context, id string) string
}

func writeFHIR(w http.ResponseWriter, status int, r fhir.Resource) {
	body, err := fhir.Marshal(r)
	if err != nil {
		status = http.StatusInternalServerError
		body = []byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"exception"}]}`)
	}
	w.Header().Set("Content-Type", fhir.MediaType+"; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(body)
}

// jsonFormat refuses (406) a request whose _format asks for something other than JSON, the only
// format served, and reports whether it may go on.
func jsonFormat(w http.ResponseWriter, r *http.Request) bool {
	if f := r.URL.Query().Get("_format"); f != "" && f != "json" && !strings.HasPrefix(f, fhir.MediaType) && f != "application/json" {
		writeFHIR(w, http.StatusNotAcceptable, fhir.NewOperationOutcome(fhir.IssueNotSupported,
			fmt.Sprintf("_format=%s: this server answers in FHIR JSON only (_format=json)", f)))
		return false
	}
	return true
}

// caller is the provider behind a request, and how the audit trail names them.
type caller struct {
	provider consult.Provider
	actor    string
}

// fhirProvider wraps a handler that needs a provider: the JSON API's credentials, errors as
// OperationOutcome, and only JSON (_format) served.
func (a *api) fhirProvider(h func(http.ResponseWriter, *http.Request, caller)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !jsonFormat(w, r) {
			return
		}
		p, actor, err := a.Authenticate(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="telemed"`)
			writeFHIR(w, http.StatusUnauthorized, fhir.NewOperationOutcome(fhir.IssueSecurity,
				err.Error()+": send a provider API token as \"Authorization: Bearer tm_...\""))
			return
		}
		h(w, r, caller{provider: p, actor: actor})
	}
}

// fhirFail answers err as an OperationOutcome.
func (a *api) fhirFail(w http.ResponseWriter, r *http.Request, err error) {
	var pe *fhir.ParamError
	if errors.As(err, &pe) {
		writeFHIR(w, http.StatusBadRequest, pe.OperationOutcome())
		return
	}
	// The same status as the JSON API; a code without one is the server's fault, as there.
	if status, message, ok := a.UserError(err); ok {
		writeFHIR(w, status, fhir.NewOperationOutcome(fhirIssue(status), message))
		return
	}
	a.Logger.Error("FHIR request failed", "path", r.URL.Path, "err", err)
	writeFHIR(w, http.StatusInternalServerError, fhir.NewOperationOutcome(fhir.IssueException,
		"something went wrong on the server; it has been logged"))
}

// fhirIssue is the OperationOutcome issue type of an error answered with status.
func fhirIssue(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return fhir.IssueSecurity
	case http.StatusForbidden:
		return fhir.IssueForbidden
	case http.StatusNotFound:
		return fhir.IssueNotFound
	case http.StatusRequestEntityTooLarge:
		return fhir.IssueTooCostly
	case http.StatusTooManyRequests:
		return fhir.IssueThrottled
	}
	return fhir.IssueInvalid
}

func (a *api) fhirMetadata(w http.ResponseWriter, r *http.Request) {
	if !jsonFormat(w, r) {
		return
	}
	writeFHIR(w, http.StatusOK, fhir.NewCapabilityStatement(a.BaseURL, "", a.Now()))
}

func (a *api) fhirPatient(w http.ResponseWriter, r *http.Request, c caller) {
	id := r.PathValue("id")
	p, err := a.Export.ExportPatient(r.Context(), c.provider, c.actor, id, "Patient/"+id)
	if err != nil {
		a.fhirFail(w, r, err)
		return
	}
	writeFHIR(w, http.StatusOK, fhir.NewPatient(p))
}

func (a *api) fhirObservation(w http.ResponseWriter, r *http.Request, c caller) {
	o, err := a.Export.ExportObservation(r.Context(), c.provider, c.actor, r.PathValue("id"))
	if err != nil {
		a.fhirFail(w, r, err)
		return
	}
	writeFHIR(w, http.StatusOK, fhir.NewObservation(o, a.deviceName(r, o, map[string]string{})))
}

// deviceName is the name the observation's device was enrolled under (fhir.NewObservation adds the
// reading's own device name), looked up once per device in cache.
func (a *api) deviceName(r *http.Request, o monitor.Observation, cache map[string]string) string {
	name, ok := cache[o.DeviceID]
	if !ok {
		name = a.Export.DeviceName(r.Context(), o.DeviceID)
		cache[o.DeviceID] = name
	}
	return name
}

func (a *api) fhirSearch(w http.ResponseWriter, r *http.Request, c caller) {
	q, err := fhir.ParseObservationSearch(r.URL.Query())
	if err != nil {
		a.fhirFail(w, r, err)
		return
	}
	sq := store.ObservationQuery{PatientID: q.Patient, Codes: q.Codes, From: q.From, Limit: q.Count, Offset: q.Offset}
	if !q.To.IsZero() {
		sq.To = q.To.Add(-time.Millisecond) // the search's bound is exclusive, the store's inclusive, to the millisecond
	}
	if q.Count == 0 {
		sq.Limit = -1 // only the total
	}
	obs, total, err := a.Export.ExportObservations(r.Context(), c.provider, c.actor, sq, "Observation?"+q.Query())
	if err != nil {
		a.fhirFail(w, r, err)
		return
	}
	page := make([]fhir.Observation, 0, len(obs))
	names := map[string]string{}
	for _, o := range obs {
		page = append(page, fhir.NewObservation(o, a.deviceName(r, o, names)))
	}
	writeFHIR(w, http.StatusOK, fhir.NewSearchSet(a.BaseURL, q, total, page, a.Now()))
}
