package e2e

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/telemed/telemed/internal/agent"
	"github.com/telemed/telemed/internal/agent/source"
	"github.com/telemed/telemed/internal/consultations"
	"github.com/telemed/telemed/vitals"
)

// vitalsState is window.telemed.vitals() of the call page.
type vitalsState struct {
	Readings map[string]struct {
		Value any     `json:"value"`
		Unit  string  `json:"unit"`
		Count float64 `json:"count"`
	} `json:"readings"`
	Waveform struct {
		Samples float64 `json:"samples"`
		Dropped float64 `json:"dropped"`
	} `json:"waveform"`
	BadFrames float64 `json:"badFrames"`
}

// ecgCanvasJS hashes the ECG tile's chart pixels and counts the ones drawn: a sweeping waveform
// changes the hash from one look to the next.
const ecgCanvasJS = `(() => {
  const c = document.querySelector('.vital[data-code="131329"] canvas.vital-chart');
  if (!c || !c.width || !c.height) return {drawn: 0, hash: 0};
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let drawn = 0, hash = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i + 3] > 0) drawn++;
    hash = (hash * 31 + d[i] + d[i + 1] * 7 + d[i + 2] * 13 + d[i + 3] * 17) >>> 0;
  }
  return {drawn, hash};
})()`

type canvasLook struct {
	Drawn float64 `json:"drawn"`
	Hash  float64 `json:"hash"`
}

// TestBrowserLiveVitals: a simulated agent (pulse oximeter and 250 Hz ECG) joins a consultation of its
// patient; the provider's page shows the live SpO2 the agent measured and a moving ECG chart, and an
// alert when a reading crosses the patient's threshold; the patient's page shows the vitals too; the
// device gets no camera or microphone. Then the provider's patient page charts the history.
func TestBrowserLiveVitals(t *testing.T) {
	chromium := findChromium(t)
	m := startMonitoring(t)
	ctx := ctxTimeout(t, 3*time.Minute)
	// Every SpO2 reading of a healthy simulated patient is below 99.9: the first one crosses it.
	if resp := m.api.do("PUT", "/api/v1/patients/"+m.patient.ID+"/thresholds", `{"thresholds":{"2708-6":{"low":99.9}}}`, m.provider, nil); resp.StatusCode != 200 {
		t.Fatalf("set threshold: %d", resp.StatusCode)
	}
	c, err := m.svc.Consultations.CreateConsultation(ctx, m.env.provider, "test", consultations.NewConsultation{Title: "Review", PatientID: m.patient.ID})
	if err != nil {
		t.Fatal(err)
	}
	provider := newBrowser(t, chromium)
	patient := newBrowser(t, chromium)
	startBrowserCall(t, provider, patient, c.StartURL, c.JoinURL)

	oxi := newTap(t, source.SimPulseOximeter, 250*time.Millisecond, 7)
	heart := newTap(t, source.SimECG, 0, 7)
	dir := enrolledDir(t, m, m.srv.BaseURL())
	a, stop := runAgent(t, agent.Options{Dir: dir, Sources: []agent.Source{oxi, heart},
		PollInterval: 200 * time.Millisecond, FlushInterval: 250 * time.Millisecond})
	waitFor(t, ctx, "the agent to join", func() bool { return a.Status().Live == c.ID })

	waitJS(t, provider, "the provider's live SpO2", `!document.querySelector('#vitals').hidden && /^\d+$/.test(document.querySelector('.vital[data-code="2708-6"] .vital-value')?.textContent || '')`, 20*time.Second)
	waitJS(t, provider, "the provider's live pulse", `/^\d+$/.test(document.querySelector('.vital[data-code="8867-4"] .vital-value')?.textContent || '')`, 10*time.Second)
	waitJS(t, provider, "2 s of ECG on the provider's page", `window.telemed.vitals().waveform.samples >= 500`, 20*time.Second)

	// The number shown is one the agent measured.
	shown := evalJS[string](t, provider, `document.querySelector('.vital[data-code="2708-6"] .vital-value').textContent`)
	spo2, _ := strconv.ParseFloat(shown, 64)
	measured := false
	for _, r := range oxi.readings() {
		if r.Code == vitals.OxygenSaturation && math.Round(*r.Value) == spo2 {
			measured = true
		}
	}
	if !measured {
		t.Fatalf("the page shows SpO2 %q, which the agent never measured", shown)
	}

	// The ECG chart is drawn and moves.
	first := evalJS[canvasLook](t, provider, ecgCanvasJS)
	if first.Drawn == 0 {
		t.Fatal("the ECG chart is blank")
	}
	waitJS(t, provider, "the ECG chart to move", fmt.Sprintf(`(%s).hash !== %v`, ecgCanvasJS, first.Hash), 5*time.Second)
	st := evalJS[vitalsState](t, provider, `window.telemed.vitals()`)
	if st.BadFrames != 0 {
		t.Fatalf("the page could not use %v frames of a well-behaved agent", st.BadFrames)
	}
	t.Logf("provider page: SpO2 %s, %v ECG samples, %v pieces dropped", shown, st.Waveform.Samples, st.Waveform.Dropped)

	// The threshold crossing shows in the call, for the provider only.
	waitJS(t, provider, "a live SpO2 alert in the call", `document.querySelector('#alerts li.alert-item[data-code="2708-6"]')`, 20*time.Second)
	alert := evalJS[string](t, provider, `document.querySelector('#alerts li.alert-item[data-code="2708-6"]').textContent`)
	if !strings.Contains(alert, "SpO2") || !strings.Contains(alert, "99.9") {
		t.Fatalf("alert reads %q; it should name SpO2 and the threshold", alert)
	}
	screenshot(t, provider, "vitals-provider")

	// The patient sees their own vitals, not the alerts; neither person sends media to the device.
	waitJS(t, patient, "the patient's live SpO2", `/^\d+$/.test(document.querySelector('.vital[data-code="2708-6"] .vital-value')?.textContent || '')`, 20*time.Second)
	waitJS(t, patient, "ECG on the patient's page", `window.telemed.vitals().waveform.samples >= 250`, 20*time.Second)
	if n := evalJS[int](t, patient, `document.querySelectorAll('#alerts li.alert-item').length`); n != 0 {
		t.Fatalf("the patient's page shows %d alerts; they are for the provider", n)
	}
	screenshot(t, patient, "vitals-patient")
	for who, page := range map[string]context.Context{"provider": provider, "patient": patient} {
		if n := evalJS[int](t, page, `window.telemed.deviceConnections().reduce((n, pc) => n + pc.getSenders().filter((s) => s.track).length, 0)`); n != 0 {
			t.Fatalf("the %s's page sends %d tracks to the device", who, n)
		}
		waitJS(t, page, who+" still shows Connected", `document.querySelector('#status').textContent.includes('Connected')`, 5*time.Second)
	}
	if err := stop(); err != nil {
		t.Fatalf("agent: %v", err)
	}
	drain(t, dir)

	// The provider's patient page charts the history, with the alerts.
	click(t, provider, "#hangup-btn")
	if err := chromedp.Do(provider, chromedp.Navigate(m.srv.BaseURL()+"/login")); err != nil {
		t.Fatal(err)
	}
	typeInto(t, provider, "#email", "grace@clinic.example")
	typeInto(t, provider, "#password", testPassword)
	click(t, provider, "#login-btn")
	waitJS(t, provider, "the dashboard", `location.pathname === '/'`, 10*time.Second)
	if err := chromedp.Do(provider, chromedp.Navigate(m.srv.BaseURL()+"/patients/"+m.patient.ID)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, provider, "the SpO2 history chart", `Number(document.querySelector('canvas.history-chart[data-code="2708-6"]')?.dataset.points) > 0`, 15*time.Second)
	points := evalJS[string](t, provider, `document.querySelector('canvas.history-chart[data-code="2708-6"]').dataset.points`)
	if n, _ := strconv.Atoi(points); n != countCode(oxi.readings(), vitals.OxygenSaturation) {
		t.Fatalf("the SpO2 chart draws %s points, the agent took %d readings", points, countCode(oxi.readings(), vitals.OxygenSaturation))
	}
	waitJS(t, provider, "the alerts in the record", `document.querySelectorAll('#alerts li.alert-item[data-code="2708-6"]').length > 0`, 10*time.Second)
	if v := evalJS[string](t, provider, `document.querySelector('#thresholds input[name="2708-6-low"]').value`); v != "99.9" {
		t.Fatalf("the threshold editor shows %q, want 99.9", v)
	}
	click(t, provider, "#enroll-btn")
	waitJS(t, provider, "a new enrollment code", `/^[A-Z2-9]{4}-[A-Z2-9]{4}$/.test(document.querySelector('#enroll-code').textContent.trim())`, 10*time.Second)
	screenshot(t, provider, "patient-page")
}

func countCode(rs []vitals.Reading, code string) int {
	n := 0
	for _, r := range rs {
		if r.Code == code {
			n++
		}
	}
	return n
}
