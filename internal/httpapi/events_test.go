package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/httpapi"
	"github.com/telemed/telemed/internal/monitoring"
	"github.com/telemed/telemed/vitals"
)

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

func TestEventStream(t *testing.T) {
	src := newEventSource()
	srv := httptest.NewServer(newAPI(t, httpapi.Options{Events: src}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	next := openStream(t, ctx, srv)

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
	srv := httptest.NewServer(newAPI(t, httpapi.Options{Events: src}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	next := openStream(t, ctx, srv)
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
