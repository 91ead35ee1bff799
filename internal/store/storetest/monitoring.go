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

// enrolledDevice stores provider u_1, their patient p-1 and an enrollment code (hash h1), and
// returns the device d_1 that redeeming the code created.
func enrolledDevice(t *testing.T, s MonitoringStore) monitor.Device {
	t.Helper()
	ctx := context.Background()
	must(t, s.CreateProvider(ctx, consult.Provider{ID: "u_1", Email: "a@b.example", Name: "Dr A", PasswordHash: "x", CreatedAt: t0}))
	must(t, s.CreatePatient(ctx, consult.Patient{ID: "p-1", ProviderID: "u_1", Name: "Ada", BirthDate: "1950-12-10", CreatedAt: t0}))
	must(t, s.CreateEnrollment(ctx, monitor.Enrollment{CodeHash: "h1", PatientID: "p-1", ProviderID: "u_1", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}))
	d := monitor.Device{ID: "d_1", Name: "Oximeter", TokenHash: "th1", CreatedAt: t0}
	must(t, s.RedeemEnrollment(ctx, "h1", t0.Add(time.Minute), &d))
	return d
}

// testPatientsAndEnrollment checks that an enrollment code is used once and expires, that a
// device is revoked once, and that a patient's devices, details and open consultations read back.
func testPatientsAndEnrollment(t *testing.T, s MonitoringStore, d monitor.Device) {
	ctx := context.Background()
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
}

// uploaded is one upload of device d: a heart rate (o-1), a blood pressure (o-2) and an ECG (o-3),
// one per second around t0, and the heart rate's alert.
type uploaded struct {
	hr, bp, ecg monitor.Observation
	alert       monitor.Alert
	batch       monitor.Batch
}

func newUploaded(d monitor.Device) uploaded {
	var u uploaded
	u.hr = monitor.Observation{ID: "o-1", PatientID: "p-1", DeviceID: d.ID, ReceivedAt: t0,
		Reading: vitals.Reading{Code: vitals.HeartRate, Time: t0.Add(-time.Second), Value: vitals.Float(72), Unit: "/min", Device: "Nonin"}}
	u.bp = monitor.Observation{ID: "o-2", PatientID: "p-1", DeviceID: d.ID, ReceivedAt: t0,
		Reading: vitals.Reading{Code: vitals.BloodPressure, Time: t0, Components: []vitals.Component{
			{Code: vitals.Systolic, Value: vitals.Float(128), Unit: "mm[Hg]"}, {Code: vitals.Diastolic, Value: vitals.Float(82), Unit: "mm[Hg]"}}}}
	u.ecg = monitor.Observation{ID: "o-3", PatientID: "p-1", DeviceID: d.ID, ReceivedAt: t0,
		Reading: vitals.Reading{Code: vitals.ECG, Time: t0.Add(time.Second), Unit: "mV", PeriodMS: 4, Samples: []float64{0.1, -0.25, 1.2}}}
	u.alert = monitor.Alert{ID: "a_1", PatientID: "p-1", ObservationID: "o-1", Code: vitals.HeartRate, Value: 72, Unit: "/min", Bound: "high", Limit: 70, At: u.hr.Reading.Time, CreatedAt: t0}
	u.batch = monitor.Batch{DeviceID: d.ID, ID: "b-1", BodyHash: "bh", ReceivedAt: t0,
		Result: monitor.BatchResult{Accepted: 3, Rejected: []monitor.Rejection{{Index: 3, Code: "bad_unit", Message: "m"}}, Alerts: []monitor.Alert{u.alert}}}
	return u
}

// testBatchesAndObservations stores an upload of d and checks all that it stored.
func testBatchesAndObservations(t *testing.T, s MonitoringStore, d monitor.Device) {
	u := newUploaded(d)
	checkPutBatch(t, s, d, u)
	checkObservations(t, s, u)
	checkAlertsAndLastSeen(t, s, d, u)
}

// checkPutBatch stores u, checks the alert states it sets, that its batch id cannot be used again,
// and that the batch reads back.
func checkPutBatch(t *testing.T, s store.Monitoring, d monitor.Device, u uploaded) {
	t.Helper()
	ctx := context.Background()
	must(t, s.PutBatch(ctx, u.batch, []monitor.Observation{u.hr, u.bp, u.ecg}, []monitor.Alert{u.alert}, monitor.States{vitals.HeartRate: "high", vitals.Systolic: ""}))
	if st, err := s.AlertStates(ctx, "p-1"); err != nil || len(st) != 2 || st[vitals.HeartRate] != "high" {
		t.Fatalf("AlertStates = %v, %v", st, err)
	}
	if err := s.PutBatch(ctx, u.batch, []monitor.Observation{{ID: "o-9", PatientID: "p-1", DeviceID: d.ID, Reading: u.hr.Reading}}, nil, nil); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("batch id again: %v, want ErrConflict", err)
	}
	got, err := s.Batch(ctx, d.ID, "b-1")
	if err != nil || got.BodyHash != "bh" || !reflect.DeepEqual(got.Result.Rejected, u.batch.Result.Rejected) || len(got.Result.Alerts) != 1 {
		t.Fatalf("Batch = %+v, %v", got, err)
	}
	if _, err := s.Batch(ctx, d.ID, "b-2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown batch: %v", err)
	}
}

// checkObservations reads back the observations that checkPutBatch stored, by query and by id.
func checkObservations(t *testing.T, s store.Monitoring, u uploaded) {
	t.Helper()
	ctx := context.Background()
	all, err := s.Observations(ctx, store.ObservationQuery{PatientID: "p-1"})
	if err != nil || len(all) != 3 {
		t.Fatalf("Observations = %d, %v; want 3 (the conflicting batch stored nothing)", len(all), err)
	}
	for i, want := range []monitor.Observation{u.hr, u.bp, u.ecg} {
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
	if got, err := s.Observation(ctx, "o-3"); err != nil || !reflect.DeepEqual(got, u.ecg) {
		t.Fatalf("Observation = %+v, %v", got, err)
	}
}

// checkAlertsAndLastSeen checks what else storing u did: its alert is kept and d was seen at t0.
func checkAlertsAndLastSeen(t *testing.T, s store.Monitoring, d monitor.Device, u uploaded) {
	t.Helper()
	ctx := context.Background()
	if as, err := s.Alerts(ctx, "p-1", 10); err != nil || len(as) != 1 || as[0] != u.alert {
		t.Fatalf("Alerts = %+v, %v", as, err)
	}
	if dev, _ := s.Device(ctx, d.ID); dev.LastSeen == nil || !dev.LastSeen.Equal(t0) {
		t.Fatalf("device last seen: %+v", dev.LastSeen)
	}
}

// testThresholds checks that setting some codes' thresholds keeps the others; it needs patient p-1
// stored.
func testThresholds(t *testing.T, s store.Monitoring) {
	ctx := context.Background()
	if th, err := s.Thresholds(ctx, "p-1"); err != nil || len(th) != 0 {
		t.Fatalf("no thresholds set: %+v, %v", th, err)
	}
	must(t, s.PutThresholds(ctx, "p-1", monitor.Thresholds{vitals.HeartRate: {Low: vitals.Float(40), High: vitals.Float(130)}}))
	must(t, s.PutThresholds(ctx, "p-1", monitor.Thresholds{vitals.OxygenSaturation: {Low: vitals.Float(90)}}))
	th, err := s.Thresholds(ctx, "p-1")
	if err != nil || len(th) != 2 || *th[vitals.HeartRate].High != 130 || th[vitals.OxygenSaturation].High != nil {
		t.Fatalf("Thresholds = %+v, %v", th, err)
	}
}
