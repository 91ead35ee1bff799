package bench

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/telemed/telemed/internal/auth"
	"github.com/telemed/telemed/internal/config"
	"github.com/telemed/telemed/internal/monitoring"
	"github.com/telemed/telemed/vitals"
)

// ingestEnv is a server with one patient and devices enrolled to it.
type ingestEnv struct {
	*env
	patient monitoring.PatientView
	tokens  []string
}

func startIngest(b *testing.B, devices int) *ingestEnv {
	b.Helper()
	e := startServer(b)
	ctx := context.Background()
	pt, err := e.svc.Monitoring.AddPatient(ctx, e.provider, "bench", "Ada Lovelace", "")
	if err != nil {
		b.Fatal(err)
	}
	ie := &ingestEnv{env: e, patient: pt}
	for i := range devices {
		enr, err := e.svc.Monitoring.CreateEnrollment(ctx, e.provider, "bench", pt.ID)
		if err != nil {
			b.Fatal(err)
		}
		d, err := e.svc.Monitoring.EnrollDevice(ctx, enr.Code, fmt.Sprint("device ", i), netip.Addr{})
		if err != nil {
			b.Fatal(err)
		}
		ie.tokens = append(ie.tokens, d.Token)
	}
	return ie
}

// discreteReadings returns n pulse oximeter readings (SpO2 and pulse, alternating) one second apart
// per pair, ending now: what a device uploads.
func discreteReadings(n int, start time.Time) []vitals.Reading {
	out := make([]vitals.Reading, n)
	for i := range out {
		t := start.Add(time.Duration(i/2) * time.Second)
		if i%2 == 0 {
			out[i] = vitals.Reading{Code: vitals.OxygenSaturation, Time: t, Value: vitals.Float(96 + float64(i%3)), Unit: "%"}
		} else {
			out[i] = vitals.Reading{Code: vitals.HeartRate, Time: t, Value: vitals.Float(60 + float64(i%30)), Unit: "/min"}
		}
	}
	return out
}

func ecgReadings(n int, start time.Time) []vitals.Reading {
	out := make([]vitals.Reading, n)
	for i := range out {
		s := make([]float64, 250)
		for j := range s {
			s[j] = float64((i*250+j)%200)/100 - 1
		}
		out[i] = vitals.Reading{Code: vitals.ECG, Time: start.Add(time.Duration(i) * time.Second), Unit: "mV", PeriodMS: 4, Samples: s}
	}
	return out
}

// BenchmarkIngest measures readings stored per second, sustained, through POST /api/v1/observations
// into the embedded SQLite (telemed), beside the same rows inserted straight into the same database
// file, in transactions of the same size, with no HTTP, JSON, validation or thresholds (sqlite-raw):
// what SQLite itself costs. Each op is one batch; readings/s is the figure to compare.
func BenchmarkIngest(b *testing.B) {
	for _, batchSize := range []int{100, 1000} {
		for _, kind := range []string{"discrete", "ecg"} {
			if kind == "ecg" && batchSize > 100 {
				continue // 100 one-second ECG readings is already 25,000 samples a batch
			}
			name := fmt.Sprintf("%s/batch=%d", kind, batchSize)
			b.Run(name+"/telemed", func(b *testing.B) { benchIngestHTTP(b, kind, batchSize, 1) })
			b.Run(name+"/telemed-4-devices", func(b *testing.B) { benchIngestHTTP(b, kind, batchSize, 4) })
			b.Run(name+"/sqlite-raw", func(b *testing.B) { benchIngestRaw(b, kind, batchSize) })
		}
	}
}

func makeReadings(kind string, n int, start time.Time) []vitals.Reading {
	if kind == "ecg" {
		return ecgReadings(n, start)
	}
	return discreteReadings(n, start)
}

func benchIngestHTTP(b *testing.B, kind string, batchSize, devices int) {
	ie := startIngest(b, devices)
	// Bodies are built before the clock starts: a device has them ready.
	start := time.Now().Add(-time.Duration(b.N*batchSize+3600) * time.Second) // all in the past
	bodies := make([][]byte, b.N)
	for i := range bodies {
		rs := makeReadings(kind, batchSize, start.Add(time.Duration(i)*time.Duration(batchSize)*time.Second))
		body, err := json.Marshal(map[string]any{"batch_id": fmt.Sprint("b-", i), "readings": rs})
		if err != nil {
			b.Fatal(err)
		}
		bodies[i] = body
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: devices}}
	url := ie.srv.BaseURL() + "/api/v1/observations"
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	t0 := time.Now()
	for d := range devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				req, _ := http.NewRequest("POST", url, bytes.NewReader(bodies[i]))
				req.Header.Set("Authorization", "Bearer "+ie.tokens[d])
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				var res monitoring.UploadResult
				err = json.NewDecoder(resp.Body).Decode(&res)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 || res.Accepted != batchSize {
					b.Errorf("batch %d: status %d, %d accepted, %d rejected (first: %+v), %v", i, resp.StatusCode, res.Accepted, len(res.Rejected), first(res.Rejected), err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0)
	b.StopTimer()
	b.ReportMetric(float64(b.N*batchSize)/elapsed.Seconds(), "readings/s")
	if kind == "ecg" {
		b.ReportMetric(float64(b.N*batchSize*250)/elapsed.Seconds(), "samples/s")
	}
}

func benchIngestRaw(b *testing.B, kind string, batchSize int) {
	ie := startIngest(b, 1)
	d, err := ie.svc.Monitoring.DeviceByToken(context.Background(), ie.tokens[0])
	if err != nil {
		b.Fatal(err)
	}
	// A second handle on the server's own database file, with the store's settings.
	q := url.Values{}
	for _, p := range []string{"journal_mode(WAL)", "foreign_keys(1)", "busy_timeout(5000)", "synchronous(NORMAL)"} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	path, _ := filepath.Abs(config.DatabasePath(ie.dir))
	db, err := sql.Open("sqlite", (&url.URL{Scheme: "file", OmitHost: true, Path: path, RawQuery: q.Encode()}).String())
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	start := time.Now().Add(-time.Duration(b.N*batchSize+3600) * time.Second)
	batches := make([][]vitals.Reading, b.N)
	for i := range batches {
		batches[i] = makeReadings(kind, batchSize, start.Add(time.Duration(i)*time.Duration(batchSize)*time.Second))
	}
	ctx := context.Background()
	b.ResetTimer()
	t0 := time.Now()
	for _, rs := range batches {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		ins, err := tx.PrepareContext(ctx, `INSERT INTO observations (id, patient_id, device_id, code, effective_at, value, unit,
			samples, period_ms, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			b.Fatal(err)
		}
		now := time.Now().UnixMilli()
		for _, r := range rs {
			var value, samples, period any
			if r.Value != nil {
				value = *r.Value
			}
			if len(r.Samples) > 0 {
				s, _ := json.Marshal(r.Samples)
				samples, period = string(s), r.PeriodMS
			}
			if _, err := ins.ExecContext(ctx, auth.NewPlainID("o-"), ie.patient.ID, d.ID, r.Code, r.Time.UnixMilli(), value, r.Unit,
				samples, period, now); err != nil {
				b.Fatal(err)
			}
		}
		ins.Close()
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	elapsed := time.Since(t0)
	b.StopTimer()
	b.ReportMetric(float64(b.N*batchSize)/elapsed.Seconds(), "readings/s")
	if kind == "ecg" {
		b.ReportMetric(float64(b.N*batchSize*250)/elapsed.Seconds(), "samples/s")
	}
}

func first(r []monitoring.RejectionView) any {
	if len(r) == 0 {
		return nil
	}
	return r[0]
}
