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
)

// syncBuffer is a bytes.Buffer safe to write from the serving goroutine and read from the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func runCmd(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	return out.String() + errOut.String(), err
}

func TestCommands(t *testing.T) {
	data := t.TempDir()
	const pw = "a long enough password\n"

	out, err := runCmd(t, pw, "provider", "add", "--data", data, "--email", "grace@clinic.example", "--name", "Dr Grace Hopper", "--password-stdin")
	if err != nil || !strings.Contains(out, "Dr Grace Hopper") {
		t.Fatalf("provider add: %v\n%s", err, out)
	}
	if _, err := runCmd(t, pw, "provider", "add", "--data", data, "--email", "grace@clinic.example", "--name", "Again", "--password-stdin"); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("duplicate provider: %v", err)
	}
	if _, err := runCmd(t, "short\n", "provider", "add", "--data", data, "--email", "x@clinic.example", "--name", "X", "--password-stdin"); err == nil || !strings.Contains(err.Error(), "at least 12") {
		t.Fatalf("short password: %v", err)
	}
	if _, err := runCmd(t, "", "provider", "add", "--data", data, "--email", "x@clinic.example", "--name", "X"); err == nil || !strings.Contains(err.Error(), "--password-stdin") {
		t.Fatalf("without --password-stdin: %v", err)
	}

	// The environment sets flags too.
	t.Setenv("TELEMED_DATA", data)
	out, err = runCmd(t, "", "consult", "new", "--provider", "grace@clinic.example", "--base-url", "https://tele.example.org", "--json")
	if err != nil {
		t.Fatalf("consult new: %v\n%s", err, out)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("consult new --json printed %q: %v", out, err)
	}
	id, _ := v["id"].(string)
	if id == "" || !strings.HasPrefix(v["start_url"].(string), "https://tele.example.org/c/"+id+"#t=") || !strings.HasPrefix(v["join_url"].(string), "https://tele.example.org/c/"+id+"#t=") {
		t.Fatalf("consult new --json = %v", v)
	}
	if _, err := time.Parse(time.RFC3339, v["expires_at"].(string)); err != nil {
		t.Fatalf("expires_at: %v", err)
	}
	if _, err := runCmd(t, "", "consult", "new", "--provider", "nobody@clinic.example"); err == nil || !strings.Contains(err.Error(), "no provider") {
		t.Fatalf("unknown provider: %v", err)
	}

	out, err = runCmd(t, "", "consult", "invite", "--consultation", id, "--role", "guest", "--name", " Marta (interpreter) ", "--base-url", "https://tele.example.org", "--json")
	if err != nil {
		t.Fatalf("consult invite: %v\n%s", err, out)
	}
	var inv map[string]any
	if err := json.Unmarshal([]byte(out), &inv); err != nil {
		t.Fatalf("consult invite --json printed %q: %v", out, err)
	}
	invID, _ := inv["id"].(string)
	joinURL, _ := inv["join_url"].(string)
	if !strings.HasPrefix(invID, "i_") || inv["role"] != "guest" || inv["name"] != "Marta (interpreter)" || inv["expires_at"] != v["expires_at"] ||
		!strings.HasPrefix(joinURL, "https://tele.example.org/c/"+id+"#t="+id+".guest.") || !strings.Contains(joinURL, "."+invID+".") {
		t.Fatalf("consult invite --json = %v; want the guest's link naming the invitation, expiring with the consultation", inv)
	}
	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"--consultation", id, "--role", "patient", "--name", "X"}, `role must be "guest"`},
		{[]string{"--consultation", id, "--role", "clinician", "--name", strings.Repeat("n", 81)}, "at most 80 characters"},
		{[]string{"--consultation", "c_none", "--role", "guest", "--name", "X"}, "no consultation"},
		{[]string{"--consultation", id, "--role", "guest"}, "--name are required"},
	} {
		if _, err := runCmd(t, "", append([]string{"consult", "invite"}, bad.args...)...); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("consult invite %v: %v, want an error saying %q", bad.args, err, bad.want)
		}
	}
	token, err := runCmd(t, "", "token", "create", "--provider", "grace@clinic.example")
	token = strings.TrimSpace(token)
	if err != nil || !strings.HasPrefix(token, "tm_") {
		t.Fatalf("token create: %q %v", token, err)
	}

	// serve on the same data folder accepts that token and prints where it runs.
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--http", "127.0.0.1:0", "--turn-addr", "127.0.0.1:0"}, nil, &stdout, &stderr)
	}()
	var base string
	re := regexp.MustCompile(`telemed is running at (http://127\.0\.0\.1:\d+)`)
	for deadline := time.Now().Add(10 * time.Second); base == ""; {
		if m := re.FindStringSubmatch(stdout.String()); m != nil {
			base = m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve printed no URL:\n%s\n%s", stdout.String(), stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(stdout.String(), base+"/login") {
		t.Errorf("serve should point a set-up server at the sign-in page:\n%s", stdout.String())
	}
	if !regexp.MustCompile(`STUN/TURN on port \d+ \(UDP and TCP\), relaying on UDP 49152-65535`).MatchString(stdout.String()) {
		t.Errorf("serve should say which ports STUN/TURN needs open:\n%s", stdout.String())
	}
	req, _ := http.NewRequest("POST", base+"/api/v1/consultations", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST with the CLI's token: %v %v", resp, err)
	}
	var created map[string]any
	json.NewDecoder(resp.Body).Decode(&created)
	resp.Body.Close()
	for k := range v {
		if _, ok := created[k]; !ok {
			t.Errorf("API answer lacks %q, which consult new --json has", k)
		}
	}
	// consult new without --base-url uses the URL the server runs at.
	out, _ = runCmd(t, "", "consult", "new", "--provider", "grace@clinic.example", "--json")
	if !strings.Contains(out, `"join_url": "`+base+"/c/") {
		t.Errorf("consult new while serving should use the server's URL %s:\n%s", base, out)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop on cancel")
	}
}

func TestServeFirstRunPrintsSetupLink(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--http", "127.0.0.1:0", "--turn-addr", "127.0.0.1:0", "--data", t.TempDir()}, nil, &stdout, &stderr)
	}()
	re := regexp.MustCompile(`open (http://127\.0\.0\.1:\d+/setup#t=[0-9a-f]{32})`)
	for deadline := time.Now().Add(10 * time.Second); !re.MatchString(stdout.String()); {
		if time.Now().After(deadline) {
			t.Fatalf("no setup link printed:\n%s\n%s", stdout.String(), stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
}

func TestBadInvocations(t *testing.T) {
	for _, args := range [][]string{{}, {"fly"}, {"provider", "remove"}, {"serve", "--http", "nonsense"}, {"serve", "--log-level", "loud"}} {
		if _, err := runCmd(t, "", args...); err == nil {
			t.Errorf("telemed %v: no error", args)
		}
	}
}

// TestAdminCommandNarrowsDataDir: a one-off command given a 0755 data folder holding a 0644
// database leaves them 0700 and 0600, as serve does.
func TestAdminCommandNarrowsDataDir(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	const pw = "a long enough password\n"
	if out, err := runCmd(t, pw, "provider", "add", "--data", data, "--email", "grace@clinic.example", "--name", "Dr Grace Hopper", "--password-stdin"); err != nil {
		t.Fatalf("provider add: %v\n%s", err, out)
	}
	db := filepath.Join(data, "telemed.db")
	for p, mode := range map[string]os.FileMode{data: 0o755, db: 0o644} {
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := runCmd(t, pw, "provider", "add", "--data", data, "--email", "ada@clinic.example", "--name", "Dr Ada", "--password-stdin"); err != nil {
		t.Fatalf("provider add: %v\n%s", err, out)
	}
	for p, want := range map[string]os.FileMode{data: 0o700, db: 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %04o, want %04o", p, fi.Mode().Perm(), want)
		}
	}
}
