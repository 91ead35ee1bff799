package monitoring

import (
	"context"
	"fmt"
	"strings"

	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/monitor"
	"github.com/telemed/telemed/vitals"
)

func (s *Service) thresholds(ctx context.Context, patientID string) (monitor.Thresholds, error) {
	set, err := s.store.Thresholds(ctx, patientID)
	if err != nil {
		return nil, fmt.Errorf("thresholds of %s: %w", patientID, err)
	}
	t := monitor.DefaultThresholds()
	for code, th := range set {
		t[code] = th
	}
	return t, nil
}

// Thresholds returns the provider's patient's thresholds.
func (s *Service) Thresholds(ctx context.Context, p consult.Provider, patientID string) (monitor.Thresholds, error) {
	if _, err := s.ownPatient(ctx, p, patientID); err != nil {
		return nil, err
	}
	return s.thresholds(ctx, patientID)
}

// SetThresholds changes some of the provider's patient's thresholds and returns all of them.
func (s *Service) SetThresholds(ctx context.Context, p consult.Provider, actor, patientID string, changes monitor.Thresholds) (monitor.Thresholds, error) {
	if _, err := s.ownPatient(ctx, p, patientID); err != nil {
		return nil, err
	}
	if len(changes) == 0 {
		return nil, errcode.Errorf(errcode.BadField, "thresholds is missing or empty: send {\"thresholds\": {\"<code>\": {\"low\": n, \"high\": n}}}")
	}
	valid := vitals.ThresholdCodes()
	var changed []string
	for code, th := range changes {
		sig, ok := vitals.Lookup(code)
		if !ok || !containsString(valid, code) {
			return nil, errcode.Errorf(errcode.BadField, "thresholds: %s is not a code a threshold can be set for (codes: %s)", errcode.Quote(code), strings.Join(valid, ", "))
		}
		for _, b := range []struct {
			name string
			v    *float64
		}{{"low", th.Low}, {"high", th.High}} {
			if b.v != nil && (*b.v < sig.Min || *b.v > sig.Max) {
				return nil, errcode.Errorf(errcode.BadField, "thresholds.%s.%s: %g %s is outside the possible %g to %g", code, b.name, *b.v, sig.UnitDisplay, sig.Min, sig.Max)
			}
		}
		if th.Low != nil && th.High != nil && *th.Low >= *th.High {
			return nil, errcode.Errorf(errcode.BadField, "thresholds.%s: low (%g) must be below high (%g)", code, *th.Low, *th.High)
		}
		changed = append(changed, code)
	}
	if err := s.store.PutThresholds(ctx, patientID, changes); err != nil {
		return nil, fmt.Errorf("set thresholds of %s: %w", patientID, err)
	}
	s.audit.Record(ctx, consult.AuditEvent{Actor: actor, Action: consult.AuditThresholdsChanged, PatientID: patientID,
		Detail: strings.Join(sortedStrings(changed), ", ")})
	return s.thresholds(ctx, patientID)
}

// Alerts returns the provider's patient's alerts, newest first.
func (s *Service) Alerts(ctx context.Context, p consult.Provider, patientID string, limit int) ([]AlertView, error) {
	if _, err := s.ownPatient(ctx, p, patientID); err != nil {
		return nil, err
	}
	if limit <= 0 || limit > MaxAlerts {
		limit = DefaultAlertLimit
	}
	as, err := s.store.Alerts(ctx, patientID, limit)
	if err != nil {
		return nil, fmt.Errorf("alerts of %s: %w", patientID, err)
	}
	out := make([]AlertView, 0, len(as))
	for _, a := range as {
		out = append(out, alertView(a))
	}
	return out, nil
}

func containsString(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// stripedLocks serialises work on one patient without a lock per patient: patients share one of a
// fixed number of mutexes by the hash of their id.
