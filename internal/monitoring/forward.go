package monitoring

import (
	"context"
	"encoding/json"
	"log/slog"
)

// AlertSender shows an alert, as the HTTP API writes it, to the providers in a consultation (the
// signaling server has it).
type AlertSender interface {
	SendAlert(consultationID string, alert json.RawMessage)
}

// ForwardAlerts shows each new alert raised on this node to the providers in the open consultations
// of its patient, until ctx ends; an alert raised on another node is that node's to show (signaling
// carries it between nodes), or a call would see it once per node. If alerts come faster than they
// can be shown, the ones missed stay in the patients' records and log says so.
func (s *Service) ForwardAlerts(ctx context.Context, to AlertSender, log *slog.Logger) {
	local := SubscribeOptions{AlertsOnly: true, LocalOnly: true}
	events, cancel := s.Subscribe(local)
	defer func() { cancel() }()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-events:
			if !ok {
				log.Warn("alerts came faster than they could be shown in consultations; some were not shown there (they are in the patients' records)")
				events, cancel = s.Subscribe(local)
				continue
			}
			s.forwardAlert(ctx, e, to, log)
		}
	}
}

func (s *Service) forwardAlert(ctx context.Context, e MonitorEvent, to AlertSender, log *slog.Logger) {
	body, err := json.Marshal(e.Alert)
	if err != nil {
		log.Error("encode alert", "err", err)
		return
	}
	cs, err := s.store.OpenConsultationsOfPatient(ctx, e.PatientID, s.now())
	if err != nil {
		log.Warn("alert not shown in consultations", "patient", e.PatientID, "err", err)
		return
	}
	for _, c := range cs {
		to.SendAlert(c.ID, body)
	}
}
