package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/telemed/telemed/internal/cluster/clustertest"
	"github.com/telemed/telemed/internal/config"
	"github.com/telemed/telemed/internal/monitoring"
	"github.com/telemed/telemed/internal/server"
)

// startNode starts a telemed on loopback, without TURN, with --redis redisURL and its keys under
// prefix; closed when the test ends.
func startNode(t *testing.T, redisURL, prefix string) *server.Server {
	t.Helper()
	cfg := config.DefaultServe()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.TURN = false
	cfg.Redis = redisURL
	srv, err := server.Start(context.Background(), cfg, server.Options{RedisPrefix: prefix, Logger: testLogger(t)})
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
	srv := startNode(t, redis.URL(), "")
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
	for _, name := range []string{"telemed_redis_command_duration_seconds", "telemed_store_ping_duration_seconds"} {
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

// TestMonitoringEventsAcrossNodes: an alert raised by an upload on one node reaches a subscriber on
// the other (as the patient's page there would see it), marked as another node's.
func TestMonitoringEventsAcrossNodes(t *testing.T) {
	url := clustertest.URL(t)
	prefix := clustertest.Prefix(t, url)
	a, b := startNode(t, url, prefix), startNode(t, url, prefix)
	events, cancel := b.Services().Monitoring.Subscribe(monitoring.SubscribeOptions{})
	defer cancel()

	ctx := context.Background()
	mon := a.Services().Monitoring
	p, err := a.Services().Accounts.AddProvider(ctx, "grace@clinic.example", "Dr Grace Hopper", "correct horse battery")
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
	enrolled, err := mon.EnrollDevice(ctx, e.Code, "oximeter")
	if err != nil {
		t.Fatal(err)
	}
	d, err := mon.DeviceByToken(ctx, enrolled.Token)
	if err != nil {
		t.Fatal(err)
	}
	reading := fmt.Sprintf(`{"code":"2708-6","value":85,"unit":"%%","time":%q}`, time.Now().Add(-time.Minute).Format(time.RFC3339Nano))
	res, err := mon.Upload(ctx, d, monitoring.Batch{ID: "b-1", Readings: []json.RawMessage{json.RawMessage(reading)}})
	if err != nil || len(res.Alerts) != 1 {
		t.Fatalf("upload: %+v, %v; want one alert", res, err)
	}
	for {
		select {
		case ev := <-events:
			if ev.Type != monitoring.EventAlert {
				continue
			}
			if !ev.Remote || ev.PatientID != pt.ID || ev.Alert.ID != res.Alerts[0].ID {
				t.Fatalf("on the other node: %+v, want the alert marked Remote", ev)
			}
			return
		case <-time.After(5 * time.Second):
			t.Fatal("the alert did not reach the other node within 5s")
		}
	}
}
