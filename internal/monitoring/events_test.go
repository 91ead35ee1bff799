package monitoring

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/telemed/telemed/internal/consult"
)

func TestBroker(t *testing.T) {
	s := &Service{}
	all, cancelAll := s.Subscribe(SubscribeOptions{})
	defer cancelAll()
	alerts, cancelAlerts := s.Subscribe(SubscribeOptions{AlertsOnly: true})
	defer cancelAlerts()
	mine, cancelMine := s.Subscribe(SubscribeOptions{PatientID: "p-1"})

	s.events.publish(MonitorEvent{Type: EventObservation, PatientID: "p-2"})
	s.events.publish(MonitorEvent{Type: EventAlert, PatientID: "p-1"})
	if e := <-all; e.PatientID != "p-2" {
		t.Fatalf("all: %+v", e)
	}
	if e := <-alerts; e.Type != EventAlert {
		t.Fatalf("alerts only: %+v", e)
	}
	if e := <-mine; e.PatientID != "p-1" {
		t.Fatalf("one patient's: %+v", e)
	}
	cancelMine()
	s.events.publish(MonitorEvent{Type: EventAlert, PatientID: "p-1"})
	select {
	case e, ok := <-mine:
		if ok {
			t.Fatalf("cancelled subscriber got %+v", e)
		}
	default:
	}

	// A subscriber that falls a whole buffer behind is cut off, not left to miss alerts unnoticed.
	for range subscriberBuffer + 1 {
		s.events.publish(MonitorEvent{Type: EventObservation, PatientID: "p-3"})
	}
	n := 0
	for range all {
		n++
	}
	if n != subscriberBuffer {
		t.Fatalf("a subscriber behind got %d events and then %s", n, "a closed channel")
	}
	if len(alerts) != 1 {
		t.Fatalf("the alerts-only subscriber got %d events, want the 1 alert", len(alerts))
	}
}

// fakeBus stands for the other nodes: it keeps what this node publishes and delivers what the test
// sends as theirs.
type fakeBus struct {
	mu        sync.Mutex
	published []MonitorEvent
	incoming  chan MonitorEvent
}

func (b *fakeBus) Publish(e MonitorEvent) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.published = append(b.published, e)
}

func (b *fakeBus) Receive(ctx context.Context, deliver func(MonitorEvent)) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case e := <-b.incoming:
			deliver(e)
		}
	}
}

// openConsultations is a store whose patients each have one open consultation, "c-" and their id.
type openConsultations struct{ Store }

func (openConsultations) OpenConsultationsOfPatient(ctx context.Context, patientID string, now time.Time) ([]consult.Consultation, error) {
	return []consult.Consultation{{ID: "c-" + patientID}}, nil
}

type sentAlerts chan string

func (s sentAlerts) SendAlert(consultationID string, alert json.RawMessage) {
	var a AlertView
	json.Unmarshal(alert, &a)
	s <- consultationID + " " + a.ID
}

// TestEventsAcrossNodes: this node's events go to its subscribers and to the bus; the other nodes'
// reach its subscribers marked Remote; only this node's alerts are shown in calls.
func TestEventsAcrossNodes(t *testing.T) {
	bus := &fakeBus{incoming: make(chan MonitorEvent)}
	s := &Service{store: openConsultations{}, bus: bus, now: time.Now}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	received := make(chan error, 1)
	go func() { received <- s.ReceiveEvents(ctx) }()
	sent := make(sentAlerts, 10)
	forwarding := make(chan struct{})
	go func() {
		defer close(forwarding)
		s.ForwardAlerts(ctx, sent, slog.New(slog.DiscardHandler))
	}()
	all, cancelAll := s.Subscribe(SubscribeOptions{})
	defer cancelAll()
	local, cancelLocal := s.Subscribe(SubscribeOptions{LocalOnly: true})
	defer cancelLocal()

	// ForwardAlerts subscribes in its own goroutine: wait until it has.
	for {
		s.events.mu.Lock()
		n := len(s.events.subs)
		s.events.mu.Unlock()
		if n == 3 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	bus.incoming <- MonitorEvent{Type: EventAlert, PatientID: "p-1", Alert: &AlertView{ID: "a-remote"}}
	if e := <-all; !e.Remote || e.Alert.ID != "a-remote" {
		t.Fatalf("another node's alert reached a subscriber as %+v, want it marked Remote", e)
	}
	s.publish(MonitorEvent{Type: EventAlert, PatientID: "p-1", Alert: &AlertView{ID: "a-local"}})
	if e := <-all; e.Remote || e.Alert.ID != "a-local" {
		t.Fatalf("this node's alert reached a subscriber as %+v", e)
	}
	if e := <-local; e.Alert.ID != "a-local" {
		t.Fatalf("a LocalOnly subscriber got %+v first, want this node's alert only", e)
	}
	if got := <-sent; got != "c-p-1 a-local" {
		t.Fatalf("shown in a call: %q, want this node's alert only", got)
	}
	bus.mu.Lock()
	if len(bus.published) != 1 || bus.published[0].Alert.ID != "a-local" {
		t.Fatalf("published to the other nodes: %+v, want this node's alert only", bus.published)
	}
	bus.mu.Unlock()
	cancel()
	<-forwarding
	if err := <-received; err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-sent:
		t.Fatalf("also shown in a call: %q", got)
	default:
	}
}
