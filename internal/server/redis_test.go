package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/telemed/telemed/internal/cluster/clustertest"
	"github.com/telemed/telemed/internal/config"
	"github.com/telemed/telemed/internal/server"
)

// startNode starts a telemed on loopback, without TURN, with --redis redisURL, its keys under
// prefix and its data in dataDir; closed when the test ends.
func startNode(t *testing.T, redisURL, prefix, dataDir string) *server.Server {
	t.Helper()
	cfg := config.DefaultServe()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.DataDir = dataDir
	cfg.TURN = false
	cfg.Redis = redisURL
	cfg.RedisPrefix = prefix
	srv, err := server.Start(context.Background(), cfg, server.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		start := time.Now()
		if err := srv.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		t.Logf("closed in %s", time.Since(start).Round(time.Millisecond))
	})
	return srv
}

// testLogger writes the server's log into the test's, warnings and above.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func readyz(t *testing.T, srv *server.Server) (int, map[string]string) {
	t.Helper()
	resp, err := http.Get(srv.BaseURL() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var v map[string]string
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("readyz body %q: %v", body, err)
	}
	return resp.StatusCode, v
}

// TestReadyzFollowsRedis: GET /readyz answers 503 "redis does not answer" while Redis is stopped,
// and 200 again once it is back, with no restart of telemed.
func TestReadyzFollowsRedis(t *testing.T) {
	redis := clustertest.StartServer(t)
	srv := startNode(t, redis.URL(), "", t.TempDir())
	if code, v := readyz(t, srv); code != http.StatusOK || v["status"] != "ready" {
		t.Fatalf("with Redis: %d %v", code, v)
	}
	redis.Stop()
	if code, v := readyz(t, srv); code != http.StatusServiceUnavailable || v["status"] != "unavailable" || v["reason"] != "redis does not answer" {
		t.Fatalf("with Redis stopped: %d %v", code, v)
	}
	redis.Start()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, v := readyz(t, srv)
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("10s after Redis came back: %d %v", code, v)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The checks are measured on the node's registry.
	families, err := srv.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range families {
		seen[f.GetName()] = true
	}
	for _, name := range []string{"telemed_redis_command_duration_seconds", "telemed_store_ping_duration_seconds", "telemed_cluster_events_total"} {
		if !seen[name] {
			t.Errorf("GET /metrics has no %s", name)
		}
	}
}

// TestStartWithoutRedis: a Redis that does not answer stops the start, in words that name it.
func TestStartWithoutRedis(t *testing.T) {
	redis := clustertest.StartServer(t)
	redis.Stop()
	cfg := config.DefaultServe()
	cfg.HTTPAddr, cfg.DataDir, cfg.TURN, cfg.Redis = "127.0.0.1:0", t.TempDir(), false, redis.URL()
	_, err := server.Start(context.Background(), cfg, server.Options{Logger: testLogger(t)})
	if err == nil || !strings.Contains(err.Error(), "--redis: redis at 127.0.0.1:") || !strings.Contains(err.Error(), "does not answer") {
		t.Fatalf("start with Redis stopped: %v", err)
	}
}

// TestPatientPageSeesAnotherNodesUpload: a device uploads to one node, and the patient's page open
// on another node (its event stream, GET /api/v1/patients/{id}/events) shows the alert live. The two
// nodes share one data folder here, standing for the database that real nodes share.
func TestPatientPageSeesAnotherNodesUpload(t *testing.T) {
	url := clustertest.URL(t)
	prefix := clustertest.Prefix(t, url)
	dir := t.TempDir()
	a, b := startNode(t, url, prefix, dir), startNode(t, url, prefix, dir)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	mon := a.Services().Monitoring
	p, err := a.Services().Accounts.AddProvider(ctx, "grace@clinic.example", "Dr Grace Hopper", "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	token, err := a.Services().Accounts.CreateAPIToken(ctx, p.ID, "test")
	if err != nil {
		t.Fatal(err)
	}
	pt, err := mon.AddPatient(ctx, p, "test", "Ada", "")
	if err != nil {
		t.Fatal(err)
	}
	e, err := mon.CreateEnrollment(ctx, p, "test", pt.ID)
	if err != nil {
		t.Fatal(err)
	}
	device, err := mon.EnrollDevice(ctx, e.Code, "oximeter", netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}

	events := eventStream(ctx, t, b.BaseURL()+"/api/v1/patients/"+pt.ID+"/events", token)
	reading := fmt.Sprintf(`{"code":"2708-6","value":85,"unit":"%%","time":%q}`, time.Now().Add(-time.Minute).UTC().Format(time.RFC3339Nano))
	req, _ := http.NewRequestWithContext(ctx, "POST", a.BaseURL()+"/api/v1/observations", strings.NewReader(`{"batch_id":"b-1","readings":[`+reading+`]}`))
	req.Header.Set("Authorization", "Bearer "+device.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("upload to node A: %d", resp.StatusCode)
	}
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("node B's event stream ended")
			}
			if strings.HasPrefix(ev, "event: alert\n") {
				if !strings.Contains(ev, `"bound":"low"`) || !strings.Contains(ev, `"patient_id":"`+pt.ID+`"`) {
					t.Fatalf("node B's page got %q", ev)
				}
				return
			}
		case <-ctx.Done():
			t.Fatal("node B's page did not get the alert uploaded to node A")
		}
	}
}

// eventStream opens a server-sent event stream with an API token and delivers its events, the
// first (": connected") read already.
func eventStream(ctx context.Context, t *testing.T, url, token string) <-chan string {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	out := make(chan string, 100)
	sc := bufio.NewScanner(resp.Body)
	sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
		if i := bytes.Index(data, []byte("\n\n")); i >= 0 {
			return i + 2, data[:i], nil
		}
		return 0, nil, nil
	})
	if !sc.Scan() {
		t.Fatalf("GET %s: no first event", url)
	}
	go func() {
		defer close(out)
		for sc.Scan() {
			out <- sc.Text()
		}
	}()
	return out
}
