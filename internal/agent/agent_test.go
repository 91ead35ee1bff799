package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/telemed/telemed/vitals"
)

// fakeServer is a stand-in for telemed's device API, only to see how the agent copes with its
// answers (the real server's end-to-end tests are in e2e). observe decides each upload's answer.
type fakeServer struct {
	*httptest.Server
	mu      sync.Mutex
	bodies  []string       // every upload body, in order
	stored  map[string]int // batch id -> readings, as the server would dedup
	observe func(n int, body string) (status int, answer string)
	auth    []string
}

func newFakeServer(t *testing.T, observe func(n int, body string) (int, string)) *fakeServer {
	f := &fakeServer{stored: map[string]int{}, observe: observe}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/devices/enroll", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Code, Name string }
		json.NewDecoder(r.Body).Decode(&req)
		if req.Code != "K7QF-M2XD" {
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, `{"error":{"code":"bad_token","message":"the enrollment code is unknown, used or expired"}}`)
			return
		}
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"device":{"id":"d-1","patient_id":"p-1","name":%q},"token":"td_secret"}`, req.Name)
	})
	mux.HandleFunc("GET /api/v1/device", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"device":{"id":"d-1"},"consultation":null}`)
	})
	mux.HandleFunc("POST /api/v1/observations", func(w http.ResponseWriter, r *http.Request) {
		data, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.bodies = append(f.bodies, string(data))
		f.auth = append(f.auth, r.Header.Get("Authorization"))
		n := len(f.bodies)
		f.mu.Unlock()
		status, answer := http.StatusOK, ""
		if f.observe != nil {
			status, answer = f.observe(n, string(data))
		}
		if status == -1 { // the connection breaks
			hj, _ := w.(http.Hijacker)
			c, _, _ := hj.Hijack()
			c.Close()
			return
		}
		if status == http.StatusOK && answer == "" {
			var b batchBody
			json.Unmarshal(data, &b)
			f.mu.Lock()
			_, dup := f.stored[b.BatchID]
			f.stored[b.BatchID] = len(b.Readings)
			f.mu.Unlock()
			answer = fmt.Sprintf(`{"batch_id":%q,"accepted":%d,"duplicate":%v,"rejected":[],"alerts":[]}`, b.BatchID, len(b.Readings), dup)
		}
		if status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "1")
		}
		w.WriteHeader(status)
		io.WriteString(w, answer)
	})
	f.Server = httptest.NewServer(mux)
	t.Cleanup(f.Close)
	return f
}

func (f *fakeServer) readings() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, v := range f.stored {
		n += v
	}
	return n
}

// sliceSource gives its readings and ends.
type sliceSource []vitals.Reading

func (s sliceSource) Name() string { return "test" }
func (s sliceSource) Run(ctx context.Context, emit func(vitals.Reading)) error {
	for _, r := range s {
		emit(r)
	}
	return nil
}

func pulses(n int) sliceSource {
	var out sliceSource
	for i := range n {
		out = append(out, hr(60+float64(i%40), i))
	}
	return out
}

// enrolledDir is an agent folder enrolled with the fake server.
func enrolledDir(t *testing.T, server string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "device")
	c, err := Enroll(context.Background(), server, "K7QF-M2XD", "Test oximeter", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := SaveCredentials(dir, c); err != nil {
		t.Fatal(err)
	}
	return dir
}

// testLogger writes the agent's log into the test's.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func newTestAgent(t *testing.T, dir string, o Options) *Agent {
	t.Helper()
	o.Dir = dir
	o.NoLive = true
	o.RetryMax = 50 * time.Millisecond
	o.FlushInterval = 20 * time.Millisecond
	if o.Logger == nil {
		o.Logger = testLogger(t)
	}
	a, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func run(t *testing.T, a *Agent, timeout time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := a.Run(ctx)
	if ctx.Err() != nil {
		t.Fatalf("Run did not end by itself within %s: %v, status %+v", timeout, err, a.Status())
	}
	return err
}

func TestEnrollment(t *testing.T) {
	for _, c := range []struct{ in, server, wantServer, wantCode, err string }{
		{"http://host:8080/enroll#code=K7QF-M2XD", "", "http://host:8080", "K7QF-M2XD", ""},
		{"https://tele.example.org/clinic/enroll/#code=K7QF-M2XD", "", "https://tele.example.org/clinic", "K7QF-M2XD", ""},
		{" K7QF-M2XD ", "http://host:8080/", "http://host:8080", "K7QF-M2XD", ""},
		{"K7QF-M2XD", "", "", "", "needs the server's address"},
		{"K7QF-M2XD", "host:8080", "", "", "want http(s)://HOST"},
		{"http://host:8080/enroll", "", "", "", "has no code"},
		{"http://host:8080/c/x#code=K7QF", "", "", "", "has no code"},
		{"ftp://host/enroll#code=K7QF", "", "", "", "want http(s)://HOST/enroll"},
		{"http://host:8080/enroll#code=K7QF-M2XD", "http://other:8080", "", "", "leave out --server"},
		{"K7QF M2XD", "http://host", "", "", "like K7QF-M2XD"},
	} {
		server, code, err := ParseEnrollment(c.in, c.server)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseEnrollment(%q, %q) = %v, want %q", c.in, c.server, err, c.err)
			}
			continue
		}
		if err != nil || server != c.wantServer || code != c.wantCode {
			t.Errorf("ParseEnrollment(%q, %q) = %q %q %v", c.in, c.server, server, code, err)
		}
	}

	f := newFakeServer(t, nil)
	if _, err := Enroll(context.Background(), f.URL, "USED-CODE", "x", nil); err == nil || !strings.Contains(err.Error(), "ask the provider for a new one") {
		t.Errorf("a refused code: %v", err)
	}
	dir := enrolledDir(t, f.URL)
	c, err := LoadCredentials(dir)
	if err != nil || c.Token != "td_secret" || c.DeviceID != "d-1" || c.PatientID != "p-1" || c.Server != f.URL || c.Name != "Test oximeter" {
		t.Errorf("credentials %+v %v", c, err)
	}
	for path, mode := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, CredentialsFile): 0o600} {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v %v, want %v", path, fi.Mode(), err, mode)
		}
	}
	if _, err := New(Options{Dir: t.TempDir()}); !errors.Is(err, ErrNotEnrolled) {
		t.Errorf("New without credentials: %v", err)
	}
	// One agent per folder.
	a := newTestAgent(t, dir, Options{})
	if _, err := New(Options{Dir: dir}); err == nil || !strings.Contains(err.Error(), "another telemed device agent") {
		t.Errorf("a second agent on the folder: %v", err)
	}
	a.Close()
}

// TestUploadRetries: unreachable, failing or busy, the server gets every batch in the end, each
// stored once, the same bytes each time it is sent again.
func TestUploadRetries(t *testing.T) {
	f := newFakeServer(t, func(n int, body string) (int, string) {
		switch n {
		case 1:
			return -1, ""
		case 2:
			return http.StatusInternalServerError, `{"error":{"code":"internal","message":"oops"}}`
		case 3:
			return http.StatusBadGateway, `<html>proxy</html>`
		case 4:
			return http.StatusTooManyRequests, `{"error":{"code":"busy","message":"slow down"}}`
		case 5:
			return http.StatusOK, `<html>a captive portal</html>`
		}
		return http.StatusOK, ""
	})
	dir := enrolledDir(t, f.URL)
	var results []UploadResult
	a := newTestAgent(t, dir, Options{Sources: []Source{pulses(2500)}, OnUploaded: func(r UploadResult) { results = append(results, r) }})
	start := time.Now()
	if err := run(t, a, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) < time.Second {
		t.Error("Retry-After: 1 was not waited for")
	}
	if n := f.readings(); n != 2500 {
		t.Errorf("the server stored %d readings of 2500", n)
	}
	// The first batch was sent 6 times, byte for byte.
	for i := 1; i < 6; i++ {
		if f.bodies[i] != f.bodies[0] {
			t.Errorf("attempt %d sent other bytes", i+1)
		}
	}
	for _, h := range f.auth {
		if h != "Bearer td_secret" {
			t.Fatalf("Authorization: %q", h)
		}
	}
	st := a.Status()
	if st.Taken != 2500 || st.Accepted != 2500 || st.Queued != 0 || st.Uploaded != int64(len(f.stored)) || !st.Online || len(results) != len(f.stored) {
		t.Errorf("status %+v, %d results, %d batches stored", st, len(results), len(f.stored))
	}
	if len(f.stored) < 3 {
		t.Errorf("2500 readings went in %d batches; at most 1000 each", len(f.stored))
	}
}

// TestUploadRefused: a batch refused whole is removed, loudly, and does not hold up the others; a
// reading refused is counted.
func TestUploadRefused(t *testing.T) {
	f := newFakeServer(t, func(n int, body string) (int, string) {
		switch n {
		case 1:
			return http.StatusConflict, `{"error":{"code":"conflict","message":"batch id used before with other readings"}}`
		case 2:
			return http.StatusBadRequest, `{"error":{"code":"bad_json","message":"readings[0]: ..."}}`
		case 3:
			return http.StatusRequestEntityTooLarge, `{"error":{"code":"too_large","message":"over 8 MiB"}}`
		case 4:
			return http.StatusOK, `{"batch_id":"x","accepted":1,"duplicate":false,"rejected":[{"index":1,"code":"bad_unit","message":"unit"}],"alerts":[{}]}`
		}
		return http.StatusOK, ""
	})
	dir := enrolledDir(t, f.URL)
	var mu sync.Mutex
	var statuses []int
	var readings sliceSource
	for i := range 5 {
		readings = append(readings, hr(70, i), hr(71, i))
	}
	// One batch per pair: the source pauses between them.
	src := &pacedSource{r: readings, every: 2, pause: 100 * time.Millisecond}
	a := newTestAgent(t, dir, Options{Sources: []Source{src}, OnUploaded: func(r UploadResult) {
		mu.Lock()
		statuses = append(statuses, r.Status)
		mu.Unlock()
		if r.Status != http.StatusOK && r.Err == nil {
			t.Errorf("refused batch %s without a reason", r.BatchID)
		}
	}})
	if err := run(t, a, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	// How the pairs fall into batches depends on the clock; the first three are refused whatever.
	mu.Lock()
	defer mu.Unlock()
	if len(statuses) < 5 || fmt.Sprint(statuses[:3]) != "[409 400 413]" || strings.Count(fmt.Sprint(statuses[3:]), "200") != len(statuses)-3 {
		t.Errorf("answers %v", statuses)
	}
	if st := a.Status(); st.Dropped != 3 || st.Uploaded != int64(len(statuses)-3) || st.Rejected != 1 || st.Queued != 0 {
		t.Errorf("status %+v", st)
	}
}

// pacedSource gives its readings a few at a time with pauses, so that they fall in several batches.
type pacedSource struct {
	r     []vitals.Reading
	every int
	pause time.Duration
}

func (s *pacedSource) Name() string { return "paced" }
func (s *pacedSource) Run(ctx context.Context, emit func(vitals.Reading)) error {
	for i, r := range s.r {
		if i > 0 && i%s.every == 0 {
			time.Sleep(s.pause)
		}
		emit(r)
	}
	return nil
}

// TestRevoked: a 401 stops the agent with ErrRevoked; the readings stay in the queue.
func TestRevoked(t *testing.T) {
	f := newFakeServer(t, func(n int, body string) (int, string) {
		return http.StatusUnauthorized, `{"error":{"code":"unauthenticated","message":"unknown or revoked device token"}}`
	})
	dir := enrolledDir(t, f.URL)
	a := newTestAgent(t, dir, Options{Sources: []Source{pulses(10)}})
	if err := run(t, a, 10*time.Second); !errors.Is(err, ErrRevoked) || !strings.Contains(err.Error(), "--enroll") {
		t.Fatalf("Run = %v, want ErrRevoked saying what to do", err)
	}
	if st := a.Status(); st.Queued != 1 {
		t.Errorf("status %+v; the batch should stay queued", st)
	}

	// The live side notices too.
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusUnauthorized) })
	revoked := httptest.NewServer(mux)
	defer revoked.Close()
	therm, _ := NewSim(SimThermometer, SimOptions{})
	a2 := newTestAgent(t, enrolledDir(t, f.URL), Options{ServerURL: revoked.URL, Sources: []Source{therm}})
	a2.o.NoLive = false
	a2.o.PollInterval = 10 * time.Millisecond
	if err := run(t, a2, 10*time.Second); !errors.Is(err, ErrRevoked) {
		t.Fatalf("Run with live polling = %v, want ErrRevoked", err)
	}
}

// TestGracefulStop: with the server away, a stop keeps every reading taken in the queue, and the next
// run sends them.
func TestGracefulStop(t *testing.T) {
	f := newFakeServer(t, nil)
	dir := enrolledDir(t, f.URL)
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close() // nothing listens there any more
	sim, _ := NewSim(SimPulseOximeter, SimOptions{Interval: 5 * time.Millisecond})
	ecg, _ := NewSim(SimECG, SimOptions{})
	a := newTestAgent(t, dir, Options{ServerURL: down.URL, Sources: []Source{sim, ecg}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()
	time.Sleep(1500 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st := a.Status()
	a.Close()
	if st.Taken < 50 || st.Online || st.Uploaded != 0 {
		t.Fatalf("status %+v", st)
	}

	// The next run, with the server back and no sources, uploads them all and ends.
	a2 := newTestAgent(t, dir, Options{})
	if err := run(t, a2, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	var ecgSamples, discrete int
	f.mu.Lock()
	for _, body := range f.bodies {
		var b batchBody
		json.Unmarshal([]byte(body), &b)
		for _, r := range b.Readings {
			if r.Code == vitals.ECG {
				ecgSamples += len(r.Samples)
				if len(r.Samples) > 250 {
					t.Errorf("an ECG reading of %d samples: want about a second", len(r.Samples))
				}
			} else {
				discrete++
			}
		}
	}
	f.mu.Unlock()
	// Every reading taken is uploaded, the ECG joined into readings of about a second.
	if uploaded := a2.Status().Accepted; uploaded != st.Taken || ecgSamples < 250 || discrete < 50 {
		t.Errorf("uploaded %d readings (%d ECG samples, %d others); %d were taken", uploaded, ecgSamples, discrete, st.Taken)
	}
}

func TestJoiner(t *testing.T) {
	var out []vitals.Reading
	j := &joiner{cur: map[string]*joined{}, out: func(r vitals.Reading) { out = append(out, r) }}
	piece := func(i int) vitals.Reading {
		return vitals.Reading{Code: vitals.ECG, Unit: "mV", PeriodMS: 4, Time: t0.Add(time.Duration(i) * 20 * time.Millisecond),
			Samples: []float64{float64(i), 0, 0, 0, 0}}
	}
	for i := range 120 {
		j.add(piece(i))
	}
	if len(out) != 2 || len(out[0].Samples) != 250 || !out[1].Time.Equal(t0.Add(time.Second)) || out[1].Samples[5] != 51 {
		t.Fatalf("joined %d readings", len(out))
	}
	// A gap starts a new reading; a pause flushes.
	j.add(piece(200))
	j.flushStale()
	j.flushStale()
	if len(out) != 4 || len(out[2].Samples) != 100 || len(out[3].Samples) != 5 {
		t.Fatalf("after a gap and a pause: %d readings", len(out))
	}
	// Pieces of a second or more go as they are.
	long := piece(300)
	long.Samples = make([]float64, 400)
	j.add(long)
	if len(out) != 5 || len(out[4].Samples) != 400 {
		t.Fatalf("a long piece: %d readings", len(out))
	}
	// Live, a waveform goes in pieces of 20 ms.
	ps := splitWaveform(long, livePiece)
	if len(ps) != 80 || len(ps[1].Samples) != 5 || !ps[1].Time.Equal(long.Time.Add(20*time.Millisecond)) {
		t.Errorf("split into %d pieces", len(ps))
	}
}
