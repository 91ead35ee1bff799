package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/telemed/telemed/client"
	"github.com/telemed/telemed/internal/agent"
	"github.com/telemed/telemed/internal/agent/deviceapi"
	"github.com/telemed/telemed/internal/agent/source"
	"github.com/telemed/telemed/internal/config"
	"github.com/telemed/telemed/internal/consultations"
	"github.com/telemed/telemed/internal/monitoring"
	"github.com/telemed/telemed/internal/server"
	"github.com/telemed/telemed/internal/store"
	"github.com/telemed/telemed/vitals"
)

// tap is a Source that records every reading its inner source takes, before the agent sees it:
// what was measured, to compare with what was stored.
type tap struct {
	agent.Source
	mu    sync.Mutex
	taken []vitals.Reading
}

func (t *tap) Run(ctx context.Context, emit func(vitals.Reading)) error {
	return t.Source.Run(ctx, func(r vitals.Reading) {
		t.mu.Lock()
		t.taken = append(t.taken, r)
		t.mu.Unlock()
		emit(r)
	})
}

func (t *tap) readings() []vitals.Reading {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]vitals.Reading(nil), t.taken...)
}

func newTap(t *testing.T, name string, interval time.Duration, seed uint64) *tap {
	t.Helper()
	s, err := source.NewSim(name, source.SimOptions{Interval: interval, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	return &tap{Source: s}
}

// enrolledDir writes the device's credentials into a new agent folder, as `telemed device --enroll`
// does.
func enrolledDir(t *testing.T, m *monitoringEnv, serverURL string) string {
	t.Helper()
	dir := t.TempDir()
	err := deviceapi.SaveCredentials(dir, deviceapi.Credentials{Server: serverURL, DeviceID: m.device.Device.ID,
		PatientID: m.device.Device.PatientID, Name: "Home kit", Token: m.device.Token, EnrolledAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// runAgent runs an agent until the returned stop is called; stop returns Run's error.
func runAgent(t *testing.T, o agent.Options) (*agent.Agent, func() error) {
	t.Helper()
	if o.Logger == nil {
		o.Logger = testLogger(t)
	}
	a, err := agent.New(o)
	if err != nil {
		t.Fatalf("agent: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(20 * time.Second):
				runErr = errors.New("agent did not stop within 20 s")
			}
			a.Close()
		})
		return runErr
	}
	t.Cleanup(func() { stop() })
	return a, stop
}

// drain uploads what an agent folder's queue holds, with no sources: Run returns once it is empty.
func drain(t *testing.T, dir string) {
	t.Helper()
	a, err := agent.New(agent.Options{Dir: dir, NoLive: true, RetryMax: 200 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx := ctxTimeout(t, 60*time.Second)
	if err := a.Run(ctx); err != nil {
		t.Fatalf("drain: %v", err)
	}
	if n, _ := agent.Waiting(dir); n != 0 {
		t.Fatalf("after draining, %d batches wait", n)
	}
}

func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

type received struct {
	r  vitals.Reading
	at time.Time
}

// key identifies a discrete reading across live frames, the store and FHIR.
func key(r vitals.Reading) string {
	var parts []string
	if r.Value != nil {
		parts = append(parts, fmt.Sprintf("%.4f", *r.Value))
	}
	for _, c := range r.Components {
		parts = append(parts, fmt.Sprintf("%s=%.4f", c.Code, *c.Value))
	}
	return r.Code + "@" + r.Time.UTC().Format(time.RFC3339Nano) + ":" + strings.Join(parts, ",")
}

// TestMonitoringLive: a simulated agent streams a pulse oximeter and an ECG into a consultation of its
// patient; a Go provider gets every discrete reading in order within a second of its measurement,
// and the ECG pieces in time order; the same discrete readings are then in the store and in the
// FHIR Bundle.
func TestMonitoringLive(t *testing.T) {
	m := startMonitoring(t)
	ctx := ctxTimeout(t, 90*time.Second)
	c, err := m.svc.Consultations.CreateConsultation(ctx, m.env.provider, "test", consultations.NewConsultation{Title: "Review", PatientID: m.patient.ID})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var discrete, ecg []received
	prov := mustJoin(t, ctx, client.Config{Link: c.StartURL, API: loopbackAPI(), OnReading: func(_ *client.Peer, r vitals.Reading) {
		at := time.Now()
		mu.Lock()
		defer mu.Unlock()
		if r.Code == vitals.ECG {
			ecg = append(ecg, received{r, at})
		} else {
			discrete = append(discrete, received{r, at})
		}
	}})
	defer prov.Close()

	oxi := newTap(t, source.SimPulseOximeter, 250*time.Millisecond, 1)
	heart := newTap(t, source.SimECG, 0, 2)
	dir := enrolledDir(t, m, m.srv.BaseURL())
	a, stop := runAgent(t, agent.Options{Dir: dir, Sources: []agent.Source{oxi, heart},
		PollInterval: 200 * time.Millisecond, FlushInterval: 200 * time.Millisecond})

	// The device joins the call on its own: the provider is in it.
	waitFor(t, ctx, "the agent to join the consultation", func() bool { return a.Status().Live == c.ID })
	count := func() (int, int) { mu.Lock(); defer mu.Unlock(); return len(discrete), len(ecg) }
	waitFor(t, ctx, "20 discrete readings and 200 ECG pieces", func() bool { d, e := count(); return d >= 20 && e >= 200 })
	if err := stop(); err != nil {
		t.Fatalf("agent: %v", err)
	}

	mu.Lock()
	gotDiscrete, gotECG := append([]received(nil), discrete...), append([]received(nil), ecg...)
	mu.Unlock()
	last := map[string]time.Time{}
	var worst time.Duration
	for _, x := range gotDiscrete {
		if prev, ok := last[x.r.Code]; ok && !x.r.Time.After(prev) {
			t.Fatalf("%s readings out of order: %s after %s", x.r.Code, x.r.Time, prev)
		}
		last[x.r.Code] = x.r.Time
		worst = max(worst, x.at.Sub(x.r.Time))
	}
	if worst >= time.Second {
		t.Fatalf("a discrete reading took %s from measurement to the provider, want under 1 s", worst)
	}
	var prevECG time.Time
	var worstECG time.Duration
	samples := 0
	for _, x := range gotECG {
		if !x.r.Time.After(prevECG) {
			t.Fatalf("ECG pieces out of order: %s after %s", x.r.Time, prevECG)
		}
		prevECG = x.r.Time
		lastSample := x.r.Time.Add(time.Duration(float64(len(x.r.Samples)-1) * x.r.PeriodMS * float64(time.Millisecond)))
		worstECG = max(worstECG, x.at.Sub(lastSample))
		samples += len(x.r.Samples)
	}
	if worstECG >= time.Second {
		t.Fatalf("an ECG piece took %s from its last sample to the provider, want under 1 s", worstECG)
	}
	t.Logf("live: %d discrete readings (worst %s), %d ECG pieces, %d samples (worst %s)", len(gotDiscrete), worst, len(gotECG), samples, worstECG)

	// Everything taken reaches the store; the live readings are among it, equal.
	drain(t, dir)
	var obs struct{ Observations []monitoring.ObservationView }
	m.api.do("GET", "/api/v1/patients/"+m.patient.ID+"/observations?from="+url.QueryEscape(time.Now().Add(-time.Hour).Format(time.RFC3339)), "", m.provider, &obs)
	stored := map[string]bool{}
	for _, o := range obs.Observations {
		stored[key(o.Reading)] = true
	}
	if len(obs.Observations) != len(oxi.readings()) {
		t.Fatalf("stored %d discrete readings, the oximeter took %d", len(obs.Observations), len(oxi.readings()))
	}
	for _, x := range gotDiscrete {
		if !stored[key(x.r)] {
			t.Fatalf("live reading %s is not in the store", key(x.r))
		}
	}

	// And in the FHIR Bundle.
	q := url.Values{"patient": {m.patient.ID}, "code": {"8867-4,2708-6"}, "_count": {"1000"}}
	_, bundle := fhirGet(t, m, "/fhir/r4/Observation?"+q.Encode(), m.provider)
	inFHIR := map[string]bool{}
	for _, e := range bundle["entry"].([]any) {
		r := e.(map[string]any)["resource"].(map[string]any)
		code := r["code"].(map[string]any)["coding"].([]any)[0].(map[string]any)["code"].(string)
		v := r["valueQuantity"].(map[string]any)["value"].(float64)
		at, _ := time.Parse(time.RFC3339Nano, r["effectiveDateTime"].(string))
		inFHIR[key(vitals.Reading{Code: code, Value: &v, Time: at})] = true
	}
	for _, x := range gotDiscrete {
		if !inFHIR[key(x.r)] {
			t.Fatalf("live reading %s is not in the FHIR Bundle (%d entries)", key(x.r), len(inFHIR))
		}
	}
}

// startServerAt starts a server on a given address and data folder, so that a test can stop it and
// start it again where the agent expects it.
func startServerAt(t *testing.T, addr, dataDir string) *server.Server {
	t.Helper()
	cfg := config.DefaultServe()
	cfg.HTTPAddr, cfg.TURNAddr, cfg.DataDir = addr, "127.0.0.1:0", dataDir
	cfg.TURN = false
	srv, err := server.Start(context.Background(), cfg, server.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("start server at %s: %v", addr, err)
	}
	return srv
}

// TestAgentOfflineExactlyOnce is the fault test: the server stops while the agent measures, the
// readings go on into the on-disk queue, the agent is restarted too, the server comes back, and
// every reading taken is stored exactly once.
func TestAgentOfflineExactlyOnce(t *testing.T) {
	ctx := ctxTimeout(t, 3*time.Minute)
	dataDir := t.TempDir()
	srv := startServerAt(t, "127.0.0.1:0", dataDir)
	addr := srv.Addr().String()
	base := srv.BaseURL()
	m := &monitoringEnv{env: &env{srv: srv, svc: srv.Services()}}
	p, err := srv.Services().Accounts.AddProvider(ctx, "grace@clinic.example", "Dr Grace Hopper", testPassword)
	if err != nil {
		t.Fatal(err)
	}
	m.env.provider = p
	pt, err := m.svc.Monitoring.AddPatient(ctx, p, "test", "Ada Lovelace", "")
	if err != nil {
		t.Fatal(err)
	}
	enr, err := m.svc.Monitoring.CreateEnrollment(ctx, p, "test", pt.ID)
	if err != nil {
		t.Fatal(err)
	}
	if m.device, err = m.svc.Monitoring.EnrollDevice(ctx, enr.Code, "Home kit", netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	dir := enrolledDir(t, m, base)

	fast := func(seed uint64) []*tap {
		return []*tap{newTap(t, source.SimPulseOximeter, 50*time.Millisecond, seed), newTap(t, source.SimResp, 100*time.Millisecond, seed),
			newTap(t, source.SimECG, 0, seed)}
	}
	var taps []*tap
	sources := func(ts []*tap) []agent.Source {
		taps = append(taps, ts...)
		out := make([]agent.Source, len(ts))
		for i, x := range ts {
			out[i] = x
		}
		return out
	}
	opts := func(ts []*tap) agent.Options {
		return agent.Options{Dir: dir, Sources: sources(ts), NoLive: true, FlushInterval: 100 * time.Millisecond, RetryMax: 200 * time.Millisecond}
	}

	// 1. Online: batches go up.
	a1, stop1 := runAgent(t, opts(fast(1)))
	waitFor(t, ctx, "3 uploaded batches", func() bool { return a1.Status().Uploaded >= 3 })

	// 2. The server stops; the agent goes on measuring into its queue.
	if err := srv.Close(); err != nil {
		t.Fatalf("stop server: %v", err)
	}
	waitFor(t, ctx, "5 batches queued while the server is down", func() bool { s := a1.Status(); return s.Queued >= 5 && !s.Online })

	// 3. The agent is restarted while the server is still down, and measures on.
	if err := stop1(); err != nil {
		t.Fatalf("agent 1: %v", err)
	}
	if n, _ := agent.Waiting(dir); n < 5 {
		t.Fatalf("after the agent stopped, %d batches wait on disk, want at least 5", n)
	}
	a2, stop2 := runAgent(t, opts(fast(2)))
	waitFor(t, ctx, "the restarted agent to queue more", func() bool { n, _ := agent.Waiting(dir); return a2.Status().Taken > 20 && n >= 8 })

	// 4. The server comes back where it was; the queue empties.
	srv = startServerAt(t, addr, dataDir)
	defer srv.Close()
	waitFor(t, ctx, "the queue to empty", func() bool { s := a2.Status(); return s.Online && s.Queued == 0 })
	if err := stop2(); err != nil {
		t.Fatalf("agent 2: %v", err)
	}
	drain(t, dir)

	// Every reading taken is stored exactly once.
	taken := map[string]int{}
	wantSamples := 0
	for _, x := range taps {
		for _, r := range x.readings() {
			if r.Code == vitals.ECG {
				wantSamples += len(r.Samples)
				continue
			}
			taken[key(mustValid(t, r))]++
		}
	}
	storedObs, _, err := srv.Services().Monitoring.ExportObservations(ctx, p, "test", store.ObservationQuery{PatientID: pt.ID}, "test")
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]int{}
	gotSamples := 0
	var ecgTimes []time.Time
	for _, o := range storedObs {
		if o.Reading.Code == vitals.ECG {
			gotSamples += len(o.Reading.Samples)
			ecgTimes = append(ecgTimes, o.Reading.Time)
			continue
		}
		stored[key(o.Reading)]++
	}
	for k, n := range stored {
		if n != 1 {
			t.Errorf("reading %s stored %d times", k, n)
		}
		if taken[k] == 0 {
			t.Errorf("reading %s stored but never taken", k)
		}
	}
	for k := range taken {
		if stored[k] == 0 {
			t.Errorf("reading %s taken but not stored", k)
		}
	}
	if gotSamples != wantSamples {
		t.Errorf("ECG: %d samples stored, %d taken", gotSamples, wantSamples)
	}
	sort.Slice(ecgTimes, func(i, j int) bool { return ecgTimes[i].Before(ecgTimes[j]) })
	for i := 1; i < len(ecgTimes); i++ {
		if ecgTimes[i].Equal(ecgTimes[i-1]) {
			t.Errorf("ECG piece at %s stored twice", ecgTimes[i])
		}
	}
	t.Logf("%d discrete readings and %d ECG samples taken across two agent runs and a server restart; each stored once", len(taken), wantSamples)
}

func mustValid(t *testing.T, r vitals.Reading) vitals.Reading {
	t.Helper()
	v, err := vitals.Validate(r, time.Now())
	if err != nil {
		t.Fatalf("the simulator took an invalid reading: %v", err)
	}
	return v
}

// TestRevokedDeviceLeavesCall: revoking a device disconnects it from the call it is in, and its link
// no longer joins; a device's link joins only consultations of its own patient.
func TestRevokedDeviceLeavesCall(t *testing.T) {
	m := startMonitoring(t)
	ctx := ctxTimeout(t, 60*time.Second)
	c, err := m.svc.Consultations.CreateConsultation(ctx, m.env.provider, "test", consultations.NewConsultation{PatientID: m.patient.ID})
	if err != nil {
		t.Fatal(err)
	}
	prov := mustJoin(t, ctx, client.Config{Link: c.StartURL, API: loopbackAPI()})
	defer prov.Close()

	var link struct {
		Consultation *monitoring.DeviceConsultation
	}
	m.api.do("GET", "/api/v1/device", "", m.dev, &link)
	if link.Consultation == nil || link.Consultation.ID != c.ID {
		t.Fatalf("the device is not offered the consultation its provider is in: %+v", link.Consultation)
	}
	dev := mustJoin(t, ctx, client.Config{Link: link.Consultation.Link, Name: "Oximeter", API: loopbackAPI(), SendVitals: true})
	defer dev.Close()
	waitFor(t, ctx, "the device to connect to the provider", func() bool {
		for _, p := range prov.Peers() {
			if p.Role == "device" && p.PC.ConnectionState() == webrtc.PeerConnectionStateConnected {
				return true
			}
		}
		return false
	})

	// Another patient's consultation: the device's link is for its own patient's only, and its token
	// cannot be moved into another consultation's link.
	other, _ := m.svc.Monitoring.AddPatient(ctx, m.env.provider, "test", "Someone Else", "")
	oc, _ := m.svc.Consultations.CreateConsultation(ctx, m.env.provider, "test", consultations.NewConsultation{PatientID: other.ID})
	token := link.Consultation.Link[strings.Index(link.Consultation.Link, "#t=")+3:]
	forged := strings.Replace(oc.StartURL[:strings.Index(oc.StartURL, "#t=")+3]+token, c.ID, oc.ID, 1)
	if _, err := client.Join(ctx, client.Config{Link: forged, Name: "x", API: loopbackAPI(), NoReconnect: true}); err == nil {
		t.Fatal("a device link moved to another consultation joined it")
	}

	if resp := m.api.do("DELETE", "/api/v1/devices/"+m.device.Device.ID, "", m.provider, nil); resp.StatusCode != 200 {
		t.Fatalf("revoke: %d", resp.StatusCode)
	}
	for left := false; !left; {
		select {
		case e := <-prov.Events():
			left = e.Type == client.EventPeerLeft && e.Peer != nil && e.Peer.Role == "device"
		case <-ctx.Done():
			t.Fatal("the provider was never told the revoked device left")
		}
	}
	if _, err := client.Join(ctx, client.Config{Link: link.Consultation.Link, Name: "Oximeter", API: loopbackAPI(), NoReconnect: true}); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("a revoked device's link joined again: %v", err)
	}
}
