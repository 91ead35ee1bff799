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

	"golang.org/x/time/rate"

	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/audit"
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

// EnrollFailureBurst is how many failed device enrollments in a row the server allows before it
// makes every attempt wait (one more a second). With codes of 31^8, that leaves a guesser a chance
// of about one in a million a day for each code outstanding.
const EnrollFailureBurst = 30

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
}

// Service carries out the monitoring use cases.
type Service struct {
	store   Store
	audit   *audit.Log
	links   DeviceLinker
	baseURL string
	now     func() time.Time
	events  broker
	// patientLocks serialise the alert states of one patient's uploads.
	patientLocks stripedLocks
	// enrollFailures is the allowance of failed device enrollments: one a second, in bursts of
	// EnrollFailureBurst.
	enrollFailures *rate.Limiter
}

// New returns a Service.
func New(o Options) (*Service, error) {
	if o.Store == nil || o.Audit == nil || o.DeviceLinks == nil {
		return nil, errors.New("monitoring: Store, Audit and DeviceLinks are required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Service{store: o.Store, audit: o.Audit, links: o.DeviceLinks, baseURL: strings.TrimRight(o.BaseURL, "/"), now: o.Now,
		enrollFailures: rate.NewLimiter(rate.Every(time.Second), EnrollFailureBurst)}, nil
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
