package monitoring

import (
	"context"
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
	// Remote is set on an event raised on another node and carried here by the Bus. Showing an
	// alert in calls is the business of the node that raised it (signaling carries it to the other
	// nodes), so ForwardAlerts takes only this node's.
	Remote bool
}

// Bus carries monitoring events between the nodes that serve one clinic network, so that a page on
// one node sees what a device uploaded to another (internal/cluster has one over Redis). Without
// one, events stay in the process.
type Bus interface {
	// Publish sends e, raised on this node, to the other nodes. It must not wait on the network (an
	// upload calls it): what cannot be sent at once is queued, or dropped and logged.
	Publish(e MonitorEvent)
	// Receive calls deliver with each event raised on another node, in the order of its node, until
	// ctx ends.
	Receive(ctx context.Context, deliver func(MonitorEvent)) error
}

// publish hands e to this node's subscribers and, through the bus, to the other nodes'.
func (s *Service) publish(e MonitorEvent) {
	s.events.publish(e)
	if s.bus != nil {
		s.bus.Publish(e)
	}
}

// ReceiveEvents hands the events raised on other nodes to this node's subscribers, marked Remote,
// until ctx ends. Without a Bus it waits for ctx.
func (s *Service) ReceiveEvents(ctx context.Context) error {
	if s.bus == nil {
		<-ctx.Done()
		return nil
	}
	return s.bus.Receive(ctx, func(e MonitorEvent) {
		e.Remote = true
		s.events.publish(e)
	})
}

// subscriberBuffer is how many events a subscriber may fall behind before it is cut off: a page that
// cannot keep up must not hold up the uploads.
const subscriberBuffer = 1024

// broker fans monitoring events out to this node's subscribers: its own, and those the Bus brings
// from other nodes.
type broker struct {
	mu   sync.Mutex
	subs map[*subscriber]struct{}
}

type subscriber struct {
	patientID  string // "" for every patient
	alertsOnly bool
	localOnly  bool
	ch         chan MonitorEvent
}

// publish hands e to its subscribers. One that has fallen a whole buffer behind is cut off (its
// channel closed) rather than left to miss events silently: an event stream ends and the page
// reconnects and reloads; an alert must never go missing unnoticed.
func (b *broker) publish(e MonitorEvent) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		if (s.patientID != "" && s.patientID != e.PatientID) || (s.alertsOnly && e.Type != EventAlert) || (s.localOnly && e.Remote) {
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
	// LocalOnly leaves out the events raised on other nodes.
	LocalOnly bool
}

// Subscribe returns the monitoring events chosen by o as they happen, until cancel is called. The
// channel is closed if the subscriber falls too far behind: subscribe again, and reload what may
// have been missed. It does not check who may see them: callers do.
func (s *Service) Subscribe(o SubscribeOptions) (events <-chan MonitorEvent, cancel func()) {
	sub := &subscriber{patientID: o.PatientID, alertsOnly: o.AlertsOnly, localOnly: o.LocalOnly, ch: make(chan MonitorEvent, subscriberBuffer)}
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
