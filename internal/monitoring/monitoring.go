// Package monitoring is remote patient monitoring's use cases: a provider's patients, enrolling and
// revoking their devices, devices' uploads of readings, thresholds and the alerts that crossing them
// raises, the live event stream of a patient's record, and the exports that FHIR serves. The rules
// themselves are package monitor's (alert judgement) and vitals' (what a valid reading is); this
// package loads, checks who may, persists, audits and publishes.
package monitoring

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/audit"
	"github.com/telemed/telemed/internal/auth"
	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/store"
)

// Limits of remote patient monitoring (docs/monitoring.md).
const (
	MaxPatientName    = 120
	EnrollmentTTL     = 24 * time.Hour
	MaxDeviceName     = 80
	MaxBatchReadings  = 1000
	MaxObservations   = 10000 // one page of GET /api/v1/patients/{id}/observations
	DefaultAlertLimit = 200
	MaxAlerts         = 1000 // one page of GET /api/v1/patients/{id}/alerts
	// DeviceLinkTTL is how long a device's consultation link works: it asks for a new one each time
	// it joins, so that a revoked device cannot join for long.
	DeviceLinkTTL = time.Hour
)

// Store is what monitoring reads and keeps: the monitoring records, the provider a patient belongs
// to, and the audit lines about a patient.
type Store interface {
	store.Monitoring
	ProviderByID(ctx context.Context, id string) (consult.Provider, error)
	PatientAudit(ctx context.Context, patientID string) ([]consult.AuditEvent, error)
}

// DeviceLinker makes the link with which a device joins a consultation of its patient
// (consultations.Links has it).
type DeviceLinker interface {
	DeviceURL(c consult.Consultation, deviceID string, expires time.Time) string
}

// Options configure a Service.
type Options struct {
	Store Store
	// Audit records what is done to patients' records.
	Audit *audit.Log
	// DeviceLinks makes devices' consultation links.
	DeviceLinks DeviceLinker
	// BaseURL is the public URL that enrollment links start with, without a trailing slash.
	BaseURL string
	// Now returns the current time; time.Now if nil.
	Now func() time.Time
	// Bus carries events to and from the other nodes; nil keeps them in this process.
	Bus Bus
	// PatientLock serialises one patient's uploads across the nodes that share the store, so that
	// two devices uploading to two nodes at once judge alerts one after the other. Default: none
	// (one node: uploads are serialised in this process anyway).
	PatientLock func(ctx context.Context, patientID string) (unlock func(), err error)
}

// Service carries out the monitoring use cases.
type Service struct {
	store   Store
	audit   *audit.Log
	links   DeviceLinker
	baseURL string
	now     func() time.Time
	events  broker
	bus     Bus
	// patientLocks serialise the alert states of one patient's uploads; patientLock across nodes.
	patientLocks stripedLocks
	patientLock  func(ctx context.Context, patientID string) (unlock func(), err error)
	// enrollFailures counts failed device enrollments per client address and server-wide.
	enrollFailures *enrollThrottle
}

// New returns a Service.
func New(o Options) (*Service, error) {
	if o.Store == nil || o.Audit == nil || o.DeviceLinks == nil {
		return nil, errors.New("monitoring: Store, Audit and DeviceLinks are required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Service{store: o.Store, audit: o.Audit, links: o.DeviceLinks, baseURL: strings.TrimRight(o.BaseURL, "/"), now: o.Now, bus: o.Bus,
		patientLock: o.PatientLock, enrollFailures: newEnrollThrottle()}, nil
}

// Now returns the service's current time.
func (s *Service) Now() time.Time { return s.now() }

// ownPatient returns the patient if it is the provider's; not_found otherwise, so that ids of other
// providers' patients cannot be probed.
func (s *Service) ownPatient(ctx context.Context, p consult.Provider, id string) (consult.Patient, error) {
	pt, err := s.store.Patient(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && pt.ProviderID != p.ID) {
		return consult.Patient{}, errcode.Errorf(errcode.NotFound, "no patient %s", errcode.Quote(id))
	}
	if err != nil {
		return consult.Patient{}, fmt.Errorf("patient %s: %w", id, err)
	}
	return pt, nil
}

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

// stripedLocks serialise work on one patient without a lock per patient: patients share one of a
// fixed number of mutexes by the hash of their id.
type stripedLocks [64]sync.Mutex

func (l *stripedLocks) lock(key string) (unlock func()) {
	h := fnv.New32a()
	h.Write([]byte(key))
	m := &l[h.Sum32()%uint32(len(l))]
	m.Lock()
	return m.Unlock
}
