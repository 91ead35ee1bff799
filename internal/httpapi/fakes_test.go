package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/consultations"
	"github.com/telemed/telemed/internal/httpapi"
	"github.com/telemed/telemed/internal/monitor"
	"github.com/telemed/telemed/internal/monitoring"
	"github.com/telemed/telemed/internal/store"
)

// The fakes embed the interface they fake, left nil, and have a func field for each method a test
// uses: a call that no test expected (a method not overridden, or a func field left nil) panics, and
// its stack names the method.

type fakeAccounts struct {
	httpapi.Accounts
	sessionProvider  func(ctx context.Context, token string) (consult.Provider, error)
	apiTokenProvider func(ctx context.Context, token string) (consult.Provider, error)
	setup            func(ctx context.Context, token, email, name, password string) (consult.Provider, error)
	newSession       func(ctx context.Context, providerID string) (string, error)
	login            func(ctx context.Context, email, password string) (string, consult.Provider, error)
	logout           func(ctx context.Context, token string) error
}

func (f *fakeAccounts) SessionProvider(ctx context.Context, token string) (consult.Provider, error) {
	return f.sessionProvider(ctx, token)
}

func (f *fakeAccounts) APITokenProvider(ctx context.Context, token string) (consult.Provider, error) {
	return f.apiTokenProvider(ctx, token)
}

func (f *fakeAccounts) Setup(ctx context.Context, token, email, name, password string) (consult.Provider, error) {
	return f.setup(ctx, token, email, name, password)
}

func (f *fakeAccounts) NewSession(ctx context.Context, providerID string) (string, error) {
	return f.newSession(ctx, providerID)
}

func (f *fakeAccounts) Login(ctx context.Context, email, password string) (string, consult.Provider, error) {
	return f.login(ctx, email, password)
}

func (f *fakeAccounts) Logout(ctx context.Context, token string) error { return f.logout(ctx, token) }

type fakeConsultations struct {
	httpapi.Consultations
	create      func(ctx context.Context, p consult.Provider, actor string, n consultations.NewConsultation) (consultations.ConsultationView, error)
	end         func(ctx context.Context, p consult.Provider, actor, id string) (consultations.ConsultationView, error)
	checkAccess func(ctx context.Context, by consultations.Caller, consultationID string) error
	save        func(ctx context.Context, by consultations.Caller, consultationID string, msgs []consultations.TranscriptMessage) (consultations.SavedTranscript, error)
	transcript  func(ctx context.Context, by consultations.Caller, consultationID string) (consultations.TranscriptView, error)
}

func (f *fakeConsultations) CreateConsultation(ctx context.Context, p consult.Provider, actor string, n consultations.NewConsultation) (consultations.ConsultationView, error) {
	return f.create(ctx, p, actor, n)
}

func (f *fakeConsultations) EndConsultation(ctx context.Context, p consult.Provider, actor, id string) (consultations.ConsultationView, error) {
	return f.end(ctx, p, actor, id)
}

func (f *fakeConsultations) CheckTranscriptAccess(ctx context.Context, by consultations.Caller, consultationID string) error {
	return f.checkAccess(ctx, by, consultationID)
}

func (f *fakeConsultations) SaveTranscript(ctx context.Context, by consultations.Caller, consultationID string, msgs []consultations.TranscriptMessage) (consultations.SavedTranscript, error) {
	return f.save(ctx, by, consultationID, msgs)
}

func (f *fakeConsultations) Transcript(ctx context.Context, by consultations.Caller, consultationID string) (consultations.TranscriptView, error) {
	return f.transcript(ctx, by, consultationID)
}

type fakePatients struct {
	httpapi.Patients
	patient      func(ctx context.Context, p consult.Provider, id string) (monitoring.PatientView, error)
	revokeDevice func(ctx context.Context, p consult.Provider, actor, deviceID string) (monitoring.DeviceView, error)
	observations func(ctx context.Context, p consult.Provider, patientID string, q store.ObservationQuery) ([]monitoring.ObservationView, bool, error)
	alerts       func(ctx context.Context, p consult.Provider, patientID string, limit int) ([]monitoring.AlertView, error)
}

func (f *fakePatients) ProviderPatient(ctx context.Context, p consult.Provider, id string) (monitoring.PatientView, error) {
	return f.patient(ctx, p, id)
}

func (f *fakePatients) RevokeDevice(ctx context.Context, p consult.Provider, actor, deviceID string) (monitoring.DeviceView, error) {
	return f.revokeDevice(ctx, p, actor, deviceID)
}

func (f *fakePatients) PatientObservations(ctx context.Context, p consult.Provider, patientID string, q store.ObservationQuery) ([]monitoring.ObservationView, bool, error) {
	return f.observations(ctx, p, patientID, q)
}

func (f *fakePatients) Alerts(ctx context.Context, p consult.Provider, patientID string, limit int) ([]monitoring.AlertView, error) {
	return f.alerts(ctx, p, patientID, limit)
}

type fakeEvents struct {
	httpapi.Events
	patient   func(ctx context.Context, p consult.Provider, id string) (monitoring.PatientView, error)
	subscribe func(o monitoring.SubscribeOptions) (<-chan monitoring.MonitorEvent, func())
}

func (f *fakeEvents) ProviderPatient(ctx context.Context, p consult.Provider, id string) (monitoring.PatientView, error) {
	return f.patient(ctx, p, id)
}

func (f *fakeEvents) Subscribe(o monitoring.SubscribeOptions) (<-chan monitoring.MonitorEvent, func()) {
	return f.subscribe(o)
}

type fakeDevices struct {
	httpapi.Devices
	enroll  func(ctx context.Context, code, name string, from netip.Addr) (monitoring.EnrolledDevice, error)
	byToken func(ctx context.Context, token string) (monitor.Device, error)
	session func(ctx context.Context, d monitor.Device, present func(consultationID string) bool) (monitoring.DeviceSession, error)
	upload  func(ctx context.Context, d monitor.Device, b monitoring.Batch) (monitoring.UploadResult, error)
}

func (f *fakeDevices) EnrollDevice(ctx context.Context, code, name string, from netip.Addr) (monitoring.EnrolledDevice, error) {
	return f.enroll(ctx, code, name, from)
}

func (f *fakeDevices) DeviceByToken(ctx context.Context, token string) (monitor.Device, error) {
	return f.byToken(ctx, token)
}

func (f *fakeDevices) DeviceSession(ctx context.Context, d monitor.Device, present func(consultationID string) bool) (monitoring.DeviceSession, error) {
	return f.session(ctx, d, present)
}

func (f *fakeDevices) Upload(ctx context.Context, d monitor.Device, b monitoring.Batch) (monitoring.UploadResult, error) {
	return f.upload(ctx, d, b)
}

type fakeExport struct {
	httpapi.Export
	patient      func(ctx context.Context, p consult.Provider, actor, patientID, detail string) (consult.Patient, error)
	observations func(ctx context.Context, p consult.Provider, actor string, q store.ObservationQuery, detail string) ([]monitor.Observation, int, error)
	deviceName   func(ctx context.Context, id string) string
}

func (f *fakeExport) ExportPatient(ctx context.Context, p consult.Provider, actor, patientID, detail string) (consult.Patient, error) {
	return f.patient(ctx, p, actor, patientID, detail)
}

func (f *fakeExport) ExportObservations(ctx context.Context, p consult.Provider, actor string, q store.ObservationQuery, detail string) ([]monitor.Observation, int, error) {
	return f.observations(ctx, p, actor, q, detail)
}

func (f *fakeExport) DeviceName(ctx context.Context, id string) string { return f.deviceName(ctx, id) }

// alice is the provider the tests' requests come from.
var alice = consult.Provider{ID: "prov-alice", Email: "alice@example.org", Name: "Dr Alice", PasswordHash: "$argon2id$not-for-clients"}

const (
	aliceToken   = "tm_alice"      // her API token
	aliceSession = "session-alice" // her session cookie
	aliceAPI     = "prov-alice (api)"
)

// signedIn returns Accounts that know alice by her API token and her session cookie, and no one else.
func signedIn() *fakeAccounts {
	known := func(want string) func(context.Context, string) (consult.Provider, error) {
		return func(_ context.Context, token string) (consult.Provider, error) {
			if token != want {
				return consult.Provider{}, errcode.New(errcode.Unauthenticated, "unknown")
			}
			return alice, nil
		}
	}
	return &fakeAccounts{sessionProvider: known(aliceSession), apiTokenProvider: known(aliceToken)}
}

// newAPI returns httpapi.New(o) with, where o leaves them unset, the accounts of signedIn, a
// stand-in for signaling and a logger into the test's output.
func newAPI(t *testing.T, o httpapi.Options) http.Handler {
	t.Helper()
	if o.Accounts == nil {
		o.Accounts = signedIn()
	}
	if o.Signaling == nil {
		o.Signaling = http.NotFoundHandler()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	}
	// httptest's requests go to example.com: it stands for the server's public URL, which serve
	// puts among the allowed origins.
	o.AllowedOrigins = append(o.AllowedOrigins, "example.com")
	return httpapi.New(o)
}

// request returns a request as alice's program sends it: with her API token and body as JSON.
func request(method, target, body string) *http.Request {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r := httptest.NewRequest(method, target, rd)
	r.Header.Set("Authorization", "Bearer "+aliceToken)
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	return r
}

func serve(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// wantError fails the test unless w is the API's error JSON with this status and code, and a message.
func wantError(t *testing.T, w *httptest.ResponseRecorder, status int, code errcode.Code) {
	t.Helper()
	var body struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("%d %q: not the error JSON: %v", w.Code, w.Body, err)
	}
	if w.Code != status || body.Error.Code != string(code) || body.Error.Message == "" {
		t.Fatalf("%d %s, want %d %s with a message", w.Code, w.Body, status, code)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json", ct)
	}
}

// decodeBody decodes w's JSON body into v, failing unless the status is status.
func decodeBody(t *testing.T, w *httptest.ResponseRecorder, status int, v any) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("%d %s, want %d", w.Code, w.Body, status)
	}
	if err := json.Unmarshal(w.Body.Bytes(), v); err != nil {
		t.Fatalf("%q: %v", w.Body, err)
	}
}

// lengthless hides its reader's length, so that the request is sent without a Content-Length, as a
// chunked body is.
type lengthless struct{ io.Reader }

// spaces returns a body of n bytes of JSON whitespace, without holding them in memory.
func spaces(n int64) io.Reader {
	return lengthless{io.LimitReader(repeat(' '), n)}
}

type repeat byte

func (b repeat) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(b)
	}
	return len(p), nil
}
