package monitoring

import (
	"context"
	"fmt"

	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/monitor"
	"github.com/telemed/telemed/internal/store"
	"github.com/telemed/telemed/vitals"
)

// ObservationView is a stored reading as the API shows it: its id and the reading's fields.
type ObservationView struct {
	ID string `json:"id"`
	vitals.Reading
}

func observationViewPtr(o monitor.Observation) *ObservationView {
	return &ObservationView{ID: o.ID, Reading: o.Reading}
}

// PatientObservations returns the provider's patient's observations matching q, oldest first: at
// most q.Limit (MaxObservations at most), the latest of them when more match (truncated says so).
// Without codes it leaves waveforms out.
func (s *Service) PatientObservations(ctx context.Context, p consult.Provider, patientID string, q store.ObservationQuery) ([]ObservationView, bool, error) {
	if _, err := s.ownPatient(ctx, p, patientID); err != nil {
		return nil, false, err
	}
	q.PatientID = patientID
	if len(q.Codes) == 0 {
		for _, sig := range vitals.Signals() {
			if sig.Kind != vitals.KindWaveform {
				q.Codes = append(q.Codes, sig.Code)
			}
		}
	}
	for i, c := range q.Codes {
		sig, ok := vitals.Lookup(c)
		if !ok {
			return nil, false, errcode.Errorf(errcode.BadField, "code %s is not a signal telemed knows", errcode.Quote(c))
		}
		q.Codes[i] = sig.Code
	}
	if q.Limit <= 0 || q.Limit > MaxObservations {
		q.Limit = MaxObservations
	}
	limit := q.Limit
	q.Limit++
	q.Newest = true
	obs, err := s.store.Observations(ctx, q)
	if err != nil {
		return nil, false, fmt.Errorf("observations of %s: %w", patientID, err)
	}
	truncated := len(obs) > limit
	if truncated {
		obs = obs[1:] // the one past the limit is the oldest
	}
	out := make([]ObservationView, 0, len(obs))
	for _, o := range obs {
		out = append(out, ObservationView{ID: o.ID, Reading: o.Reading})
	}
	return out, truncated, nil
}

// thresholds returns a patient's thresholds: the defaults, with the provider's changes.
