package storetest

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/monitor"
	"github.com/telemed/telemed/internal/store"
	"github.com/telemed/telemed/vitals"
)

// runMonitoring is the part of the suite about remote patient monitoring.
func runMonitoring(t *testing.T, open func(t *testing.T) store.Store, t0 time.Time) {
	ctx := context.Background()
	setUp := func(t *testing.T) (store.Store, monitor.Device) {
		s := open(t)
		must(t, s.CreateProvider(ctx, consult.Provider{ID: "u_1", Email: "a@b.example", Name: "Dr A", PasswordHash: "x", CreatedAt: t0}))
		must(t, s.CreatePatient(ctx, consult.Patient{ID: "p-1", ProviderID: "u_1", Name: "Ada", BirthDate: "1950-12-10", CreatedAt: t0}))
		must(t, s.CreateEnrollment(ctx, monitor.Enrollment{CodeHash: "h1", PatientID: "p-1", ProviderID: "u_1", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}))
		d := monitor.Device{ID: "d_1", Name: "Oximeter", TokenHash: "th1", CreatedAt: t0}
		must(t, s.RedeemEnrollment(ctx, "h1", t0.Add(time.Minute), &d))
		return s, d
	}

	t.Run("patients and enrollment", func(t *testing.T) {
		s, d := setUp(t)
		if d.PatientID != "p-1" {
			t.Fatalf("redeemed device's patient: %q", d.PatientID)
		}
		if err := s.RedeemEnrollment(ctx, "h1", t0.Add(2*time.Minute), &monitor.Device{ID: "d_2", TokenHash: "th2"}); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("second use of a code: %v, want ErrNotFound", err)
		}
		must(t, s.CreateEnrollment(ctx, monitor.Enrollment{CodeHash: "h2", PatientID: "p-1", ProviderID: "u_1", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}))
		if err := s.RedeemEnrollment(ctx, "h2", t0.Add(time.Hour), &monitor.Device{ID: "d_3", TokenHash: "th3"}); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("expired code: %v, want ErrNotFound", err)
		}
		got, err := s.DeviceByToken(ctx, "th1")
		if err != nil || got.ID != "d_1" || got.PatientID != "p-1" || got.RevokedAt != nil {
			t.Fatalf("DeviceByToken = %+v, %v", got, err)
		}
		must(t, s.RevokeDevice(ctx, "d_1", t0.Add(time.Hour)))
		must(t, s.RevokeDevice(ctx, "d_1", t0.Add(2*time.Hour)))
		if got, _ := s.Device(ctx, "d_1"); got.RevokedAt == nil || !got.RevokedAt.Equal(t0.Add(time.Hour)) {
			t.Fatalf("revoked device: %+v", got)
		}
		if ds, err := s.ListDevices(ctx, "p-1"); err != nil || len(ds) != 1 {
			t.Fatalf("ListDevices = %v, %v", ds, err)
		}
		if ps, err := s.ListPatients(ctx, "u_1", 10); err != nil || len(ps) != 1 || ps[0].BirthDate != "1950-12-10" {
			t.Fatalf("ListPatients = %+v, %v", ps, err)
		}
		must(t, s.CreateConsultation(ctx, consult.Consultation{ID: "c_1", ProviderID: "u_1", PatientID: "p-1", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}))
		must(t, s.CreateConsultation(ctx, consult.Consultation{ID: "c_2", ProviderID: "u_1", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}))
		if cs, err := s.OpenConsultationsOfPatient(ctx, "p-1", t0); err != nil || len(cs) != 1 || cs[0].PatientID != "p-1" {
			t.Fatalf("OpenConsultationsOfPatient = %+v, %v", cs, err)
		}
		if cs, _ := s.OpenConsultationsOfPatient(ctx, "p-1", t0.Add(time.Hour)); len(cs) != 0 {
			t.Fatalf("expired consultation still open: %+v", cs)
		}
	})

	t.Run("batches and observations", func(t *testing.T) {
		s, d := setUp(t)
		hr := monitor.Observation{ID: "o-1", PatientID: "p-1", DeviceID: d.ID, ReceivedAt: t0,
			Reading: vitals.Reading{Code: vitals.HeartRate, Time: t0.Add(-time.Second), Value: vitals.Float(72), Unit: "/min", Device: "Nonin"}}
		bp := monitor.Observation{ID: "o-2", PatientID: "p-1", DeviceID: d.ID, ReceivedAt: t0,
			Reading: vitals.Reading{Code: vitals.BloodPressure, Time: t0, Components: []vitals.Component{
				{Code: vitals.Systolic, Value: vitals.Float(128), Unit: "mm[Hg]"}, {Code: vitals.Diastolic, Value: vitals.Float(82), Unit: "mm[Hg]"}}}}
		ecg := monitor.Observation{ID: "o-3", PatientID: "p-1", DeviceID: d.ID, ReceivedAt: t0,
			Reading: vitals.Reading{Code: vitals.ECG, Time: t0.Add(time.Second), Unit: "mV", PeriodMS: 4, Samples: []float64{0.1, -0.25, 1.2}}}
		alert := monitor.Alert{ID: "a_1", PatientID: "p-1", ObservationID: "o-1", Code: vitals.HeartRate, Value: 72, Unit: "/min", Bound: "high", Limit: 70, At: hr.Reading.Time, CreatedAt: t0}
		b := monitor.Batch{DeviceID: d.ID, ID: "b-1", BodyHash: "bh", ReceivedAt: t0,
			Result: monitor.BatchResult{Accepted: 3, Rejected: []monitor.Rejection{{Index: 3, Code: "bad_unit", Message: "m"}}, Alerts: []monitor.Alert{alert}}}
		must(t, s.PutBatch(ctx, b, []monitor.Observation{hr, bp, ecg}, []monitor.Alert{alert}, monitor.States{vitals.HeartRate: "high", vitals.Systolic: ""}))
		if st, err := s.AlertStates(ctx, "p-1"); err != nil || len(st) != 2 || st[vitals.HeartRate] != "high" {
			t.Fatalf("AlertStates = %v, %v", st, err)
		}
		if err := s.PutBatch(ctx, b, []monitor.Observation{{ID: "o-9", PatientID: "p-1", DeviceID: d.ID, Reading: hr.Reading}}, nil, nil); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("batch id again: %v, want ErrConflict", err)
		}
		got, err := s.Batch(ctx, d.ID, "b-1")
		if err != nil || got.BodyHash != "bh" || !reflect.DeepEqual(got.Result.Rejected, b.Result.Rejected) || len(got.Result.Alerts) != 1 {
			t.Fatalf("Batch = %+v, %v", got, err)
		}
		if _, err := s.Batch(ctx, d.ID, "b-2"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("unknown batch: %v", err)
		}
		all, err := s.Observations(ctx, store.ObservationQuery{PatientID: "p-1"})
		if err != nil || len(all) != 3 {
			t.Fatalf("Observations = %d, %v; want 3 (the conflicting batch stored nothing)", len(all), err)
		}
		for i, want := range []monitor.Observation{hr, bp, ecg} {
			if !reflect.DeepEqual(all[i], want) {
				t.Errorf("observation %d:\n got %+v\nwant %+v", i, all[i], want)
			}
		}
		q := store.ObservationQuery{PatientID: "p-1", Codes: []string{vitals.HeartRate, vitals.BloodPressure}, From: t0.Add(-500 * time.Millisecond)}
		if got, _ := s.Observations(ctx, q); len(got) != 1 || got[0].ID != "o-2" {
			t.Fatalf("by code and time: %+v", got)
		}
		if n, _ := s.CountObservations(ctx, store.ObservationQuery{PatientID: "p-1", To: t0}); n != 2 {
			t.Fatalf("CountObservations up to t0 = %d, want 2", n)
		}
		if got, _ := s.Observations(ctx, store.ObservationQuery{PatientID: "p-1", Limit: 2, Newest: true}); len(got) != 2 || got[0].ID != "o-2" || got[1].ID != "o-3" {
			t.Fatalf("the newest 2, oldest first: %+v", got)
		}
		if got, _ := s.Observations(ctx, store.ObservationQuery{PatientID: "p-1", Limit: 1, Offset: 1}); len(got) != 1 || got[0].ID != "o-2" {
			t.Fatalf("page 2 of 1: %+v", got)
		}
		if got, err := s.Observation(ctx, "o-3"); err != nil || !reflect.DeepEqual(got, ecg) {
			t.Fatalf("Observation = %+v, %v", got, err)
		}
		if as, err := s.Alerts(ctx, "p-1", 10); err != nil || len(as) != 1 || as[0] != alert {
			t.Fatalf("Alerts = %+v, %v", as, err)
		}
		if dev, _ := s.Device(ctx, d.ID); dev.LastSeen == nil || !dev.LastSeen.Equal(t0) {
			t.Fatalf("device last seen: %+v", dev.LastSeen)
		}
	})

	t.Run("thresholds", func(t *testing.T) {
		s, _ := setUp(t)
		if th, err := s.Thresholds(ctx, "p-1"); err != nil || len(th) != 0 {
			t.Fatalf("no thresholds set: %+v, %v", th, err)
		}
		must(t, s.PutThresholds(ctx, "p-1", monitor.Thresholds{vitals.HeartRate: {Low: vitals.Float(40), High: vitals.Float(130)}}))
		must(t, s.PutThresholds(ctx, "p-1", monitor.Thresholds{vitals.OxygenSaturation: {Low: vitals.Float(90)}}))
		th, err := s.Thresholds(ctx, "p-1")
		if err != nil || len(th) != 2 || *th[vitals.HeartRate].High != 130 || th[vitals.OxygenSaturation].High != nil {
			t.Fatalf("Thresholds = %+v, %v", th, err)
		}
	})

	t.Run("patient audit", func(t *testing.T) {
		s, _ := setUp(t)
		must(t, s.AppendAudit(ctx, consult.AuditEvent{At: t0, Actor: "u_1", Action: consult.AuditExported, PatientID: "p-1", Detail: "Patient/p-1"}))
		must(t, s.AppendAudit(ctx, consult.AuditEvent{At: t0, Actor: "u_1", Action: consult.AuditCreated, ConsultationID: "c_1"}))
		got, err := s.PatientAudit(ctx, "p-1")
		if err != nil || len(got) != 1 || got[0].Detail != "Patient/p-1" || got[0].PatientID != "p-1" {
			t.Fatalf("PatientAudit = %+v, %v", got, err)
		}
	})
}
