package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/telemed/telemed/internal/monitoring"
)

// monitoringEnv is a running server with a provider, an API token, a patient and an enrolled device.
type monitoringEnv struct {
	*env
	api      *apiClient
	provider map[string]string // the provider's API token header
	patient  monitoring.PatientView
	device   monitoring.EnrolledDevice
	dev      map[string]string // the device token header
}

func startMonitoring(t *testing.T) *monitoringEnv {
	t.Helper()
	e := startServer(t, serverOptions())
	m := &monitoringEnv{env: e, api: newAPIClient(t, e)}
	token, err := e.svc.Accounts.CreateAPIToken(context.Background(), e.provider.ID, "test")
	if err != nil {
		t.Fatal(err)
	}
	m.provider = map[string]string{"Authorization": "Bearer " + token}
	if resp := m.api.do("POST", "/api/v1/patients", `{"name":"Ada Lovelace","birth_date":"1950-12-10"}`, m.provider, &m.patient); resp.StatusCode != 201 || m.patient.ID == "" {
		t.Fatalf("create patient: %d %+v", resp.StatusCode, m.patient)
	}
	var enr monitoring.EnrollmentView
	if resp := m.api.do("POST", "/api/v1/patients/"+m.patient.ID+"/enrollments", "", m.provider, &enr); resp.StatusCode != 201 || len(enr.Code) != 9 {
		t.Fatalf("create enrollment: %d %+v", resp.StatusCode, enr)
	}
	if !strings.HasSuffix(enr.Link, "/enroll#code="+enr.Code) {
		t.Fatalf("enrollment link %q does not carry the code %s", enr.Link, enr.Code)
	}
	// People type codes loosely: lower case, no dash.
	loose := strings.ToLower(strings.ReplaceAll(enr.Code, "-", " "))
	if resp := m.api.do("POST", "/api/v1/devices/enroll", fmt.Sprintf(`{"code":%q,"name":"Oximeter"}`, loose), nil, &m.device); resp.StatusCode != 201 || !strings.HasPrefix(m.device.Token, "td_") {
		t.Fatalf("enroll: %d %+v", resp.StatusCode, m.device)
	}
	if m.device.Device.PatientID != m.patient.ID {
		t.Fatalf("device enrolled to %s, want %s", m.device.Device.PatientID, m.patient.ID)
	}
	m.dev = map[string]string{"Authorization": "Bearer " + m.device.Token}
	return m
}

func reading(code string, value float64, unit string, at time.Time) string {
	return fmt.Sprintf(`{"code":%q,"value":%g,"unit":%q,"time":%q}`, code, value, unit, at.UTC().Format(time.RFC3339Nano))
}

func batch(id string, readings ...string) string {
	return fmt.Sprintf(`{"batch_id":%q,"readings":[%s]}`, id, strings.Join(readings, ","))
}

func TestMonitoringAPI(t *testing.T) {
	m := startMonitoring(t)
	a := m.api
	now := time.Now().UTC().Truncate(time.Millisecond)

	// The code works once.
	a.expectError("POST", "/api/v1/devices/enroll", `{"code":"AAAA-AAAA"}`, nil, 403, "bad_token")
	a.expectError("POST", "/api/v1/devices/enroll", `{"code":"nope"}`, nil, 400, "bad_field")

	// A mixed batch: the valid readings are stored, the others named by index with a reason.
	good := reading("8867-4", 72, "/min", now.Add(-3*time.Second))
	low := reading("59408-5", 88, "%", now.Add(-2*time.Second)) // below the default 92: an alert
	bp := fmt.Sprintf(`{"code":"85354-9","time":%q,"components":[{"code":"8480-6","value":128,"unit":"mm[Hg]"},{"code":"8462-4","value":82,"unit":"mm[Hg]"}]}`,
		now.Add(-time.Second).Format(time.RFC3339Nano))
	bad := []struct{ reading, code, mention string }{
		{reading("1234-5", 1, "/min", now), "unknown_code", `"1234-5"`},
		{reading("8867-4", 72, "bpm", now), "bad_unit", `"/min"`},
		{reading("8867-4", 900, "/min", now), "out_of_range", "not physiologically possible"},
		{reading("8310-5", 36.6, "Cel", now.Add(time.Hour)), "out_of_range", "in the future"},
		{`{"code":"8867-4","value":"fast","unit":"/min","time":"2026-01-01T00:00:00Z"}`, "bad_reading", "value must be a number"},
		{`{"code":"8867-4","value":70,"unit":"/min","time":"yesterday"}`, "bad_reading", "RFC 3339"},
		{`{"code":"85354-9","time":"2026-01-01T00:00:00Z","components":[{"code":"8480-6","value":80,"unit":"mm[Hg]"},{"code":"8462-4","value":90,"unit":"mm[Hg]"}]}`, "out_of_range", "above diastolic"},
		{`{"code":"8867-4","value":70,"unit":"/min","time":"2026-01-01T00:00:00Z","colour":"red"}`, "bad_reading", "colour"},
		{`[72, "/min"]`, "bad_reading", "must be a JSON object, not an array"},
		{`{"code":"8867-4","value":1e400,"unit":"/min","time":"2026-01-01T00:00:00Z"}`, "bad_reading", "too large"},
	}
	readings := []string{good, low, bp}
	for _, b := range bad {
		readings = append(readings, b.reading)
	}
	var res monitoring.UploadResult
	if resp := a.do("POST", "/api/v1/observations", batch("b-1", readings...), m.dev, &res); resp.StatusCode != 200 {
		t.Fatalf("upload: %d %+v", resp.StatusCode, res)
	}
	if res.Accepted != 3 || len(res.Rejected) != len(bad) || res.Duplicate {
		t.Fatalf("mixed batch: %+v, want 3 accepted and %d rejected", res, len(bad))
	}
	for i, b := range bad {
		rj := res.Rejected[i]
		if rj.Index != 3+i || string(rj.Code) != b.code || !strings.Contains(rj.Message, b.mention) || !strings.Contains(rj.Message, fmt.Sprintf("readings[%d]", 3+i)) {
			t.Errorf("rejection %d: %+v, want index %d, code %s, a message naming the reading and %q", i, rj, 3+i, b.code, b.mention)
		}
	}
	if len(res.Alerts) != 1 || res.Alerts[0].Code != "2708-6" || res.Alerts[0].Bound != "low" || res.Alerts[0].Limit != 92 || res.Alerts[0].Value != 88 {
		t.Fatalf("alerts: %+v, want SpO2 88 below 92", res.Alerts)
	}

	// The same batch again stores nothing and gets the same answer.
	var again monitoring.UploadResult
	a.do("POST", "/api/v1/observations", batch("b-1", readings...), m.dev, &again)
	if !again.Duplicate || again.Accepted != 3 || len(again.Rejected) != len(bad) || len(again.Alerts) != 1 {
		t.Fatalf("repeated batch: %+v", again)
	}
	// The same id with other readings is a conflict.
	a.expectError("POST", "/api/v1/observations", batch("b-1", good), m.dev, 409, "conflict")

	var obs struct {
		Observations []monitoring.ObservationView
		Truncated    bool
	}
	a.do("GET", "/api/v1/patients/"+m.patient.ID+"/observations", "", m.provider, &obs)
	if len(obs.Observations) != 3 {
		t.Fatalf("stored observations: %d, want 3 (a repeated batch stores nothing)", len(obs.Observations))
	}
	if o := obs.Observations[1]; o.Code != "2708-6" || *o.Value != 88 || !o.Time.Equal(now.Add(-2*time.Second)) {
		t.Fatalf("second observation: %+v", o)
	}
	var alerts struct{ Alerts []monitoring.AlertView }
	a.do("GET", "/api/v1/patients/"+m.patient.ID+"/alerts", "", m.provider, &alerts)
	if len(alerts.Alerts) != 1 || alerts.Alerts[0].Name != "SpO2" {
		t.Fatalf("alerts in the record: %+v", alerts.Alerts)
	}

	// Batch-level errors: nothing stored.
	a.expectError("POST", "/api/v1/observations", `{"batch_id":"b-2","readings":[{"code":`, m.dev, 400, "bad_json")
	a.expectError("POST", "/api/v1/observations", `not json`, m.dev, 400, "bad_json")
	a.expectError("POST", "/api/v1/observations", `{"readings":[`+good+`]}`, m.dev, 400, "bad_field")
	a.expectError("POST", "/api/v1/observations", `{"batch_id":"b 2","readings":[`+good+`]}`, m.dev, 400, "bad_field")
	a.expectError("POST", "/api/v1/observations", `{"batch_id":"b-2","readings":[]}`, m.dev, 400, "bad_field")
	many := make([]string, monitoring.MaxBatchReadings+1)
	for i := range many {
		many[i] = good
	}
	a.expectError("POST", "/api/v1/observations", batch("b-3", many...), m.dev, 413, "too_large")
	huge := `{"batch_id":"b-4","readings":[{"code":"131329","unit":"mV","time":"2026-01-01T00:00:00Z","period_ms":4,"samples":[` +
		strings.Repeat("0.1234567,", 1_300_000) + `0]}]}`
	a.expectError("POST", "/api/v1/observations", huge, m.dev, 413, "too_large")
	a.expectError("POST", "/api/v1/observations", batch("b-5", good), nil, 401, "unauthenticated")
	a.expectError("POST", "/api/v1/observations", batch("b-5", good), map[string]string{"Authorization": "Bearer td_unknown"}, 401, "unauthenticated")
	// A provider's token is not a device's.
	a.expectError("POST", "/api/v1/observations", batch("b-5", good), m.provider, 401, "unauthenticated")
	a.do("GET", "/api/v1/patients/"+m.patient.ID+"/observations", "", m.provider, &obs)
	if len(obs.Observations) != 3 {
		t.Fatalf("after refused batches: %d observations, want 3", len(obs.Observations))
	}

	// Thresholds: defaults, a change, and what it does to the next reading.
	var th struct {
		Thresholds map[string]struct{ Low, High *float64 }
	}
	a.do("GET", "/api/v1/patients/"+m.patient.ID+"/thresholds", "", m.provider, &th)
	if hr := th.Thresholds["8867-4"]; hr.Low == nil || *hr.Low != 50 || hr.High == nil || *hr.High != 120 {
		t.Fatalf("default heart rate thresholds: %+v", hr)
	}
	a.expectError("PUT", "/api/v1/patients/"+m.patient.ID+"/thresholds", `{"thresholds":{"8867-4":{"low":90,"high":80}}}`, m.provider, 400, "bad_field")
	a.expectError("PUT", "/api/v1/patients/"+m.patient.ID+"/thresholds", `{"thresholds":{"85354-9":{"high":80}}}`, m.provider, 400, "bad_field")
	a.expectError("PUT", "/api/v1/patients/"+m.patient.ID+"/thresholds", `{"thresholds":{"8867-4":{"high":1000}}}`, m.provider, 400, "bad_field")
	if resp := a.do("PUT", "/api/v1/patients/"+m.patient.ID+"/thresholds", `{"thresholds":{"8867-4":{"low":40,"high":70}}}`, m.provider, &th); resp.StatusCode != 200 {
		t.Fatalf("set thresholds: %d", resp.StatusCode)
	}
	if hr := th.Thresholds["8867-4"]; *hr.High != 70 || th.Thresholds["2708-6"].Low == nil {
		t.Fatalf("thresholds after the change: %+v", th.Thresholds)
	}
	a.do("POST", "/api/v1/observations", batch("b-6", reading("8867-4", 72, "/min", now)), m.dev, &res)
	if len(res.Alerts) != 1 || res.Alerts[0].Bound != "high" || res.Alerts[0].Limit != 70 {
		t.Fatalf("72/min above the new 70: alerts %+v", res.Alerts)
	}

	// A reading that stays out of range raises no new alert; one that comes back and goes out again does.
	for i, c := range []struct {
		v      float64
		alerts int
	}{{73, 0}, {65, 0}, {75, 1}} {
		a.do("POST", "/api/v1/observations", batch(fmt.Sprint("b-c", i), reading("8867-4", c.v, "/min", now.Add(time.Duration(i+1)*time.Millisecond))), m.dev, &res)
		if len(res.Alerts) != c.alerts {
			t.Fatalf("heart rate %g after the last: %d alerts, want %d", c.v, len(res.Alerts), c.alerts)
		}
	}

	// Another provider sees nothing of this patient.
	other, err := m.svc.Accounts.AddProvider(context.Background(), "other@clinic.example", "Dr Other", testPassword)
	if err != nil {
		t.Fatal(err)
	}
	otherToken, _ := m.svc.Accounts.CreateAPIToken(context.Background(), other.ID, "x")
	oh := map[string]string{"Authorization": "Bearer " + otherToken}
	for _, p := range []string{"", "/observations", "/thresholds", "/alerts", "/devices"} {
		a.expectError("GET", "/api/v1/patients/"+m.patient.ID+p, "", oh, 404, "not_found")
	}
	a.expectError("DELETE", "/api/v1/devices/"+m.device.Device.ID, "", oh, 404, "not_found")

	// Revoked: the token stops working at once.
	var dev monitoring.DeviceView
	if resp := a.do("DELETE", "/api/v1/devices/"+m.device.Device.ID, "", m.provider, &dev); resp.StatusCode != 200 || dev.RevokedAt == nil {
		t.Fatalf("revoke: %d %+v", resp.StatusCode, dev)
	}
	a.expectError("POST", "/api/v1/observations", batch("b-7", good), m.dev, 401, "unauthenticated")
	a.expectError("GET", "/api/v1/device", "", m.dev, 401, "unauthenticated")

	// Every step is in the patient's audit trail.
	var audit struct{ Audit []struct{ Action string } }
	a.do("GET", "/api/v1/patients/"+m.patient.ID+"/audit", "", m.provider, &audit)
	var actions []string
	for _, l := range audit.Audit {
		actions = append(actions, l.Action)
	}
	want := "patient.created device.enrollment_created device.enrolled thresholds.changed device.revoked"
	if strings.Join(actions, " ") != want {
		t.Fatalf("audit: %v, want %s", actions, want)
	}
}

// TestMonitoringEvents checks that the provider's patient page learns of alerts and readings as
// they are stored.
func TestMonitoringEvents(t *testing.T) {
	m := startMonitoring(t)
	ctx := ctxTimeout(t, 20*time.Second)
	req, _ := http.NewRequestWithContext(ctx, "GET", m.srv.BaseURL()+"/api/v1/patients/"+m.patient.ID+"/events", nil)
	req.Header.Set("Authorization", m.provider["Authorization"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("content type %q", resp.Header.Get("Content-Type"))
	}
	lines := make(chan string, 100)
	go func() {
		buf := make([]byte, 64<<10)
		var acc string
		for {
			n, err := resp.Body.Read(buf)
			acc += string(buf[:n])
			for {
				i := strings.Index(acc, "\n\n")
				if i < 0 {
					break
				}
				lines <- acc[:i]
				acc = acc[i+2:]
			}
			if err != nil {
				close(lines)
				return
			}
		}
	}()
	<-lines // ": connected"
	now := time.Now()
	m.api.do("POST", "/api/v1/observations", batch("e-1", reading("2708-6", 85, "%", now)), m.dev, nil)
	got := map[string]string{}
	for len(got) < 2 {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("stream ended; got %v", got)
			}
			ev, data, _ := strings.Cut(l, "\n")
			got[strings.TrimPrefix(ev, "event: ")] = data
		case <-ctx.Done():
			t.Fatalf("events so far: %v", got)
		}
	}
	if !strings.Contains(got["alert"], `"bound":"low"`) || !strings.Contains(got["observation"], `"value":85`) {
		t.Fatalf("events: %v", got)
	}
}

// TestEnrollmentGuessing: enrollment codes are short, so failed attempts from one address are
// throttled.
func TestEnrollmentGuessing(t *testing.T) {
	m := startMonitoring(t)
	for i := range monitoring.EnrollFailureBurst {
		var e apiError
		if resp := m.api.do("POST", "/api/v1/devices/enroll", fmt.Sprintf(`{"code":"AAAA-%04d"}`, 2222+i%7000), nil, &e); resp.StatusCode == 429 {
			t.Fatalf("attempt %d already throttled", i)
		}
	}
	m.api.expectError("POST", "/api/v1/devices/enroll", `{"code":"BBBB-CCCC"}`, nil, 429, "busy")
}

// clientFrom returns an API client whose connections come from the loopback address local (Linux
// routes all of 127.0.0.0/8 to the loopback interface), so that one test can be two clients.
func clientFrom(t *testing.T, m *monitoringEnv, local string) *apiClient {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 16}
	t.Cleanup(tr.CloseIdleConnections)
	return &apiClient{t: t, base: m.srv.BaseURL(), http: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

// guess returns the nth code of a guesser: a well-formed code, almost surely not one created.
func guess(n int) string {
	const alphabet = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
	b := []byte("ZZZZ-ZZZZ")
	for i := 8; i >= 5 && n > 0; i, n = i-1, n/len(alphabet) {
		b[i] = alphabet[n%len(alphabet)]
	}
	for i := 3; i >= 0 && n > 0; i, n = i-1, n/len(alphabet) {
		b[i] = alphabet[n%len(alphabet)]
	}
	return string(b)
}

// TestEnrollmentFloodOneAddress: a flood of wrong codes from 127.0.0.2 is answered busy, and meanwhile
// a real enrollment from 127.0.0.1 succeeds at once: failures are counted per address, not only
// across the server.
func TestEnrollmentFloodOneAddress(t *testing.T) {
	m := startMonitoring(t)
	attacker, patient := clientFrom(t, m, "127.0.0.2"), clientFrom(t, m, "127.0.0.1")
	var enr monitoring.EnrollmentView
	if resp := m.api.do("POST", "/api/v1/patients/"+m.patient.ID+"/enrollments", "", m.provider, &enr); resp.StatusCode != 201 {
		t.Fatalf("create enrollment: %d", resp.StatusCode)
	}

	var wrong, busy atomic.Int64
	firstBusy := make(chan struct{})
	var once sync.Once
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				var e apiError
				resp := attacker.do("POST", "/api/v1/devices/enroll", fmt.Sprintf(`{"code":%q}`, guess(w*100000+i)), nil, &e)
				switch {
				case resp.StatusCode == 403 && e.Error.Code == "bad_token":
					wrong.Add(1)
				case resp.StatusCode == 429 && e.Error.Code == "busy":
					busy.Add(1)
					once.Do(func() { close(firstBusy) })
				default:
					t.Errorf("flood attempt: %d %q", resp.StatusCode, e.Error.Code)
				}
			}
		}()
	}
	select {
	case <-firstBusy:
	case <-time.After(10 * time.Second):
		t.Fatal("the flood from 127.0.0.2 was never throttled")
	}
	// While 127.0.0.2 is still flooding and throttled, 127.0.0.1 enrolls without waiting.
	started := time.Now()
	var dev monitoring.EnrolledDevice
	resp := patient.do("POST", "/api/v1/devices/enroll", fmt.Sprintf(`{"code":%q,"name":"Scale"}`, enr.Code), nil, &dev)
	took := time.Since(started)
	close(stop)
	wg.Wait()
	if resp.StatusCode != 201 || !strings.HasPrefix(dev.Token, "td_") {
		t.Fatalf("enrollment from 127.0.0.1 during the flood: %d", resp.StatusCode)
	}
	if took > 2*time.Second {
		t.Errorf("enrollment from 127.0.0.1 took %v during the flood", took)
	}
	attacker.expectError("POST", "/api/v1/devices/enroll", `{"code":"BBBB-CCCC"}`, nil, 429, "busy")
	// A few attempts may pass the check together before their failures are counted; not many more.
	if n := wrong.Load(); n < monitoring.EnrollFailureBurst || n > monitoring.EnrollFailureBurst+8 {
		t.Errorf("%d wrong codes from 127.0.0.2 were tried, want about %d", n, monitoring.EnrollFailureBurst)
	}
	t.Logf("flood from 127.0.0.2: %d tried, %d busy; enrollment from 127.0.0.1 took %v", wrong.Load(), busy.Load(), took)
}
