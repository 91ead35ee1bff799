package monitoring

import (
	"slices"
	"sync"
)

// Types of MonitorEvent.
const (
	EventAlert       = "alert"
	EventObservation = "observation"
)

// MonitorEvent is something that happened to a patient's record: a new alert, or a new discrete
// reading. Pages follow them live (GET /api/v1/patients/{id}/events); signaling shows alerts in a
// consultation of the patient.
type MonitorEvent struct {
	Type        string
	PatientID   string
	Alert       *AlertView
	Observation *ObservationView
}

// subscriberBuffer is how many events a subscriber may fall behind before it is cut off: a page that
// cannot keep up must not hold up the uploads.
const subscriberBuffer = 1024

// broker fans a node's monitoring events out to its subscribers. It is in-process: a clinic network
// with several nodes would carry these over Redis (not built yet).
type broker struct {
	mu   sync.Mutex
	subs map[*subscriber]struct{}
}

type subscriber struct {
	patientID  string // "" for every patient
	alertsOnly bool
	ch         chan MonitorEvent
}

// publish hands e to its subscribers. One that has fallen a whole buffer behind is cut off (its
// channel closed) rather than left to miss events silently: an event stream ends and the page
// reconnects and reloads; an alert must never go missing unnoticed.
func (b *broker) publish(e MonitorEvent) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		if (s.patientID != "" && s.patientID != e.PatientID) || (s.alertsOnly && e.Type != EventAlert) {
			continue
		}
		select {
		case s.ch <- e:
		default:
			delete(b.subs, s)
			close(s.ch)
		}
	}
}

// SubscribeOptions choose the events a subscriber receives.
type SubscribeOptions struct {
	// PatientID keeps only one patient's events; "" receives every patient's.
	PatientID string
	// AlertsOnly leaves out observations.
	AlertsOnly bool
}

// Subscribe returns the monitoring events chosen by o as they happen, until cancel is called. The
// channel is closed if the subscriber falls too far behind: subscribe again, and reload what may
// have been missed. It does not check who may see them: callers do.
func (s *Service) Subscribe(o SubscribeOptions) (events <-chan MonitorEvent, cancel func()) {
	sub := &subscriber{patientID: o.PatientID, alertsOnly: o.AlertsOnly, ch: make(chan MonitorEvent, subscriberBuffer)}
	b := &s.events
	b.mu.Lock()
	if b.subs == nil {
		b.subs = make(map[*subscriber]struct{})
	}
	b.subs[sub] = struct{}{}
	b.mu.Unlock()
	var once sync.Once
	return sub.ch, func() {
		once.Do(func() {
			b.mu.Lock()
			delete(b.subs, sub)
			b.mu.Unlock()
		})
	}
}

func sortedStrings(v []string) []string {
	out := slices.Clone(v)
	slices.Sort(out)
	return out
}
