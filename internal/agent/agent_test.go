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
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/telemed/telemed/internal/agent/deviceapi"
	"github.com/telemed/telemed/internal/agent/queue"
	"github.com/telemed/telemed/internal/agent/source"
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
	// header sets headers of the n-th upload's answer. By default an answer that starts with "{" is
	// application/json, as telemed's are, and one that starts with "<" text/html.
	header func(n int, h http.Header)
}

func newFakeServer(t *testing.T, observe func(n int, body string) (int, string)) *fakeServer {
	f := &fakeServer{stored: map[string]int{}, observe: observe}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/devices/enroll", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Code, Name string }
		json.NewDecoder(r.Body).Decode(&req)
		if req.Code != "K7QF-M2XD" {
			w.Header().Set("Content-Type", "application/json")
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
		switch {
		case strings.HasPrefix(answer, "{"):
			w.Header().Set("Content-Type", "application/json")
		case strings.HasPrefix(answer, "<"):
			w.Header().Set("Content-Type", "text/html")
		}
		if f.header != nil {
			f.header(n, w.Header())
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
	c, err := deviceapi.Enroll(context.Background(), server, "K7QF-M2XD", "Test oximeter", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := deviceapi.SaveCredentials(dir, c); err != nil {
		t.Fatal(err)
	}
	return dir
}

// testLogger writes the agent's log into the test's.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t: t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// capturingLogger writes the agent's log into the test's, and keeps it for the test to read.
func capturingLogger(t *testing.T) (*slog.Logger, func() string) {
	w := testWriter{t: t, keep: &logBuffer{}}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})), w.keep.String
}

type testWriter struct {
	t    *testing.T
	keep *logBuffer
}

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	if w.keep != nil {
		w.keep.mu.Lock()
		w.keep.b.Write(b)
		w.keep.mu.Unlock()
	}
	return len(b), nil
}

type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
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
		server, code, err := deviceapi.ParseEnrollment(c.in, c.server)
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
	if _, err := deviceapi.Enroll(context.Background(), f.URL, "USED-CODE", "x", nil); err == nil || !strings.Contains(err.Error(), "ask the provider for a new one") {
		t.Errorf("a refused code: %v", err)
	}
	dir := enrolledDir(t, f.URL)
	c, err := deviceapi.LoadCredentials(dir)
	if err != nil || c.Token != "td_secret" || c.DeviceID != "d-1" || c.PatientID != "p-1" || c.Server != f.URL || c.Name != "Test oximeter" {
		t.Errorf("credentials %+v %v", c, err)
	}
	for path, mode := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, deviceapi.CredentialsFile): 0o600} {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v %v, want %v", path, fi.Mode(), err, mode)
		}
	}
	if _, err := New(Options{Dir: t.TempDir()}); !errors.Is(err, deviceapi.ErrNotEnrolled) {
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

// TestUploadRefused: a batch telemed refuses whole is moved aside into DIR/rejected, loudly, and does
// not hold up the others; a reading refused is counted.
func TestUploadRefused(t *testing.T) {
	refusals := map[int]string{
		1: `{"error":{"code":"conflict","message":"batch id used before with other readings"}}`,
		2: `{"error":{"code":"bad_json","message":"readings[0]: unknown field \"extra\""}}`,
		3: `{"error":{"code":"too_large","message":"over 8 MiB"}}`,
	}
	statusOf := map[int]int{1: http.StatusConflict, 2: http.StatusBadRequest, 3: http.StatusRequestEntityTooLarge}
	f := newFakeServer(t, func(n int, body string) (int, string) {
		if r, ok := refusals[n]; ok {
			return statusOf[n], r
		}
		if n == 4 {
			return http.StatusOK, `{"batch_id":"x","accepted":1,"duplicate":false,"rejected":[{"index":1,"code":"bad_unit","message":"unit"}],"alerts":[{}]}`
		}
		return http.StatusOK, ""
	})
	dir := enrolledDir(t, f.URL)
	var mu sync.Mutex
	var results []UploadResult
	var readings sliceSource
	for i := range 5 {
		readings = append(readings, hr(70, i), hr(71, i))
	}
	// One batch per pair: the source pauses between them.
	src := &pacedSource{r: readings, every: 2, pause: 100 * time.Millisecond}
	log, logged := capturingLogger(t)
	a := newTestAgent(t, dir, Options{Sources: []Source{src}, Logger: log, OnUploaded: func(r UploadResult) {
		mu.Lock()
		results = append(results, r)
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
	var statuses []int
	for _, r := range results {
		statuses = append(statuses, r.Status)
	}
	if len(statuses) < 5 || fmt.Sprint(statuses[:3]) != "[409 400 413]" || strings.Count(fmt.Sprint(statuses[3:]), "200") != len(statuses)-3 {
		t.Errorf("answers %v", statuses)
	}
	if st := a.Status(); st.Dropped != 3 || st.Uploaded != int64(len(statuses)-3) || st.Rejected != 1 || st.Queued != 0 {
		t.Errorf("status %+v", st)
	}
	// The refused batches are kept, as they were sent, in DIR/rejected; the log says why and where.
	f.mu.Lock()
	bodies := slices.Clone(f.bodies)
	f.mu.Unlock()
	for i, r := range results[:3] {
		want := filepath.Join(dir, RejectedDir, filepath.Base(r.SetAside))
		data, err := os.ReadFile(want)
		if r.SetAside != want || err != nil || string(data) != bodies[i] {
			t.Errorf("refused batch %s set aside at %q (%v), want %s with what was sent", r.BatchID, r.SetAside, err, want)
		}
		var b batchBody
		if json.Unmarshal(data, &b); b.BatchID != r.BatchID || !strings.Contains(r.SetAside, r.BatchID) {
			t.Errorf("%s holds batch %q, want %s", r.SetAside, b.BatchID, r.BatchID)
		}
		line := logLine(logged(), r.BatchID, "refused")
		if !strings.Contains(line, "level=ERROR") || !strings.Contains(line, r.SetAside) || !strings.Contains(line, strings.Split(refusals[i+1], `"message":"`)[1][:10]) {
			t.Errorf("the log of refused batch %s: %q", r.BatchID, line)
		}
	}
	if n, _ := Waiting(dir); n != 0 {
		t.Errorf("%d batches waiting", n)
	}
}

// logLine returns the first line of the log that has every one of words.
func logLine(log string, words ...string) string {
	for _, l := range strings.Split(log, "\n") {
		if !slices.ContainsFunc(words, func(w string) bool { return !strings.Contains(l, w) }) {
			return l
		}
	}
	return ""
}

// TestUploadNotTelemed: an error answer that is not telemed's (a proxy's page, another program's
// JSON) refuses nothing for good: the batch is sent again until telemed answers, and the log says,
// once, what to check.
func TestUploadNotTelemed(t *testing.T) {
	const nginx413 = "<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n<center><h1>413 Request Entity Too Large</h1></center>\r\n<hr><center>nginx/1.25.3</center>\r\n</body>\r\n</html>\r\n"
	answers := []struct {
		status int
		body   string
	}{
		{http.StatusRequestEntityTooLarge, nginx413},
		{http.StatusRequestEntityTooLarge, nginx413},
		{http.StatusRequestEntityTooLarge, nginx413},
		{http.StatusBadRequest, "Bad Request"},                               // text/plain
		{http.StatusConflict, "<html>conflict</html>"},                       // text/html
		{http.StatusBadRequest, `{"message":"bad request"}`},                 // JSON, not telemed's
		{http.StatusRequestEntityTooLarge, `{"error":"too large"}`},          // JSON, not telemed's
		{http.StatusUnauthorized, "<html>401 Authorization Required</html>"}, // a proxy's own sign-in
		{http.StatusNotFound, `{"error":{"code":"not_found","message":"no such API endpoint"}}`},
		{http.StatusBadGateway, "<html>502 Bad Gateway</html>"},
	}
	f := newFakeServer(t, func(n int, body string) (int, string) {
		if n <= len(answers) {
			return answers[n-1].status, answers[n-1].body
		}
		return http.StatusOK, ""
	})
	f.header = func(n int, h http.Header) {
		if n <= 3 {
			h.Set("Server", "nginx/1.25.3")
		}
		if n == 6 || n == 7 {
			h.Set("Content-Type", "application/json; charset=utf-8")
		}
	}
	dir := enrolledDir(t, f.URL)
	log, logged := capturingLogger(t)
	a := newTestAgent(t, dir, Options{Sources: []Source{pulses(20)}, Logger: log})
	if err := run(t, a, 30*time.Second); err != nil {
		t.Fatalf("Run = %v; a proxy's answers must not stop the agent", err)
	}
	if n := f.readings(); n != 20 {
		t.Errorf("the server stored %d readings of 20", n)
	}
	if st := a.Status(); st.Dropped != 0 || st.Accepted != 20 || st.Queued != 0 || !st.Online {
		t.Errorf("status %+v", st)
	}
	if _, err := os.Stat(filepath.Join(dir, RejectedDir)); !os.IsNotExist(err) {
		t.Errorf("something was set aside: %v", err)
	}
	f.mu.Lock()
	size := len(f.bodies[0])
	f.mu.Unlock()
	out := logged()
	// Each trouble is logged once, however many times it comes in a row, saying what to check.
	for _, want := range []string{
		fmt.Sprintf("a proxy in front of the server refuses bodies of %d bytes (413, text/html, from nginx/1.25.3): raise its limit (nginx: client_max_body_size", size),
		"something in front of the server asks for credentials (401",
		"the server answered 404 not_found (no such API endpoint), which the agent does not expect: check that it is a telemed server with remote monitoring",
		"a proxy in front of the server cannot reach it (502",
		"is not telemed (400 Bad Request, text/plain",
	} {
		if n := strings.Count(out, want); n != 1 {
			t.Errorf("logged %d times, want once: %q", n, want)
		}
	}
	if strings.Contains(out, "level=ERROR") {
		t.Errorf("an error was logged:\n%s", out)
	}
	if !strings.Contains(out, "the server answers again") {
		t.Errorf("the end of the trouble was not logged")
	}
}

// TestEnrollErrors: what an enrollment's refusal says depends on who refused, and why.
func TestEnrollErrors(t *testing.T) {
	for _, c := range []struct {
		status      int
		ct, body    string
		want, wrong string
	}{
		{http.StatusForbidden, "application/json", `{"error":{"code":"bad_token","message":"this enrollment code is unknown, has been used, or has expired"}}`,
			"the server refused the code K7QF-M2XD: it is unknown, used or expired; ask the provider for a new one", ""},
		{http.StatusForbidden, "application/json", `{"error":{"code":"bad_origin","message":"this request must come from telemed's own pages, as JSON"}}`,
			"a proxy in front of the server must be adding one", "unknown, used or expired"},
		{http.StatusForbidden, "text/html", `<html><body><h1>403 Forbidden</h1></body></html>`,
			"Something in front of the server (a proxy, a firewall) refused the request before telemed saw it", "unknown, used or expired"},
		{http.StatusTooManyRequests, "application/json", `{"error":{"code":"busy","message":"too many failed enrollment attempts on this server; try again in a minute"}}`,
			"too many enrollment attempts on the server; try again in a minute", ""},
		{http.StatusNotFound, "text/plain", "404 page not found",
			"is this the address of a telemed server", ""},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", c.ct)
			w.WriteHeader(c.status)
			io.WriteString(w, c.body)
		}))
		_, err := deviceapi.Enroll(context.Background(), srv.URL, "K7QF-M2XD", "x", nil)
		srv.Close()
		if err == nil || !strings.Contains(err.Error(), c.want) || (c.wrong != "" && strings.Contains(err.Error(), c.wrong)) {
			t.Errorf("%d %s %s: %v\nwant %q", c.status, c.ct, c.body, err, c.want)
		}
	}
}

// TestEnrolledWith: the credentials know the code they came from, as the server compares codes.
func TestEnrolledWith(t *testing.T) {
	f := newFakeServer(t, nil)
	c, err := deviceapi.LoadCredentials(enrolledDir(t, f.URL))
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct {
		server, code string
		same, known  bool
	}{
		{f.URL, "K7QF-M2XD", true, true},
		{f.URL, "k7qf m2xd", true, true},
		{f.URL, "K7QF-M2XE", false, true},
		{"http://elsewhere:8080", "K7QF-M2XD", false, true},
	} {
		if same, known := c.EnrolledWith(x.server, x.code); same != x.same || known != x.known {
			t.Errorf("EnrolledWith(%s, %s) = %v %v", x.server, x.code, same, known)
		}
	}
	c.CodeSHA256 = ""
	if same, known := c.EnrolledWith(f.URL, "K7QF-M2XD"); same || known {
		t.Errorf("credentials without a code's digest: %v %v", same, known)
	}
	if data, _ := json.Marshal(c); strings.Contains(string(data), "K7QF") {
		t.Errorf("the code is kept as it is: %s", data)
	}
}

// TestAgentListsQueueOnce: a running agent lists its queue's folder when it starts, not as it seals
// and sends batches (after a day offline, it holds 86,400 of them).
func TestAgentListsQueueOnce(t *testing.T) {
	f := newFakeServer(t, func(n int, body string) (int, string) {
		if n <= 5 {
			return http.StatusServiceUnavailable, `{"error":{"code":"unavailable","message":"starting"}}`
		}
		return http.StatusOK, ""
	})
	dir := enrolledDir(t, f.URL)
	lists := countListings(t)
	src := &pacedSource{r: pulses(40), every: 2, pause: 30 * time.Millisecond}
	a := newTestAgent(t, dir, Options{Sources: []Source{src}})
	if err := run(t, a, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	a.Status()
	if st := a.Status(); st.Accepted != 40 || st.Uploaded < 5 {
		t.Errorf("status %+v", st)
	}
	if n := lists(); n != 1 {
		t.Errorf("the queue's folder was listed %d times, want once", n)
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
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"error":{"code":"unauthenticated","message":"the device token is unknown or has been revoked"}}`)
	})
	revoked := httptest.NewServer(mux)
	defer revoked.Close()
	therm, _ := source.NewSim(source.SimThermometer, source.SimOptions{})
	a2 := newTestAgent(t, enrolledDir(t, f.URL), Options{ServerURL: revoked.URL, Sources: []Source{therm}})
	a2.o.NoLive = false
	a2.o.PollInterval = 10 * time.Millisecond
	if err := run(t, a2, 10*time.Second); !errors.Is(err, ErrRevoked) {
		t.Fatalf("Run with live polling = %v, want ErrRevoked", err)
	}

	// A 401 that is not telemed's (a proxy's sign-in page) says nothing of the device: uploads, and
	// asking for a consultation, go on.
	proxy := http.NewServeMux()
	proxy.HandleFunc("GET /api/v1/device", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("WWW-Authenticate", `Basic realm="clinic"`)
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, "<html>401 Authorization Required</html>")
	})
	ok := newFakeServer(t, nil)
	proxy.Handle("/", ok.Config.Handler)
	ps := httptest.NewServer(proxy)
	defer ps.Close()
	a3 := newTestAgent(t, enrolledDir(t, ok.URL), Options{ServerURL: ps.URL, Sources: []Source{&pacedSource{r: pulses(10), every: 2, pause: 30 * time.Millisecond}}})
	a3.o.NoLive = false
	a3.o.PollInterval = 10 * time.Millisecond
	if err := run(t, a3, 10*time.Second); err != nil {
		t.Fatalf("Run behind a proxy that asks for credentials = %v, want nil", err)
	}
}

// TestGracefulStop: with the server away, a stop keeps every reading taken in the queue, and the next
// run sends them.
func TestGracefulStop(t *testing.T) {
	f := newFakeServer(t, nil)
	dir := enrolledDir(t, f.URL)
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close() // nothing listens there any more
	sim, _ := source.NewSim(source.SimPulseOximeter, source.SimOptions{Interval: 5 * time.Millisecond})
	ecg, _ := source.NewSim(source.SimECG, source.SimOptions{})
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

// TestDamagedBatch: a batch file that cannot be read is moved to DIR/rejected, and the queue goes on.
func TestDamagedBatch(t *testing.T) {
	f := newFakeServer(t, nil)
	dir := enrolledDir(t, f.URL)
	queue := filepath.Join(dir, "queue")
	os.MkdirAll(queue, 0o700)
	const name = "000000000001_b_damaged.json"
	os.WriteFile(filepath.Join(queue, name), []byte(`{"batch_id":"b_damaged","readings":[{"code":`), 0o600)
	var results []UploadResult
	a := newTestAgent(t, dir, Options{Sources: []Source{pulses(5)}, OnUploaded: func(r UploadResult) { results = append(results, r) }})
	if err := run(t, a, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if st := a.Status(); st.Dropped != 1 || st.Accepted != 5 || st.Queued != 0 {
		t.Errorf("status %+v", st)
	}
	if len(results) < 2 || results[0].SetAside != filepath.Join(dir, RejectedDir, name) || results[0].Err == nil {
		t.Fatalf("results %+v", results)
	}
	if _, err := os.Stat(results[0].SetAside); err != nil {
		t.Error(err)
	}
}

// batchBody is an upload body as the server receives it.
type batchBody struct {
	BatchID  string           `json:"batch_id"`
	Readings []vitals.Reading `json:"readings"`
}

var t0 = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

func hr(v float64, i int) vitals.Reading {
	return vitals.Reading{Code: vitals.HeartRate, Value: vitals.Float(v), Unit: "/min", Time: t0.Add(time.Duration(i) * time.Second)}
}

// countListings counts the listings of a queue's folder until the test ends.
func countListings(t *testing.T) func() int {
	var mu sync.Mutex
	n := 0
	queue.ListDir = func(dir string) ([]os.DirEntry, error) {
		mu.Lock()
		n++
		mu.Unlock()
		return os.ReadDir(dir)
	}
	t.Cleanup(func() { queue.ListDir = os.ReadDir })
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return n
	}
}
