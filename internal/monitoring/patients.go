package monitoring

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/auth"
	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/store"
)

// PatientView is a patient as the API shows it.
type PatientView struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	BirthDate string    `json:"birth_date,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

func patientView(p consult.Patient) PatientView {
	return PatientView{ID: p.ID, Name: p.Name, BirthDate: p.BirthDate, CreatedAt: p.CreatedAt}
}

// AddPatient creates a patient of the provider.
func (s *Service) AddPatient(ctx context.Context, p consult.Provider, actor, name, birthDate string) (PatientView, error) {
	name = strings.TrimSpace(name)
	if name == "" || utf8.RuneCountInString(name) > MaxPatientName {
		return PatientView{}, errcode.Errorf(errcode.BadField, "name must be 1 to %d characters", MaxPatientName)
	}
	birthDate = strings.TrimSpace(birthDate)
	if birthDate != "" {
		d, err := time.Parse(time.DateOnly, birthDate)
		if err != nil || d.After(s.now()) || d.Year() < 1880 {
			return PatientView{}, errcode.Errorf(errcode.BadField, "birth_date must be a past date as YYYY-MM-DD, not %s", errcode.Quote(birthDate))
		}
	}
	pt := consult.Patient{ID: auth.NewPlainID("p-"), ProviderID: p.ID, Name: name, BirthDate: birthDate,
		CreatedAt: s.now().UTC().Truncate(time.Millisecond)}
	if err := s.store.CreatePatient(ctx, pt); err != nil {
		return PatientView{}, fmt.Errorf("add patient: %w", err)
	}
	s.audit.Record(ctx, consult.AuditEvent{Actor: actor, Action: consult.AuditPatientCreated, PatientID: pt.ID})
	return patientView(pt), nil
}

// ListPatients returns the provider's patients by name.
func (s *Service) ListPatients(ctx context.Context, p consult.Provider) ([]PatientView, error) {
	ps, err := s.store.ListPatients(ctx, p.ID, 5000)
	if err != nil {
		return nil, fmt.Errorf("list patients: %w", err)
	}
	out := make([]PatientView, 0, len(ps))
	for _, pt := range ps {
		out = append(out, patientView(pt))
	}
	return out, nil
}

// ProviderPatient returns one of the provider's patients.
func (s *Service) ProviderPatient(ctx context.Context, p consult.Provider, id string) (PatientView, error) {
	pt, err := s.ownPatient(ctx, p, id)
	return patientView(pt), err
}

// PatientProvider returns the provider a patient belongs to, for the command line.
func (s *Service) PatientProvider(ctx context.Context, patientID string) (consult.Provider, error) {
	pt, err := s.store.Patient(ctx, patientID)
	if errors.Is(err, store.ErrNotFound) {
		return consult.Provider{}, errcode.Errorf(errcode.NotFound, "no patient %s", errcode.Quote(patientID))
	}
	if err != nil {
		return consult.Provider{}, fmt.Errorf("patient %s: %w", patientID, err)
	}
	return s.store.ProviderByID(ctx, pt.ProviderID)
}

// PatientAuditTrail returns the audit lines about the provider's patient, oldest first.
func (s *Service) PatientAuditTrail(ctx context.Context, p consult.Provider, patientID string) ([]consult.AuditEvent, error) {
	if _, err := s.ownPatient(ctx, p, patientID); err != nil {
		return nil, err
	}
	return s.store.PatientAudit(ctx, patientID)
}
