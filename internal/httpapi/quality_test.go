package httpapi_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/consultations"
	"github.com/telemed/telemed/internal/httpapi"
	"github.com/telemed/telemed/protocol"
)

type fakeQuality struct {
	httpapi.Quality
	testUser func(ctx context.Context, by consultations.Caller, consultationID string) (string, error)
	report   func(ctx context.Context, by consultations.Caller, consultationID string, in consultations.QualityInput) (consultations.QualityView, error)
	reports  func(ctx context.Context, by consultations.Caller, consultationID string) ([]consultations.QualityView, error)
}

func (f *fakeQuality) ConnectionTestUser(ctx context.Context, by consultations.Caller, consultationID string) (string, error) {
	return f.testUser(ctx, by, consultationID)
}

func (f *fakeQuality) ReportQuality(ctx context.Context, by consultations.Caller, consultationID string, in consultations.QualityInput) (consultations.QualityView, error) {
	return f.report(ctx, by, consultationID, in)
}

func (f *fakeQuality) QualityReports(ctx context.Context, by consultations.Caller, consultationID string) ([]consultations.QualityView, error) {
	return f.reports(ctx, by, consultationID)
}

const patientLink = "c-1.patient.1764064800.sig"

// linkRequest is a request as a consultation page sends it: with a link token and a JSON body.
func linkRequest(method, target, body, token string) *http.Request {
	r := request(method, target, body)
	r.Header.Set("Authorization", "Bearer "+token)
	return r
}

func TestTestICEServers(t *testing.T) {
	expires := time.Date(2026, 11, 24, 10, 10, 0, 0, time.UTC)
	var gotUser string
	q := &fakeQuality{testUser: func(_ context.Context, by consultations.Caller, id string) (string, error) {
		if by != consultations.LinkCaller(patientLink) || id != "c-1" {
			t.Errorf("ConnectionTestUser(%+v, %q)", by, id)
		}
		return "t_1", nil
	}}
	h := newAPI(t, httpapi.Options{Quality: q, ICETransportPolicy: "relay", TestICEServers: func(user string) ([]protocol.ICEServer, time.Time) {
		gotUser = user
		return []protocol.ICEServer{{URLs: []string{"stun:turn.example:3478"}},
			{URLs: []string{"turn:turn.example:3478?transport=udp"}, Username: "1764065400:t_1", Credential: "pw"}}, expires
	}})
	var got struct {
		ICEServers         []protocol.ICEServer `json:"ice_servers"`
		ICETransportPolicy string               `json:"ice_transport_policy"`
		ExpiresAt          time.Time            `json:"expires_at"`
	}
	decodeBody(t, serve(h, linkRequest("GET", "/api/v1/consultations/c-1/ice-servers", "", patientLink)), http.StatusOK, &got)
	if gotUser != "t_1" || len(got.ICEServers) != 2 || got.ICEServers[1].Credential != "pw" || got.ICETransportPolicy != "relay" || !got.ExpiresAt.Equal(expires) {
		t.Fatalf("answered %+v for user %q", got, gotUser)
	}

	// A refused link is refused before any credential is made.
	q.testUser = func(context.Context, consultations.Caller, string) (string, error) {
		return "", errcode.New(errcode.BadToken, "the link token is not valid")
	}
	gotUser = ""
	wantError(t, serve(h, linkRequest("GET", "/api/v1/consultations/c-1/ice-servers", "", patientLink+"x")), http.StatusForbidden, errcode.BadToken)
	if gotUser != "" {
		t.Fatal("ICE servers made for a refused link")
	}
}

func TestReportQuality(t *testing.T) {
	var got consultations.QualityInput
	q := &fakeQuality{report: func(_ context.Context, by consultations.Caller, id string, in consultations.QualityInput) (consultations.QualityView, error) {
		got = in
		return consultations.QualityView{ID: "q_1", Kind: consult.QualityCall, From: consultations.Reporter{Role: consult.RolePatient}, Call: in.Call}, nil
	}}
	h := newAPI(t, httpapi.Options{Quality: q})
	var v consultations.QualityView
	decodeBody(t, serve(h, linkRequest("POST", "/api/v1/consultations/c-1/quality",
		`{"kind":"call","call":{"peers":[{"role":"provider","name":"Dr Alice","rtt_ms":20,"quality":"good"}]}}`, patientLink)), http.StatusCreated, &v)
	if got.Kind != "call" || got.Call == nil || len(got.Call.Peers) != 1 || *got.Call.Peers[0].RTTMs != 20 || v.ID != "q_1" {
		t.Fatalf("ReportQuality(%+v) answered %+v", got, v)
	}

	// The reporter is not the body's to say, nor anything else the API does not know.
	q.report = nil // a call panics
	for _, body := range []string{
		`{"kind":"call","from":{"role":"provider"},"call":{"peers":[]}}`,
		`{"kind":"precall","precall":{"stun":true,"public_ip":"203.0.113.7"}}`,
		`{"kind":"precall","precall":{"stun":"yes"}}`,
		`{"kind":`,
	} {
		wantError(t, serve(h, linkRequest("POST", "/api/v1/consultations/c-1/quality", body, patientLink)), http.StatusBadRequest, errcode.BadJSON)
	}
}

func TestQualityReports(t *testing.T) {
	q := &fakeQuality{reports: func(_ context.Context, by consultations.Caller, id string) ([]consultations.QualityView, error) {
		if by == consultations.LinkCaller(patientLink) {
			return nil, errcode.New(errcode.BadToken, "only the provider can see the call quality reports")
		}
		return []consultations.QualityView{{ID: "q_1", Kind: consult.QualityPrecall}}, nil
	}}
	h := newAPI(t, httpapi.Options{Quality: q})
	var got struct {
		ConsultationID string                      `json:"consultation_id"`
		Reports        []consultations.QualityView `json:"reports"`
	}
	decodeBody(t, serve(h, request("GET", "/api/v1/consultations/c-1/quality", "")), http.StatusOK, &got)
	if got.ConsultationID != "c-1" || len(got.Reports) != 1 || got.Reports[0].ID != "q_1" {
		t.Fatalf("answered %+v", got)
	}
	wantError(t, serve(h, linkRequest("GET", "/api/v1/consultations/c-1/quality", "", patientLink)), http.StatusForbidden, errcode.BadToken)
}
