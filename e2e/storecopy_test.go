package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"testing"
	"time"

	"github.com/telemed/telemed/internal/config"
	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/consultations"
	"github.com/telemed/telemed/internal/monitor"
	"github.com/telemed/telemed/internal/monitoring"
	"github.com/telemed/telemed/internal/server"
	"github.com/telemed/telemed/internal/store/postgres/pgtest"
	"github.com/telemed/telemed/internal/store/sqlstore"
	"github.com/telemed/telemed/internal/store/storecopy"
	"github.com/telemed/telemed/vitals"
)

// clinic is what populateClinic stored: enough to ask both servers the same FHIR questions.
type clinic struct {
	token, patientID string
	readings         int
}

// bulkReadings is how many heart rates populateClinic stores besides the uploaded ones, in
// batches of bulkBatch through the store's PutBatch (an upload through the API would take minutes).
const (
	bulkReadings = 100_000
	bulkBatch    = 10_000
)

// populateClinic fills the SQLite store of a data folder as a clinic would: a provider with an API
// token, consultations with transcripts and invitations, a patient with a device, thresholds, an
// upload that raised alerts, and bulkReadings more readings with some alerts; and the audit trail
// all this wrote.
func populateClinic(t *testing.T, dir string) clinic {
	t.Helper()
	ctx := context.Background()
	st, err := server.OpenStore(ctx, dir, "")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	svc, err := server.NewServices(ctx, st, "http://127.0.0.1:1", nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	p, err := svc.Accounts.AddProvider(ctx, "grace@clinic.example", "Dr Grace Hopper", testPassword)
	check(t, err)
	var c clinic
	c.token, err = svc.Accounts.CreateAPIToken(ctx, p.ID, "ehr")
	check(t, err)
	by := consultations.ProviderCaller(p, "test")
	for i := range 3 {
		v, err := svc.Consultations.CreateConsultation(ctx, p, "test", consultations.NewConsultation{Title: fmt.Sprint("Visit ", i), TTL: time.Hour})
		check(t, err)
		_, err = svc.Consultations.SaveTranscript(ctx, by, v.ID, []consultations.TranscriptMessage{
			{From: "patient", Name: "Ada", Text: "Hello 👋", At: time.Now().UTC().Format(time.RFC3339Nano)}})
		check(t, err)
		_, err = svc.Consultations.Invite(ctx, by, v.ID, consult.RoleGuest, "Marta (interpreter)")
		check(t, err)
	}
	pt, err := svc.Monitoring.AddPatient(ctx, p, "test", "Ada Lovelace", "1950-12-10")
	check(t, err)
	c.patientID = pt.ID
	enr, err := svc.Monitoring.CreateEnrollment(ctx, p, "test", pt.ID)
	check(t, err)
	enrolled, err := svc.Monitoring.EnrollDevice(ctx, enr.Code, "Oximeter", netip.Addr{})
	check(t, err)
	dev, err := svc.Monitoring.DeviceByToken(ctx, enrolled.Token)
	check(t, err)
	_, err = svc.Monitoring.SetThresholds(ctx, p, "test", pt.ID, monitor.Thresholds{vitals.HeartRate: {High: vitals.Float(100)}})
	check(t, err)
	start := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	var upload monitoring.Batch
	upload.ID = "b-upload"
	for i, v := range []float64{72, 120, 80, 130} {
		upload.Readings = append(upload.Readings, json.RawMessage(reading(vitals.HeartRate, v, "/min", start.Add(time.Duration(i-10)*time.Second))))
	}
	res, err := svc.Monitoring.Upload(ctx, dev, upload)
	if err != nil || len(res.Alerts) != 2 {
		t.Fatalf("upload: %+v, %v; want 2 alerts", res, err)
	}
	bulkPut(t, st, dev, pt.ID, start)
	c.readings = len(upload.Readings) + bulkReadings
	return c
}

// bulkPut stores bulkReadings heart rates of patient, one a second from start, with an alert for
// each one over 139.
func bulkPut(t *testing.T, st *sqlstore.Store, dev monitor.Device, patientID string, start time.Time) {
	t.Helper()
	ctx := context.Background()
	for b := 0; b < bulkReadings; b += bulkBatch {
		obs := make([]monitor.Observation, 0, bulkBatch)
		var alerts []monitor.Alert
		for i := b; i < b+bulkBatch; i++ {
			at := start.Add(time.Duration(i) * time.Second)
			v := float64(60 + i%83)
			o := monitor.Observation{ID: fmt.Sprintf("o-bulk-%06d", i), PatientID: patientID, DeviceID: dev.ID, ReceivedAt: at.Add(time.Minute),
				Reading: vitals.Reading{Code: vitals.HeartRate, Time: at, Value: vitals.Float(v), Unit: "/min", Device: "Nonin 3230"}}
			obs = append(obs, o)
			if v > 139 {
				alerts = append(alerts, monitor.Alert{ID: fmt.Sprintf("a-bulk-%06d", i), PatientID: patientID, ObservationID: o.ID,
					Code: vitals.HeartRate, Value: v, Unit: "/min", Bound: "high", Limit: 139, At: at, CreatedAt: o.ReceivedAt})
			}
		}
		batch := monitor.Batch{DeviceID: dev.ID, ID: fmt.Sprint("bulk-", b), BodyHash: fmt.Sprint("h", b), ReceivedAt: obs[len(obs)-1].ReceivedAt,
			Result: monitor.BatchResult{Accepted: len(obs)}}
		check(t, st.PutBatch(ctx, batch, obs, alerts, nil))
	}
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestStoreCopyServesTheSameFHIR moves a populated SQLite folder into a new PostgreSQL database,
// checks every table's row count, and then asks a server on each store the same FHIR questions:
// the answers must be the same, byte for byte once each server's own address is taken out.
func TestStoreCopyServesTheSameFHIR(t *testing.T) {
	pgURL := pgtest.URL(t)
	dir := t.TempDir()
	began := time.Now()
	c := populateClinic(t, dir)
	t.Logf("populated SQLite in %s", time.Since(began).Round(time.Millisecond))

	ctx := context.Background()
	from, err := server.OpenStore(ctx, dir, "")
	check(t, err)
	to, err := server.OpenStore(ctx, "", pgURL)
	check(t, err)
	began = time.Now()
	counts, err := storecopy.Copy(ctx, from, to, storecopy.Options{})
	from.Close()
	to.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("copied in %s", time.Since(began).Round(time.Millisecond))
	for _, n := range counts {
		if n.Source != n.Target || n.Source == 0 && n.Table != "sessions" && n.Table != "quality_reports" {
			t.Errorf("%s: %d rows in SQLite, %d in PostgreSQL (each table but sessions and quality reports has rows)", n.Table, n.Source, n.Target)
		}
		if n.Table == "observations" && n.Target != int64(c.readings) {
			t.Errorf("observations: %d copied, want %d", n.Target, c.readings)
		}
	}

	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	o := server.Options{Now: func() time.Time { return now }}
	lite := startServerConfig(t, func(cfg *config.Serve) { cfg.DataDir = dir }, o)
	pg := startServerConfig(t, func(cfg *config.Serve) { cfg.StoreURL = pgURL }, o)
	q := func(v url.Values) string { return "/fhir/r4/Observation?" + v.Encode() }
	p := c.patientID
	for _, path := range []string{
		"/fhir/r4/Patient/" + p,
		q(url.Values{"patient": {p}}),
		q(url.Values{"patient": {p}, "_count": {"1000"}, "_offset": {"50000"}}),
		q(url.Values{"patient": {p}, "_count": {"0"}}),
		q(url.Values{"patient": {p}, "date": {"ge2026-03-01T09:00:00Z", "le2026-03-01T09:30:00Z"}, "_count": {"500"}}),
		"/fhir/r4/Observation/o-bulk-099999",
	} {
		a, b := fhirBody(t, lite, path, c.token), fhirBody(t, pg, path, c.token)
		if !bytes.Equal(a, b) {
			t.Errorf("GET %s differs:\nSQLite:     %.600s\nPostgreSQL: %.600s", path, a, b)
		}
	}
	// The pages compared are full ones, not two empty answers alike.
	var page struct {
		Total int
		Entry []any
	}
	json.Unmarshal(fhirBody(t, pg, q(url.Values{"patient": {p}, "_count": {"1000"}, "_offset": {"50000"}}), c.token), &page)
	if page.Total != c.readings || len(page.Entry) != 1000 {
		t.Fatalf("page of 1000 at 50000: total %d, %d entries; want %d, 1000", page.Total, len(page.Entry), c.readings)
	}
}

// fhirBody GETs path from srv as the holder of token and returns the body with the server's own
// address replaced by BASE, failing unless the answer is a 200.
func fhirBody(t *testing.T, srv *server.Server, path, token string) []byte {
	t.Helper()
	req, _ := http.NewRequest("GET", srv.BaseURL()+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	return bytes.ReplaceAll(body, []byte(srv.BaseURL()), []byte("BASE"))
}
