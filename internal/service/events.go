package service

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

// subscriberBuffer is how many events a subscriber may fall behind before it misses some: a page
// that cannot keep up must not hold up the uploads.
const subscriberBuffer = 256

// broker fans a node's monitoring events out to its subscribers. It is in-process: a clinic network
// with several nodes would carry these over Redis (not built yet).
type broker struct {
	mu   sync.Mutex
	subs map[*subscriber]struct{}
}

type subscriber struct {
	patientID string // "" for every patient
	ch        chan MonitorEvent
}

func (b *broker) publish(e MonitorEvent) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		if s.patientID != "" && s.patientID != e.PatientID {
			continue
		}
		select {
		case s.ch <- e:
		default: // the subscriber is behind: it misses this one rather than slow everyone
		}
	}
}

// Subscribe returns the monitoring events of a patient ("" for all patients) as they happen, until
// cancel is called. It does not check who may see them: callers do.
func (s *Service) Subscribe(patientID string) (events <-chan MonitorEvent, cancel func()) {
	sub := &subscriber{patientID: patientID, ch: make(chan MonitorEvent, subscriberBuffer)}
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
