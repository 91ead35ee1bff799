package monitoring

import (
	"context"
	"errors"
	"fmt"

	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/monitor"
	"github.com/telemed/telemed/internal/store"
)

// ExportPatient returns the provider's patient for an export, writing the export to the audit trail.
func (s *Service) ExportPatient(ctx context.Context, p consult.Provider, actor, patientID, detail string) (consult.Patient, error) {
	pt, err := s.ownPatient(ctx, p, patientID)
	if err != nil {
		return pt, err
	}
	s.audit.Record(ctx, consult.AuditEvent{Actor: actor, Action: consult.AuditExported, PatientID: pt.ID, Detail: detail})
	return pt, nil
}

// ExportObservations returns a page of the provider's patient's observations matching q and how many
// match in all (only that when q.Limit is negative), writing the export to the audit trail.
func (s *Service) ExportObservations(ctx context.Context, p consult.Provider, actor string, q store.ObservationQuery, detail string) ([]monitor.Observation, int, error) {
	if _, err := s.ownPatient(ctx, p, q.PatientID); err != nil {
		return nil, 0, err
	}
	total, err := s.store.CountObservations(ctx, q)
	if err != nil {
		return nil, 0, fmt.Errorf("count observations of %s: %w", q.PatientID, err)
	}
	var obs []monitor.Observation
	if q.Limit >= 0 { // a negative limit asks for the total only
		if obs, err = s.store.Observations(ctx, q); err != nil {
			return nil, 0, fmt.Errorf("observations of %s: %w", q.PatientID, err)
		}
	}
	s.audit.Record(ctx, consult.AuditEvent{Actor: actor, Action: consult.AuditExported, PatientID: q.PatientID,
		Detail: fmt.Sprintf("%s (%d of %d)", detail, len(obs), total)})
	return obs, total, nil
}

// ExportObservation returns one of the provider's patients' observations, writing the export to the
// audit trail.
func (s *Service) ExportObservation(ctx context.Context, p consult.Provider, actor, id string) (monitor.Observation, error) {
	o, err := s.store.Observation(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return o, errcode.Errorf(errcode.NotFound, "no observation %s", errcode.Quote(id))
	}
	if err != nil {
		return o, fmt.Errorf("observation %s: %w", id, err)
	}
	if _, err := s.ownPatient(ctx, p, o.PatientID); err != nil {
		return monitor.Observation{}, errcode.Errorf(errcode.NotFound, "no observation %s", errcode.Quote(id))
	}
	s.audit.Record(ctx, consult.AuditEvent{Actor: actor, Action: consult.AuditExported, PatientID: o.PatientID, Detail: "Observation/" + id})
	return o, nil
}

// DeviceName returns a device's name, for exports; "" if it is unknown.
func (s *Service) DeviceName(ctx context.Context, id string) string {
	d, err := s.store.Device(ctx, id)
	if err != nil {
		return ""
	}
	return d.Name
}
