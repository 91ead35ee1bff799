package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/fhir"
	"github.com/telemed/telemed/internal/httpapi"
	"github.com/telemed/telemed/internal/monitor"
	"github.com/telemed/telemed/internal/store"
	"github.com/telemed/telemed/vitals"
)

// fhirBody decodes a FHIR answer, failing unless it has this status and FHIR's media type.
func fhirBody(t *testing.T, w *httptest.ResponseRecorder, status int, v any) {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, fhir.MediaType) {
		t.Fatalf("Content-Type %q, want %s", ct, fhir.MediaType)
	}
	decodeBody(t, w, status, v)
}

type operationOutcome struct {
	ResourceType string
	Issue        []struct{ Severity, Code, Diagnostics string }
}

// wantOutcome fails the test unless w is an OperationOutcome with this status and issue code.
func wantOutcome(t *testing.T, w *httptest.ResponseRecorder, status int, issue string) operationOutcome {
	t.Helper()
	var o operationOutcome
	fhirBody(t, w, status, &o)
	if o.ResourceType != "OperationOutcome" || len(o.Issue) != 1 || o.Issue[0].Severity != "error" ||
		o.Issue[0].Code != issue || o.Issue[0].Diagnostics == "" {
		t.Fatalf("%s, want an OperationOutcome of one %s issue, explained", w.Body, issue)
	}
	return o
}

// fhirExport is Export with one patient, pat-1; "broken" fails as a fault of the server.
func fhirExport(t *testing.T) *fakeExport {
	return &fakeExport{patient: func(_ context.Context, p consult.Provider, actor, id, detail string) (consult.Patient, error) {
		if p.ID != alice.ID || actor != aliceAPI || detail != "Patient/"+id {
			t.Errorf("ExportPatient(%q, %q, %q, %q)", p.ID, actor, id, detail)
		}
		switch id {
		case "pat-1":
			return consult.Patient{ID: id, ProviderID: alice.ID, Name: "Bob Jones", BirthDate: "1950-02-03"}, nil
		case "broken":
			return consult.Patient{}, errors.New("sqlite: database is locked")
		case "busy":
			return consult.Patient{}, errcode.New(errcode.Busy, "too many exports at once")
		case "unmapped":
			return consult.Patient{}, errcode.New(errcode.RoomFull, "sqlite: database is locked (a signaling code)")
		}
		return consult.Patient{}, errcode.New(errcode.NotFound, "no such patient")
	}}
}

func TestFHIRPatient(t *testing.T) {
	h := newAPI(t, httpapi.Options{Export: fhirExport(t)})
	for _, query := range []string{"", "?_format=json", "?_format=application/fhir%2Bjson"} {
		var p struct {
			ResourceType, ID, BirthDate string
			Name                        []struct{ Text string }
		}
		fhirBody(t, serve(h, request("GET", "/fhir/r4/Patient/pat-1"+query, "")), http.StatusOK, &p)
		if p.ResourceType != "Patient" || p.ID != "pat-1" || p.BirthDate != "1950-02-03" || len(p.Name) != 1 || p.Name[0].Text != "Bob Jones" {
			t.Errorf("%s: answered %+v", query, p)
		}
	}
}

func TestFHIRErrors(t *testing.T) {
	var logged bytes.Buffer
	h := newAPI(t, httpapi.Options{Export: fhirExport(t), Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	anonymous := func(method, target string) *http.Request {
		r := request(method, target, "")
		r.Header.Del("Authorization")
		return r
	}
	cases := []struct {
		name   string
		req    *http.Request
		status int
		issue  string
	}{
		{"no credentials", anonymous("GET", "/fhir/r4/Patient/pat-1"), http.StatusUnauthorized, fhir.IssueSecurity},
		{"a revoked token", func() *http.Request {
			r := anonymous("GET", "/fhir/r4/Patient/pat-1")
			r.Header.Set("Authorization", "Bearer tm_revoked")
			return r
		}(), http.StatusUnauthorized, fhir.IssueSecurity},
		{"XML", request("GET", "/fhir/r4/Patient/pat-1?_format=xml", ""), http.StatusNotAcceptable, fhir.IssueNotSupported},
		{"XML before credentials", anonymous("GET", "/fhir/r4/Patient/pat-1?_format=application/fhir%2Bxml"), http.StatusNotAcceptable, fhir.IssueNotSupported},
		{"not found", request("GET", "/fhir/r4/Patient/pat-2", ""), http.StatusNotFound, fhir.IssueNotFound},
		{"the server's fault", request("GET", "/fhir/r4/Patient/broken", ""), http.StatusInternalServerError, fhir.IssueException},
		{"busy, as in the JSON API", request("GET", "/fhir/r4/Patient/busy", ""), http.StatusTooManyRequests, fhir.IssueThrottled},
		{"a code without a status is the server's fault", request("GET", "/fhir/r4/Patient/unmapped", ""), http.StatusInternalServerError, fhir.IssueException},
		{"a search without patient", request("GET", "/fhir/r4/Observation?code=8867-4", ""), http.StatusBadRequest, fhir.IssueInvalid},
		{"an unsupported search parameter", request("GET", "/fhir/r4/Observation?patient=pat-1&subject=x", ""), http.StatusBadRequest, fhir.IssueNotSupported},
		{"no such endpoint", request("GET", "/fhir/r4/Encounter/e-1", ""), http.StatusNotFound, fhir.IssueNotFound},
		{"a write", request("PUT", "/fhir/r4/Patient/pat-1", `{"resourceType":"Patient"}`), http.StatusMethodNotAllowed, fhir.IssueNotSupported},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			logged.Reset()
			w := serve(h, c.req)
			o := wantOutcome(t, w, c.status, c.issue)
			if got := w.Header().Get("WWW-Authenticate"); (c.status == http.StatusUnauthorized) != (got == `Bearer realm="telemed"`) {
				t.Errorf("WWW-Authenticate %q with status %d", got, c.status)
			}
			if c.status == http.StatusInternalServerError {
				if strings.Contains(o.Issue[0].Diagnostics, "sqlite") || strings.Contains(o.Issue[0].Diagnostics, "locked") {
					t.Errorf("an internal error showed its detail: %s", w.Body)
				}
				if !strings.Contains(logged.String(), "database is locked") {
					t.Errorf("an internal error was not logged: %q", logged.String())
				}
			}
		})
	}
}

func TestFHIRMetadataIsPublic(t *testing.T) {
	h := newAPI(t, httpapi.Options{BaseURL: "https://telemed.example/", Now: func() time.Time { return now }})
	var cs struct {
		ResourceType   string
		Implementation struct{ URL string }
	}
	fhirBody(t, serve(h, httptest.NewRequest("GET", "/fhir/r4/metadata", nil)), http.StatusOK, &cs)
	if cs.ResourceType != "CapabilityStatement" || cs.Implementation.URL != "https://telemed.example/fhir/r4" {
		t.Errorf("answered %+v", cs)
	}
}

func TestFHIRSearch(t *testing.T) {
	day := func(d int) time.Time { return time.Date(2026, 11, d, 0, 0, 0, 0, time.UTC) }
	cases := []struct {
		query string
		want  store.ObservationQuery
	}{
		{"patient=pat-1", store.ObservationQuery{PatientID: "pat-1", Limit: fhir.DefaultCount}},
		{"patient=Patient/pat-1&code=8867-4,http://loinc.org|2708-6&date=ge2026-11-01&date=lt2026-11-02&_count=10&_offset=20",
			store.ObservationQuery{PatientID: "pat-1", Codes: []string{vitals.HeartRate, vitals.OxygenSaturation}, From: day(1),
				To: day(2).Add(-time.Millisecond), Limit: 10, Offset: 20}},
		{"patient=pat-1&date=2026-11-01", store.ObservationQuery{PatientID: "pat-1", From: day(1), To: day(2).Add(-time.Millisecond), Limit: fhir.DefaultCount}},
		{"patient=pat-1&_count=0", store.ObservationQuery{PatientID: "pat-1", Limit: -1}},
	}
	for _, c := range cases {
		t.Run(c.query, func(t *testing.T) {
			values, err := url.ParseQuery(c.query)
			if err != nil {
				t.Fatal(err)
			}
			parsed, err := fhir.ParseObservationSearch(values)
			if err != nil {
				t.Fatal(err)
			}
			var got store.ObservationQuery
			var names []string
			exp := &fakeExport{
				observations: func(_ context.Context, p consult.Provider, actor string, q store.ObservationQuery, detail string) ([]monitor.Observation, int, error) {
					if p.ID != alice.ID || actor != aliceAPI || detail != "Observation?"+parsed.Query() {
						t.Errorf("ExportObservations(%q, %q, detail %q), want detail %q", p.ID, actor, detail, "Observation?"+parsed.Query())
					}
					got = q
					if q.Limit < 0 {
						return nil, 3, nil
					}
					reading := vitals.Reading{Code: vitals.HeartRate, Time: day(1), Value: vitals.Float(72), Unit: "/min"}
					return []monitor.Observation{
						{ID: "o-1", PatientID: "pat-1", DeviceID: "dev-1", Reading: reading},
						{ID: "o-2", PatientID: "pat-1", DeviceID: "dev-2", Reading: reading},
						{ID: "o-3", PatientID: "pat-1", DeviceID: "dev-1", Reading: reading},
					}, 3, nil
				},
				deviceName: func(_ context.Context, id string) string {
					names = append(names, id)
					return "device " + id
				},
			}
			h := newAPI(t, httpapi.Options{Export: exp, BaseURL: "https://telemed.example", Now: func() time.Time { return now }})
			var b struct {
				ResourceType, Type string
				Total              int
				Entry              []struct {
					Resource struct {
						ID     string
						Device struct{ Display string }
					}
				}
			}
			// The query as sent, not re-encoded: "|" and "," unescaped, as FHIR clients send them.
			fhirBody(t, serve(h, request("GET", "/fhir/r4/Observation?"+c.query, "")), http.StatusOK, &b)
			if !got.From.Equal(c.want.From) || !got.To.Equal(c.want.To) || got.PatientID != c.want.PatientID ||
				!slices.Equal(got.Codes, c.want.Codes) || got.Limit != c.want.Limit || got.Offset != c.want.Offset || got.Newest {
				t.Errorf("query %+v, want %+v", got, c.want)
			}
			if b.ResourceType != "Bundle" || b.Type != "searchset" || b.Total != 3 {
				t.Errorf("answered %s", mustJSON(b))
			}
			if c.want.Limit < 0 {
				if len(b.Entry) != 0 || names != nil {
					t.Errorf("_count=0 answered %d entries and looked up devices %q", len(b.Entry), names)
				}
				return
			}
			if len(b.Entry) != 3 || b.Entry[1].Resource.ID != "o-2" || b.Entry[1].Resource.Device.Display == "" {
				t.Errorf("answered %s", mustJSON(b))
			}
			if !slices.Equal(names, []string{"dev-1", "dev-2"}) {
				t.Errorf("looked up device names %q, want each device once", names)
			}
		})
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
