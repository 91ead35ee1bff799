package monitoring

import "testing"

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
