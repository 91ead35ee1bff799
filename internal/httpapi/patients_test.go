package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/httpapi"
	"github.com/telemed/telemed/internal/monitoring"
	"github.com/telemed/telemed/internal/store"
	"github.com/telemed/telemed/vitals"
)

// now is the tests' clock.
var now = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

func TestObservationsQuery(t *testing.T) {
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	dayBefore, skewed := now.Add(-24*time.Hour), now.Add(vitals.MaxFutureSkew)
	cases := []struct {
		query string
		want  store.ObservationQuery // PatientID is the service's to set
	}{
		{"", store.ObservationQuery{From: dayBefore, To: skewed}},
		{"from=2026-11-24T10:00:00Z&to=2026-11-24T11:00:00.5Z",
			store.ObservationQuery{From: at("2026-11-24T10:00:00Z"), To: at("2026-11-24T11:00:00.5Z")}},
		{"from=2026-11-24T10:00:00%2B01:00", store.ObservationQuery{From: at("2026-11-24T09:00:00Z"), To: skewed}},
		{"from=2026-11-24T10:00:00+01:00", store.ObservationQuery{From: at("2026-11-24T09:00:00Z"), To: skewed}},
		{"to=2026-11-24T11:30:00-02:00", store.ObservationQuery{From: dayBefore, To: at("2026-11-24T13:30:00Z")}},
		{"code=8867-4,2708-6&code=,%208480-6%20,", store.ObservationQuery{From: dayBefore, To: skewed, Codes: []string{"8867-4", "2708-6", "8480-6"}}},
		{"limit=1", store.ObservationQuery{From: dayBefore, To: skewed, Limit: 1}},
		{"limit=10000", store.ObservationQuery{From: dayBefore, To: skewed, Limit: monitoring.MaxObservations}},
	}
	for _, c := range cases {
		t.Run(c.query, func(t *testing.T) {
			var got store.ObservationQuery
			pat := &fakePatients{observations: func(_ context.Context, p consult.Provider, id string, q store.ObservationQuery) ([]monitoring.ObservationView, bool, error) {
				if p.ID != alice.ID || id != "pat-1" {
					t.Errorf("PatientObservations(%q, %q)", p.ID, id)
				}
				got = q
				return []monitoring.ObservationView{{ID: "o-1"}}, true, nil
			}}
			h := newAPI(t, httpapi.Options{Patients: pat, Now: func() time.Time { return now }})
			var body struct {
				Observations []monitoring.ObservationView
				Truncated    bool
				From, To     time.Time
			}
			decodeBody(t, serve(h, request("GET", "/api/v1/patients/pat-1/observations?"+c.query, "")), http.StatusOK, &body)
			if !got.From.Equal(c.want.From) || !got.To.Equal(c.want.To) || !slices.Equal(got.Codes, c.want.Codes) ||
				got.Limit != c.want.Limit || got.Offset != 0 || got.Newest || got.PatientID != "" {
				t.Errorf("query %+v, want %+v", got, c.want)
			}
			if len(body.Observations) != 1 || !body.Truncated || !body.From.Equal(c.want.From) || !body.To.Equal(c.want.To) {
				t.Errorf("answered %+v", body)
			}
		})
	}
}

func TestObservationsQueryRefused(t *testing.T) {
	// PatientObservations is left nil: a call panics.
	h := newAPI(t, httpapi.Options{Patients: &fakePatients{}, Now: func() time.Time { return now }})
	for _, query := range []string{
		"from=yesterday",
		"to=2026-11-24",
		"from=2026-11-24T11:00:00Z&to=2026-11-24T10:00:00Z",
		"from=2026-11-24T10:00:00Z&to=2026-11-24T10:00:00Z",
		"from=2026-11-24T12:10:00Z", // after the default to
		"limit=0",
		"limit=-1",
		"limit=10001",
		"limit=ten",
	} {
		t.Run(query, func(t *testing.T) {
			wantError(t, serve(h, request("GET", "/api/v1/patients/pat-1/observations?"+query, "")), http.StatusBadRequest, errcode.BadField)
		})
	}
}

func TestAlertsLimit(t *testing.T) {
	cases := []struct {
		query string
		limit int // -1: refused
	}{
		{"", 0},
		{"limit=1", 1},
		{"limit=1000", monitoring.MaxAlerts},
		{"limit=0", -1},
		{"limit=1001", -1},
		{"limit=many", -1},
	}
	for _, c := range cases {
		t.Run(c.query, func(t *testing.T) {
			got := -1
			pat := &fakePatients{alerts: func(_ context.Context, _ consult.Provider, id string, limit int) ([]monitoring.AlertView, error) {
				got = limit
				return []monitoring.AlertView{{ID: "a-1", PatientID: id}}, nil
			}}
			h := newAPI(t, httpapi.Options{Patients: pat})
			w := serve(h, request("GET", "/api/v1/patients/pat-1/alerts?"+c.query, ""))
			if c.limit < 0 {
				wantError(t, w, http.StatusBadRequest, errcode.BadField)
				if got != -1 {
					t.Errorf("Alerts called with limit %d", got)
				}
				return
			}
			var body struct{ Alerts []monitoring.AlertView }
			decodeBody(t, w, http.StatusOK, &body)
			if got != c.limit || len(body.Alerts) != 1 || body.Alerts[0].PatientID != "pat-1" {
				t.Errorf("limit %d, answered %+v; want limit %d", got, body, c.limit)
			}
		})
	}
}

func TestPatientErrors(t *testing.T) {
	var logged bytes.Buffer
	pat := &fakePatients{patient: func(_ context.Context, _ consult.Provider, id string) (monitoring.PatientView, error) {
		switch id {
		case "pat-1":
			return monitoring.PatientView{ID: id, Name: "Bob"}, nil
		case "broken":
			return monitoring.PatientView{}, errors.New("sqlite: database disk image is malformed")
		}
		return monitoring.PatientView{}, errcode.Errorf(errcode.NotFound, "no patient %s", errcode.Quote(id))
	}}
	h := newAPI(t, httpapi.Options{Patients: pat, Logger: slog.New(slog.NewTextHandler(&logged, nil))})

	var v monitoring.PatientView
	decodeBody(t, serve(h, request("GET", "/api/v1/patients/pat-1", "")), http.StatusOK, &v)
	if v.ID != "pat-1" || v.Name != "Bob" {
		t.Errorf("answered %+v", v)
	}

	w := serve(h, request("GET", "/api/v1/patients/pat-2", ""))
	wantError(t, w, http.StatusNotFound, errcode.NotFound)
	if !strings.Contains(w.Body.String(), `no patient \"pat-2\"`) {
		t.Errorf("the service's message was not passed on: %s", w.Body)
	}

	w = serve(h, request("GET", "/api/v1/patients/broken", ""))
	wantError(t, w, http.StatusInternalServerError, errcode.Internal)
	if strings.Contains(w.Body.String(), "sqlite") || strings.Contains(w.Body.String(), "malformed") {
		t.Errorf("an internal error showed its detail: %s", w.Body)
	}
	if !strings.Contains(logged.String(), "malformed") {
		t.Errorf("an internal error was not logged: %q", logged.String())
	}
}

func TestRevokeDeviceTellsTheHook(t *testing.T) {
	var revoked []string
	pat := &fakePatients{revokeDevice: func(_ context.Context, _ consult.Provider, actor, id string) (monitoring.DeviceView, error) {
		if actor != aliceAPI {
			t.Errorf("revoked as %q", actor)
		}
		if id != "dev-1" {
			return monitoring.DeviceView{}, errcode.New(errcode.NotFound, "no such device")
		}
		return monitoring.DeviceView{ID: id}, nil
	}}
	h := newAPI(t, httpapi.Options{Patients: pat, DeviceRevoked: func(id string) { revoked = append(revoked, id) }})
	decodeBody(t, serve(h, request("DELETE", "/api/v1/devices/dev-1", "")), http.StatusOK, &monitoring.DeviceView{})
	wantError(t, serve(h, request("DELETE", "/api/v1/devices/dev-2", "")), http.StatusNotFound, errcode.NotFound)
	if !slices.Equal(revoked, []string{"dev-1"}) {
		t.Errorf("DeviceRevoked told %q, want only dev-1", revoked)
	}
}

// eventSource is Events for patient pat-1 whose subscription is events; cancelled is closed when
// the subscription is cancelled, and subscribed receives its options.
type eventSource struct {
	fakeEvents
	events     chan monitoring.MonitorEvent
	subscribed chan monitoring.SubscribeOptions
	cancelled  chan struct{}
}

func newEventSource() *eventSource {
	s := &eventSource{events: make(chan monitoring.MonitorEvent), subscribed: make(chan monitoring.SubscribeOptions, 1),
		cancelled: make(chan struct{})}
	s.patient = func(_ context.Context, _ consult.Provider, id string) (monitoring.PatientView, error) {
		if id != "pat-1" {
			return monitoring.PatientView{}, errcode.New(errcode.NotFound, "no such patient")
		}
		return monitoring.PatientView{ID: id}, nil
	}
	s.subscribe = func(o monitoring.SubscribeOptions) (<-chan monitoring.MonitorEvent, func()) {
		s.subscribed <- o
		return s.events, func() { close(s.cancelled) }
	}
	return s
}

func (s *eventSource) waitCancelled(t *testing.T) {
	t.Helper()
	select {
	case <-s.cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the subscription was not cancelled")
	}
}

// openStream opens alice's event stream of patient pat-1 on srv and returns a reader of its events;
// ctx's end closes it.
func openStream(t *testing.T, ctx context.Context, srv *httptest.Server) func() string {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/v1/patients/pat-1/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+aliceToken)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("%s %v, want 200 text/event-stream, not cached", resp.Status, resp.Header)
	}
	rd := bufio.NewReader(resp.Body)
	// next returns the next event's lines, or "EOF" when the stream has ended.
	return func() string {
		t.Helper()
		var lines []string
		for {
			line, err := rd.ReadString('\n')
			if err == io.EOF && line == "" && lines == nil {
				return "EOF"
			}
			if err != nil {
				t.Fatalf("reading the stream after %q: %v", lines, err)
			}
			if line = strings.TrimSuffix(line, "\n"); line == "" {
				return strings.Join(lines, "\n")
			}
			lines = append(lines, line)
		}
	}
}

// startStream serves the events of src and opens pat-1's stream, which cancel ends.
func startStream(t *testing.T, src *eventSource) (next func() string, cancel context.CancelFunc) {
	srv := httptest.NewServer(newAPI(t, httpapi.Options{Events: src}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return openStream(t, ctx, srv), cancel
}

func TestEventStream(t *testing.T) {
	src := newEventSource()
	next, _ := startStream(t, src)

	if got := next(); got != ": connected" {
		t.Fatalf("first %q, want \": connected\"", got)
	}
	if o := <-src.subscribed; o != (monitoring.SubscribeOptions{PatientID: "pat-1"}) {
		t.Errorf("subscribed with %+v, want pat-1's alerts and observations", o)
	}
	alert := monitoring.AlertView{ID: "a-1", PatientID: "pat-1", ObservationID: "o-1", Code: vitals.HeartRate, Name: "Heart rate",
		Value: 150, Unit: "/min", Bound: "high"}
	src.events <- monitoring.MonitorEvent{Type: monitoring.EventAlert, PatientID: "pat-1", Alert: &alert}
	data, _ := json.Marshal(alert)
	if got, want := next(), "event: alert\ndata: "+string(data); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	obs := monitoring.ObservationView{ID: "o-2", Reading: vitals.Reading{Code: vitals.HeartRate, Time: now, Value: vitals.Float(72), Unit: "/min"}}
	src.events <- monitoring.MonitorEvent{Type: monitoring.EventObservation, PatientID: "pat-1", Observation: &obs}
	data, _ = json.Marshal(obs)
	if got, want := next(), "event: observation\ndata: "+string(data); got != want {
		t.Errorf("got %q, want %q", got, want)
	}

	close(src.events) // the subscriber fell behind
	if got := next(); got != "EOF" {
		t.Errorf("after the channel closed: %q, want the end of the stream", got)
	}
	src.waitCancelled(t)
}

func TestEventStreamEndsWithTheClient(t *testing.T) {
	src := newEventSource()
	next, cancel := startStream(t, src)
	if got := next(); got != ": connected" {
		t.Fatalf("first %q, want \": connected\"", got)
	}
	cancel()
	src.waitCancelled(t)
}

func TestEventStreamRefusedBeforeItStarts(t *testing.T) {
	// Subscribe panics if called.
	h := newAPI(t, httpapi.Options{Events: &fakeEvents{patient: newEventSource().patient}})
	w := serve(h, request("GET", "/api/v1/patients/pat-2/events", ""))
	wantError(t, w, http.StatusNotFound, errcode.NotFound)

	r := request("GET", "/api/v1/patients/pat-1/events", "")
	r.Header.Del("Authorization")
	wantError(t, serve(h, r), http.StatusUnauthorized, errcode.Unauthenticated)
}
