package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/telemed/telemed/client"
	"github.com/telemed/telemed/internal/agent"
	"github.com/telemed/telemed/internal/agent/agenttest"
	"github.com/telemed/telemed/internal/agent/deviceapi"
	"github.com/telemed/telemed/vitals"
)

// agentStatus counts the batches waiting in an agent's folder.
func agentStatus(dir string) (int, error) { return agent.Waiting(dir) }

// runSplit runs a command and returns its standard output and error apart.
func runSplit(t *testing.T, ctx context.Context, stdin string, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(ctx, args, strings.NewReader(stdin), &out, &errOut)
	return out.String(), errOut.String(), err
}

// TestDeviceCommands: a provider adds a patient and an enrollment code on the server's machine; the
// agent enrolls with the link, uploads its simulated readings, and streams them live into a
// consultation of the patient, until stopped.
func TestDeviceCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a server and a call")
	}
	data := t.TempDir()
	t.Setenv("TELEMED_DATA", data)
	if _, err := runCmd(t, "a long enough password\n", "provider", "add", "--email", "grace@clinic.example", "--name", "Dr Grace Hopper", "--password-stdin"); err != nil {
		t.Fatal(err)
	}
	patientID, _, err := runSplit(t, context.Background(), "", "patient", "add", "--provider", "grace@clinic.example", "--name", "Ada Lovelace", "--birth-date", "1950-12-10")
	patientID = strings.TrimSpace(patientID)
	if err != nil || !strings.HasPrefix(patientID, "p-") {
		t.Fatalf("patient add printed %q: %v", patientID, err)
	}
	for _, c := range []struct{ args, want string }{
		{"patient add --provider grace@clinic.example", "--name are required"},
		{"patient add --provider nobody@clinic.example --name X", "no provider"},
		{"patient add --provider grace@clinic.example --name X --birth-date 1950-13-01", "YYYY-MM-DD"},
		{"device enroll", "--patient is required"},
		{"device enroll --patient p-nope", "no patient"},
		{"device --sim glucometer", "choose from pulse-oximeter, bp-cuff, thermometer, ecg, resp"},
		{"device --sim ecg --sim ecg", "ecg is given twice"},
		{"device --enroll K7QF-M2XD", "needs the server's address"},
		{"device --dir " + t.TempDir(), "not enrolled"},
		{"device --bp-interval 0s", "must be positive"},
		{"device extra", `unexpected "extra"`},
	} {
		if _, err := runCmd(t, "", strings.Fields(c.args)...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("telemed %s: %v, want %q", c.args, err, c.want)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	served := make(chan error, 1)
	go func() {
		served <- run(ctx, []string{"serve", "--http", "127.0.0.1:0", "--turn-addr", "127.0.0.1:0"}, nil, &stdout, &stderr)
	}()
	var base string
	re := regexp.MustCompile(`telemed is running at (http://127\.0\.0\.1:\d+)`)
	for deadline := time.Now().Add(10 * time.Second); base == ""; time.Sleep(20 * time.Millisecond) {
		if m := re.FindStringSubmatch(stdout.String()); m != nil {
			base = m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve printed no URL:\n%s\n%s", stdout.String(), stderr.String())
		}
	}
	out, _, err := runSplit(t, ctx, "", "device", "enroll", "--patient", patientID, "--json")
	var enr struct{ Code, Link string }
	if err != nil || json.Unmarshal([]byte(out), &enr) != nil || enr.Link != base+"/enroll#code="+enr.Code {
		t.Fatalf("device enroll --json printed %q: %v", out, err)
	}
	token, _, err := runSplit(t, ctx, "", "token", "create", "--provider", "grace@clinic.example")
	if err != nil {
		t.Fatal(err)
	}
	api := func(method, path, body string, v any) int {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(token))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		json.NewDecoder(resp.Body).Decode(v)
		return resp.StatusCode
	}

	// The agent enrolls with the link and starts measuring.
	dir := t.TempDir() + "/device"
	devCtx, stopDevice := context.WithCancel(ctx)
	var devOut, devErr syncBuffer
	agentDone := make(chan error, 1)
	go func() {
		agentDone <- run(devCtx, []string{"device", "--enroll", enr.Link, "--dir", dir, "--sim", "pulse-oximeter", "--sim", "ecg"},
			strings.NewReader(""), &devOut, &devErr)
	}()
	var obs struct {
		Observations []json.RawMessage `json:"observations"`
	}
	for deadline := time.Now().Add(15 * time.Second); len(obs.Observations) < 2; time.Sleep(100 * time.Millisecond) {
		api("GET", "/api/v1/patients/"+patientID+"/observations?code="+vitals.OxygenSaturation, "", &obs)
		if time.Now().After(deadline) {
			t.Fatalf("no SpO2 stored; the agent said:\n%s\n%s", devOut.String(), devErr.String())
		}
	}
	if !strings.Contains(devOut.String(), "Enrolled as d_") || !strings.Contains(devOut.String(), `("Simulated pulse-oximeter, ecg")`) {
		t.Errorf("the agent did not say it enrolled:\n%s", devOut.String())
	}
	// The code worked once.
	if _, _, err := runSplit(t, ctx, "", "device", "--enroll", enr.Link, "--dir", t.TempDir()); err == nil || !strings.Contains(err.Error(), "ask the provider for a new one") {
		t.Errorf("a used code: %v", err)
	}

	// A consultation of the patient: the provider joins, the agent follows and streams.
	var c struct {
		StartURL string `json:"start_url"`
	}
	if st := api("POST", "/api/v1/consultations", `{"title":"Follow-up","patient_id":"`+patientID+`"}`, &c); st != http.StatusCreated {
		t.Fatalf("create consultation: %d", st)
	}
	var mu sync.Mutex
	live := map[string]int{}
	var from string
	prov, err := client.Join(ctx, client.Config{Link: c.StartURL, NoReconnect: true, OnReading: func(p *client.Peer, r vitals.Reading) {
		mu.Lock()
		live[r.Code]++
		from = p.Role
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer prov.Close()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		mu.Lock()
		done := live[vitals.OxygenSaturation] >= 2 && live[vitals.ECG] >= 50
		got := len(live)
		mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("live readings %v (%d codes); the agent said:\n%s\n%s", live, got, devOut.String(), devErr.String())
		}
	}
	mu.Lock()
	if from != "device" {
		t.Errorf("readings came from a %q", from)
	}
	mu.Unlock()
	if !strings.Contains(devErr.String(), "joined a consultation") {
		t.Errorf("the agent did not say it joined:\n%s", devErr.String())
	}

	stopDevice()
	select {
	case err := <-agentDone:
		if err != nil {
			t.Fatalf("device: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the agent did not stop")
	}
	if !strings.Contains(devOut.String(), "Stopped: ") {
		t.Errorf("the agent did not say it stopped:\n%s", devOut.String())
	}
	// Its queue holds what it took last: enrolling that folder again would send it as another device's.
	newCode := func() string {
		out, _, err := runSplit(t, ctx, "", "device", "enroll", "--patient", patientID, "--json")
		var e struct{ Link string }
		if err != nil || json.Unmarshal([]byte(out), &e) != nil {
			t.Fatalf("device enroll: %v %s", err, out)
		}
		return e.Link
	}
	if st, _ := agentStatus(dir); st > 0 {
		if _, _, err := runSplit(t, ctx, "", "device", "--enroll", newCode(), "--dir", dir); err == nil ||
			!strings.Contains(err.Error(), "not switched to another device") || !strings.Contains(err.Error(), "not uploaded yet") {
			t.Errorf("enrolling over a queue: %v", err)
		}
	}

	// A bridge pipes readings in; a bad line is reported and skipped; at the end of its input the
	// agent uploads and stops by itself.
	now := time.Now().UTC().Format(time.RFC3339Nano)
	lines := `{"code":"8867-4","value":72,"unit":"/min","time":"` + now + `"}` + "\n" +
		`{"code":"8867-4","value":72,"unit":"bpm","time":"` + now + `"}` + "\n" +
		`{"code":"8310-5","value":36.8,"unit":"Cel","time":"` + now + `"}` + "\n"
	stdinCtx, stdinCancel := context.WithTimeout(ctx, 20*time.Second)
	defer stdinCancel()
	out, errOut, err := runSplit(t, stdinCtx, lines, "device", "--enroll", newCode(), "--dir", t.TempDir(), "--stdin", "--no-live")
	if err != nil || stdinCtx.Err() != nil {
		t.Fatalf("device --stdin: %v (%v)\n%s\n%s", err, stdinCtx.Err(), out, errOut)
	}
	if !strings.Contains(errOut, `stdin line 2 skipped: 8867-4 heart rate: unit must be "/min" (UCUM), not "bpm"`) ||
		!strings.Contains(out, "Stopped: 2 readings taken, 2 stored by the server; 0 batches in the queue") ||
		!strings.Contains(out, `("Device bridge on `) {
		t.Errorf("device --stdin said:\n%s\n%s", out, errOut)
	}

	if testing.Verbose() {
		t.Logf("the agent said:\n%s\n%s", devOut.String(), devErr.String())
	}
	cancel()
	<-served
}

// TestEnrollAgain: --enroll given again (TELEMED_ENROLL left in a service's environment) with the
// enrollment the folder has is not redeemed again; another one does not switch the folder to another
// device; and a queue of readings not uploaded is never left to be sent as a new device's.
func TestEnrollAgain(t *testing.T) {
	srv := agenttest.NewEnrollServer(t, "K7QF-M2XD", "AAAA-BBBB", "CCCC-DDDD")
	other := agenttest.NewEnrollServer(t, "K7QF-M2XD")
	link := func(s *agenttest.EnrollServer, code string) string { return s.URL + "/enroll#code=" + code }
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "device")
	enroll := func(linkOrCode, server string) (string, error) {
		var out bytes.Buffer
		err := enrollDevice(ctx, linkOrCode, server, dir, "Oximeter", &out)
		return out.String(), err
	}
	if out, err := enroll(link(srv, "K7QF-M2XD"), ""); err != nil || !strings.Contains(out, "Enrolled as d_1K7QF") {
		t.Fatalf("enroll: %q %v", out, err)
	}
	first, _ := os.ReadFile(filepath.Join(dir, deviceapi.CredentialsFile))

	// The same enrollment again, as a link or as the code and the server: the device is enrolled.
	for _, c := range [][2]string{{link(srv, "K7QF-M2XD"), ""}, {"k7qf-m2xd", srv.URL}} {
		out, err := enroll(c[0], c[1])
		if err != nil || !strings.Contains(out, "Already enrolled as d_1K7QF") || !strings.Contains(out, "--enroll is not needed") {
			t.Errorf("enroll %s again: %q %v", c[0], out, err)
		}
	}
	// So is a service that keeps TELEMED_ENROLL in its environment, at every start.
	t.Setenv("TELEMED_ENROLL", link(srv, "K7QF-M2XD"))
	for range 2 {
		out, errOut, err := runSplit(t, ctx, "", "device", "--dir", dir, "--no-live")
		if err != nil || !strings.Contains(out, "Already enrolled as d_1K7QF") || !strings.Contains(out, "Device d_1K7QF") {
			t.Errorf("a restart with TELEMED_ENROLL: %v\n%s\n%s", err, out, errOut)
		}
	}
	os.Unsetenv("TELEMED_ENROLL")
	if n := srv.Attempts(); n != 1 {
		t.Errorf("the code was redeemed %d times", n)
	}

	// Another code, or another server: refused, and said so; the folder stays the device it was.
	for _, c := range []struct{ link, want string }{
		{link(srv, "AAAA-BBBB"), "with another enrollment code"},
		{link(other, "K7QF-M2XD"), "with another server, " + srv.URL + ", not " + other.URL},
	} {
		out, err := enroll(c.link, "")
		if err == nil || !strings.Contains(err.Error(), "is enrolled already, as device d_1K7QF") || !strings.Contains(err.Error(), c.want) ||
			!strings.Contains(err.Error(), "give it another --dir") || !strings.Contains(err.Error(), "remove "+filepath.Join(dir, deviceapi.CredentialsFile)) {
			t.Errorf("enroll %s: %q %v", c.link, out, err)
		}
	}
	if now, _ := os.ReadFile(filepath.Join(dir, deviceapi.CredentialsFile)); string(now) != string(first) || srv.Attempts() != 1 || other.Attempts() != 0 {
		t.Errorf("the credentials changed, or a code was redeemed:\n%s", now)
	}

	// With readings of the device waiting, the refusal says to move them aside.
	queue := filepath.Join(dir, "queue")
	os.MkdirAll(queue, 0o700)
	os.WriteFile(filepath.Join(queue, "000000000001_b_1.json"), []byte(`{"batch_id":"b_1","readings":[]}`), 0o600)
	if _, err := enroll(link(srv, "AAAA-BBBB"), ""); err == nil || !strings.Contains(err.Error(), "move "+queue+" aside (it holds 1 batch of this device's readings not uploaded yet)") {
		t.Errorf("enroll over a queue: %v", err)
	}
	// Its credentials removed (after a revocation, say), the folder's queue still holds readings of
	// the device before: they cannot be sent as its any more, and must not be as the new one's.
	os.Remove(filepath.Join(dir, deviceapi.CredentialsFile))
	_, err := enroll(link(srv, "AAAA-BBBB"), "")
	if err == nil || !strings.Contains(err.Error(), "holds 1 batch of readings of a device enrolled there before, not uploaded yet") ||
		!strings.Contains(err.Error(), "Move "+queue+" aside") || !strings.Contains(err.Error(), "another --dir") || strings.Contains(err.Error(), "until they are sent") {
		t.Errorf("enroll over an old device's queue: %v", err)
	}
	// Moved aside, the folder enrolls as the new device.
	os.Rename(queue, queue+".old")
	if out, err := enroll(link(srv, "AAAA-BBBB"), ""); err != nil || !strings.Contains(out, "Enrolled as d_") || strings.Contains(out, "d_1K7QF") {
		t.Errorf("enroll after moving the queue aside: %q %v", out, err)
	}

	// Credentials saved before they kept their code's digest, on the same server: the code given is
	// not redeemed (it may well be the one they came from), and that is said.
	c, _ := deviceapi.LoadCredentials(dir)
	c.CodeSHA256 = ""
	deviceapi.SaveCredentials(dir, c)
	before := srv.Attempts()
	if out, err := enroll(link(srv, "CCCC-DDDD"), ""); err != nil || !strings.Contains(out, "Already enrolled as "+c.DeviceID) || !strings.Contains(out, "is not used") {
		t.Errorf("enroll over credentials without a code: %q %v", out, err)
	}
	if srv.Attempts() != before {
		t.Error("a code was redeemed over credentials")
	}
}
